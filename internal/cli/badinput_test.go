package cli_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tap-postgres/tap-postgres/internal/cli"
	"github.com/tap-postgres/tap-postgres/internal/runner"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

// assertFailure checks a failed run as the README describes it ("Usage"): the exit code,
// a last stderr line "CRITICAL <cause>" mentioning every want string, no Go
// panic or stack trace, and only JSON lines on stdout.
func assertFailure(t *testing.T, r tapResult, code int, want ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit code %d, want %d\nstderr:\n%s", r.code, code, r.stderr)
	}
	last := lastLine(r.stderr)
	t.Logf("exit %d, last stderr line: %s", r.code, last)
	if !strings.HasPrefix(last, "CRITICAL ") {
		t.Errorf("last stderr line %q does not start with \"CRITICAL \"\nstderr:\n%s", last, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(last, w) {
			t.Errorf("last stderr line %q does not mention %q", last, w)
		}
	}
	for _, bad := range []string{"panic", "goroutine ", "runtime/debug", ".go:"} {
		if strings.Contains(r.stderr, bad) {
			t.Errorf("stderr holds %q (a Go panic or stack trace?):\n%s", bad, r.stderr)
		}
	}
	// Passwords never appear in any output (README, "Config").
	if strings.Contains(r.stdout+r.stderr, pg.Password) {
		t.Errorf("the superuser password appears in the output:\n%s", r.stderr)
	}
	assertJSONLines(t, r.stdout)
}

// assertJSONLines checks that every stdout line is one JSON object.
func assertJSONLines(t *testing.T, stdout string) {
	t.Helper()
	for i, line := range strings.Split(stdout, "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("stdout line %d is not a JSON object: %v\n%s", i+1, err, line)
		}
	}
}

// badInputDB is a database with two small tables and its discovered
// catalog, both selected FULL_TABLE.
func badInputDB(t *testing.T) (db, cfgPath string, catalog map[string]any) {
	t.Helper()
	db = testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, `
		CREATE TABLE keep (id integer PRIMARY KEY, v text);
		INSERT INTO keep VALUES (1, 'one'), (2, 'two'), (3, 'three');
		CREATE TABLE doomed (id integer PRIMARY KEY);
		INSERT INTO doomed VALUES (1);
	`)
	cfgPath = writeFile(t, "config.json", configFor(db, nil))
	catalog = discover(t, cfgPath)
	selectStreams(catalog, map[string]any{"replication-method": "FULL_TABLE"})
	return db, cfgPath, catalog
}

// TestBadInput: every user error ends with exit 1 and a CRITICAL line, never
// a panic, and never garbage on stdout.
func TestBadInput(t *testing.T) {
	db, cfg, catalog := badInputDB(t)
	catalogPath := writeFile(t, "catalog.json", catalog)
	without := func(key string) map[string]any {
		c := configFor(db, nil)
		delete(c, key)
		return c
	}

	t.Run("missing config file", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "no-such-config.json")
		assertFailure(t, runTap(t, cli.Env{}, "--config", missing, "--discover"), 1, "no-such-config.json")
	})
	t.Run("config not JSON", func(t *testing.T) {
		path := writeFile(t, "config.json", `{"host": "localhost", "port": 5432,`)
		assertFailure(t, runTap(t, cli.Env{}, "--config", path, "--discover"), 1)
	})
	t.Run("config not JSON after the password", func(t *testing.T) {
		const secret = "S3cr3t-P4ss-xyz"
		path := writeFile(t, "config.json", `{"password": "`+secret+`", "host": localhost}`)
		r := runTap(t, cli.Env{}, "--config", path, "--discover")
		assertFailure(t, r, 1)
		if strings.Contains(r.stdout+r.stderr, secret) || strings.Contains(r.stdout+r.stderr, "S3cr3t") {
			t.Errorf("the password appears in the output:\n%s", r.stderr)
		}
	})
	t.Run("config is a JSON array", func(t *testing.T) {
		path := writeFile(t, "config.json", `[1, 2]`)
		assertFailure(t, runTap(t, cli.Env{}, "--config", path, "--discover"), 1)
	})
	t.Run("config missing host", func(t *testing.T) {
		path := writeFile(t, "config.json", without("host"))
		assertFailure(t, runTap(t, cli.Env{}, "--config", path, "--discover"), 1, `"host"`)
	})
	t.Run("config port abc", func(t *testing.T) {
		c := configFor(db, map[string]any{"port": "abc"})
		path := writeFile(t, "config.json", c)
		assertFailure(t, runTap(t, cli.Env{}, "--config", path, "--discover"), 1, `"port"`)
		assertFailure(t, runTap(t, cli.Env{}, "--config", path, "--catalog", catalogPath), 1, `"port"`)
	})
	t.Run("catalog not JSON", func(t *testing.T) {
		path := writeFile(t, "catalog.json", `{"streams": [ {"tap_stream_id": `)
		r := runTap(t, cli.Env{}, "--config", cfg, "--catalog", path)
		assertFailure(t, r, 1, "catalog")
		if r.stdout != "" {
			t.Errorf("stdout not empty:\n%s", r.stdout)
		}
		// --properties is the older name of --catalog.
		assertFailure(t, runTap(t, cli.Env{}, "--config", cfg, "--properties", path), 1, "catalog")
	})
	t.Run("malformed catalogs", func(t *testing.T) {
		for name, text := range map[string]string{
			"plain text":          `this is not json`,
			"null":                `null`,
			"empty object":        `{}`,
			"streams not a list":  `{"streams": "x"}`,
			"null stream":         `{"streams": [null]}`,
			"selected is garbage": `{"streams": [{"tap_stream_id": "a-b-c", "stream": "c", "metadata": [{"breadcrumb": [], "metadata": {"selected": "yes", "replication-method": "FULL_TABLE"}}]}]}`,
			"no database-name":    `{"streams": [{"tap_stream_id": "a-b-c", "stream": "c", "metadata": [{"breadcrumb": [], "metadata": {"selected": true, "replication-method": "FULL_TABLE"}}]}]}`,
			"unknown method":      `{"streams": [{"tap_stream_id": "a-b-c", "stream": "c", "metadata": [{"breadcrumb": [], "metadata": {"selected": true, "replication-method": "SOMETIMES"}}]}]}`,
			"null metadata":       `{"streams": [{"tap_stream_id": "a-b-c", "stream": "c", "metadata": [{"breadcrumb": [], "metadata": null}, null]}]}`,
		} {
			t.Run(name, func(t *testing.T) {
				path := writeFile(t, "catalog.json", text)
				r := runTap(t, cli.Env{}, "--config", cfg, "--catalog", path)
				assertFailure(t, r, 1)
				if strings.Contains(r.stdout, `"RECORD"`) {
					t.Errorf("records emitted for a malformed catalog:\n%s", r.stdout)
				}
			})
		}
	})
	t.Run("malformed states", func(t *testing.T) {
		for name, text := range map[string]string{
			"array":             `[]`,
			"bookmark not obj":  `{"bookmarks": {"x": 5}}`,
			"version not int":   `{"bookmarks": {"x": {"version": "abc"}}}`,
			"currently_syncing": `{"currently_syncing": 7}`,
		} {
			t.Run(name, func(t *testing.T) {
				path := writeFile(t, "state.json", text)
				r := runTap(t, cli.Env{}, "--config", cfg, "--catalog", catalogPath, "--state", path)
				assertFailure(t, r, 1, "state")
			})
		}
	})
	t.Run("malformed configs", func(t *testing.T) {
		for name, c := range map[string]struct {
			cfg  any
			want string
		}{
			"null":           {`null`, "config"},
			"port 0":         {configFor(db, map[string]any{"port": 0}), `"port"`},
			"port 70000":     {configFor(db, map[string]any{"port": "70000"}), `"port"`},
			"missing user":   {without("user"), `"user"`},
			"missing dbname": {without("dbname"), `"dbname"`},
			"bad sslmode":    {configFor(db, map[string]any{"sslmode": "sometimes"}), `"sslmode"`},
			"bad method":     {configFor(db, map[string]any{"default_replication_method": "WHENEVER"}), `"default_replication_method"`},
			"port is a list": {configFor(db, map[string]any{"port": []int{5432}}), `"port"`},
		} {
			t.Run(name, func(t *testing.T) {
				path := writeFile(t, "config.json", c.cfg)
				assertFailure(t, runTap(t, cli.Env{}, "--config", path, "--discover"), 1, c.want)
			})
		}
	})
	t.Run("missing catalog file", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "no-such-catalog.json")
		assertFailure(t, runTap(t, cli.Env{}, "--config", cfg, "--catalog", missing), 1, "no-such-catalog.json")
	})
	t.Run("state not JSON", func(t *testing.T) {
		state := writeFile(t, "state.json", `{"bookmarks": {`)
		r := runTap(t, cli.Env{}, "--config", cfg, "--catalog", catalogPath, "--state", state)
		assertFailure(t, r, 1, "state")
		if strings.Contains(r.stdout, `"RECORD"`) {
			t.Errorf("records emitted despite an unreadable state:\n%s", r.stdout)
		}
	})
	t.Run("missing state file", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "no-such-state.json")
		assertFailure(t, runTap(t, cli.Env{}, "--config", cfg, "--catalog", catalogPath, "--state", missing), 1, "no-such-state.json")
	})
	t.Run("unknown database", func(t *testing.T) {
		const name = "no_such_database_zz9"
		path := writeFile(t, "config.json", configFor(name, nil))
		assertFailure(t, runTap(t, cli.Env{}, "--config", path, "--discover"), 1, name)
	})
	t.Run("filter_dbs matches nothing", func(t *testing.T) {
		path := writeFile(t, "config.json", configFor(db, map[string]any{"filter_dbs": "no_such_database_zz9"}))
		assertFailure(t, runTap(t, cli.Env{}, "--config", path, "--discover"), 1)
	})
	t.Run("wrong password", func(t *testing.T) {
		const secret = "S3cr3t-P4ss-xyz"
		path := writeFile(t, "config.json", configFor(db, map[string]any{"password": secret}))
		for _, args := range [][]string{
			{"--config", path, "--discover"},
			{"--config", path, "--catalog", catalogPath},
		} {
			r := runTap(t, cli.Env{}, args...)
			assertFailure(t, r, 1)
			if strings.Contains(r.stdout, secret) || strings.Contains(r.stderr, secret) {
				t.Errorf("%v: the password appears in the output:\nstdout:\n%s\nstderr:\n%s", args, r.stdout, r.stderr)
			}
			if strings.Contains(r.stdout, `"RECORD"`) {
				t.Errorf("%v: records emitted without a connection", args)
			}
		}
	})
	t.Run("usage errors", func(t *testing.T) {
		for _, args := range [][]string{
			{"--discover"},    // no --config
			{"--config", cfg}, // no mode flag
			{"--config", cfg, "--discover", "--bogus"}, // unknown flag
			{"--config", cfg, "--discover", "extra-arg"},
			{"--config", cfg, "--discover", "--catalog", catalogPath},
		} {
			r := runTap(t, cli.Env{}, args...)
			if r.code != 2 {
				t.Errorf("%q: exit %d, want 2\nstderr:\n%s", args, r.code, r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("%q: stdout not empty:\n%s", args, r.stdout)
			}
			if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
				t.Errorf("%q: stack trace on stderr:\n%s", args, r.stderr)
			}
		}
	})
	// Last: this one drops a table of the shared database.
	t.Run("selected table dropped after discovery", func(t *testing.T) {
		testpg.Exec(t, pg, db, `DROP TABLE doomed`)
		r := runTap(t, cli.Env{}, "--config", cfg, "--catalog", catalogPath)
		assertFailure(t, r, 1, db+"-public-doomed")
	})
}

// TestReferenceState: states written by the reference tap (with its xmin
// bookmark key) and bookmarks of other streams with unknown keys are read
// without complaint.
func TestReferenceState(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, `
		CREATE TABLE orders (id integer PRIMARY KEY, item text);
		INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 25) g;
	`)
	id := db + "-public-orders"
	cfg := writeFile(t, "config.json", configFor(db, nil))
	catalog := discover(t, cfg)
	selectStreams(catalog, map[string]any{"replication-method": "FULL_TABLE"}, id)
	catalogPath := writeFile(t, "catalog.json", catalog)
	otherBookmarks := `
		"otherdb-public-events": {"last_replication_method": "INCREMENTAL", "replication_key": "updated_at",
			"replication_key_value": "2024-06-01T12:00:00+00:00", "version": 1690000000000, "xmin": 99,
			"some_future_key": {"nested": [1, 2, {"x": null}]}, "another": true},
		"otherdb-public-users": {"last_replication_method": "LOG_BASED", "lsn": 123456789, "wal2json_thing": "abc"}`

	run := func(t *testing.T, state string, flags ...string) []map[string]any {
		t.Helper()
		if flags == nil {
			flags = []string{"--config", "--catalog", "--state"}
		}
		r := runTap(t, cli.Env{}, flags[0], cfg, flags[1], catalogPath, flags[2], writeFile(t, "state.json", state))
		if r.code != 0 {
			t.Fatalf("exit %d with state %s:\n%s", r.code, state, r.stderr)
		}
		if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
			t.Errorf("stack trace on stderr:\n%s", r.stderr)
		}
		recs := records(r.messages, "orders")
		if len(recs) != 25 {
			t.Fatalf("got %d records, want all 25", len(recs))
		}
		for i, rec := range recs {
			if jsonText(rec["id"]) != strconv.Itoa(i+1) || rec["item"] != fmt.Sprintf("item %d", i+1) {
				t.Errorf("record %d: %v", i, rec)
			}
		}
		return r.messages
	}

	t.Run("reference FULL_TABLE bookmark with xmin", func(t *testing.T) {
		const oldVersion = 1700000000000
		state := fmt.Sprintf(`{"bookmarks": {%q: {"last_replication_method": "FULL_TABLE", "version": %d, "xmin": 12345}, %s},
			"currently_syncing": %q}`, id, oldVersion, otherBookmarks, id)
		msgs := run(t, state)
		var firstAV, firstRec, lastAV = -1, -1, -1
		for i, m := range msgs {
			if m["stream"] != "orders" {
				continue
			}
			switch m["type"] {
			case "ACTIVATE_VERSION":
				if firstAV < 0 {
					firstAV = i
				}
				lastAV = i
			case "RECORD":
				if firstRec < 0 {
					firstRec = i
				}
			}
		}
		if firstAV < 0 || firstAV < firstRec {
			t.Fatalf("ACTIVATE_VERSION at message %d, first RECORD at %d: want no leading ACTIVATE_VERSION (the bookmark has a version) and a trailing one", firstAV, firstRec)
		}
		if n := len(messagesOf(msgs, "ACTIVATE_VERSION", "orders")); n != 1 {
			t.Errorf("%d ACTIVATE_VERSION messages, want exactly 1 (trailing)", n)
		}
		version := jsonText(msgs[lastAV]["version"])
		v, err := strconv.ParseInt(version, 10, 64)
		if err != nil || v <= oldVersion {
			t.Errorf("trailing ACTIVATE_VERSION version %s, want a new version above %d", version, oldVersion)
		}
		for _, m := range messagesOf(msgs, "RECORD", "orders") {
			if jsonText(m["version"]) != version {
				t.Errorf("RECORD version %v, want %s", m["version"], version)
				break
			}
		}
		st := lastState(t, msgs)
		if st["currently_syncing"] != nil {
			t.Errorf("final currently_syncing %v, want null", st["currently_syncing"])
		}
		bm, _ := st["bookmarks"].(map[string]any)[id].(map[string]any)
		if jsonText(bm["version"]) != version || bm["last_replication_method"] != "FULL_TABLE" {
			t.Errorf("final bookmark %v, want version %s and FULL_TABLE", bm, version)
		}
	})

	t.Run("only other streams' bookmarks with unknown keys", func(t *testing.T) {
		msgs := run(t, `{"currently_syncing": null, "bookmarks": {`+otherBookmarks+`}}`)
		var types []string
		for _, m := range msgs {
			if m["stream"] == "orders" && m["type"] != "RECORD" {
				types = append(types, m["type"].(string))
			}
		}
		// A first copy: SCHEMA, leading and trailing ACTIVATE_VERSION.
		if want := []string{"SCHEMA", "ACTIVATE_VERSION", "ACTIVATE_VERSION"}; strings.Join(types, ",") != strings.Join(want, ",") {
			t.Errorf("non-record messages of orders %q, want %q", types, want)
		}
		avs := messagesOf(msgs, "ACTIVATE_VERSION", "orders")
		if len(avs) == 2 && jsonText(avs[0]["version"]) != jsonText(avs[1]["version"]) {
			t.Errorf("leading version %v and trailing version %v differ", avs[0]["version"], avs[1]["version"])
		}
		books := lastState(t, msgs)["bookmarks"].(map[string]any)
		if bm, _ := books[id].(map[string]any); bm["last_replication_method"] != "FULL_TABLE" {
			t.Errorf("final bookmark of %s: %v", id, books[id])
		}
		// Other streams' positions survive the run.
		if bm, _ := books["otherdb-public-users"].(map[string]any); jsonText(bm["lsn"]) != "123456789" {
			t.Errorf("bookmark of otherdb-public-users %v, want lsn 123456789 kept", books["otherdb-public-users"])
		}
		if bm, _ := books["otherdb-public-events"].(map[string]any); bm["replication_key_value"] != "2024-06-01T12:00:00+00:00" {
			t.Errorf("bookmark of otherdb-public-events %v, want replication_key_value kept", books["otherdb-public-events"])
		}
	})

	t.Run("state wrapped in a STATE message", func(t *testing.T) {
		msgs := run(t, fmt.Sprintf(`{"type": "STATE", "value": {"bookmarks": {%q: {"last_replication_method": "FULL_TABLE", "version": 1700000000000}}}}`, id),
			"-c", "-p", "-s") // the short and older flag names
		if avs := messagesOf(msgs, "ACTIVATE_VERSION", "orders"); len(avs) != 1 {
			t.Errorf("%d ACTIVATE_VERSION messages, want 1 (the bookmark had a version)", len(avs))
		}
	})
}

// TestUsageListsEveryMode: the binary alone, or --help, lists every mode
// and subcommand; alone it ends with a CRITICAL usage line and exit 2.
func TestUsageListsEveryMode(t *testing.T) {
	bare := runTap(t, cli.Env{})
	help := runTap(t, cli.Env{}, "--help")
	if bare.code != 2 || !strings.HasPrefix(lastLine(bare.stderr), "CRITICAL usage: ") {
		t.Fatalf("no arguments: exit %d\n%s", bare.code, bare.stderr)
	}
	if help.code != 0 {
		t.Fatalf("--help: exit %d\n%s", help.code, help.stderr)
	}
	for _, r := range []tapResult{bare, help} {
		for _, mode := range append(runner.Commands(), "demo", "--discover", "--catalog", "--test") {
			if !strings.Contains(r.stderr, "tap-postgres "+mode) && !strings.Contains(r.stderr, mode+" ") {
				t.Errorf("usage lacks %s:\n%s", mode, r.stderr)
			}
		}
		if r.stdout != "" {
			t.Errorf("usage on stdout: %s", r.stdout)
		}
	}
}
