package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/cli"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

// TestLeastPrivilegeRole creates the tap's role exactly as the source setup
// does (CONNECT, USAGE, SELECT, default privileges, REPLICATION) and runs
// discovery, all three methods and --test with it: nothing needs superuser.
func TestLeastPrivilegeRole(t *testing.T) {
	forEachDecoder(t, decoders, func(t *testing.T, dec decoder) {
		db := testpg.NewDatabase(t, pg)
		role := "tap_" + db[len(db)-8:]
		slot := slotFor(db)
		testpg.Exec(t, pg, db, fmt.Sprintf(`
		CREATE SCHEMA app;
		CREATE TABLE app.orders (id integer PRIMARY KEY, total numeric(10,2), updated_at timestamptz NOT NULL);
		INSERT INTO app.orders SELECT g, g * 1.5, timestamptz '2024-01-01' + g * interval '1 minute' FROM generate_series(1, 30) g;
		CREATE USER %[1]s WITH ENCRYPTED PASSWORD 'least-priv-pw';
		GRANT CONNECT ON DATABASE %[2]s TO %[1]s;
		GRANT USAGE ON SCHEMA app TO %[1]s;
		GRANT SELECT ON app.orders TO %[1]s;
		ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT SELECT ON TABLES TO %[1]s;
		ALTER ROLE %[1]s REPLICATION;
		CREATE TABLE app.later (id integer PRIMARY KEY);`, role, db))
		t.Cleanup(func() {
			testpg.Exec(t, pg, db, "DROP OWNED BY "+role)
			testpg.Exec(t, pg, "postgres", "DROP ROLE IF EXISTS "+role)
		})
		newSlot(t, db, slot, dec)
		cfg := configFor(db, map[string]any{"user": role, "password": "least-priv-pw", "slot_name": slot})
		cfgPath := writeFile(t, "config.json", cfg)
		catalog := discover(t, cfgPath)
		if got := len(streams(catalog)); got != 2 {
			t.Fatalf("the role discovers %d tables, want 2 (orders, and later through default privileges)", got)
		}
		for method, extra := range map[string]map[string]any{
			"FULL_TABLE":  {"replication-method": "FULL_TABLE"},
			"INCREMENTAL": {"replication-method": "INCREMENTAL", "replication-key": "updated_at"},
			"LOG_BASED":   {"replication-method": "LOG_BASED"},
		} {
			c := discover(t, cfgPath)
			selectStreams(c, extra, db+"-app-orders")
			catPath := writeFile(t, "catalog.json", c)
			r := runTap(t, cli.Env{}, "--config", cfgPath, "--catalog", catPath)
			if r.code != 0 || len(records(r.messages, "orders")) != 30 {
				t.Fatalf("%s as the least-privileged role: exit %d, %d records\n%s", method, r.code, len(records(r.messages, "orders")), r.stderr)
			}
			if method == "LOG_BASED" {
				testpg.Exec(t, pg, db, "UPDATE app.orders SET total = 0 WHERE id = 1")
				again := runTap(t, cli.Env{}, "--config", cfgPath, "--catalog", catPath, "--state", writeFile(t, "state.json", lastState(t, r.messages)))
				if again.code != 0 || len(records(again.messages, "orders")) != 1 {
					t.Fatalf("LOG_BASED streaming as the role: exit %d\n%s", again.code, again.stderr)
				}
				check := runTap(t, cli.Env{}, "--config", cfgPath, "--test", "--catalog", catPath)
				if check.code != 0 {
					t.Fatalf("--test as the role: exit %d\n%s", check.code, check.stderr)
				}
			}
		}
	})
}

// TestServerRestartMidCopy restarts PostgreSQL while a copy runs: one clear
// CRITICAL, and the next run resumes from the last STATE without losing rows.
func TestServerRestartMidCopy(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	createNumbered(t, db, "public.restarted", 6000)
	cfg := writeFile(t, "config.json", configFor(db, map[string]any{"itersize": 500}))
	catalog := fullTableCatalog(t, cfg)
	restarted := false
	w := &lineWriter{onLine: func(line []byte) {
		if restarted || !bytes.Contains(line, []byte(`"last_pk_fetched":{"id":"2000"}`)) {
			return
		}
		restarted = true
		if err := pg.Restart(context.Background()); err != nil {
			t.Errorf("restart: %v", err)
		}
	}}
	r := runTap(t, cli.Env{Stdout: w}, "--config", cfg, "--catalog", catalog)
	if !restarted {
		t.Fatal("the restart never happened")
	}
	if r.code != 1 || !strings.HasPrefix(lastLine(r.stderr), "CRITICAL") || strings.Contains(r.stderr, "panic") {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	first := parseMessages(t, w.buf.Bytes())
	seen := map[string]bool{}
	for _, rec := range records(first, "restarted") {
		seen[rec["id"].(json.Number).String()] = true
	}
	second := runTap(t, cli.Env{}, "--config", cfg, "--catalog", catalog, "--state", writeFile(t, "state.json", lastState(t, first)))
	if second.code != 0 {
		t.Fatalf("resumed run: exit %d\n%s", second.code, second.stderr)
	}
	for _, rec := range records(second.messages, "restarted") {
		seen[rec["id"].(json.Number).String()] = true
	}
	for i := 1; i <= 6000; i++ {
		if !seen[fmt.Sprint(i)] {
			t.Fatalf("row %d lost across the restart", i)
		}
	}
}

// TestTableDroppedDuringRun drops a selected table while another is copied:
// a CRITICAL naming it, and a state that is still valid.
func TestTableDroppedDuringRun(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	createNumbered(t, db, "public.a_first", 3000)
	createNumbered(t, db, "public.b_dropped", 10)
	cfg := writeFile(t, "config.json", configFor(db, nil))
	catalog := fullTableCatalog(t, cfg)
	dropped := false
	w := &lineWriter{onLine: func(line []byte) {
		if !dropped && bytes.Contains(line, []byte(`"last_pk_fetched"`)) {
			dropped = true
			testpg.Exec(t, pg, db, "DROP TABLE b_dropped")
		}
	}}
	r := runTap(t, cli.Env{Stdout: w}, "--config", cfg, "--catalog", catalog)
	last := lastLine(r.stderr)
	if r.code != 1 || !strings.HasPrefix(last, "CRITICAL") || !strings.Contains(last, db+"-public-b_dropped") {
		t.Fatalf("exit %d, last line %q", r.code, last)
	}
	msgs := parseMessages(t, w.buf.Bytes())
	if n := len(records(msgs, "a_first")); n != 3000 {
		t.Fatalf("the first table's copy was cut: %d records", n)
	}
	state := lastState(t, msgs)
	if _, err := json.Marshal(state); err != nil || state["bookmarks"] == nil {
		t.Fatalf("invalid last state: %v", state)
	}
}

// TestUnresponsiveServerIsBounded: a server that accepts the connection
// and never answers fails within connect_timeout, with one CRITICAL.
func TestUnresponsiveServerIsBounded(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	port := silent.Addr().(*net.TCPAddr).Port
	cfg := writeFile(t, "config.json", map[string]any{"host": "127.0.0.1", "port": port, "user": "u", "password": "p",
		"dbname": "d", "connect_timeout": 2, "sslmode": "disable"})
	start := time.Now()
	r := runTap(t, cli.Env{}, "--config", cfg, "--discover")
	took := time.Since(start)
	if took < 2*time.Second || took > 8*time.Second {
		t.Fatalf("took %v with connect_timeout 2", took)
	}
	if r.code != 1 || !strings.HasPrefix(lastLine(r.stderr), "CRITICAL connect to database") {
		t.Fatalf("exit %d, last line %q", r.code, lastLine(r.stderr))
	}
}

// TestSecretsNeverPrinted runs failing and succeeding cases with
// recognisable secrets and greps everything the tap printed.
func TestSecretsNeverPrinted(t *testing.T) {
	const pw, sshPW, pass = "Pw-XYZZY-41-secret", "Ssh-XYZZY-42-secret", "Pass-XYZZY-43-secret"
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, "CREATE TABLE s (id integer PRIMARY KEY); INSERT INTO s VALUES (1)")
	role := "sec_" + db[len(db)-8:]
	testpg.Exec(t, pg, db, fmt.Sprintf("CREATE USER %s PASSWORD '%s'; GRANT SELECT ON s TO %s", role, pw, role))
	t.Cleanup(func() {
		testpg.Exec(t, pg, db, "DROP OWNED BY "+role)
		testpg.Exec(t, pg, "postgres", "DROP ROLE IF EXISTS "+role)
	})
	good := configFor(db, map[string]any{"user": role, "password": pw})
	with := func(changes map[string]any) string {
		c := map[string]any{}
		for k, v := range good {
			c[k] = v
		}
		for k, v := range changes {
			c[k] = v
		}
		return writeFile(t, "config.json", c)
	}
	catalog := fullTableCatalog(t, with(nil))
	cases := map[string][]string{
		"wrong password":     {"--config", with(map[string]any{"password": pw + "-wrong"}), "--discover"},
		"unknown database":   {"--config", with(map[string]any{"dbname": "no_such_db", "filter_dbs": ""}), "--discover"},
		"bad port":           {"--config", with(map[string]any{"port": "not-a-port"}), "--discover"},
		"password as object": {"--config", with(map[string]any{"password": map[string]any{"value": pw}}), "--discover"},
		"ssh tunnel down": {"--config", with(map[string]any{"ssh_tunnel": map[string]any{"host": "127.0.0.1", "port": 1,
			"username": "u", "password": sshPW, "passphrase": pass, "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nnotakey\n-----END OPENSSH PRIVATE KEY-----",
			"host_key_fingerprint": "SHA256:x"}}), "--discover"},
		"sync ok":  {"--config", with(nil), "--catalog", catalog},
		"test ok":  {"--config", with(nil), "--test", "--catalog", catalog},
		"not json": {"--config", writeFile(t, "broken.json", `{"password": "`+pw+`", "host": `), "--discover"},
	}
	for name, args := range cases {
		r := runTap(t, cli.Env{}, args...)
		all := r.stdout + r.stderr
		for _, secret := range []string{pw, sshPW, pass, "notakey"} {
			if strings.Contains(all, secret) {
				t.Errorf("%s: the output contains %q:\n%s", name, secret, all)
			}
		}
		if strings.HasSuffix(name, " ok") != (r.code == 0) {
			t.Errorf("%s: exit %d\n%s", name, r.code, r.stderr)
		}
	}
}

// TestPrivilegeRevokedAfterDiscovery: a selected table the user can no
// longer read is one CRITICAL naming the stream.
func TestPrivilegeRevokedAfterDiscovery(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	role := "rev_" + db[len(db)-8:]
	testpg.Exec(t, pg, db, fmt.Sprintf(`CREATE TABLE guarded (id integer PRIMARY KEY); INSERT INTO guarded VALUES (1);
		CREATE USER %[1]s PASSWORD 'pw'; GRANT SELECT ON guarded TO %[1]s;`, role))
	t.Cleanup(func() {
		testpg.Exec(t, pg, db, "DROP OWNED BY "+role)
		testpg.Exec(t, pg, "postgres", "DROP ROLE IF EXISTS "+role)
	})
	cfg := writeFile(t, "config.json", configFor(db, map[string]any{"user": role, "password": "pw"}))
	catalog := fullTableCatalog(t, cfg)
	testpg.Exec(t, pg, db, "REVOKE SELECT ON guarded FROM "+role)
	r := runTap(t, cli.Env{}, "--config", cfg, "--catalog", catalog)
	last := lastLine(r.stderr)
	if r.code != 1 || !strings.Contains(last, "CRITICAL selected stream "+db+"-public-guarded no longer exists: table \"public\".\"guarded\" is missing or not readable") {
		t.Fatalf("exit %d, last line %q", r.code, last)
	}
	t.Logf("%s", last)
}

// TestControlCharactersInNamesAreEscaped: a table whose name holds a
// carriage return and terminal escapes reaches stderr escaped, every line
// of it.
func TestControlCharactersInNamesAreEscaped(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	const name = "evil\r\x1b[2J\x07\u009bname"
	testpg.Exec(t, pg, db, fmt.Sprintf(`CREATE TABLE public.%s (id integer PRIMARY KEY, "c\x1b[31m" text);
		INSERT INTO public.%[1]s VALUES (1, 'x');`, quoteIdent(name)))
	cfg := writeFile(t, "config.json", configFor(db, nil))
	catalog := fullTableCatalog(t, cfg)
	r := runTap(t, cli.Env{}, "--config", cfg, "--catalog", catalog)
	if r.code != 0 {
		t.Fatalf("sync exited %d:\n%s", r.code, r.stderr)
	}
	check := runTap(t, cli.Env{}, "--config", cfg, "--test", "--catalog", catalog)
	if check.code != 0 {
		t.Fatalf("--test exited %d:\n%s", check.code, check.stderr)
	}
	for _, stderr := range []string{r.stderr, check.stderr} {
		if !strings.Contains(stderr, `evil\r\x1b[2J\a\u009bname`) {
			t.Errorf("stderr does not name the table, escaped:\n%q", stderr)
		}
		for _, line := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
			if strings.ContainsFunc(line, func(r rune) bool { return r < 0x20 || r >= 0x7f && r < 0xa0 }) {
				t.Errorf("a control character reached stderr: %q", line)
			}
		}
	}
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
