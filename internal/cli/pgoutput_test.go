package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/tap-postgres/tap-postgres/internal/cli"
	"github.com/tap-postgres/tap-postgres/internal/localpg"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

// pausingWriter is a consumer that stops reading for a while once after
// bytes came, as a target does while it flushes a large batch to a
// warehouse; it passes everything on to next.
type pausingWriter struct {
	mu      sync.Mutex
	next    io.Writer
	written int
	after   int
	pause   time.Duration
	paused  bool
}

func (w *pausingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.paused && w.written >= w.after {
		w.paused = true
		time.Sleep(w.pause)
	}
	w.written += len(p)
	return w.next.Write(p)
}

// TestLogBasedSlowConsumer: a consumer that stops reading for longer than
// the server's wal_sender_timeout does not end the stream; the run finishes
// with every change once it reads again.
func TestLogBasedSlowConsumer(t *testing.T) {
	forEachDecoder(t, decoders, func(t *testing.T, dec decoder) {
		db := testpg.NewDatabase(t, pg)
		slot := slotFor(db)
		testpg.Exec(t, pg, db, `CREATE TABLE wide (id integer PRIMARY KEY, body text);
			INSERT INTO wide SELECT g, repeat('x', 200) FROM generate_series(1, 5000) g;`)
		// The walsender of a logical connection takes the database's
		// settings: it gives up on a silent client after 4 s.
		testpg.Exec(t, pg, "postgres", fmt.Sprintf("ALTER DATABASE %s SET wal_sender_timeout = '4s'", db))
		newSlot(t, db, slot, dec)
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"slot_name": slot}))
		catalog := logCatalog(t, cfg, db+"-public-wide")
		_, s1 := logRun(t, cfg, catalog, nil)
		testpg.Exec(t, pg, db, `UPDATE wide SET body = repeat('y', 200)`)

		var stdout bytes.Buffer
		out := &pausingWriter{next: &stdout, after: 64 << 10, pause: 12 * time.Second}
		started := time.Now()
		r := runTap(t, cli.Env{Stdout: out}, "--config", cfg, "--catalog", catalog, "--state", writeFile(t, "state.json", s1))
		if r.code != 0 {
			t.Fatalf("tap exited %d after %s:\n%s", r.code, time.Since(started).Round(time.Second), r.stderr)
		}
		if !out.paused || time.Since(started) < out.pause {
			t.Fatalf("the consumer never paused (paused=%v, run took %s)", out.paused, time.Since(started))
		}
		msgs := parseMessages(t, stdout.Bytes())
		got := map[string]bool{}
		for _, rec := range records(msgs, "wide") {
			if rec["body"] == strings.Repeat("y", 200) {
				got[fmt.Sprint(rec["id"])] = true
			}
		}
		if len(got) != 5000 {
			t.Fatalf("%d of 5000 updated rows out after the pause", len(got))
		}
		if after := bookmarkLSN(t, lastState(t, msgs), db+"-public-wide"); after <= bookmarkLSN(t, s1, db+"-public-wide") {
			t.Fatalf("bookmark did not advance: %d", after)
		}
	})
}

// TestPgoutputPublicationChecks: a pgoutput slot whose publication is
// missing, lacks a selected table or a kind of change is refused before
// anything is copied, with the statement that fixes it; a keyless published
// table is a warning.
func TestPgoutputPublicationChecks(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	slot := slotFor(db)
	testpg.Exec(t, pg, db, fmt.Sprintf(`CREATE TABLE "Odd Name" (id integer PRIMARY KEY, v text);
		CREATE TABLE plain (id integer PRIMARY KEY, v text);
		CREATE TABLE keyless (v text);
		INSERT INTO "Odd Name" VALUES (1, 'a'); INSERT INTO plain VALUES (1, 'b');`))
	testpg.Exec(t, pg, db, fmt.Sprintf(`SELECT pg_create_logical_replication_slot('%s', 'pgoutput')`, slot))
	t.Cleanup(func() {
		testpg.Exec(t, pg, db, fmt.Sprintf(`SELECT pg_drop_replication_slot('%s')`, slot))
	})
	cfg := writeFile(t, "config.json", configFor(db, map[string]any{"slot_name": slot, "publication_name": "pub_{dbname}"}))
	catalog := logCatalog(t, cfg, db+"-public-Odd Name", db+"-public-plain")
	pub := `"pub_` + db + `"`
	refused := func(want ...string) {
		t.Helper()
		wantCritical(t, runTap(t, cli.Env{}, "--config", cfg, "--catalog", catalog), want...)
		check := runTap(t, cli.Env{}, "--config", cfg, "--catalog", catalog, "--test")
		if check.code != 1 || !strings.Contains(check.stderr, want[0]) {
			t.Errorf("--test: exit %d\n%s", check.code, check.stderr)
		}
	}
	refused("publication "+pub+" does not exist",
		`CREATE PUBLICATION `+pub+` FOR TABLE "public"."Odd Name", "public"."plain";`)
	testpg.Exec(t, pg, db, `CREATE PUBLICATION `+pub+` FOR TABLE plain, keyless WITH (publish = 'insert, update')`)
	refused(`does not publish "public"."Odd Name"`, `ALTER PUBLICATION `+pub+` ADD TABLE "public"."Odd Name";`,
		`does not publish delete, truncate`, `ALTER PUBLICATION `+pub+` SET (publish = 'insert, update, delete, truncate');`)
	if pg.Major() >= 15 {
		// A row filter and a column list (PostgreSQL 15) hide rows and columns.
		testpg.Exec(t, pg, db, `ALTER PUBLICATION `+pub+` SET TABLE plain WHERE (id > 10), "Odd Name" (id), keyless;
			ALTER PUBLICATION `+pub+` SET (publish = 'insert, update, delete, truncate')`)
		refused(`publishes "public"."plain" only the rows WHERE (id > 10)`, `publishes "public"."Odd Name" without the selected columns v`,
			`ALTER PUBLICATION `+pub+` DROP TABLE "public"."plain"; ALTER PUBLICATION `+pub+` ADD TABLE "public"."plain";`)
	}
	testpg.Exec(t, pg, db, `ALTER PUBLICATION `+pub+` SET TABLE plain, "Odd Name", keyless;
		ALTER PUBLICATION `+pub+` SET (publish = 'insert, update, delete, truncate')`)
	r, _ := logRun(t, cfg, catalog, nil)
	if !strings.Contains(r.stderr, `WARNING database "`+db+`": table "public"."keyless" is in publication `+pub) ||
		!strings.Contains(r.stderr, `ALTER TABLE "public"."keyless" REPLICA IDENTITY FULL;`) {
		t.Errorf("no warning for the keyless published table:\n%s", r.stderr)
	}
	if n := len(records(r.messages, "Odd Name")) + len(records(r.messages, "plain")); n != 2 {
		t.Errorf("%d records copied, want 2", n)
	}
	check := runTap(t, cli.Env{}, "--config", cfg, "--catalog", catalog, "--test")
	if check.code != 0 || !strings.Contains(check.stderr, "(pgoutput) is ready") || !strings.Contains(check.stderr, "REPLICA IDENTITY FULL") {
		t.Errorf("--test: exit %d\n%s", check.code, check.stderr)
	}
}

// TestWal2jsonNotAllowed: on a server whose output_plugin_libraries leaves
// wal2json out, a wal2json slot is refused before anything is copied, for a
// superuser (who can read the setting) and for the least-privileged role
// (who cannot), with both ways out; the statement given fixes it.
func TestWal2jsonNotAllowed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	strict, err := localpg.Start(ctx, localpg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { strict.Stop() })
	if !strict.HasPluginAllowList() {
		t.Skip("this server has no output_plugin_libraries (before PostgreSQL 15.19): every plugin is allowed")
	}
	if !strict.HasWal2json() {
		t.Skip("this server has no wal2json")
	}
	exec := func(sql string) {
		t.Helper()
		if err := strict.Exec(ctx, "postgres", sql); err != nil {
			t.Fatal(err)
		}
	}
	exec(`CREATE TABLE t (id integer PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a');
		CREATE ROLE tap_least LOGIN REPLICATION PASSWORD 'least-pw'; GRANT SELECT ON t TO tap_least;`)
	exec(`SELECT pg_create_logical_replication_slot('stitch_postgres', 'wal2json')`)
	// The trap: one quoted string holding commas is a single item.
	exec(`ALTER SYSTEM SET output_plugin_libraries = 'pgoutput, test_decoding, wal2json'`)
	exec(`SELECT pg_reload_conf()`)
	time.Sleep(200 * time.Millisecond)
	config := func(user, password string) string {
		return writeFile(t, user+".json", map[string]any{"host": strict.Host, "port": strict.Port, "user": user,
			"password": password, "dbname": "postgres", "filter_dbs": "postgres"})
	}
	superuser, least := config(strict.User, strict.Password), config("tap_least", "least-pw")
	catalog := logCatalog(t, superuser, "postgres-public-t")
	wayOut := `ALTER SYSTEM SET output_plugin_libraries = 'pgoutput', 'test_decoding', 'wal2json'; SELECT pg_reload_conf();`
	for _, tc := range []struct {
		cfg  string
		want []string
	}{
		{superuser, []string{`output_plugin_libraries is '"pgoutput, test_decoding, wal2json"'`, wayOut, "one quoted string holding commas",
			`CREATE PUBLICATION "stitch_postgres" FOR TABLE "public"."t"`, `pg_create_logical_replication_slot('stitch_postgres', 'pgoutput')`}},
		{least, []string{`may not be used as an output plugin (SQLSTATE 42501) HINT: `, `add it to "output_plugin_libraries"`, wayOut,
			`pg_create_logical_replication_slot('stitch_postgres', 'pgoutput')`}},
	} {
		wantCritical(t, runTap(t, cli.Env{}, "--config", tc.cfg, "--catalog", catalog), tc.want...)
		check := runTap(t, cli.Env{}, "--config", tc.cfg, "--catalog", catalog, "--test")
		if check.code != 1 || !strings.Contains(check.stderr, "output_plugin_libraries") || strings.Contains(check.stderr, "is ready") {
			t.Errorf("--test: exit %d\n%s", check.code, check.stderr)
		}
	}
	allow, reload, _ := strings.Cut(wayOut, "; ")
	exec(allow)
	exec(reload)
	time.Sleep(200 * time.Millisecond)
	r, _ := logRun(t, superuser, catalog, nil)
	if n := len(records(r.messages, "t")); n != 1 {
		t.Fatalf("%d records after allowing wal2json, want 1", n)
	}
	check := runTap(t, cli.Env{}, "--config", least, "--catalog", catalog, "--test")
	if check.code != 0 || !strings.Contains(check.stderr, "slot stitch_postgres (wal2json) is ready") {
		t.Errorf("--test after allowing wal2json: exit %d\n%s", check.code, check.stderr)
	}
}

// TestLogBasedTypmodChange: a change of typmod alone (numeric(5,2) to
// numeric(10,2)) is schema drift: a new SCHEMA before the first record of
// the new shape, whose value is exact.
func TestLogBasedTypmodChange(t *testing.T) {
	forEachDecoder(t, decoders, func(t *testing.T, dec decoder) {
		db := testpg.NewDatabase(t, pg)
		slot := slotFor(db)
		testpg.Exec(t, pg, db, `CREATE TABLE priced (id integer PRIMARY KEY, p numeric(5,2)); INSERT INTO priced VALUES (1, 123.45);`)
		newSlot(t, db, slot, dec)
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"slot_name": slot}))
		catalog := logCatalog(t, cfg, db+"-public-priced")
		_, s1 := logRun(t, cfg, catalog, nil)
		testpg.Exec(t, pg, db, `INSERT INTO priced VALUES (2, 999.99);
			ALTER TABLE priced ALTER COLUMN p TYPE numeric(10,2); INSERT INTO priced VALUES (3, 12345678.90);`)
		r, _ := logRun(t, cfg, catalog, s1)
		// The shape each record is read in: the SCHEMA in force before it.
		var shapes []string
		var current, announced string
		for _, m := range r.messages {
			switch m["type"] {
			case "SCHEMA":
				p := m["schema"].(map[string]any)["properties"].(map[string]any)["p"].(map[string]any)
				current = "SCHEMA max " + fmt.Sprint(p["maximum"])
			case "RECORD":
				if current != announced {
					shapes, announced = append(shapes, current), current
				}
				rec := m["record"].(map[string]any)
				shapes = append(shapes, fmt.Sprintf("RECORD %v %v", rec["id"], rec["p"]))
			}
		}
		want := "SCHEMA max 1000,RECORD 2 999.99,SCHEMA max 100000000,RECORD 3 12345678.90"
		if got := strings.Join(shapes, ","); got != want {
			t.Fatalf("messages:\n%s\nwant:\n%s", got, want)
		}
	})
}

// TestLogBasedReadAheadBounded: while the consumer stops reading, the
// stream reads ahead only so far in bytes, not a fixed number of messages
// of any size: changes of 1 MiB values leave the heap bounded.
func TestLogBasedReadAheadBounded(t *testing.T) {
	forEachDecoder(t, decoders, func(t *testing.T, dec decoder) {
		const rows, limit = 160, 112 << 20
		db := testpg.NewDatabase(t, pg)
		slot := slotFor(db)
		testpg.Exec(t, pg, db, `CREATE TABLE blobs (id integer PRIMARY KEY, body text); ALTER TABLE blobs ALTER COLUMN body SET STORAGE EXTERNAL;`)
		newSlot(t, db, slot, dec)
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"slot_name": slot}))
		catalog := logCatalog(t, cfg, db+"-public-blobs")
		_, s1 := logRun(t, cfg, catalog, nil)
		testpg.Exec(t, pg, db, fmt.Sprintf(`INSERT INTO blobs SELECT g, repeat(md5(g::text), 32768) FROM generate_series(1, %d) g`, rows))
		counted := &lcCountingWriter{}
		out := &pausingWriter{next: counted, after: 1, pause: 4 * time.Second}
		var code int
		var stderr bytes.Buffer
		peak := lcPeakHeap(func() {
			code = cli.Run(context.Background(), []string{"--config", cfg, "--catalog", catalog, "--state", writeFile(t, "state.json", s1)},
				cli.Env{Stdout: out, Stderr: &stderr})
		})
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, stderr.String())
		}
		if counted.records != rows {
			t.Fatalf("%d records, want %d", counted.records, rows)
		}
		t.Logf("peak HeapInuse %.1f MiB for %d changes of 1 MiB", float64(peak)/(1<<20), rows)
		if peak >= limit {
			t.Fatalf("peak HeapInuse %.1f MiB while the consumer paused, want under %d MiB", float64(peak)/(1<<20), limit>>20)
		}
	})
}

// TestLogBasedGeneratedColumns: a stored generated column, which pgoutput
// never sends before PostgreSQL 18 (wal2json does), and on 18 a virtual
// one, in no WAL at all, are in each change's record as in the copy's.
func TestLogBasedGeneratedColumns(t *testing.T) {
	forEachDecoder(t, decoders, func(t *testing.T, dec decoder) {
		db := testpg.NewDatabase(t, pg)
		slot := slotFor(db)
		virtual := ""
		if pg.Major() >= 18 {
			virtual = ", tripled integer GENERATED ALWAYS AS (n * 3) VIRTUAL"
		}
		testpg.Exec(t, pg, db, `CREATE TABLE calc (id integer PRIMARY KEY, n integer, doubled integer GENERATED ALWAYS AS (n * 2) STORED`+virtual+`);
			INSERT INTO calc (id, n) VALUES (1, 10), (2, 20);`)
		newSlot(t, db, slot, dec)
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"slot_name": slot}))
		catalog := logCatalog(t, cfg, db+"-public-calc")
		copied, s1 := logRun(t, cfg, catalog, nil)
		testpg.Exec(t, pg, db, `INSERT INTO calc (id, n) VALUES (3, 30); UPDATE calc SET n = 11 WHERE id = 1;`)
		streamed, _ := logRun(t, cfg, catalog, s1)
		for _, r := range []tapResult{copied, streamed} {
			for _, rec := range records(r.messages, "calc") {
				n, _ := strconv.Atoi(fmt.Sprint(rec["n"]))
				if got := fmt.Sprint(rec["doubled"]); got != strconv.Itoa(2*n) {
					t.Errorf("record %v: doubled %s, want %d", rec, got, 2*n)
				}
				if virtual != "" && fmt.Sprint(rec["tripled"]) != strconv.Itoa(3*n) {
					t.Errorf("record %v: tripled %v, want %d", rec, rec["tripled"], 3*n)
				}
			}
		}
		if n := len(records(streamed.messages, "calc")); n != 2 {
			t.Errorf("%d streamed records, want the insert and the update", n)
		}
	})
}

// TestLogBasedFromStandby: LOG_BASED reads a physical standby of the
// primary (PostgreSQL 16+): first copy, streaming, acknowledgement to the
// input state, clean stop. Before 16 a standby cannot decode: one CRITICAL
// says so before anything is copied.
func TestLogBasedFromStandby(t *testing.T) {
	ctx := t.Context()
	standby, err := pg.StartStandby(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { standby.Stop() })
	db := testpg.NewDatabase(t, pg)
	slot := slotFor(db)
	testpg.Exec(t, pg, db, `CREATE TABLE far (id integer PRIMARY KEY, v text); INSERT INTO far VALUES (1, 'one'), (2, 'two');
		CREATE PUBLICATION `+slot+` FOR TABLE far;`)
	if err := standby.WaitReplayed(ctx, pg); err != nil {
		t.Fatal(err)
	}
	cfg := configFor(db, map[string]any{"slot_name": slot})
	cfg["port"] = standby.Port
	cfgPath := writeFile(t, "config.json", cfg)
	catalog := logCatalog(t, cfgPath, db+"-public-far")
	if pg.Major() < 16 {
		wantCritical(t, runTap(t, cli.Env{}, "--config", cfgPath, "--catalog", catalog),
			"the server is a standby (in recovery), and PostgreSQL", "cannot decode changes on a standby (16 and later can)")
		return
	}
	// A slot made on a standby, and the copy's snapshot slot, wait for a
	// running-transactions record from the primary: keep writing one.
	snapshots, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		for snapshots.Err() == nil {
			_ = pg.Exec(snapshots, "postgres", "SELECT pg_log_standby_snapshot()")
			time.Sleep(100 * time.Millisecond)
		}
	}()
	testpg.Exec(t, standby, db, fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s', 'pgoutput')", slot))
	first, s1 := logRun(t, cfgPath, catalog, nil)
	if n := len(records(first.messages, "far")); n != 2 {
		t.Fatalf("first copy from the standby: %d records\n%s", n, first.stderr)
	}
	testpg.Exec(t, pg, db, `UPDATE far SET v = 'changed' WHERE id = 1; INSERT INTO far VALUES (3, 'three'); DELETE FROM far WHERE id = 2;`)
	if err := standby.WaitReplayed(ctx, pg); err != nil {
		t.Fatal(err)
	}
	streamed, s2 := logRun(t, cfgPath, catalog, s1)
	recs := records(streamed.messages, "far")
	if len(recs) != 3 || recs[0]["v"] != "changed" || fmt.Sprint(recs[1]["id"]) != "3" || recs[2]["_sdc_deleted_at"] == nil {
		t.Fatalf("changes streamed from the standby: %v\n%s", recs, streamed.stderr)
	}
	logRun(t, cfgPath, catalog, s2) // confirms s2's position
	var confirmed string
	conn, err := pgx.Connect(ctx, standby.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&confirmed); err != nil {
		t.Fatal(err)
	}
	if lsn, _ := pglogrepl.ParseLSN(confirmed); uint64(lsn) != bookmarkLSN(t, s2, db+"-public-far") {
		t.Errorf("the standby's slot is confirmed to %s, want the input state's %d", confirmed, bookmarkLSN(t, s2, db+"-public-far"))
	}
	t.Cleanup(func() {
		_ = standby.Exec(context.Background(), db, fmt.Sprintf("SELECT pg_drop_replication_slot('%s')", slot))
	})
}

// TestSlotHealth: a slot holding more WAL than slot_wal_warn_bytes is a
// WARNING; one that lost WAL it needs (max_slot_wal_keep_size) stops the
// run before anything is read, with the commands that recover.
func TestSlotHealth(t *testing.T) {
	if pg.Major() < 13 {
		t.Skip("wal_status and max_slot_wal_keep_size are PostgreSQL 13's")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	small, err := localpg.Start(ctx, localpg.Options{ExtraConf: []string{"max_slot_wal_keep_size = 32MB", "max_wal_size = 64MB", "min_wal_size = 32MB"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { small.Stop() })
	exec := func(sql string) {
		t.Helper()
		if err := small.Exec(ctx, "postgres", sql); err != nil {
			t.Fatal(err)
		}
	}
	exec(`CREATE TABLE kept (id integer PRIMARY KEY, v text); INSERT INTO kept VALUES (1, 'a');
		CREATE TABLE filler (v text); CREATE PUBLICATION health FOR TABLE kept;`)
	exec(`SELECT pg_create_logical_replication_slot('health', 'pgoutput')`)
	cfg := map[string]any{"host": small.Host, "port": small.Port, "user": small.User, "password": small.Password,
		"dbname": "postgres", "filter_dbs": "postgres", "slot_name": "health", "state_interval_seconds": 0, "slot_wal_warn_bytes": 1}
	cfgPath := writeFile(t, "config.json", cfg)
	catalog := logCatalog(t, cfgPath, "postgres-public-kept")
	_, state := logRun(t, cfgPath, catalog, nil)
	exec(`INSERT INTO filler SELECT repeat('x', 2000) FROM generate_series(1, 5000)`)
	warned, _ := logRun(t, cfgPath, catalog, state)
	if !strings.Contains(warned.stderr, "WARNING database \"postgres\": slot health holds ") || !strings.Contains(warned.stderr, "more than slot_wal_warn_bytes (1)") {
		t.Errorf("no WARNING for the WAL the slot holds:\n%s", warned.stderr)
	}
	// WAL past max_slot_wal_keep_size, removed at checkpoints: the slot,
	// confirmed only to the input state, loses it.
	for range 6 {
		exec(`INSERT INTO filler SELECT repeat(md5(random()::text), 64) FROM generate_series(1, 8000); SELECT pg_switch_wal(); CHECKPOINT;`)
	}
	var status string
	conn, err := pgx.Connect(ctx, small.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'health'").Scan(&status); err != nil || status != "lost" {
		t.Fatalf("slot wal_status %q (%v): the test did not make it lose WAL", status, err)
	}
	wantCritical(t, runTap(t, cli.Env{}, "--config", cfgPath, "--catalog", catalog, "--state", writeFile(t, "state.json", state)),
		`slot health has lost WAL it needs (wal_status lost`, `SELECT pg_drop_replication_slot('health'); SELECT * FROM pg_create_logical_replication_slot('health', 'pgoutput');`,
		"reset its LOG_BASED streams (postgres-public-kept)")
}
