package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/tap-postgres/tap-postgres/internal/cli"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

// decoder is one way a slot streams: its output plugin and, for pgoutput,
// whether its publication publishes partitions through their root.
type decoder struct {
	name, plugin string
	viaRoot      bool
}

var (
	wal2jsonDecoder = decoder{name: "wal2json", plugin: "wal2json"}
	// decoders are the ways every LOG_BASED behaviour is tested.
	decoders = []decoder{wal2jsonDecoder, {name: "pgoutput", plugin: "pgoutput", viaRoot: true}}
	// partitionDecoders add a publication that sends partitions' changes
	// under the partitions' own names.
	partitionDecoders = append(slices.Clone(decoders), decoder{name: "pgoutput_leaves", plugin: "pgoutput"})
)

// wantCritical checks that a run failed before emitting any record, with a
// last line CRITICAL holding every part.
func wantCritical(t *testing.T, r tapResult, parts ...string) {
	t.Helper()
	last := lastLine(r.stderr)
	if r.code != 1 || !strings.HasPrefix(last, "CRITICAL") {
		t.Fatalf("exit %d, last line %q", r.code, last)
	}
	for _, p := range parts {
		if !strings.Contains(last, p) {
			t.Errorf("CRITICAL %q lacks %q", last, p)
		}
	}
	if strings.Contains(r.stdout, `"RECORD"`) {
		t.Error("records emitted before the CRITICAL")
	}
}

// forEachDecoder runs test once per decoder, as a subtest of its own (and
// so with databases of its own).
func forEachDecoder(t *testing.T, ds []decoder, test func(t *testing.T, dec decoder)) {
	for _, d := range ds {
		t.Run(d.name, func(t *testing.T) {
			if d.plugin == "wal2json" {
				requireWal2json(t)
			}
			if d.viaRoot && pg.Major() < 13 {
				// PostgreSQL 12 publishes a partition's changes under its
				// own name only: the leaves' variant is the test there.
				if slices.ContainsFunc(ds, func(o decoder) bool { return o.plugin == d.plugin && !o.viaRoot }) {
					t.Skip("PostgreSQL 12 cannot publish through a partition root; the leaves' variant runs")
				}
				d.viaRoot = false
			}
			test(t, d)
		})
	}
}

// requireWal2json skips a test on a server without wal2json (the other
// majors' builds): pgoutput's tests run there.
func requireWal2json(t *testing.T) {
	t.Helper()
	if !pg.HasWal2json() {
		t.Skip("this server has no wal2json")
	}
}

// newSlot creates a slot for the decoder in db (for pgoutput with a
// publication of the slot's name holding every table, the tap's default)
// and drops it before the database.
func newSlot(t *testing.T, db, slot string, dec decoder) {
	t.Helper()
	if dec.plugin == "pgoutput" {
		with := "" // publish_via_partition_root is PostgreSQL 13's
		if dec.viaRoot {
			with = " WITH (publish_via_partition_root = true)"
		}
		testpg.Exec(t, pg, db, fmt.Sprintf("CREATE PUBLICATION %s FOR ALL TABLES%s", pgx.Identifier{slot}.Sanitize(), with))
	}
	testpg.Exec(t, pg, db, fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s', '%s')", slot, dec.plugin))
	t.Cleanup(func() {
		// A walsender may outlive the tap's connection by a moment, and an
		// active slot cannot be dropped: end it and wait for it to go.
		testpg.Exec(t, pg, db, fmt.Sprintf(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '%s' AND active_pid IS NOT NULL`, slot))
		deadline := time.Now().Add(15 * time.Second)
		for slotActivePID(t, db, slot) != 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		testpg.Exec(t, pg, db, fmt.Sprintf(`SELECT pg_drop_replication_slot('%[1]s') FROM pg_replication_slots WHERE slot_name = '%[1]s'`, slot))
	})
}

// slotFor derives a short valid slot name for a test database.
func slotFor(db string) string {
	if len(db) > 40 {
		return "s_" + db[len(db)-40:]
	}
	return "s_" + db
}

func logCatalog(t *testing.T, cfg string, ids ...string) string {
	t.Helper()
	catalog := discover(t, cfg)
	selectStreams(catalog, map[string]any{"replication-method": "LOG_BASED"}, ids...)
	return writeFile(t, "catalog.json", catalog)
}

// logRun runs the tap with an optional state and returns the result and the
// last STATE's value.
func logRun(t *testing.T, cfg, catalog string, state map[string]any) (tapResult, map[string]any) {
	t.Helper()
	args := []string{"--config", cfg, "--catalog", catalog}
	if state != nil {
		args = append(args, "--state", writeFile(t, "state.json", state))
	}
	r := runTap(t, cli.Env{}, args...)
	if r.code != 0 {
		t.Fatalf("tap exited %d:\n%s", r.code, r.stderr)
	}
	return r, lastState(t, r.messages)
}

func bookmarkLSN(t *testing.T, state map[string]any, id string) uint64 {
	t.Helper()
	bm, _ := state["bookmarks"].(map[string]any)[id].(map[string]any)
	n, ok := bm["lsn"].(json.Number)
	if !ok {
		t.Fatalf("no lsn bookmark for %s in %v", id, state)
	}
	v, err := strconv.ParseUint(n.String(), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// slotColumn reads one column of the slot's pg_replication_slots row as text.
func slotColumn(t *testing.T, db, slot, expr string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var text string
	if err := conn.QueryRow(ctx, "SELECT ("+expr+")::text FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&text); err != nil {
		t.Fatal(err)
	}
	return text
}

func slotConfirmed(t *testing.T, db, slot string) uint64 {
	t.Helper()
	lsn, err := pglogrepl.ParseLSN(slotColumn(t, db, slot, "confirmed_flush_lsn"))
	if err != nil {
		t.Fatal(err)
	}
	return uint64(lsn)
}

func recordByID(recs []map[string]any) map[string][]map[string]any {
	out := map[string][]map[string]any{}
	for _, r := range recs {
		id := fmt.Sprint(r["id"])
		out[id] = append(out[id], r)
	}
	return out
}

// TestLogBasedChangeKinds covers every change kind through a real wal2json
// slot: inserts, updates, deletes, key changes, multi-row and multi-table
// transactions, TRUNCATE, unchanged TOAST values with and without REPLICA
// IDENTITY FULL, schema drift, partitions routed to their root, and
// numerics beyond float precision.
func TestLogBasedChangeKinds(t *testing.T) {
	forEachDecoder(t, partitionDecoders, func(t *testing.T, dec decoder) {
		db := testpg.NewDatabase(t, pg)
		slot := slotFor(db)
		testpg.Exec(t, pg, db, `
		CREATE TABLE items (id integer PRIMARY KEY, name text, amount numeric(40,20), big text);
		CREATE TABLE full_items (id integer PRIMARY KEY, name text, big text);
		ALTER TABLE full_items REPLICA IDENTITY FULL;
		CREATE TABLE other (k text PRIMARY KEY, v integer);
		CREATE TABLE events (id integer, at date NOT NULL, what text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
		CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
		CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
		INSERT INTO items VALUES (1, 'one', 1, NULL), (2, 'two', 2, NULL), (3, 'three', 3, NULL);
		INSERT INTO full_items VALUES (1, 'one', NULL);
		INSERT INTO events VALUES (1, '2024-05-01', 'old');`)
		newSlot(t, db, slot, dec)
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"slot_name": slot}))
		catalog := logCatalog(t, cfg, db+"-public-items", db+"-public-full_items", db+"-public-other", db+"-public-events")

		first, s1 := logRun(t, cfg, catalog, nil)
		if n := len(records(first.messages, "items")); n != 3 {
			t.Fatalf("initial copy of items: %d records, want 3", n)
		}
		if n := len(records(first.messages, "events")); n != 1 {
			t.Fatalf("initial copy of events: %d records, want 1", n)
		}
		for _, r := range records(first.messages, "items") {
			if v, ok := r["_sdc_deleted_at"]; !ok || v != nil {
				t.Fatalf("copied record without a null _sdc_deleted_at: %v", r)
			}
		}
		version := streamVersion(first.messages, "items")

		// Incompressible values over 2 kB are stored out of line (TOAST).
		big := `(SELECT string_agg(md5(random()::text || g), '') FROM generate_series(1, 200) g)`
		testpg.Exec(t, pg, db, `
		INSERT INTO items VALUES (4, 'four', 12345678901234567890.12345678901234567890, NULL);
		UPDATE items SET name = 'one updated' WHERE id = 1;
		UPDATE items SET id = 20 WHERE id = 2;
		DELETE FROM items WHERE id = 3;`)
		testpg.Exec(t, pg, db, `BEGIN;
		INSERT INTO items VALUES (5, 'five', -0.00000000000000000001, `+big+`), (6, 'six', 6, NULL), (7, 'seven', 7, NULL);
		INSERT INTO other VALUES ('a', 1);
		INSERT INTO events VALUES (2, '2025-02-01', 'new partition row');
		UPDATE full_items SET big = `+big+` WHERE id = 1;
		COMMIT;`)
		testpg.Exec(t, pg, db, `UPDATE items SET name = 'five updated' WHERE id = 5;
		UPDATE full_items SET name = 'one updated' WHERE id = 1;
		TRUNCATE other; INSERT INTO other VALUES ('b', 2);`)
		testpg.Exec(t, pg, db, `ALTER TABLE items ADD COLUMN added text; INSERT INTO items (id, name, added) VALUES (8, 'eight', 'new column');`)
		testpg.Exec(t, pg, db, `ALTER TABLE items DROP COLUMN amount; INSERT INTO items (id, name) VALUES (9, 'nine');`)
		testpg.Exec(t, pg, db, `ALTER TABLE items ALTER COLUMN added TYPE integer USING NULL; INSERT INTO items (id, name, added) VALUES (10, 'ten', 10);`)

		second, s2 := logRun(t, cfg, catalog, s1)
		items := records(second.messages, "items")
		byID := recordByID(items)
		want := func(id string, check func(r map[string]any) bool, what string) {
			t.Helper()
			recs := byID[id]
			if len(recs) == 0 || !check(recs[len(recs)-1]) {
				t.Errorf("items id %s: %s; got %v", id, what, recs)
			}
		}
		want("4", func(r map[string]any) bool {
			n, ok := r["amount"].(json.Number)
			return ok && n.String() == "12345678901234567890.12345678901234567890"
		}, "numeric with 40 digits exact")
		want("1", func(r map[string]any) bool { return r["name"] == "one updated" && r["_sdc_deleted_at"] == nil }, "update")
		want("2", func(r map[string]any) bool { return r["_sdc_deleted_at"] != nil && len(r) == 2 }, "key change: delete of the old key first")
		want("20", func(r map[string]any) bool { return r["name"] == "two" }, "key change: new row")
		want("3", func(r map[string]any) bool {
			s, ok := r["_sdc_deleted_at"].(string)
			return ok && strings.HasSuffix(s, "+00:00") && len(r) == 2
		}, "delete: key and _sdc_deleted_at only")
		want("5", func(r map[string]any) bool {
			b, _ := r["big"].(string)
			return r["name"] == "five updated" && len(b) == 6400
		}, "update leaving a TOAST value unchanged keeps it (re-read by key)")
		want("8", func(r map[string]any) bool { return r["added"] == "new column" }, "added column synced")
		want("9", func(r map[string]any) bool { _, has := r["amount"]; return !has && r["name"] == "nine" }, "dropped column gone")
		want("10", func(r map[string]any) bool { return fmt.Sprint(r["added"]) == "10" }, "retyped column as its new type")
		order := ids(items)
		if i2, i20 := indexOf(order, "2"), indexOf(order, "20"); i2 < 0 || i20 < 0 || i2 > i20 {
			t.Errorf("key change order: %v", order)
		}
		full := records(second.messages, "full_items")
		if len(full) != 2 || len(full[1]["big"].(string)) != 6400 || full[1]["name"] != "one updated" {
			t.Errorf("REPLICA IDENTITY FULL update with unchanged TOAST: %v", full)
		}
		if ev := records(second.messages, "events"); len(ev) != 1 || ev[0]["what"] != "new partition row" {
			t.Errorf("partition change not routed to the root stream: %v", ev)
		}
		if others := records(second.messages, "other"); len(others) != 2 {
			t.Errorf("other: %v", others)
		}
		otherMsgs := streamMessages(second.messages, "other")
		if strings.Join(otherMsgs, ",") != "SCHEMA,RECORD,ACTIVATE_VERSION,RECORD" {
			t.Errorf("TRUNCATE: want an ACTIVATE_VERSION between the two inserts, got %v", otherMsgs)
		}
		var schemas []map[string]any
		for _, m := range second.messages {
			if m["type"] == "SCHEMA" && m["stream"] == "items" {
				schemas = append(schemas, m)
			}
		}
		// The catalog moved on past every change before this run read them: the
		// shapes come from the changes themselves, each announced before use.
		if len(schemas) < 4 {
			t.Fatalf("want a SCHEMA per shape change of items, got %d", len(schemas))
		}
		checkRecordsMatchSchemas(t, second.messages)
		props := func(m map[string]any) map[string]any {
			return m["schema"].(map[string]any)["properties"].(map[string]any)
		}
		last := props(schemas[len(schemas)-1])
		if _, ok := last["amount"]; ok {
			t.Error("the last SCHEMA still has the dropped column")
		}
		if typ := fmt.Sprint(last["added"].(map[string]any)["type"]); typ != "[null integer]" {
			t.Errorf("last SCHEMA: added is %s, want the retyped integer", typ)
		}
		if fmt.Sprint(schemas[0]["bookmark_properties"]) != "[lsn]" {
			t.Errorf("streaming SCHEMA bookmark_properties = %v", schemas[0]["bookmark_properties"])
		}
		if streamVersion(second.messages, "items") != 0 {
			t.Error("items got an ACTIVATE_VERSION without a TRUNCATE")
		}
		for _, r := range second.messages {
			if r["type"] == "RECORD" && r["stream"] == "items" && r["version"].(json.Number).String() != fmt.Sprint(version) {
				t.Fatalf("streamed record in version %v, the copy was %d", r["version"], version)
			}
		}
		if bookmarkLSN(t, s2, db+"-public-items") <= bookmarkLSN(t, s1, db+"-public-items") {
			t.Error("lsn bookmark did not advance")
		}
	})
}

// checkRecordsMatchSchemas validates every RECORD against the latest SCHEMA
// of its stream: no unannounced column, every value of an announced type.
func checkRecordsMatchSchemas(t *testing.T, msgs []map[string]any) {
	t.Helper()
	latest := map[string]map[string]any{}
	for _, m := range msgs {
		stream, _ := m["stream"].(string)
		switch m["type"] {
		case "SCHEMA":
			latest[stream] = m["schema"].(map[string]any)["properties"].(map[string]any)
		case "RECORD":
			props := latest[stream]
			if props == nil {
				t.Fatalf("RECORD before any SCHEMA of %s", stream)
			}
			for col, v := range m["record"].(map[string]any) {
				p, ok := props[col].(map[string]any)
				if !ok {
					t.Fatalf("stream %s: record column %q not in the latest SCHEMA: %v", stream, col, m["record"])
				}
				allowed := fmt.Sprint(p["type"])
				if !strings.Contains(allowed, jsonType(v)) && !(jsonType(v) == "integer" && strings.Contains(allowed, "number")) {
					t.Fatalf("stream %s column %q: %s value %v, SCHEMA allows %s", stream, col, jsonType(v), v, allowed)
				}
			}
		}
	}
}

func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		if strings.ContainsAny(x.String(), ".eE") {
			return "number"
		}
		return "integer"
	case []any:
		return "array"
	}
	return "object"
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// TestLogBasedValuesMatchCopy: every type of the core table arrives through
// the log with the same JSON as through the copy.
func TestLogBasedValuesMatchCopy(t *testing.T) {
	forEachDecoder(t, decoders, func(t *testing.T, dec decoder) {
		db := testpg.NewDatabase(t, pg)
		slot := slotFor(db)
		createEveryTypeTable(t, db, "public.every_type")
		newSlot(t, db, slot, dec)
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"slot_name": slot}))
		catalog := logCatalog(t, cfg, db+"-public-every_type")
		first, s1 := logRun(t, cfg, catalog, nil)
		var cols []string
		for _, c := range everyTypeColumns() {
			cols = append(cols, pgx.Identifier{c.name}.Sanitize())
		}
		testpg.Exec(t, pg, db, "INSERT INTO every_type (id, "+strings.Join(cols, ", ")+") SELECT id + 100, "+strings.Join(cols, ", ")+" FROM every_type")
		second, _ := logRun(t, cfg, catalog, s1)
		copied, logged := rawRecords(t, first.stdout, "every_type"), rawRecords(t, second.stdout, "every_type")
		if len(copied) != len(everyTypeRows)+1 || len(logged) != len(copied) {
			t.Fatalf("copied %d rows, logged %d", len(copied), len(logged))
		}
		for id, rec := range copied {
			for col, v := range rec {
				if col == "id" {
					continue
				}
				if got := logged[id+100][col]; string(got) != string(v) {
					t.Errorf("row %d column %s: copy %s, log %s", id, col, v, got)
				}
			}
		}
	})
}

// TestLogBasedAcknowledgesOnlyStartState reads confirmed_flush_lsn while a
// run streams new changes: the slot reaches the input state's lsn within
// 10 s of the start and never passes it, though the run emits more.
func TestLogBasedAcknowledgesOnlyStartState(t *testing.T) {
	forEachDecoder(t, decoders, func(t *testing.T, dec decoder) {
		db := testpg.NewDatabase(t, pg)
		slot := slotFor(db)
		testpg.Exec(t, pg, db, "CREATE TABLE acked (id integer PRIMARY KEY, v text)")
		newSlot(t, db, slot, dec)
		id := db + "-public-acked"
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"slot_name": slot}))
		catalog := logCatalog(t, cfg, id)
		_, s1 := logRun(t, cfg, catalog, nil)
		testpg.Exec(t, pg, db, "INSERT INTO acked SELECT g, 'first' FROM generate_series(1, 100) g")
		_, s2 := logRun(t, cfg, catalog, s1)
		startLSN := bookmarkLSN(t, s2, id)
		before := slotConfirmed(t, db, slot)
		if before >= startLSN {
			t.Fatalf("slot already at %d before the run that should confirm %d", before, startLSN)
		}

		long := writeFile(t, "long.json", configFor(db, map[string]any{"slot_name": slot, "break_at_end_lsn": false, "logical_poll_total_seconds": 6}))
		done := make(chan tapResult)
		start := time.Now()
		go func() {
			done <- runTap(t, cli.Env{}, "--config", long, "--catalog", catalog, "--state", writeFile(t, "s2.json", s2))
		}()
		var reachedAt time.Duration
		var r tapResult
		writes := 0
	poll:
		for {
			select {
			case r = <-done:
				break poll
			case <-time.After(100 * time.Millisecond):
			}
			if writes < 20 {
				writes++
				testpg.Exec(t, pg, db, fmt.Sprintf("INSERT INTO acked VALUES (%d, 'during')", 1000+writes))
			}
			c := slotConfirmed(t, db, slot)
			if c > startLSN {
				t.Fatalf("slot confirmed to %d, past the input state's lsn %d", c, startLSN)
			}
			if c == startLSN && reachedAt == 0 {
				reachedAt = time.Since(start)
			}
		}
		if r.code != 0 {
			t.Fatalf("exit %d:\n%s", r.code, r.stderr)
		}
		if reachedAt == 0 || reachedAt > 10*time.Second {
			t.Fatalf("slot reached the state's lsn after %v (0 = never)", reachedAt)
		}
		if n := len(records(r.messages, "acked")); n < 20 {
			t.Fatalf("the run emitted %d records of the 20 written during it", n)
		}
		final := lastState(t, r.messages)
		if bookmarkLSN(t, final, id) <= startLSN {
			t.Fatal("the run's own bookmark did not advance")
		}
		if c := slotConfirmed(t, db, slot); c != startLSN {
			t.Fatalf("after the run the slot is at %d, want exactly the input state's %d", c, startLSN)
		}
	})
}

// TestLogBasedIdleDatabase: over an idle database a run ends in seconds, and
// its bookmark moves so that the next run advances the slot.
func TestLogBasedIdleDatabase(t *testing.T) {
	forEachDecoder(t, decoders, func(t *testing.T, dec decoder) {
		db := testpg.NewDatabase(t, pg)
		slot := slotFor(db)
		testpg.Exec(t, pg, db, "CREATE TABLE quiet (id integer PRIMARY KEY)")
		newSlot(t, db, slot, dec)
		id := db + "-public-quiet"
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"slot_name": slot}))
		catalog := logCatalog(t, cfg, id)
		_, s1 := logRun(t, cfg, catalog, nil)
		// Other databases' activity moves the WAL; this one stays idle.
		testpg.Exec(t, pg, "postgres", "CREATE TABLE IF NOT EXISTS noise (x integer); INSERT INTO noise VALUES (1)")
		start := time.Now()
		r, s2 := logRun(t, cfg, catalog, s1)
		if took := time.Since(start); took > 10*time.Second {
			t.Fatalf("an idle run took %v", took)
		}
		if len(records(r.messages, "quiet")) != 0 {
			t.Fatal("records from an idle database")
		}
		l1, l2 := bookmarkLSN(t, s1, id), bookmarkLSN(t, s2, id)
		if l2 <= l1 {
			t.Fatalf("idle run did not move the bookmark: %d -> %d", l1, l2)
		}
		_, _ = logRun(t, cfg, catalog, s2)
		if c := slotConfirmed(t, db, slot); c != l2 {
			t.Fatalf("slot at %d after the next run, want %d", c, l2)
		}
	})
}

// TestLogBasedRefusals: slot problems and views are CRITICAL before any
// message; a table without key or REPLICA IDENTITY FULL gets a WARNING.
func TestLogBasedRefusals(t *testing.T) {
	forEachDecoder(t, decoders, func(t *testing.T, dec decoder) {
		db := testpg.NewDatabase(t, pg)
		slot := slotFor(db)
		testpg.Exec(t, pg, db, `CREATE TABLE t (id integer PRIMARY KEY); CREATE TABLE nokey (v integer);
		CREATE VIEW v AS SELECT * FROM t;`)
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"slot_name": slot}))
		tCatalog := logCatalog(t, cfg, db+"-public-t")
		wantCritical(t, runTap(t, cli.Env{}, "--config", cfg, "--catalog", tCatalog), slot, "pg_create_logical_replication_slot('"+slot+"', 'pgoutput')", "CREATE PUBLICATION")

		viewCatalog := logCatalog(t, cfg, db+"-public-v")
		wantCritical(t, runTap(t, cli.Env{}, "--config", cfg, "--catalog", viewCatalog), db+"-public-v", "view")

		newSlot(t, db, slot, dec)
		nokey := logCatalog(t, cfg, db+"-public-nokey")
		r := runTap(t, cli.Env{}, "--config", cfg, "--catalog", nokey)
		if r.code != 0 || !strings.Contains(r.stderr, "WARNING stream "+db+"-public-nokey has no primary key and no REPLICA IDENTITY FULL") {
			t.Fatalf("no-key table: exit %d, stderr:\n%s", r.code, r.stderr)
		}

		_, s1 := logRun(t, cfg, tCatalog, nil)
		testpg.Exec(t, pg, db, "INSERT INTO t VALUES (1)")
		_, s2 := logRun(t, cfg, tCatalog, s1)
		_, _ = logRun(t, cfg, tCatalog, s2) // confirms s2's lsn
		wantCritical(t, runTap(t, cli.Env{}, "--config", cfg, "--catalog", tCatalog, "--state", writeFile(t, "old.json", s1)),
			"past stream "+db+"-public-t", "reset")
	})
}

// TestLogBasedFormat1 streams the same changes with wal2json's format 1
// (write-in-chunks) and expects the records format 2 gives.
func TestLogBasedFormat1(t *testing.T) {
	requireWal2json(t)
	db := testpg.NewDatabase(t, pg)
	slot := slotFor(db)
	testpg.Exec(t, pg, db, `CREATE TABLE f1 (id integer PRIMARY KEY, n numeric, b bytea, t text);
		INSERT INTO f1 VALUES (1, 1, '\x01', 'one');`)
	newSlot(t, db, slot, wal2jsonDecoder)
	id := db + "-public-f1"
	changes := `BEGIN; INSERT INTO f1 VALUES (2, 98765432109876543210.0123456789, '\xdeadbeef', 'two "quoted"');
		INSERT INTO f1 VALUES (3, NULL, NULL, NULL); UPDATE f1 SET t = 'one updated' WHERE id = 1; COMMIT;
		UPDATE f1 SET id = 4 WHERE id = 3; DELETE FROM f1 WHERE id = 2;`
	var outputs [2][]map[string]any
	for i, format := range []int{1, 2} {
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"slot_name": slot, "wal2json_message_format": format}))
		catalog := logCatalog(t, cfg, id)
		testpg.Exec(t, pg, db, "DELETE FROM f1 WHERE id <> 1; UPDATE f1 SET t = 'one'")
		_, s1 := logRun(t, cfg, catalog, nil)
		testpg.Exec(t, pg, db, changes)
		r, s2 := logRun(t, cfg, catalog, s1)
		if bookmarkLSN(t, s2, id) <= bookmarkLSN(t, s1, id) {
			t.Fatalf("format %d: bookmark did not advance", format)
		}
		for _, rec := range records(r.messages, "f1") {
			delete(rec, "_sdc_deleted_at")
			outputs[i] = append(outputs[i], rec)
		}
	}
	if len(outputs[0]) != 6 || fmt.Sprint(outputs[0]) != fmt.Sprint(outputs[1]) {
		t.Fatalf("format 1 records:\n%v\nformat 2 records:\n%v", outputs[0], outputs[1])
	}
}

// TestLogBasedToastBatch updates thousands of rows whose TOAST values stay
// unchanged, in one transaction and without REPLICA IDENTITY FULL: every
// record carries its own row's value, re-read in batches by key.
func TestLogBasedToastBatch(t *testing.T) {
	forEachDecoder(t, decoders, func(t *testing.T, dec decoder) {
		db := testpg.NewDatabase(t, pg)
		slot := slotFor(db)
		testpg.Exec(t, pg, db, `CREATE TABLE docs (id integer PRIMARY KEY, title text, body text);
		INSERT INTO docs SELECT g, 't' || g, g || ':' || (SELECT string_agg(md5(g::text || x), '') FROM generate_series(1, 100) x)
		FROM generate_series(1, 2500) g;`)
		newSlot(t, db, slot, dec)
		id := db + "-public-docs"
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"slot_name": slot}))
		catalog := logCatalog(t, cfg, id)
		_, s1 := logRun(t, cfg, catalog, nil)
		testpg.Exec(t, pg, db, `BEGIN; UPDATE docs SET title = 'new ' || id; DELETE FROM docs WHERE id = 7;
		UPDATE docs SET title = 'again' WHERE id = 8; COMMIT;`)
		r, _ := logRun(t, cfg, catalog, s1)
		recs := records(r.messages, "docs")
		if len(recs) != 2502 {
			t.Fatalf("%d records, want 2500 updates, 1 delete and 1 more update", len(recs))
		}
		seen := map[string]int{}
		for i, rec := range recs {
			id := fmt.Sprint(rec["id"])
			seen[id]++
			if rec["_sdc_deleted_at"] != nil {
				if id != "7" {
					t.Errorf("unexpected delete %v", rec)
				}
				continue
			}
			body, has := rec["body"].(string)
			if id == "7" && !has {
				// Deleted before its TOAST value could be re-read: the value is
				// left out (never null), and the delete follows.
				continue
			}
			if !strings.HasPrefix(body, id+":") || len(body) < 3000 {
				t.Fatalf("record %d (id %s) has body %.40q: unchanged TOAST value lost or mixed up", i, id, body)
			}
		}
		if order := ids(recs); order[len(order)-1] != "8" || recs[len(recs)-1]["title"] != "again" {
			t.Fatalf("records out of order: last is %v", recs[len(recs)-1])
		}
		checkRecordsMatchSchemas(t, r.messages)
	})
}

// TestConnectionCheck runs --test: server and readable tables, and for
// LOG_BASED streams the slot, one line per problem and exit 0/1.
func TestConnectionCheck(t *testing.T) {
	forEachDecoder(t, decoders, func(t *testing.T, dec decoder) {
		db := testpg.NewDatabase(t, pg)
		slot := slotFor(db)
		testpg.Exec(t, pg, db, "CREATE TABLE checked (id integer PRIMARY KEY)")
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"slot_name": slot}))
		plain := runTap(t, cli.Env{}, "--config", cfg, "--test")
		if plain.code != 0 || !strings.Contains(plain.stderr, "INFO server: PostgreSQL ") {
			t.Fatalf("--test: exit %d\n%s", plain.code, plain.stderr)
		}
		catalog := logCatalog(t, cfg, db+"-public-checked")
		noSlot := runTap(t, cli.Env{}, "--config", cfg, "--test", "--catalog", catalog)
		if noSlot.code != 1 || !strings.Contains(noSlot.stderr, "ERROR database \""+db+"\" has no logical replication slot") ||
			!strings.Contains(noSlot.stderr, "INFO stream "+db+"-public-checked: readable") {
			t.Fatalf("--test without slot: exit %d\n%s", noSlot.code, noSlot.stderr)
		}
		newSlot(t, db, slot, dec)
		ok := runTap(t, cli.Env{}, "--config", cfg, "--test", "--catalog", catalog)
		if ok.code != 0 || !strings.Contains(ok.stderr, "slot "+slot+" ("+dec.plugin+") is ready") {
			t.Fatalf("--test with slot: exit %d\n%s", ok.code, ok.stderr)
		}
		testpg.Exec(t, pg, db, "DROP TABLE checked")
		gone := runTap(t, cli.Env{}, "--config", cfg, "--test", "--catalog", catalog)
		if gone.code != 1 || !strings.Contains(gone.stderr, "ERROR selected stream "+db+"-public-checked no longer exists") {
			t.Fatalf("--test with a dropped table: exit %d\n%s", gone.code, gone.stderr)
		}
	})
}

// TestLogBasedReferenceInterruptedCopy: a state the reference tap wrote in
// the middle of a LOG_BASED copy (an xmin beside the lsn) copies the table
// again instead of trusting a half-done copy.
func TestLogBasedReferenceInterruptedCopy(t *testing.T) {
	forEachDecoder(t, decoders, func(t *testing.T, dec decoder) {
		db := testpg.NewDatabase(t, pg)
		slot := slotFor(db)
		testpg.Exec(t, pg, db, "CREATE TABLE ref (id integer PRIMARY KEY); INSERT INTO ref SELECT generate_series(1, 50)")
		newSlot(t, db, slot, dec)
		id := db + "-public-ref"
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"slot_name": slot}))
		catalog := logCatalog(t, cfg, id)
		lsn := slotConfirmed(t, db, slot)
		state := map[string]any{"currently_syncing": id, "bookmarks": map[string]any{
			id: map[string]any{"last_replication_method": "LOG_BASED", "lsn": lsn, "version": 1700000000000, "xmin": 4242}}}
		r, final := logRun(t, cfg, catalog, state)
		if n := len(records(r.messages, "ref")); n != 50 {
			t.Fatalf("%d records, want the table copied again (50)", n)
		}
		if bookmarkLSN(t, final, id) < lsn {
			t.Fatal("the lsn went backwards")
		}
		if _, still := final["bookmarks"].(map[string]any)[id].(map[string]any)["xmin"]; still {
			t.Fatal("xmin kept in our state")
		}
	})
}

// TestLogBasedTypeSpellings: types wal2json spells differently from
// format_type ("char"), user types outside the search path and domains
// stream without spurious shape changes, with the copy's values.
func TestLogBasedTypeSpellings(t *testing.T) {
	forEachDecoder(t, decoders, func(t *testing.T, dec decoder) {
		db := testpg.NewDatabase(t, pg)
		slot := slotFor(db)
		testpg.Exec(t, pg, db, `CREATE SCHEMA "odd Schema";
		CREATE TYPE "odd Schema".mood AS ENUM ('calm', 'storm');
		CREATE DOMAIN "odd Schema".short AS varchar(5);
		CREATE TABLE "odd Schema".spelled (id integer PRIMARY KEY, c "char", m "odd Schema".mood, d "odd Schema".short,
			b bit(1), n numeric(6,2), ms "odd Schema".mood[]);
		INSERT INTO "odd Schema".spelled VALUES (1, 'a', 'calm', 'x', B'1', 1.5, '{calm}');`)
		newSlot(t, db, slot, dec)
		id := db + "-odd Schema-spelled"
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"slot_name": slot}))
		catalog := logCatalog(t, cfg, id)
		first, s1 := logRun(t, cfg, catalog, nil)
		testpg.Exec(t, pg, db, `INSERT INTO "odd Schema".spelled SELECT id + 1, c, m, d, b, n, ms FROM "odd Schema".spelled`)
		second, _ := logRun(t, cfg, catalog, s1)
		if n := len(streamMessages(second.messages, "spelled")); n != 2 {
			t.Fatalf("want one SCHEMA and one RECORD, got %v", streamMessages(second.messages, "spelled"))
		}
		copied, logged := rawRecords(t, first.stdout, "spelled")[1], rawRecords(t, second.stdout, "spelled")[2]
		for col, v := range copied {
			if col != "id" && string(logged[col]) != string(v) {
				t.Errorf("column %s: copy %s, log %s", col, v, logged[col])
			}
		}
	})
}

// TestLogBasedCopyKilledBeforeFirstKey: a first run stopped after its first
// STATE but before any row still copies the table on the next run (its lsn
// alone must not make the copy look done).
func TestLogBasedCopyKilledBeforeFirstKey(t *testing.T) {
	forEachDecoder(t, decoders, func(t *testing.T, dec decoder) {
		db := testpg.NewDatabase(t, pg)
		slot := slotFor(db)
		createNumbered(t, db, "public.early", 300)
		newSlot(t, db, slot, dec)
		id := db + "-public-early"
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"slot_name": slot}))
		catalog := logCatalog(t, cfg, id)
		for _, stopAfter := range []int{3, 2} { // SCHEMA, ACTIVATE_VERSION, STATE | SCHEMA, ACTIVATE_VERSION
			crashed := &lineWriter{limit: stopAfter}
			runTap(t, cli.Env{Stdout: crashed}, "--config", cfg, "--catalog", catalog)
			msgs := parseMessages(t, crashed.buf.Bytes())
			var state map[string]any
			for _, m := range msgs {
				if m["type"] == "STATE" {
					state = m["value"].(map[string]any)
				}
			}
			r, final := logRun(t, cfg, catalog, state)
			if n := len(records(r.messages, "early")); n != 300 {
				t.Fatalf("stopped after %d lines (state %v): the next run emitted %d records, want the whole table (300)", stopAfter, state, n)
			}
			if _, inProgress := final["bookmarks"].(map[string]any)[id].(map[string]any)["copy_in_progress"]; inProgress {
				t.Fatal("copy_in_progress left in the final state")
			}
		}
	})
}

// TestLogBasedPartitionTruncateAndToastBytea: truncating one partition does
// not empty the root in the target (the root is copied again next run), and
// a bytea TOAST value re-read by key stays valid JSON in its text form.
func TestLogBasedPartitionTruncateAndToastBytea(t *testing.T) {
	forEachDecoder(t, partitionDecoders, func(t *testing.T, dec decoder) {
		db := testpg.NewDatabase(t, pg)
		slot := slotFor(db)
		testpg.Exec(t, pg, db, `CREATE TABLE ev (id integer, at date NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
		CREATE TABLE ev_1 PARTITION OF ev FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
		CREATE TABLE ev_2 PARTITION OF ev FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
		INSERT INTO ev VALUES (1, '2024-02-02'), (150, '2025-02-02');
		CREATE TABLE blobs (id integer PRIMARY KEY, name text, data bytea);
		INSERT INTO blobs SELECT 1, 'one', decode(string_agg(md5(g::text), ''), 'hex') FROM generate_series(1, 300) g;`)
		newSlot(t, db, slot, dec)
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"slot_name": slot}))
		catalog := logCatalog(t, cfg, db+"-public-ev", db+"-public-blobs")
		_, s1 := logRun(t, cfg, catalog, nil)
		testpg.Exec(t, pg, db, "TRUNCATE ev_1; UPDATE blobs SET name = 'renamed'")
		r, s2 := logRun(t, cfg, catalog, s1)
		if dec.viaRoot {
			// PostgreSQL publishes no TRUNCATE of one partition through the
			// root: the tap can only say so before it streams.
			if !strings.Contains(r.stderr, "does not publish a TRUNCATE of one partition of \"public\".\"ev\"") {
				t.Fatalf("no WARNING about partition truncates through the root:\n%s", r.stderr)
			}
			if blobs := records(r.messages, "blobs"); len(blobs) != 1 || len(fmt.Sprint(blobs[0]["data"])) != 2+9600 {
				t.Fatalf("bytea TOAST value re-read: %.60v", blobs)
			}
			return
		}
		if strings.Contains(strings.Join(streamMessages(r.messages, "ev"), ","), "ACTIVATE_VERSION") {
			t.Fatal("a truncated partition sent ACTIVATE_VERSION for the whole root")
		}
		if !strings.Contains(r.stderr, "partition \"public\".\"ev_1\" was truncated") {
			t.Fatalf("no WARNING for the truncated partition:\n%s", r.stderr)
		}
		if _, kept := s2["bookmarks"].(map[string]any)[db+"-public-ev"]; kept {
			t.Fatal("the root's bookmark was kept: it would not be copied again")
		}
		blobs := records(r.messages, "blobs")
		if len(blobs) != 1 || !strings.HasPrefix(fmt.Sprint(blobs[0]["data"]), `\x`) || len(fmt.Sprint(blobs[0]["data"])) != 2+9600 {
			t.Fatalf("bytea TOAST value re-read: %.60v", blobs)
		}
		again, _ := logRun(t, cfg, catalog, s2)
		if got := records(again.messages, "ev"); len(got) != 1 || fmt.Sprint(got[0]["id"]) != "150" {
			t.Fatalf("the root was not copied again with what is left: %v", got)
		}
	})
}

// TestLogBasedPartitionCreatedDuringRun: a partition created and written
// while a run streams reaches its root's stream.
func TestLogBasedPartitionCreatedDuringRun(t *testing.T) {
	forEachDecoder(t, partitionDecoders, func(t *testing.T, dec decoder) {
		db := testpg.NewDatabase(t, pg)
		slot := slotFor(db)
		testpg.Exec(t, pg, db, `CREATE TABLE ev (id integer, at date NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
		CREATE TABLE ev_1 PARTITION OF ev FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
		CREATE TABLE unrelated (id integer PRIMARY KEY);
		INSERT INTO ev VALUES (1, '2024-02-02');`)
		newSlot(t, db, slot, dec)
		cfg := configFor(db, map[string]any{"slot_name": slot})
		catalog := logCatalog(t, writeFile(t, "config.json", cfg), db+"-public-ev")
		_, s1 := logRun(t, writeFile(t, "config.json", cfg), catalog, nil)
		cfg["break_at_end_lsn"], cfg["logical_poll_total_seconds"] = false, 6
		done := make(chan tapResult)
		go func() {
			done <- runTap(t, cli.Env{}, "--config", writeFile(t, "long.json", cfg), "--catalog", catalog, "--state", writeFile(t, "s1.json", s1))
		}()
		time.Sleep(time.Second)
		testpg.Exec(t, pg, db, `CREATE TABLE ev_2 PARTITION OF ev FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
		INSERT INTO ev VALUES (150, '2025-02-02'); INSERT INTO unrelated VALUES (7);`)
		r := <-done
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.stderr)
		}
		got := records(r.messages, "ev")
		if len(got) != 1 || fmt.Sprint(got[0]["id"]) != "150" {
			t.Fatalf("the new partition's row did not reach the root: %v\n%s", got, r.stderr)
		}
		if len(records(r.messages, "unrelated")) != 0 {
			t.Fatal("an unselected table's change was emitted")
		}
	})
}

// TestLogBasedToastOddKeys: unchanged TOAST values are re-read for rows
// keyed by a boolean or a bytea, whose text wal2json writes differently.
func TestLogBasedToastOddKeys(t *testing.T) {
	forEachDecoder(t, decoders, func(t *testing.T, dec decoder) {
		db := testpg.NewDatabase(t, pg)
		slot := slotFor(db)
		big := `(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 200) g)`
		testpg.Exec(t, pg, db, `CREATE TABLE by_bool (k boolean PRIMARY KEY, name text, body text);
		CREATE TABLE by_bytea (k bytea PRIMARY KEY, name text, body text);
		INSERT INTO by_bool VALUES (true, 'a', `+big+`), (false, 'b', `+big+`);
		INSERT INTO by_bytea VALUES ('\x0102', 'a', `+big+`);`)
		newSlot(t, db, slot, dec)
		cfg := writeFile(t, "config.json", configFor(db, map[string]any{"slot_name": slot}))
		catalog := logCatalog(t, cfg, db+"-public-by_bool", db+"-public-by_bytea")
		_, s1 := logRun(t, cfg, catalog, nil)
		testpg.Exec(t, pg, db, "UPDATE by_bool SET name = 'x'; UPDATE by_bytea SET name = 'x'")
		r, _ := logRun(t, cfg, catalog, s1)
		for _, stream := range []string{"by_bool", "by_bytea"} {
			recs := records(r.messages, stream)
			if len(recs) == 0 {
				t.Fatalf("%s: no records", stream)
			}
			for _, rec := range recs {
				if body, _ := rec["body"].(string); len(body) != 6400 {
					t.Fatalf("%s: unchanged TOAST value missing: %.80v", stream, rec)
				}
			}
		}
	})
}
