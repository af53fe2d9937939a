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
