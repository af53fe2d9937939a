package runner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tap-postgres/tap-postgres/internal/runner"
	"github.com/tap-postgres/tap-postgres/internal/singer"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

const busy = "a job of this integration is already running"

// storeURL is a postgres:// location for database db; fragment, when not
// empty, names the store's schema.
func storeURL(db, fragment string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(pg.User, pg.Password),
		Host:     net.JoinHostPort(pg.Host, strconv.Itoa(pg.Port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
		Fragment: fragment,
	}
	return u.String()
}

// storeDatabase is a new database for a store; the test runs in an empty
// directory, where a location mistaken for a directory would land.
func storeDatabase(t *testing.T) string {
	t.Helper()
	t.Chdir(t.TempDir())
	return testpg.NewDatabase(t, pg)
}

func openPgStore(t *testing.T, location, integration string) runner.Store {
	t.Helper()
	s, err := runner.OpenStore(context.Background(), location, integration)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// adminConn is a superuser connection to db, closed at the test's end.
func adminConn(t *testing.T, db string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), pg.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// stateJSON is the state as the store hands it back, for comparisons.
func stateJSON(t *testing.T, s runner.Store) string {
	t.Helper()
	st, err := s.State()
	if err != nil {
		t.Fatalf("state: %v", err)
	}
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func parsedStateJSON(t *testing.T, raw string) string {
	t.Helper()
	st, err := singer.ParseState([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(st)
	return string(data)
}

func jobsJSON(t *testing.T, jobs []runner.JobRecord) string {
	t.Helper()
	data, err := json.Marshal(jobs)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func writeLog(t *testing.T, w interface{ Write([]byte) (int, error) }, text string) {
	t.Helper()
	if n, err := w.Write([]byte(text)); err != nil || n != len(text) {
		t.Fatalf("write log %q: %d, %v", text, n, err)
	}
}

func readLog(t *testing.T, s runner.Store, id int) string {
	t.Helper()
	data, err := s.ReadLog(id)
	if err != nil {
		t.Fatalf("read log %d: %v", id, err)
	}
	return string(data)
}

// TestPostgresStoreRoundTrips: every Store method gives back what was put
// in, a fresh store is empty, and log lines are stored whole, each as soon
// as its newline is written.
func TestPostgresStoreRoundTrips(t *testing.T) {
	db := storeDatabase(t)
	s := openPgStore(t, storeURL(db, ""), "aurora_prod")

	if got := stateJSON(t, s); got != parsedStateJSON(t, `{}`) {
		t.Fatalf("fresh store's state: %s", got)
	}
	if jobs, err := s.Jobs(); err != nil || len(jobs) != 0 {
		t.Fatalf("fresh store's jobs: %v, %v", jobs, err)
	}
	if n, err := s.Naming(); err != nil || n != nil {
		t.Fatalf("fresh store's naming: %v, %v", n, err)
	}
	if id, err := s.NextJobID(); err != nil || id != 1 {
		t.Fatalf("fresh store's next job: %d, %v", id, err)
	}
	if _, err := s.ReadLog(1); err == nil || err.Error() != "no extraction log for job 1" {
		t.Fatalf("missing log: %v", err)
	}

	// State: committed, then replaced.
	first := `{"currently_syncing":"db-public-a","bookmarks":{"db-public-a":{"last_replication_method":"FULL_TABLE","version":1717243200123,"last_pk_fetched":{"id":"17"}},` +
		`"db-public-b":{"last_replication_method":"INCREMENTAL","replication_key":"updated_at","replication_key_value":"2024-01-02T06:00:00.123456+00:00","version":1}}}`
	if err := s.CommitState(json.RawMessage(first)); err != nil {
		t.Fatal(err)
	}
	if got, want := stateJSON(t, s), parsedStateJSON(t, first); got != want {
		t.Fatalf("state after a commit:\n got %s\nwant %s", got, want)
	}
	second := `{"currently_syncing":null,"bookmarks":{"db-public-c":{"last_replication_method":"LOG_BASED","lsn":123456789012,"version":2}}}`
	if err := s.CommitState(json.RawMessage(second)); err != nil {
		t.Fatal(err)
	}
	if got, want := stateJSON(t, s), parsedStateJSON(t, second); got != want {
		t.Fatalf("state after a second commit:\n got %s\nwant %s", got, want)
	}
	if err := s.CommitState(json.RawMessage(`{"bookmarks":`)); err == nil || !strings.Contains(err.Error(), "commit state") {
		t.Fatalf("a torn state was committed: %v", err)
	}
	if got, want := stateJSON(t, s), parsedStateJSON(t, second); got != want {
		t.Fatalf("a failed commit changed the state: %s", got)
	}

	// Jobs, oldest first, whatever order they were recorded in; job 2 is
	// recorded as before the rows sent were kept.
	at := time.Date(2024, 6, 1, 12, 0, 0, 123000000, time.UTC)
	jobs := []runner.JobRecord{
		{ID: 1, Started: at, Finished: at.Add(time.Minute), Status: "succeeded", Rows: map[string]int64{"a": 20, "b": 3}, Sent: map[string]int64{"a": 25, "b": 3},
			Bookmarks: map[string]json.RawMessage{"b": json.RawMessage(`"2024-01-02T06:00:00+00:00"`)}},
		{ID: 2, Started: at.Add(time.Hour), Finished: at.Add(time.Hour + time.Second), Status: "failed", Error: "boom\x00", Rows: map[string]int64{}},
	}
	if err := s.AppendJob(jobs[1]); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendJob(jobs[0]); err != nil {
		t.Fatal(err)
	}
	got, err := s.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	jobs[1].Error = "boom\uFFFD" // jsonb has no room for NUL
	if jobsJSON(t, got) != jobsJSON(t, jobs) {
		t.Fatalf("jobs:\n got %s\nwant %s", jobsJSON(t, got), jobsJSON(t, jobs))
	}
	if id, err := s.NextJobID(); err != nil || id != 3 {
		t.Fatalf("next job after jobs 1 and 2: %d, %v", id, err)
	}

	// Logs: lines are stored whole, each as soon as it is complete.
	w, err := s.CreateLog(3)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := s.NextJobID(); err != nil || id != 4 {
		t.Fatalf("next job after a log of job 3 (not recorded): %d, %v", id, err)
	}
	if got := readLog(t, s, 3); got != "" {
		t.Fatalf("new log: %q", got)
	}
	writeLog(t, w, "2024-06-01 12:00:00,123Z main - INFO first\n2024-06-01 12:00:00,124Z tap - INFO sec")
	if got := readLog(t, s, 3); got != "2024-06-01 12:00:00,123Z main - INFO first\n" {
		t.Fatalf("log with a partial line pending: %q", got)
	}
	writeLog(t, w, "ond\n")
	writeLog(t, w, "third, ünïcode\nlast without newline")
	want := "2024-06-01 12:00:00,123Z main - INFO first\n2024-06-01 12:00:00,124Z tap - INFO second\nthird, ünïcode\n"
	if got := readLog(t, s, 3); got != want {
		t.Fatalf("log before close:\n got %q\nwant %q", got, want)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readLog(t, s, 3); got != want+"last without newline\n" {
		t.Fatalf("log after close: %q", got)
	}
	// A log created again for the same job starts over.
	w, err = s.CreateLog(3)
	if err != nil {
		t.Fatal(err)
	}
	writeLog(t, w, "again\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readLog(t, s, 3); got != "again\n" {
		t.Fatalf("log created again: %q", got)
	}
	if _, err := s.ReadLog(2); err == nil || err.Error() != "no extraction log for job 2" {
		t.Fatalf("log of a job that has none: %v", err)
	}

	// Naming: saved, then replaced.
	for _, n := range []runner.Naming{{Name: "Aurora Prod"}, {Name: "Aurora Prod", IncludeSchemasInDestinationStreamName: true}} {
		if err := s.SaveNaming(n); err != nil {
			t.Fatal(err)
		}
		got, err := s.Naming()
		if err != nil || got == nil || *got != n {
			t.Fatalf("naming: %v, %v; want %v", got, err, n)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// TestPostgresStoreSharedBetweenStores: two stores opened on the same
// location and integration (two machines) see each other's writes.
func TestPostgresStoreSharedBetweenStores(t *testing.T) {
	db := storeDatabase(t)
	a := openPgStore(t, storeURL(db, ""), "shared")
	b := openPgStore(t, storeURL(db, ""), "shared")

	state := `{"bookmarks":{"x-public-t":{"last_replication_method":"FULL_TABLE","version":5}}}`
	if err := a.CommitState(json.RawMessage(state)); err != nil {
		t.Fatal(err)
	}
	if got, want := stateJSON(t, b), parsedStateJSON(t, state); got != want {
		t.Fatalf("b's state: %s, want %s", got, want)
	}
	job := runner.JobRecord{ID: 1, Started: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), Status: "succeeded", Rows: map[string]int64{"t": 1}}
	if err := b.AppendJob(job); err != nil {
		t.Fatal(err)
	}
	if jobs, err := a.Jobs(); err != nil || jobsJSON(t, jobs) != jobsJSON(t, []runner.JobRecord{job}) {
		t.Fatalf("a's jobs: %v, %v", jobs, err)
	}
	if id, err := a.NextJobID(); err != nil || id != 2 {
		t.Fatalf("a's next job: %d, %v", id, err)
	}
	w, err := a.CreateLog(2)
	if err != nil {
		t.Fatal(err)
	}
	writeLog(t, w, "line\n")
	if got := readLog(t, b, 2); got != "line\n" {
		t.Fatalf("b reads a's open log: %q", got)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if id, err := b.NextJobID(); err != nil || id != 3 {
		t.Fatalf("b's next job after a's log of job 2: %d, %v", id, err)
	}
	if err := b.SaveNaming(runner.Naming{Name: "Shared"}); err != nil {
		t.Fatal(err)
	}
	if n, err := a.Naming(); err != nil || n == nil || n.Name != "Shared" {
		t.Fatalf("a's naming: %v, %v", n, err)
	}
}

// lockHolderPID is the backend holding the one granted advisory lock on a
// job (the store's setup lock is transaction-level and gone by then).
func lockHolderPID(t *testing.T, admin *pgx.Conn) int {
	t.Helper()
	var pids []int
	rows, err := admin.Query(context.Background(), `SELECT pid FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)
	if err != nil {
		t.Fatal(err)
	}
	pids, err = pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil || len(pids) != 1 {
		t.Fatalf("advisory lock holders: %v, %v", pids, err)
	}
	return pids[0]
}

// TestPostgresStoreLockExclusiveAndNeverStale: the job lock is exclusive
// across stores, released by unlock and by the death of its holder's
// session; a job whose session died can no longer commit state.
func TestPostgresStoreLockExclusiveAndNeverStale(t *testing.T) {
	db := storeDatabase(t)
	admin := adminConn(t, db)
	ctx := context.Background()
	a := openPgStore(t, storeURL(db, ""), "locked")
	b := openPgStore(t, storeURL(db, ""), "locked")

	unlockA, err := a.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lock(ctx); err == nil || err.Error() != busy {
		t.Fatalf("second store locked a held lock: %v", err)
	}
	if _, err := a.Lock(ctx); err == nil || err.Error() != busy {
		t.Fatalf("the holder's store locked again: %v", err)
	}
	// The holder commits through its lock.
	if err := a.CommitState(json.RawMessage(`{"bookmarks":{"s":{"version":1}}}`)); err != nil {
		t.Fatalf("commit while holding the lock: %v", err)
	}
	unlockA()
	unlockA() // twice is harmless
	unlockB, err := b.Lock(ctx)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}

	if err := b.Held(); err != nil {
		t.Fatalf("Held while b holds the lock: %v", err)
	}
	// b's machine "dies": its session is terminated by the server.
	pid := lockHolderPID(t, admin)
	var ok bool
	if err := admin.QueryRow(ctx, `SELECT pg_terminate_backend($1, 10000)`, pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("terminate the holder's session: %v, %v", ok, err)
	}
	unlockA, err = a.Lock(ctx)
	if err != nil {
		t.Fatalf("lock after the holder's session died: %v", err)
	}
	defer unlockA()
	if err := a.CommitState(json.RawMessage(`{"bookmarks":{"s":{"version":2}}}`)); err != nil {
		t.Fatal(err)
	}
	if err := b.CommitState(json.RawMessage(`{"bookmarks":{"s":{"version":1}}}`)); err == nil {
		t.Fatal("a job whose lock session died committed state")
	}
	// The fence a destination asks before it commits a load.
	if err := b.Held(); err == nil || !strings.Contains(err.Error(), "job lock lost") {
		t.Fatalf("Held after b's lock session died: %v", err)
	}
	if err := a.Held(); err != nil {
		t.Fatalf("Held while a holds the lock: %v", err)
	}
	if got := stateJSON(t, a); !strings.Contains(got, `"version":2`) {
		t.Fatalf("state after the stale job's commit: %s", got)
	}
	unlockB() // after its session died: no panic, no hang
	// b's other calls still work (its store connection is not the lock's).
	if _, err := b.Jobs(); err != nil {
		t.Fatalf("b's store after its lock session died: %v", err)
	}
	if _, err := b.Lock(ctx); err == nil || err.Error() != busy {
		t.Fatalf("b locked while a holds the lock: %v", err)
	}
}

// TestPostgresStoreIsolation: integrations sharing a location see nothing of
// each other and lock independently; a #schema fragment keeps the store in
// another schema.
func TestPostgresStoreIsolation(t *testing.T) {
	db := storeDatabase(t)
	admin := adminConn(t, db)
	ctx := context.Background()
	a := openPgStore(t, storeURL(db, ""), "alpha")
	b := openPgStore(t, storeURL(db, ""), "beta")
	other := openPgStore(t, storeURL(db, "Other Schema"), "alpha")

	if err := a.CommitState(json.RawMessage(`{"bookmarks":{"s":{"version":7}}}`)); err != nil {
		t.Fatal(err)
	}
	if err := a.AppendJob(runner.JobRecord{ID: 4, Status: "succeeded"}); err != nil {
		t.Fatal(err)
	}
	w, err := a.CreateLog(5)
	if err != nil {
		t.Fatal(err)
	}
	writeLog(t, w, "alpha's line\n")
	w.Close()
	if err := a.SaveNaming(runner.Naming{Name: "Alpha"}); err != nil {
		t.Fatal(err)
	}
	if id, err := a.NextJobID(); err != nil || id != 6 {
		t.Fatalf("alpha's next job: %d, %v", id, err)
	}
	for name, s := range map[string]runner.Store{"beta": b, "alpha in another schema": other} {
		if got := stateJSON(t, s); got != parsedStateJSON(t, `{}`) {
			t.Errorf("%s's state: %s", name, got)
		}
		if jobs, err := s.Jobs(); err != nil || len(jobs) != 0 {
			t.Errorf("%s's jobs: %v, %v", name, jobs, err)
		}
		if _, err := s.ReadLog(5); err == nil {
			t.Errorf("%s reads alpha's log", name)
		}
		if n, err := s.Naming(); err != nil || n != nil {
			t.Errorf("%s's naming: %v, %v", name, n, err)
		}
		if id, err := s.NextJobID(); err != nil || id != 1 {
			t.Errorf("%s's next job: %d, %v", name, id, err)
		}
	}
	unlockA, err := a.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer unlockA()
	for name, s := range map[string]runner.Store{"beta": b, "alpha in another schema": other} {
		unlock, err := s.Lock(ctx)
		if err != nil {
			t.Fatalf("%s cannot lock while alpha runs: %v", name, err)
		}
		unlock()
	}
	var tables []string
	rows, err := admin.Query(ctx, `SELECT schemaname || '.' || tablename FROM pg_tables
		WHERE schemaname IN ('tap_postgres_runner', 'Other Schema') ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	if tables, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	want := "Other Schema.jobs Other Schema.log_lines Other Schema.logs Other Schema.naming Other Schema.slot_samples Other Schema.state " +
		"tap_postgres_runner.jobs tap_postgres_runner.log_lines tap_postgres_runner.logs tap_postgres_runner.naming tap_postgres_runner.slot_samples tap_postgres_runner.state"
	if strings.Join(tables, " ") != want {
		t.Fatalf("store tables: %v", tables)
	}
}

// TestPostgresStoreOpening: machines opening a new store at once all
// succeed; a store outlives the cancellation of the context it was opened
// with (a job stopped by SIGTERM still commits its last state); a failed
// connection says what failed without the password.
func TestPostgresStoreOpening(t *testing.T) {
	db := storeDatabase(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := runner.OpenStore(context.Background(), storeURL(db, "fresh"), fmt.Sprint("i", i))
			if err == nil {
				err = s.CommitState(json.RawMessage(`{}`))
				s.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("store %d opened at the same time: %v", i, err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	s, err := runner.OpenStore(ctx, storeURL(db, ""), "cancelled")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	unlock, err := s.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := s.CommitState(json.RawMessage(`{"bookmarks":{"s":{"version":3}}}`)); err != nil {
		t.Fatalf("commit after the context's cancellation: %v", err)
	}
	if err := s.AppendJob(runner.JobRecord{ID: 1, Status: "succeeded"}); err != nil {
		t.Fatalf("record the job after the context's cancellation: %v", err)
	}
	unlock()
	if got := stateJSON(t, s); !strings.Contains(got, `"version":3`) {
		t.Fatalf("state: %s", got)
	}

	bad := strings.Replace(storeURL(db, ""), url.QueryEscape(pg.Password), "wrong-secret-pw", 1)
	if !strings.Contains(bad, "wrong-secret-pw") {
		t.Fatalf("test URL: %s", bad)
	}
	if _, err := runner.OpenStore(context.Background(), bad, "x"); err == nil ||
		!strings.HasPrefix(err.Error(), "open store: ") || strings.Contains(err.Error(), "wrong-secret-pw") {
		t.Fatalf("open with a wrong password: %v", err)
	}
}

// TestRunnerOnPostgresStore runs jobs through the command line with
// --store postgres://…: state, history and logs land in the database (no
// directory is made), and jobs, logs and report read them back.
func TestRunnerOnPostgresStore(t *testing.T) {
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	t.Chdir(t.TempDir()) // a mistaken directory store would land here
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, `CREATE TABLE full_t (id integer PRIMARY KEY, v text); INSERT INTO full_t SELECT g, 'f' || g FROM generate_series(1, 20) g;`)
	storeDB := testpg.NewDatabase(t, pg)
	store := storeURL(storeDB, "")
	out := t.TempDir()
	integration := writeIntegration(t, "name: Aurora Prod\n"+connectionYAML(db)+fmt.Sprintf(`default_replication_method: FULL_TABLE
tables:
  - {schema: public, table: full_t}
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
	// The jobs find the store, password and all, in a file and in the
	// environment, where ps does not show it.
	storeFile := filepath.Join(t.TempDir(), "store-location")
	if err := os.WriteFile(storeFile, []byte(store+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i, how := range [][]string{{"--store-file", storeFile}, nil} {
		if how == nil {
			t.Setenv("TAP_POSTGRES_STORE", store)
		}
		var stdout, stderr bytes.Buffer
		if code := runner.Main(ctx, append([]string{"run", "--integration", integration}, how...), &stdout, &stderr, nil); code != 0 {
			t.Fatalf("job %d (store from %v): exit %d\n%s", i+1, how, code, stderr.String())
		}
	}
	var both bytes.Buffer
	if code := runner.Main(ctx, []string{"jobs", "--integration", integration, "--store", store, "--store-file", storeFile}, io.Discard, &both, nil); code != 2 {
		t.Fatalf("--store and --store-file together: exit %d, want 2\n%s", code, both.String())
	}
	if n := recordCount(readLines(t, filepath.Join(out, "full_t.jsonl"))); n != 40 {
		t.Fatalf("full_t after two jobs: %d records", n)
	}
	if entries, _ := os.ReadDir("."); len(entries) != 0 {
		t.Fatalf("the store went to a directory: %v", entries)
	}

	admin := adminConn(t, storeDB)
	var version int64
	var jobs, lines int
	if err := admin.QueryRow(ctx, `SELECT (state->'bookmarks'->$1->>'version')::bigint FROM tap_postgres_runner.state WHERE integration = 'aurora_prod'`,
		db+"-public-full_t").Scan(&version); err != nil || version == 0 {
		t.Fatalf("committed state in the database: version %d, %v", version, err)
	}
	if err := admin.QueryRow(ctx, `SELECT (SELECT count(*) FROM tap_postgres_runner.jobs WHERE integration = 'aurora_prod'),
		(SELECT count(*) FROM tap_postgres_runner.log_lines WHERE integration = 'aurora_prod' AND job_id = 2)`).Scan(&jobs, &lines); err != nil || jobs != 2 || lines < 3 {
		t.Fatalf("jobs and log lines in the database: %d, %d, %v", jobs, lines, err)
	}
	var naming string
	if err := admin.QueryRow(ctx, `SELECT naming->>'name' FROM tap_postgres_runner.naming WHERE integration = 'aurora_prod'`).Scan(&naming); err != nil || naming != "Aurora Prod" {
		t.Fatalf("naming in the database: %q, %v", naming, err)
	}

	code, stdout, stderr := run("jobs")
	if code != 0 || strings.Count(stdout, "succeeded") != 2 || !regexp.MustCompile(`(?m)^1 .*\n2 `).MatchString(stdout) {
		t.Fatalf("jobs: exit %d\n%s%s", code, stdout, stderr)
	}
	line := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}Z (main|tap|target) - (INFO|WARNING|ERROR|CRITICAL) `)
	for _, id := range []string{"1", "2"} {
		code, logText, stderr := run("logs", "--job", id)
		if code != 0 || !strings.HasSuffix(logText, "\n") {
			t.Fatalf("logs --job %s: exit %d\n%s%s", id, code, logText, stderr)
		}
		for _, l := range strings.Split(strings.TrimSuffix(logText, "\n"), "\n") {
			if !line.MatchString(l) {
				t.Fatalf("log of job %s: line not in Stitch's format: %q", id, l)
			}
		}
		if !strings.Contains(logText, "main - INFO job "+id+" of integration \"Aurora Prod\" started") ||
			!strings.Contains(logText, "target - INFO State update: adding bookmarks."+db+"-public-full_t.version = ") {
			t.Fatalf("log of job %s:\n%s", id, logText)
		}
	}
	if code, last, _ := run("logs"); code != 0 || !strings.Contains(last, "job 2 of integration") {
		t.Fatalf("logs (the last job's):\n%s", last)
	}
	code, reportJSON, stderr := run("report", "--json")
	var parsed struct {
		Loads   []map[string]any `json:"loads"`
		Last24h map[string]int64 `json:"rows_last_24h"`
	}
	if err := json.Unmarshal([]byte(reportJSON), &parsed); err != nil || code != 0 {
		t.Fatalf("report --json: %v\n%s%s", err, reportJSON, stderr)
	}
	if parsed.Last24h["full_t"] != 40 || len(parsed.Loads) != 2 || parsed.Loads[0]["rows_sent"] != 20.0 || parsed.Loads[1]["rows_sent"] != 20.0 {
		t.Fatalf("report: %s", reportJSON)
	}
	if code, report, _ := run("report"); code != 0 || !strings.Contains(report, "Bookmark Unavailable") {
		t.Fatalf("report:\n%s", report)
	}
}

// TestPgStoreOfAnEarlierVersion: a store made before slot_samples existed,
// used by a role that may read and write its tables but create nothing,
// still opens and runs jobs' bookkeeping; slot history is off, saying why
// and how to turn it on. With the table there, the same role keeps it.
func TestPgStoreOfAnEarlierVersion(t *testing.T) {
	db := storeDatabase(t)
	openPgStore(t, storeURL(db, ""), "earlier")
	role := "store_user_" + db[len(db)-8:]
	testpg.Exec(t, pg, db, fmt.Sprintf(`DROP TABLE tap_postgres_runner.slot_samples;
		CREATE ROLE %[1]s LOGIN PASSWORD 'store-user-secret';
		GRANT USAGE ON SCHEMA tap_postgres_runner TO %[1]s;
		GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA tap_postgres_runner TO %[1]s;
		REVOKE CREATE ON DATABASE %[2]s FROM PUBLIC;`, role, pgx.Identifier{db}.Sanitize()))
	t.Cleanup(func() {
		_ = pg.Exec(context.Background(), db, fmt.Sprintf(`DROP OWNED BY %[1]s; DROP ROLE %[1]s`, role))
	})
	u, err := url.Parse(storeURL(db, ""))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, "store-user-secret")
	store := openPgStore(t, u.String(), "earlier")
	if err := store.AppendJob(runner.JobRecord{ID: 1, Started: time.Now(), Status: "succeeded"}); err != nil {
		t.Fatalf("a job's record in a store without slot_samples: %v", err)
	}
	sample := runner.SlotSample{At: time.Now()}
	sample.Database, sample.Slot, sample.WALHeld = "shop", "s", 100
	err = store.AppendSlotSamples([]runner.SlotSample{sample})
	if err == nil || !strings.Contains(err.Error(), "slot history is off") || !strings.Contains(err.Error(), "CREATE TABLE") {
		t.Fatalf("slot samples without their table: %v", err)
	}
	if _, err := store.SlotSamples(time.Time{}); err == nil || !strings.Contains(err.Error(), "slot history is off") {
		t.Fatalf("slot history read without its table: %v", err)
	}

	// The owner adds the table, as the error says; the role then keeps
	// samples without creating anything.
	testpg.Exec(t, pg, db, fmt.Sprintf(`%s; GRANT SELECT, INSERT, DELETE ON tap_postgres_runner.slot_samples TO %s`,
		strings.TrimSuffix(strings.SplitN(err.Error(), "as the store's owner: ", 2)[1], ";"), role))
	store = openPgStore(t, u.String(), "earlier")
	if err := store.AppendSlotSamples([]runner.SlotSample{sample}); err != nil {
		t.Fatal(err)
	}
	if got, err := store.SlotSamples(time.Time{}); err != nil || len(got) != 1 || got[0].WALHeld != 100 {
		t.Fatalf("slot history after the table was added: %v %+v", err, got)
	}
}
