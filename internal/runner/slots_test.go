package runner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tap-postgres/tap-postgres/internal/engine"
	"github.com/tap-postgres/tap-postgres/internal/runner"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

// TestSlotSamplesKeepAWeek: both stores give back the samples appended,
// oldest first, and drop those a week older than the newest appended: the
// PostgreSQL store at once, the directory store when its first sample is a
// day past that (it rewrites its file then, never at every append).
// Appends from several stores at once, one of them rewriting, lose
// nothing; the directory store's files are private and never followed
// through a link.
func TestSlotSamplesKeepAWeek(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	safe := int64(1 << 30)
	sample := func(at time.Time, slot string, held int64) runner.SlotSample {
		return runner.SlotSample{At: at, SlotHealth: engine.SlotHealth{Database: "shop", Slot: slot, Plugin: "pgoutput", Active: held%2 == 0,
			WALStatus: "reserved", SafeWALSize: &safe, WALHeld: held, Lag: held / 2}}
	}
	dirRoot := t.TempDir()
	pgLocation := storeURL(storeDatabase(t), "")
	for _, kind := range []struct{ name, location string }{{"directory", dirRoot}, {"postgres", pgLocation}} {
		t.Run(kind.name, func(t *testing.T) {
			open := func() runner.Store {
				t.Helper()
				store, err := runner.OpenStore(context.Background(), kind.location, "shop")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { store.Close() })
				return store
			}
			store := open()
			appendSamples := func(samples ...runner.SlotSample) {
				t.Helper()
				if err := store.AppendSlotSamples(samples); err != nil {
					t.Fatal(err)
				}
			}
			want := func(since time.Time, expected ...runner.SlotSample) {
				t.Helper()
				got, err := store.SlotSamples(since)
				if err != nil {
					t.Fatal(err)
				}
				gotJSON, _ := json.Marshal(got)
				wantJSON, _ := json.Marshal(expected)
				if !bytes.Equal(gotJSON, wantJSON) {
					t.Fatalf("samples since %s:\n got %s\nwant %s", since, gotJSON, wantJSON)
				}
			}
			fileLines := func() int {
				t.Helper()
				data, err := os.ReadFile(filepath.Join(dirRoot, "shop", "slots.jsonl"))
				if err != nil {
					t.Fatal(err)
				}
				return strings.Count(string(data), "\n")
			}

			want(time.Time{})
			a, b := sample(t0, "a", 10), sample(t0, "b", 11)
			appendSamples(a, b)
			want(time.Time{}, a, b)

			// A week and an hour later: a and b are past the week.
			c := sample(t0.Add(7*day+time.Hour), "a", 12)
			appendSamples(c)
			want(t0.Add(time.Minute), c)
			if kind.name == "directory" {
				if n := fileLines(); n != 3 {
					t.Fatalf("slots.jsonl has %d lines, want 3: rewritten before its first sample was a day past the week", n)
				}
				want(time.Time{}, a, b, c)
			} else {
				want(time.Time{}, c)
			}

			// A day later still, the directory store rewrites; a sample of
			// an earlier time appended after a later one reads in order, and
			// one already past the week in a batch is not kept.
			d := sample(t0.Add(8*day+2*time.Hour), "a", 13)
			e := sample(t0.Add(8*day+time.Hour), "b", 14)
			appendSamples(d, sample(t0.Add(-time.Hour), "a", 15))
			appendSamples(e)
			want(time.Time{}, c, e, d)
			if kind.name == "directory" {
				if n := fileLines(); n != 3 {
					t.Fatalf("slots.jsonl has %d lines after its rewrite, want 3", n)
				}
			}

			// Stores appending at once, the first of them rewriting (an
			// ancient sample is first again after a fresh start).
			f := sample(t0.Add(20*day), "a", 16)
			appendSamples(sample(t0.Add(12*day), "a", 17))
			var wg sync.WaitGroup
			var concurrent []runner.SlotSample
			for i := range 8 {
				s := sample(t0.Add(20*day+time.Duration(i+1)*time.Second), fmt.Sprintf("c%d", i), int64(100+i))
				concurrent = append(concurrent, s)
				other := open()
				wg.Go(func() {
					for range 5 {
						if err := other.AppendSlotSamples([]runner.SlotSample{f, s}); err != nil {
							t.Error(err)
						}
					}
				})
			}
			wg.Wait()
			got, err := store.SlotSamples(t0.Add(20 * day))
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]int{}
			for _, s := range got {
				seen[s.Slot]++
			}
			for _, s := range concurrent {
				if seen[s.Slot] == 0 {
					t.Errorf("a sample appended concurrently is lost: %+v (have %v)", s, seen)
				}
			}
			if all, err := store.SlotSamples(time.Time{}); err != nil || len(all) == 0 || all[0].At.Before(t0.Add(13*day)) {
				t.Errorf("samples past the week are kept: %v %v", all, err)
			}
		})
	}

	dir := filepath.Join(dirRoot, "shop")
	for _, name := range []string{"slots.jsonl", "slots.lock"} {
		if info, err := os.Stat(filepath.Join(dir, name)); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", name, info, err)
		}
	}
	store := openLocalStore(t, dirRoot, "shop")
	const content = "root only\n"
	outside := outsideFile(t, content)
	for _, name := range []string{"slots.jsonl", "slots.lock"} {
		link := filepath.Join(dir, name)
		plant(t, outside, link)
		if err := store.AppendSlotSamples([]runner.SlotSample{sample(t0.Add(30*day), "a", 1)}); err == nil || !strings.Contains(err.Error(), link+" is a symbolic link") {
			t.Errorf("samples appended through a link at %s: %v", name, err)
		}
		os.Remove(link)
	}
	plant(t, outside, filepath.Join(dir, "slots.jsonl"))
	if _, err := store.SlotSamples(time.Time{}); err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
		t.Errorf("samples read through a link: %v", err)
	}
	assertUnchanged(t, outside, content)
}

// TestSlotSamplesFollowTheSlot: a LOG_BASED job records its slot as a
// sample (WAL held, lag behind the state it was given); serve's sampler
// then sees the WAL the slot holds grow with writes to the source, its lag
// measured from the committed state, and /metrics shows the newest sample,
// which is what pg_replication_slots says, and when it was taken. The job
// record keeps the slot's streams, which the sampler measures the lag
// with; no sample stored repeats them, the job's or the sampler's. A slot
// dropped is sampled as missing; a sampler that cannot connect says so
// once.
func TestSlotSamplesFollowTheSlot(t *testing.T) {
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	db := testpg.NewDatabase(t, pg)
	slot := "s_" + db[len(db)-8:]
	testpg.Exec(t, pg, db, `CREATE TABLE watched (id integer PRIMARY KEY, v text)`)
	newSlot(t, db, slot)
	testpg.Exec(t, pg, db, `INSERT INTO watched SELECT g, 'v' FROM generate_series(1, 100) g`)
	storeDir := t.TempDir()
	body := "name: watched\n" + connectionYAML(db) + fmt.Sprintf(`  slot_name: %s
default_replication_method: LOG_BASED
tables: [{schema: public, table: watched}]
schedule: {frequency: 1h}
destination: {type: jsonl, path: %s}
`, slot, filepath.Join(t.TempDir(), "out"))
	integration := writeIntegration(t, body)
	if code, out := runMain(t, "run", "--integration", integration, "--store", storeDir); code != 0 {
		t.Fatalf("job: %s", out)
	}
	store := openLocalStore(t, storeDir, "watched")
	jobs, err := store.Jobs()
	if err != nil || len(jobs) != 1 || len(jobs[0].Slots) != 1 {
		t.Fatalf("jobs: %+v %v", jobs, err)
	}
	samples, err := store.SlotSamples(time.Time{})
	if err != nil || len(samples) != 1 {
		t.Fatalf("samples after the job: %+v %v", samples, err)
	}
	atJob := samples[0]
	stream := db + "-public-watched"
	if !atJob.At.Equal(jobs[0].Started) || atJob.Database != db || atJob.Slot != slot || atJob.Plugin != "wal2json" || atJob.Active ||
		atJob.WALStatus != "reserved" || atJob.Streams != nil {
		t.Errorf("the job's sample: %+v (job started %s)", atJob, jobs[0].Started)
	}
	if streams := jobs[0].Slots[0].Streams; len(streams) != 1 || streams[0] != stream {
		t.Errorf("the job record's slot has streams %q, want [%s]", streams, stream)
	}
	noStreamsStored := func(want int) {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(storeDir, "watched", "slots.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(data), "\n"); n < want || strings.Contains(string(data), `"streams"`) || strings.Contains(string(data), stream) {
			t.Errorf("slots.jsonl (%d lines, want %d or more) repeats the streams:\n%s", n, want, data)
		}
	}
	noStreamsStored(1)
	// Nothing was committed before the job: the lag runs from the slot's
	// confirmed position, behind the rows inserted after it was created.
	if atJob.WALHeld <= 0 || atJob.Lag <= 0 || atJob.Lag > atJob.WALHeld {
		t.Errorf("the job's sample holds %d bytes with a lag of %d", atJob.WALHeld, atJob.Lag)
	}
	jobSlot := jobs[0].Slots[0]
	jobSlot.Streams = nil
	if got, _ := json.Marshal(atJob.SlotHealth); string(got) != string(mustJSON(t, jobSlot)) {
		t.Errorf("the sample %s is not the job's slot %s", got, mustJSON(t, jobSlot))
	}

	testpg.Exec(t, pg, db, `INSERT INTO watched SELECT g, repeat('x', 1000) FROM generate_series(101, 2100) g`)
	state, err := store.State()
	if err != nil || state.Bookmarks[stream] == nil || state.Bookmarks[stream].LSN == 0 {
		t.Fatalf("committed state: %+v %v", state, err)
	}
	committed := pglogrepl.LSN(state.Bookmarks[stream].LSN).String()
	conn, err := pgx.Connect(t.Context(), pg.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// What the sample must match: the WAL held and the lag behind the
	// committed state, read before and after it was taken.
	type slotRow struct {
		held, lag int64
		safe      *int64
	}
	readSlot := func() slotRow {
		t.Helper()
		var r slotRow
		if err := conn.QueryRow(t.Context(), `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint,
				pg_wal_lsn_diff(pg_current_wal_lsn(), $2::pg_lsn)::bigint, safe_wal_size
			FROM pg_replication_slots WHERE slot_name = $1`, slot, committed).Scan(&r.held, &r.lag, &r.safe); err != nil {
			t.Fatal(err)
		}
		return r
	}
	in, err := runner.LoadIntegration(integration)
	if err != nil {
		t.Fatal(err)
	}
	// sample runs the sampler until the store has more than n samples.
	sample := func(in *runner.Integration, n int, log *slog.Logger) runner.SlotSample {
		t.Helper()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			runner.SampleSlots(ctx, []*runner.Integration{in}, storeDir, 20*time.Millisecond, time.Now, log)
		}()
		defer func() {
			cancel()
			<-done
		}()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if samples, err = store.SlotSamples(time.Time{}); err != nil {
				t.Fatal(err)
			}
			if len(samples) > n {
				return samples[len(samples)-1]
			}
		}
		t.Fatalf("no new sample within 10 s: %+v", samples)
		return runner.SlotSample{}
	}
	before := readSlot()
	last := sample(in, 1, slog.New(slog.DiscardHandler))
	after := readSlot()
	if last.WALHeld < atJob.WALHeld+2_000_000 || last.WALHeld < before.held || last.WALHeld > after.held {
		t.Errorf("sampled WAL held %d: want more than the job's %d by the 2 MB written, and between %d and %d as pg_replication_slots says",
			last.WALHeld, atJob.WALHeld, before.held, after.held)
	}
	if last.Lag < 2_000_000 || last.Lag < before.lag || last.Lag > after.lag || last.Lag >= last.WALHeld {
		t.Errorf("sampled lag %d: want the 2 MB written since the committed lsn %s, between %d and %d", last.Lag, committed, before.lag, after.lag)
	}
	if (last.SafeWALSize == nil) != (after.safe == nil) || last.Active || last.WALStatus != "reserved" || last.Plugin != "wal2json" || last.Streams != nil {
		t.Errorf("sample %+v, pg_replication_slots safe_wal_size %v", last, after.safe)
	}
	noStreamsStored(2)

	srv := httptest.NewServer(runner.MetricsHandler([]*runner.Integration{in}, storeDir, time.Now))
	defer srv.Close()
	families := scrape(t, srv.URL)
	wal := families["tap_postgres_slot_wal_held_bytes"]
	if wal == nil || len(wal.Metric) != 1 || label(wal.Metric[0], "slot") != slot || label(wal.Metric[0], "database") != db ||
		label(wal.Metric[0], "wal_status") != "reserved" || label(wal.Metric[0], "integration") != "watched" {
		t.Fatalf("tap_postgres_slot_wal_held_bytes: %v", wal)
	}
	if got := wal.Metric[0].GetGauge().GetValue(); got != float64(last.WALHeld) || got < float64(before.held) || got > float64(after.held) {
		t.Errorf("tap_postgres_slot_wal_held_bytes = %v, want the newest sample's %d, which pg_replication_slots put between %d and %d",
			got, last.WALHeld, before.held, after.held)
	}
	if got := value(families, "tap_postgres_slot_lag_bytes", "slot", slot); got != float64(last.Lag) {
		t.Errorf("tap_postgres_slot_lag_bytes = %v, want %d", got, last.Lag)
	}
	if active := families["tap_postgres_slot_active"]; active == nil || len(active.Metric) != 1 || active.Metric[0].GetGauge().GetValue() != 0 {
		t.Errorf("tap_postgres_slot_active: %v", active)
	}
	if got := value(families, "tap_postgres_slot_sampled_timestamp_seconds", "slot", slot); got != float64(last.At.Unix()) {
		t.Errorf("tap_postgres_slot_sampled_timestamp_seconds = %v, want the newest sample's %d (%s)", got, last.At.Unix(), last.At)
	}

	// A source that refuses the sampler is one WARNING, however often
	// it refuses.
	wrong := writeIntegration(t, strings.Replace(body, "${RUNNER_TEST_PASSWORD}", "wrong", 1))
	refused, err := runner.LoadIntegration(wrong)
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	// Cancelled, as serve's context is, not timed out: a dial racing a
	// deadline fails with a timeout of its own before the context says so.
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(300*time.Millisecond, cancel)
	runner.SampleSlots(ctx, []*runner.Integration{refused}, storeDir, 20*time.Millisecond, time.Now, slog.New(slog.NewTextHandler(&logged, nil)))
	cancel()
	if n := strings.Count(logged.String(), "level=WARN"); n != 1 || !strings.Contains(logged.String(), "slot health not sampled") || !strings.Contains(logged.String(), "password authentication failed") {
		t.Errorf("%d warnings for a sampler refused repeatedly:\n%s", n, logged.String())
	}

	testpg.Exec(t, pg, db, fmt.Sprintf("SELECT pg_drop_replication_slot('%s')", slot))
	if gone := sample(in, len(samples), slog.New(slog.DiscardHandler)); gone.WALStatus != engine.SlotMissing || gone.Slot != slot || gone.WALHeld != 0 || gone.Streams != nil {
		t.Errorf("a dropped slot sampled as %+v", gone)
	}
	noStreamsStored(3)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// fakeSlotIntegration is an integration of two LOG_BASED databases on
// host:port whose store at root has one job, which recorded their slots.
func fakeSlotIntegration(t *testing.T, root, host string, port int, started time.Time) *runner.Integration {
	t.Helper()
	path := writeIntegration(t, fmt.Sprintf(`name: fake slots
connection:
  host: %s
  port: %d
  user: tap
  password: not-asked
  dbname: one
  sslmode: disable
  connect_timeout: 40
default_replication_method: LOG_BASED
tables: [{schema: public, table: watched}]
destination: {type: jsonl, path: %s}
`, host, port, filepath.Join(t.TempDir(), "out")))
	in, err := runner.LoadIntegration(path)
	if err != nil {
		t.Fatal(err)
	}
	store, err := runner.OpenStore(context.Background(), root, in.StoreKey())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	job := runner.JobRecord{ID: 1, Started: started, Finished: started.Add(time.Minute), Status: "succeeded", Slots: []engine.SlotHealth{
		{Database: "one", Slot: "slot_one", Plugin: "pgoutput", WALStatus: "reserved", WALHeld: 100, Lag: 10, Streams: []string{"one-public-watched"}},
		{Database: "two", Slot: "slot_two", Plugin: "pgoutput", WALStatus: "reserved", WALHeld: 200, Lag: 20, Streams: []string{"two-public-watched"}},
	}}
	if err := store.AppendJob(job); err != nil {
		t.Fatal(err)
	}
	return in
}

// TestSlotMetricsPerSlot: /metrics shows each slot of the last job at its
// newest sample, however old (within the week kept), or as the last job
// found it when no sample is newer, each slot on its own, with the time of
// the value shown: a database that cannot be sampled for hours keeps its
// slot's series while the other's move on. A slot the last job did not
// stream from is not shown.
func TestSlotMetricsPerSlot(t *testing.T) {
	root := t.TempDir()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	in := fakeSlotIntegration(t, root, "127.0.0.1", 5432, t0)
	store := openLocalStore(t, root, in.StoreKey())
	sample := func(at time.Time, db, slot string, held int64) runner.SlotSample {
		return runner.SlotSample{At: at, SlotHealth: engine.SlotHealth{Database: db, Slot: slot, Plugin: "pgoutput", WALStatus: "reserved", WALHeld: held, Lag: held / 10}}
	}
	appendSamples := func(samples ...runner.SlotSample) {
		t.Helper()
		if err := store.AppendSlotSamples(samples); err != nil {
			t.Fatal(err)
		}
	}
	type shown struct {
		held, lag float64
		at        time.Time
	}
	check := func(now time.Time, want map[string]shown) {
		t.Helper()
		srv := httptest.NewServer(runner.MetricsHandler([]*runner.Integration{in}, root, func() time.Time { return now }))
		defer srv.Close()
		families := scrape(t, srv.URL)
		for _, name := range []string{"tap_postgres_slot_wal_held_bytes", "tap_postgres_slot_lag_bytes", "tap_postgres_slot_active", "tap_postgres_slot_sampled_timestamp_seconds"} {
			if n := len(families[name].GetMetric()); n != len(want) {
				t.Errorf("at %s: %d series of %s, want %d: %v", now, n, name, len(want), families[name])
			}
		}
		for slot, w := range want {
			got := shown{value(families, "tap_postgres_slot_wal_held_bytes", "slot", slot), value(families, "tap_postgres_slot_lag_bytes", "slot", slot),
				time.Unix(int64(value(families, "tap_postgres_slot_sampled_timestamp_seconds", "slot", slot)), 0).UTC()}
			if got != w {
				t.Errorf("at %s, slot %s shows WAL held %v, lag %v, read at %s; want %v, %v, %s", now, slot, got.held, got.lag, got.at, w.held, w.lag, w.at)
			}
		}
		for _, m := range families["tap_postgres_slot_sampled_timestamp_seconds"].GetMetric() {
			if want := map[string]string{"slot_one": "one", "slot_two": "two"}[label(m, "slot")]; label(m, "database") != want || label(m, "integration") != in.Name {
				t.Errorf("tap_postgres_slot_sampled_timestamp_seconds labels: %v", m.GetLabel())
			}
		}
	}

	// Before any sample: the job's view.
	check(t0.Add(time.Hour), map[string]shown{"slot_one": {100, 10, t0}, "slot_two": {200, 20, t0}})
	// The job's own samples, then database two unreachable: only slot_one
	// sampled since, slot_two's series stays at its last value for hours.
	appendSamples(sample(t0, "one", "slot_one", 100), sample(t0, "two", "slot_two", 200))
	for m := 1; m <= 180; m += 60 {
		appendSamples(sample(t0.Add(time.Duration(m)*time.Minute), "one", "slot_one", int64(1000+m)))
	}
	// A slot of an earlier configuration, sampled lately, is not the
	// last job's.
	appendSamples(sample(t0.Add(3*time.Hour), "three", "slot_three", 5))
	now := t0.Add(3*time.Hour + 30*time.Second)
	check(now, map[string]shown{"slot_one": {1121, 112, t0.Add(121 * time.Minute)}, "slot_two": {200, 20, t0}})
	// Two days on, two's last sample is still shown, at its time.
	appendSamples(sample(t0.Add(20*time.Hour), "two", "slot_two", 250))
	check(t0.Add(48*time.Hour), map[string]shown{"slot_one": {1121, 112, t0.Add(121 * time.Minute)}, "slot_two": {250, 25, t0.Add(20 * time.Hour)}})

	// A later job whose samples were not recorded (the history refused
	// them) is newer than the samples before it; a sample after it wins.
	t1 := t0.Add(50 * time.Hour)
	if err := store.AppendJob(runner.JobRecord{ID: 2, Started: t1, Finished: t1.Add(time.Minute), Status: "succeeded", Slots: []engine.SlotHealth{
		{Database: "one", Slot: "slot_one", WALHeld: 300, Lag: 30, WALStatus: "reserved"},
		{Database: "two", Slot: "slot_two", WALHeld: 400, Lag: 40, WALStatus: "reserved"},
	}}); err != nil {
		t.Fatal(err)
	}
	appendSamples(sample(t1.Add(time.Minute), "two", "slot_two", 410))
	check(t1.Add(time.Hour), map[string]shown{"slot_one": {300, 30, t1}, "slot_two": {410, 41, t1.Add(time.Minute)}})
}

// TestSlotSamplesLockWaitIsBounded: an append to the directory store's
// slot history waits for slots.lock, held by another writer, at most
// 10 s, then fails naming the file; one whose holder lets go meanwhile
// goes through. A job appends its samples holding its job lock: a stuck
// holder must not hold up the job's end for good.
func TestSlotSamplesLockWaitIsBounded(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	store := openLocalStore(t, root, "locked")
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	sample := func(slot string) []runner.SlotSample {
		return []runner.SlotSample{{At: at, SlotHealth: engine.SlotHealth{Database: "d", Slot: slot, WALStatus: "reserved"}}}
	}
	if err := store.AppendSlotSamples(sample("first")); err != nil {
		t.Fatal(err)
	}
	lockPath := filepath.Join(root, "locked", "slots.lock")
	hold := func() (release func()) {
		t.Helper()
		f, err := os.OpenFile(lockPath, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			t.Fatal(err)
		}
		return func() { f.Close() }
	}
	appendAsync := func(slot string) <-chan error {
		done := make(chan error, 1)
		go func() { done <- store.AppendSlotSamples(sample(slot)) }()
		return done
	}

	release := hold()
	start := time.Now()
	select {
	case err := <-appendAsync("refused"):
		waited := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), lockPath) {
			t.Errorf("append with slots.lock held: %v, want an error naming %s", err, lockPath)
		}
		if waited < 9*time.Second {
			t.Errorf("append gave up after %s, want about 10 s", waited)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("append still waiting for slots.lock after 15 s")
	}

	start = time.Now()
	done := appendAsync("waited")
	time.Sleep(300 * time.Millisecond)
	release()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("append after the lock was let go: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("append still waiting for slots.lock, let go 15 s ago")
	}
	samples, err := store.SlotSamples(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var slots []string
	for _, s := range samples {
		slots = append(slots, s.Slot)
	}
	if strings.Join(slots, " ") != "first waited" {
		t.Errorf("samples kept: %q, want first and waited", slots)
	}
}

// TestSlotSamplingOutlastsTheStoreTimeout: the sampler reads a source whose
// first database answers only after 11 s — past the 10 s a store is given
// to open, within the minute the reading of a source is — and reports
// what both databases said, not a timeout: reading the source is bounded
// by slotSampleTimeout alone.
func TestSlotSamplingOutlastsTheStoreTimeout(t *testing.T) {
	t.Parallel()
	const late = 11 * time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	stop := make(chan struct{})
	t.Cleanup(func() {
		close(stop)
		l.Close()
		conns.Wait()
	})
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			conns.Go(func() {
				defer conn.Close()
				backend := pgproto3.NewBackend(conn, conn)
				msg, err := backend.ReceiveStartupMessage()
				if err != nil {
					return
				}
				message := "the fake server answers at once"
				if startup, ok := msg.(*pgproto3.StartupMessage); ok && startup.Parameters["database"] == "one" {
					select {
					case <-stop:
						return
					case <-time.After(late):
					}
					message = "the fake server answers late"
				}
				backend.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "57P03", Message: message})
				_ = backend.Flush()
			})
		}
	}()
	root := t.TempDir()
	in := fakeSlotIntegration(t, root, "127.0.0.1", l.Addr().(*net.TCPAddr).Port, time.Now().Add(-time.Hour))

	var logged syncBuffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		runner.SampleSlots(ctx, []*runner.Integration{in}, root, time.Hour, time.Now, slog.New(slog.NewTextHandler(&logged, nil)))
	}()
	for time.Since(start) < late+10*time.Second && !strings.Contains(logged.String(), "level=WARN") {
		time.Sleep(50 * time.Millisecond)
	}
	waited := time.Since(start)
	cancel()
	<-done
	if out := logged.String(); !strings.Contains(out, "slot health not sampled") || !strings.Contains(out, "the fake server answers late") ||
		!strings.Contains(out, "the fake server answers at once") || waited < late {
		t.Errorf("after %s, the sampler of a source answering after %s logged:\n%s", waited.Round(time.Millisecond), late, out)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
