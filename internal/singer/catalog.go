package singer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Catalog is the Singer catalog (`--discover` output, `--catalog` input).
type Catalog struct {
	Streams []*Stream `json:"streams"`
}

// Stream is one catalog entry.
type Stream struct {
	TapStreamID string          `json:"tap_stream_id"`
	Stream      string          `json:"stream"`
	TableName   string          `json:"table_name"`
	Schema      json.RawMessage `json:"schema"`
	Metadata    []*Metadata     `json:"metadata"`
}

// Metadata is one breadcrumb entry.
type Metadata struct {
	Breadcrumb []string       `json:"breadcrumb"`
	Metadata   map[string]any `json:"metadata"`
}

// Metadata keys of the README ("Catalog").
const (
	MetaTableKeyProperties = "table-key-properties"
	MetaSchemaName         = "schema-name"
	MetaDatabaseName       = "database-name"
	MetaRowCount           = "row-count"
	MetaIsView             = "is-view"
	MetaIsPartition        = "is-partition"
	MetaPartitionRoot      = "partition-root"
	MetaSQLDatatype        = "sql-datatype"
	MetaInclusion          = "inclusion"
	MetaSelectedByDefault  = "selected-by-default"
	MetaSelected           = "selected"
	MetaReplicationMethod  = "replication-method"
	MetaReplicationKey     = "replication-key"
	MetaViewKeyProperties  = "view-key-properties"
	MetaValidReplKeys      = "valid-replication-keys"
)

// Inclusion values.
const (
	InclusionAutomatic   = "automatic"
	InclusionAvailable   = "available"
	InclusionUnsupported = "unsupported"
)

// ParseCatalog decodes a catalog file. Problems name the stream and key.
func ParseCatalog(data []byte) (*Catalog, error) {
	var c Catalog
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v)
		return nil, fmt.Errorf("catalog is not valid JSON: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("catalog does not have the Singer catalog shape: %w", err)
	}
	if c.Streams == nil {
		return nil, errors.New(`catalog has no "streams" list`)
	}
	var problems []error
	for i, s := range c.Streams {
		// Duplicate ids are legal here: the reference's <db>-<schema>-<table>
		// is ambiguous for names with hyphens. Only selecting one is an error.
		if s == nil || s.TapStreamID == "" {
			problems = append(problems, fmt.Errorf("catalog stream #%d has no tap_stream_id", i+1))
			continue
		}
		for _, m := range s.Metadata {
			if m == nil {
				problems = append(problems, fmt.Errorf("catalog stream %s: null metadata entry", s.TapStreamID))
			}
		}
	}
	return &c, errors.Join(problems...)
}

// Count returns how many catalog entries carry the tap_stream_id.
func (c *Catalog) Count(id string) int {
	n := 0
	for _, s := range c.Streams {
		if s.TapStreamID == id {
			n++
		}
	}
	return n
}

// Lookup returns the stream with the given tap_stream_id.
func (c *Catalog) Lookup(id string) *Stream {
	for _, s := range c.Streams {
		if s.TapStreamID == id {
			return s
		}
	}
	return nil
}

// Entry returns the metadata map at a breadcrumb, or nil.
func (s *Stream) Entry(breadcrumb ...string) map[string]any {
	for _, m := range s.Metadata {
		if slices.Equal(m.Breadcrumb, breadcrumb) {
			return m.Metadata
		}
	}
	return nil
}

// SetEntry sets one metadata key at a breadcrumb, creating the entry.
func (s *Stream) SetEntry(key string, value any, breadcrumb ...string) {
	if e := s.Entry(breadcrumb...); e != nil {
		e[key] = value
		return
	}
	s.Metadata = append(s.Metadata, &Metadata{Breadcrumb: append([]string{}, breadcrumb...), Metadata: map[string]any{key: value}})
}

// TableMeta returns the table-level metadata (breadcrumb []).
func (s *Stream) TableMeta() Meta { return Meta{stream: s.TapStreamID, m: s.Entry()} }

// ColumnMeta returns a column's metadata; ok is false when the catalog does
// not mention the column.
func (s *Stream) ColumnMeta(column string) (Meta, bool) {
	e := s.Entry("properties", column)
	return Meta{stream: s.TapStreamID, column: column, m: e}, e != nil
}

// Meta reads typed values from one metadata map, accepting the string forms
// hand-edited catalogs use ("true").
type Meta struct {
	stream, column string
	m              map[string]any
}

func (m Meta) where(key string) string {
	if m.column != "" {
		return fmt.Sprintf("catalog stream %s column %q metadata %q", m.stream, m.column, key)
	}
	return fmt.Sprintf("catalog stream %s metadata %q", m.stream, key)
}

// Bool reads a boolean; present reports whether the key is set (non-null).
func (m Meta) Bool(key string) (value, present bool, err error) {
	switch v := m.m[key].(type) {
	case nil:
		return false, false, nil
	case bool:
		return v, true, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "true":
			return true, true, nil
		case "false":
			return false, true, nil
		}
	}
	return false, false, fmt.Errorf("%s must be true or false, not %s", m.where(key), describe(m.m[key]))
}

// String reads a string ("" when absent or null).
func (m Meta) String(key string) (string, error) {
	switch v := m.m[key].(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	}
	return "", fmt.Errorf("%s must be a string, not %s", m.where(key), describe(m.m[key]))
}

// Strings reads a list of strings (nil when absent or null).
func (m Meta) Strings(key string) ([]string, error) {
	switch v := m.m[key].(type) {
	case nil:
		return nil, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("%s must be a list of strings, not %s", m.where(key), describe(m.m[key]))
			}
			out = append(out, s)
		}
		return out, nil
	case []string:
		return v, nil
	}
	return nil, fmt.Errorf("%s must be a list of strings, not %s", m.where(key), describe(m.m[key]))
}

// Int is a whole-number entry, as discovery sets it or as JSON read it;
// false when absent or not a whole number.
func (m Meta) Int(key string) (int64, bool) {
	switch v := m.m[key].(type) {
	case int64:
		return v, true
	case int:
		return int64(v), true
	case float64:
		if v == float64(int64(v)) {
			return int64(v), true
		}
	case json.Number:
		n, err := v.Int64()
		return n, err == nil
	}
	return 0, false
}

func describe(v any) string {
	b, err := json.Marshal(v)
	if err != nil || len(b) > 60 {
		return fmt.Sprintf("a %T", v)
	}
	return string(b)
}
