// Package pgread reads table rows in PostgreSQL's text output: one snapshot
// per copy, read in keyset chunks on the primary key so an interrupted copy
// can resume after the last key it emitted. It is the PostgreSQL side and
// knows nothing of Singer.
package pgread

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Snapshot is one REPEATABLE READ, read-only transaction: every chunk of a
// copy reads the same consistent view, so rows moved by concurrent updates are
// never skipped or read twice.
type Snapshot struct {
	conn *pgconn.PgConn
}

// BeginSnapshot starts the copy's transaction on conn, in the exported
// snapshot named by exported when it is not empty.
func BeginSnapshot(ctx context.Context, conn *pgconn.PgConn, exported string) (*Snapshot, error) {
	if err := conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").Close(); err != nil {
		return nil, fmt.Errorf("begin snapshot: %w", err)
	}
	if exported != "" {
		// SET TRANSACTION SNAPSHOT takes no parameters; the name comes from
		// the server, and is quoted as a literal all the same.
		sql := "SET TRANSACTION SNAPSHOT '" + strings.ReplaceAll(exported, "'", "''") + "'"
		if err := conn.Exec(ctx, sql).Close(); err != nil {
			return nil, fmt.Errorf("import snapshot %s: %w", exported, err)
		}
	}
	return &Snapshot{conn: conn}, nil
}

// Close ends the transaction (read-only, so commit and rollback are alike).
func (s *Snapshot) Close(ctx context.Context) error {
	if err := s.conn.Exec(ctx, "COMMIT").Close(); err != nil {
		return fmt.Errorf("end snapshot: %w", err)
	}
	return nil
}

// Query describes what a copy reads.
type Query struct {
	Schema, Table string
	Columns       []string
	// KeyColumns index into Columns; empty reads the table in one pass.
	KeyColumns []int
	// Lower and Upper bound the first key column to [Lower, Upper) for a
	// parallel part of a copy; nil is unbounded.
	Lower, Upper []byte
}

// KeysOnly is the query reading only q's key columns, in the same order
// and bounds: it finds a row too large to read whole.
func (q Query) KeysOnly() Query {
	keys := Query{Schema: q.Schema, Table: q.Table, Lower: q.Lower, Upper: q.Upper}
	for i, k := range q.KeyColumns {
		keys.Columns = append(keys.Columns, q.Columns[k])
		keys.KeyColumns = append(keys.KeyColumns, i)
	}
	return keys
}

// selectFrom starts a query reading the columns from the table.
func (q Query) selectFrom(b *strings.Builder) {
	b.WriteString("SELECT ")
	for i, c := range q.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(pgx.Identifier{c}.Sanitize())
	}
	b.WriteString(" FROM ")
	b.WriteString(pgx.Identifier{q.Schema, q.Table}.Sanitize())
}

func (q Query) keyList() string {
	keys := make([]string, len(q.KeyColumns))
	for i, k := range q.KeyColumns {
		keys[i] = pgx.Identifier{q.Columns[k]}.Sanitize()
	}
	return strings.Join(keys, ", ")
}

// ChunkSQL is the keyset query: rows after the given key, in key order,
// within the part's bounds. With after == false it reads from the start.
// Parameters: the key after, then Lower, then Upper, as present.
func (q Query) ChunkSQL(after bool, limit int) string {
	var b strings.Builder
	q.selectFrom(&b)
	if len(q.KeyColumns) == 0 {
		return b.String()
	}
	keys := q.keyList()
	var conds []string
	n := 0
	param := func() string {
		n++
		return "$" + strconv.Itoa(n)
	}
	if after {
		params := make([]string, len(q.KeyColumns))
		for i := range params {
			params[i] = param()
		}
		conds = append(conds, fmt.Sprintf("(%s) > (%s)", keys, strings.Join(params, ", ")))
	}
	first := pgx.Identifier{q.Columns[q.KeyColumns[0]]}.Sanitize()
	if q.Lower != nil {
		conds = append(conds, first+" >= "+param())
	}
	if q.Upper != nil {
		conds = append(conds, first+" < "+param())
	}
	if conds != nil {
		b.WriteString(" WHERE ")
		b.WriteString(strings.Join(conds, " AND "))
	}
	fmt.Fprintf(&b, " ORDER BY %s LIMIT %d", keys, limit)
	return b.String()
}

// chunkParams orders ChunkSQL's parameters.
func (q Query) chunkParams(after [][]byte) [][]byte {
	params := append([][]byte(nil), after...)
	if q.Lower != nil {
		params = append(params, q.Lower)
	}
	if q.Upper != nil {
		params = append(params, q.Upper)
	}
	return params
}

// ExportSnapshot names the snapshot so that other readers share it.
func (s *Snapshot) ExportSnapshot(ctx context.Context) (string, error) {
	rr := s.conn.ExecParams(ctx, "SELECT pg_export_snapshot()", nil, nil, nil, nil)
	var name string
	for rr.NextRow() {
		name = string(rr.Values()[0])
	}
	if _, err := rr.Close(); err != nil {
		return "", fmt.Errorf("export snapshot: %w", err)
	}
	return name, nil
}

// RowFunc receives each row's text values (nil = NULL); they are valid only
// during the call.
type RowFunc func(values [][]byte) error

// ReadChunk reads up to limit rows after the key `after` (nil: from the
// start; without key columns: the whole table) and returns how many it read
// and the last row's key values (copied, safe to keep).
func (s *Snapshot) ReadChunk(ctx context.Context, q Query, after [][]byte, limit int, fn RowFunc) (int, [][]byte, error) {
	sql := q.ChunkSQL(after != nil, limit)
	rr := s.conn.ExecParams(ctx, sql, q.chunkParams(after), nil, nil, nil)
	n := 0
	lastKey := make([][]byte, len(q.KeyColumns))
	for rr.NextRow() {
		values := rr.Values()
		if err := fn(values); err != nil {
			rr.Close()
			return n, nil, err
		}
		for i, k := range q.KeyColumns {
			lastKey[i] = append(lastKey[i][:0], values[k]...)
		}
		n++
	}
	if _, err := rr.Close(); err != nil {
		return n, nil, fmt.Errorf("read %s: %w", pgx.Identifier{q.Schema, q.Table}.Sanitize(), err)
	}
	if n == 0 {
		return 0, nil, nil
	}
	return n, lastKey, nil
}

// IncrementalSQL orders the whole table by one replication key; from a
// bookmark it keeps rows at or after it (ties at the bookmark are re-read,
// never skipped) and, by comparison, leaves out NULL keys.
func (q Query) IncrementalSQL(key int, fromBookmark bool) string {
	var b strings.Builder
	q.selectFrom(&b)
	col := pgx.Identifier{q.Columns[key]}.Sanitize()
	if fromBookmark {
		fmt.Fprintf(&b, " WHERE %s >= $1", col)
	}
	fmt.Fprintf(&b, " ORDER BY %s", col)
	return b.String()
}

// ReadIncremental streams the rows of IncrementalSQL. from is the bookmark in
// a text form the key's type accepts, or nil on the first run; it is always
// a bind parameter, typed by the server from the key column.
func ReadIncremental(ctx context.Context, conn *pgconn.PgConn, q Query, key int, from []byte, fn RowFunc) (int64, error) {
	var params [][]byte
	if from != nil {
		params = [][]byte{from}
	}
	rr := conn.ExecParams(ctx, q.IncrementalSQL(key, from != nil), params, nil, nil, nil)
	var n int64
	for rr.NextRow() {
		if err := fn(rr.Values()); err != nil {
			rr.Close()
			return n, err
		}
		n++
	}
	if _, err := rr.Close(); err != nil {
		return n, fmt.Errorf("read %s: %w", pgx.Identifier{q.Schema, q.Table}.Sanitize(), err)
	}
	return n, nil
}
