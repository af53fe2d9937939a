package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/tap-postgres/tap-postgres/internal/connect"
	"github.com/tap-postgres/tap-postgres/internal/discovery"
	"github.com/tap-postgres/tap-postgres/internal/pgread"
	"github.com/tap-postgres/tap-postgres/internal/singer"
	"github.com/tap-postgres/tap-postgres/internal/types"
)

// syncFullTable copies a table from one snapshot, in keyset chunks when it
// has a primary key, so that an interrupted copy resumes after the last key
// emitted in the same version.
func (e *Engine) syncFullTable(ctx context.Context, p *streamPlan, sk *sink) error {
	return e.copyStream(ctx, p, sk, "")
}

// copyStream is the copy both FULL_TABLE and LOG_BASED's first run use.
// snapshot names an exported snapshot to read in ("" for a fresh one).
func (e *Engine) copyStream(ctx context.Context, p *streamPlan, sk *sink, snapshot string) error {
	var keyCols []int
	if !p.live.IsView() {
		keyCols = columnIndexes(p.columns, p.live.PrimaryKey)
	}
	var bounds []string
	if keyCols != nil {
		var err error
		if bounds, err = e.partBounds(ctx, p); err != nil {
			return err
		}
	}
	var bm *singer.Bookmark
	var after [][]byte
	err := sk.do(func(out *singer.Writer, st *singer.State) error {
		bm = st.Bookmark(p.id)
		leading := bm.Version == 0
		switch {
		case bm.Version != 0 && bm.CopyInProgress && len(bm.CopyParts) > 0 && partsMatchKey(bm.CopyParts, p, keyCols):
			e.log.Info(fmt.Sprintf("stream %s: resuming the %d-part copy of version %d", p.id, len(bm.CopyParts), bm.Version))
		default:
			bm.CopyParts = nil
			after = e.resumeKey(p, bm, keyCols)
			if after != nil {
				e.log.Info(fmt.Sprintf("stream %s: resuming the copy of version %d after key %v", p.id, bm.Version, bm.LastPKFetched))
				break
			}
			bm.Version = e.newVersion(bm.Version)
			if len(bounds) > 0 {
				bm.CopyParts, bm.LastPKFetched = newParts(bounds), nil
				e.log.Info(fmt.Sprintf("stream %s: copying in %d parts at once", p.id, len(bm.CopyParts)))
			}
		}
		bm.LastReplicationMethod = p.method
		bm.CopyInProgress = true
		sk.started(p.id)
		if err := out.WriteSchema(singer.SchemaMessage{
			Stream:        p.name,
			Schema:        streamSchema(p.live, p.columns, e.extraProperties(p)),
			KeyProperties: p.keyProperties,
		}); err != nil {
			return fmt.Errorf("stream %s: write SCHEMA: %w", p.id, err)
		}
		if leading {
			if err := out.WriteActivateVersion(p.name, bm.Version); err != nil {
				return err
			}
		}
		return e.states.write(out, st)
	})
	if err != nil {
		return err
	}
	var copied int64
	if len(bm.CopyParts) > 0 {
		copied, err = e.copyParts(ctx, p, sk, bm, keyCols, snapshot)
	} else {
		copied, err = e.copyTable(ctx, p, sk, bm, keyCols, after, snapshot)
	}
	if err != nil {
		return fmt.Errorf("stream %s: full table copy: %w", p.id, err)
	}
	e.log.Info(fmt.Sprintf("stream %s: copied %d rows (version %d)", p.id, copied, bm.Version))
	return sk.do(func(out *singer.Writer, st *singer.State) error {
		bm.LastPKFetched, bm.CopyParts, bm.CopyInProgress = nil, nil, false
		if err := out.WriteActivateVersion(p.name, bm.Version); err != nil {
			return err
		}
		sk.finished(p.id)
		return e.states.write(out, st)
	})
}

// partsMatchKey tells whether an interrupted parallel copy's saved keys
// still name the table's key; if not, the copy starts over.
func partsMatchKey(parts []singer.CopyPart, p *streamPlan, keyCols []int) bool {
	if keyCols == nil {
		return false
	}
	for _, part := range parts {
		if part.LastPKFetched == nil {
			continue
		}
		if len(part.LastPKFetched) != len(keyCols) {
			return false
		}
		for _, k := range keyCols {
			if _, ok := part.LastPKFetched[p.columns[k].Name]; !ok {
				return false
			}
		}
	}
	return true
}

// resumeKey returns the key to resume after, or nil to start a new copy.
func (e *Engine) resumeKey(p *streamPlan, bm *singer.Bookmark, keyCols []int) [][]byte {
	if bm.Version == 0 || bm.LastPKFetched == nil {
		return nil
	}
	if keyCols == nil || len(bm.LastPKFetched) != len(keyCols) {
		e.log.Info(fmt.Sprintf("stream %s: the interrupted copy cannot be resumed by key; copying the table again", p.id))
		return nil
	}
	after := make([][]byte, len(keyCols))
	for i, k := range keyCols {
		v, ok := bm.LastPKFetched[p.columns[k].Name]
		if !ok {
			e.log.Info(fmt.Sprintf("stream %s: the primary key changed since the interrupted copy; copying the table again", p.id))
			return nil
		}
		after[i] = []byte(v)
	}
	return after
}

// newVersion is now in epoch ms, kept above the previous version so that
// two runs within one millisecond still order.
func (e *Engine) newVersion(previous int64) int64 {
	return max(e.clock().UnixMilli(), previous+1)
}

// copyTable reads the whole table (one range, no bounds).
func (e *Engine) copyTable(ctx context.Context, p *streamPlan, sk *sink, bm *singer.Bookmark, keyCols []int, after [][]byte, snapshot string) (int64, error) {
	names := columnNames(p.columns)
	q := pgread.Query{Schema: p.schema, Table: p.table, Columns: names, KeyColumns: keyCols}
	return e.copyRange(ctx, p, sk, q, after, bm.Version, snapshot, func(key map[string]string, _ bool) {
		if key != nil {
			bm.LastPKFetched = key
		}
	})
}

// copyRange reads one range of a table in its own connection and snapshot
// (the exported one when named), in keyset chunks when it has a key, and
// sends the rows in batches of stateEvery records. keep records, inside the
// sink's lock, the last key of each batch sent and whether the range is done,
// so that the STATE written with the batch resumes right after it.
func (e *Engine) copyRange(ctx context.Context, p *streamPlan, sk *sink, q pgread.Query, after [][]byte, version int64, snapshot string, keep func(key map[string]string, done bool)) (int64, error) {
	conn, err := e.conn.Connect(ctx, p.database)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	snap, err := pgread.BeginSnapshot(ctx, conn.PgConn(), snapshot)
	if err != nil {
		return 0, err
	}
	enc := singer.NewRecordEncoder(p.name, append(q.Columns, e.extraColumns(p)...), version)
	rec := newRecordWriter(e, p, enc)
	m := newMetrics(e.log, p.name, e.clock)
	var total int64
	lastKey := make([][]byte, len(q.KeyColumns))
	send := func(done, last bool) error {
		n := rec.count
		emit := sk.emit
		if last {
			emit = sk.emitLast
		}
		err := emit(rec.take(), func(*singer.State) {
			var key map[string]string
			if q.KeyColumns != nil && total > 0 {
				key = keyText(p.columns, q.KeyColumns, lastKey)
			}
			keep(key, done)
		})
		m.add(int64(n))
		return err
	}
	onRow := func(values [][]byte) error {
		rec.write(values)
		for i, k := range q.KeyColumns {
			lastKey[i] = append(lastKey[i][:0], values[k]...)
		}
		total++
		if rec.count < stateEvery && len(rec.batch) < maxBatchBytes {
			return nil
		}
		return send(false, false)
	}
	for {
		enc.SetTimeExtracted(e.clock())
		n, last, err := snap.ReadChunk(ctx, q, after, e.cfg.IterSize, onRow)
		if size, tooLarge := connect.RowTooLarge(err); tooLarge {
			from := after
			if total > 0 {
				from = lastKey
			}
			return total, errors.Join(e.rowTooLarge(ctx, p, q, from, size), send(false, true))
		}
		if err != nil {
			if ctx.Err() != nil {
				// Stopped by a signal: what was read goes out with a STATE
				// that covers exactly it, so the next run resumes after it.
				err = errors.Join(err, send(false, true))
			}
			return total, err
		}
		if q.KeyColumns == nil || n < e.cfg.IterSize {
			break
		}
		after = last
	}
	if err := send(true, false); err != nil {
		return total, err
	}
	m.flush()
	return total, snap.Close(ctx)
}

// rowTooLarge names the row past max_row_bytes by its key: the first after
// the key read last, found on a connection of its own (the copy's is
// broken by the message it could not take).
func (e *Engine) rowTooLarge(ctx context.Context, p *streamPlan, q pgread.Query, after [][]byte, size int) error {
	which := "a row"
	if len(q.KeyColumns) > 0 {
		which = "the first row"
		if after != nil {
			which = "the row after key " + keyJSON(p, q, after)
		}
		if key, err := e.keyAfter(ctx, p, q, after); err == nil && key != nil {
			which = "the row with key " + keyJSON(p, q, key)
		}
	}
	return fmt.Errorf("%s is %d bytes as PostgreSQL sends it, more than max_row_bytes (%d): %s", which, size, e.cfg.MaxRowBytes, rowTooLargeAdvice)
}

// rowTooLargeAdvice ends the error of a row past max_row_bytes.
const rowTooLargeAdvice = "the tap would need several times that in memory, so it stops here. " +
	"Leave the row's largest columns out of the selection, or raise max_row_bytes (a value is at most 1 GB) where the memory is there"

// keyAfter reads the key of the first row after the given key.
func (e *Engine) keyAfter(ctx context.Context, p *streamPlan, q pgread.Query, after [][]byte) ([][]byte, error) {
	conn, err := e.conn.Connect(ctx, p.database)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	snap, err := pgread.BeginSnapshot(ctx, conn.PgConn(), "")
	if err != nil {
		return nil, err
	}
	_, key, err := snap.ReadChunk(ctx, q.KeysOnly(), after, 1, func([][]byte) error { return nil })
	return key, err
}

// keyJSON shows a key as its columns and PostgreSQL text values.
func keyJSON(p *streamPlan, q pgread.Query, key [][]byte) string {
	text, _ := json.Marshal(keyText(p.columns, q.KeyColumns, key))
	return string(text)
}

// recordWriter encodes rows of one stream into RECORD lines, warning once
// per column about values it had to repair.
type recordWriter struct {
	e   *Engine
	p   *streamPlan
	enc *singer.RecordEncoder
	// batch holds encoded lines until they are sent; count is how many.
	batch   []byte
	count   int
	columns []*discovery.Column
	warned  []types.Issue
	// nullTail closes a copied row of a LOG_BASED stream: its log-only
	// columns (_sdc_deleted_at, _sdc_lsn) are null.
	nullTail []byte
	// capture is the column whose last non-null JSON value is kept in
	// captured (INCREMENTAL's bookmark); -1 for none.
	capture  int
	captured []byte
}

func newRecordWriter(e *Engine, p *streamPlan, enc *singer.RecordEncoder) *recordWriter {
	r := &recordWriter{e: e, p: p, enc: enc, batch: make([]byte, 0, 256<<10), columns: p.columns,
		warned: make([]types.Issue, len(p.columns)), capture: -1}
	for i := range e.extraColumns(p) {
		r.nullTail = append(append(append(r.nullTail, ','), enc.Key(len(p.columns)+i)...), "null"...)
	}
	return r
}

// take returns the batch for sending and starts a new one. The returned
// bytes are valid until the next write.
func (r *recordWriter) take() []byte {
	b := r.batch
	r.batch, r.count = r.batch[:0], 0
	if cap(b) > 2*maxBatchBytes {
		// Grown by a large row: kept, it would hold that much for the
		// rest of the copy.
		r.batch = nil
	}
	return b
}

// write encodes one row whose values are in column order (nil = NULL) into
// the batch.
func (r *recordWriter) write(values [][]byte) {
	buf := r.enc.Begin(r.batch)
	for i, v := range values {
		buf = r.enc.Field(buf, i)
		if v == nil {
			buf = append(buf, "null"...)
			continue
		}
		var issue types.Issue
		start := len(buf)
		buf, issue = r.columns[i].Type.AppendJSON(buf, v)
		if issue&^r.warned[i] != 0 {
			r.warn(i, issue&^r.warned[i])
		}
		if i == r.capture && string(buf[start:]) != "null" {
			r.captured = append(r.captured[:0], buf[start:]...)
		}
	}
	buf = append(buf, r.nullTail...)
	r.batch = r.enc.End(buf)
	r.count++
}

func (r *recordWriter) warn(i int, issue types.Issue) {
	r.warned[i] |= issue
	warnValueIssue(r.e.log, r.p.id, r.columns[i], issue)
}

// warnValueIssue logs what formatting a column's values had to repair; the
// copy and the log path both call it, once per column and issue.
func warnValueIssue(log *slog.Logger, stream string, col *discovery.Column, issue types.Issue) {
	if issue&types.IssueClamped != 0 {
		log.Warn(fmt.Sprintf("stream %s column %q: a date/time outside years 1..9999 (or ±infinity) was clamped to the nearest representable value", stream, col.Name))
	}
	if issue&types.IssueInvalidUTF8 != 0 {
		log.Warn(fmt.Sprintf("stream %s column %q: invalid UTF-8 was replaced with U+FFFD", stream, col.Name))
	}
	if issue&types.IssueMalformed != 0 {
		log.Warn(fmt.Sprintf("stream %s column %q: a value of type %s had an unexpected text form and was sent as a string", stream, col.Name, col.SQLType))
	}
}

func columnNames(cols []*discovery.Column) []string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	return names
}

// columnIndexes finds the key columns among the synced columns; nil when
// there is no key or a key column is not synced.
func columnIndexes(cols []*discovery.Column, key []string) []int {
	if len(key) == 0 {
		return nil
	}
	idx := make([]int, len(key))
	for i, k := range key {
		idx[i] = slices.IndexFunc(cols, func(c *discovery.Column) bool { return c.Name == k })
		if idx[i] < 0 {
			return nil
		}
	}
	return idx
}

// keyText maps key column names to the key's values (in keyCols order).
func keyText(cols []*discovery.Column, keyCols []int, key [][]byte) map[string]string {
	m := make(map[string]string, len(keyCols))
	for i, k := range keyCols {
		m[cols[k].Name] = string(key[i])
	}
	return m
}
