package singer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// State is the Singer state: bookmarks keyed by tap_stream_id.
type State struct {
	CurrentlySyncing *string              `json:"currently_syncing"`
	Bookmarks        map[string]*Bookmark `json:"bookmarks"`
}

// Bookmark is one stream's position. Keys other taps wrote (the reference's
// xmin, for one) are not kept: they are ignored, never fatal.
type Bookmark struct {
	LastReplicationMethod string `json:"last_replication_method,omitempty"`
	// Version is the table version (epoch ms); 0 means none yet.
	Version int64 `json:"version,omitempty"`
	// LastPKFetched is present only while a FULL_TABLE (or initial
	// LOG_BASED) copy is in progress: the primary key of the last emitted row,
	// column name → PostgreSQL text form. The next run resumes after it in the
	// same version.
	LastPKFetched map[string]string `json:"last_pk_fetched,omitempty"`
	// CopyParts are the key ranges of a copy read by several readers at
	// once; each resumes on its own.
	CopyParts []CopyPart `json:"copy_parts,omitempty"`
	// CopyInProgress marks a copy that has started and not finished, even
	// before its first key is bookmarked: a LOG_BASED stream's lsn alone
	// would otherwise make a copy killed early look complete.
	CopyInProgress bool `json:"copy_in_progress,omitempty"`
	// ReplicationKey and ReplicationKeyValue are INCREMENTAL's position.
	ReplicationKey      string          `json:"replication_key,omitempty"`
	ReplicationKeyValue json.RawMessage `json:"replication_key_value,omitempty"`
	// LSN is LOG_BASED's position; 0 means none yet.
	LSN uint64 `json:"lsn,omitempty"`
	// ReferenceCopyInterrupted is set when the reference tap's `xmin` shows
	// it was stopped in the middle of a copy; it is read, never written.
	ReferenceCopyInterrupted bool `json:"-"`
}

// CopyPart is one key range of a parallel copy: the first key column in
// [Lower, Upper), nil meaning unbounded, as PostgreSQL prints the value.
type CopyPart struct {
	Lower         *string           `json:"lower"`
	Upper         *string           `json:"upper"`
	LastPKFetched map[string]string `json:"last_pk_fetched,omitempty"`
	Done          bool              `json:"done,omitempty"`
}

// NewState returns an empty state.
func NewState() *State { return &State{Bookmarks: map[string]*Bookmark{}} }

// Clone returns a deep copy, so a state handed out is not changed later.
func (s *State) Clone() *State {
	c := &State{Bookmarks: make(map[string]*Bookmark, len(s.Bookmarks))}
	if s.CurrentlySyncing != nil {
		v := *s.CurrentlySyncing
		c.CurrentlySyncing = &v
	}
	for id, b := range s.Bookmarks {
		cb := *b
		cb.LastPKFetched = maps.Clone(b.LastPKFetched)
		cb.CopyParts = slices.Clone(b.CopyParts)
		for i := range cb.CopyParts {
			cb.CopyParts[i].LastPKFetched = maps.Clone(b.CopyParts[i].LastPKFetched)
		}
		cb.ReplicationKeyValue = append(json.RawMessage(nil), b.ReplicationKeyValue...)
		c.Bookmarks[id] = &cb
	}
	return c
}

// Bookmark returns the stream's bookmark, creating an empty one.
func (s *State) Bookmark(id string) *Bookmark {
	b := s.Bookmarks[id]
	if b == nil {
		b = &Bookmark{}
		s.Bookmarks[id] = b
	}
	return b
}

// ParseState decodes a state file: the state object itself, or a STATE
// message wrapping it. An empty file is an empty state.
func ParseState(data []byte) (*State, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return NewState(), nil
	}
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("state is not a JSON object: %w", err)
	}
	if v, ok := raw["value"]; ok && string(raw["type"]) == `"STATE"` {
		return ParseState(v)
	}
	s := NewState()
	if cs, ok := raw["currently_syncing"]; ok && string(cs) != "null" {
		var id string
		if err := json.Unmarshal(cs, &id); err != nil {
			return nil, errors.New(`state "currently_syncing" must be a string or null`)
		}
		s.CurrentlySyncing = &id
	}
	bm, ok := raw["bookmarks"]
	if !ok || string(bm) == "null" {
		return s, nil
	}
	var books map[string]map[string]json.RawMessage
	if err := json.Unmarshal(bm, &books); err != nil {
		return nil, errors.New(`state "bookmarks" must be an object of objects keyed by tap_stream_id`)
	}
	var problems []error
	for id, fields := range books {
		b, err := parseBookmark(fields)
		if err != nil {
			problems = append(problems, fmt.Errorf("state bookmark %s: %w", id, err))
			continue
		}
		s.Bookmarks[id] = b
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	return s, nil
}

func parseBookmark(fields map[string]json.RawMessage) (*Bookmark, error) {
	b := &Bookmark{}
	var problems []error
	for key, v := range fields {
		if string(v) == "null" {
			continue
		}
		var err error
		switch key {
		case "last_replication_method":
			err = json.Unmarshal(v, &b.LastReplicationMethod)
		case "version":
			b.Version, err = parseInteger(v)
		case "last_pk_fetched":
			err = json.Unmarshal(v, &b.LastPKFetched)
		case "copy_parts":
			err = json.Unmarshal(v, &b.CopyParts)
		case "copy_in_progress":
			err = json.Unmarshal(v, &b.CopyInProgress)
		case "replication_key":
			err = json.Unmarshal(v, &b.ReplicationKey)
		case "replication_key_value":
			b.ReplicationKeyValue = append(json.RawMessage(nil), v...)
		case "xmin":
			b.ReferenceCopyInterrupted = true
		case "lsn":
			var lsn int64
			lsn, err = parseInteger(v)
			if err == nil && lsn < 0 {
				err = errors.New("negative")
			}
			b.LSN = uint64(lsn)
		}
		if err != nil {
			problems = append(problems, fmt.Errorf("%q has an invalid value: %w", key, err))
		}
	}
	return b, errors.Join(problems...)
}

// parseInteger accepts a JSON integer, an integral float (1.7e12, as some
// tools rewrite numbers) or a string holding one.
func parseInteger(v json.RawMessage) (int64, error) {
	text := strings.Trim(string(v), `"`)
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<62 {
		return 0, fmt.Errorf("%s is not an integer", v)
	}
	return int64(f), nil
}
