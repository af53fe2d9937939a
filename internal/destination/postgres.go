package destination

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tap-postgres/tap-postgres/internal/connect"
	"github.com/tap-postgres/tap-postgres/internal/types"
)

// The columns Stitch adds to every table.
const (
	columnExtractedAt  = "_sdc_extracted_at"
	columnBatchedAt    = "_sdc_batched_at"
	columnTableVersion = "_sdc_table_version"
	// columnDeletedAt comes from LOG_BASED streams' schemas.
	columnDeletedAt = "_sdc_deleted_at"
)

// maxIdentifier is PostgreSQL's identifier limit in bytes (NAMEDATALEN-1).
const maxIdentifier = 63

// Types of destination columns, spelled as format_type prints them so that
// the stored type and the wanted one compare directly.
const (
	typeBigint      = "bigint"
	typeNumeric     = "numeric"
	typeBoolean     = "boolean"
	typeText        = "text"
	typeJSONB       = "jsonb"
	typeTimestamptz = "timestamp with time zone"
)

// postgresLoader upserts into one table per stream in one schema. Messages
// are held in order and applied in one transaction per batch.
type postgresLoader struct {
	ctx      context.Context
	conn     *pgx.Conn
	dbSchema string
	owner    string
	clock    func() time.Time
	log      *slog.Logger
	tables   map[string]*pgTable
	// streamOfTable catches two streams that load into one table.
	streamOfTable map[string]string
	fence         func() error
	ops           []pgOp
	copyBuf       bytes.Buffer
	scratch       []byte
	// keySeed hashes keys appended to tables this job created;
	// appendedKeys counts the hashes kept.
	keySeed      maphash.Seed
	appendedKeys int
}

// pgTable is a stream's table as this job knows it.
type pgTable struct {
	stream string
	name   string
	// columns by property name; keys are property names.
	columns map[string]*pgColumn
	keys    []string
	// merges: a load found keys the table holds; this job merges every
	// later load of the stream instead of looking its keys up first.
	merges bool
	// held is what this job knows of the keys the table holds.
	held keyBound
	// clearsDeletedAt: the table has _sdc_deleted_at but the stream's
	// schema no longer does (its method changed): a row loaded now is
	// live, whatever an earlier delete marked.
	clearsDeletedAt bool
}

type pgColumn struct {
	name, typ string
}

// keyBound is what a job knows of the keys a table holds, so that rows
// known to be new are appended without looking their keys up: any rows
// while the table holds none; with a bigint first key column, rows whose
// first keys all exceed the greatest it holds (a serial key, copied in
// order or grown since the last job); in a table this job created, rows
// whose keys it did not append.
type keyBound struct {
	// known: this job created the table or looked up what it holds.
	known bool
	rows  bool
	// greatest is the greatest first key the table holds, when
	// greatestKnown.
	greatest      int64
	greatestKnown bool
	// appended hashes every key of a table this job created and has only
	// appended to (see hashKeys); nil when not kept.
	appended map[uint64]struct{}
}

// groupKeys is what the group being loaded tells of its keys.
type groupKeys struct {
	// least and greatest first key, when ranged (a bigint first key).
	least, greatest int64
	ranged          bool
	// hashes of the keys, when hashed.
	hashes []uint64
	hashed bool
}

// allNew tells whether the table holds none of the group's keys, as far as
// the job knows without looking them up.
func (b *keyBound) allNew(g *groupKeys) bool {
	switch {
	case !b.rows:
		return true
	case g.ranged && b.greatestKnown && g.least > b.greatest:
		return true
	case b.appended == nil || !g.hashed:
		return false
	}
	for _, h := range g.hashes {
		if _, ok := b.appended[h]; ok {
			return false
		}
	}
	return true
}

// maxAppendedKeys bounds the keys a job remembers having appended (about
// 20 bytes each); tables past it have their keys looked up instead.
const maxAppendedKeys = 1 << 21

// pgOp is one held step: a schema to apply, a run of records with the same
// properties, or a version to activate — applied in arrival order.
type pgOp struct {
	stream  string
	schema  *wantedTable
	records *recordRun
	version *int64
}

// recordRun holds records as they arrived: each row is its properties'
// raw JSON values, then its time_extracted and version, back to back in
// values; ends marks where each value ends.
type recordRun struct {
	properties []string
	values     []byte
	ends       []int
}

// width is the number of values a row holds.
func (r *recordRun) width() int { return len(r.properties) + 2 }

func (r *recordRun) rows() int { return len(r.ends) / r.width() }

// value is row's k-th value (nil when absent).
func (r *recordRun) value(row, k int) []byte {
	i := row*r.width() + k
	start := 0
	if i > 0 {
		start = r.ends[i-1]
	}
	return r.values[start:r.ends[i]]
}

func (r *recordRun) add(v []byte) {
	r.values = append(r.values, v...)
	r.ends = append(r.ends, len(r.values))
}

// OpenPostgres loads into schema (created when missing) of the database dsn
// names, for owner (the integration): tables another owner made are
// refused.
func OpenPostgres(ctx context.Context, dsn, schema, owner string, opts Options) (Destination, error) {
	cfg, err := connect.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres destination: dsn: %w", err)
	}
	// quoteLiteral relies on it; it has been the default since 9.1.
	cfg.RuntimeParams["standard_conforming_strings"] = "on"
	// A committed load must survive a server crash before its state is
	// committed, whatever the server's default.
	cfg.RuntimeParams["synchronous_commit"] = "on"
	// A batch's staging table stays in memory.
	cfg.RuntimeParams["temp_buffers"] = "128MB"
	lockTimeout := opts.LockTimeout
	if lockTimeout <= 0 {
		lockTimeout = time.Minute
	}
	cfg.RuntimeParams["lock_timeout"] = fmt.Sprintf("%dms", lockTimeout.Milliseconds())
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres destination: connect: %w", err)
	}
	// CREATE SCHEMA needs the CREATE privilege on the database even when
	// the schema exists: a role granted only its schema must not get there.
	var exists bool
	err = conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists)
	if err == nil && !exists {
		_, err = conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize())
	}
	if err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("postgres destination: create schema %s: %w", schema, err)
	}
	// The job's cancellation (SIGTERM) ends the tap with a last STATE; the
	// load that makes it committable must still run.
	l := &postgresLoader{ctx: context.WithoutCancel(ctx), conn: conn, dbSchema: schema, owner: owner, fence: opts.Fence, clock: opts.Clock, log: opts.Log,
		tables: map[string]*pgTable{}, streamOfTable: map[string]string{}, keySeed: maphash.MakeSeed()}
	return newBatching(l, opts), nil
}

// wantedTable is what a SCHEMA message asks for.
type wantedTable struct {
	columns []wantedColumn
	keys    []string
}

type wantedColumn struct {
	property, name, typ string
}

func (l *postgresLoader) schema(m *message) error {
	var s struct {
		Properties json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(m.Schema, &s); err != nil {
		return fmt.Errorf("stream %s: SCHEMA: %w", m.Stream, err)
	}
	w := &wantedTable{keys: m.KeyProperties}
	// Walked in order: a map would lose the source's column order.
	err := eachMember(s.Properties, func(name, schema []byte) error {
		w.columns = append(w.columns, wantedColumn{property: string(name), name: SafeName(string(name)), typ: columnType(schema)})
		return nil
	})
	if err != nil {
		return fmt.Errorf("stream %s: SCHEMA properties: %w", m.Stream, err)
	}
	for _, k := range m.KeyProperties {
		if !slices.ContainsFunc(w.columns, func(c wantedColumn) bool { return c.property == k }) {
			return fmt.Errorf("stream %s: key property %q is not in its SCHEMA", m.Stream, k)
		}
	}
	w.columns = append(w.columns,
		wantedColumn{property: columnExtractedAt, name: columnExtractedAt, typ: typeTimestamptz},
		wantedColumn{property: columnBatchedAt, name: columnBatchedAt, typ: typeTimestamptz},
		wantedColumn{property: columnTableVersion, name: columnTableVersion, typ: typeBigint})
	l.ops = append(l.ops, pgOp{stream: m.Stream, schema: w})
	return nil
}

func (l *postgresLoader) record(m *message) error {
	var run *recordRun
	if n := len(l.ops); n > 0 && l.ops[n-1].stream == m.Stream && l.ops[n-1].records != nil {
		run = l.ops[n-1].records
		if l.appendRow(run, m) == nil {
			return nil
		}
	}
	// A new run: the first record of the stream here, or one whose
	// properties differ from the run before it.
	run = &recordRun{}
	err := eachMember(m.Record, func(key, _ []byte) error {
		run.properties = append(run.properties, string(key))
		return nil
	})
	if err != nil {
		return fmt.Errorf("stream %s: a RECORD's record is not a JSON object", m.Stream)
	}
	l.ops = append(l.ops, pgOp{stream: m.Stream, records: run})
	return l.appendRow(run, m)
}

var errOtherProperties = errors.New("a record's properties differ from the run's")

// appendRow adds m to run if it has exactly the run's properties in the
// same order; otherwise run is left as it was.
func (l *postgresLoader) appendRow(run *recordRun, m *message) error {
	values, ends := len(run.values), len(run.ends)
	k := 0
	err := eachMember(m.Record, func(key, value []byte) error {
		if k >= len(run.properties) || string(key) != run.properties[k] {
			return errOtherProperties
		}
		run.add(value)
		k++
		return nil
	})
	if err == nil && k != len(run.properties) {
		err = errOtherProperties
	}
	if err != nil {
		run.values, run.ends = run.values[:values], run.ends[:ends]
		return err
	}
	run.add(m.TimeExtracted)
	run.add(m.Version)
	return nil
}

func (l *postgresLoader) activateVersion(m *message) error {
	version, err := strconv.ParseInt(string(m.Version), 10, 64)
	if err != nil {
		return fmt.Errorf("stream %s: ACTIVATE_VERSION without a whole-number version", m.Stream)
	}
	l.ops = append(l.ops, pgOp{stream: m.Stream, version: &version})
	return nil
}

func (l *postgresLoader) detach() func() error {
	ops := l.ops
	l.ops = nil
	return func() error { return l.apply(ops) }
}

// streamsPerTransaction bounds the tables one transaction touches: each
// holds a few locks until commit, and the server's lock table is shared
// (max_locks_per_transaction × connections), so a first job creating
// thousands of tables at once would run out of it.
const streamsPerTransaction = 200

// apply runs ops in transactions of at most streamsPerTransaction streams,
// each stream's ops in one transaction and in order (streams are separate
// tables, so their relative order does not matter). The state covering ops
// is committed only after all of them: a failure part way repeats the
// committed part next job, which upserts the same rows again. Only apply
// uses the connection and what the loader knows of tables, so it may run
// beside schema and record.
func (l *postgresLoader) apply(ops []pgOp) error {
	var streams []string
	byStream := map[string][]pgOp{}
	for _, op := range ops {
		if byStream[op.stream] == nil {
			streams = append(streams, op.stream)
		}
		byStream[op.stream] = append(byStream[op.stream], op)
	}
	batchedAt := l.clock().UTC().Format(time.RFC3339Nano)
	for len(streams) > 0 {
		n := min(len(streams), streamsPerTransaction)
		if err := l.applyStreams(streams[:n], byStream, batchedAt); err != nil {
			return fmt.Errorf("postgres destination: %w", err)
		}
		streams = streams[n:]
	}
	return nil
}

// applyStreams applies the ops of streams in one transaction. A stream's
// records are merged at once up to its next SCHEMA or ACTIVATE_VERSION (or
// the end): one staging table per stream however records interleave.
func (l *postgresLoader) applyStreams(streams []string, byStream map[string][]pgOp, batchedAt string) error {
	tx, err := l.conn.Begin(l.ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(l.ctx))
	m := &merger{l: l, tx: tx, batchedAt: batchedAt, staging: map[string]string{}}
	for _, stream := range streams {
		var pending []*recordRun
		merge := func() error {
			runs := pending
			pending = nil
			if len(runs) == 0 {
				return nil
			}
			return m.merge(stream, runs)
		}
		for _, op := range byStream[stream] {
			switch {
			case op.records != nil:
				pending = append(pending, op.records)
			case op.schema != nil:
				if err = merge(); err == nil {
					err = l.applySchema(tx, stream, op.schema)
					// The table may have new columns its staging table lacks.
					delete(m.staging, stream)
				}
			default:
				if err = merge(); err == nil {
					err = l.applyVersion(tx, stream, *op.version)
				}
			}
			if err != nil {
				return err
			}
		}
		if err := merge(); err != nil {
			return err
		}
	}
	if l.fence != nil {
		if err := l.fence(); err != nil {
			return fmt.Errorf("not committed: %w", err)
		}
	}
	if err := tx.Commit(l.ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (l *postgresLoader) close() error { return l.conn.Close(context.WithoutCancel(l.ctx)) }

func (l *postgresLoader) qualified(table string) string {
	return pgx.Identifier{l.dbSchema, table}.Sanitize()
}

// streamComment marks a table with the stream and the integration it
// holds, so that a later stream whose name makes the same table name, or
// another integration loading into the same schema, is caught across jobs.
func (l *postgresLoader) streamComment(stream string) string {
	return fmt.Sprintf("tap-postgres stream %s of integration %s", stream, l.owner)
}

// applySchema creates the stream's table or widens it: new properties
// become columns, and a column whose type no longer fits is widened
// (bigint → numeric, anything else → text).
func (l *postgresLoader) applySchema(tx pgx.Tx, stream string, w *wantedTable) error {
	name := SafeName(stream)
	if other, ok := l.streamOfTable[name]; ok && other != stream {
		return fmt.Errorf("streams %q and %q both load into table %s: rename one of them in the source or leave one out", other, stream, l.qualified(name))
	}
	seen := map[string]string{}
	for _, c := range w.columns {
		if other, ok := seen[c.name]; ok {
			return fmt.Errorf("stream %s: properties %q and %q both load into column %q of %s: leave one out", stream, other, c.property, c.name, l.qualified(name))
		}
		seen[c.name] = c.property
	}
	l.streamOfTable[name] = stream
	if old := l.tables[stream]; old != nil {
		l.forgetAppended(old)
	}
	table := &pgTable{stream: stream, name: name, columns: map[string]*pgColumn{}, keys: w.keys}
	var comment *string
	err := tx.QueryRow(l.ctx, `SELECT obj_description(c.oid, 'pg_class') FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`, l.dbSchema, name).Scan(&comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return l.createTable(tx, table, w)
	}
	if err != nil {
		return fmt.Errorf("stream %s: look up table %s: %w", stream, l.qualified(name), err)
	}
	// Tables of the first releases name their stream only: adopted.
	if comment != nil && *comment == "tap-postgres stream "+stream {
		if _, err := tx.Exec(l.ctx, fmt.Sprintf("COMMENT ON TABLE %s IS %s", l.qualified(name), quoteLiteral(l.streamComment(stream)))); err != nil {
			return fmt.Errorf("stream %s: comment on table %s: %w", stream, l.qualified(name), err)
		}
		comment = new(string)
		*comment = l.streamComment(stream)
	}
	if comment == nil || *comment != l.streamComment(stream) {
		holder := "was not made by tap-postgres"
		if comment != nil {
			holder = fmt.Sprintf("is marked %q", *comment)
		}
		return fmt.Errorf("stream %q of integration %s loads into table %s, which %s: rename one of them or leave one out", stream, l.owner, l.qualified(name), holder)
	}
	return l.widenTable(tx, table, w)
}

func (l *postgresLoader) createTable(tx pgx.Tx, table *pgTable, w *wantedTable) error {
	var ddl strings.Builder
	fmt.Fprintf(&ddl, "CREATE TABLE %s (", l.qualified(table.name))
	for i, c := range w.columns {
		if i > 0 {
			ddl.WriteString(", ")
		}
		fmt.Fprintf(&ddl, "%s %s", pgx.Identifier{c.name}.Sanitize(), c.typ)
		table.columns[c.property] = &pgColumn{name: c.name, typ: c.typ}
	}
	if len(w.keys) > 0 {
		ddl.WriteString(", PRIMARY KEY (")
		for i, k := range w.keys {
			if i > 0 {
				ddl.WriteString(", ")
			}
			ddl.WriteString(pgx.Identifier{table.columns[k].name}.Sanitize())
		}
		ddl.WriteString(")")
	}
	ddl.WriteString(")")
	if _, err := tx.Exec(l.ctx, ddl.String()); err != nil {
		return fmt.Errorf("stream %s: create table %s: %w", table.stream, l.qualified(table.name), err)
	}
	if _, err := tx.Exec(l.ctx, fmt.Sprintf("COMMENT ON TABLE %s IS %s", l.qualified(table.name), quoteLiteral(l.streamComment(table.stream)))); err != nil {
		return fmt.Errorf("stream %s: comment on table %s: %w", table.stream, l.qualified(table.name), err)
	}
	for _, c := range w.columns {
		if err := l.commentColumn(tx, table, c); err != nil {
			return err
		}
	}
	table.held = keyBound{known: true}
	// A bigint first key is told new by its range, which needs no memory;
	// other keys by the hashes of those appended.
	if len(table.keys) > 0 && table.columns[table.keys[0]].typ != typeBigint {
		table.held.appended = map[uint64]struct{}{}
	}
	l.tables[table.stream] = table
	if l.log != nil {
		l.log.Info(fmt.Sprintf("created table %s for stream %s", l.qualified(table.name), table.stream))
	}
	return nil
}

// commentColumn records the property a column holds, so that a property
// whose safe name matches another's is caught in later jobs too.
func (l *postgresLoader) commentColumn(tx pgx.Tx, table *pgTable, c wantedColumn) error {
	sql := fmt.Sprintf("COMMENT ON COLUMN %s.%s IS %s", l.qualified(table.name), pgx.Identifier{c.name}.Sanitize(), quoteLiteral(c.property))
	if _, err := tx.Exec(l.ctx, sql); err != nil {
		return fmt.Errorf("stream %s: comment on column %s: %w", table.stream, c.name, err)
	}
	return nil
}

func (l *postgresLoader) widenTable(tx pgx.Tx, table *pgTable, w *wantedTable) error {
	rows, err := tx.Query(l.ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod), col_description(a.attrelid, a.attnum),
			coalesce((SELECT k.n FROM unnest(i.indkey) WITH ORDINALITY k(attnum, n) WHERE k.attnum = a.attnum), 0)::int
		FROM pg_attribute a LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
		WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`, l.qualified(table.name))
	if err != nil {
		return fmt.Errorf("stream %s: read columns of %s: %w", table.stream, l.qualified(table.name), err)
	}
	type stored struct {
		typ      string
		property *string
	}
	existing := map[string]stored{}
	keyAt := map[int]string{}
	for rows.Next() {
		var name, typ string
		var property *string
		var keyPosition int
		if err := rows.Scan(&name, &typ, &property, &keyPosition); err != nil {
			rows.Close()
			return fmt.Errorf("stream %s: read columns of %s: %w", table.stream, l.qualified(table.name), err)
		}
		existing[name] = stored{typ: typ, property: property}
		if keyPosition > 0 {
			keyAt[keyPosition] = name
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("stream %s: read columns of %s: %w", table.stream, l.qualified(table.name), err)
	}
	storedKeys := make([]string, len(keyAt))
	for pos, name := range keyAt {
		storedKeys[pos-1] = name
	}
	var wantedKeys []string
	for _, k := range w.keys {
		wantedKeys = append(wantedKeys, SafeName(k))
	}
	if !slices.Equal(storedKeys, wantedKeys) {
		return fmt.Errorf("stream %s: key changed from (%s) to (%s); table %s keeps its key: reset the stream after dropping the table",
			table.stream, strings.Join(storedKeys, ", "), strings.Join(wantedKeys, ", "), l.qualified(table.name))
	}
	for _, c := range w.columns {
		s, ok := existing[c.name]
		if !ok {
			sql := fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", l.qualified(table.name), pgx.Identifier{c.name}.Sanitize(), c.typ)
			if _, err := tx.Exec(l.ctx, sql); err != nil {
				return fmt.Errorf("stream %s: add column %s: %w", table.stream, c.name, err)
			}
			if err := l.commentColumn(tx, table, c); err != nil {
				return err
			}
			if l.log != nil {
				l.log.Info(fmt.Sprintf("added column %s (%s) to %s", c.name, c.typ, l.qualified(table.name)))
			}
			table.columns[c.property] = &pgColumn{name: c.name, typ: c.typ}
			continue
		}
		if s.property != nil && *s.property != c.property {
			return fmt.Errorf("stream %s: property %q loads into column %q of %s, which holds property %q: leave one out",
				table.stream, c.property, c.name, l.qualified(table.name), *s.property)
		}
		typ := widerType(s.typ, c.typ)
		if typ != s.typ {
			sql := fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %[2]s TYPE %[3]s USING %[2]s::%[3]s", l.qualified(table.name), pgx.Identifier{c.name}.Sanitize(), typ)
			if _, err := tx.Exec(l.ctx, sql); err != nil {
				return fmt.Errorf("stream %s: widen column %s to %s: %w", table.stream, c.name, typ, err)
			}
			if l.log != nil {
				l.log.Info(fmt.Sprintf("widened column %s of %s from %s to %s", c.name, l.qualified(table.name), s.typ, typ))
			}
		}
		table.columns[c.property] = &pgColumn{name: c.name, typ: typ}
	}
	// Columns the schema no longer names stay, as do their values.
	if _, ok := existing[columnDeletedAt]; ok && table.columns[columnDeletedAt] == nil {
		table.clearsDeletedAt = true
	}
	l.tables[table.stream] = table
	return nil
}

// widerType is a type holding values of both: the stored one when it
// already does, numeric for integers that became numbers, text otherwise.
func widerType(stored, wanted string) string {
	switch {
	case stored == wanted, stored == typeText:
		return stored
	case stored == typeNumeric && wanted == typeBigint:
		return typeNumeric
	case stored == typeBigint && wanted == typeNumeric:
		return typeNumeric
	}
	return typeText
}

// merger merges records within one transaction.
type merger struct {
	l         *postgresLoader
	tx        pgx.Tx
	batchedAt string
	// staging is each stream's staging table in this transaction.
	staging map[string]string
	tables  int
}

// mergedRow is a record, or with a key all of a key's records folded in
// order: each property's last value (nil when none carried it).
type mergedRow struct {
	values             [][]byte
	extracted, version []byte
	present            []byte // a bit per property
	// key is the row's key as foldRows compares keys (none without key).
	key string
}

// merge upserts a stream's runs of records: by key, each key's records
// folded into one row, loaded through a staging table so that the
// properties no record carried keep their stored values; without key,
// appended in order.
func (m *merger) merge(stream string, runs []*recordRun) error {
	table := m.l.tables[stream]
	if table == nil {
		return fmt.Errorf("stream %s: RECORD before its SCHEMA", stream)
	}
	var properties []string
	position := map[string]int{}
	for _, run := range runs {
		for _, p := range run.properties {
			if c := table.columns[p]; c == nil || p == columnExtractedAt || p == columnBatchedAt || p == columnTableVersion {
				return fmt.Errorf("stream %s: a record has property %q, which its SCHEMA lacks", stream, p)
			}
			if _, ok := position[p]; !ok {
				position[p] = len(properties)
				properties = append(properties, p)
			}
		}
	}
	rows, err := foldRows(stream, table, runs, properties, position)
	if err != nil {
		return err
	}
	if len(table.keys) == 0 {
		// Appended rows lack nothing: absent properties are NULL.
		all := make([]byte, (len(properties)+7)/8)
		for i := range all {
			all[i] = 0xff
		}
		for i := range rows {
			rows[i].present = all
		}
	}
	// Rows are grouped by the properties they carry; after folding a key
	// is in one group only, so the groups' order does not matter.
	groups := map[string][]int{}
	var order []string
	for i, r := range rows {
		sig := string(r.present)
		if _, ok := groups[sig]; !ok {
			order = append(order, sig)
		}
		groups[sig] = append(groups[sig], i)
	}
	for _, sig := range order {
		if err := m.load(stream, table, properties, []byte(sig), rows, groups[sig]); err != nil {
			return err
		}
	}
	return nil
}

// foldRows turns runs into rows: one per record, or with a key one per key
// holding each property's last value, the last record's time_extracted and
// version.
func foldRows(stream string, table *pgTable, runs []*recordRun, properties []string, position map[string]int) ([]mergedRow, error) {
	var rows []mergedRow
	byKey := map[string]int{}
	var key []byte
	for _, run := range runs {
		at := make([]int, len(run.properties))
		for k, p := range run.properties {
			at[k] = position[p]
		}
		keyAt := make([]int, len(table.keys))
		for i, k := range table.keys {
			keyAt[i] = slices.Index(run.properties, k)
			if keyAt[i] < 0 {
				return nil, fmt.Errorf("stream %s: a record lacks key property %q", stream, k)
			}
		}
		n := len(run.properties)
		for r := range run.rows() {
			j := len(rows)
			var folded string
			if len(keyAt) > 0 {
				key = key[:0]
				for i, k := range keyAt {
					v := run.value(r, k)
					if isNull(v) {
						return nil, fmt.Errorf("stream %s: a record's key property %q is null", stream, table.keys[i])
					}
					key = append(appendKeyValue(key, v), 0)
				}
				if found, ok := byKey[string(key)]; ok {
					j = found
				} else {
					folded = string(key)
					byKey[folded] = j
				}
			}
			if j == len(rows) {
				rows = append(rows, mergedRow{values: make([][]byte, len(properties)), present: make([]byte, (len(properties)+7)/8), key: folded})
			}
			row := &rows[j]
			for k := range n {
				row.values[at[k]] = run.value(r, k)
				row.present[at[k]/8] |= 1 << (at[k] % 8)
			}
			row.extracted, row.version = run.value(r, n), run.value(r, n+1)
		}
	}
	return rows, nil
}

// appendKeyValue appends a key value in a form equal for values the
// table's key holds equal: a string's contents, a number's exact value
// (2.0, 2.00 and 2 are one key), other values as written.
func appendKeyValue(dst, v []byte) []byte {
	switch {
	case v[0] == '"':
		if out, err := appendUnquoted(append(dst, 's'), v); err == nil {
			return out
		}
	case isPlainInteger(v):
		// Already the canonical form, as every integer key the tap sends.
		return append(append(dst, 'n'), v...)
	case types.IsJSONNumber(v) && len(v) <= 100:
		var exact big.Rat
		// Exponents are bounded: 1e999999999 would take memory as a
		// fraction.
		if e := bytes.IndexAny(v, "eE"); e < 0 || len(v)-e <= 4 {
			if _, ok := exact.SetString(string(v)); ok {
				return append(append(dst, 'n'), exact.RatString()...)
			}
		}
	}
	return append(append(dst, 'r'), v...)
}

// isPlainInteger: digits, an optional minus, no leading zero, not -0.
func isPlainInteger(v []byte) bool {
	digits := v
	if len(v) > 0 && v[0] == '-' {
		digits = v[1:]
	}
	if len(digits) == 0 || digits[0] == '0' && (len(digits) > 1 || len(v) > 1) {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// load writes one group of rows. Keys are unique once folded, so rows
// whose keys the table lacks can simply be appended at COPY's speed: when
// the job knows them new (keyBound) or the server finds none of them. A
// COPY is never tried to find out: each one failing at a stored key would
// be an ERROR in the warehouse's log, holding the key's value. At the
// first key the table holds, the stream's loads merge through its staging
// table and an upsert of the group's columns for the rest of the job.
// Without key, rows are appended.
func (m *merger) load(stream string, table *pgTable, properties []string, present []byte, rows []mergedRow, group []int) error {
	var columns []*pgColumn
	var carried []int
	for i, p := range properties {
		if present[i/8]&(1<<(i%8)) != 0 {
			columns = append(columns, table.columns[p])
			carried = append(carried, i)
		}
	}
	names := make([]string, 0, len(columns)+4)
	for _, c := range columns {
		names = append(names, pgx.Identifier{c.name}.Sanitize())
	}
	names = append(names, columnExtractedAt, columnBatchedAt, columnTableVersion)
	if table.clearsDeletedAt {
		names = append(names, columnDeletedAt)
	}
	columnList := strings.Join(names, ", ")

	l := m.l
	buf := &l.copyBuf
	buf.Reset()
	var err error
	for _, r := range group {
		row := &rows[r]
		for j, i := range carried {
			if l.scratch, err = appendCopyValue(buf, l.scratch, row.values[i], columns[j].typ); err != nil {
				return fmt.Errorf("stream %s: property %q: %w", stream, properties[i], err)
			}
			buf.WriteByte('\t')
		}
		if l.scratch, err = appendCopyValue(buf, l.scratch, row.extracted, typeTimestamptz); err != nil {
			return fmt.Errorf("stream %s: time_extracted: %w", stream, err)
		}
		buf.WriteByte('\t')
		buf.WriteString(m.batchedAt)
		buf.WriteByte('\t')
		if l.scratch, err = appendCopyValue(buf, l.scratch, row.version, typeBigint); err != nil {
			return fmt.Errorf("stream %s: version: %w", stream, err)
		}
		if table.clearsDeletedAt {
			buf.WriteString("\t\\N")
		}
		buf.WriteByte('\n')
	}
	target := l.qualified(table.name)
	appendSQL := fmt.Sprintf("COPY %s (%s) FROM STDIN", target, columnList)
	if len(table.keys) == 0 {
		if _, err := m.tx.Conn().PgConn().CopyFrom(l.ctx, bytes.NewReader(buf.Bytes()), appendSQL); err != nil {
			return fmt.Errorf("stream %s: append to %s: %w", stream, target, err)
		}
		return nil
	}
	if !table.merges {
		isNew, keys, err := m.keysAreNew(table, target, properties, rows, group)
		if err != nil {
			return fmt.Errorf("stream %s: look up keys in %s: %w", stream, target, err)
		}
		if isNew {
			if _, err := m.tx.Conn().PgConn().CopyFrom(l.ctx, bytes.NewReader(buf.Bytes()), appendSQL); err != nil {
				return fmt.Errorf("stream %s: append to %s: %w", stream, target, err)
			}
			l.noteAppended(table, keys)
			return nil
		}
		table.merges = true
		l.forgetAppended(table)
	}
	staging, err := m.stagingTable(stream, target)
	if err != nil {
		return err
	}
	if _, err := m.tx.Conn().PgConn().CopyFrom(l.ctx, bytes.NewReader(buf.Bytes()), fmt.Sprintf("COPY %s (%s) FROM STDIN", staging, columnList)); err != nil {
		return fmt.Errorf("stream %s: copy into staging table: %w", stream, err)
	}
	var keyNames, updates []string
	for _, k := range table.keys {
		keyNames = append(keyNames, pgx.Identifier{table.columns[k].name}.Sanitize())
	}
	for _, n := range names {
		if !slices.Contains(keyNames, n) {
			updates = append(updates, fmt.Sprintf("%s = EXCLUDED.%s", n, n))
		}
	}
	merge := fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM %s ON CONFLICT (%s) DO UPDATE SET %s",
		target, columnList, columnList, staging, strings.Join(keyNames, ", "), strings.Join(updates, ", "))
	if _, err := m.tx.Exec(l.ctx, merge); err != nil {
		return fmt.Errorf("stream %s: merge into %s: %w", stream, target, err)
	}
	if _, err := m.tx.Exec(l.ctx, "TRUNCATE "+staging); err != nil {
		return fmt.Errorf("stream %s: empty staging table: %w", stream, err)
	}
	return nil
}

// keysAreNew tells whether the table holds none of the group's keys: as
// the job knows, or else as holdsAnyKey finds.
func (m *merger) keysAreNew(table *pgTable, target string, properties []string, rows []mergedRow, group []int) (bool, *groupKeys, error) {
	if !table.held.known {
		if err := m.lookUpKeys(table, target); err != nil {
			return false, nil, err
		}
	}
	keys := m.l.keysOf(table, properties, rows, group)
	if table.held.allNew(keys) {
		return true, keys, nil
	}
	held, err := m.holdsAnyKey(table, target, properties, rows, group)
	return !held, keys, err
}

// lookUpKeys learns whether the table holds rows and, with a bigint first
// key column, the greatest first key: one step down its primary key's
// index.
func (m *merger) lookUpKeys(table *pgTable, target string) error {
	first := table.columns[table.keys[0]]
	column := pgx.Identifier{first.name}.Sanitize()
	var greatest string
	// Qualified: a bare name in ORDER BY would be the output column, the
	// text, ordered as text ("999" after "1000").
	err := m.tx.QueryRow(m.l.ctx, fmt.Sprintf("SELECT t.%[1]s::text FROM %[2]s t ORDER BY t.%[1]s DESC LIMIT 1", column, target)).Scan(&greatest)
	held := keyBound{known: true}
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return err
	default:
		held.rows = true
		if first.typ == typeBigint {
			held.greatest, err = strconv.ParseInt(greatest, 10, 64)
			held.greatestKnown = err == nil
		}
	}
	table.held = held
	return nil
}

// keysOf reads the group's keys for allNew: the range of a bigint first
// key, parsed here as the server parses it; and when the table keeps the
// keys appended, their hashes.
func (l *postgresLoader) keysOf(table *pgTable, properties []string, rows []mergedRow, group []int) *groupKeys {
	g := &groupKeys{}
	if table.columns[table.keys[0]].typ == typeBigint {
		i := slices.Index(properties, table.keys[0])
		g.ranged = true
		for n, r := range group {
			v, err := strconv.ParseInt(string(rows[r].values[i]), 10, 64)
			if err != nil {
				g.ranged = false
				break
			}
			if n == 0 || v < g.least {
				g.least = v
			}
			if n == 0 || v > g.greatest {
				g.greatest = v
			}
		}
	}
	if table.held.appended != nil {
		g.hashes, g.hashed = l.hashKeys(table, properties, rows, group)
	}
	return g
}

// hashKeys hashes each row's key as foldRows compares keys, when that form
// is the same for all values the table holds equal: strings in text
// columns (of a table this job created, so of the database's collation,
// always deterministic: equal is the same bytes), plain integers, booleans.
// Not numbers such as 2.50, timestamps nor JSON, which one value may be
// written as in several ways.
func (l *postgresLoader) hashKeys(table *pgTable, properties []string, rows []mergedRow, group []int) ([]uint64, bool) {
	at := make([]int, len(table.keys))
	for k, key := range table.keys {
		at[k] = slices.Index(properties, key)
	}
	hashes := make([]uint64, 0, len(group))
	for _, r := range group {
		for k, i := range at {
			v := rows[r].values[i]
			var oneForm bool
			switch table.columns[table.keys[k]].typ {
			case typeText:
				oneForm = v[0] == '"'
			case typeBigint, typeNumeric:
				oneForm = isPlainInteger(v)
			case typeBoolean:
				oneForm = string(v) == "true" || string(v) == "false"
			}
			if !oneForm {
				return nil, false
			}
		}
		hashes = append(hashes, maphash.String(l.keySeed, rows[r].key))
	}
	return hashes, true
}

// noteAppended takes in the keys of rows appended to the table.
func (l *postgresLoader) noteAppended(table *pgTable, g *groupKeys) {
	b := &table.held
	if !b.rows || g.greatest > b.greatest {
		b.greatest = g.greatest
	}
	b.greatestKnown = g.ranged && (!b.rows || b.greatestKnown)
	b.rows = true
	if b.appended == nil {
		return
	}
	if !g.hashed || l.appendedKeys+len(g.hashes) > maxAppendedKeys {
		l.forgetAppended(table)
		return
	}
	kept := len(b.appended)
	for _, h := range g.hashes {
		b.appended[h] = struct{}{}
	}
	l.appendedKeys += len(b.appended) - kept
}

// forgetAppended drops the keys kept of the table's appended rows.
func (l *postgresLoader) forgetAppended(table *pgTable) {
	l.appendedKeys -= len(table.held.appended)
	table.held.appended = nil
}

// holdsAnyKey reports whether the table holds a key of the group's rows.
// Each key is one index lookup of the table's own equality (a collation's,
// a number's value), the same the primary key enforces; the lookups sit in
// a LATERAL subquery with LIMIT so that the planner cannot trade them for a
// scan of a large table.
func (m *merger) holdsAnyKey(table *pgTable, target string, properties []string, rows []mergedRow, group []int) (bool, error) {
	l := m.l
	keyValues := make([][]string, len(table.keys))
	var arrays, names, matches []string
	for k, key := range table.keys {
		column := table.columns[key]
		i := slices.Index(properties, key)
		keyValues[k] = make([]string, 0, len(group))
		for _, r := range group {
			var text []byte
			var err error
			if text, l.scratch, err = columnText(l.scratch, rows[r].values[i], column.typ); err != nil {
				return false, fmt.Errorf("key property %q: %w", key, err)
			}
			keyValues[k] = append(keyValues[k], string(text))
		}
		// Sent as text and read by the column's type, as COPY reads it.
		name := fmt.Sprintf("key%d", k+1)
		arrays = append(arrays, fmt.Sprintf("$%d::text[]", k+1))
		names = append(names, name)
		matches = append(matches, fmt.Sprintf("t.%s = k.%s::%s", pgx.Identifier{column.name}.Sanitize(), name, column.typ))
	}
	// Keys looked up in order walk down neighbouring index pages: random
	// text keys were a third cheaper to look up sorted than as they came.
	order := make([]int, len(group))
	for n := range order {
		order[n] = n
	}
	slices.SortFunc(order, func(a, b int) int {
		for _, values := range keyValues {
			if c := strings.Compare(values[a], values[b]); c != 0 {
				return c
			}
		}
		return 0
	})
	args := make([]any, len(keyValues))
	for k, values := range keyValues {
		sorted := make([]string, len(order))
		for n, i := range order {
			sorted[n] = values[i]
		}
		args[k] = sorted
	}
	probe := fmt.Sprintf("SELECT EXISTS (SELECT FROM unnest(%s) AS k(%s), LATERAL (SELECT FROM %s t WHERE %s LIMIT 1) AS held)",
		strings.Join(arrays, ", "), strings.Join(names, ", "), target, strings.Join(matches, " AND "))
	var held bool
	if err := m.tx.QueryRow(l.ctx, probe, args...).Scan(&held); err != nil {
		return false, err
	}
	return held, nil
}

// stagingTable is the stream's staging table in this transaction, created
// on first use (and again after its table changed shape).
func (m *merger) stagingTable(stream, target string) (string, error) {
	if name, ok := m.staging[stream]; ok {
		return name, nil
	}
	m.tables++
	name := fmt.Sprintf("_tap_postgres_load_%d", m.tables)
	if _, err := m.tx.Exec(m.l.ctx, fmt.Sprintf("CREATE TEMP TABLE %s (LIKE %s) ON COMMIT DROP", name, target)); err != nil {
		return "", fmt.Errorf("stream %s: staging table: %w", stream, err)
	}
	m.staging[stream] = name
	return name, nil
}

// applyVersion removes the stream's rows of other versions.
func (l *postgresLoader) applyVersion(tx pgx.Tx, stream string, version int64) error {
	table := l.tables[stream]
	if table == nil {
		return fmt.Errorf("stream %s: ACTIVATE_VERSION before its SCHEMA", stream)
	}
	// Any other version goes, not only smaller ones: a version is a clock
	// reading, and the job that made this one may run on a clock behind.
	tag, err := tx.Exec(l.ctx, fmt.Sprintf("DELETE FROM %s WHERE %s IS DISTINCT FROM $1", l.qualified(table.name), columnTableVersion), version)
	if err != nil {
		return fmt.Errorf("stream %s: activate version %d: %w", stream, version, err)
	}
	if n := tag.RowsAffected(); n > 0 && l.log != nil {
		l.log.Info(fmt.Sprintf("stream %s: version %d active, %d rows of other versions removed", stream, version, n))
	}
	return nil
}

// SafeName is a property or stream name as a destination identifier:
// lower case, characters other than letters, digits and `_` as `_`, a
// leading digit prefixed with `_`, at most 63 bytes.
func SafeName(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	s := b.String()
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		s = "_" + s
	}
	if len(s) > maxIdentifier {
		s = s[:maxIdentifier]
	}
	return s
}

// columnType maps a property's JSON Schema to a column type. Numbers are
// numeric, never floating point: a value is stored exactly as sent.
func columnType(schema json.RawMessage) string {
	var s struct {
		Type    json.RawMessage `json:"type"`
		Format  string          `json:"format"`
		Minimum json.Number     `json:"minimum"`
		Maximum json.Number     `json:"maximum"`
	}
	if json.Unmarshal(schema, &s) != nil {
		return typeJSONB
	}
	var kinds []string
	var one string
	if json.Unmarshal(s.Type, &one) == nil {
		kinds = []string{one}
	} else if json.Unmarshal(s.Type, &kinds) != nil {
		return typeJSONB
	}
	kinds = slices.DeleteFunc(kinds, func(t string) bool { return t == "null" })
	if len(kinds) != 1 {
		return typeJSONB
	}
	switch kinds[0] {
	case "integer":
		if fitsBigint(s.Minimum) && fitsBigint(s.Maximum) {
			return typeBigint
		}
		return typeNumeric
	case "number":
		return typeNumeric
	case "boolean":
		return typeBoolean
	case "string":
		if s.Format == "date-time" {
			return typeTimestamptz
		}
		return typeText
	}
	return typeJSONB
}

func fitsBigint(bound json.Number) bool {
	_, err := strconv.ParseInt(string(bound), 10, 64)
	return err == nil
}

func isNull(v json.RawMessage) bool { return len(v) == 0 || string(v) == "null" }

// appendCopyValue writes a JSON value as a COPY text field of a column of
// type typ (see columnText); absent or null is NULL. scratch is reused for
// decoding strings and returned.
func appendCopyValue(buf *bytes.Buffer, scratch, v []byte, typ string) ([]byte, error) {
	if isNull(v) {
		buf.WriteString(`\N`)
		return scratch, nil
	}
	text, scratch, err := columnText(scratch, v, typ)
	if err != nil {
		return scratch, err
	}
	appendCopyText(buf, text)
	return scratch, nil
}

// columnText is a non-null JSON value as the text a column of type typ
// reads, refusing a value of another JSON type than the column holds
// (PostgreSQL would read "yes" as a boolean or "now" as a time): JSON
// itself for jsonb, a string's contents, numbers as written (every digit
// kept). A string's contents are decoded into scratch, which is returned.
func columnText(scratch, v []byte, typ string) (text, newScratch []byte, err error) {
	switch typ {
	case typeJSONB:
		// jsonb checks what it is given.
		return v, scratch, nil
	case typeBigint, typeNumeric:
		if !types.IsJSONNumber(v) {
			return nil, scratch, fmt.Errorf("%.40s is not a number", v)
		}
		return v, scratch, nil
	case typeBoolean:
		if string(v) != "true" && string(v) != "false" {
			return nil, scratch, fmt.Errorf("%.40s is not a boolean", v)
		}
		return v, scratch, nil
	}
	if v[0] != '"' {
		if typ != typeText {
			return nil, scratch, fmt.Errorf("%.40s is not a string", v)
		}
		// A column widened to text takes any value as its JSON text.
		if string(v) != "true" && string(v) != "false" && !types.IsJSONNumber(v) && !json.Valid(v) {
			return nil, scratch, fmt.Errorf("%.40s is not a JSON value", v)
		}
		return v, scratch, nil
	}
	if scratch, err = appendUnquoted(scratch[:0], v); err != nil {
		return nil, scratch, err
	}
	if bytes.IndexByte(scratch, 0) >= 0 {
		return nil, scratch, errors.New("PostgreSQL text cannot hold a NUL character")
	}
	if typ == typeTimestamptz && !isDateTime(scratch) {
		return nil, scratch, fmt.Errorf("%.40q is not an ISO 8601 date-time", scratch)
	}
	return scratch, scratch, nil
}

// isDateTime reports whether s is an ISO 8601 date or date-time
// (YYYY-MM-DD, then [T ]hh:mm[:ss[.fraction]], then Z or ±hh[[:]mm]).
func isDateTime(s []byte) bool {
	i := 0
	digits := func(n int) bool {
		for range n {
			if i >= len(s) || s[i] < '0' || s[i] > '9' {
				return false
			}
			i++
		}
		return true
	}
	char := func(c byte) bool {
		if i < len(s) && s[i] == c {
			i++
			return true
		}
		return false
	}
	if !digits(4) || !char('-') || !digits(2) || !char('-') || !digits(2) {
		return false
	}
	if i == len(s) {
		return true
	}
	if !char('T') && !char(' ') || !digits(2) || !char(':') || !digits(2) {
		return false
	}
	if char(':') {
		if !digits(2) {
			return false
		}
		if char('.') && !digits(1) {
			return false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	switch {
	case i == len(s):
		return true
	case char('Z'):
		return i == len(s)
	case char('+') || char('-'):
		if !digits(2) {
			return false
		}
		if i == len(s) {
			return true
		}
		char(':')
		return digits(2) && i == len(s)
	}
	return false
}

// appendCopyText escapes s for COPY's text format.
func appendCopyText(buf *bytes.Buffer, s []byte) {
	start := 0
	for i, c := range s {
		var escaped string
		switch c {
		case '\\':
			escaped = `\\`
		case '\n':
			escaped = `\n`
		case '\r':
			escaped = `\r`
		case '\t':
			escaped = `\t`
		default:
			continue
		}
		buf.Write(s[start:i])
		buf.WriteString(escaped)
		start = i + 1
	}
	buf.Write(s[start:])
}

// quoteLiteral quotes s as an SQL string literal (COMMENT takes no
// parameters) for a session with standard_conforming_strings on.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
