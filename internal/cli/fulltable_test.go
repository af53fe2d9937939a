package cli_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/cli"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

// lineWriter passes complete lines to onLine and fails once limit lines were
// written, as a tap killed mid-copy would stop: whatever reached the target
// before the crash is all there is.
type lineWriter struct {
	buf     bytes.Buffer
	pending []byte
	lines   int
	limit   int // 0 = no limit
	onLine  func(line []byte)
}

var errCrash = errors.New("simulated crash")

func (w *lineWriter) Write(p []byte) (int, error) {
	w.pending = append(w.pending, p...)
	for {
		i := bytes.IndexByte(w.pending, '\n')
		if i < 0 {
			return len(p), nil
		}
		if w.limit > 0 && w.lines >= w.limit {
			return 0, errCrash
		}
		line := w.pending[:i+1]
		w.buf.Write(line)
		w.lines++
		if w.onLine != nil {
			w.onLine(line)
		}
		w.pending = w.pending[i+1:]
	}
}

func createNumbered(t *testing.T, db, table string, n int) {
	t.Helper()
	testpg.Exec(t, pg, db, fmt.Sprintf(`CREATE TABLE %s (id integer PRIMARY KEY, val text NOT NULL);
		INSERT INTO %s SELECT g, 'v' || g FROM generate_series(1, %d) g;`, table, table, n))
}

func fullTableCatalog(t *testing.T, cfg string, ids ...string) string {
	t.Helper()
	catalog := discover(t, cfg)
	selectStreams(catalog, map[string]any{"replication-method": "FULL_TABLE"}, ids...)
	return writeFile(t, "catalog.json", catalog)
}

// TestFullTableResumeAfterCrash interrupts copies at several points, resumes
// each from the last STATE that got out, and proves no row is lost and the
// resumed copy keeps its version.
func TestFullTableResumeAfterCrash(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	const rows = 5000
	createNumbered(t, db, "public.items", rows)
	cfg := writeFile(t, "config.json", configFor(db, map[string]any{"itersize": 700}))
	catalog := fullTableCatalog(t, cfg)
	id := db + "-public-items"

	for _, crashAt := range []int{3, 1500, 2999, 4003} {
		t.Run(fmt.Sprint(crashAt), func(t *testing.T) {
			crashed := &lineWriter{limit: crashAt}
			r := runTap(t, cli.Env{Stdout: crashed}, "--config", cfg, "--catalog", catalog)
			if r.code != 1 || !strings.HasPrefix(lastLine(r.stderr), "CRITICAL") {
				t.Fatalf("crashed run: exit %d, stderr:\n%s", r.code, r.stderr)
			}
			first := parseMessages(t, crashed.buf.Bytes())
			seen := map[string]int{}
			var version any
			for _, m := range first {
				if m["type"] == "RECORD" {
					seen[m["record"].(map[string]any)["id"].(json.Number).String()]++
					version = m["version"]
				}
			}
			var statePath string
			var resumeFrom map[string]any
			for _, m := range first {
				if m["type"] == "STATE" {
					resumeFrom = m["value"].(map[string]any)
				}
			}
			statePath = writeFile(t, "state.json", resumeFrom)
			second := runTap(t, cli.Env{}, "--config", cfg, "--catalog", catalog, "--state", statePath)
			if second.code != 0 {
				t.Fatalf("resumed run exited %d:\n%s", second.code, second.stderr)
			}
			bm := resumeFrom["bookmarks"].(map[string]any)[id].(map[string]any)
			pk, resumed := bm["last_pk_fetched"].(map[string]any)
			for _, rec := range second.messages {
				if rec["type"] != "RECORD" {
					continue
				}
				key := rec["record"].(map[string]any)["id"].(json.Number).String()
				seen[key]++
				if resumed && rec["version"] != bm["version"] {
					t.Fatalf("resumed copy emitted version %v, the interrupted copy was version %v", rec["version"], bm["version"])
				}
			}
			for i := 1; i <= rows; i++ {
				if seen[fmt.Sprint(i)] == 0 {
					t.Fatalf("row %d lost across the crash at line %d", i, crashAt)
				}
			}
			if resumed {
				// Resuming skips what the STATE covers: only rows after the key repeat.
				after := pk["id"].(string)
				firstResumed := records(second.messages, "items")[0]["id"].(json.Number).String()
				if fmt.Sprint(mustAtoi(t, after)+1) != firstResumed {
					t.Fatalf("resumed after key %s but the first record is %s", after, firstResumed)
				}
				if version == nil {
					t.Fatal("resumable state without any record before it")
				}
			} else if crashAt > 1100 {
				t.Fatalf("a crash after %d lines left no resumable key in the state: %v", crashAt, bm)
			}
			final := lastState(t, second.messages)
			fb := final["bookmarks"].(map[string]any)[id].(map[string]any)
			if _, still := fb["last_pk_fetched"]; still || final["currently_syncing"] != nil {
				t.Fatalf("final state still marks a copy in progress: %v", final)
			}
		})
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestFullTableSnapshotUnderConcurrentUpdates moves rows across the keyset
// cursor while the copy runs: keys already read jump ahead of it and keys not
// yet read jump behind it. Reading from one snapshot, the copy must emit
// exactly the table as it was when the copy began.
func TestFullTableSnapshotUnderConcurrentUpdates(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	const rows = 6000
	createNumbered(t, db, "public.moving", rows)
	cfg := writeFile(t, "config.json", configFor(db, map[string]any{"itersize": 500}))
	catalog := fullTableCatalog(t, cfg)
	updated := false
	w := &lineWriter{onLine: func(line []byte) {
		if updated || !bytes.Contains(line, []byte(`"last_pk_fetched"`)) {
			return
		}
		updated = true
		testpg.Exec(t, pg, db, `
			UPDATE moving SET id = id + 1000000, val = 'moved ahead' WHERE id <= 500;
			UPDATE moving SET id = -id, val = 'moved behind' WHERE id > 5000;
			UPDATE moving SET val = 'changed' WHERE id BETWEEN 2000 AND 2100;
			DELETE FROM moving WHERE id BETWEEN 3000 AND 3099;
			INSERT INTO moving SELECT g, 'new' FROM generate_series(7000, 7100) g;`)
	}}
	r := runTap(t, cli.Env{Stdout: w}, "--config", cfg, "--catalog", catalog)
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	if !updated {
		t.Fatal("the concurrent update never ran: no STATE with last_pk_fetched")
	}
	got := map[string]string{}
	for _, rec := range records(parseMessages(t, w.buf.Bytes()), "moving") {
		id := rec["id"].(json.Number).String()
		if _, dup := got[id]; dup {
			t.Fatalf("row %s emitted twice", id)
		}
		got[id] = rec["val"].(string)
	}
	if len(got) != rows {
		t.Fatalf("emitted %d rows, the snapshot held %d", len(got), rows)
	}
	for i := 1; i <= rows; i++ {
		if got[fmt.Sprint(i)] != fmt.Sprintf("v%d", i) {
			t.Fatalf("row %d: got %q, want the snapshot's value v%d", i, got[fmt.Sprint(i)], i)
		}
	}
}

// TestFullTableVersionsAndStateCadence checks the ACTIVATE_VERSION rules and
// that STATE comes at least every 1000 records.
func TestFullTableVersionsAndStateCadence(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	createNumbered(t, db, "public.cadence", 2500)
	testpg.Exec(t, pg, db, `CREATE TABLE nokey (v integer); INSERT INTO nokey SELECT generate_series(1, 2345);
		CREATE VIEW cadence_view AS SELECT * FROM cadence WHERE id <= 10;`)
	cfg := writeFile(t, "config.json", configFor(db, nil))
	catalog := fullTableCatalog(t, cfg)
	clock := fixedClock(time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC))

	first := runTap(t, cli.Env{Clock: clock}, "--config", cfg, "--catalog", catalog)
	if first.code != 0 {
		t.Fatalf("exit %d:\n%s", first.code, first.stderr)
	}
	for _, stream := range []string{"cadence", "nokey", "cadence_view"} {
		msgs := streamMessages(first.messages, stream)
		if msgs[0] != "SCHEMA" || msgs[1] != "ACTIVATE_VERSION" || msgs[len(msgs)-1] != "ACTIVATE_VERSION" {
			t.Fatalf("first sync of %s: want SCHEMA, leading ACTIVATE_VERSION, ..., trailing ACTIVATE_VERSION; got %v ... %v",
				stream, msgs[:2], msgs[len(msgs)-1])
		}
	}
	since := 0
	for _, m := range first.messages {
		switch m["type"] {
		case "RECORD":
			since++
			if since > 1000 {
				t.Fatal("more than 1000 records without a STATE")
			}
		case "STATE":
			since = 0
		}
	}
	if got := len(records(first.messages, "cadence")); got != 2500 {
		t.Fatalf("cadence: %d records, want 2500", got)
	}
	if got := len(records(first.messages, "nokey")); got != 2345 {
		t.Fatalf("nokey: %d records, want 2345", got)
	}

	state := writeFile(t, "state.json", lastState(t, first.messages))
	second := runTap(t, cli.Env{Clock: clock}, "--config", cfg, "--catalog", catalog, "--state", state)
	if second.code != 0 {
		t.Fatalf("exit %d:\n%s", second.code, second.stderr)
	}
	for _, stream := range []string{"cadence", "nokey", "cadence_view"} {
		msgs := streamMessages(second.messages, stream)
		if msgs[1] == "ACTIVATE_VERSION" {
			t.Fatalf("second sync of %s sent a leading ACTIVATE_VERSION: the target would empty the table", stream)
		}
		if msgs[len(msgs)-1] != "ACTIVATE_VERSION" {
			t.Fatalf("second sync of %s lacks the trailing ACTIVATE_VERSION", stream)
		}
		v1, v2 := streamVersion(first.messages, stream), streamVersion(second.messages, stream)
		if v2 <= v1 {
			t.Fatalf("%s: second copy has version %d, not newer than %d", stream, v2, v1)
		}
	}
}

// streamMessages lists the message types of one stream (STATE excluded).
func streamMessages(msgs []map[string]any, stream string) []string {
	var out []string
	for _, m := range msgs {
		if m["stream"] == stream {
			out = append(out, m["type"].(string))
		}
	}
	return out
}

func streamVersion(msgs []map[string]any, stream string) int64 {
	for _, m := range msgs {
		if m["type"] == "ACTIVATE_VERSION" && m["stream"] == stream {
			v, _ := m["version"].(json.Number).Int64()
			return v
		}
	}
	return 0
}

// TestOutputIndependentOfServerSettings syncs the same rows with hostile
// database and role defaults (time zone, date style, interval style, bytea
// output, float digits) and expects identical records.
func TestOutputIndependentOfServerSettings(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	createEveryTypeTable(t, db, "public.every_type")
	role := "tz_role_" + db
	testpg.Exec(t, pg, db, fmt.Sprintf(`CREATE ROLE %[1]s LOGIN SUPERUSER PASSWORD 'pw';
		ALTER ROLE %[1]s SET TimeZone = 'Pacific/Chatham'; ALTER ROLE %[1]s SET IntervalStyle = 'iso_8601';
		ALTER DATABASE %[2]s SET DateStyle = 'SQL, DMY'; ALTER DATABASE %[2]s SET bytea_output = 'escape';
		ALTER DATABASE %[2]s SET extra_float_digits = -3; ALTER DATABASE %[2]s SET TimeZone = 'America/St_Johns';`, role, db))
	t.Cleanup(func() { testpg.Exec(t, pg, "postgres", "DROP ROLE IF EXISTS "+role) })

	plain := writeFile(t, "config.json", configFor(db, nil))
	catalog := fullTableCatalog(t, plain)
	hostileCfg := configFor(db, nil)
	hostileCfg["user"], hostileCfg["password"] = role, "pw"
	hostile := writeFile(t, "hostile.json", hostileCfg)

	a := runTap(t, cli.Env{}, "--config", plain, "--catalog", catalog)
	b := runTap(t, cli.Env{}, "--config", hostile, "--catalog", catalog)
	if a.code != 0 || b.code != 0 {
		t.Fatalf("exits %d, %d:\n%s\n%s", a.code, b.code, a.stderr, b.stderr)
	}
	ra, rb := rawRecords(t, a.stdout, "every_type"), rawRecords(t, b.stdout, "every_type")
	if len(ra) == 0 || len(ra) != len(rb) {
		t.Fatalf("record counts differ: %d vs %d", len(ra), len(rb))
	}
	for id, rec := range ra {
		for col, v := range rec {
			if !bytes.Equal(v, rb[id][col]) {
				t.Errorf("row %d column %s: %s with default settings, %s with hostile role/database settings", id, col, v, rb[id][col])
			}
		}
	}
}

// TestGoldenTranscripts pins the catalog of the every-type table and the
// message stream of its sync (versions and times masked, database named <db>).
func TestGoldenTranscripts(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	createEveryTypeTable(t, db, "public.every_type")
	testpg.Exec(t, pg, db, "ANALYZE every_type")
	cfg := writeFile(t, "config.json", configFor(db, nil))
	r := runTap(t, cli.Env{}, "--config", cfg, "--discover")
	if r.code != 0 {
		t.Fatalf("discover exited %d:\n%s", r.code, r.stderr)
	}
	golden(t, "catalog_every_type.json", strings.ReplaceAll(r.stdout, db, "<db>"))
	catalog := fullTableCatalog(t, cfg)
	s := runTap(t, cli.Env{}, "--config", cfg, "--catalog", catalog)
	if s.code != 0 {
		t.Fatalf("sync exited %d:\n%s", s.code, s.stderr)
	}
	golden(t, "sync_every_type.jsonl", maskVolatile(strings.ReplaceAll(s.stdout, db, "<db>")))
}

// TestParallelStreams copies several tables at once: their messages
// interleave, each stream's own messages stay in order, no STATE claims a
// row before it went out, and a crash mid-way resumes without loss.
func TestParallelStreams(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	const rows = 30000
	tables := []string{"p_one", "p_two", "p_three", "p_four"}
	for _, tbl := range tables {
		createNumbered(t, db, "public."+tbl, rows)
	}
	cfg := writeFile(t, "config.json", configFor(db, map[string]any{"max_parallel_streams": 3, "itersize": 5000}))
	catalog := fullTableCatalog(t, cfg)

	w := &lineWriter{}
	r := runTap(t, cli.Env{Stdout: w}, "--config", cfg, "--catalog", catalog)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	msgs := parseMessages(t, w.buf.Bytes())
	emitted := map[string]int{} // stream → highest id emitted so far (ids come in key order)
	open := map[string]bool{}
	interleaved := false
	for _, m := range msgs {
		stream, _ := m["stream"].(string)
		switch m["type"] {
		case "SCHEMA":
			open[stream] = true
		case "RECORD":
			id, _ := m["record"].(map[string]any)["id"].(json.Number).Int64()
			if int(id) != emitted[stream]+1 {
				t.Fatalf("stream %s: record %d after %d", stream, id, emitted[stream])
			}
			emitted[stream] = int(id)
			for other := range open {
				if other != stream && emitted[other] > 0 && emitted[other] < rows {
					interleaved = true
				}
			}
		case "ACTIVATE_VERSION":
			if emitted[stream] == rows {
				delete(open, stream)
			}
		case "STATE":
			value := m["value"].(map[string]any)
			for id, b := range value["bookmarks"].(map[string]any) {
				pk, ok := b.(map[string]any)["last_pk_fetched"].(map[string]any)
				if !ok {
					continue
				}
				stream := id[strings.LastIndex(id, "-")+1:]
				if k := mustAtoi(t, pk["id"].(string)); k > emitted[stream] {
					t.Fatalf("STATE claims %s up to %d, only %d emitted", id, k, emitted[stream])
				}
			}
			if cs, ok := value["currently_syncing"].(string); ok && !open[cs[strings.LastIndex(cs, "-")+1:]] {
				t.Fatalf("currently_syncing %s is not a copy in progress", cs)
			}
		}
	}
	for _, tbl := range tables {
		if emitted[tbl] != rows {
			t.Fatalf("%s: %d rows emitted, want %d", tbl, emitted[tbl], rows)
		}
	}
	if !interleaved {
		t.Fatal("streams never interleaved: the copies did not run at once")
	}

	crashed := &lineWriter{limit: 50000}
	if r := runTap(t, cli.Env{Stdout: crashed}, "--config", cfg, "--catalog", catalog); r.code != 1 {
		t.Fatalf("crashed run exited %d", r.code)
	}
	first := parseMessages(t, crashed.buf.Bytes())
	seen := map[string]bool{}
	for _, tbl := range tables {
		for _, rec := range records(first, tbl) {
			seen[tbl+fmt.Sprint(rec["id"])] = true
		}
	}
	second := runTap(t, cli.Env{}, "--config", cfg, "--catalog", catalog, "--state", writeFile(t, "state.json", lastState(t, first)))
	if second.code != 0 {
		t.Fatalf("resumed run exited %d\n%s", second.code, second.stderr)
	}
	for _, tbl := range tables {
		for _, rec := range records(second.messages, tbl) {
			seen[tbl+fmt.Sprint(rec["id"])] = true
		}
		for i := 1; i <= rows; i++ {
			if !seen[fmt.Sprintf("%s%d", tbl, i)] {
				t.Fatalf("%s row %d lost across the crash", tbl, i)
			}
		}
	}
}

// TestParallelParts copies one large table in key ranges read at once from
// one shared snapshot: every row exactly once even while rows move between
// ranges, each range resumable after a crash.
func TestParallelParts(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	const rows = 60000
	createNumbered(t, db, "public.big", rows)
	testpg.Exec(t, pg, db, "ANALYZE big")
	cfg := writeFile(t, "config.json", configFor(db, map[string]any{"max_parallel_streams": 4, "itersize": 2000}))
	catalog := fullTableCatalog(t, cfg)
	id := db + "-public-big"

	moved := false
	w := &lineWriter{onLine: func(line []byte) {
		if moved || !bytes.Contains(line, []byte(`"copy_parts"`)) || !bytes.Contains(line, []byte(`"last_pk_fetched"`)) {
			return
		}
		moved = true
		testpg.Exec(t, pg, db, `UPDATE big SET id = id + 1000000, val = 'moved up' WHERE id % 7 = 0;
			UPDATE big SET id = -id, val = 'moved down' WHERE id % 11 = 0 AND id > 0;
			DELETE FROM big WHERE id % 13 = 0 AND id > 0 AND id < 1000000;`)
	}}
	r := runTap(t, cli.Env{Stdout: w}, "--config", cfg, "--catalog", catalog)
	if r.code != 0 || !strings.Contains(r.stderr, "copying in 4 parts at once") {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if !moved {
		t.Fatal("no STATE with a part's key: the rows were never moved")
	}
	msgs := parseMessages(t, w.buf.Bytes())
	got := map[int64]string{}
	ordered := true
	var prev int64
	for _, rec := range records(msgs, "big") {
		n, _ := rec["id"].(json.Number).Int64()
		if _, dup := got[n]; dup {
			t.Fatalf("row %d emitted twice", n)
		}
		if n < prev {
			ordered = false
		}
		prev = n
		got[n] = rec["val"].(string)
	}
	if len(got) != rows {
		t.Fatalf("%d rows emitted, the snapshot held %d", len(got), rows)
	}
	for i := int64(1); i <= rows; i++ {
		if got[i] != fmt.Sprintf("v%d", i) {
			t.Fatalf("row %d = %q, want the snapshot's v%d", i, got[i], i)
		}
	}
	if ordered {
		t.Fatal("rows came in key order: the parts were not read at once")
	}
	final := lastState(t, msgs)["bookmarks"].(map[string]any)[id].(map[string]any)
	if _, ok := final["copy_parts"]; ok {
		t.Fatalf("copy_parts left in the final state: %v", final)
	}

	testpg.Exec(t, pg, db, "TRUNCATE big; INSERT INTO big SELECT g, 'w' || g FROM generate_series(1, 60000) g; ANALYZE big")
	crashed := &lineWriter{limit: 30000}
	runTap(t, cli.Env{Stdout: crashed}, "--config", cfg, "--catalog", catalog)
	first := parseMessages(t, crashed.buf.Bytes())
	state := lastState(t, first)
	parts, _ := state["bookmarks"].(map[string]any)[id].(map[string]any)["copy_parts"].([]any)
	if len(parts) != 4 {
		t.Fatalf("interrupted state has %d parts: %v", len(parts), state)
	}
	seen := map[string]bool{}
	for _, rec := range records(first, "big") {
		seen[fmt.Sprint(rec["id"])] = true
	}
	second := runTap(t, cli.Env{}, "--config", cfg, "--catalog", catalog, "--state", writeFile(t, "state.json", state))
	if second.code != 0 || !strings.Contains(second.stderr, "resuming the 4-part copy") {
		t.Fatalf("resumed run: exit %d\n%s", second.code, second.stderr)
	}
	resumed := records(second.messages, "big")
	if len(resumed) >= rows {
		t.Fatalf("the resumed copy re-read everything (%d rows)", len(resumed))
	}
	for _, rec := range resumed {
		seen[fmt.Sprint(rec["id"])] = true
	}
	for i := 1; i <= rows; i++ {
		if !seen[fmt.Sprint(i)] {
			t.Fatalf("row %d lost across the crash", i)
		}
	}
}

// TestCompositeKeyResumeAndJSONObjects: a copy keyed on a composite primary
// key (declared out of column order) resumes exactly after its last key, and
// json_as_object sends json/jsonb as JSON values, compacted.
func TestCompositeKeyResumeAndJSONObjects(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, `CREATE TABLE comp (a text, b integer, doc jsonb, raw json, PRIMARY KEY (b, a));
		INSERT INTO comp SELECT 'k' || (g % 7), g / 7, jsonb_build_object('g', g, 'list', jsonb_build_array(g, 'x')),
			('{"spaced" :  [' || g || ',' || chr(10) || ' true]}')::json FROM generate_series(1, 2500) g;`)
	cfg := writeFile(t, "config.json", configFor(db, map[string]any{"json_as_object": true, "itersize": 600}))
	catalog := discover(t, cfg)
	props := findStream(t, catalog, db+"-public-comp")["schema"].(map[string]any)["properties"].(map[string]any)
	if typ := fmt.Sprint(props["doc"].(map[string]any)["type"]); !strings.Contains(typ, "object") || !strings.Contains(typ, "array") {
		t.Fatalf("json_as_object schema for jsonb: %s", typ)
	}
	selectStreams(catalog, map[string]any{"replication-method": "FULL_TABLE"})
	catPath := writeFile(t, "catalog.json", catalog)
	crashed := &lineWriter{limit: 1500}
	runTap(t, cli.Env{Stdout: crashed}, "--config", cfg, "--catalog", catPath)
	first := parseMessages(t, crashed.buf.Bytes())
	state := lastState(t, first)
	pk := state["bookmarks"].(map[string]any)[db+"-public-comp"].(map[string]any)["last_pk_fetched"].(map[string]any)
	if len(pk) != 2 {
		t.Fatalf("resume key %v, want both key columns", pk)
	}
	second := runTap(t, cli.Env{}, "--config", cfg, "--catalog", catPath, "--state", writeFile(t, "state.json", state))
	if second.code != 0 {
		t.Fatalf("exit %d\n%s", second.code, second.stderr)
	}
	seen := map[string]int{}
	for _, rec := range append(records(first, "comp"), records(second.messages, "comp")...) {
		seen[fmt.Sprint(rec["b"], "/", rec["a"])]++
		doc, ok := rec["doc"].(map[string]any)
		if !ok || doc["list"] == nil {
			t.Fatalf("jsonb not sent as an object: %v", rec["doc"])
		}
		if raw, ok := rec["raw"].(map[string]any); !ok || len(raw["spaced"].([]any)) != 2 {
			t.Fatalf("json not sent as a value: %v", rec["raw"])
		}
	}
	if len(seen) != 2500 {
		t.Fatalf("%d distinct rows, want 2500", len(seen))
	}
	if !strings.Contains(second.stdout, `"raw":{"spaced":[`) {
		t.Fatal("json value not compacted")
	}
	firstResumed := records(second.messages, "comp")[0]
	if fmt.Sprint(firstResumed["b"]) == pk["b"] && firstResumed["a"] == pk["a"] {
		t.Fatal("the resumed copy repeated the last emitted key")
	}
}

// TestStateInterval: with the default state_interval_seconds, hundreds of
// small tables make a handful of STATEs, not three each, and the last one
// holds every bookmark; bookmarks of this database's streams the catalog
// no longer lists are dropped (said in the log), other databases' kept.
func TestStateInterval(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	const tables = 300
	testpg.Exec(t, pg, db, fmt.Sprintf(`DO $$ BEGIN FOR i IN 1..%d LOOP
		EXECUTE format('CREATE TABLE t%%s (id integer PRIMARY KEY); INSERT INTO t%%s VALUES (1)', i, i);
	END LOOP; END $$`, tables))
	cfg := configFor(db, nil)
	delete(cfg, "state_interval_seconds")
	cfgPath := writeFile(t, "config.json", cfg)
	catalog := fullTableCatalog(t, cfgPath)
	state := writeFile(t, "state.json", map[string]any{"bookmarks": map[string]any{
		db + "-public-gone1": map[string]any{"version": 1}, db + "-public-gone2": map[string]any{"version": 2},
		"otherdb-public-kept": map[string]any{"lsn": 123},
		// Database db+"-eu", whose name begins like this one's.
		db + "-eu-public-kept": map[string]any{"lsn": 456},
	}})
	r := runTap(t, cli.Env{}, "--config", cfgPath, "--catalog", catalog, "--state", state)
	if r.code != 0 {
		t.Fatalf("sync exited %d:\n%s", r.code, r.stderr)
	}
	var states int
	for _, m := range r.messages {
		if m["type"] == "STATE" {
			states++
		}
	}
	if states > 10 {
		t.Errorf("%d STATE messages for %d one-row tables, want a few", states, tables)
	}
	books := lastState(t, r.messages)["bookmarks"].(map[string]any)
	if len(books) != tables+2 || books["otherdb-public-kept"] == nil || books[db+"-eu-public-kept"] == nil || books[db+"-public-gone1"] != nil {
		t.Errorf("last state has %d bookmarks (other databases': %v, %v; dropped stream's: %v), want %d and only the other databases' kept",
			len(books), books["otherdb-public-kept"], books[db+"-eu-public-kept"], books[db+"-public-gone1"], tables+2)
	}
	if !strings.Contains(r.stderr, "state: dropped the bookmarks of 2 streams the catalog no longer lists") {
		t.Errorf("no log line about the dropped bookmarks:\n%s", r.stderr)
	}
}
