package runner_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/localpg"
	"github.com/tap-postgres/tap-postgres/internal/runner"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

var pg *localpg.Cluster

func TestMain(m *testing.M) {
	if code, ran := childMain(); ran {
		os.Exit(code)
	}
	os.Exit(testpg.Run(m, &pg))
}

// TestReportOfOldJobRecords: job records written before the rows sent were
// kept report their rows as loaded, the rows sent as unknown.
func TestReportOfOldJobRecords(t *testing.T) {
	dir := t.TempDir()
	store, err := runner.OpenStore(context.Background(), dir, "old")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	old := `{"id":1,"started":"2026-01-01T00:00:00Z","finished":"2026-01-01T00:01:00Z","status":"succeeded","rows":{"accounts":4},"durations":{"accounts":1000000}}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, "old", "jobs.jsonl"), []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := store.AppendJob(runner.JobRecord{ID: 2, Started: time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC), Finished: time.Date(2026, 1, 1, 1, 1, 0, 0, time.UTC),
		Status: "failed", Error: "one\ntwo", Rows: map[string]int64{"accounts": 0}, Sent: map[string]int64{"accounts": 4}}); err != nil {
		t.Fatal(err)
	}
	jobs, err := store.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	var text, asJSON bytes.Buffer
	report := runner.Report(jobs, time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	if err := report.Print(&text, false); err != nil {
		t.Fatal(err)
	}
	if err := report.Print(&asJSON, true); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^1 +\S+ +accounts +4 +- +- +1ms +Bookmark Unavailable +succeeded *$`).MatchString(text.String()) ||
		!regexp.MustCompile(`(?m)^2 +\S+ +accounts +0 +4 +- +1m0s +Bookmark Unavailable +failed +one; two$`).MatchString(text.String()) ||
		!regexp.MustCompile(`(?m)^accounts +4$`).MatchString(text.String()) {
		t.Fatalf("report:\n%s", text.String())
	}
	var parsed struct {
		Loads []map[string]any `json:"loads"`
	}
	if err := json.Unmarshal(asJSON.Bytes(), &parsed); err != nil || len(parsed.Loads) != 2 {
		t.Fatalf("report --json: %v\n%s", err, asJSON.String())
	}
	if _, ok := parsed.Loads[0]["rows_sent"]; ok || parsed.Loads[1]["rows_sent"] != 4.0 {
		t.Fatalf("rows sent in the report: %s", asJSON.String())
	}
}

func writeIntegration(t testing.TB, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "integration.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// newSlot creates a wal2json slot and drops it once its walsender is gone.
func newSlot(t *testing.T, db, slot string) {
	t.Helper()
	testpg.Exec(t, pg, db, fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s', 'wal2json')", slot))
	t.Cleanup(func() {
		drop := fmt.Sprintf(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '%[1]s' AND active_pid IS NOT NULL;
			SELECT pg_drop_replication_slot('%[1]s') FROM pg_replication_slots WHERE slot_name = '%[1]s'`, slot)
		var err error
		for range 50 {
			if err = pg.Exec(context.Background(), db, drop); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("drop slot %s: %v", slot, err)
	})
}

// connectionYAML asks for every STATE the record cadence makes: the tests
// count on them as commit points.
func connectionYAML(db string) string {
	return fmt.Sprintf(`connection:
  host: %s
  port: %d
  user: %s
  password: ${RUNNER_TEST_PASSWORD}
  dbname: %s
  filter_dbs: %s
  state_interval_seconds: 0
`, pg.Host, pg.Port, pg.User, db, db)
}

// readLines returns the JSON messages of a destination file.
func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func recordCount(msgs []map[string]any) int {
	n := 0
	for _, m := range msgs {
		if m["type"] == "RECORD" {
			n++
		}
	}
	return n
}

// TestJobsLoadCommitAndReset runs jobs of an integration with one table per
// method into the JSONL destination: data loads, state is committed, a
// second job after changes carries only the changes, a reset copies a table
// again, and the extraction log reads as Stitch's.
func TestJobsLoadCommitAndReset(t *testing.T) {
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	db := testpg.NewDatabase(t, pg)
	slot := "stitch_" + db
	if len(slot) > 63 {
		t.Fatalf("database name too long for a default slot name: %s", db)
	}
	testpg.Exec(t, pg, db, `
		CREATE TABLE full_t (id integer PRIMARY KEY, v text); INSERT INTO full_t SELECT g, 'f' || g FROM generate_series(1, 20) g;
		CREATE TABLE inc_t (id integer PRIMARY KEY, updated_at timestamptz NOT NULL, secret text);
		INSERT INTO inc_t SELECT g, timestamptz '2024-01-01' + g * interval '1 hour', 's' FROM generate_series(1, 30) g;
		CREATE TABLE log_t (id integer PRIMARY KEY, v text); INSERT INTO log_t SELECT g, 'l' || g FROM generate_series(1, 10) g;`)
	newSlot(t, db, slot)
	out := t.TempDir()
	store := t.TempDir()
	integration := writeIntegration(t, "name: Aurora Prod\n"+connectionYAML(db)+fmt.Sprintf(`default_replication_method: FULL_TABLE
tables:
  - {schema: public, table: full_t}
  - {schema: public, table: inc_t, replication_method: INCREMENTAL, replication_key: updated_at, columns: [updated_at]}
  - {schema: public, table: log_t, replication_method: LOG_BASED}
schedule:
  cron: "0 0 * * * ?"
destination:
  type: jsonl
  path: %s
`, out))
	ctx := context.Background()
	run := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := runner.Main(ctx, append(args, "--integration", integration, "--store", store), &stdout, &stderr, nil)
		return code, stdout.String(), stderr.String()
	}
	if code, _, stderr := run("run"); code != 0 {
		t.Fatalf("first job: exit %d\n%s", code, stderr)
	}
	if n := recordCount(readLines(t, filepath.Join(out, "full_t.jsonl"))); n != 20 {
		t.Fatalf("full_t: %d records", n)
	}
	inc := readLines(t, filepath.Join(out, "inc_t.jsonl"))
	if n := recordCount(inc); n != 30 {
		t.Fatalf("inc_t: %d records", n)
	}
	for _, m := range inc {
		if rec, ok := m["record"].(map[string]any); ok && rec["secret"] != nil {
			t.Fatal("a column left out of the selection was loaded")
		}
	}
	stateFile := filepath.Join(store, "aurora_prod", "state.json")
	committed, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatalf("no committed state: %v", err)
	}
	if !bytes.Contains(committed, []byte(`"replication_key_value":"2024-01-02T06:00:00+00:00"`)) ||
		!bytes.Contains(committed, []byte(db+"-public-log_t")) {
		t.Fatalf("committed state: %s", committed)
	}

	testpg.Exec(t, pg, db, `INSERT INTO inc_t VALUES (31, '2024-03-01', 's'); INSERT INTO log_t VALUES (11, 'new'); UPDATE log_t SET v = 'changed' WHERE id = 1;`)
	if code, _, stderr := run("run"); code != 0 {
		t.Fatalf("second job: exit %d\n%s", code, stderr)
	}
	if n := recordCount(readLines(t, filepath.Join(out, "log_t.jsonl"))); n != 12 {
		t.Fatalf("log_t after two jobs: %d records, want 10 copied + 2 changes", n)
	}
	if n := recordCount(readLines(t, filepath.Join(out, "inc_t.jsonl"))); n != 32 {
		t.Fatalf("inc_t after two jobs: %d records, want 30 + the tie at the bookmark + the new row", n)
	}

	if code, stdout, stderr := run("reset", "--stream", db+"-public-full_t"); code != 0 || !strings.Contains(stdout, "reset") {
		t.Fatalf("reset: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, _, stderr := run("run"); code != 0 {
		t.Fatalf("job after reset: exit %d\n%s", code, stderr)
	}
	full := readLines(t, filepath.Join(out, "full_t.jsonl"))
	versions := map[string]bool{}
	for _, m := range full {
		if m["type"] == "ACTIVATE_VERSION" {
			versions[fmt.Sprint(m["version"])] = true
		}
	}
	if recordCount(full) != 60 || len(versions) < 3 {
		t.Fatalf("full_t after a reset: %d records in %d versions", recordCount(full), len(versions))
	}

	code, stdout, _ := run("jobs")
	if code != 0 || strings.Count(stdout, "succeeded") != 3 {
		t.Fatalf("jobs:\n%s", stdout)
	}
	code, report, _ := run("report")
	if code != 0 || !strings.Contains(report, "Bookmark Unavailable") || !strings.Contains(report, "  2024-03-01T00:00:00+00:00  ") ||
		!strings.Contains(report, "ROWS LOADED IN THE LAST 24 H") {
		t.Fatalf("report:\n%s", report)
	}
	code, reportJSON, _ := run("report", "--json")
	var parsed struct {
		Loads   []map[string]any `json:"loads"`
		Last24h map[string]int64 `json:"rows_last_24h"`
	}
	if err := json.Unmarshal([]byte(reportJSON), &parsed); err != nil || code != 0 {
		t.Fatalf("report --json: %v\n%s", err, reportJSON)
	}
	// inc_t: 30, then the tie at the bookmark and the new row, then the tie again.
	if parsed.Last24h["full_t"] != 60 || parsed.Last24h["inc_t"] != 33 || parsed.Last24h["log_t"] != 12 {
		t.Fatalf("rows in the last 24 h: %v", parsed.Last24h)
	}
	code, logText, _ := run("logs")
	line := regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}Z (main|tap|target) - (INFO|WARNING|ERROR|CRITICAL) `)
	for _, l := range strings.Split(strings.TrimSpace(logText), "\n") {
		if !line.MatchString(l) {
			t.Fatalf("extraction log line not in Stitch's format: %q", l)
		}
	}
	if code != 0 || !strings.Contains(logText, "target - INFO State update: adding bookmarks."+db+"-public-full_t.version = ") {
		t.Fatalf("extraction log lacks bookmark updates:\n%s", logText)
	}
	if strings.Contains(logText, pg.Password) {
		t.Fatal("the password reached the extraction log")
	}
}

// TestSelectAllAndValidation: select all takes tables but not views and
// roots rather than partitions, only with LOG_BASED; bad files list every
// problem.
func TestSelectAllAndValidation(t *testing.T) {
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, fmt.Sprintf(`CREATE TABLE a (id integer PRIMARY KEY); CREATE VIEW v AS SELECT * FROM a;
		CREATE TABLE p (id integer, d date, PRIMARY KEY (id, d)) PARTITION BY RANGE (d);
		CREATE TABLE p1 PARTITION OF p FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
		INSERT INTO a VALUES (1); INSERT INTO p VALUES (1, '2024-05-05');`))
	newSlot(t, db, "s_"+db[len(db)-8:])
	out, store := t.TempDir(), t.TempDir()
	integration := writeIntegration(t, "name: all\n"+connectionYAML(db)+fmt.Sprintf(`  slot_name: s_%s
default_replication_method: LOG_BASED
select_all: true
destination: {type: jsonl, path: %s}
`, db[len(db)-8:], out))
	var stdout, stderr bytes.Buffer
	if code := runner.Main(context.Background(), []string{"run", "--integration", integration, "--store", store}, &stdout, &stderr, nil); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	entries, _ := os.ReadDir(out)
	var files []string
	for _, e := range entries {
		files = append(files, e.Name())
	}
	if strings.Join(files, ",") != "a.jsonl,p.jsonl" {
		t.Fatalf("select all loaded %v, want the table and the partitioned root only", files)
	}

	bad := writeIntegration(t, `name: ""
connection: {host: h, user: u, dbname: d, port: nope, password: "${RUNNER_TEST_UNSET_VAR}", ssh_tunnel: {host: b, username: u, password: "${RUNNER_TEST_UNSET_TUNNEL}"}}
default_replication_method: FULL_TABLE
select_all: true
tables: [{schema: s, table: t, replication_method: INCREMENTAL}]
schedule: {frequency: 30m, anchor: "2024-01-01T00:00:00Z"}
destination: {type: bigquery, batch_rows: many}
colour: red
`)
	stderr.Reset()
	if code := runner.Main(context.Background(), []string{"run", "--integration", bad, "--store", store}, &stdout, &stderr, nil); code != 1 {
		t.Fatalf("bad file: exit %d", code)
	}
	for _, want := range []string{`"name" is required`, "RUNNER_TEST_UNSET_VAR is not set", `key "ssh_tunnel.password": environment variable RUNNER_TEST_UNSET_TUNNEL is not set`, `config key "port"`,
		"select_all\" needs default_replication_method LOG_BASED", "INCREMENTAL needs replication_key", "at least 1h0m0s", `type "bigquery"`,
		"field colour not found", "cannot unmarshal !!str `many`"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("validation output lacks %q:\n%s", want, stderr.String())
		}
	}
}

// TestRunawayIntegrationFile: a huge file or name is refused with a short
// line, before it is decoded.
func TestRunawayIntegrationFile(t *testing.T) {
	store := t.TempDir()
	for name, tc := range map[string]struct {
		body string
		want string
	}{
		"5 MiB file":          {"name: x\n# " + strings.Repeat("x", 5<<20) + "\n", "is larger than 4 MiB: refused"},
		"1 MB name":           {"name: " + strings.Repeat("n", 1<<20) + "\ndestination: {type: jsonl, path: /tmp/x}\ntables: [{schema: s, table: t}]\n", `characters; at most 200`},
		"1 MB table in error": {"name: x\ndestination: {type: jsonl, path: /tmp/x}\ntables: [{schema: s, table: " + strings.Repeat("t", 1<<20) + "}]\n", "…(1048576 bytes)"},
	} {
		var stderr bytes.Buffer
		code := runner.Main(context.Background(), []string{"check", "--integration", writeIntegration(t, tc.body), "--store", store}, io.Discard, &stderr, nil)
		if code != 1 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%s: exit %d, stderr lacks %q:\n%.2000s", name, code, tc.want, stderr.String())
		}
		if stderr.Len() > 4096 {
			t.Errorf("%s: %d bytes of stderr for one bad input", name, stderr.Len())
		}
	}
}

// TestSelectAllPgoutput: select all through a pgoutput slot with a
// publication_name from the integration file; a table created later and
// left out of the publication fails the job, naming the table and the
// statement that adds it, and `check` says the same before any job.
func TestSelectAllPgoutput(t *testing.T) {
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	db := testpg.NewDatabase(t, pg)
	slot := "s_" + db[len(db)-8:]
	testpg.Exec(t, pg, db, `CREATE TABLE a (id integer PRIMARY KEY, v text); INSERT INTO a VALUES (1, 'one');
		CREATE PUBLICATION shop_pub FOR TABLE a;`)
	testpg.Exec(t, pg, db, fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s', 'pgoutput')", slot))
	t.Cleanup(func() {
		testpg.Exec(t, pg, db, fmt.Sprintf(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '%[1]s' AND active_pid IS NOT NULL`, slot))
		time.Sleep(200 * time.Millisecond)
		testpg.Exec(t, pg, db, fmt.Sprintf(`SELECT pg_drop_replication_slot('%[1]s') FROM pg_replication_slots WHERE slot_name = '%[1]s'`, slot))
	})
	out, store := t.TempDir(), t.TempDir()
	integration := writeIntegration(t, "name: pgo\n"+connectionYAML(db)+fmt.Sprintf(`  slot_name: %s
  publication_name: shop_pub
default_replication_method: LOG_BASED
select_all: true
destination: {type: jsonl, path: %s}
`, slot, out))
	run := func(args ...string) (int, string) {
		var stdout, stderr bytes.Buffer
		code := runner.Main(context.Background(), append(args, "--integration", integration, "--store", store), &stdout, &stderr, nil)
		return code, stdout.String() + stderr.String()
	}
	if code, output := run("run"); code != 0 {
		t.Fatalf("first job: exit %d\n%s", code, output)
	}
	testpg.Exec(t, pg, db, `INSERT INTO a VALUES (2, 'two'); CREATE TABLE b (id integer PRIMARY KEY); INSERT INTO b VALUES (1);`)
	want := `publication "shop_pub" does not publish "public"."b", so its changes would never arrive: ALTER PUBLICATION "shop_pub" ADD TABLE "public"."b";`
	code, output := run("check")
	if code == 0 || !strings.Contains(output, want) || !strings.Contains(output, "output_plugin_libraries") {
		t.Fatalf("check: exit %d\n%s", code, output)
	}
	if code, output := run("run"); code == 0 || !strings.Contains(output, want) {
		t.Fatalf("job with an unpublished table: exit %d\n%s", code, output)
	}
	testpg.Exec(t, pg, db, `ALTER PUBLICATION shop_pub ADD TABLE b`)
	if code, output := run("run"); code != 0 {
		t.Fatalf("job after publishing b: exit %d\n%s", code, output)
	}
	if n := recordCount(readLines(t, filepath.Join(out, "a.jsonl"))); n != 2 {
		t.Errorf("a.jsonl holds %d records, want the copy's and the insert's", n)
	}
	if n := recordCount(readLines(t, filepath.Join(out, "b.jsonl"))); n != 1 {
		t.Errorf("b.jsonl holds %d records, want 1", n)
	}
	// reset by table name: the answer lists the stream ids it takes.
	code, output = run("reset", "--stream", "b")
	if code != 1 || !strings.Contains(output, "one of: "+db+"-public-a, "+db+"-public-b") {
		t.Errorf("reset --stream b: exit %d\n%s", code, output)
	}
	// Reading a store that does not exist says so instead of creating it.
	missing := filepath.Join(t.TempDir(), "no-such-store")
	for _, cmd := range []string{"jobs", "logs", "report", "reset"} {
		var stdout, stderr bytes.Buffer
		code := runner.Main(context.Background(), []string{cmd, "--integration", integration, "--store", missing, "--stream", db + "-public-a"}, &stdout, &stderr, nil)
		if code != 1 || !strings.Contains(stderr.String(), `no job of integration "pgo" has run with store `+missing) {
			t.Errorf("%s on a missing store: exit %d\n%s%s", cmd, code, stdout.String(), stderr.String())
		}
		if _, err := os.Stat(missing); !os.IsNotExist(err) {
			t.Fatalf("%s created the missing store: %v", cmd, err)
		}
	}
}

// TestStoreKeyCollisionRefused: two integrations whose names fold to one
// store key do not share state and history; every command of the second
// is refused before it reads or writes anything, in either store.
func TestStoreKeyCollisionRefused(t *testing.T) {
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, `CREATE TABLE t (id integer PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 5);`)
	file := func(name string) string {
		return writeIntegration(t, "name: "+name+"\n"+connectionYAML(db)+fmt.Sprintf(`default_replication_method: FULL_TABLE
tables: [{schema: public, table: t}]
destination: {type: jsonl, path: %s}
`, t.TempDir()))
	}
	first, second := file("Audit-PG"), file("Audit PG")
	for _, store := range []string{t.TempDir(), storeURL(testpg.NewDatabase(t, pg), "")} {
		run := func(integration string, args ...string) (int, string, string) {
			var stdout, stderr bytes.Buffer
			code := runner.Main(context.Background(), append(args, "--integration", integration, "--store", store), &stdout, &stderr, nil)
			return code, stdout.String(), stderr.String()
		}
		if code, _, stderr := run(first, "run"); code != 0 {
			t.Fatalf("first integration's job: exit %d\n%s", code, stderr)
		}
		_, jobsBefore, _ := run(first, "jobs")
		stateOf := func() string {
			s, err := runner.OpenStore(context.Background(), store, "audit_pg")
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			state, err := s.State()
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(state)
			return string(b)
		}
		stateBefore := stateOf()
		for _, args := range [][]string{{"run"}, {"jobs"}, {"logs"}, {"report"}, {"reset", "--stream", db + "-public-t"}} {
			code, stdout, stderr := run(second, args...)
			if code != 1 || !strings.Contains(stderr, `integration "Audit PG" has the store key audit_pg of integration "Audit-PG", which has run`) || stdout != "" {
				t.Errorf("%v of the colliding integration: exit %d\n%s%s", args, code, stdout, stderr)
			}
		}
		if _, jobsAfter, _ := run(first, "jobs"); jobsAfter != jobsBefore {
			t.Errorf("the first integration's history changed:\n%s\nnow:\n%s", jobsBefore, jobsAfter)
		}
		if stateAfter := stateOf(); stateAfter != stateBefore || !strings.Contains(stateAfter, "version") {
			t.Errorf("the first integration's state changed:\n%s\nnow:\n%s", stateBefore, stateAfter)
		}
		if code, _, stderr := run(first, "reset", "--stream", db+"-public-t"); code != 0 {
			t.Errorf("the first integration's own reset: exit %d\n%s", code, stderr)
		}
	}
}
