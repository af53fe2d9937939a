package wal2json

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tap-postgres/tap-postgres/internal/logical"
)

// Table is one entry of wal2json's add-tables filter.
type Table struct {
	Schema, Name string
	// WholeSchema takes every table of Schema (partitions created during a
	// run); Name is then ignored.
	WholeSchema bool
}

// Options are what the tap asks of wal2json.
type Options struct {
	// Format is wal2json's format-version: 2, or 1 for compatibility.
	Format int
	Tables []Table
}

// Type OIDs whose values wal2json writes in a form of its own rather than
// through the type's output function.
const (
	boolOID  = 16
	byteaOID = 17
)

// Source is a slot streamed through wal2json.
type Source struct {
	stream *logical.Stream
	decode func([]byte, *Change) error
	change Change
	event  logical.Event
	// commitTime is the current transaction's, which format 1 gives only
	// in its header; commitText is the text it was read from: format 2
	// repeats it on every change, and it is parsed once per transaction.
	commitTime time.Time
	commitText string
}

// Open starts streaming the slot with wal2json's options for opts.
func Open(ctx context.Context, cfg *pgconn.Config, sc logical.StreamConfig, opts Options) (*Source, error) {
	args, decode := pluginArgs(opts)
	sc.PluginArgs = args
	stream, err := logical.StartStream(ctx, cfg, sc)
	if err != nil {
		return nil, err
	}
	return &Source{stream: stream, decode: decode}, nil
}

// pluginArgs are wal2json's options, and the decoder of its messages.
// Format 2 sends one message per change and marks transactions; format 1
// (kept for compatibility) sends one document per transaction, read here
// chunk by chunk.
func pluginArgs(opts Options) ([]string, func([]byte, *Change) error) {
	tables := make([]string, len(opts.Tables))
	for i, t := range opts.Tables {
		if t.WholeSchema {
			tables[i] = escapeAddTable(t.Schema) + ".*"
		} else {
			tables[i] = escapeAddTable(t.Schema) + "." + escapeAddTable(t.Name)
		}
	}
	args := []string{
		logical.PluginArg("include-timestamp", "true"),
		logical.PluginArg("include-type-oids", "true"),
		logical.PluginArg("add-tables", strings.Join(tables, ",")),
	}
	if opts.Format == 1 {
		// Type names are left out: wal2json's format 1 can print them as
		// invalid JSON (quoted identifiers); the OIDs identify the types.
		return append(args,
			logical.PluginArg("format-version", "1"),
			logical.PluginArg("write-in-chunks", "true"),
			logical.PluginArg("include-types", "false"),
		), DecodeV1Chunk
	}
	return append(args,
		logical.PluginArg("format-version", "2"),
		logical.PluginArg("include-transaction", "true"),
		logical.PluginArg("include-types", "true"),
	), DecodeV2
}

// escapeAddTable escapes a name for add-tables, which splits on commas and
// periods and treats a backslash as escaping the next byte.
func escapeAddTable(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c >= 0x80) {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Next returns the next event: a change, a transaction boundary or a
// keepalive. Logical messages (pg_logical_emit_message) carry no row and are
// passed over.
func (s *Source) Next(ctx context.Context, wait time.Duration) (*logical.Event, error) {
	return s.stream.Next(ctx, wait, &s.event, func(msg logical.Message) (*logical.Event, error) {
		if err := s.decode(msg.Data, &s.change); err != nil {
			return nil, err
		}
		if s.change.Action == ActionMessage {
			return nil, nil
		}
		if err := s.translate(msg.WALStart); err != nil {
			return nil, err
		}
		return &s.event, nil
	})
}

// translate turns the decoded change into the normalised event.
func (s *Source) translate(at logical.LSN) error {
	c := &s.change
	ev := &s.event
	ev.Op, ev.LSN, ev.Schema, ev.Table = op(c.Action), at, c.Schema, c.Table
	if c.Timestamp != "" && c.Timestamp != s.commitText {
		t, err := parseTimestamp(c.Timestamp)
		if err != nil {
			return err
		}
		s.commitTime, s.commitText = t, c.Timestamp
	}
	ev.CommitTime = s.commitTime
	ev.New = s.textForms(c.Columns)
	ev.Old = s.textForms(c.Identity)
	return nil
}

func op(a Action) logical.Op {
	switch a {
	case ActionBegin:
		return logical.OpBegin
	case ActionCommit:
		return logical.OpCommit
	case ActionInsert:
		return logical.OpInsert
	case ActionUpdate:
		return logical.OpUpdate
	case ActionDelete:
		return logical.OpDelete
	}
	return logical.OpTruncate
}

// textForms rewrites the values wal2json writes its own way into
// PostgreSQL's text output: bytea without its \x, booleans as true/false.
// Domains over them go through their output function and need nothing.
func (s *Source) textForms(cols []Column) []Column {
	c := &s.change
	for i := range cols {
		col := &cols[i]
		if col.Null {
			continue
		}
		switch col.TypeOID {
		case byteaOID:
			from := len(c.buf)
			c.buf = append(append(c.buf, `\x`...), col.Value...)
			col.Value = c.buf[from:len(c.buf):len(c.buf)]
		case boolOID:
			if len(col.Value) > 0 {
				col.Value = col.Value[:1]
			}
		}
	}
	return cols
}

// parseTimestamp reads wal2json's commit time, a timestamptz in the
// session's time zone (UTC) and ISO style.
func parseTimestamp(text string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02 15:04:05.999999999-07", "2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05.999999999-07:00:00"} {
		if t, err := time.Parse(layout, text); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("wal2json timestamp %q is not a timestamptz", text)
}

// Close ends streaming.
func (s *Source) Close(ctx context.Context) error { return s.stream.Close(ctx) }
