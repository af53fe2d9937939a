package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tap-postgres/tap-postgres/internal/cli"
	"github.com/tap-postgres/tap-postgres/internal/pgread"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

func incrementalCatalog(t *testing.T, cfg, id, key string, extra map[string]any) string {
	t.Helper()
	catalog := discover(t, cfg)
	md := map[string]any{"replication-method": "INCREMENTAL", "replication-key": key}
	for k, v := range extra {
		md[k] = v
	}
	selectStreams(catalog, md, id)
	return writeFile(t, "catalog.json", catalog)
}

func syncOK(t *testing.T, args ...string) tapResult {
	t.Helper()
	r := runTap(t, cli.Env{}, args...)
	if r.code != 0 {
		t.Fatalf("tap exited %d:\n%s", r.code, r.stderr)
	}
	return r
}

func ids(recs []map[string]any) []string {
	var out []string
	for _, r := range recs {
		out = append(out, fmt.Sprint(r["id"]))
	}
	return out
}

// TestIncrementalTiesNullsAndQuotes: ties at the bookmark are re-sent, NULL
// keys only come on the first run, and quotes in key values do not matter
// because the bookmark is a bind parameter.
func TestIncrementalTiesNullsAndQuotes(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, `CREATE TABLE people (id integer PRIMARY KEY, name text, updated_at timestamptz);
		INSERT INTO people VALUES (1, 'a', '2024-01-01 00:00:00+00'), (2, 'b', '2024-01-02 00:00:00.5+00'),
			(3, 'c', '2024-01-02 00:00:00.5+00'), (4, 'null key', NULL);
		CREATE TABLE names (id integer PRIMARY KEY, label text);
		INSERT INTO names VALUES (1, 'A'), (2, 'O''Brien "quoted" \ back'), (3, 'O''Brien "quoted" \ back');`)
	cfg := writeFile(t, "config.json", configFor(db, nil))
	cat := incrementalCatalog(t, cfg, db+"-public-people", "updated_at", nil)

	first := syncOK(t, "--config", cfg, "--catalog", cat)
	if got := ids(records(first.messages, "people")); strings.Join(got, ",") != "1,2,3,4" {
		t.Fatalf("first run emitted %v, want all rows in key order with the NULL key last", got)
	}
	st := lastState(t, first.messages)
	bm := st["bookmarks"].(map[string]any)[db+"-public-people"].(map[string]any)
	if bm["replication_key"] != "updated_at" || bm["replication_key_value"] != "2024-01-02T00:00:00.500000+00:00" ||
		bm["last_replication_method"] != "INCREMENTAL" {
		t.Fatalf("bookmark after first run: %v", bm)
	}
	schema := first.messages[0]
	if schema["type"] != "SCHEMA" || fmt.Sprint(schema["bookmark_properties"]) != "[updated_at]" {
		t.Fatalf("first message %v: want SCHEMA with bookmark_properties [updated_at]", schema)
	}

	testpg.Exec(t, pg, db, `INSERT INTO people VALUES (5, 'tie', '2024-01-02 00:00:00.5+00'), (6, 'later', '2024-01-03 00:00:00+00'),
		(7, 'older', '2023-01-01 00:00:00+00'), (8, 'another null', NULL)`)
	second := syncOK(t, "--config", cfg, "--catalog", cat, "--state", writeFile(t, "state.json", st))
	if got := ids(records(second.messages, "people")); strings.Join(got, ",") != "2,3,5,6" {
		t.Fatalf("second run emitted %v, want the ties at the bookmark (2,3,5) and the newer row 6, nothing older, no NULL keys", got)
	}
	if streamVersion(first.messages, "people") != streamVersion(second.messages, "people") {
		t.Fatal("the version changed between incremental runs")
	}
	if n := strings.Count(strings.Join(streamMessages(second.messages, "people"), ","), "ACTIVATE_VERSION"); n != 1 {
		t.Fatalf("%d ACTIVATE_VERSION messages in one run, want 1", n)
	}

	cat2 := incrementalCatalog(t, cfg, db+"-public-names", "label", nil)
	r := syncOK(t, "--config", cfg, "--catalog", cat2)
	st = lastState(t, r.messages)
	if v := st["bookmarks"].(map[string]any)[db+"-public-names"].(map[string]any)["replication_key_value"]; v != `O'Brien "quoted" \ back` {
		t.Fatalf("text bookmark = %q", v)
	}
	again := syncOK(t, "--config", cfg, "--catalog", cat2, "--state", writeFile(t, "state2.json", st))
	if got := ids(records(again.messages, "names")); strings.Join(got, ",") != "2,3" {
		t.Fatalf("a bookmark with quotes re-read %v, want the ties 2,3", got)
	}
}

// TestIncrementalKeyTypesRoundTrip: the emitted bookmark of each key type
// binds back against its column and re-reads exactly the ties.
func TestIncrementalKeyTypesRoundTrip(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	keys := map[string][2]string{ // column type → (smaller, larger) value
		"integer":          {"1", "2"},
		"bigint":           {"9007199254740993", "9223372036854775807"},
		"numeric":          {"1.000000000000000000001", "1.000000000000000000002"},
		"double precision": {"0.1", "0.30000000000000004"},
		"real":             {"1.1", "1.2"},
		"date":             {"2024-02-28", "2024-02-29"},
		"timestamp":        {"2024-01-01 00:00:00.000001", "2024-01-01 00:00:00.000002"},
		"timestamptz":      {"2024-01-01 00:00:00+05", "infinity"},
		"uuid":             {"00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"},
		"varchar(10)":      {"a'b", "a'c"},
	}
	i := 0
	for typ, vals := range keys {
		i++
		table := fmt.Sprintf("k%d", i)
		t.Run(typ, func(t *testing.T) {
			testpg.Exec(t, pg, db, fmt.Sprintf(`CREATE TABLE %[1]s (id integer PRIMARY KEY, k %[2]s);
				INSERT INTO %[1]s VALUES (1, %[3]s), (2, %[4]s), (3, %[4]s);`, table, typ, quoteLiteral(vals[0]), quoteLiteral(vals[1])))
			cfg := writeFile(t, "config.json", configFor(db, nil))
			cat := incrementalCatalog(t, cfg, db+"-public-"+table, "k", nil)
			first := syncOK(t, "--config", cfg, "--catalog", cat)
			st := lastState(t, first.messages)
			second := syncOK(t, "--config", cfg, "--catalog", cat, "--state", writeFile(t, "state.json", st))
			if got := ids(records(second.messages, table)); strings.Join(got, ",") != "2,3" {
				t.Fatalf("bookmark %v re-read %v, want exactly the ties 2,3", st["bookmarks"], got)
			}
		})
	}
}

// TestIncrementalRulesAndErrors: views keyed by view-key-properties, a
// changed replication key starts over, and bad keys are CRITICAL.
func TestIncrementalRulesAndErrors(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, `CREATE TABLE ev (id integer PRIMARY KEY, seq integer, other integer);
		INSERT INTO ev SELECT g, g, 100 - g FROM generate_series(1, 50) g;
		CREATE VIEW ev_view AS SELECT id, seq FROM ev WHERE id <= 10;`)
	cfg := writeFile(t, "config.json", configFor(db, nil))

	view := incrementalCatalog(t, cfg, db+"-public-ev_view", "seq", map[string]any{"view-key-properties": []string{"id"}})
	r := syncOK(t, "--config", cfg, "--catalog", view)
	if len(records(r.messages, "ev_view")) != 10 || fmt.Sprint(r.messages[0]["key_properties"]) != "[id]" {
		t.Fatalf("view: %d records, SCHEMA %v", len(records(r.messages, "ev_view")), r.messages[0])
	}

	bySeq := incrementalCatalog(t, cfg, db+"-public-ev", "seq", nil)
	first := syncOK(t, "--config", cfg, "--catalog", bySeq)
	state := writeFile(t, "state.json", lastState(t, first.messages))
	byOther := incrementalCatalog(t, cfg, db+"-public-ev", "other", nil)
	second := syncOK(t, "--config", cfg, "--catalog", byOther, "--state", state)
	if len(records(second.messages, "ev")) != 50 || streamVersion(second.messages, "ev") == streamVersion(first.messages, "ev") {
		t.Fatal("a changed replication-key must wipe the bookmark: full re-read in a new version")
	}

	for name, md := range map[string]map[string]any{
		"missing key":  {"replication-method": "INCREMENTAL"},
		"not a column": {"replication-method": "INCREMENTAL", "replication-key": "nope"},
	} {
		catalog := discover(t, cfg)
		selectStreams(catalog, md, db+"-public-ev")
		bad := runTap(t, cli.Env{}, "--config", cfg, "--catalog", writeFile(t, "bad.json", catalog))
		if bad.code != 1 || !strings.HasPrefix(lastLine(bad.stderr), "CRITICAL") || !strings.Contains(lastLine(bad.stderr), db+"-public-ev") {
			t.Errorf("%s: exit %d, last line %q; want a CRITICAL naming the stream", name, bad.code, lastLine(bad.stderr))
		}
	}
}

// TestIncrementalUsesKeyIndex checks the plan of the incremental query on a
// large table: from a bookmark, the key's index is used, not a sequential scan.
func TestIncrementalUsesKeyIndex(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, `CREATE TABLE big (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL, pad text);
		INSERT INTO big SELECT g, timestamptz '2024-01-01' + ((g * 7919) % 200000) * interval '1 second', repeat('x', 50)
		FROM generate_series(1, 200000) g;
		CREATE INDEX big_updated_at ON big (updated_at); ANALYZE big;`)
	q := pgread.Query{Schema: "public", Table: "big", Columns: []string{"id", "updated_at", "pad"}}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var plan string
	if err := conn.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+q.IncrementalSQL(1, true), "2024-01-03 00:00:00+00").Scan(&plan); err != nil {
		t.Fatal(err)
	}
	if !json.Valid([]byte(plan)) || !strings.Contains(plan, `"Index Name": "big_updated_at"`) || strings.Contains(plan, "Seq Scan") {
		t.Fatalf("incremental query does not read through the key's index: %s", plan)
	}
}
