package destination_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tap-postgres/tap-postgres/internal/destination"
	"github.com/tap-postgres/tap-postgres/internal/localpg"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

var pg *localpg.Cluster

func TestMain(m *testing.M) { os.Exit(testpg.Run(m, &pg)) }

func fixedClock() time.Time { return time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC) }

// postgresDest opens a postgres destination into schema of a fresh
// database and records the states it commits.
func postgresDest(t *testing.T, db, schema string, batchRows int, commits *[]string) destination.Destination {
	t.Helper()
	d, err := destination.OpenPostgres(context.Background(), pg.ConnString(db), schema, "test", destination.Options{
		Commit: func(s json.RawMessage) error {
			*commits = append(*commits, string(s))
			return nil
		},
		Clock:     fixedClock,
		Log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		BatchRows: batchRows,
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// loadAll loads lines through a fresh destination and closes it, failing
// the test on any error.
func loadAll(t *testing.T, db, schema string, batchRows int, commits *[]string, lines ...string) {
	t.Helper()
	d := postgresDest(t, db, schema, batchRows, commits)
	if err := send(t, d, lines...); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

func send(t *testing.T, d destination.Destination, lines ...string) error {
	t.Helper()
	for i, l := range lines {
		lines[i] = strings.NewReplacer("\n\t", "", "\n", "").Replace(l)
	}
	_, err := d.Write([]byte(strings.Join(lines, "\n") + "\n"))
	return err
}

func query(t *testing.T, db, sql string) string {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), pg.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var out *string
	if err := conn.QueryRow(context.Background(), sql).Scan(&out); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	if out == nil {
		return "<null>"
	}
	return *out
}

const ordersSchema = `{"type":"SCHEMA","stream":"Orders","schema":{"type":"object","properties":{
	"id":{"type":["integer"],"minimum":-2147483648,"maximum":2147483647},
	"Total Amount":{"type":["null","number"]},
	"note":{"type":["null","string"]},
	"tags":{"type":["null","array"],"items":{"$ref":"#/definitions/sdc_recursive_string_array"}},
	"placed_at":{"type":["null","string"],"format":"date-time"},
	"paid":{"type":["null","boolean"]},
	"_sdc_deleted_at":{"type":["null","string"],"format":"date-time"}}},"key_properties":["id"]}`

// TestPostgresUpsertDeleteVersions: records upsert by key through the
// staging table, absent properties keep their stored values, deletes are
// soft, ACTIVATE_VERSION removes older versions, values arrive exactly.
func TestPostgresUpsertDeleteVersions(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	var commits []string
	d := postgresDest(t, db, "aurora_prod", 1000, &commits)
	err := send(t, d, ordersSchema,
		`{"type":"ACTIVATE_VERSION","stream":"Orders","version":100}`,
		`{"type":"RECORD","stream":"Orders","record":{"id":1,"Total Amount":12345678901234567890.123456789,"note":"tab\there\nline \\ back 'quote' ☃","tags":["a","b"],"placed_at":"2024-06-01T12:00:00.123456+00:00","paid":true,"_sdc_deleted_at":null},"version":100,"time_extracted":"2026-11-24T11:00:00.000000Z"}`,
		`{"type":"RECORD","stream":"Orders","record":{"id":2,"Total Amount":1e-7,"note":null,"tags":null,"placed_at":null,"paid":false,"_sdc_deleted_at":null},"version":100,"time_extracted":"2026-11-24T11:00:00.000000Z"}`,
		`{"type":"RECORD","stream":"Orders","record":{"id":3,"Total Amount":3,"note":"three","tags":[],"placed_at":null,"paid":null,"_sdc_deleted_at":null},"version":100,"time_extracted":"2026-11-24T11:00:00.000000Z"}`,
		`{"type":"STATE","value":{"bookmarks":{"a":{"version":100}}}}`,
		// Same key twice in one batch: the last wins.
		`{"type":"RECORD","stream":"Orders","record":{"id":2,"Total Amount":2,"note":"first","tags":null,"placed_at":null,"paid":false,"_sdc_deleted_at":null},"version":100}`,
		`{"type":"RECORD","stream":"Orders","record":{"id":2,"Total Amount":2.50,"note":"second","tags":null,"placed_at":null,"paid":false,"_sdc_deleted_at":null},"version":100}`,
		// A delete carries only the key: the other columns keep their values.
		`{"type":"RECORD","stream":"Orders","record":{"id":1,"_sdc_deleted_at":"2026-11-24T11:30:00.000000+00:00"},"version":100}`,
		`{"type":"STATE","value":{"bookmarks":{"a":{"version":100,"lsn":7}}}}`,
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if len(commits) != 1 || !strings.Contains(commits[0], `"lsn":7`) {
		t.Fatalf("commits: %v (want only the last state, after loading)", commits)
	}
	got := query(t, db, `SELECT string_agg(format('%s|%s|%s|%s|%s|%s|%s|%s|%s', id, "total_amount", note, tags, placed_at, paid,
		_sdc_deleted_at, _sdc_table_version, _sdc_extracted_at), E'\n' ORDER BY id) FROM aurora_prod.orders`)
	want := strings.Join([]string{
		"1|12345678901234567890.123456789|tab\there\nline \\ back 'quote' ☃|[\"a\", \"b\"]|2024-06-01 12:00:00.123456+00|t|2026-11-24 11:30:00+00|100|",
		"2|2.50|second|||f||100|",
		"3|3|three|[]||||100|2026-11-24 11:00:00+00",
	}, "\n")
	// SET TimeZone is the database default (UTC in the test cluster).
	if got != want {
		t.Fatalf("loaded rows:\n%s\nwant:\n%s", got, want)
	}
	if bat := query(t, db, `SELECT min(_sdc_batched_at)::text FROM aurora_prod.orders`); bat != "2026-11-24 12:00:00+00" {
		t.Fatalf("_sdc_batched_at = %s", bat)
	}
	if types := query(t, db, `SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) FROM pg_attribute
		WHERE attrelid = 'aurora_prod.orders'::regclass AND attnum > 0`); types != "id bigint, total_amount numeric, note text, tags jsonb, placed_at timestamp with time zone, paid boolean, _sdc_deleted_at timestamp with time zone, _sdc_extracted_at timestamp with time zone, _sdc_batched_at timestamp with time zone, _sdc_table_version bigint" {
		t.Fatalf("columns: %s", types)
	}

	// A new version, its rows then its activation. The new key comes first:
	// looked up with the stored one, it is merged too.
	commits = nil
	loadAll(t, db, "aurora_prod", 1000, &commits, ordersSchema,
		`{"type":"RECORD","stream":"Orders","record":{"id":4,"Total Amount":4,"note":"four","tags":null,"placed_at":null,"paid":null,"_sdc_deleted_at":null},"version":200}`,
		`{"type":"RECORD","stream":"Orders","record":{"id":3,"Total Amount":33,"note":"three again","tags":null,"placed_at":null,"paid":null,"_sdc_deleted_at":null},"version":200}`,
		`{"type":"ACTIVATE_VERSION","stream":"Orders","version":200}`,
		`{"type":"STATE","value":{"bookmarks":{"a":{"version":200}}}}`)
	if got := query(t, db, `SELECT string_agg(id || ':' || note || ':' || _sdc_table_version, ',' ORDER BY id) FROM aurora_prod.orders`); got != "3:three again:200,4:four:200" {
		t.Fatalf("after version 200: %s", got)
	}

	// A reset's copy made on a clock behind: its smaller version, once
	// active, still replaces the rows of version 200.
	loadAll(t, db, "aurora_prod", 1000, &commits, ordersSchema,
		`{"type":"RECORD","stream":"Orders","record":{"id":4,"Total Amount":4,"note":"four once more","tags":null,"placed_at":null,"paid":null,"_sdc_deleted_at":null},"version":150}`,
		`{"type":"ACTIVATE_VERSION","stream":"Orders","version":150}`,
		`{"type":"STATE","value":{"bookmarks":{"a":{"version":150}}}}`)
	if got := query(t, db, `SELECT string_agg(id || ':' || note || ':' || _sdc_table_version, ',' ORDER BY id) FROM aurora_prod.orders`); got != "4:four once more:150" {
		t.Fatalf("after version 150: %s", got)
	}
}

// TestPostgresWideningAndKeyless: new properties become columns, a type
// that no longer fits widens, a table without key appends every record.
func TestPostgresWideningAndKeyless(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	var commits []string
	loadAll(t, db, "s", 1000, &commits,
		`{"type":"SCHEMA","stream":"events","schema":{"type":"object","properties":{"n":{"type":["null","integer"],"minimum":-9223372036854775808,"maximum":9223372036854775807},"kind":{"type":["null","string"]}}},"key_properties":[]}`,
		`{"type":"RECORD","stream":"events","record":{"n":1,"kind":"a"}}`,
		`{"type":"RECORD","stream":"events","record":{"n":1,"kind":"a"}}`,
		`{"type":"STATE","value":{"x":1}}`)
	loadAll(t, db, "s", 1000, &commits,
		`{"type":"SCHEMA","stream":"events","schema":{"type":"object","properties":{"n":{"type":["null","number"]},"kind":{"type":["null","integer"]},"extra":{"type":["null","object"],"properties":{}}}},"key_properties":[]}`,
		`{"type":"RECORD","stream":"events","record":{"n":1.5,"kind":7,"extra":{"k":"v"}}}`,
		`{"type":"STATE","value":{"x":2}}`)
	if got := query(t, db, `SELECT string_agg(format('%s|%s|%s', n, kind, extra), ',' ORDER BY n, kind) FROM s.events`); got != `1|a|,1|a|,1.5|7|{"k": "v"}` {
		t.Fatalf("rows: %s", got)
	}
	if types := query(t, db, `SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) FROM pg_attribute
		WHERE attrelid = 's.events'::regclass AND attnum > 0 AND attname NOT LIKE '\_sdc%'`); types != "n numeric, kind text, extra jsonb" {
		t.Fatalf("columns after widening: %s", types)
	}
	if strings.Join(commits, ",") != `{"x":1},{"x":2}` {
		t.Fatalf("commits: %v", commits)
	}
}

// TestPostgresNameCollisionsAndBadRecords: names are made safe, and names
// that collide, keys that change and records that do not fit are errors that
// commit nothing.
func TestPostgresNameCollisionsAndBadRecords(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	schemaOf := func(stream, props, keys string) string {
		return fmt.Sprintf(`{"type":"SCHEMA","stream":%q,"schema":{"type":"object","properties":{%s}},"key_properties":[%s]}`, stream, props, keys)
	}
	intProp := func(name string) string { return fmt.Sprintf(`%q:{"type":["integer"],"minimum":0,"maximum":10}`, name) }
	cases := []struct {
		name  string
		lines []string
		want  string
	}{
		{"two streams, one table", []string{schemaOf("My-Table", intProp("id"), `"id"`), schemaOf("my table", intProp("id"), `"id"`)},
			`streams "My-Table" and "my table" both load into table "s"."my_table"`},
		{"two properties, one column", []string{schemaOf("t", intProp("A b")+","+intProp("a_b"), "")},
			`properties "A b" and "a_b" both load into column "a_b"`},
		{"key property missing from the schema", []string{schemaOf("t", intProp("id"), `"nope"`)}, `key property "nope" is not in its SCHEMA`},
		{"record before schema", []string{`{"type":"RECORD","stream":"zz","record":{"id":1}}`}, "RECORD before its SCHEMA"},
		{"property the schema lacks", []string{schemaOf("t2", intProp("id"), `"id"`), `{"type":"RECORD","stream":"t2","record":{"id":1,"x":2}}`},
			`a record has property "x", which its SCHEMA lacks`},
		{"null key", []string{schemaOf("t3", intProp("id"), `"id"`), `{"type":"RECORD","stream":"t3","record":{"id":null}}`}, `key property "id" is null`},
		{"a string for a number", []string{schemaOf("t4", intProp("id"), `"id"`), `{"type":"RECORD","stream":"t4","record":{"id":"42"}}`}, `"42" is not a number`},
		{"a number for a boolean", []string{schemaOf("t8", intProp("id")+`,"b":{"type":["null","boolean"]}`, `"id"`), `{"type":"RECORD","stream":"t8","record":{"id":1,"b":1}}`}, "1 is not a boolean"},
		{"a word for a time", []string{schemaOf("t9", intProp("id")+`,"d":{"type":["null","string"],"format":"date-time"}`, `"id"`), `{"type":"RECORD","stream":"t9","record":{"id":1,"d":"now"}}`},
			`"now" is not an ISO 8601 date-time`},
		{"not JSON", []string{`{"type":"RECORD",`}, "a message is not JSON"},
		{"a value that is not JSON", []string{schemaOf("t5", intProp("id")+`,"s":{"type":["null","string"]}`, `"id"`), `{"type":"RECORD","stream":"t5","record":{"id":1,"s":tru}}`},
			"tru is not a JSON value"},
		{"a NUL in text", []string{schemaOf("t6", intProp("id")+`,"s":{"type":["null","string"]}`, `"id"`), `{"type":"RECORD","stream":"t6","record":{"id":1,"s":"a\u0000b"}}`},
			"cannot hold a NUL character"},
		{"a record that is not an object", []string{schemaOf("t7", intProp("id"), `"id"`), `{"type":"RECORD","stream":"t7","record":[1]}`},
			"record is not a JSON object"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var commits []string
			d := postgresDest(t, db, "s", 1000, &commits)
			err := send(t, d, append(c.lines, fmt.Sprintf(`{"type":"STATE","value":{"case":%d}}`, i))...)
			if err == nil {
				err = d.Close()
			} else {
				d.Close()
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
			if len(commits) != 0 {
				t.Fatalf("a state was committed after a failed load: %v", commits)
			}
			if rows := d.Rows(); len(rows) != 0 {
				t.Fatalf("records of a failed load counted as loaded: %v", rows)
			}
		})
	}
	if got := query(t, db, `SELECT count(*)::text FROM pg_tables WHERE schemaname = 's'`); got != "0" {
		t.Fatalf("failed loads left %s tables", got)
	}

	// A table of the same name made by someone else, and a key change.
	testpg.Exec(t, pg, db, `CREATE TABLE s.theirs (id int)`)
	var commits []string
	d := postgresDest(t, db, "s", 1000, &commits)
	err := send(t, d, schemaOf("Theirs", intProp("id"), `"id"`), `{"type":"STATE","value":{}}`)
	if err == nil {
		err = d.Close()
	}
	if err == nil || !strings.Contains(err.Error(), `which was not made by tap-postgres`) {
		t.Fatalf("error %v", err)
	}
	loadAll(t, db, "s", 1000, &commits, schemaOf("k", intProp("a")+","+intProp("b"), `"a"`), `{"type":"STATE","value":{}}`)
	d = postgresDest(t, db, "s", 1000, &commits)
	err = send(t, d, schemaOf("k", intProp("a")+","+intProp("b"), `"a","b"`), `{"type":"STATE","value":{}}`)
	if err == nil {
		err = d.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "key changed from (a) to (a, b)") {
		t.Fatalf("error %v", err)
	}

	// Another integration loading into the same schema.
	other, err := destination.OpenPostgres(context.Background(), pg.ConnString(db), "s", "other", destination.Options{
		Commit: func(json.RawMessage) error { return nil }, Clock: fixedClock, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	err = send(t, other, schemaOf("k", intProp("a")+","+intProp("b"), `"a"`), `{"type":"STATE","value":{}}`)
	if err == nil {
		err = other.Close()
	}
	if err == nil || !strings.Contains(err.Error(), `which is marked "tap-postgres stream k of integration test"`) {
		t.Fatalf("error %v", err)
	}
}

// TestPostgresCommitsAfterLoading: a state is committed only when the rows
// before it are visible to another session, at most batch_rows apart.
func TestPostgresCommitsAfterLoading(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	var visible []string
	ctx, cancel := context.WithCancel(context.Background())
	d, err := destination.OpenPostgres(ctx, pg.ConnString(db), "s", "test", destination.Options{
		Commit: func(s json.RawMessage) error {
			visible = append(visible, string(s)+"="+query(t, db, "SELECT count(*)::text FROM s.t"))
			return nil
		},
		Clock: fixedClock, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), BatchRows: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := []string{`{"type":"SCHEMA","stream":"t","schema":{"type":"object","properties":{"id":{"type":["integer"],"minimum":0,"maximum":100}}},"key_properties":["id"]}`}
	for i := 1; i <= 7; i++ {
		lines = append(lines, fmt.Sprintf(`{"type":"RECORD","stream":"t","record":{"id":%d}}`, i), fmt.Sprintf(`{"type":"STATE","value":{"n":%d}}`, i))
	}
	if err := send(t, d, lines...); err != nil {
		t.Fatal(err)
	}
	// A job stopped by SIGTERM still loads what it holds and commits.
	cancel()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(visible, " "); got != `{"n":3}=3 {"n":6}=6 {"n":7}=7` {
		t.Fatalf("commits and the rows visible at each: %s", got)
	}
}

// TestPostgresInterleavedStreamsAndShapes: records of two streams
// interleaved one by one, and one stream alternating full rows and deletes,
// load in one batch (one staging table per stream, not per run); a key's
// records fold in order, so a row deleted after an update keeps the update.
func TestPostgresInterleavedStreamsAndShapes(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	var commits []string
	d := postgresDest(t, db, "s", 100000, &commits)
	schema := func(stream string) string {
		return fmt.Sprintf(`{"type":"SCHEMA","stream":%q,"schema":{"type":"object","properties":{"id":{"type":["integer"],"minimum":0,"maximum":100000},"v":{"type":["null","string"]},"_sdc_deleted_at":{"type":["null","string"],"format":"date-time"}}},"key_properties":["id"]}`, stream)
	}
	lines := []string{schema("orders"), schema("items"), schema("shapes")}
	// Every row exists before the batch, so the merge path (not the empty
	// table's append) is taken.
	for i := 1; i <= 3000; i++ {
		for _, s := range []string{"orders", "items", "shapes"} {
			lines = append(lines, fmt.Sprintf(`{"type":"RECORD","stream":%q,"record":{"id":%d,"v":"old","_sdc_deleted_at":null}}`, s, i))
		}
	}
	lines = append(lines, `{"type":"STATE","value":{"n":0}}`)
	if err := send(t, d, lines...); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = postgresDest(t, db, "s", 100000, &commits)
	lines = []string{schema("orders"), schema("items"), schema("shapes")}
	for i := 1; i <= 3000; i++ {
		lines = append(lines,
			fmt.Sprintf(`{"type":"RECORD","stream":"orders","record":{"id":%d,"v":"o%d","_sdc_deleted_at":null}}`, i, i),
			fmt.Sprintf(`{"type":"RECORD","stream":"items","record":{"id":%d,"v":"i%d","_sdc_deleted_at":null}}`, i, i),
			fmt.Sprintf(`{"type":"RECORD","stream":"shapes","record":{"id":%d,"v":"s%d","_sdc_deleted_at":null}}`, i, i))
		if i%2 == 0 {
			lines = append(lines, fmt.Sprintf(`{"type":"RECORD","stream":"shapes","record":{"id":%d,"_sdc_deleted_at":"2026-01-01T00:00:00+00:00"}}`, i))
		}
	}
	lines = append(lines, `{"type":"STATE","value":{"n":1}}`)
	if err := send(t, d, lines...); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := query(t, db, `SELECT (SELECT count(*) FILTER (WHERE v = 'o' || id) FROM s.orders) || '/' || (SELECT count(*) FILTER (WHERE v = 'i' || id) FROM s.items)`); got != "3000/3000" {
		t.Fatalf("interleaved streams: %s rows updated of 3000/3000", got)
	}
	if got := query(t, db, `SELECT count(*) FILTER (WHERE v = 's' || id AND (_sdc_deleted_at IS NOT NULL) = (id % 2 = 0)) || '/' || count(*) FROM s.shapes`); got != "3000/3000" {
		t.Fatalf("alternating shapes: %s rows as expected", got)
	}
	if strings.Join(commits, ",") != `{"n":0},{"n":1}` {
		t.Fatalf("commits: %v", commits)
	}
}

// TestPostgresLiveAgainAfterMethodChange: a row soft-deleted by LOG_BASED
// is live again when a FULL_TABLE copy (whose schema has no
// _sdc_deleted_at) loads it.
func TestPostgresLiveAgainAfterMethodChange(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	var commits []string
	loadAll(t, db, "s", 1000, &commits,
		`{"type":"SCHEMA","stream":"t","schema":{"type":"object","properties":{"id":{"type":["integer"],"minimum":0,"maximum":10},"v":{"type":["null","string"]},"_sdc_deleted_at":{"type":["null","string"],"format":"date-time"}}},"key_properties":["id"]}`,
		`{"type":"RECORD","stream":"t","record":{"id":1,"v":"a","_sdc_deleted_at":null},"version":1}`,
		`{"type":"RECORD","stream":"t","record":{"id":1,"_sdc_deleted_at":"2026-01-01T00:00:00+00:00"},"version":1}`,
		`{"type":"STATE","value":{}}`)
	loadAll(t, db, "s", 1000, &commits,
		`{"type":"SCHEMA","stream":"t","schema":{"type":"object","properties":{"id":{"type":["integer"],"minimum":0,"maximum":10},"v":{"type":["null","string"]}}},"key_properties":["id"]}`,
		`{"type":"RECORD","stream":"t","record":{"id":1,"v":"back"},"version":2}`,
		`{"type":"ACTIVATE_VERSION","stream":"t","version":2}`,
		`{"type":"STATE","value":{}}`)
	if got := query(t, db, `SELECT format('%s|%s|%s|%s', id, v, _sdc_deleted_at, _sdc_table_version) FROM s.t`); got != "1|back||2" {
		t.Fatalf("row after a FULL_TABLE copy: %s", got)
	}
}

// TestPostgresFence: when the fence fails (the job's lock was lost), the
// load is rolled back and no state is committed.
func TestPostgresFence(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	var commits []string
	d, err := destination.OpenPostgres(context.Background(), pg.ConnString(db), "s", "test", destination.Options{
		Commit: func(s json.RawMessage) error { commits = append(commits, string(s)); return nil },
		Clock:  fixedClock, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Fence: func() error { return errors.New("job lock lost: its session has ended") },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := send(t, d, `{"type":"SCHEMA","stream":"t","schema":{"type":"object","properties":{"id":{"type":["integer"],"minimum":0,"maximum":10}}},"key_properties":["id"]}`,
		`{"type":"RECORD","stream":"t","record":{"id":1}}`, `{"type":"STATE","value":{"bookmarks":{}}}`); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err == nil || !strings.Contains(err.Error(), "not committed: job lock lost") {
		t.Fatalf("close: %v", err)
	}
	if len(commits) != 0 || query(t, db, `SELECT count(*)::text FROM pg_tables WHERE schemaname = 's'`) != "0" {
		t.Fatalf("a fenced load left commits %v or tables", commits)
	}
}

// TestPostgresLeastPrivilegedRole loads as a role that may create tables
// in its schema only (no CREATE on the database).
func TestPostgresLeastPrivilegedRole(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	role := "loader_" + db[len(db)-8:]
	testpg.Exec(t, pg, db, fmt.Sprintf(`CREATE ROLE %[1]s LOGIN PASSWORD 'pw'; CREATE SCHEMA warehouse AUTHORIZATION %[1]s;
		REVOKE CREATE ON DATABASE %[2]q FROM PUBLIC; REVOKE CREATE ON SCHEMA public FROM PUBLIC;`, role, db))
	t.Cleanup(func() {
		testpg.Exec(t, pg, db, "DROP OWNED BY "+role)
		testpg.Exec(t, pg, "postgres", "DROP ROLE "+role)
	})
	dsn := fmt.Sprintf("postgres://%s:pw@%s:%d/%s?sslmode=disable", role, pg.Host, pg.Port, db)
	var commits []string
	d, err := destination.OpenPostgres(context.Background(), dsn, "warehouse", "test", destination.Options{
		Commit: func(s json.RawMessage) error { commits = append(commits, string(s)); return nil },
		Clock:  fixedClock, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := send(t, d, `{"type":"SCHEMA","stream":"t","schema":{"type":"object","properties":{"id":{"type":["integer"],"minimum":0,"maximum":10}}},"key_properties":["id"]}`,
		`{"type":"RECORD","stream":"t","record":{"id":1}}`, `{"type":"STATE","value":{"bookmarks":{}}}`,
		`{"type":"RECORD","stream":"t","record":{"id":1}}`, `{"type":"STATE","value":{"bookmarks":{"x":{}}}}`); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := query(t, db, "SELECT count(*)::text FROM warehouse.t"); got != "1" || len(commits) != 1 {
		t.Fatalf("rows %s, commits %v", got, commits)
	}
	if _, err := destination.OpenPostgres(context.Background(), dsn, "elsewhere", "test", destination.Options{Clock: fixedClock}); err == nil ||
		!strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("a schema the role may not create: %v", err)
	}
}

// TestPostgresKeysEqualByValue: key values PostgreSQL holds equal fold
// into one row though written differently (2.0 and 2.00, as a LOG_BASED key
// update emits them).
func TestPostgresKeysEqualByValue(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	var commits []string
	loadAll(t, db, "s", 1000, &commits, `{"type":"SCHEMA","stream":"t","schema":{"type":"object","properties":{"id":{"type":["number"]},"v":{"type":["null","string"]},"_sdc_deleted_at":{"type":["null","string"],"format":"date-time"}}},"key_properties":["id"]}`,
		`{"type":"RECORD","stream":"t","record":{"id":2.0,"v":"new","_sdc_deleted_at":null}}`,
		`{"type":"RECORD","stream":"t","record":{"id":2.0,"_sdc_deleted_at":"2026-01-01T00:00:00+00:00"}}`,
		`{"type":"RECORD","stream":"t","record":{"id":2.00,"v":"b","_sdc_deleted_at":null}}`,
		`{"type":"STATE","value":{"bookmarks":{}}}`)
	if got := query(t, db, `SELECT string_agg(format('%s|%s|%s', id, v, _sdc_deleted_at), ',') FROM s.t`); got != "2.00|b|" {
		t.Fatalf("rows: %s", got)
	}
}

// TestPostgresAdoptsFirstReleaseTables: a table whose comment names only
// its stream (as the first releases wrote it) is taken as the stream's.
func TestPostgresAdoptsFirstReleaseTables(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	var commits []string
	schema := `{"type":"SCHEMA","stream":"t","schema":{"type":"object","properties":{"id":{"type":["integer"],"minimum":0,"maximum":10}}},"key_properties":["id"]}`
	loadAll(t, db, "s", 1000, &commits, schema, `{"type":"RECORD","stream":"t","record":{"id":1}}`, `{"type":"STATE","value":{"bookmarks":{}}}`)
	testpg.Exec(t, pg, db, `COMMENT ON TABLE s.t IS 'tap-postgres stream t'`)
	loadAll(t, db, "s", 1000, &commits, schema, `{"type":"RECORD","stream":"t","record":{"id":2}}`, `{"type":"STATE","value":{"bookmarks":{}}}`)
	if got := query(t, db, `SELECT count(*) || ' ' || obj_description('s.t'::regclass, 'pg_class') FROM s.t`); got != "2 tap-postgres stream t of integration test" {
		t.Fatalf("adopted table: %s", got)
	}
}

// TestPostgresFailedLoadIsReported: after a load fails in the background,
// later writes are refused and Close reports the failure, so a job is never
// taken as cleanly stopped.
func TestPostgresFailedLoadIsReported(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	var commits []string
	d := postgresDest(t, db, "s", 1, &commits)
	testpg.Exec(t, pg, db, `CREATE SCHEMA IF NOT EXISTS s`)
	err := send(t, d, `{"type":"SCHEMA","stream":"t","schema":{"type":"object","properties":{"id":{"type":["integer"],"minimum":0,"maximum":10},"d":{"type":["null","string"],"format":"date-time"}}},"key_properties":["id"]}`,
		`{"type":"RECORD","stream":"t","record":{"id":1,"d":"2024-01-01"}}`, `{"type":"STATE","value":{"bookmarks":{"n":1}}}`,
		// Valid JSON and ISO 8601, but no date PostgreSQL accepts.
		`{"type":"RECORD","stream":"t","record":{"id":2,"d":"2024-02-30"}}`, `{"type":"STATE","value":{"bookmarks":{"n":2}}}`,
		`{"type":"RECORD","stream":"t","record":{"id":3,"d":"2024-03-01"}}`, `{"type":"STATE","value":{"bookmarks":{"n":3}}}`)
	// The failure surfaces at a later write or at Close.
	for i := 0; err == nil && i < 100; i++ {
		_, err = d.Write([]byte(`{"type":"STATE","value":{"bookmarks":{"n":4}}}` + "\n"))
		time.Sleep(10 * time.Millisecond)
	}
	closeErr := d.Close()
	if closeErr == nil || !strings.Contains(closeErr.Error(), "date/time field value out of range") {
		t.Fatalf("close after a failed load: %v (write: %v)", closeErr, err)
	}
	for _, c := range commits {
		if !strings.Contains(c, `"n":1`) {
			t.Fatalf("a state after the failed load was committed: %v", commits)
		}
	}
}

// TestPostgresManyStreamsOneBatch: a batch of hundreds of streams (a first
// job of select all) is applied in several transactions, so that it never
// holds locks on all their tables at once; when a later transaction fails,
// the state is not committed, though the earlier ones stay (the next job
// upserts their rows again).
func TestPostgresManyStreamsOneBatch(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	var commits []string
	d := postgresDest(t, db, "s", 100000, &commits)
	const streams, bad = 450, 420
	var lines []string
	for i := range streams {
		v := `"x"`
		if i == bad {
			v = `tru`
		}
		lines = append(lines,
			fmt.Sprintf(`{"type":"SCHEMA","stream":"t%d","schema":{"type":"object","properties":{"id":{"type":["integer"],"minimum":0,"maximum":10},"v":{"type":["null","string"]}}},"key_properties":["id"]}`, i),
			fmt.Sprintf(`{"type":"RECORD","stream":"t%d","record":{"id":1,"v":%s}}`, i, v))
	}
	lines = append(lines, `{"type":"STATE","value":{"bookmarks":{}}}`)
	if err := send(t, d, lines...); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err == nil || !strings.Contains(err.Error(), `stream t420: property "v"`) {
		t.Fatalf("close: %v", err)
	}
	if len(commits) != 0 {
		t.Fatalf("a state was committed: %v", commits)
	}
	// Transactions of 200 streams: the first two committed, the third not.
	if got := query(t, db, `SELECT count(*)::text FROM pg_tables WHERE schemaname = 's'`); got != "400" {
		t.Fatalf("%s tables", got)
	}
}

// TestPostgresLockTimeout: a load that waits for a lock held elsewhere (a
// long report, a migration) fails after the lock timeout, committing
// nothing, instead of hanging the job.
func TestPostgresLockTimeout(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	var commits []string
	schema := `{"type":"SCHEMA","stream":"t","schema":{"type":"object","properties":{"id":{"type":["integer"],"minimum":0,"maximum":10}}},"key_properties":["id"]}`
	loadAll(t, db, "s", 1000, &commits, schema, `{"type":"RECORD","stream":"t","record":{"id":1}}`, `{"type":"STATE","value":{"n":1}}`)

	holder, err := pgx.Connect(context.Background(), pg.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	tx, err := holder.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(context.Background(), "LOCK TABLE s.t IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	d, err := destination.OpenPostgres(context.Background(), pg.ConnString(db), "s", "test", destination.Options{
		Commit: func(s json.RawMessage) error { commits = append(commits, string(s)); return nil },
		Clock:  fixedClock, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), LockTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	err = send(t, d, schema, `{"type":"RECORD","stream":"t","record":{"id":2}}`, `{"type":"STATE","value":{"n":2}}`)
	if err == nil {
		err = d.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "SQLSTATE 55P03") {
		t.Fatalf("load behind a held lock: %v", err)
	}
	if strings.Join(commits, ",") != `{"n":1}` {
		t.Fatalf("commits: %v", commits)
	}
}

// TestPostgresLoadProvokesNoServerError: choosing between appending and
// merging raises no error on the server, whose log DBAs alert on and
// which must not hold key values: not for keys a later batch of the job
// repeats (LOG_BASED's first job: its copy, then changes), not for keys an
// earlier job stored, with a bigint key, a composite one, a time written
// in another way, or a text key of a case-insensitive collation, under
// which the table holds "ABC" as "abc".
func TestPostgresLoadProvokesNoServerError(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	serverLog := filepath.Join(pg.BaseDir, "server.log")
	before, err := os.Stat(serverLog)
	if err != nil {
		t.Fatal(err)
	}
	customers := `{"type":"SCHEMA","stream":"customers","schema":{"type":"object","properties":{
		"id":{"type":["integer"],"minimum":-9223372036854775808,"maximum":9223372036854775807},
		"email":{"type":["null","string"]}}},"key_properties":["id"]}`
	orderLines := `{"type":"SCHEMA","stream":"order_lines","schema":{"type":"object","properties":{
		"order_code":{"type":["string"]},"line":{"type":["integer"],"minimum":0,"maximum":1000},
		"qty":{"type":["null","integer"],"minimum":0,"maximum":1000}}},"key_properties":["order_code","line"]}`
	codes := `{"type":"SCHEMA","stream":"codes","schema":{"type":"object","properties":{
		"code":{"type":["string"]},"label":{"type":["null","string"]}}},"key_properties":["code"]}`
	readings := `{"type":"SCHEMA","stream":"readings","schema":{"type":"object","properties":{
		"at":{"type":["string"],"format":"date-time"},"value":{"type":["null","number"]}}},"key_properties":["at"]}`
	customer := func(id int, email string) string {
		return fmt.Sprintf(`{"type":"RECORD","stream":"customers","record":{"id":%d,"email":%q}}`, id, email)
	}
	orderLine := func(order string, line, qty int) string {
		return fmt.Sprintf(`{"type":"RECORD","stream":"order_lines","record":{"order_code":%q,"line":%d,"qty":%d}}`, order, line, qty)
	}
	code := func(code, label string) string {
		return fmt.Sprintf(`{"type":"RECORD","stream":"codes","record":{"code":%q,"label":%q}}`, code, label)
	}
	reading := func(at string, value int) string {
		return fmt.Sprintf(`{"type":"RECORD","stream":"readings","record":{"at":%q,"value":%d}}`, at, value)
	}
	state := `{"type":"STATE","value":{"bookmarks":{}}}`
	var commits []string
	// Batches of one row end at each STATE.
	loadAll(t, db, "s", 1, &commits, customers, orderLines, codes, readings,
		customer(1, "ann@example.com"), customer(2, "bob@example.com"),
		orderLine("A", 1, 1), orderLine("A", 2, 1), code("abc", "first"), reading("2024-06-01T12:00:00Z", 1), state,
		customer(3, "cy@example.com"), customer(2, "bob@example.org"),
		orderLine("A", 2, 5), orderLine("B", 1, 1), code("abd", "other"), reading("2024-06-01T14:00:00+02:00", 2), state)
	testpg.Exec(t, pg, db, `CREATE COLLATION case_insensitive (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
		ALTER TABLE s.codes ALTER COLUMN code TYPE text COLLATE case_insensitive`)
	loadAll(t, db, "s", 1, &commits, customers, orderLines, codes,
		customer(11, "dee@example.com"), customer(12, "eve@example.com"), code("abe", "third"), state,
		customer(13, "fay@example.com"), customer(2, "bob@example.net"),
		orderLine("A", 1, 9), code("ABC", "second"), state)

	for _, c := range []struct{ sql, want string }{
		{`SELECT string_agg(id || ' ' || email, ', ' ORDER BY id) FROM s.customers`,
			"1 ann@example.com, 2 bob@example.net, 3 cy@example.com, 11 dee@example.com, 12 eve@example.com, 13 fay@example.com"},
		{`SELECT string_agg(order_code || line || ' ' || qty, ', ' ORDER BY order_code, line) FROM s.order_lines`, "A1 9, A2 5, B1 1"},
		{`SELECT string_agg(code || ' ' || label, ', ' ORDER BY code COLLATE "C") FROM s.codes`, "abc second, abd other, abe third"},
		{`SELECT string_agg(at || ' ' || value, ', ') FROM s.readings`, "2024-06-01 12:00:00+00 2"},
	} {
		if got := query(t, db, c.sql); got != c.want {
			t.Errorf("%s: %s, want %s", c.sql, got, c.want)
		}
	}
	// The package's tests run one at a time: what the log gained is this
	// test's.
	logged, err := os.ReadFile(serverLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(logged[before.Size():]), "\n") {
		if strings.Contains(line, "ERROR:") || strings.Contains(line, "duplicate key") {
			t.Errorf("server log: %s", line)
		}
	}
}

// TestPostgresGreatestKeyByValue: a later job's keys above the greatest
// held by value but not as text (10 after 9) are looked up, not appended
// over a stored 10.
func TestPostgresGreatestKeyByValue(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	schema := `{"type":"SCHEMA","stream":"t","schema":{"type":"object","properties":{"id":{"type":["integer"],"minimum":-9223372036854775808,"maximum":9223372036854775807},"v":{"type":["null","string"]}}},"key_properties":["id"]}`
	record := func(id int, v string) string {
		return fmt.Sprintf(`{"type":"RECORD","stream":"t","record":{"id":%d,"v":%q}}`, id, v)
	}
	var commits []string
	first := []string{schema}
	for id := 1; id <= 10; id++ {
		first = append(first, record(id, "first"))
	}
	loadAll(t, db, "s", 1000, &commits, append(first, `{"type":"STATE","value":{}}`)...)
	loadAll(t, db, "s", 1000, &commits, schema, record(10, "second"), record(11, "second"), `{"type":"STATE","value":{}}`)
	if got := query(t, db, "SELECT count(*) || '/' || string_agg(v, ',' ORDER BY id) FILTER (WHERE id >= 10) FROM s.t"); got != "11/second,second" {
		t.Fatalf("rows after the second job: %s", got)
	}
}

// TestPostgresLoadsWithoutState: STATEs may come seconds apart
// (state_interval_seconds); records are loaded once twice batch_rows are
// held all the same, so memory does not grow with the time between them,
// and the last STATE before them committed.
func TestPostgresLoadsWithoutState(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	var visible []string
	d, err := destination.OpenPostgres(context.Background(), pg.ConnString(db), "s", "test", destination.Options{
		Commit: func(s json.RawMessage) error {
			visible = append(visible, string(s)+"="+query(t, db, "SELECT count(*)::text FROM s.t"))
			return nil
		},
		Clock: fixedClock, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), BatchRows: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := []string{`{"type":"SCHEMA","stream":"t","schema":{"type":"object","properties":{"id":{"type":["integer"],"minimum":0,"maximum":100}}},"key_properties":["id"]}`,
		`{"type":"STATE","value":{"n":0}}`}
	for i := 1; i <= 5; i++ {
		lines = append(lines, fmt.Sprintf(`{"type":"RECORD","stream":"t","record":{"id":%d}}`, i))
	}
	if err := send(t, d, lines...); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(visible, " "); got != `{"n":0}=4` {
		t.Fatalf("commits and the rows visible at each: %s", got)
	}
}
