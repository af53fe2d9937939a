// Package destination loads a job's Singer messages (README, "Runner"): into
// PostgreSQL, into JSON-lines files, or through any Singer target command.
// Each destination hands a STATE to Commit only once everything the state
// covers is durable there, so a committed state never outruns the data.
package destination

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Destination takes the tap's messages, one JSON object per line, in any
// chunking. Close makes everything durable and commits the last state.
type Destination interface {
	io.Writer
	Close() error
	// Rows is the number of records loaded per stream: made durable, or
	// for a Singer target covered by a state it printed. Read after Close.
	Rows() map[string]int64
	// Received is the number of records received per stream, loaded or
	// not. Read after Close.
	Received() map[string]int64
}

// Options are what every destination is given by the job.
type Options struct {
	// Commit makes a state the committed one. It is called from one
	// goroutine at a time, in order.
	Commit func(state json.RawMessage) error
	Clock  func() time.Time
	// Log is the extraction log's `target` source.
	Log *slog.Logger
	// Fence, when set, is asked just before loaded data is made durable;
	// an error (the job's lock was lost) fails the load instead.
	Fence func() error
	// OnRecord sees each record's stream as it arrives (progress).
	OnRecord func(stream string)
	// BatchRows and BatchInterval bound how much a batching destination
	// holds before it loads and commits: at the first STATE after either,
	// or after maxHeldBytes of records.
	BatchRows     int
	BatchInterval time.Duration
	// LockTimeout bounds how long a PostgreSQL load waits for a lock
	// (default a minute): an ALTER TABLE queued behind a long report would
	// otherwise hang the job and block every reader queued behind it.
	LockTimeout time.Duration
}

// message is one Singer message. Its raw parts (line, Record,
// TimeExtracted, Version) are valid only while the message is handled.
type message struct {
	Type          string          `json:"type"`
	Stream        string          `json:"stream"`
	Record        json.RawMessage `json:"record"`
	Schema        json.RawMessage `json:"schema"`
	KeyProperties []string        `json:"key_properties"`
	// Version and TimeExtracted are kept as their JSON text (absent: nil).
	Version       json.RawMessage `json:"version"`
	TimeExtracted json.RawMessage `json:"time_extracted"`
	Value         json.RawMessage `json:"value"`
	line          []byte
}

// parseMessage reads a line. RECORD, nearly every line, is walked without
// decoding its values; other messages are decoded whole. lastStream is
// reused when the stream name repeats, saving an allocation per record.
func parseMessage(line []byte, lastStream string) (message, error) {
	m := message{line: line}
	var typ, stream []byte
	err := eachMember(line, func(key, value []byte) error {
		switch string(key) {
		case "type":
			typ = value
		case "stream":
			stream = value
		case "record":
			m.Record = value
		case "version":
			m.Version = value
		case "time_extracted":
			m.TimeExtracted = value
		}
		return nil
	})
	if err != nil || string(typ) != `"RECORD"` {
		m = message{line: line}
		if err := json.Unmarshal(line, &m); err != nil {
			return m, fmt.Errorf("a message is not JSON: %w", err)
		}
		return m, nil
	}
	m.Type = "RECORD"
	if len(stream) > 2 && stream[0] == '"' && string(stream[1:len(stream)-1]) == lastStream && bytes.IndexByte(stream, '\\') < 0 {
		m.Stream = lastStream
	} else if err := json.Unmarshal(stream, &m.Stream); err != nil {
		return m, fmt.Errorf("a RECORD's stream is not a string: %s", stream)
	}
	return m, nil
}

// loader is a destination that loads message by message and makes its
// work durable on flush.
type loader interface {
	schema(m *message) error
	record(m *message) error
	activateVersion(m *message) error
	// detach hands over everything held so far: the returned load makes it
	// durable, possibly on another goroutine while the loader holds the
	// next messages. At most one load runs at a time.
	detach() (load func() error)
	close() error
}

// batching turns a loader into a Destination: it splits lines, counts
// records, and at a STATE, once enough is held, loads it and then commits
// that state — in the background, while the next batch is read, so that
// extraction and loading overlap.
type batching struct {
	opts      Options
	load      loader
	lines     lineSplitter
	state     json.RawMessage
	held      int
	heldBytes int
	lastFlush time.Time
	// heldRows counts the records of the batch being read per stream;
	// loaded and notLoaded those of batches loaded and of batches whose
	// load failed, updated by the load and read after Close.
	heldRows  map[string]int64
	loaded    map[string]int64
	notLoaded map[string]int64
	// lastStream is the stream of the last record.
	lastStream string
	// failed: a message could not be loaded (err says why), so no later
	// state may be committed by this job.
	failed bool
	err    error
	// loading reports the end of the load (and commit) in flight; nil when
	// none runs.
	loading chan error
}

// maxHeldBytes bounds the records a batch holds, whatever their width.
const maxHeldBytes = 64 << 20

func newBatching(l loader, opts Options) *batching {
	if opts.BatchRows <= 0 {
		opts.BatchRows = 20000
	}
	if opts.BatchInterval <= 0 {
		opts.BatchInterval = time.Minute
	}
	return &batching{opts: opts, load: l, heldRows: map[string]int64{}, loaded: map[string]int64{}, notLoaded: map[string]int64{}, lastFlush: opts.Clock()}
}

// Rows counts the records loaded; a batch that failed to load counts none.
func (b *batching) Rows() map[string]int64 { return b.loaded }

// Received adds to the records loaded those of a batch whose load failed
// and those held when a failure stopped loading.
func (b *batching) Received() map[string]int64 {
	received := map[string]int64{}
	for _, counts := range []map[string]int64{b.loaded, b.notLoaded, b.heldRows} {
		for stream, n := range counts {
			received[stream] += n
		}
	}
	return received
}

func (b *batching) Write(p []byte) (int, error) {
	if b.failed {
		return 0, fmt.Errorf("destination: nothing more is taken after a failure: %w", b.err)
	}
	if err := b.lines.each(p, b.line); err != nil {
		b.fail(err)
		return 0, err
	}
	return len(p), nil
}

// fail records the first failure: from then on nothing is loaded or
// committed.
func (b *batching) fail(err error) {
	if !b.failed {
		b.failed, b.err = true, err
	}
}

// lineSplitter hands on whole lines of writes in any chunking.
type lineSplitter struct{ pending []byte }

// each calls fn with every line p completes; the line is valid only
// during the call.
func (s *lineSplitter) each(p []byte, fn func(line []byte) error) error {
	s.pending = append(s.pending, p...)
	start := 0
	for {
		i := bytes.IndexByte(s.pending[start:], '\n')
		if i < 0 {
			break
		}
		if err := fn(s.pending[start : start+i]); err != nil {
			return err
		}
		start += i + 1
	}
	s.pending = append(s.pending[:0], s.pending[start:]...)
	return nil
}

func (b *batching) line(line []byte) error {
	if len(bytes.TrimSpace(line)) == 0 {
		return nil
	}
	m, err := parseMessage(line, b.lastStream)
	if err != nil {
		return err
	}
	switch m.Type {
	case "STATE":
		b.state = append(b.state[:0], m.Value...)
		if b.held >= b.opts.BatchRows || b.heldBytes >= maxHeldBytes || b.opts.Clock().Sub(b.lastFlush) >= b.opts.BatchInterval {
			return b.flushAndCommit()
		}
		return nil
	case "SCHEMA":
		return b.load.schema(&m)
	case "RECORD":
		b.lastStream = m.Stream
		b.heldRows[m.Stream]++
		b.held++
		b.heldBytes += len(line)
		if b.opts.OnRecord != nil {
			b.opts.OnRecord(m.Stream)
		}
		if err := b.load.record(&m); err != nil {
			return err
		}
		// A batch ends at a STATE, which then covers all of it; but STATEs
		// may come seconds apart (state_interval_seconds), so one grown
		// twice as large is loaded all the same, and the last STATE before
		// it, which covers part of it, committed.
		if b.held >= 2*b.opts.BatchRows || b.heldBytes >= maxHeldBytes {
			return b.flushAndCommit()
		}
		return nil
	case "ACTIVATE_VERSION":
		return b.load.activateVersion(&m)
	}
	return nil
}

// flushAndCommit starts loading what is held, to commit the last state
// once it is loaded; it first waits for the previous load, so loads and
// commits stay in order.
func (b *batching) flushAndCommit() error {
	if err := b.wait(); err != nil {
		return err
	}
	load := b.load.detach()
	state, rows := b.state, b.heldRows
	b.state, b.heldRows = nil, map[string]int64{}
	b.held, b.heldBytes = 0, 0
	b.lastFlush = b.opts.Clock()
	done := make(chan error, 1)
	b.loading = done
	go func() {
		err := load()
		counts := b.loaded
		if err != nil {
			counts = b.notLoaded
		}
		for stream, n := range rows {
			counts[stream] += n
		}
		if err == nil && state != nil {
			err = b.opts.Commit(state)
		}
		done <- err
	}()
	return nil
}

// wait ends the load in flight and returns its error.
func (b *batching) wait() error {
	if b.loading == nil {
		return nil
	}
	err := <-b.loading
	b.loading = nil
	if err != nil {
		b.fail(err)
	}
	return err
}

// Close loads what is held and commits the last state, also after the tap
// failed: a STATE covers exactly the messages before it. Records after the
// last STATE are loaded but not covered; the next job sends them again.
// After a load error nothing more is committed.
func (b *batching) Close() error {
	var err error
	if !b.failed {
		err = b.flushAndCommit()
	}
	if werr := b.wait(); err == nil {
		err = werr
	}
	if err == nil && b.failed {
		// Said again here: the writer may not have passed it on.
		err = fmt.Errorf("destination: nothing committed after the failure: %w", b.err)
	}
	if cerr := b.load.close(); err == nil {
		err = cerr
	}
	return err
}
