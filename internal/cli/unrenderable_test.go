package cli_test

import (
	"strings"
	"testing"

	"github.com/tap-postgres/tap-postgres/internal/cli"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

// TestChangeWal2jsonCannotRender: a 180 MB text of control characters
// escapes past PostgreSQL's 1 GB string limit inside wal2json, which
// fails the slot on that transaction at every run (the server's doing). The CRITICAL names the
// transaction and the way past it; the changes before it are delivered.
func TestChangeWal2jsonCannotRender(t *testing.T) {
	requireWal2json(t)
	db := testpg.NewDatabase(t, pg)
	slot := slotFor(db)
	testpg.Exec(t, pg, db, `CREATE TABLE big (id integer PRIMARY KEY, v text); INSERT INTO big VALUES (1, 'small');`)
	newSlot(t, db, slot, wal2jsonDecoder)
	cfg := writeFile(t, "config.json", configFor(db, map[string]any{"slot_name": slot}))
	catalog := logCatalog(t, cfg, db+"-public-big")
	_, state := logRun(t, cfg, catalog, nil)
	testpg.Exec(t, pg, db, `INSERT INTO big VALUES (2, 'before')`)
	testpg.Exec(t, pg, db, `INSERT INTO big VALUES (3, repeat(chr(1), 180000000))`)
	testpg.Exec(t, pg, db, `INSERT INTO big VALUES (4, 'after')`)
	stdout := &strings.Builder{}
	r := runTap(t, cli.Env{Stdout: stdout}, "--config", cfg, "--catalog", catalog, "--state", writeFile(t, "state.json", state))
	last := lastLine(r.stderr)
	for _, want := range []string{"CRITICAL", "cannot decode the transaction that begins at 0/", "(SQLSTATE 54000)", "at most 1 GB",
		"Get past it with pgoutput", "CREATE PUBLICATION", "pg_create_logical_replication_slot('" + slot + "', 'pgoutput')", "reset the LOG_BASED streams"} {
		if r.code != 1 || !strings.Contains(last, want) {
			t.Fatalf("exit %d, last line lacks %q:\n%s", r.code, want, r.stderr)
		}
	}
	t.Log(last)
	// The transaction before it is delivered.
	if !strings.Contains(stdout.String(), `"v":"before"`) {
		t.Errorf("the change before the one wal2json cannot render is missing:\n%.2000s", stdout.String())
	}
}

// TestRowLargerThanMaxRowBytes: a row or change past max_row_bytes stops
// the run with a CRITICAL naming it, rows before it delivered and
// committed; with the limit raised the next run goes on from there.
func TestRowLargerThanMaxRowBytes(t *testing.T) {
	forEachDecoder(t, decoders, func(t *testing.T, dec decoder) {
		db := testpg.NewDatabase(t, pg)
		slot := slotFor(db)
		testpg.Exec(t, pg, db, `CREATE TABLE wide (id integer PRIMARY KEY, at timestamptz NOT NULL, v text);
			INSERT INTO wide SELECT g, timestamptz '2024-01-01' + g * interval '1 day', 'small' FROM generate_series(1, 7) g;
			UPDATE wide SET v = repeat('x', 2000000) WHERE id = 6;`)
		newSlot(t, db, slot, dec)
		small := map[string]any{"slot_name": slot, "max_row_bytes": 1 << 20}
		if dec.plugin == "pgoutput" && dec.viaRoot {
			// The first row read too large, no key read before it.
			testpg.Exec(t, pg, db, `CREATE TABLE alone (id integer PRIMARY KEY, v text); INSERT INTO alone VALUES (1, repeat('z', 2000000));`)
			cfg := writeFile(t, "config.json", configFor(db, small))
			r := runTap(t, cli.Env{}, "--config", cfg, "--catalog", fullTableCatalog(t, cfg, db+"-public-alone"))
			if last := lastLine(r.stderr); r.code != 1 || !strings.Contains(last, `the row with key {"id":"1"} is 2000`) {
				t.Fatalf("a first row too large: exit %d:\n%s", r.code, r.stderr)
			}
			testpg.Exec(t, pg, db, `DROP TABLE alone`)
		}
		big := map[string]any{"slot_name": slot, "max_row_bytes": 4 << 20}
		id := db + "-public-wide"
		for method, extra := range map[string]map[string]any{
			"FULL_TABLE":  {"replication-method": "FULL_TABLE"},
			"INCREMENTAL": {"replication-method": "INCREMENTAL", "replication-key": "at"},
		} {
			cfg := writeFile(t, "config.json", configFor(db, small))
			c := discover(t, cfg)
			selectStreams(c, extra, id)
			catalog := writeFile(t, "catalog.json", c)
			stdout := &strings.Builder{}
			r := runTap(t, cli.Env{Stdout: stdout}, "--config", cfg, "--catalog", catalog)
			want := `the row with key {"id":"6"} is 2000`
			if method == "INCREMENTAL" {
				want = "the row after at \"2024-01-06T00:00:00+00:00\" (in at order) is 2000"
			}
			if last := lastLine(r.stderr); r.code != 1 || !strings.Contains(last, want) || !strings.Contains(last, "more than max_row_bytes (1048576)") {
				t.Fatalf("%s: exit %d, last line lacks %q:\n%s", method, r.code, want, r.stderr)
			}
			msgs := parseMessages(t, []byte(stdout.String()))
			if got := len(records(msgs, "wide")); got != 5 {
				t.Errorf("%s: %d records before the large row, want 5", method, got)
			}
			again := runTap(t, cli.Env{}, "--config", writeFile(t, "config.json", configFor(db, big)), "--catalog", catalog,
				"--state", writeFile(t, "state.json", lastState(t, msgs)))
			if again.code != 0 || len(records(again.messages, "wide")) < 2 {
				t.Fatalf("%s with max_row_bytes raised: exit %d, %d records\n%s", method, again.code, len(records(again.messages, "wide")), again.stderr)
			}
		}

		cfg := writeFile(t, "config.json", configFor(db, small))
		catalog := logCatalog(t, cfg, id)
		_, state := logRun(t, writeFile(t, "config.json", configFor(db, big)), catalog, nil)
		testpg.Exec(t, pg, db, `UPDATE wide SET v = 'changed' WHERE id = 1; UPDATE wide SET v = repeat('y', 2000000) WHERE id = 7;`)
		r := runTap(t, cli.Env{}, "--config", cfg, "--catalog", catalog, "--state", writeFile(t, "state.json", state))
		if last := lastLine(r.stderr); r.code != 1 || !strings.Contains(last, "sent a change of the transaction that begins at") || !strings.Contains(last, "more than max_row_bytes (1048576)") {
			t.Fatalf("LOG_BASED: exit %d:\n%s", r.code, r.stderr)
		}
		if again, _ := logRun(t, writeFile(t, "config.json", configFor(db, big)), catalog, state); len(records(again.messages, "wide")) != 2 {
			t.Errorf("LOG_BASED with max_row_bytes raised: %d records, want the two changes", len(records(again.messages, "wide")))
		}
	})
}
