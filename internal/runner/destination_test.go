package runner_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tap-postgres/tap-postgres/internal/runner"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

// The test binary doubles as a Singer target and as the runner in a child
// process, chosen by these variables.
const (
	envFakeTarget = "RUNNER_TEST_FAKE_TARGET"
	envRunnerArgs = "RUNNER_TEST_RUNNER_ARGS"
)

// childMain runs the test binary's other roles; it reports whether it did.
func childMain() (int, bool) {
	if out := os.Getenv(envFakeTarget); out != "" {
		return fakeTarget(out), true
	}
	if args := os.Getenv(envRunnerArgs); args != "" {
		var list []string
		if err := json.Unmarshal([]byte(args), &list); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2, true
		}
		return runner.Main(context.Background(), list, os.Stdout, os.Stderr, nil), true
	}
	return 0, false
}

// fakeTargetKnobs are the variables that steer fakeTarget.
var fakeTargetKnobs = []string{envFakeTarget, "NOISY", "STATES_TO_PRINT", "FAIL_AFTER", "PAUSE_AT", "PAUSE_SECONDS", "RESERIALISE", "FAIL_AT_END"}

// fakeTargetDestination is an integration's destination running this test
// binary as the target: the knobs reach it through the destination's env,
// as a target's own settings would, read when each job starts.
func fakeTargetDestination(t *testing.T) string {
	t.Helper()
	var env []string
	for _, knob := range fakeTargetKnobs {
		if _, set := os.LookupEnv(knob); !set {
			t.Setenv(knob, "")
		}
		env = append(env, fmt.Sprintf("%s: \"${%s}\"", knob, knob))
	}
	return fmt.Sprintf("destination: {type: singer, command: [%q, \"-test.run=^$\"], env: {%s}}\n", os.Args[0], strings.Join(env, ", "))
}

// fakeTarget is a minimal Singer target: it appends records to a file, and
// at each STATE makes the file durable and prints the state, as Singer
// targets do. With FAIL_AFTER=n it dies at its n-th record; with
// PAUSE_AT=n it stops reading for PAUSE_SECONDS there, as a target does
// while it flushes a large batch. With STATES_TO_PRINT=n it prints only
// its first n states, with RESERIALISE=1 it prints them as Python's
// json.dumps would (other key order, spaces), and with FAIL_AT_END=1 it
// fails after reading everything, as pipelinewise does.
func fakeTarget(path string) int {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "fake target ready")
	if err := os.WriteFile(path+".environ", []byte(strings.Join(os.Environ(), "\n")), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if os.Getenv("NOISY") != "" {
		// What a careless target may print: log objects on stdout, and a
		// stderr line longer than any log line.
		fmt.Println(`{"level":"info","msg":"flushed"}` + "\nnull\n{}")
		fmt.Fprintln(os.Stderr, strings.Repeat("x", 2<<20))
	}
	var failAfter, pauseAt, pauseSeconds int
	statesToPrint := -1
	fmt.Sscan(os.Getenv("STATES_TO_PRINT"), &statesToPrint)
	fmt.Sscan(os.Getenv("FAIL_AFTER"), &failAfter)
	fmt.Sscan(os.Getenv("PAUSE_AT"), &pauseAt)
	fmt.Sscan(os.Getenv("PAUSE_SECONDS"), &pauseSeconds)
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	records := 0
	for sc.Scan() {
		var m struct {
			Type   string          `json:"type"`
			Record json.RawMessage `json:"record"`
			Value  json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		switch m.Type {
		case "RECORD":
			records++
			if records == failAfter {
				fmt.Fprintln(os.Stderr, "fake target failing on purpose")
				return 3
			}
			if records == pauseAt {
				time.Sleep(time.Duration(pauseSeconds) * time.Second)
			}
			f.Write(append(m.Record, '\n'))
		case "STATE":
			f.Sync()
			if statesToPrint == 0 {
				continue
			}
			statesToPrint--
			value := m.Value
			if os.Getenv("RESERIALISE") != "" {
				value = reserialised(m.Value)
			}
			os.Stdout.Write(append(value, '\n'))
		}
	}
	if os.Getenv("FAIL_AT_END") != "" {
		fmt.Fprint(os.Stderr, pipelinewiseCritical+`
Traceback (most recent call last):
  File "/usr/local/bin/target-postgres", line 8, in <module>
    sys.exit(main())
  File "/usr/local/lib/python3.10/site-packages/target_postgres/__init__.py", line 380, in persist_lines
    raise Exception("key_properties field is required")
Exception: key_properties field is required
`)
		return 1
	}
	return 0
}

// pipelinewiseCritical is what pipelinewise's target-postgres logs before
// it fails on a stream without a key.
const pipelinewiseCritical = "time=2026-01-01 00:00:00 name=target_postgres level=CRITICAL message=Primary key is set to mandatory but not defined in the [t] stream"

// reserialised writes a JSON value as Python's json.dumps does, and with
// each object's keys in reverse order.
func reserialised(value json.RawMessage) []byte {
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		panic(err)
	}
	var out bytes.Buffer
	var write func(v any)
	write = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			keys := slices.Sorted(maps.Keys(v))
			slices.Reverse(keys)
			out.WriteByte('{')
			for i, k := range keys {
				if i > 0 {
					out.WriteString(", ")
				}
				write(k)
				out.WriteString(": ")
				write(v[k])
			}
			out.WriteByte('}')
		case []any:
			out.WriteByte('[')
			for i, e := range v {
				if i > 0 {
					out.WriteString(", ")
				}
				write(e)
			}
			out.WriteByte(']')
		default:
			b, err := json.Marshal(v)
			if err != nil {
				panic(err)
			}
			out.Write(b)
		}
	}
	write(v)
	return out.Bytes()
}

func destinationQuery(t *testing.T, db, sql string) string {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), pg.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var out string
	if err := conn.QueryRow(context.Background(), sql).Scan(&out); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

func runMain(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := runner.Main(context.Background(), args, &stdout, &stderr, nil)
	return code, stdout.String() + stderr.String()
}

// TestJobsIntoPostgres: jobs load each method into a real PostgreSQL
// destination; changes upsert, deletes are soft, a reset's new version
// removes rows the source no longer has.
func TestJobsIntoPostgres(t *testing.T) {
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	db := testpg.NewDatabase(t, pg)
	dest := testpg.NewDatabase(t, pg)
	slot := "s_" + db[len(db)-8:]
	testpg.Exec(t, pg, db, `
		CREATE TABLE "Full Table" (id integer PRIMARY KEY, v text); INSERT INTO "Full Table" SELECT g, 'f' || g FROM generate_series(1, 20) g;
		CREATE TABLE inc_t (id integer PRIMARY KEY, updated_at timestamptz NOT NULL, amount numeric(30,10));
		INSERT INTO inc_t SELECT g, timestamptz '2024-01-01' + g * interval '1 hour', 12345678901234567890.0123456789 FROM generate_series(1, 30) g;
		CREATE TABLE log_t (id integer PRIMARY KEY, v text, big text); INSERT INTO log_t SELECT g, 'l' || g, repeat('x', 5000) FROM generate_series(1, 10) g;`)
	newSlot(t, db, slot)
	store := t.TempDir()
	t.Setenv("RUNNER_TEST_DEST_DSN", pg.ConnString(dest))
	integration := writeIntegration(t, "name: Prod DB\n"+connectionYAML(db)+fmt.Sprintf(`  slot_name: %s
default_replication_method: FULL_TABLE
tables:
  - {schema: public, table: Full Table}
  - {schema: public, table: inc_t, replication_method: INCREMENTAL, replication_key: updated_at}
  - {schema: public, table: log_t, replication_method: LOG_BASED}
destination:
  type: postgres
  dsn: ${RUNNER_TEST_DEST_DSN}
`, slot))
	job := func() {
		t.Helper()
		if code, out := runMain(t, "run", "--integration", integration, "--store", store); code != 0 {
			t.Fatalf("job: exit %d\n%s", code, out)
		}
	}
	job()
	if got := destinationQuery(t, dest, `SELECT count(*) || '/' || sum(amount) FROM prod_db.inc_t`); got != "30/370370367037037036700.3703703670" {
		t.Fatalf("inc_t: %s", got)
	}
	if got := destinationQuery(t, dest, `SELECT count(*)::text FROM prod_db.full_table`); got != "20" {
		t.Fatalf("full_table: %s", got)
	}

	testpg.Exec(t, pg, db, `UPDATE log_t SET v = 'changed' WHERE id = 1; DELETE FROM log_t WHERE id = 2; INSERT INTO log_t VALUES (11, 'new', 'y');
		INSERT INTO inc_t VALUES (31, '2024-03-01', 1); ALTER TABLE inc_t ADD COLUMN note text; UPDATE inc_t SET note = 'n', updated_at = '2024-04-01' WHERE id = 5;
		DELETE FROM "Full Table" WHERE id > 15;`)
	job()
	// The update's unchanged TOAST value and the deleted row's columns keep
	// their stored values; the delete is soft.
	if got := destinationQuery(t, dest, `SELECT string_agg(format('%s:%s:%s:%s', id, v, length(big), _sdc_deleted_at IS NOT NULL), ',' ORDER BY id) FROM prod_db.log_t WHERE id IN (1, 2, 11)`); got != "1:changed:5000:f,2:l2:5000:t,11:new:1:f" {
		t.Fatalf("log_t after changes: %s", got)
	}
	if got := destinationQuery(t, dest, `SELECT count(*) || '/' || count(note) || '/' || max(note) FROM prod_db.inc_t`); got != "31/1/n" {
		t.Fatalf("inc_t after a new column: %s", got)
	}
	// Each FULL_TABLE job is a new version: rows gone from the source go.
	if got := destinationQuery(t, dest, `SELECT count(*) || '/' || count(DISTINCT _sdc_table_version) FROM prod_db.full_table`); got != "15/1" {
		t.Fatalf("full_table after a second job: %s", got)
	}

	// INCREMENTAL keeps rows deleted at the source, until a reset's new
	// version replaces them.
	testpg.Exec(t, pg, db, `DELETE FROM inc_t WHERE id > 20`)
	job()
	if got := destinationQuery(t, dest, `SELECT count(*)::text FROM prod_db.inc_t`); got != "31" {
		t.Fatalf("inc_t after deletes at the source: %s", got)
	}
	if code, out := runMain(t, "reset", "--integration", integration, "--store", store, "--stream", db+"-public-inc_t"); code != 0 {
		t.Fatalf("reset: %s", out)
	}
	job()
	if got := destinationQuery(t, dest, `SELECT count(*) || '/' || count(DISTINCT _sdc_table_version) FROM prod_db.inc_t`); got != "20/1" {
		t.Fatalf("inc_t after reset: %s (want the source's 20 rows, one version)", got)
	}

	// Renaming the integration onto the same store, or prefixing stream
	// names with their schema, is refused.
	renamed := writeIntegration(t, strings.Replace(mustRead(t, integration), "name: Prod DB", "name: prod db", 1))
	if code, out := runMain(t, "run", "--integration", renamed, "--store", store); code != 1 || !strings.Contains(out, `integration "prod db" has the store key prod_db of integration "Prod DB", which has run`) ||
		!strings.Contains(out, `if it is "Prod DB" renamed, the name cannot change once it has run`) {
		t.Fatalf("renamed integration: exit %d\n%s", code, out)
	}
	prefixed := writeIntegration(t, strings.Replace(mustRead(t, integration), "  slot_name:", "  include_schemas_in_destination_stream_name: true\n  slot_name:", 1))
	if code, out := runMain(t, "run", "--integration", prefixed, "--store", store); code != 1 || !strings.Contains(out, "include_schemas_in_destination_stream_name cannot change once the integration has run (it ran with false)") {
		t.Fatalf("schema prefix switched on: exit %d\n%s", code, out)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestJobsIntoSingerTarget pipes a job into a Singer target command: what
// gets committed is the state the target printed, its stderr is in the
// extraction log, and a target that dies fails the job without committing
// past what it printed.
func TestJobsIntoSingerTarget(t *testing.T) {
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, `CREATE TABLE t (id integer PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 2500) g;`)
	out := filepath.Join(t.TempDir(), "records.jsonl")
	t.Setenv(envFakeTarget, out)
	store := t.TempDir()
	integration := writeIntegration(t, "name: piped\n"+connectionYAML(db)+`default_replication_method: FULL_TABLE
tables: [{schema: public, table: t}]
`+fakeTargetDestination(t))

	t.Setenv("FAIL_AFTER", "1500")
	code, output := runMain(t, "run", "--integration", integration, "--store", store)
	if code != 1 || !strings.Contains(output, "singer target") || !strings.Contains(output, "exit status 3") {
		t.Fatalf("dying target: exit %d\n%s", code, output)
	}
	state := mustRead(t, filepath.Join(store, "piped", "state.json"))
	if !strings.Contains(state, `"last_pk_fetched":{"id":"1000"}`) {
		t.Fatalf("state after the target died at its 1500th record: %s (want the one it printed after 1000)", state)
	}
	// Its exit explains the writes that broke after it: the error says
	// why it exited, on one line, and the rows loaded are those its last
	// state covers.
	code, jobs := runMain(t, "jobs", "--integration", integration, "--store", store)
	if code != 0 || !regexp.MustCompile(`(?m)^1 .* failed +1000 +singer target \S+: exit status 3: fake target failing on purpose\n`).MatchString(jobs) {
		t.Fatalf("jobs after the target died:\n%s", jobs)
	}

	t.Setenv("FAIL_AFTER", "")
	// The runner's secrets stay with it; the target gets the harmless
	// variables and its own.
	t.Setenv("PGPASSWORD", "source-password-in-env")
	t.Setenv("TAP_POSTGRES_STORE", store)
	code, output = runMain(t, "run", "--integration", integration, "--store", store)
	if code != 0 {
		t.Fatalf("job: exit %d\n%s", code, output)
	}
	environ := "\n" + mustRead(t, out+".environ") + "\n"
	for _, secret := range []string{"\nPGPASSWORD=", "\nRUNNER_TEST_PASSWORD=", "\nTAP_POSTGRES_STORE=", pg.Password} {
		if strings.Contains(environ, secret) {
			t.Errorf("the target's environment holds %q", secret)
		}
	}
	for _, want := range []string{"\nPATH=", "\n" + envFakeTarget + "=" + out + "\n"} {
		if !strings.Contains(environ, want) {
			t.Errorf("the target's environment lacks %q", want)
		}
	}
	records := strings.Count(mustRead(t, out), "\n")
	// 1499 written before the failure, then the copy resumed after id 1000.
	if records != 1499+1500 {
		t.Fatalf("target received %d records", records)
	}
	state = mustRead(t, filepath.Join(store, "piped", "state.json"))
	if strings.Contains(state, "last_pk_fetched") || !strings.Contains(state, `"version"`) {
		t.Fatalf("state after a complete copy: %s", state)
	}
	code, logText := runMain(t, "logs", "--integration", integration, "--store", store)
	if code != 0 || !strings.Contains(logText, "target - INFO fake target ready") || !strings.Contains(logText, "State update: adding bookmarks.") {
		t.Fatalf("extraction log:\n%s", logText)
	}

	// A target printing lines that are not states: none is committed (each
	// would wipe the bookmarks), and an endless stderr line does not stall it.
	t.Setenv("NOISY", "1")
	if code, output = runMain(t, "reset", "--integration", integration, "--store", store, "--stream", db+"-public-t"); code != 0 {
		t.Fatal(output)
	}
	code, output = runMain(t, "run", "--integration", integration, "--store", store)
	if code != 0 || strings.Count(output, "singer target printed a line that is not a state, not committed") != 3 || !strings.Contains(output, "…(line cut)") {
		t.Fatalf("noisy target: exit %d\n%.3000s", code, output)
	}
	if state = mustRead(t, filepath.Join(store, "piped", "state.json")); !strings.Contains(state, `"bookmarks":{"`) {
		t.Fatalf("state after a noisy target: %s", state)
	}
}

// TestSingerTargetLoadedRows: the rows a job loaded through a Singer target
// are those covered by a state the target printed, whatever its spelling;
// the rows sent are shown apart, and a failed target's error says why.
func TestSingerTargetLoadedRows(t *testing.T) {
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, `CREATE TABLE t (id integer PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 1500) g;`)
	t.Setenv(envFakeTarget, filepath.Join(t.TempDir(), "records.jsonl"))
	store := t.TempDir()
	integration := writeIntegration(t, "name: counted\n"+connectionYAML(db)+`default_replication_method: FULL_TABLE
tables: [{schema: public, table: t}]
`+fakeTargetDestination(t))
	type load struct {
		Job      int    `json:"job"`
		Stream   string `json:"stream"`
		Rows     int64  `json:"rows"`
		RowsSent *int64 `json:"rows_sent"`
		Status   string `json:"status"`
		Error    string `json:"error"`
	}
	report := func() ([]load, map[string]int64) {
		t.Helper()
		code, out := runMain(t, "report", "--json", "--integration", integration, "--store", store)
		var r struct {
			Loads   []load           `json:"loads"`
			Last24h map[string]int64 `json:"rows_last_24h"`
		}
		if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil {
			t.Fatalf("report --json: exit %d, %v\n%s", code, err, out)
		}
		return r.Loads, r.Last24h
	}
	sent := func(l load) int64 {
		if l.RowsSent == nil {
			return -1
		}
		return *l.RowsSent
	}

	// It reads everything, prints no state and fails: nothing is loaded.
	t.Setenv("STATES_TO_PRINT", "0")
	t.Setenv("FAIL_AT_END", "1")
	if code, out := runMain(t, "run", "--integration", integration, "--store", store); code != 1 {
		t.Fatalf("failing target: exit %d\n%s", code, out)
	}
	loads, last24h := report()
	wantError := fmt.Sprintf("singer target %s: exit status 1: %s", os.Args[0], pipelinewiseCritical)
	if len(loads) != 1 || loads[0].Stream != "t" || loads[0].Rows != 0 || sent(loads[0]) != 1500 || loads[0].Status != "failed" || loads[0].Error != wantError {
		t.Fatalf("report of a target that failed before any state: %+v (sent %d), want error %q", loads, sent(loads[0]), wantError)
	}
	if last24h["t"] != 0 {
		t.Fatalf("rows loaded in 24 h after a target that loaded nothing: %v", last24h)
	}
	code, text := runMain(t, "report", "--integration", integration, "--store", store)
	if code != 0 || !regexp.MustCompile(`(?m)^1 +\S+ +t +0 +1500 +.* failed +`+regexp.QuoteMeta(wantError)+`$`).MatchString(text) ||
		!regexp.MustCompile(`(?m)^t +0$`).MatchString(text) {
		t.Fatalf("report:\n%s", text)
	}
	if code, jobs := runMain(t, "jobs", "--integration", integration, "--store", store); code != 0 || !strings.Contains(jobs, wantError) {
		t.Fatalf("jobs:\n%s", jobs)
	}

	// It re-serialises the states it prints, and prints only the first
	// two: the one before any record and the one after the 1000th.
	t.Setenv("FAIL_AT_END", "")
	t.Setenv("STATES_TO_PRINT", "2")
	t.Setenv("RESERIALISE", "1")
	if code, out := runMain(t, "run", "--integration", integration, "--store", store); code != 0 {
		t.Fatalf("target printing two states: exit %d\n%s", code, out)
	}
	// Then all of them: the copy resumes after the 1000th row.
	t.Setenv("STATES_TO_PRINT", "")
	if code, out := runMain(t, "run", "--integration", integration, "--store", store); code != 0 {
		t.Fatalf("target printing every state: exit %d\n%s", code, out)
	}
	loads, last24h = report()
	if len(loads) != 3 || loads[1].Rows != 1000 || sent(loads[1]) != 1500 || loads[2].Rows != 500 || sent(loads[2]) != 500 {
		t.Fatalf("report: %+v", loads)
	}
	if last24h["t"] != 1500 {
		t.Fatalf("rows loaded in 24 h: %v", last24h)
	}
}

// TestSlowSingerTarget: a target that stops reading for longer than the
// server's wal_sender_timeout in the middle of a LOG_BASED job does not end
// the replication stream: the job succeeds with every change loaded.
func TestSlowSingerTarget(t *testing.T) {
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	db := testpg.NewDatabase(t, pg)
	slot := "s_" + db[len(db)-8:]
	testpg.Exec(t, pg, db, `CREATE TABLE t (id integer PRIMARY KEY, v text); INSERT INTO t SELECT g, repeat('v', 200) FROM generate_series(1, 5000) g;
		CREATE PUBLICATION `+slot+` FOR TABLE t;`)
	testpg.Exec(t, pg, "postgres", fmt.Sprintf("ALTER DATABASE %s SET wal_sender_timeout = '4s'", db))
	testpg.Exec(t, pg, db, fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s', 'pgoutput')", slot))
	t.Cleanup(func() {
		testpg.Exec(t, pg, db, fmt.Sprintf(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '%[1]s' AND active_pid IS NOT NULL`, slot))
		time.Sleep(200 * time.Millisecond)
		testpg.Exec(t, pg, db, fmt.Sprintf(`SELECT pg_drop_replication_slot('%[1]s') FROM pg_replication_slots WHERE slot_name = '%[1]s'`, slot))
	})
	out := filepath.Join(t.TempDir(), "records.jsonl")
	t.Setenv(envFakeTarget, out)
	store := t.TempDir()
	integration := writeIntegration(t, "name: slow\n"+connectionYAML(db)+fmt.Sprintf(`  slot_name: %s
default_replication_method: LOG_BASED
tables: [{schema: public, table: t}]
`, slot)+fakeTargetDestination(t))
	if code, output := runMain(t, "run", "--integration", integration, "--store", store); code != 0 {
		t.Fatalf("first job: exit %d\n%s", code, output)
	}
	testpg.Exec(t, pg, db, `UPDATE t SET v = repeat('w', 200)`)
	t.Setenv("PAUSE_AT", "1000")
	t.Setenv("PAUSE_SECONDS", "12")
	started := time.Now()
	if code, output := runMain(t, "run", "--integration", integration, "--store", store); code != 0 {
		t.Fatalf("job with a pausing target: exit %d after %s\n%s", code, time.Since(started).Round(time.Second), output)
	}
	if took := time.Since(started); took < 12*time.Second {
		t.Fatalf("the target never paused (job took %s)", took)
	}
	if updated := strings.Count(mustRead(t, out), strings.Repeat("w", 200)); updated != 5000 {
		t.Fatalf("%d of 5000 updates reached the target", updated)
	}
}

// TestCrashMidJob kills the runner (SIGKILL) in the middle of a job that
// copies one table and streams another into PostgreSQL; the next job takes
// the lock the dead one held and the destination ends equal to the source.
func TestCrashMidJob(t *testing.T) {
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	db := testpg.NewDatabase(t, pg)
	dest := testpg.NewDatabase(t, pg)
	slot := "s_" + db[len(db)-8:]
	testpg.Exec(t, pg, db, `CREATE TABLE big (id integer PRIMARY KEY, v text); INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 200000) g;
		CREATE TABLE live (id integer PRIMARY KEY, n integer); INSERT INTO live SELECT g, 0 FROM generate_series(1, 100) g; ANALYZE;`)
	newSlot(t, db, slot)
	store := t.TempDir()
	t.Setenv("RUNNER_TEST_DEST_DSN", pg.ConnString(dest))
	integration := writeIntegration(t, "name: crashy\n"+connectionYAML(db)+fmt.Sprintf(`  slot_name: %s
default_replication_method: LOG_BASED
tables: [{schema: public, table: live}, {schema: public, table: big, replication_method: FULL_TABLE}]
destination: {type: postgres, dsn: "${RUNNER_TEST_DEST_DSN}", batch_rows: 2000}
`, slot))
	if code, out := runMain(t, "run", "--integration", integration, "--store", store); code != 0 {
		t.Fatalf("first job: %s", out)
	}
	testpg.Exec(t, pg, db, `UPDATE live SET n = n + 1 WHERE id <= 50; DELETE FROM live WHERE id = 100; TRUNCATE big; INSERT INTO big SELECT g, 'second ' || g FROM generate_series(1, 200000) g;`)
	if code, out := runMain(t, "reset", "--integration", integration, "--store", store, "--stream", db+"-public-big"); code != 0 {
		t.Fatal(out)
	}

	args, _ := json.Marshal([]string{"run", "--integration", integration, "--store", store})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envRunnerArgs+"="+string(args))
	var childOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &childOut, &childOut
	stateFile := filepath.Join(store, "crashy", "state.json")
	before, _ := os.Stat(stateFile)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if now, err := os.Stat(stateFile); err == nil && now.ModTime().After(before.ModTime()) {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no state committed within a minute:\n%s", childOut.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	copied := destinationQuery(t, dest, `SELECT count(*)::text FROM crashy.big WHERE v LIKE 'second %'`)
	if copied == "200000" {
		t.Fatalf("the job finished before it was killed; the test proves nothing:\n%s", childOut.String())
	}
	t.Logf("killed with %s of 200000 rows of the second version loaded", copied)

	// The killed job is in the history, settled as crashed once its lock
	// is free, and its log says so last.
	code, jobs := runMain(t, "jobs", "--integration", integration, "--store", store)
	if code != 0 || !regexp.MustCompile(`(?m)^2 .* crashed .*its process ended before the job did`).MatchString(jobs) {
		t.Fatalf("jobs after the crash: exit %d\n%s", code, jobs)
	}
	code, logText := runMain(t, "logs", "--integration", integration, "--store", store, "--job", "2")
	if lines := strings.Split(strings.TrimSpace(logText), "\n"); code != 0 || !strings.Contains(lines[len(lines)-1], "main - CRITICAL job 2 crashed: its process ended") {
		t.Fatalf("log of the crashed job:\n%s", logText)
	}

	testpg.Exec(t, pg, db, `UPDATE live SET n = n + 10 WHERE id > 90;`)
	if code, out := runMain(t, "run", "--integration", integration, "--store", store); code != 0 {
		t.Fatalf("job after the crash: %s", out)
	}
	if got := destinationQuery(t, dest, `SELECT count(*) || '/' || count(*) FILTER (WHERE v LIKE 'second %') || '/' || count(DISTINCT _sdc_table_version) FROM crashy.big`); got != "200000/200000/1" {
		t.Fatalf("big after the crash and a job: %s", got)
	}
	if got := destinationQuery(t, dest, `SELECT string_agg(format('%s:%s:%s', id, n, _sdc_deleted_at IS NOT NULL), ',' ORDER BY id) FROM crashy.live WHERE id IN (1, 50, 51, 91, 100)`); got != "1:1:f,50:1:f,51:0:f,91:10:f,100:0:t" {
		t.Fatalf("live after the crash and a job: %s", got)
	}
}

// TestCheck tries an integration without a job: the source, its tables and
// slot, and the destination, each problem reported.
func TestCheck(t *testing.T) {
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	db := testpg.NewDatabase(t, pg)
	dest := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, `CREATE TABLE t (id integer PRIMARY KEY); CREATE VIEW v AS SELECT id FROM t`)
	view := func(key string) string {
		return writeIntegration(t, "name: checked\n"+connectionYAML(db)+`default_replication_method: FULL_TABLE
tables: [{schema: public, table: v`+key+`}]
destination: {type: jsonl, path: `+t.TempDir()+"}\n")
	}
	code, out := runMain(t, "check", "--integration", view(""))
	if code != 0 || !strings.Contains(out, "WARNING stream "+db+"-public-v is a view without view_key") {
		t.Fatalf("check of a view without view_key: exit %d\n%s", code, out)
	}
	if code, out = runMain(t, "check", "--integration", view(", view_key: [id]")); code != 0 || strings.Contains(out, "without view_key") {
		t.Fatalf("check of a view with view_key: exit %d\n%s", code, out)
	}
	file := func(destination string) string {
		return writeIntegration(t, "name: checked\n"+connectionYAML(db)+`  slot_name: no_such_slot_zz
default_replication_method: FULL_TABLE
tables: [{schema: public, table: t}]
destination: `+destination+"\n")
	}
	// An unknown connection key is a warning, as for the tap.
	withUnknownKey := strings.Replace(mustRead(t, file(fmt.Sprintf("{type: postgres, dsn: %q}", pg.ConnString(dest)))), "  slot_name:", "  bogus_key: 1\n  slot_name:", 1)
	code, out = runMain(t, "check", "--integration", writeIntegration(t, withUnknownKey))
	if code != 0 || !strings.Contains(out, "INFO connected to") || !strings.Contains(out, `schema "checked" will be created`) ||
		!strings.Contains(out, `WARNING connection: unknown config key "bogus_key"`) {
		t.Fatalf("check: exit %d\n%s", code, out)
	}
	code, out = runMain(t, "check", "--integration", file(fmt.Sprintf("{type: postgres, dsn: %q}", pg.ConnString("no_such_db_zz"))))
	if code != 1 || !strings.Contains(out, `ERROR postgres destination: connect:`) || !strings.Contains(out, `database "no_such_db_zz" does not exist`) {
		t.Fatalf("check with a missing destination database: exit %d\n%s", code, out)
	}
	code, out = runMain(t, "check", "--integration", file(`{type: postgres, dsn: "host=h password='it\\'s S3cretPW' sslmode=bogus"}`))
	if code != 1 || strings.Contains(out, "S3cret") || !strings.Contains(out, "sslmode is invalid") {
		t.Fatalf("check with a bad destination dsn: exit %d\n%s", code, out)
	}
	code, out = runMain(t, "check", "--integration", file(`{type: singer, command: [no-such-target-zz]}`))
	if code != 1 || !strings.Contains(out, "ERROR singer target:") {
		t.Fatalf("check with a missing target: exit %d\n%s", code, out)
	}
	logBased := writeIntegration(t, "name: checked\n"+connectionYAML(db)+`  slot_name: no_such_slot_zz
default_replication_method: LOG_BASED
tables: [{schema: public, table: t}]
destination: {type: jsonl, path: `+t.TempDir()+"}\n")
	code, out = runMain(t, "check", "--integration", logBased)
	if code != 1 || !strings.Contains(out, "no_such_slot_zz") || !strings.Contains(out, "INFO jsonl destination:") {
		t.Fatalf("check with a missing slot: exit %d\n%s", code, out)
	}
}

// TestReportTableDurations: a table's duration in the loading report runs
// from its first record to its last, not the whole job's.
func TestReportTableDurations(t *testing.T) {
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, `CREATE TABLE a (id integer PRIMARY KEY); INSERT INTO a SELECT generate_series(1, 20);
		CREATE TABLE b (id integer PRIMARY KEY); INSERT INTO b VALUES (1);`)
	store := t.TempDir()
	integration := writeIntegration(t, "name: timed\n"+connectionYAML(db)+`default_replication_method: FULL_TABLE
tables: [{schema: public, table: a}, {schema: public, table: b}]
destination: {type: jsonl, path: `+t.TempDir()+"}\n")
	// Every reading of this clock is one second later.
	tick := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { tick = tick.Add(time.Second); return tick }
	var stdout, stderr bytes.Buffer
	if code := runner.Main(context.Background(), []string{"run", "--integration", integration, "--store", store}, &stdout, &stderr, clock); code != 0 {
		t.Fatalf("job: %s", stderr.String())
	}
	stdout.Reset()
	if code := runner.Main(context.Background(), []string{"report", "--json", "--integration", integration, "--store", store}, &stdout, &stderr, clock); code != 0 {
		t.Fatalf("report: %s", stderr.String())
	}
	var report struct {
		Loads []struct {
			Stream   string `json:"stream"`
			Duration string `json:"duration"`
			Rows     int64  `json:"rows"`
			RowsSent int64  `json:"rows_sent"`
		} `json:"loads"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &report); err != nil {
		t.Fatal(err)
	}
	jobs := map[string]time.Duration{}
	for _, l := range report.Loads {
		d, err := time.ParseDuration(l.Duration)
		if err != nil {
			t.Fatal(err)
		}
		jobs[l.Stream] = d
		if l.Rows != l.RowsSent {
			t.Fatalf("%s: %d rows loaded of %d sent by a job that succeeded", l.Stream, l.Rows, l.RowsSent)
		}
	}
	// a: at least one reading per record after its first; b: one record.
	if jobs["a"] < 19*time.Second || jobs["b"] != 0 {
		t.Fatalf("table durations: %v", jobs)
	}
}

// TestSameStreamNameRefused: two selected tables that would load as one
// stream fail the job before anything is extracted; the schema prefix
// separates them.
func TestSameStreamNameRefused(t *testing.T) {
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, `CREATE SCHEMA a; CREATE SCHEMA b; CREATE TABLE a.users (id int PRIMARY KEY); CREATE TABLE b.users (id int PRIMARY KEY);
		INSERT INTO a.users VALUES (1); INSERT INTO b.users VALUES (1), (2);`)
	out := t.TempDir()
	body := func(name, extra string) string {
		return "name: " + name + "\n" + connectionYAML(db) + extra + `default_replication_method: FULL_TABLE
tables: [{schema: a, table: users}, {schema: b, table: users}]
destination: {type: jsonl, path: ` + out + "}\n"
	}
	store := t.TempDir()
	code, output := runMain(t, "run", "--integration", writeIntegration(t, body("same", "")), "--store", store)
	if code != 1 || !strings.Contains(output, `would both load as stream "users"`) {
		t.Fatalf("exit %d\n%s", code, output)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Fatalf("something was loaded: %v", entries)
	}
	// The fix the error suggests is allowed: the refused job fixed no names.
	code, output = runMain(t, "run", "--integration", writeIntegration(t, body("same", "  include_schemas_in_destination_stream_name: true\n")), "--store", store)
	if code != 0 || recordCount(readLines(t, filepath.Join(out, "a_users.jsonl"))) != 1 || recordCount(readLines(t, filepath.Join(out, "b_users.jsonl"))) != 2 {
		t.Fatalf("with schema prefixes: exit %d\n%s", code, output)
	}
}

// TestSelectAllPicksUpNewTablesAndColumns: under select all, a table created
// after a job and a column added to a selected table come in with the next
// job, into a PostgreSQL destination.
func TestSelectAllPicksUpNewTablesAndColumns(t *testing.T) {
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	db := testpg.NewDatabase(t, pg)
	dest := testpg.NewDatabase(t, pg)
	slot := "s_" + db[len(db)-8:]
	testpg.Exec(t, pg, db, `CREATE TABLE first (id int PRIMARY KEY, v text); INSERT INTO first VALUES (1, 'a');`)
	newSlot(t, db, slot)
	integration := writeIntegration(t, "name: everything\n"+connectionYAML(db)+fmt.Sprintf(`  slot_name: %s
default_replication_method: LOG_BASED
select_all: true
destination: {type: postgres, dsn: %q}
`, slot, pg.ConnString(dest)))
	store := t.TempDir()
	if code, out := runMain(t, "run", "--integration", integration, "--store", store); code != 0 {
		t.Fatalf("job 1: %s", out)
	}
	testpg.Exec(t, pg, db, `CREATE TABLE later (id int PRIMARY KEY, n numeric); INSERT INTO later VALUES (1, 1.5), (2, 2.25);
		ALTER TABLE first ADD COLUMN added date; INSERT INTO first VALUES (2, 'b', '2024-02-29'); UPDATE first SET added = '2024-01-01' WHERE id = 1;`)
	if code, out := runMain(t, "run", "--integration", integration, "--store", store); code != 0 {
		t.Fatalf("job 2: %s", out)
	}
	if got := destinationQuery(t, dest, `SELECT string_agg(format('%s:%s:%s', id, v, added), ',' ORDER BY id) FROM everything.first`); got != "1:a:2024-01-01 00:00:00+00,2:b:2024-02-29 00:00:00+00" {
		t.Fatalf("first after a new column: %s", got)
	}
	if got := destinationQuery(t, dest, `SELECT string_agg(format('%s:%s', id, n), ',' ORDER BY id) FROM everything.later`); got != "1:1.5,2:2.25" {
		t.Fatalf("a table created after job 1: %s", got)
	}
}

// TestProgressOnTerminal runs a job with stderr on a terminal (a pty from
// script(1)) and stdout in a file: bars are drawn on the terminal, and
// stdout holds only the job table.
func TestProgressOnTerminal(t *testing.T) {
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) is not installed")
	}
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, `CREATE TABLE t (id integer PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 30000) g; ANALYZE t;`)
	dir := t.TempDir()
	integration := writeIntegration(t, "name: drawn\n"+connectionYAML(db)+`default_replication_method: FULL_TABLE
tables: [{schema: public, table: t}]
destination: {type: jsonl, path: `+dir+"/out}\n")
	args, _ := json.Marshal([]string{"run", "--integration", integration, "--store", dir + "/store"})
	stdout, terminal := filepath.Join(dir, "stdout"), filepath.Join(dir, "terminal")
	cmd := exec.Command(script, "-qec", fmt.Sprintf("stty cols 120 rows 40; '%s' -test.run='^$' > '%s'", os.Args[0], stdout), terminal)
	cmd.Env = append(os.Environ(), envRunnerArgs+"="+string(args))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	drawn := mustRead(t, terminal)
	if !strings.Contains(drawn, "30000 / 30000 rows") || !strings.Contains(drawn, "rows/s") || !strings.Contains(drawn, "main - INFO job 1 succeeded") {
		t.Fatalf("terminal:\n%s", drawn)
	}
	if out := mustRead(t, stdout); !strings.Contains(out, "succeeded  30000") || strings.Contains(out, "rows/s") || strings.Contains(out, "\x1b") {
		t.Fatalf("stdout:\n%q", out)
	}
}

// TestStoreAfterCrashes: a job refused by a held lock says so; a history
// line torn by a crash swallows no later record; the log of a job that
// crashed before it was recorded is the one `logs` shows.
func TestStoreAfterCrashes(t *testing.T) {
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, `CREATE TABLE t (id integer PRIMARY KEY); INSERT INTO t VALUES (1);`)
	store := t.TempDir()
	integration := writeIntegration(t, "name: crashed\n"+connectionYAML(db)+`default_replication_method: FULL_TABLE
tables: [{schema: public, table: t}]
destination: {type: jsonl, path: `+t.TempDir()+"}\n")
	if code, out := runMain(t, "run", "--integration", integration, "--store", store); code != 0 {
		t.Fatal(out)
	}

	held, err := runner.OpenStore(context.Background(), store, "crashed")
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := held.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	code, out := runMain(t, "run", "--integration", integration, "--store", store)
	unlock()
	if code != 1 || !strings.Contains(out, "CRITICAL a job of this integration is already running") {
		t.Fatalf("run while locked: exit %d\n%s", code, out)
	}

	// Job 2 crashed: its log exists, its history line is torn.
	dir := filepath.Join(store, "crashed")
	if err := os.WriteFile(filepath.Join(dir, "logs", "job-000002.log"), []byte("2026-11-24 12:00:00,000Z main - INFO job 2 started\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "jobs.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"id":2,"sta`)
	f.Close()
	if code, out := runMain(t, "logs", "--integration", integration, "--store", store); code != 0 || !strings.Contains(out, "job 2 started") {
		t.Fatalf("logs after a crashed job: exit %d\n%s", code, out)
	}
	if code, out := runMain(t, "run", "--integration", integration, "--store", store); code != 0 {
		t.Fatal(out)
	}
	code, out = runMain(t, "jobs", "--integration", integration, "--store", store)
	if code != 0 || !regexp.MustCompile(`(?m)^1 `).MatchString(out) || !regexp.MustCompile(`(?m)^3 `).MatchString(out) {
		t.Fatalf("jobs after a torn line:\n%s", out)
	}
}

// TestJobStoppedBySignal: a job cancelled mid-copy (SIGTERM in serve or
// run) commits its last STATE, is recorded as stopped, not failed, and the
// next job resumes the copy.
func TestJobStoppedBySignal(t *testing.T) {
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, `CREATE TABLE big (id integer PRIMARY KEY, v text); INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 300000) g;`)
	store, out := t.TempDir(), t.TempDir()
	integration := writeIntegration(t, "name: stoppable\n"+connectionYAML(db)+`default_replication_method: FULL_TABLE
tables: [{schema: public, table: big}]
destination: {type: jsonl, path: `+out+`, batch_rows: 2000}
`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stateFile := filepath.Join(store, "stoppable", "state.json")
	go func() {
		for ctx.Err() == nil {
			if _, err := os.Stat(stateFile); err == nil {
				cancel()
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	var stdout, stderr bytes.Buffer
	if code := runner.Main(ctx, []string{"run", "--integration", integration, "--store", store}, &stdout, &stderr, nil); code != 1 {
		t.Fatalf("stopped job: exit %d\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "main - WARNING job 1 stopped by a signal") || strings.Contains(stderr.String(), "CRITICAL") {
		t.Fatalf("stopped job's log:\n%s", stderr.String())
	}
	if state := mustRead(t, stateFile); !strings.Contains(state, "last_pk_fetched") {
		t.Fatalf("state of a stopped copy: %s (the job finished before it was stopped?)", state)
	}
	if code, output := runMain(t, "run", "--integration", integration, "--store", store); code != 0 {
		t.Fatal(output)
	}
	code, jobs := runMain(t, "jobs", "--integration", integration, "--store", store)
	if code != 0 || !regexp.MustCompile(`(?m)^1 .* stopped `).MatchString(jobs) || !regexp.MustCompile(`(?m)^2 .* succeeded `).MatchString(jobs) {
		t.Fatalf("jobs:\n%s", jobs)
	}
	seen := map[float64]bool{}
	for _, m := range readLines(t, filepath.Join(out, "big.jsonl")) {
		if rec, ok := m["record"].(map[string]any); ok {
			seen[rec["id"].(float64)] = true
		}
	}
	if len(seen) != 300000 {
		t.Fatalf("%d distinct rows loaded over both jobs", len(seen))
	}
}

// TestMissingTableSkipped: a FULL_TABLE or INCREMENTAL table that is gone
// is left out while the others load, and the job ends failed naming it; a
// missing LOG_BASED table stops the job before anything (the slot would
// move past its changes).
func TestMissingTableSkipped(t *testing.T) {
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, `CREATE TABLE stays (id int PRIMARY KEY); INSERT INTO stays VALUES (1);
		CREATE TABLE goes (id int PRIMARY KEY); INSERT INTO goes VALUES (1);`)
	out, store := t.TempDir(), t.TempDir()
	integration := writeIntegration(t, "name: partial\n"+connectionYAML(db)+`default_replication_method: FULL_TABLE
tables: [{schema: public, table: stays}, {schema: public, table: goes}, {schema: public, table: stays, columns: [nope]}]
destination: {type: jsonl, path: `+out+"}\n")
	code, output := runMain(t, "run", "--integration", integration, "--store", store)
	if code != 1 || !strings.Contains(output, `tap - ERROR table left out of this job: table public.stays: selected column "nope" does not exist`) {
		t.Fatalf("a selection with a missing column: exit %d\n%s", code, output)
	}
	if n := recordCount(readLines(t, filepath.Join(out, "goes.jsonl"))); n != 1 {
		t.Fatalf("the other table: %d records", n)
	}

	testpg.Exec(t, pg, db, `DROP TABLE goes; INSERT INTO stays VALUES (2);`)
	integration = writeIntegration(t, "name: partial\n"+connectionYAML(db)+`default_replication_method: FULL_TABLE
tables: [{schema: public, table: stays}, {schema: public, table: goes}]
destination: {type: jsonl, path: `+out+"}\n")
	code, output = runMain(t, "run", "--integration", integration, "--store", store)
	if code != 1 || !strings.Contains(output, "table left out of this job: table "+db+".public.goes is selected but was not discovered") {
		t.Fatalf("a dropped table: exit %d\n%s", code, output)
	}
	if n := recordCount(readLines(t, filepath.Join(out, "stays.jsonl"))); n != 2 {
		t.Fatalf("the table that stays: %d records, want its 2 rows", n)
	}
	if _, jobs := runMain(t, "jobs", "--integration", integration, "--store", store); !regexp.MustCompile(`(?m)^2 .* failed .*goes is selected but was not discovered`).MatchString(jobs) {
		t.Fatalf("jobs:\n%s", jobs)
	}

	logBased := writeIntegration(t, "name: partial log\n"+connectionYAML(db)+`default_replication_method: LOG_BASED
tables: [{schema: public, table: stays, replication_method: FULL_TABLE}, {schema: public, table: goes}]
destination: {type: jsonl, path: `+t.TempDir()+"}\n")
	code, output = runMain(t, "run", "--integration", logBased, "--store", store)
	if code != 1 || !strings.Contains(output, "CRITICAL table "+db+".public.goes is selected but was not discovered") {
		t.Fatalf("a dropped LOG_BASED table: exit %d\n%s", code, output)
	}
}

// TestStoreLongHistoryLine: a job of thousands of streams makes a history
// line far longer than a default line buffer; later jobs still number and
// list it.
func TestStoreLongHistoryLine(t *testing.T) {
	store, err := runner.OpenStore(context.Background(), t.TempDir(), "wide")
	if err != nil {
		t.Fatal(err)
	}
	job := runner.JobRecord{ID: 1, Status: "succeeded", Rows: map[string]int64{}, Durations: map[string]time.Duration{}}
	for i := range 5000 {
		name := fmt.Sprintf("a_rather_long_stream_name_number_%05d", i)
		job.Rows[name], job.Durations[name] = int64(i), time.Duration(i)*time.Millisecond
	}
	if err := store.AppendJob(job); err != nil {
		t.Fatal(err)
	}
	jobs, err := store.Jobs()
	if err != nil || len(jobs) != 1 || len(jobs[0].Rows) != 5000 {
		t.Fatalf("jobs: %d, %v", len(jobs), err)
	}
	if next, err := store.NextJobID(); err != nil || next != 2 {
		t.Fatalf("next job: %d, %v", next, err)
	}
}
