package destination

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The columns Stitch adds to every table.
const (
	columnExtractedAt  = "_sdc_extracted_at"
	columnBatchedAt    = "_sdc_batched_at"
	columnTableVersion = "_sdc_table_version"
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
// are held in order and applied in one transaction on flush.
type postgresLoader struct {
	ctx    context.Context
	conn   *pgx.Conn
	dbSchema string
	clock  func() time.Time
	log    *slog.Logger
	tables map[string]*pgTable
	// streamOfTable catches two streams that load into one table.
	streamOfTable map[string]string
	ops           []pgOp
	copyBuf       bytes.Buffer
}

// pgTable is a stream's table as this job knows it.
type pgTable struct {
	stream string
	name   string
	// columns by property name; keys are property names.
	columns map[string]*pgColumn
	keys    []string
}

type pgColumn struct {
	name, typ string
}

// pgOp is one held step: a schema to apply, a run of records with the same
// properties, or a version to activate — applied in arrival order.
type pgOp struct {
	stream  string
	schema  *wantedTable
	records *recordRun
	version *int64
}

type recordRun struct {
	properties []string
	rows       [][]json.RawMessage
	extracted  []string
	versions   []*int64
}

// OpenPostgres loads into schema (created when missing) of the database dsn
// names.
func OpenPostgres(ctx context.Context, dsn, schema string, opts Options) (Destination, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres destination: dsn: %w", err)
	}
	// quoteLiteral relies on it; it has been the default since 9.1.
	cfg.RuntimeParams["standard_conforming_strings"] = "on"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres destination: connect: %w", err)
	}
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("postgres destination: create schema %s: %w", schema, err)
	}
	l := &postgresLoader{ctx: ctx, conn: conn, dbSchema: schema, clock: opts.Clock, log: opts.Log,
		tables: map[string]*pgTable{}, streamOfTable: map[string]string{}}
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
	props, err := orderedProperties(s.Properties)
	if err != nil {
		return fmt.Errorf("stream %s: SCHEMA properties: %w", m.Stream, err)
	}
	w := &wantedTable{keys: m.KeyProperties}
	for _, p := range props {
		w.columns = append(w.columns, wantedColumn{property: p.name, name: SafeName(p.name), typ: columnType(p.schema)})
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
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(m.Record, &fields); err != nil || fields == nil {
		return fmt.Errorf("stream %s: a RECORD's record is not a JSON object", m.Stream)
	}
	props := make([]string, 0, len(fields))
	for p := range fields {
		props = append(props, p)
	}
	slices.Sort(props)
	var run *recordRun
	if n := len(l.ops); n > 0 && l.ops[n-1].stream == m.Stream && l.ops[n-1].records != nil &&
		slices.Equal(l.ops[n-1].records.properties, props) {
		run = l.ops[n-1].records
	} else {
		run = &recordRun{properties: props}
		l.ops = append(l.ops, pgOp{stream: m.Stream, records: run})
	}
	row := make([]json.RawMessage, len(props))
	for i, p := range props {
		row[i] = fields[p]
	}
	run.rows = append(run.rows, row)
	run.extracted = append(run.extracted, m.TimeExtracted)
	run.versions = append(run.versions, m.Version)
	return nil
}

func (l *postgresLoader) activateVersion(m *message) error {
	if m.Version == nil {
		return fmt.Errorf("stream %s: ACTIVATE_VERSION without a version", m.Stream)
	}
	l.ops = append(l.ops, pgOp{stream: m.Stream, version: m.Version})
	return nil
}

// flush applies every held step in one transaction.
func (l *postgresLoader) flush() error {
	if len(l.ops) == 0 {
		return nil
	}
	tx, err := l.conn.Begin(l.ctx)
	if err != nil {
		return fmt.Errorf("postgres destination: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(l.ctx))
	batchedAt := l.clock().UTC().Format(time.RFC3339Nano)
	// Tables are re-read inside the transaction: what this job learnt
	// before a failed flush may not have been committed.
	known := l.tables
	l.tables = map[string]*pgTable{}
	for k, v := range known {
		l.tables[k] = v
	}
	for _, op := range l.ops {
		switch {
		case op.schema != nil:
			err = l.applySchema(tx, op.stream, op.schema)
		case op.records != nil:
			err = l.applyRecords(tx, op.stream, op.records, batchedAt)
		default:
			err = l.applyVersion(tx, op.stream, *op.version)
		}
		if err != nil {
			l.tables = known
			return fmt.Errorf("postgres destination: %w", err)
		}
	}
	if err := tx.Commit(l.ctx); err != nil {
		l.tables = known
		return fmt.Errorf("postgres destination: commit: %w", err)
	}
	l.ops = l.ops[:0]
	return nil
}

func (l *postgresLoader) close() error { return l.conn.Close(context.WithoutCancel(l.ctx)) }

func (l *postgresLoader) qualified(table string) string {
	return pgx.Identifier{l.dbSchema, table}.Sanitize()
}

// streamComment marks a table with the stream it holds, so a later stream
// whose name makes the same table name is caught, across jobs.
func streamComment(stream string) string { return "tap-postgres stream " + stream }

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
	if comment == nil || *comment != streamComment(stream) {
		holder := "something other than tap-postgres"
		if comment != nil && strings.HasPrefix(*comment, streamComment("")) {
			holder = fmt.Sprintf("stream %q", strings.TrimPrefix(*comment, streamComment("")))
		}
		return fmt.Errorf("stream %q loads into table %s, which holds %s: rename one of them or leave one out", stream, l.qualified(name), holder)
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
	if _, err := tx.Exec(l.ctx, fmt.Sprintf("COMMENT ON TABLE %s IS %s", l.qualified(table.name), quoteLiteral(streamComment(table.stream)))); err != nil {
		return fmt.Errorf("stream %s: comment on table %s: %w", table.stream, l.qualified(table.name), err)
	}
	for _, c := range w.columns {
		if err := l.commentColumn(tx, table, c); err != nil {
			return err
		}
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

// applyRecords upserts a run of records that carry the same properties: by
// key through a temporary table, so that properties the records lack keep
// their stored values; without key, appended.
func (l *postgresLoader) applyRecords(tx pgx.Tx, stream string, run *recordRun, batchedAt string) error {
	table := l.tables[stream]
	if table == nil {
		return fmt.Errorf("stream %s: RECORD before its SCHEMA", stream)
	}
	columns := make([]*pgColumn, len(run.properties))
	for i, p := range run.properties {
		c := table.columns[p]
		if c == nil || p == columnExtractedAt || p == columnBatchedAt || p == columnTableVersion {
			return fmt.Errorf("stream %s: a record has property %q, which its SCHEMA lacks", stream, p)
		}
		columns[i] = c
	}
	keyIndex := make([]int, len(table.keys))
	for i, k := range table.keys {
		keyIndex[i] = slices.Index(run.properties, k)
		if keyIndex[i] < 0 {
			return fmt.Errorf("stream %s: a record lacks key property %q", stream, k)
		}
	}
	rows := lastPerKey(run, keyIndex)
	names := make([]string, 0, len(columns)+3)
	for _, c := range columns {
		names = append(names, pgx.Identifier{c.name}.Sanitize())
	}
	names = append(names, columnExtractedAt, columnBatchedAt, columnTableVersion)
	columnList := strings.Join(names, ", ")

	buf := &l.copyBuf
	buf.Reset()
	for _, r := range rows {
		for i, v := range run.rows[r] {
			if slices.Contains(keyIndex, i) && isNull(v) {
				return fmt.Errorf("stream %s: a record's key property %q is null", stream, run.properties[i])
			}
			var err error
			if err = appendCopyValue(buf, v, columns[i].typ); err != nil {
				return fmt.Errorf("stream %s: property %q: %w", stream, run.properties[i], err)
			}
			buf.WriteByte('\t')
		}
		if run.extracted[r] == "" {
			buf.WriteString(`\N`)
		} else {
			appendCopyText(buf, run.extracted[r])
		}
		buf.WriteByte('\t')
		buf.WriteString(batchedAt)
		buf.WriteByte('\t')
		if v := run.versions[r]; v == nil {
			buf.WriteString(`\N`)
		} else {
			buf.WriteString(strconv.FormatInt(*v, 10))
		}
		buf.WriteByte('\n')
	}
	target := l.qualified(table.name)
	if len(table.keys) == 0 {
		if _, err := tx.Conn().PgConn().CopyFrom(l.ctx, bytes.NewReader(buf.Bytes()), fmt.Sprintf("COPY %s (%s) FROM STDIN", target, columnList)); err != nil {
			return fmt.Errorf("stream %s: append to %s: %w", stream, target, err)
		}
		return nil
	}
	const staging = "_tap_postgres_load"
	if _, err := tx.Exec(l.ctx, fmt.Sprintf("CREATE TEMP TABLE %s (LIKE %s) ON COMMIT DROP", staging, target)); err != nil {
		return fmt.Errorf("stream %s: staging table: %w", stream, err)
	}
	if _, err := tx.Conn().PgConn().CopyFrom(l.ctx, bytes.NewReader(buf.Bytes()), fmt.Sprintf("COPY %s (%s) FROM STDIN", staging, columnList)); err != nil {
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
	if _, err := tx.Exec(l.ctx, merge); err != nil {
		return fmt.Errorf("stream %s: merge into %s: %w", stream, target, err)
	}
	if _, err := tx.Exec(l.ctx, "DROP TABLE "+staging); err != nil {
		return fmt.Errorf("stream %s: drop staging table: %w", stream, err)
	}
	return nil
}

// lastPerKey returns the indexes of the run's rows to load, in order: with
// a key, only the last record of each key (ON CONFLICT cannot touch a row
// twice in one statement).
func lastPerKey(run *recordRun, keyIndex []int) []int {
	all := make([]int, 0, len(run.rows))
	if len(keyIndex) == 0 {
		for i := range run.rows {
			all = append(all, i)
		}
		return all
	}
	last := make(map[string]int, len(run.rows))
	var key []byte
	for i, row := range run.rows {
		key = key[:0]
		for _, k := range keyIndex {
			key = append(append(key, row[k]...), 0)
		}
		last[string(key)] = i
	}
	for i, row := range run.rows {
		key = key[:0]
		for _, k := range keyIndex {
			key = append(append(key, row[k]...), 0)
		}
		if last[string(key)] == i {
			all = append(all, i)
		}
	}
	return all
}

// applyVersion removes the stream's rows of older versions.
func (l *postgresLoader) applyVersion(tx pgx.Tx, stream string, version int64) error {
	table := l.tables[stream]
	if table == nil {
		return fmt.Errorf("stream %s: ACTIVATE_VERSION before its SCHEMA", stream)
	}
	tag, err := tx.Exec(l.ctx, fmt.Sprintf("DELETE FROM %s WHERE %s IS NULL OR %[2]s < $1", l.qualified(table.name), columnTableVersion), version)
	if err != nil {
		return fmt.Errorf("stream %s: activate version %d: %w", stream, version, err)
	}
	if n := tag.RowsAffected(); n > 0 && l.log != nil {
		l.log.Info(fmt.Sprintf("stream %s: version %d active, %d rows of older versions removed", stream, version, n))
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

// property is one schema property in declaration order.
type property struct {
	name   string
	schema json.RawMessage
}

// orderedProperties reads a JSON object's members in order (a map would
// lose the column order of the source).
func orderedProperties(raw json.RawMessage) ([]property, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not an object")
	}
	var props []property
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		props = append(props, property{name: tok.(string), schema: v})
	}
	return props, nil
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
	var types []string
	var one string
	if json.Unmarshal(s.Type, &one) == nil {
		types = []string{one}
	} else if json.Unmarshal(s.Type, &types) != nil {
		return typeJSONB
	}
	types = slices.DeleteFunc(types, func(t string) bool { return t == "null" })
	if len(types) != 1 {
		return typeJSONB
	}
	switch types[0] {
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
	if bound == "" {
		return false
	}
	f, err := strconv.ParseFloat(string(bound), 64)
	return err == nil && f >= math.MinInt64 && f <= math.MaxInt64
}

func isNull(v json.RawMessage) bool { return len(v) == 0 || string(v) == "null" }

// appendCopyValue writes a JSON value as a COPY text field of a column of
// type typ: JSON itself for jsonb, a string's contents, other values as
// written (numbers keep every digit).
func appendCopyValue(buf *bytes.Buffer, v json.RawMessage, typ string) error {
	switch {
	case isNull(v):
		buf.WriteString(`\N`)
	case typ == typeJSONB || v[0] != '"':
		appendCopyText(buf, string(v))
	default:
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return err
		}
		if strings.IndexByte(s, 0) >= 0 {
			return errors.New("PostgreSQL text cannot hold a NUL character")
		}
		appendCopyText(buf, s)
	}
	return nil
}

// appendCopyText escapes s for COPY's text format.
func appendCopyText(buf *bytes.Buffer, s string) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			buf.WriteString(`\\`)
		case '\n':
			buf.WriteString(`\n`)
		case '\r':
			buf.WriteString(`\r`)
		case '\t':
			buf.WriteString(`\t`)
		default:
			buf.WriteByte(c)
		}
	}
}

// quoteLiteral quotes s as an SQL string literal (COMMENT takes no
// parameters) for a session with standard_conforming_strings on.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
