package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/tap-postgres/tap-postgres/internal/discovery"
	"github.com/tap-postgres/tap-postgres/internal/pgread"
	"github.com/tap-postgres/tap-postgres/internal/singer"
)

// syncIncremental reads rows at or after the bookmarked replication-key value
// in key order. The bookmark is the last non-null key value emitted, in the
// JSON form the record carried (SPEC §5), and is bound as a parameter the
// server types from the key column.
func (e *Engine) syncIncremental(ctx context.Context, p *streamPlan, state *singer.State, out *singer.Writer) error {
	bm := state.Bookmark(p.id)
	from, err := bookmarkParameter(bm.ReplicationKeyValue)
	if err != nil {
		return fmt.Errorf("stream %s: state replication_key_value %s: %w", p.id, bm.ReplicationKeyValue, err)
	}
	if bm.Version == 0 {
		bm.Version = e.newVersion(0)
	}
	bm.LastReplicationMethod = MethodIncremental
	bm.ReplicationKey = p.replicationKey
	bm.LastPKFetched = nil
	state.CurrentlySyncing = &p.id
	if err := out.WriteSchema(singer.SchemaMessage{
		Stream:             p.name,
		Schema:             streamSchema(p.live, p.columns, nil),
		KeyProperties:      p.keyProperties,
		BookmarkProperties: []string{p.replicationKey},
	}); err != nil {
		return fmt.Errorf("stream %s: write SCHEMA: %w", p.id, err)
	}
	if err := out.WriteActivateVersion(p.name, bm.Version); err != nil {
		return err
	}
	if err := writeState(out, state); err != nil {
		return err
	}

	conn, err := e.conn.Connect(ctx, p.database)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	names := columnNames(p.columns)
	key := slices.IndexFunc(p.columns, func(c *discovery.Column) bool { return c.Name == p.replicationKey })
	enc := singer.NewRecordEncoder(p.name, names, bm.Version)
	enc.SetTimeExtracted(e.clock())
	rec := newRecordWriter(e, p, enc, out)
	rec.capture = key
	m := newMetrics(e.log, p.name, e.clock)
	sinceState := 0
	// keepBookmark moves the bookmark to the last non-null key emitted.
	keepBookmark := func() {
		if len(rec.captured) > 0 {
			bm.ReplicationKeyValue = append(bm.ReplicationKeyValue[:0:0], rec.captured...)
		}
	}
	q := pgread.Query{Schema: p.schema, Table: p.table, Columns: names}
	n, err := pgread.ReadIncremental(ctx, conn.PgConn(), q, key, from, func(values [][]byte) error {
		if err := rec.write(values); err != nil {
			return err
		}
		sinceState++
		if sinceState < stateEvery {
			return nil
		}
		sinceState = 0
		m.add(stateEvery)
		enc.SetTimeExtracted(e.clock())
		keepBookmark()
		return writeState(out, state)
	})
	if err != nil {
		return fmt.Errorf("stream %s: incremental read: %w", p.id, err)
	}
	m.add(int64(sinceState))
	m.flush()
	keepBookmark()
	state.CurrentlySyncing = nil
	e.log.Info(fmt.Sprintf("stream %s: %d rows at or after the bookmark; bookmark now %s", p.id, n, bm.ReplicationKeyValue))
	return writeState(out, state)
}

// bookmarkParameter turns a bookmarked JSON value into the text parameter
// bound against the key column: strings unquoted, numbers and booleans as
// written. nil (no bookmark) means a first run.
func bookmarkParameter(v json.RawMessage) ([]byte, error) {
	if len(v) == 0 || string(v) == "null" {
		return nil, nil
	}
	var x any
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	if err := dec.Decode(&x); err != nil {
		return nil, err
	}
	switch t := x.(type) {
	case string:
		return []byte(t), nil
	case json.Number:
		return []byte(t.String()), nil
	case bool:
		return []byte(fmt.Sprint(t)), nil
	}
	return nil, fmt.Errorf("a replication key value must be a string, number or boolean")
}
