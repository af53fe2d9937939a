package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/tap-postgres/tap-postgres/internal/connect"
	"github.com/tap-postgres/tap-postgres/internal/discovery"
	"github.com/tap-postgres/tap-postgres/internal/pgread"
	"github.com/tap-postgres/tap-postgres/internal/singer"
)

// syncIncremental reads rows at or after the bookmarked replication-key value
// in key order. The bookmark is the last non-null key value emitted, in the
// JSON form the record carried (README, "Types"), and is bound as a parameter the
// server types from the key column.
func (e *Engine) syncIncremental(ctx context.Context, p *streamPlan, sk *sink) error {
	var bm *singer.Bookmark
	var from []byte
	err := sk.do(func(out *singer.Writer, st *singer.State) error {
		bm = st.Bookmark(p.id)
		var err error
		if from, err = bookmarkParameter(bm.ReplicationKeyValue); err != nil {
			return fmt.Errorf("stream %s: state replication_key_value %s: %w", p.id, bm.ReplicationKeyValue, err)
		}
		if bm.Version == 0 {
			bm.Version = e.newVersion(0)
		}
		bm.LastReplicationMethod = MethodIncremental
		bm.ReplicationKey = p.replicationKey
		bm.LastPKFetched = nil
		sk.started(p.id)
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
		return e.states.write(out, st)
	})
	if err != nil {
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
	rec := newRecordWriter(e, p, enc)
	rec.capture = key
	m := newMetrics(e.log, p.name, e.clock)
	// send emits the batch and moves the bookmark to the last non-null key
	// in it.
	send := func(last bool) error {
		n := rec.count
		emit := sk.emit
		if last {
			emit = sk.emitLast
		}
		err := emit(rec.take(), func(*singer.State) {
			if len(rec.captured) > 0 {
				bm.ReplicationKeyValue = append(bm.ReplicationKeyValue[:0:0], rec.captured...)
			}
		})
		m.add(int64(n))
		return err
	}
	q := pgread.Query{Schema: p.schema, Table: p.table, Columns: names}
	n, err := pgread.ReadIncremental(ctx, conn.PgConn(), q, key, from, func(values [][]byte) error {
		rec.write(values)
		if rec.count < stateEvery && len(rec.batch) < maxBatchBytes {
			return nil
		}
		enc.SetTimeExtracted(e.clock())
		return send(false)
	})
	if size, tooLarge := connect.RowTooLarge(err); tooLarge {
		which := "the first row"
		if len(rec.captured) > 0 {
			which = fmt.Sprintf("the row after %s %s", p.replicationKey, rec.captured)
		} else if from != nil {
			which = fmt.Sprintf("the first row at or after %s %s", p.replicationKey, from)
		}
		return errors.Join(fmt.Errorf("stream %s: %s (in %s order) is %d bytes as PostgreSQL sends it, more than max_row_bytes (%d): %s",
			p.id, which, p.replicationKey, size, e.cfg.MaxRowBytes, rowTooLargeAdvice), send(true))
	}
	if err != nil {
		return fmt.Errorf("stream %s: incremental read: %w", p.id, err)
	}
	if err := send(false); err != nil {
		return err
	}
	m.flush()
	e.log.Info(fmt.Sprintf("stream %s: %d rows at or after the bookmark; bookmark now %s", p.id, n, bm.ReplicationKeyValue))
	return sk.do(func(out *singer.Writer, st *singer.State) error {
		sk.finished(p.id)
		return e.states.write(out, st)
	})
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
