package cli_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tap-postgres/tap-postgres/internal/cli"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

// ident quotes an identifier (any characters) for SQL.
func ident(parts ...string) string { return pgx.Identifier(parts).Sanitize() }

// syncCatalog writes catalog and runs a sync with cfgPath; it fails the test
// unless the tap exits 0.
func syncCatalog(t *testing.T, cfgPath string, catalog map[string]any, extra ...string) tapResult {
	t.Helper()
	args := append([]string{"--config", cfgPath, "--catalog", writeFile(t, "catalog.json", catalog)}, extra...)
	r := runTap(t, cli.Env{}, args...)
	if r.code != 0 {
		t.Fatalf("sync exited %d:\n%s", r.code, r.stderr)
	}
	return r
}

// streamIDs lists the catalog's tap_stream_ids in catalog order.
func streamIDs(catalog map[string]any) []string {
	var ids []string
	for _, s := range streams(catalog) {
		ids = append(ids, s["tap_stream_id"].(string))
	}
	return ids
}

// schemaPropertyNames are the property names of a JSON Schema object.
func schemaPropertyNames(t *testing.T, schema any) []string {
	t.Helper()
	obj, ok := schema.(map[string]any)
	if !ok {
		t.Fatalf("schema is not an object: %v", schema)
	}
	props, ok := obj["properties"].(map[string]any)
	if !ok {
		t.Fatalf("schema has no properties object: %v", schema)
	}
	var names []string
	for k := range props {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// metadataColumns lists the column names that have a ["properties", col]
// metadata entry.
func metadataColumns(stream map[string]any) []string {
	var names []string
	for _, m := range stream["metadata"].([]any) {
		bc := m.(map[string]any)["breadcrumb"].([]any)
		if len(bc) == 2 && bc[0] == "properties" {
			names = append(names, bc[1].(string))
		}
	}
	sort.Strings(names)
	return names
}

// messagesOf returns the messages of one type for one stream.
func messagesOf(msgs []map[string]any, typ, stream string) []map[string]any {
	var out []map[string]any
	for _, m := range msgs {
		if m["type"] == typ && m["stream"] == stream {
			out = append(out, m)
		}
	}
	return out
}

// sortedKeys returns the map's keys, sorted.
func sortedKeys(m map[string]any) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// jsonText is a decoded JSON value in a comparable form (numbers as text).
func jsonText(v any) string { return fmt.Sprint(v) }

// sameStrings compares a decoded JSON list with want.
func sameStrings(got any, want []string) bool {
	list, ok := got.([]any)
	if !ok || len(list) != len(want) {
		return false
	}
	for i := range list {
		if list[i] != want[i] {
			return false
		}
	}
	return true
}

// oddTable is one table of TestOddIdentifiers.
type oddTable struct{ schema, table string }

var oddTables = []oddTable{
	{"public", "CamelCase"},
	{"public", "camelcase"},
	{"public", " padded "},
	{"public", "new\nline\ttab"},
	{"dotted.schema", "dotted.table-name"},
	{"Back\\slash%_", "100% \\ _x_"},
	{"public", "order"},
	{"My Schema", "Table With Spaces"},
	{`we"ird`, `quo"ted "name"`},
	{"it's", "o'brien's"},
	{"Ünïcødé 表", "Ünïcødé 表"},
	{"select", "from"},
	// The same table name in two schemas.
	{"public", "dup"},
	{"select", "dup"},
}

// Odd column names: quotes, spaces, a keyword, capitals and unicode.
const (
	oddColQuote   = `we"ird 'col'`
	oddColKeyword = "select"
	oddColMixed   = "Mixed Case Ü"
)

func oddValue(tableIndex, id int) string {
	return fmt.Sprintf("t%d row %d: \"dq\" 'sq' \\ Ünïcødé 表 🙂", tableIndex, id)
}

func createOddTables(t *testing.T, db string) {
	t.Helper()
	var sql strings.Builder
	for _, s := range []string{"My Schema", `we"ird`, "it's", "Ünïcødé 表", "select", "dotted.schema", "Back\\slash%_"} {
		fmt.Fprintf(&sql, "CREATE SCHEMA %s;\n", ident(s))
	}
	for i, tb := range oddTables {
		name := ident(tb.schema, tb.table)
		fmt.Fprintf(&sql, "CREATE TABLE %s (id integer PRIMARY KEY, %s text, %s text, %s integer);\n",
			name, ident(oddColQuote), ident(oddColKeyword), ident(oddColMixed))
		for id := 1; id <= 2; id++ {
			fmt.Fprintf(&sql, "INSERT INTO %s VALUES (%d, %s, %s, %d);\n", name, id,
				quoteLiteral(oddValue(i, id)), quoteLiteral(fmt.Sprintf("kw %d/%d", i, id)), i*100+id)
		}
	}
	testpg.Exec(t, pg, db, sql.String())
}

func oddExpected(i, id int) map[string]string {
	return map[string]string{
		"id":          fmt.Sprint(id),
		oddColQuote:   oddValue(i, id),
		oddColKeyword: fmt.Sprintf("kw %d/%d", i, id),
		oddColMixed:   fmt.Sprint(i*100 + id),
	}
}

func recordText(rec map[string]any) map[string]string {
	out := map[string]string{}
	for k, v := range rec {
		out[k] = jsonText(v)
	}
	return out
}

// TestOddIdentifiers: schemas, tables and columns with spaces, capitals,
// quotes, unicode and SQL keywords are discovered under their raw names and
// synced with every value.
func TestOddIdentifiers(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	createOddTables(t, db)
	cfg := writeFile(t, "config.json", configFor(db, nil))
	catalog := discover(t, cfg)

	var wantIDs []string
	for _, tb := range oddTables {
		wantIDs = append(wantIDs, db+"-"+tb.schema+"-"+tb.table)
	}
	slices.Sort(wantIDs)
	if got := streamIDs(catalog); !reflect.DeepEqual(got, wantIDs) {
		t.Fatalf("tap_stream_ids:\n got %q\nwant %q", got, wantIDs)
	}
	wantCols := []string{"id", oddColMixed, oddColKeyword, oddColQuote}
	sort.Strings(wantCols)
	for _, tb := range oddTables {
		s := findStream(t, catalog, db+"-"+tb.schema+"-"+tb.table)
		if s["stream"] != tb.table || s["table_name"] != tb.table {
			t.Errorf("%s: stream %q table_name %q, want %q", s["tap_stream_id"], s["stream"], s["table_name"], tb.table)
		}
		md := metadataAt(s)
		if md["schema-name"] != tb.schema || md["database-name"] != db {
			t.Errorf("%s: schema-name %q database-name %q", s["tap_stream_id"], md["schema-name"], md["database-name"])
		}
		if !sameStrings(md["table-key-properties"], []string{"id"}) {
			t.Errorf("%s: table-key-properties %v", s["tap_stream_id"], md["table-key-properties"])
		}
		if got := metadataColumns(s); !reflect.DeepEqual(got, wantCols) {
			t.Errorf("%s: column metadata %q, want %q", s["tap_stream_id"], got, wantCols)
		}
		if got := schemaPropertyNames(t, s["schema"]); !reflect.DeepEqual(got, wantCols) {
			t.Errorf("%s: schema properties %q, want %q", s["tap_stream_id"], got, wantCols)
		}
	}
	selectStreams(catalog, map[string]any{"replication-method": "FULL_TABLE"})

	t.Run("stream is the table name", func(t *testing.T) {
		r := syncCatalog(t, cfg, catalog)
		byStream := map[string][]map[string]string{}
		for i, tb := range oddTables {
			for id := 1; id <= 2; id++ {
				byStream[tb.table] = append(byStream[tb.table], oddExpected(i, id))
			}
		}
		checkOddRecords(t, r.messages, byStream)
		// Both "dup" tables went to one stream, as with the reference.
		if n := len(records(r.messages, "dup")); n != 4 {
			t.Errorf("stream dup: %d records, want 4 (2 per schema)", n)
		}
		st := lastState(t, r.messages)
		books := st["bookmarks"].(map[string]any)
		for _, id := range wantIDs {
			bm, ok := books[id].(map[string]any)
			if !ok || bm["last_replication_method"] != "FULL_TABLE" {
				t.Errorf("final state has no FULL_TABLE bookmark for %q: %v", id, books[id])
			}
		}
	})

	t.Run("include_schemas_in_destination_stream_name", func(t *testing.T) {
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"include_schemas_in_destination_stream_name": true}))
		r := syncCatalog(t, cfg, catalog)
		byStream := map[string][]map[string]string{}
		for i, tb := range oddTables {
			for id := 1; id <= 2; id++ {
				name := tb.schema + "_" + tb.table
				byStream[name] = append(byStream[name], oddExpected(i, id))
			}
		}
		checkOddRecords(t, r.messages, byStream)
		for _, bare := range []string{"dup", "from", "CamelCase"} {
			if n := len(records(r.messages, bare)); n != 0 {
				t.Errorf("stream %q (without schema) got %d records", bare, n)
			}
		}
	})
}

// checkOddRecords compares every stream's records (as text, in key order)
// and its SCHEMA with the expectation; no other stream may have records.
func checkOddRecords(t *testing.T, msgs []map[string]any, want map[string][]map[string]string) {
	t.Helper()
	for _, m := range msgs {
		if m["type"] == "RECORD" {
			if _, ok := want[m["stream"].(string)]; !ok {
				t.Errorf("RECORD for unexpected stream %q", m["stream"])
			}
		}
	}
	for stream, rows := range want {
		var got []map[string]string
		for _, rec := range records(msgs, stream) {
			got = append(got, recordText(rec))
		}
		sortRows := func(rows []map[string]string) {
			sort.Slice(rows, func(i, j int) bool { return rows[i][oddColMixed] < rows[j][oddColMixed] })
		}
		sortRows(got)
		rows = slices.Clone(rows)
		sortRows(rows)
		if !reflect.DeepEqual(got, rows) {
			t.Errorf("stream %q records:\n got %v\nwant %v", stream, got, rows)
		}
		schemas := messagesOf(msgs, "SCHEMA", stream)
		if len(schemas) == 0 {
			t.Errorf("stream %q: no SCHEMA message", stream)
			continue
		}
		wantCols := sortedKeys(map[string]any{"id": 0, oddColQuote: 0, oddColKeyword: 0, oddColMixed: 0})
		if got := schemaPropertyNames(t, schemas[0]["schema"]); !reflect.DeepEqual(got, wantCols) {
			t.Errorf("stream %q SCHEMA properties %q, want %q", stream, got, wantCols)
		}
	}
}

// TestDiscoveryMetadata checks the catalog's table and column metadata.
func TestDiscoveryMetadata(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, `
		CREATE TABLE comp (a integer, b integer, c text, PRIMARY KEY (b, a));
		CREATE TABLE nopk (x integer, y text);
		CREATE TABLE typed (id serial PRIMARY KEY, v character varying(20), n numeric(12,2), arr integer[],
			ts timestamp with time zone NOT NULL, plain numeric, b1 bit, b5 bit(5), vb bit varying(8),
			ts3 timestamp(3) without time zone, ch char(3), vcarr varchar(10)[]);
		CREATE TABLE hundred (id integer PRIMARY KEY);
		INSERT INTO hundred SELECT generate_series(1, 100);
		CREATE TABLE no_columns ();
		CREATE VIEW comp_view AS SELECT a, b, c FROM comp;
		CREATE MATERIALIZED VIEW hundred_mv AS SELECT id FROM hundred;
		CREATE TABLE meas (id integer NOT NULL, d date NOT NULL, v text, PRIMARY KEY (id, d)) PARTITION BY RANGE (d);
		CREATE TABLE meas_2023 PARTITION OF meas FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
		CREATE TABLE meas_2024 PARTITION OF meas FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') PARTITION BY HASH (id);
		CREATE TABLE meas_2024_h0 PARTITION OF meas_2024 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
		CREATE TABLE meas_2024_h1 PARTITION OF meas_2024 FOR VALUES WITH (MODULUS 2, REMAINDER 1);
		INSERT INTO meas SELECT g, '2023-06-01', 'x' FROM generate_series(1, 30) g;
		INSERT INTO meas SELECT g, '2024-06-01', 'y' FROM generate_series(1, 20) g;
		CREATE SCHEMA other;
		CREATE TABLE other.t (id integer PRIMARY KEY);
		CREATE SCHEMA second;
		CREATE TABLE second.u (id integer);
		ANALYZE;
	`)
	cfg := writeFile(t, "config.json", configFor(db, nil))
	catalog := discover(t, cfg)
	id := func(schema, table string) string { return db + "-" + schema + "-" + table }

	t.Run("streams sorted and system schemas absent", func(t *testing.T) {
		ids := streamIDs(catalog)
		if !sort.StringsAreSorted(ids) {
			t.Errorf("streams not sorted by tap_stream_id: %q", ids)
		}
		want := []string{
			id("other", "t"), id("public", "comp"), id("public", "comp_view"), id("public", "hundred"),
			id("public", "hundred_mv"), id("public", "meas"), id("public", "meas_2023"), id("public", "meas_2024"),
			id("public", "meas_2024_h0"), id("public", "meas_2024_h1"), id("public", "nopk"), id("public", "typed"),
			id("second", "u"),
		}
		slices.Sort(want)
		if !reflect.DeepEqual(ids, want) {
			t.Errorf("streams:\n got %q\nwant %q", ids, want)
		}
		for _, s := range streams(catalog) {
			switch schema := metadataAt(s)["schema-name"]; schema {
			case "pg_catalog", "information_schema", "pg_toast":
				t.Errorf("stream %s from system schema %s", s["tap_stream_id"], schema)
			}
		}
	})

	t.Run("table-key-properties", func(t *testing.T) {
		for _, c := range []struct {
			stream string
			want   []string
		}{
			{id("public", "comp"), []string{"b", "a"}},
			{id("public", "nopk"), []string{}},
			{id("public", "comp_view"), []string{}},
			{id("public", "hundred_mv"), []string{}},
			{id("public", "typed"), []string{"id"}},
			{id("public", "meas"), []string{"id", "d"}},
		} {
			got := metadataAt(findStream(t, catalog, c.stream))["table-key-properties"]
			if !sameStrings(got, c.want) {
				t.Errorf("%s: table-key-properties %v, want %q", c.stream, got, c.want)
			}
		}
	})

	t.Run("is-view", func(t *testing.T) {
		for stream, want := range map[string]bool{
			id("public", "comp_view"): true, id("public", "hundred_mv"): true,
			id("public", "comp"): false, id("public", "meas"): false, id("public", "meas_2023"): false,
		} {
			if got := metadataAt(findStream(t, catalog, stream))["is-view"]; got != want {
				t.Errorf("%s: is-view %v, want %v", stream, got, want)
			}
		}
	})

	t.Run("row-count", func(t *testing.T) {
		for stream, want := range map[string]string{
			id("public", "hundred"): "100", id("public", "hundred_mv"): "100", id("public", "nopk"): "0",
			id("public", "meas_2023"): "30", id("public", "meas"): "50",
		} {
			if got := jsonText(metadataAt(findStream(t, catalog, stream))["row-count"]); got != want {
				t.Errorf("%s: row-count %s, want %s", stream, got, want)
			}
		}
		h0 := jsonText(metadataAt(findStream(t, catalog, id("public", "meas_2024_h0")))["row-count"])
		h1 := jsonText(metadataAt(findStream(t, catalog, id("public", "meas_2024_h1")))["row-count"])
		var n0, n1 int
		fmt.Sscan(h0, &n0)
		fmt.Sscan(h1, &n1)
		if n0+n1 != 20 || n0 == 0 || n1 == 0 {
			t.Errorf("hash partitions row-count %s + %s, want both non-zero with sum 20", h0, h1)
		}
	})

	t.Run("partitions", func(t *testing.T) {
		root := id("public", "meas")
		for _, p := range []string{"meas_2023", "meas_2024", "meas_2024_h0", "meas_2024_h1"} {
			md := metadataAt(findStream(t, catalog, id("public", p)))
			if md["is-partition"] != true || md["partition-root"] != root {
				t.Errorf("%s: is-partition %v partition-root %v, want true and %q", p, md["is-partition"], md["partition-root"], root)
			}
		}
		for _, s := range []string{root, id("public", "comp"), id("public", "comp_view")} {
			md := metadataAt(findStream(t, catalog, s))
			if md["is-partition"] == true || md["partition-root"] != nil {
				t.Errorf("%s: is-partition %v partition-root %v on a non-partition", s, md["is-partition"], md["partition-root"])
			}
		}
	})

	t.Run("columns", func(t *testing.T) {
		for _, c := range []struct {
			stream, column, sqlType, inclusion string
		}{
			{id("public", "comp"), "a", "integer", "automatic"},
			{id("public", "comp"), "b", "integer", "automatic"},
			{id("public", "comp"), "c", "text", "available"},
			{id("public", "typed"), "id", "integer", "automatic"},
			// The reference tap's text: no typmod, except bit(N) for N > 1.
			{id("public", "typed"), "v", "character varying", "available"},
			{id("public", "typed"), "n", "numeric", "available"},
			{id("public", "typed"), "b1", "bit", "available"},
			{id("public", "typed"), "b5", "bit(5)", "available"},
			{id("public", "typed"), "vb", "bit varying", "available"},
			{id("public", "typed"), "ts3", "timestamp without time zone", "available"},
			{id("public", "typed"), "ch", "character", "available"},
			{id("public", "typed"), "vcarr", "character varying[]", "available"},
			{id("public", "typed"), "arr", "integer[]", "available"},
			{id("public", "typed"), "ts", "timestamp with time zone", "available"},
			{id("public", "typed"), "plain", "numeric", "available"},
			{id("public", "nopk"), "x", "integer", "available"},
			{id("public", "comp_view"), "a", "integer", "available"},
			{id("public", "meas_2023"), "d", "date", "automatic"},
		} {
			md := metadataAt(findStream(t, catalog, c.stream), "properties", c.column)
			if md == nil {
				t.Errorf("%s: no metadata for column %s", c.stream, c.column)
				continue
			}
			if md["sql-datatype"] != c.sqlType || md["inclusion"] != c.inclusion || md["selected-by-default"] != true {
				t.Errorf("%s column %s: sql-datatype %v inclusion %v selected-by-default %v, want %q %q true",
					c.stream, c.column, md["sql-datatype"], md["inclusion"], md["selected-by-default"], c.sqlType, c.inclusion)
			}
		}
		typed := findStream(t, catalog, id("public", "typed"))
		if got, want := metadataColumns(typed), []string{"arr", "b1", "b5", "ch", "id", "n", "plain", "ts", "ts3", "v", "vb", "vcarr"}; !reflect.DeepEqual(got, want) {
			t.Errorf("typed column metadata %q, want %q", got, want)
		}
		// Every metadata entry of every stream says selected-by-default.
		for _, s := range streams(catalog) {
			for _, col := range metadataColumns(s) {
				if metadataAt(s, "properties", col)["selected-by-default"] != true {
					t.Errorf("%s column %s not selected-by-default", s["tap_stream_id"], col)
				}
			}
		}
		props := typed["schema"].(map[string]any)["properties"].(map[string]any)
		for col, want := range map[string]string{
			"id": "[integer]", "v": "[null string]", "n": "[null number]", "ts": "[string]", "arr": "[null array]",
		} {
			if got := jsonText(props[col].(map[string]any)["type"]); got != want {
				t.Errorf("typed.%s JSON Schema type %s, want %s", col, got, want)
			}
		}
		if got := jsonText(props["v"].(map[string]any)["maxLength"]); got != "20" {
			t.Errorf("typed.v maxLength %s, want 20", got)
		}
		if got := jsonText(props["n"].(map[string]any)["multipleOf"]); got != "0.01" {
			t.Errorf("typed.n multipleOf %s, want 0.01", got)
		}
	})

	t.Run("stream names and table metadata", func(t *testing.T) {
		s := findStream(t, catalog, id("other", "t"))
		md := metadataAt(s)
		if s["stream"] != "t" || s["table_name"] != "t" || md["schema-name"] != "other" || md["database-name"] != db {
			t.Errorf("other.t: stream %v table_name %v schema-name %v database-name %v", s["stream"], s["table_name"], md["schema-name"], md["database-name"])
		}
	})

	t.Run("filter_schemas", func(t *testing.T) {
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"filter_schemas": "other,second"}))
		got := streamIDs(discover(t, cfg))
		if want := []string{id("other", "t"), id("second", "u")}; !reflect.DeepEqual(got, want) {
			t.Errorf("filter_schemas other,second: streams %q, want %q", got, want)
		}
		cfg = writeFile(t, "config.json", configFor(db, map[string]any{"filter_schemas": "second"}))
		got = streamIDs(discover(t, cfg))
		if want := []string{id("second", "u")}; !reflect.DeepEqual(got, want) {
			t.Errorf("filter_schemas second: streams %q, want %q", got, want)
		}
	})

	t.Run("filter_dbs", func(t *testing.T) {
		db2 := testpg.NewDatabase(t, pg)
		testpg.Exec(t, pg, db2, `CREATE TABLE only_in_db2 (id integer PRIMARY KEY)`)
		got := streamIDs(discover(t, writeFile(t, "config.json", configFor(db2, nil))))
		if want := []string{db2 + "-public-only_in_db2"}; !reflect.DeepEqual(got, want) {
			t.Errorf("filter_dbs %s: streams %q, want %q", db2, got, want)
		}
		both := discover(t, writeFile(t, "config.json", configFor(db, map[string]any{"filter_dbs": db + "," + db2})))
		ids := streamIDs(both)
		if !slices.Contains(ids, db2+"-public-only_in_db2") || !slices.Contains(ids, id("public", "comp")) || len(ids) != 14 {
			t.Errorf("filter_dbs %s,%s: streams %q, want the 13 of the first and the 1 of the second", db, db2, ids)
		}
		if !sort.StringsAreSorted(ids) {
			t.Errorf("streams of two databases not sorted: %q", ids)
		}
		for _, s := range streams(both) {
			if dbn := metadataAt(s)["database-name"]; dbn != db && dbn != db2 {
				t.Errorf("stream %s from database %v", s["tap_stream_id"], dbn)
			}
		}
	})
}

// newRole creates a LOGIN role (cluster-wide) with a random name and drops
// it when the test ends. Call it before testpg.NewDatabase so the database
// (holding the role's grants) is dropped first.
func newRole(t *testing.T, password string) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	role := "tap_user_" + hex.EncodeToString(b[:])
	testpg.Exec(t, pg, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD %s", ident(role), quoteLiteral(password)))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := pg.Exec(ctx, "postgres", "DROP ROLE IF EXISTS "+ident(role)); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	return role
}

// TestColumnPrivileges: a user granted only some columns sees and syncs only
// those; a table without any privilege is absent.
func TestColumnPrivileges(t *testing.T) {
	const password = "role-pw-123"
	role := newRole(t, password)
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, fmt.Sprintf(`
		REVOKE ALL ON DATABASE %[1]s FROM PUBLIC;
		GRANT CONNECT ON DATABASE %[1]s TO %[2]s;
		CREATE SCHEMA app;
		GRANT USAGE ON SCHEMA app TO %[2]s;
		CREATE TABLE app.t (id integer PRIMARY KEY, visible text, secret text);
		INSERT INTO app.t VALUES (1, 'v1', 's1'), (2, 'v2', 's2'), (3, NULL, 's3');
		GRANT SELECT (id, visible) ON app.t TO %[2]s;
		CREATE TABLE app.hidden (id integer PRIMARY KEY, x text);
		INSERT INTO app.hidden VALUES (1, 'nope');
		CREATE TABLE app.keyless_grant (id integer PRIMARY KEY, note text);
		INSERT INTO app.keyless_grant VALUES (1, 'n1'), (2, 'n2');
		GRANT SELECT (note) ON app.keyless_grant TO %[2]s;
	`, ident(db), ident(role)))
	cfg := writeFile(t, "config.json", configFor(db, map[string]any{"user": role, "password": password}))
	catalog := discover(t, cfg)

	tid := db + "-app-t"
	if got, want := streamIDs(catalog), []string{db + "-app-keyless_grant", tid}; !reflect.DeepEqual(got, want) {
		t.Fatalf("streams as %s: %q, want %q (app.hidden must be absent)", role, got, want)
	}
	s := findStream(t, catalog, tid)
	if got, want := metadataColumns(s), []string{"id", "visible"}; !reflect.DeepEqual(got, want) {
		t.Errorf("column metadata %q, want %q", got, want)
	}
	if got, want := schemaPropertyNames(t, s["schema"]), []string{"id", "visible"}; !reflect.DeepEqual(got, want) {
		t.Errorf("schema properties %q, want %q", got, want)
	}
	if got := metadataAt(s)["table-key-properties"]; !sameStrings(got, []string{"id"}) {
		t.Errorf("table-key-properties %v, want [id]", got)
	}
	if got, want := metadataColumns(findStream(t, catalog, db+"-app-keyless_grant")), []string{"note"}; !reflect.DeepEqual(got, want) {
		t.Errorf("keyless_grant column metadata %q, want %q", got, want)
	}

	t.Run("database without CONNECT is skipped with a WARNING", func(t *testing.T) {
		db2 := testpg.NewDatabase(t, pg)
		testpg.Exec(t, pg, db2, fmt.Sprintf(`REVOKE ALL ON DATABASE %s FROM PUBLIC; CREATE TABLE x (id integer PRIMARY KEY)`, ident(db2)))
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"user": role, "password": password, "filter_dbs": db + "," + db2}))
		r := runTap(t, cli.Env{}, "--config", cfg, "--discover")
		if r.code != 0 {
			t.Fatalf("discover exited %d:\n%s", r.code, r.stderr)
		}
		if !strings.Contains(r.stdout, `"`+tid+`"`) || strings.Contains(r.stdout, db2) {
			t.Errorf("catalog should hold %s and nothing of %s:\n%s", tid, db2, r.stdout)
		}
		warned := false
		for _, line := range strings.Split(r.stderr, "\n") {
			if strings.HasPrefix(line, "WARNING ") && strings.Contains(line, db2) {
				warned = true
			}
		}
		if !warned {
			t.Errorf("no WARNING naming %s:\n%s", db2, r.stderr)
		}
		// Only that database: no stream in the whole cluster is a CRITICAL.
		cfg = writeFile(t, "config.json", configFor(db, map[string]any{"user": role, "password": password, "filter_dbs": db2}))
		r = runTap(t, cli.Env{}, "--config", cfg, "--discover")
		if r.code != 1 || !strings.HasPrefix(lastLine(r.stderr), "CRITICAL ") || r.stdout != "" {
			t.Errorf("discovery of only an unreachable database: exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("no readable table is a CRITICAL", func(t *testing.T) {
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"user": role, "password": password, "filter_schemas": "public"}))
		r := runTap(t, cli.Env{}, "--config", cfg, "--discover")
		if r.code != 1 || !strings.HasPrefix(lastLine(r.stderr), "CRITICAL ") || r.stdout != "" {
			t.Errorf("discovery without readable tables: exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
		}
	})

	selectStreams(catalog, map[string]any{"replication-method": "FULL_TABLE"}, tid, db+"-app-keyless_grant")
	r := syncCatalog(t, cfg, catalog)
	// Without its key column readable, the table is copied without a key.
	var notes []string
	for _, rec := range records(r.messages, "keyless_grant") {
		if got := sortedKeys(rec); !reflect.DeepEqual(got, []string{"note"}) {
			t.Errorf("keyless_grant record columns %q, want [note]", got)
		}
		notes = append(notes, jsonText(rec["note"]))
	}
	sort.Strings(notes)
	if want := []string{"n1", "n2"}; !reflect.DeepEqual(notes, want) {
		t.Errorf("keyless_grant notes %q, want %q", notes, want)
	}
	if sc := messagesOf(r.messages, "SCHEMA", "keyless_grant"); len(sc) == 0 || !sameStrings(sc[0]["key_properties"], []string{}) {
		t.Errorf("keyless_grant SCHEMA %v, want key_properties []", sc)
	}
	var got []map[string]string
	for _, rec := range records(r.messages, "t") {
		got = append(got, recordText(rec))
	}
	want := []map[string]string{
		{"id": "1", "visible": "v1"}, {"id": "2", "visible": "v2"}, {"id": "3", "visible": "<nil>"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("records as %s:\n got %v\nwant %v", role, got, want)
	}
	schemas := messagesOf(r.messages, "SCHEMA", "t")
	if len(schemas) == 0 {
		t.Fatal("no SCHEMA message")
	}
	if got, want := schemaPropertyNames(t, schemas[0]["schema"]), []string{"id", "visible"}; !reflect.DeepEqual(got, want) {
		t.Errorf("SCHEMA properties %q, want %q", got, want)
	}
	if strings.Contains(r.stdout, "s1") || strings.Contains(r.stdout, "secret") {
		t.Errorf("stdout holds the ungranted column:\n%s", r.stdout)
	}
}

// TestSelectionRules checks the column and stream selection rules of the README ("Catalog").
func TestSelectionRules(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, `
		CREATE TABLE t (id integer PRIMARY KEY, a text, b text, c integer);
		INSERT INTO t VALUES (1, 'a1', 'b1', 10), (2, 'a2', 'b2', 20);
		CREATE TABLE other (id integer PRIMARY KEY, z text);
		INSERT INTO other VALUES (1, 'z1');
		CREATE VIEW tv AS SELECT id, a FROM t;
		CREATE VIEW tv2 AS SELECT id, c FROM t;
	`)
	tid, otherID := db+"-public-t", db+"-public-other"

	t.Run("deselected columns", func(t *testing.T) {
		cfg := writeFile(t, "config.json", configFor(db, nil))
		catalog := discover(t, cfg)
		selectStreams(catalog, map[string]any{"replication-method": "FULL_TABLE"}, tid)
		s := findStream(t, catalog, tid)
		metadataAt(s, "properties", "b")["selected"] = false
		metadataAt(s, "properties", "id")["selected"] = false // automatic: still synced
		metadataAt(s, "properties", "c")["selected"] = true
		r := syncCatalog(t, cfg, catalog)

		var got []map[string]string
		for _, rec := range records(r.messages, "t") {
			got = append(got, recordText(rec))
		}
		want := []map[string]string{{"id": "1", "a": "a1", "c": "10"}, {"id": "2", "a": "a2", "c": "20"}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("records:\n got %v\nwant %v", got, want)
		}
		schemas := messagesOf(r.messages, "SCHEMA", "t")
		if len(schemas) == 0 {
			t.Fatal("no SCHEMA message")
		}
		if got, want := schemaPropertyNames(t, schemas[0]["schema"]), []string{"a", "c", "id"}; !reflect.DeepEqual(got, want) {
			t.Errorf("SCHEMA properties %q, want %q", got, want)
		}
		if !sameStrings(schemas[0]["key_properties"], []string{"id"}) {
			t.Errorf("SCHEMA key_properties %v, want [id]", schemas[0]["key_properties"])
		}
		// The unselected stream emits nothing at all.
		for _, m := range r.messages {
			if m["stream"] == "other" {
				t.Errorf("message for unselected stream: %v", m)
			}
		}
		if strings.Contains(r.stdout, "z1") {
			t.Errorf("stdout holds a value of the unselected stream")
		}
		if _, ok := lastState(t, r.messages)["bookmarks"].(map[string]any)[otherID]; ok {
			t.Errorf("final state has a bookmark for the unselected stream %s", otherID)
		}
	})

	t.Run("view key properties", func(t *testing.T) {
		cfg := writeFile(t, "config.json", configFor(db, nil))
		catalog := discover(t, cfg)
		selectStreams(catalog, map[string]any{"replication-method": "FULL_TABLE"}, db+"-public-tv", db+"-public-tv2")
		metadataAt(findStream(t, catalog, db+"-public-tv"))["view-key-properties"] = []any{"id"}
		r := syncCatalog(t, cfg, catalog)
		for stream, want := range map[string][]string{"tv": {"id"}, "tv2": {}} {
			sc := messagesOf(r.messages, "SCHEMA", stream)
			if len(sc) == 0 || !sameStrings(sc[0]["key_properties"], want) {
				t.Errorf("view %s SCHEMA %v, want key_properties %q", stream, sc, want)
			}
			if n := len(records(r.messages, stream)); n != 2 {
				t.Errorf("view %s: %d records, want 2", stream, n)
			}
		}
	})

	t.Run("default_replication_method", func(t *testing.T) {
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"default_replication_method": "FULL_TABLE"}))
		catalog := discover(t, cfg)
		selectStreams(catalog, nil, tid) // no replication-method metadata
		r := syncCatalog(t, cfg, catalog)
		if n := len(records(r.messages, "t")); n != 2 {
			t.Errorf("got %d records, want 2", n)
		}
		if n := len(messagesOf(r.messages, "ACTIVATE_VERSION", "t")); n != 2 {
			t.Errorf("got %d ACTIVATE_VERSION messages, want 2 (leading and trailing of a first full copy)", n)
		}
		bm, _ := lastState(t, r.messages)["bookmarks"].(map[string]any)[tid].(map[string]any)
		if bm["last_replication_method"] != "FULL_TABLE" {
			t.Errorf("bookmark %v, want last_replication_method FULL_TABLE", bm)
		}
	})

	t.Run("no replication method", func(t *testing.T) {
		cfg := writeFile(t, "config.json", configFor(db, nil))
		catalog := discover(t, cfg)
		selectStreams(catalog, nil, tid)
		r := runTap(t, cli.Env{}, "--config", cfg, "--catalog", writeFile(t, "catalog.json", catalog))
		if r.code != 1 {
			t.Fatalf("exit %d, want 1:\n%s", r.code, r.stderr)
		}
		last := lastLine(r.stderr)
		if !strings.HasPrefix(last, "CRITICAL ") || !strings.Contains(last, tid) {
			t.Errorf("last stderr line %q: want CRITICAL naming %s", last, tid)
		}
		if strings.Contains(r.stdout, `"RECORD"`) {
			t.Errorf("records emitted for a stream without replication method:\n%s", r.stdout)
		}
	})
}

// TestStreamIDCollision: tap_stream_id is the reference's
// <db>-<schema>-<table>, so schema "a-b" table "c" and schema "a" table
// "b-c" share one id. The catalog stays usable for other streams; selecting
// the ambiguous id is a CRITICAL.
func TestStreamIDCollision(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, `
		CREATE SCHEMA "a-b"; CREATE TABLE "a-b".c (id integer PRIMARY KEY);
		CREATE SCHEMA a; CREATE TABLE a."b-c" (id integer PRIMARY KEY);
		CREATE TABLE plain (id integer PRIMARY KEY); INSERT INTO plain VALUES (1), (2);
	`)
	cfg := writeFile(t, "config.json", configFor(db, nil))
	catalog := discover(t, cfg)
	selectStreams(catalog, map[string]any{"replication-method": "FULL_TABLE"}, db+"-public-plain")
	r := syncCatalog(t, cfg, catalog)
	if n := len(records(r.messages, "plain")); n != 2 {
		t.Errorf("got %d records of plain, want 2", n)
	}
	selectStreams(catalog, map[string]any{"replication-method": "FULL_TABLE"}, db+"-a-b-c")
	bad := runTap(t, cli.Env{}, "--config", cfg, "--catalog", writeFile(t, "ambiguous.json", catalog))
	if bad.code != 1 || !strings.Contains(lastLine(bad.stderr), "CRITICAL stream "+db+"-a-b-c is ambiguous") {
		t.Errorf("selecting an ambiguous stream id: exit %d, last line %q", bad.code, lastLine(bad.stderr))
	}
}
