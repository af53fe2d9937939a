package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tap-postgres/tap-postgres/internal/cli"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

// --- helpers of this file (prefixed lc: log crash) ---

// lcBuildTap builds cmd/tap-postgres into a temp dir and returns its path.
func lcBuildTap(t *testing.T) string {
	t.Helper()
	root := ""
	if out, err := exec.Command("go", "env", "GOMOD").Output(); err == nil {
		if mod := strings.TrimSpace(string(out)); mod != "" && mod != os.DevNull {
			root = filepath.Dir(mod)
		}
	}
	if root == "" {
		dir, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				root = dir
				break
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				t.Fatal("module root (go.mod) not found")
			}
			dir = parent
		}
	}
	bin := filepath.Join(t.TempDir(), "tap-postgres")
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/tap-postgres")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built %s in %v", bin, time.Since(start).Round(time.Millisecond))
	return bin
}

// lcSeed is the seed of a randomized test: LOGCRASH_SEED when set (to
// reproduce a failure), else the clock. It is logged.
func lcSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("LOGCRASH_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("LOGCRASH_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (rerun with LOGCRASH_SEED=%d)", seed, seed)
	return seed
}

// lcChange is one committed row change: an insert or update leaving val,
// or a delete.
type lcChange struct {
	id      int
	val     string
	deleted bool
	// before is a WAL position read after the transaction's statements:
	// its commit record lies past it.
	before uint64
}

func (c lcChange) key() string {
	if c.deleted {
		return fmt.Sprintf("d:%d", c.id)
	}
	return fmt.Sprintf("u:%d:%s", c.id, c.val)
}

// lcRecordKey is the lcChange key a log-based record stands for.
func lcRecordKey(r map[string]any) string {
	if r["_sdc_deleted_at"] != nil {
		return fmt.Sprintf("d:%v", r["id"])
	}
	return fmt.Sprintf("u:%v:%v", r["id"], r["val"])
}

// lcWriter commits random transactions (1–5 statements: inserts of new ids,
// updates of random live ids to a unique value, deletes of random live ids;
// one in 40 also bulk-inserts 300 rows)
// into table (id integer PRIMARY KEY, val text) until stopped, and records
// every committed change. Its fields are read only after stop.
type lcWriter struct {
	db, table string
	prefix    string
	pause     time.Duration
	rnd       *rand.Rand
	nextID    int
	counter   int
	live      []int
	pos       map[int]int // index of each live id in live
	inserted  []int
	changes   []lcChange
	txs       int
	err       error
	stop      chan struct{}
	done      chan struct{}
	stopOnce  sync.Once
}

// lcStartWriter starts a writer over a table whose live ids are live; new ids
// start at nextID (above every live id at least), values with prefix.
func lcStartWriter(t *testing.T, db, table, prefix string, live []int, nextID int, seed uint64, pause time.Duration) *lcWriter {
	t.Helper()
	w := &lcWriter{db: db, table: table, prefix: prefix, pause: pause, rnd: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)),
		nextID: nextID, live: slices.Clone(live), stop: make(chan struct{}), done: make(chan struct{})}
	w.pos = make(map[int]int, len(live))
	for i, id := range live {
		w.nextID = max(w.nextID, id+1)
		w.pos[id] = i
	}
	conn, err := pgx.Connect(context.Background(), pg.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	go w.run(conn)
	t.Cleanup(func() { w.halt() })
	return w
}

func (w *lcWriter) halt() {
	w.stopOnce.Do(func() { close(w.stop) })
	<-w.done
}

// Stop stops the writer and fails the test if a transaction failed.
func (w *lcWriter) Stop(t *testing.T) {
	t.Helper()
	w.halt()
	if w.err != nil {
		t.Fatalf("writer: %v", w.err)
	}
	t.Logf("writer: %d transactions, %d changes, %d ids inserted, %d live", w.txs, len(w.changes), len(w.inserted), len(w.live))
}

func (w *lcWriter) run(conn *pgx.Conn) {
	defer close(w.done)
	ctx := context.Background()
	defer conn.Close(ctx)
	table := pgx.Identifier{w.table}.Sanitize()
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		next, counter := w.nextID, w.counter
		var txChanges []lcChange
		var txInserted []int
		txDeleted := map[int]bool{}
		// pick is a random id live in the transaction (ids inserted by it
		// aside).
		pick := func() int {
			for {
				if id := w.live[w.rnd.IntN(len(w.live))]; !txDeleted[id] {
					return id
				}
			}
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			w.err = err
			return
		}
		n := 1 + w.rnd.IntN(5)
		if w.rnd.IntN(40) == 0 {
			// Now and then a bulk insert: a transaction of hundreds of
			// changes, which STATEs every 1000 records can cut through.
			const rows = 300
			_, err = tx.Exec(ctx, "INSERT INTO "+table+" (id, val) SELECT g, $1 || ($2::int + g - $3::int) FROM generate_series($3::int, $3::int + $4::int - 1) g",
				w.prefix, counter+1, next, rows)
			for g := 0; g < rows; g++ {
				counter++
				txChanges = append(txChanges, lcChange{id: next, val: fmt.Sprintf("%s%d", w.prefix, counter)})
				txInserted = append(txInserted, next)
				next++
			}
		}
		for k := 0; k < n && err == nil; k++ {
			counter++
			val := fmt.Sprintf("%s%d", w.prefix, counter)
			op := w.rnd.IntN(10)
			switch {
			case op < 4 || len(w.live)-len(txDeleted) < 20:
				_, err = tx.Exec(ctx, "INSERT INTO "+table+" (id, val) VALUES ($1, $2)", next, val)
				txChanges = append(txChanges, lcChange{id: next, val: val})
				txInserted = append(txInserted, next)
				next++
			case op < 8:
				id := pick()
				var tag pgconn.CommandTag
				tag, err = tx.Exec(ctx, "UPDATE "+table+" SET val = $1 WHERE id = $2", val, id)
				if err == nil && tag.RowsAffected() != 1 {
					err = fmt.Errorf("update of id %d hit %d rows", id, tag.RowsAffected())
				}
				txChanges = append(txChanges, lcChange{id: id, val: val})
			default:
				id := pick()
				var tag pgconn.CommandTag
				tag, err = tx.Exec(ctx, "DELETE FROM "+table+" WHERE id = $1", id)
				if err == nil && tag.RowsAffected() != 1 {
					err = fmt.Errorf("delete of id %d hit %d rows", id, tag.RowsAffected())
				}
				txChanges = append(txChanges, lcChange{id: id, deleted: true})
				txDeleted[id] = true
			}
		}
		var before string
		if err == nil {
			err = tx.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&before)
		}
		if err == nil {
			var lsn pglogrepl.LSN
			if lsn, err = pglogrepl.ParseLSN(before); err == nil {
				for i := range txChanges {
					txChanges[i].before = uint64(lsn)
				}
			}
		}
		if err == nil {
			err = tx.Commit(ctx)
		}
		if err != nil {
			_ = tx.Rollback(ctx)
			w.err = err
			return
		}
		for id := range txDeleted {
			i, last := w.pos[id], len(w.live)-1
			w.live[i] = w.live[last]
			w.pos[w.live[i]] = i
			w.live = w.live[:last]
			delete(w.pos, id)
		}
		for _, id := range txInserted {
			w.pos[id] = len(w.live)
			w.live = append(w.live, id)
		}
		w.nextID, w.counter = next, counter
		w.changes = append(w.changes, txChanges...)
		w.inserted = append(w.inserted, txInserted...)
		w.txs++
		select {
		case <-w.stop:
			return
		case <-time.After(w.pause):
		}
	}
}

// lcCompleteLines keeps whole lines only: a killed process may leave half a
// line at the end.
func lcCompleteLines(out []byte) []byte {
	i := bytes.LastIndexByte(out, '\n')
	if i < 0 {
		return nil
	}
	return out[:i+1]
}

// lcLastStateOf is the last STATE value among msgs, or nil.
func lcLastStateOf(msgs []map[string]any) map[string]any {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i]["type"] == "STATE" {
			return msgs[i]["value"].(map[string]any)
		}
	}
	return nil
}

// slotActivePID is the slot's active_pid, 0 when no process holds it.
func slotActivePID(t *testing.T, db, slot string) int {
	t.Helper()
	pid, err := strconv.Atoi(slotColumn(t, db, slot, "coalesce(active_pid, 0)"))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// lcWaitSlotReleased waits until no process holds the slot and returns how
// long that took.
func lcWaitSlotReleased(t *testing.T, db, slot string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for slotActivePID(t, db, slot) != 0 {
		if time.Since(start) > limit {
			t.Fatalf("slot %s still held %v after the tap was killed", slot, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// lcLsnOf reads an _sdc_lsn value (text like 0/16B3748, or an integer).
func lcLsnOf(t *testing.T, v any) uint64 {
	t.Helper()
	switch x := v.(type) {
	case string:
		lsn, err := pglogrepl.ParseLSN(x)
		if err != nil {
			t.Fatalf("_sdc_lsn %q: %v", x, err)
		}
		return uint64(lsn)
	case json.Number:
		n, err := strconv.ParseUint(x.String(), 10, 64)
		if err != nil {
			t.Fatalf("_sdc_lsn %v: %v", x, err)
		}
		return n
	}
	t.Fatalf("_sdc_lsn %v (%T)", v, v)
	return 0
}

// --- 1. kills ---

// TestLogBasedSurvivesKills kills the real binary with SIGKILL at random
// moments while a writer keeps changing the table, persisting only the last
// STATE each killed run completed, and checks that the slot is never
// confirmed past the persisted state and that, in the end, every change
// reached the output.
func TestLogBasedSurvivesKills(t *testing.T) {
	forEachDecoder(t, decoders, func(t *testing.T, dec decoder) {
		const iterations = 30
		testStart := time.Now()
		bin := lcBuildTap(t)
		seed := lcSeed(t)
		rnd := rand.New(rand.NewPCG(seed, 1))

		db := testpg.NewDatabase(t, pg)
		slot := slotFor(db)
		testpg.Exec(t, pg, db, `CREATE TABLE churn (id integer PRIMARY KEY, val text);
		INSERT INTO churn SELECT g, 'init' || g FROM generate_series(1, 100000) g;`)
		newSlot(t, db, slot, dec)
		id := db + "-public-churn"
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"slot_name": slot}))
		// Runs that only a kill (or a long idle) ends: they stream for as long
		// as they live, persisting STATEs on the way.
		endless := writeFile(t, "endless.json", configFor(db, map[string]any{"slot_name": slot,
			"break_at_end_lsn": false, "logical_poll_total_seconds": 600}))
		catalog := logCatalog(t, cfg, id)
		var initial []int
		for i := 1; i <= 100000; i++ {
			initial = append(initial, i)
		}
		writer := lcStartWriter(t, db, "churn", "c", initial, 0, seed+2, time.Millisecond)

		outDir := t.TempDir()
		last := map[string]map[string]any{} // last record emitted for each id, over all runs
		runs := 0
		var state map[string]any // last persisted state
		var persisted []uint64   // lsn bookmark of each persisted state
		killed, natural, waited, midCopy := 0, 0, 0, 0
		midCopyMark := []byte(`"last_pk_fetched"`)
		// run runs the binary from the persisted state. It is killed after
		// kill (0: never), or as soon as it prints a STATE in the middle of the
		// initial copy when onMidCopy is set.
		run := func(i int, config string, kill time.Duration, onMidCopy bool) (msgs []map[string]any, wasKilled bool, stderr string) {
			t.Helper()
			args := []string{"--config", config, "--catalog", catalog}
			if state != nil {
				args = append(args, "--state", writeFile(t, "state.json", state))
			}
			errPath := filepath.Join(outDir, fmt.Sprintf("run%02d.err", i))
			stderrF, err := os.Create(errPath)
			if err != nil {
				t.Fatal(err)
			}
			defer stderrF.Close()
			cmd := exec.Command(bin, args...)
			cmd.Stderr = stderrF
			pipe, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			trigger := make(chan struct{}, 1)
			exited := make(chan error, 1)
			// midCopyState tells whether out holds a complete STATE line of an
			// unfinished copy after a RECORD of this run (a resumed copy starts
			// with such a STATE).
			scanFrom, firstRecord := 0, -1
			midCopyState := func(buf []byte) bool {
				if firstRecord < 0 {
					if firstRecord = bytes.Index(buf, []byte(`{"type":"RECORD"`)); firstRecord < 0 {
						return false
					}
				}
				for {
					i := bytes.Index(buf[scanFrom:], midCopyMark)
					if i < 0 {
						scanFrom = max(scanFrom, len(buf)-len(midCopyMark))
						return false
					}
					pos := scanFrom + i
					nl := bytes.IndexByte(buf[pos:], '\n')
					if nl < 0 {
						scanFrom = pos
						return false
					}
					scanFrom = pos + nl + 1
					if pos > firstRecord {
						return true
					}
				}
			}
			go func() {
				chunk := make([]byte, 64<<10)
				for {
					n, err := pipe.Read(chunk)
					if n > 0 {
						out.Write(chunk[:n])
						if onMidCopy && midCopyState(out.Bytes()) {
							select {
							case trigger <- struct{}{}:
							default:
							}
						}
					}
					if err != nil {
						break
					}
				}
				exited <- cmd.Wait()
			}()
			limit := kill
			if limit == 0 {
				limit = 60 * time.Second
			}
			var waitErr error
			select {
			case waitErr = <-exited:
			case <-trigger:
				_ = cmd.Process.Signal(syscall.SIGKILL)
				waitErr = <-exited
				wasKilled = true
			case <-time.After(limit):
				_ = cmd.Process.Signal(syscall.SIGKILL)
				waitErr = <-exited
				wasKilled = true
				if kill == 0 {
					t.Fatalf("run %d did not end within 60 s", i)
				}
			}
			errText, _ := os.ReadFile(errPath)
			stderr = string(errText)
			if !wasKilled && waitErr != nil {
				t.Fatalf("run %d exited on its own with %v:\n%s", i, waitErr, stderr)
			}
			msgs = parseMessages(t, lcCompleteLines(out.Bytes()))
			checkRecordsMatchSchemas(t, msgs)
			runs++
			for _, r := range records(msgs, "churn") {
				last[fmt.Sprint(r["id"])] = r
			}
			if s := lcLastStateOf(msgs); s != nil {
				state = s
				if _, has := s["bookmarks"].(map[string]any)[id]; has {
					persisted = append(persisted, bookmarkLSN(t, s, id))
				}
			}
			return msgs, wasKilled, stderr
		}

		for i := 0; i < iterations; i++ {
			var kill time.Duration
			if i%3 == 0 {
				kill = time.Duration(30+rnd.IntN(120)) * time.Millisecond
			} else {
				kill = time.Duration(150+rnd.IntN(1350)) * time.Millisecond
			}
			// Most runs stream until killed; every fourth ends on its own when
			// it has caught up, unless the kill comes first.
			config, kind := endless, "endless"
			if i%4 == 2 {
				config, kind = cfg, "default"
			}
			var startLSN uint64
			hasState := state != nil
			if hasState {
				startLSN = bookmarkLSN(t, state, id)
			}
			before := slotConfirmed(t, db, slot)
			// The first two runs die right after a STATE in the middle of the
			// copy: the copy resumes, then is interrupted again.
			onMidCopy := i < 2
			if onMidCopy {
				kind += "*"
			}
			msgs, wasKilled, stderr := run(i, config, kill, onMidCopy)
			after := slotConfirmed(t, db, slot)
			if wasKilled {
				killed++
			} else {
				natural++
			}
			if hasState && after > startLSN {
				t.Fatalf("run %d: slot confirmed to %s, past the lsn %s of the state it started with",
					i, pglogrepl.LSN(after), pglogrepl.LSN(startLSN))
			}
			if !hasState && after != before {
				t.Fatalf("run %d without state moved the slot from %s to %s", i, pglogrepl.LSN(before), pglogrepl.LSN(after))
			}
			if after < before {
				t.Fatalf("run %d: slot went back from %s to %s", i, pglogrepl.LSN(before), pglogrepl.LSN(after))
			}
			note := ""
			if strings.Contains(stderr, "waiting for it to be released") {
				note = " (waited for the slot)"
				waited++
			}
			// Mostly wait here for the killed walsender to go, so that the next
			// short-lived run does not spend its life waiting; every fifth run
			// may meet a lingering walsender and wait itself.
			linger := time.Duration(0)
			if i%5 != 4 {
				linger = lcWaitSlotReleased(t, db, slot, 20*time.Second)
			}
			lsnText := "-"
			if state != nil {
				lsnText = pglogrepl.LSN(bookmarkLSN(t, state, id)).String()
				if bm, _ := state["bookmarks"].(map[string]any)[id].(map[string]any); bm["last_pk_fetched"] != nil {
					lsnText += fmt.Sprintf(" mid-copy after %v", bm["last_pk_fetched"])
					midCopy++
				}
			}
			t.Logf("run %2d %-8s kill after %4dms killed=%-5v records=%5d state lsn=%s slot %s->%s walsender gone after %v%s",
				i, kind, kill.Milliseconds(), wasKilled, len(records(msgs, "churn")), lsnText,
				pglogrepl.LSN(before), pglogrepl.LSN(after), linger.Round(time.Millisecond), note)
		}
		writer.Stop(t)
		lcWaitSlotReleased(t, db, slot, 20*time.Second)

		finalRuns := 0
		for {
			finalRuns++
			msgs, _, _ := run(iterations+finalRuns, cfg, 0, false)
			n := len(records(msgs, "churn"))
			t.Logf("final run %d: %d records, state lsn %s", finalRuns, n, pglogrepl.LSN(bookmarkLSN(t, state, id)))
			if n == 0 {
				break
			}
			if finalRuns == 5 {
				t.Fatalf("5 runs after the writer stopped and the last still emitted %d records", n)
			}
		}
		t.Logf("(* = killed at its first mid-copy STATE if that came before the delay)")
		t.Logf("%d runs killed (%d iterations ended on a mid-copy state), %d ended on their own, %d waited for the slot; %d final runs", killed, midCopy, natural, waited, finalRuns)

		// The bookmark only moves forward, and it moved.
		increases := 0
		for i := 1; i < len(persisted); i++ {
			if persisted[i] < persisted[i-1] {
				t.Fatalf("persisted lsn went back from %s to %s (states %d, %d)", pglogrepl.LSN(persisted[i-1]), pglogrepl.LSN(persisted[i]), i-1, i)
			}
			if persisted[i] > persisted[i-1] {
				increases++
			}
		}
		if increases < 5 {
			t.Fatalf("the persisted lsn increased only %d times over %d states", increases, len(persisted))
		}

		// Every change reached the output, the last word on each id is right.
		final := map[string]string{}
		rows, err := lcPgxQuery(t, db, "SELECT id::text, val FROM churn")
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range rows {
			final[row[0]] = row[1]
		}
		model := map[string]string{}
		for _, id := range writer.live {
			model[strconv.Itoa(id)] = ""
		}
		if len(model) != len(final) {
			t.Fatalf("the writer's model has %d live ids, the table %d", len(model), len(final))
		}
		// The writer ran before the copy: an id deleted before the copy's
		// snapshot (the first persisted lsn) is rightly never seen again, and
		// runs killed before any STATE may have emitted it from an older copy
		// (a version the completed copy supersedes).
		copyLSN := persisted[0]
		goneBeforeCopy := map[string]bool{}
		for _, c := range writer.changes {
			if c.deleted && c.before < copyLSN {
				goneBeforeCopy[strconv.Itoa(c.id)] = true
			}
		}
		everInserted := append(slices.Clone(initial), writer.inserted...)
		deleted, skipped := 0, 0
		for _, n := range everInserted {
			k := strconv.Itoa(n)
			if goneBeforeCopy[k] {
				skipped++
				continue
			}
			r, ok := last[k]
			if !ok {
				t.Fatalf("id %s was inserted but never emitted", k)
			}
			if val, exists := final[k]; exists {
				if r["_sdc_deleted_at"] != nil || r["val"] != val {
					t.Fatalf("id %s: last record %v, the table has val %q", k, r, val)
				}
				continue
			}
			deleted++
			if r["_sdc_deleted_at"] == nil {
				t.Fatalf("id %s was deleted but its last record is %v", k, r)
			}
		}
		t.Logf("checked %d ids (%d deleted; %d more deleted before the copy at %s not checked) over %d runs; %d persisted states, lsn increased %d times; took %v",
			len(everInserted)-skipped, deleted, skipped, pglogrepl.LSN(copyLSN), runs, len(persisted), increases, time.Since(testStart).Round(time.Millisecond))
	})
}

// lcPgxQuery returns all rows of a query as text.
func lcPgxQuery(t *testing.T, db, sql string) ([][]string, error) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.ConnString(db))
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	var out [][]string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			row[i] = fmt.Sprint(v)
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// --- 2. one large transaction ---

// lcCountingWriter counts RECORD lines and keeps the last STATE line, holding
// no more than one line at a time.
type lcCountingWriter struct {
	records, marked int64
	marker          []byte
	cur             []byte
	lastState       []byte
}

func (w *lcCountingWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.cur = append(w.cur, p...)
			break
		}
		w.cur = append(w.cur, p[:i]...)
		w.line(w.cur)
		w.cur = w.cur[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (w *lcCountingWriter) line(l []byte) {
	switch {
	case bytes.HasPrefix(l, []byte(`{"type":"RECORD"`)):
		w.records++
		if w.marker != nil && bytes.Contains(l, w.marker) {
			w.marked++
		}
	case bytes.HasPrefix(l, []byte(`{"type":"STATE"`)):
		w.lastState = append(w.lastState[:0], l...)
	}
}

// stateValue decodes the last STATE line's value.
func (w *lcCountingWriter) stateValue(t *testing.T) map[string]any {
	t.Helper()
	if w.lastState == nil {
		t.Fatal("no STATE line")
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(w.lastState))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m["value"].(map[string]any)
}

// lcPeakHeap runs f while sampling HeapInuse every 20 ms and returns the peak.
func lcPeakHeap(f func()) uint64 {
	runtime.GC()
	var peak uint64
	var mu sync.Mutex
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		mu.Lock()
		peak = max(peak, ms.HeapInuse)
		mu.Unlock()
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			sample()
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	f()
	sample()
	close(stop)
	<-done
	return peak
}

// TestLogBasedLargeTransactionBoundedMemory streams one transaction that
// updates 200,000 rows of ~300 bytes (~60 MB of row data) and checks that
// every update is emitted while the heap stays small.
func TestLogBasedLargeTransactionBoundedMemory(t *testing.T) {
	forEachDecoder(t, decoders, func(t *testing.T, dec decoder) {
		const rows = 200000
		const limit = 64 << 20
		db := testpg.NewDatabase(t, pg)
		slot := slotFor(db)
		setup := time.Now()
		testpg.Exec(t, pg, db, fmt.Sprintf(`CREATE TABLE big (id integer PRIMARY KEY, val text);
		INSERT INTO big SELECT g, repeat(md5(g::text), 9) || lpad(g::text, 12, '0') FROM generate_series(1, %d) g;`, rows))
		newSlot(t, db, slot, dec)
		id := db + "-public-big"
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"slot_name": slot}))
		catalog := logCatalog(t, cfg, id)
		t.Logf("table of %d rows ready in %v", rows, time.Since(setup).Round(time.Millisecond))

		run := func(w *lcCountingWriter, state map[string]any) (int, string, time.Duration, uint64) {
			args := []string{"--config", cfg, "--catalog", catalog}
			if state != nil {
				args = append(args, "--state", writeFile(t, "state.json", state))
			}
			var stderr bytes.Buffer
			var code int
			start := time.Now()
			peak := lcPeakHeap(func() {
				code = cli.Run(context.Background(), args, cli.Env{Stdout: w, Stderr: &stderr})
			})
			return code, stderr.String(), time.Since(start), peak
		}

		copied := &lcCountingWriter{}
		code, stderr, took, peak := run(copied, nil)
		if code != 0 {
			t.Fatalf("initial copy exited %d:\n%s", code, stderr)
		}
		if copied.records != rows {
			t.Fatalf("initial copy emitted %d records, want %d", copied.records, rows)
		}
		t.Logf("initial copy: %d records in %v, peak HeapInuse %.1f MiB", copied.records, took.Round(time.Millisecond), float64(peak)/(1<<20))
		s1 := copied.stateValue(t)

		upd := time.Now()
		testpg.Exec(t, pg, db, "UPDATE big SET val = 'upd-' || repeat(md5((id * 7)::text), 9) || lpad(id::text, 8, '0')")
		t.Logf("UPDATE of %d rows in one transaction took %v", rows, time.Since(upd).Round(time.Millisecond))

		streamed := &lcCountingWriter{marker: []byte(`"val":"upd-`)}
		code, stderr, took, peak = run(streamed, s1)
		t.Logf("streaming run: %d records (%d updated values) in %v, peak HeapInuse %.1f MiB",
			streamed.records, streamed.marked, took.Round(time.Millisecond), float64(peak)/(1<<20))
		if code != 0 {
			t.Fatalf("streaming run exited %d:\n%s", code, stderr)
		}
		t.Logf("the slot was released %v after the run ended", lcWaitSlotReleased(t, db, slot, 30*time.Second).Round(time.Millisecond))
		if streamed.records != rows || streamed.marked != rows {
			t.Fatalf("streaming run emitted %d records, %d with the updated value; want %d of each", streamed.records, streamed.marked, rows)
		}
		if s2 := streamed.stateValue(t); bookmarkLSN(t, s2, id) <= bookmarkLSN(t, s1, id) {
			t.Fatal("the bookmark did not advance past the large transaction")
		}
		if peak >= limit {
			t.Fatalf("peak HeapInuse %.1f MiB while streaming one large transaction, want under %d MiB", float64(peak)/(1<<20), limit>>20)
		}
	})
}

// --- 3. two databases ---

func lcRandomDBName(prefix string) string {
	const letters = "abcdefghijklmnopqrstuvwxyz"
	b := []byte(prefix)
	for range 6 {
		b = append(b, letters[rand.IntN(len(letters))])
	}
	return string(b)
}

// lcCreateDatabase creates a database with a short name and drops it when the
// test ends (after cleanups registered later, such as its slot's).
func lcCreateDatabase(t *testing.T, prefix string) string {
	t.Helper()
	name := lcRandomDBName(prefix)
	testpg.Exec(t, pg, "postgres", "CREATE DATABASE "+name)
	t.Cleanup(func() { testpg.DropDatabase(t, pg, name) })
	return name
}

// TestLogBasedTwoDatabases streams two databases, each through the slot the
// default name search finds (stitch_<db>), and checks that each slot is
// confirmed to its own database's bookmark. A database with only a slot
// named stitch uses that one.
func TestLogBasedTwoDatabases(t *testing.T) {
	forEachDecoder(t, decoders, func(t *testing.T, dec decoder) {
		dbA, dbB := lcCreateDatabase(t, "lb2a_"), lcCreateDatabase(t, "lb2a_")
		testpg.Exec(t, pg, dbA, `CREATE TABLE alpha (id integer PRIMARY KEY, v text);
		INSERT INTO alpha VALUES (1, 'a1'), (2, 'a2'), (3, 'a3');`)
		testpg.Exec(t, pg, dbB, `CREATE TABLE beta (id integer PRIMARY KEY, v text);
		INSERT INTO beta VALUES (1, 'b1'), (2, 'b2');`)
		slotA, slotB := "stitch_"+dbA, "stitch_"+dbB
		newSlot(t, dbA, slotA, dec)
		newSlot(t, dbB, slotB, dec)
		idA, idB := dbA+"-public-alpha", dbB+"-public-beta"
		cfg := writeFile(t, "config.json", configFor(dbA, map[string]any{"filter_dbs": dbA + "," + dbB}))
		catalog := logCatalog(t, cfg, idA, idB)

		first, s1 := logRun(t, cfg, catalog, nil)
		if a, b := len(records(first.messages, "alpha")), len(records(first.messages, "beta")); a != 3 || b != 2 {
			t.Fatalf("initial copies: alpha %d records (want 3), beta %d (want 2)", a, b)
		}
		for _, slot := range []string{slotA, slotB} {
			if !strings.Contains(first.stderr, "using slot "+slot+" ") {
				t.Errorf("the run did not report using slot %s:\n%s", slot, first.stderr)
			}
		}

		testpg.Exec(t, pg, dbA, `INSERT INTO alpha VALUES (4, 'a4'); UPDATE alpha SET v = 'a1 updated' WHERE id = 1; DELETE FROM alpha WHERE id = 2;`)
		testpg.Exec(t, pg, dbB, `INSERT INTO beta VALUES (3, 'b3'); UPDATE beta SET v = 'b2 updated' WHERE id = 2;`)
		testpg.Exec(t, pg, dbA, `INSERT INTO alpha VALUES (5, 'a5');`)

		second, s2 := logRun(t, cfg, catalog, s1)
		checkRecordsMatchSchemas(t, second.messages)
		var gotA, gotB []string
		for _, r := range records(second.messages, "alpha") {
			gotA = append(gotA, lcRecordKey(map[string]any{"id": r["id"], "val": r["v"], "_sdc_deleted_at": r["_sdc_deleted_at"]}))
		}
		for _, r := range records(second.messages, "beta") {
			gotB = append(gotB, lcRecordKey(map[string]any{"id": r["id"], "val": r["v"], "_sdc_deleted_at": r["_sdc_deleted_at"]}))
		}
		if want := "[u:4:a4 u:1:a1 updated d:2 u:5:a5]"; fmt.Sprint(gotA) != want {
			t.Errorf("alpha changes %v, want %s", gotA, want)
		}
		if want := "[u:3:b3 u:2:b2 updated]"; fmt.Sprint(gotB) != want {
			t.Errorf("beta changes %v, want %s", gotB, want)
		}
		for _, id := range []string{idA, idB} {
			if bookmarkLSN(t, s2, id) <= bookmarkLSN(t, s1, id) {
				t.Errorf("stream %s: bookmark did not advance (%d -> %d)", id, bookmarkLSN(t, s1, id), bookmarkLSN(t, s2, id))
			}
		}
		// The second run confirmed s1's positions, each slot its own.
		if c := slotConfirmed(t, dbA, slotA); c != bookmarkLSN(t, s1, idA) {
			t.Errorf("after the second run slot %s is at %s, want %s (s1 of %s)", slotA, pglogrepl.LSN(c), pglogrepl.LSN(bookmarkLSN(t, s1, idA)), idA)
		}
		if c := slotConfirmed(t, dbB, slotB); c != bookmarkLSN(t, s1, idB) {
			t.Errorf("after the second run slot %s is at %s, want %s (s1 of %s)", slotB, pglogrepl.LSN(c), pglogrepl.LSN(bookmarkLSN(t, s1, idB)), idB)
		}

		// A state whose two databases stand at different positions: alpha at
		// s2, beta still at s1 (where its slot is). Only alpha's slot moves.
		mixed := lcCloneJSON(t, s2)
		mixed["bookmarks"].(map[string]any)[idB] = lcCloneJSON(t, s1)["bookmarks"].(map[string]any)[idB]
		third, _ := logRun(t, cfg, catalog, mixed)
		if n := len(records(third.messages, "beta")); n != 2 {
			t.Errorf("from beta's older bookmark the run emitted %d beta records, want its 2 changes again", n)
		}
		if n := len(records(third.messages, "alpha")); n != 0 {
			t.Errorf("alpha re-emitted %d records", n)
		}
		la, lb1 := bookmarkLSN(t, s2, idA), bookmarkLSN(t, s1, idB)
		if ca, cb := slotConfirmed(t, dbA, slotA), slotConfirmed(t, dbB, slotB); ca != la || cb != lb1 {
			t.Fatalf("with alpha at %s and beta at %s in the state, the slots were confirmed to %s (%s) and %s (%s)",
				pglogrepl.LSN(la), pglogrepl.LSN(lb1), pglogrepl.LSN(ca), slotA, pglogrepl.LSN(cb), slotB)
		}

		fourth, _ := logRun(t, cfg, catalog, s2)
		if n := len(records(fourth.messages, "alpha")) + len(records(fourth.messages, "beta")); n != 0 {
			t.Errorf("a run from s2 re-emitted %d records", n)
		}
		lb := bookmarkLSN(t, s2, idB)
		ca, cb := slotConfirmed(t, dbA, slotA), slotConfirmed(t, dbB, slotB)
		t.Logf("s1: %s at %s, %s at %s; s2: %s, %s; slots now confirmed to %s, %s",
			idA, pglogrepl.LSN(bookmarkLSN(t, s1, idA)), idB, pglogrepl.LSN(lb1), pglogrepl.LSN(la), pglogrepl.LSN(lb), pglogrepl.LSN(ca), pglogrepl.LSN(cb))
		if ca != la || cb != lb {
			t.Fatalf("after a run from s2 the slots are at %s (%s) and %s (%s), want their own database's state lsn %s and %s",
				pglogrepl.LSN(ca), slotA, pglogrepl.LSN(cb), slotB, pglogrepl.LSN(la), pglogrepl.LSN(lb))
		}

		// A database with only a slot named stitch.
		dbC := lcCreateDatabase(t, "lb2a_")
		testpg.Exec(t, pg, dbC, `CREATE TABLE gamma (id integer PRIMARY KEY, v text); INSERT INTO gamma VALUES (1, 'g1');`)
		newSlot(t, dbC, "stitch", dec)
		idC := dbC + "-public-gamma"
		cfgC := writeFile(t, "config.json", configFor(dbC, nil))
		catalogC := logCatalog(t, cfgC, idC)
		c1, sc1 := logRun(t, cfgC, catalogC, nil)
		if !strings.Contains(c1.stderr, "using slot stitch ") || len(records(c1.messages, "gamma")) != 1 {
			t.Fatalf("slot stitch: copy emitted %d records, stderr:\n%s", len(records(c1.messages, "gamma")), c1.stderr)
		}
		testpg.Exec(t, pg, dbC, `UPDATE gamma SET v = 'g1 updated' WHERE id = 1`)
		c2, sc2 := logRun(t, cfgC, catalogC, sc1)
		if g := records(c2.messages, "gamma"); len(g) != 1 || g[0]["v"] != "g1 updated" {
			t.Fatalf("slot stitch: streamed %v", g)
		}
		_, _ = logRun(t, cfgC, catalogC, sc2)
		if c := slotConfirmed(t, dbC, "stitch"); c != bookmarkLSN(t, sc2, idC) {
			t.Fatalf("slot stitch at %s, want %s", pglogrepl.LSN(c), pglogrepl.LSN(bookmarkLSN(t, sc2, idC)))
		}
	})
}

func lcCloneJSON(t *testing.T, v map[string]any) map[string]any {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// --- 4. stop on signal and at max_run_seconds ---

// lcAsyncRun is a cli.Run in a goroutine.
type lcAsyncRun struct {
	stdout, stderr bytes.Buffer
	code           int
	done           chan struct{}
}

func lcStartRun(ctx context.Context, args ...string) *lcAsyncRun {
	r := &lcAsyncRun{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.code = cli.Run(ctx, args, cli.Env{Stdout: &r.stdout, Stderr: &r.stderr})
	}()
	return r
}

// lcCheckExactlyOnce checks that the streamed records of runs hold every
// committed change exactly once, and nothing else.
func lcCheckExactlyOnce(t *testing.T, stream string, changes []lcChange, runs ...[]map[string]any) {
	t.Helper()
	seen := map[string][]int{}
	for i, msgs := range runs {
		for _, r := range records(msgs, stream) {
			seen[lcRecordKey(r)] = append(seen[lcRecordKey(r)], i)
		}
	}
	want := map[string]bool{}
	for _, c := range changes {
		want[c.key()] = true
		switch runs := seen[c.key()]; len(runs) {
		case 0:
			t.Fatalf("committed change %s was never emitted", c.key())
		case 1:
		default:
			t.Fatalf("change %s emitted %d times (runs %v)", c.key(), len(runs), runs)
		}
	}
	for k := range seen {
		if !want[k] {
			t.Fatalf("record %s matches no committed change", k)
		}
	}
}

// TestLogBasedStopsOnSignal cancels a streaming run (as SIGINT/SIGTERM do in
// the binary) and checks that it stops promptly between transactions with a
// final STATE covering exactly what it emitted; then the same for a run
// ended by max_run_seconds.
func TestLogBasedStopsOnSignal(t *testing.T) {
	forEachDecoder(t, decoders, func(t *testing.T, dec decoder) {
		seed := lcSeed(t)
		db := testpg.NewDatabase(t, pg)
		slot := slotFor(db)
		testpg.Exec(t, pg, db, `CREATE TABLE sig (id integer PRIMARY KEY, val text);
		INSERT INTO sig SELECT g, 'init' || g FROM generate_series(1, 100) g;`)
		newSlot(t, db, slot, dec)
		id := db + "-public-sig"
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"slot_name": slot}))
		catalog := logCatalog(t, cfg, id)
		first, s0 := logRun(t, cfg, catalog, nil)
		if n := len(records(first.messages, "sig")); n != 100 {
			t.Fatalf("initial copy: %d records", n)
		}
		var live []int
		for i := 1; i <= 100; i++ {
			live = append(live, i)
		}

		long := writeFile(t, "long.json", configFor(db, map[string]any{"slot_name": slot,
			"break_at_end_lsn": false, "logical_poll_total_seconds": 60, "debug_lsn": true}))
		writer := lcStartWriter(t, db, "sig", "c", live, 0, seed, 2*time.Millisecond)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		run := lcStartRun(ctx, "--config", long, "--catalog", catalog, "--state", writeFile(t, "s0.json", s0))
		time.Sleep(1500 * time.Millisecond)
		cancelled := time.Now()
		cancel()
		select {
		case <-run.done:
		case <-time.After(15 * time.Second):
			t.Fatal("the run did not stop within 15 s of the cancellation")
		}
		stopTook := time.Since(cancelled)
		// Changes committed after the stop are for the next run.
		time.Sleep(300 * time.Millisecond)
		writer.Stop(t)
		if run.code != 0 {
			t.Fatalf("cancelled run exited %d:\n%s", run.code, run.stderr.String())
		}
		if stopTook > 4*time.Second {
			t.Fatalf("the run took %v to stop after the cancellation", stopTook)
		}
		msgs := parseMessages(t, run.stdout.Bytes())
		checkRecordsMatchSchemas(t, msgs)
		if msgs[len(msgs)-1]["type"] != "STATE" {
			t.Fatalf("the cancelled run's last line is not a STATE: %s", lastLine(run.stdout.String()))
		}
		s1 := lastState(t, msgs)
		end := bookmarkLSN(t, s1, id)
		emitted := records(msgs, "sig")
		if len(emitted) == 0 {
			t.Fatal("the cancelled run emitted nothing while the writer ran")
		}
		for _, r := range emitted {
			if lsn := lcLsnOf(t, r["_sdc_lsn"]); lsn >= end {
				t.Fatalf("record %v at %s is not covered by the final STATE's lsn %s", r, pglogrepl.LSN(lsn), pglogrepl.LSN(end))
			}
			delete(r, "_sdc_lsn")
		}
		t.Logf("cancelled after 1.5 s: stopped in %v with %d records, final lsn %s", stopTook.Round(time.Millisecond), len(emitted), pglogrepl.LSN(end))
		if end <= bookmarkLSN(t, s0, id) {
			t.Fatal("the cancelled run's bookmark did not advance")
		}

		second, s2 := logRun(t, cfg, catalog, s1)
		t.Logf("next run: %d records", len(records(second.messages, "sig")))
		lcCheckExactlyOnce(t, "sig", writer.changes, msgs, second.messages)

		// Each phase below goes on from where the previous one left.
		latest, liveNow, nextNow := s2, writer.live, writer.nextID

		t.Run("max_run_seconds", func(t *testing.T) {
			capped := writeFile(t, "capped.json", configFor(db, map[string]any{"slot_name": slot,
				"break_at_end_lsn": false, "logical_poll_total_seconds": 60, "max_run_seconds": 2}))
			w := lcStartWriter(t, db, "sig", "m", liveNow, nextNow, seed+1, 2*time.Millisecond)
			time.Sleep(200 * time.Millisecond)
			start := time.Now()
			r := runTap(t, cli.Env{}, "--config", capped, "--catalog", catalog, "--state", writeFile(t, "s2.json", latest))
			took := time.Since(start)
			w.Stop(t)
			if r.code != 0 {
				t.Fatalf("exit %d:\n%s", r.code, r.stderr)
			}
			if took < 2*time.Second || took > 4*time.Second {
				t.Fatalf("a run with max_run_seconds=2 over a steadily written database took %v", took)
			}
			if r.messages[len(r.messages)-1]["type"] != "STATE" {
				t.Fatalf("last line is not a STATE: %s", lastLine(r.stdout))
			}
			if !strings.Contains(r.stderr, "max_run_seconds") {
				t.Errorf("the log does not say the run stopped at max_run_seconds:\n%s", r.stderr)
			}
			s3 := lastState(t, r.messages)
			t.Logf("max_run_seconds=2: ended after %v with %d records", took.Round(time.Millisecond), len(records(r.messages, "sig")))
			if len(records(r.messages, "sig")) == 0 || bookmarkLSN(t, s3, id) <= bookmarkLSN(t, s2, id) {
				t.Fatal("the capped run emitted nothing or did not advance its bookmark")
			}
			after, s4 := logRun(t, cfg, catalog, s3)
			lcCheckExactlyOnce(t, "sig", w.changes, r.messages, after.messages)
			latest, liveNow, nextNow = s4, w.live, w.nextID
		})

		t.Run("SIGTERM to the binary", func(t *testing.T) {
			bin := lcBuildTap(t)
			w := lcStartWriter(t, db, "sig", "t", liveNow, nextNow, seed+2, 2*time.Millisecond)
			cmd := exec.Command(bin, "--config", long, "--catalog", catalog, "--state", writeFile(t, "latest.json", latest))
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			time.Sleep(1500 * time.Millisecond)
			sent := time.Now()
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			var err error
			select {
			case err = <-exited:
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
				t.Fatal("the binary did not stop within 15 s of SIGTERM")
			}
			took := time.Since(sent)
			time.Sleep(300 * time.Millisecond)
			w.Stop(t)
			if err != nil {
				t.Fatalf("after SIGTERM the binary exited with %v:\n%s", err, stderr.String())
			}
			if took > 4*time.Second {
				t.Fatalf("the binary took %v to stop after SIGTERM", took)
			}
			msgs := parseMessages(t, stdout.Bytes())
			checkRecordsMatchSchemas(t, msgs)
			if msgs[len(msgs)-1]["type"] != "STATE" {
				t.Fatalf("after SIGTERM the last line is not a STATE: %s", lastLine(stdout.String()))
			}
			end := bookmarkLSN(t, lastState(t, msgs), id)
			for _, r := range records(msgs, "sig") {
				if lsn := lcLsnOf(t, r["_sdc_lsn"]); lsn >= end {
					t.Fatalf("record %v at %s is not covered by the final STATE's lsn %s", r, pglogrepl.LSN(lsn), pglogrepl.LSN(end))
				}
			}
			t.Logf("SIGTERM after 1.5 s: exit 0 after %v with %d records", took.Round(time.Millisecond), len(records(msgs, "sig")))
			if len(records(msgs, "sig")) == 0 || end <= bookmarkLSN(t, latest, id) {
				t.Fatal("the run emitted nothing or did not advance its bookmark")
			}
			after, _ := logRun(t, cfg, catalog, lastState(t, msgs))
			lcCheckExactlyOnce(t, "sig", w.changes, msgs, after.messages)
		})
	})
}
