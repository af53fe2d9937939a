package localpg_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tap-postgres/tap-postgres/internal/localpg"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

var cluster *localpg.Cluster

func TestMain(m *testing.M) { os.Exit(testpg.Run(m, &cluster)) }

func connect(t *testing.T, connString string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), connString)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestWalLevelLogical(t *testing.T) {
	conn := connect(t, cluster.ConnString("postgres"))
	var level string
	if err := conn.QueryRow(t.Context(), "SHOW wal_level").Scan(&level); err != nil {
		t.Fatal(err)
	}
	if level != "logical" {
		t.Fatalf("wal_level = %q, want logical", level)
	}
	var user string
	if err := conn.QueryRow(t.Context(), "SELECT current_user").Scan(&user); err != nil {
		t.Fatal(err)
	}
	if user != cluster.User {
		t.Fatalf("current_user = %q, want %q", user, cluster.User)
	}
}

func TestWrongPasswordRefused(t *testing.T) {
	cfg, err := pgx.ParseConfig(cluster.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = "definitely-wrong"
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	if err == nil {
		conn.Close(context.Background())
		t.Fatal("connecting with a wrong password succeeded")
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Fatalf("error is not a *pgconn.PgError: %v", err)
	}
	if pgErr.Code != "28P01" {
		t.Fatalf("SQLSTATE = %s (%v), want 28P01", pgErr.Code, err)
	}
}

func TestCreateDatabaseOddName(t *testing.T) {
	name := `odd "db" it's Ωmega ✓`
	if err := cluster.CreateDatabase(t.Context(), name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cluster.Exec(context.Background(), "postgres", "DROP DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			t.Error(err)
		}
	})
	conn := connect(t, cluster.ConnString(name))
	var got string
	if err := conn.QueryRow(t.Context(), "SELECT current_database()").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != name {
		t.Fatalf("current_database() = %q, want %q", got, name)
	}
	if err := cluster.Exec(t.Context(), name, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
}

func TestExecReportsErrors(t *testing.T) {
	db := testpg.NewDatabase(t, cluster)
	err := cluster.Exec(t.Context(), db, "SELECT 1; SELECT * FROM no_such_table")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42P01" {
		t.Fatalf("Exec error = %v, want SQLSTATE 42P01", err)
	}
}

func TestWal2JSONSlot(t *testing.T) {
	if !cluster.HasWal2json() {
		t.Skip("this server has no wal2json")
	}
	db := testpg.NewDatabase(t, cluster)
	testpg.Exec(t, cluster, db, "CREATE TABLE items (id int PRIMARY KEY, name text)")
	conn := connect(t, cluster.ConnString(db))
	if _, err := conn.Exec(t.Context(), "SELECT pg_create_logical_replication_slot('t_slot', 'wal2json')"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), "SELECT pg_drop_replication_slot('t_slot')")
	})
	testpg.Exec(t, cluster, db, "INSERT INTO items VALUES (1, 'one')")
	// synchronous_commit=off: the commit record becomes visible to logical
	// decoding only once the WAL writer has flushed it (~200ms), so poll.
	var changes []string
	deadline := time.Now().Add(10 * time.Second)
	for len(changes) == 0 && time.Now().Before(deadline) {
		rows, err := conn.Query(t.Context(), "SELECT data FROM pg_logical_slot_get_changes('t_slot', NULL, NULL)")
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		changes = append(changes, got...)
		if len(changes) == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	all := strings.Join(changes, "\n")
	if !strings.Contains(all, `"items"`) || !strings.Contains(all, `"one"`) {
		t.Fatalf("wal2json output does not mention the insert: %s", all)
	}
}

func TestRestartKeepsData(t *testing.T) {
	db := testpg.NewDatabase(t, cluster)
	testpg.Exec(t, cluster, db, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('survives')")
	start := time.Now()
	if err := cluster.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart took %s", time.Since(start).Round(time.Millisecond))
	conn := connect(t, cluster.ConnString(db))
	var v string
	if err := conn.QueryRow(t.Context(), "SELECT v FROM kept").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != "survives" {
		t.Fatalf("got %q after restart", v)
	}
}

// TestOwnCluster starts a second, independent cluster to exercise options.
func TestOwnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a second cluster")
	}
	var log strings.Builder
	c, err := localpg.Start(t.Context(), localpg.Options{
		SuperuserPassword: "other pw with 'quote'",
		ExtraConf:         []string{"work_mem = '7MB'"},
		HBA:               []string{"host all nobody 127.0.0.1/32 reject"},
		Log:               &log,
	})
	if err != nil {
		t.Fatal(err)
	}
	base := c.BaseDir
	defer func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(base); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("BaseDir %s still exists after Stop (stat err %v)", base, err)
		}
		if err := c.Stop(); err != nil {
			t.Errorf("second Stop: %v", err)
		}
		t.Logf("progress log:\n%s", log.String())
	}()
	if c.Port == cluster.Port {
		t.Fatalf("second cluster got the same port %d", c.Port)
	}
	conn := connect(t, c.ConnString("postgres"))
	var wm string
	if err := conn.QueryRow(t.Context(), "SHOW work_mem").Scan(&wm); err != nil {
		t.Fatal(err)
	}
	if wm != "7MB" {
		t.Fatalf("work_mem = %q, want 7MB", wm)
	}
	if err := c.Exec(t.Context(), "postgres", "CREATE ROLE nobody LOGIN PASSWORD 'x'"); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(c.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Password = "nobody", "x"
	_, err = pgx.ConnectConfig(t.Context(), cfg)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28000" {
		t.Fatalf("connect as nobody: err = %v, want SQLSTATE 28000 (rejected by extra HBA line)", err)
	}
}

// TestKeptClusterOutlivesItsOwner: a cluster whose owner exited is reaped
// by the next Start unless it was kept; StopKept then stops and removes it.
func TestKeptClusterOutlivesItsOwner(t *testing.T) {
	ctx := t.Context()
	kept, err := localpg.Start(ctx, localpg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kept.Stop() })
	orphan, err := localpg.Start(ctx, localpg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { orphan.Stop() })
	if err := kept.Keep(); err != nil {
		t.Fatal(err)
	}
	// Both now look owned by a process that has exited.
	exited := exec.Command("true")
	if err := exited.Run(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*localpg.Cluster{kept, orphan} {
		if err := os.WriteFile(filepath.Join(c.BaseDir, "localpg-owner.pid"), []byte(strconv.Itoa(exited.Process.Pid)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	next, err := localpg.Start(ctx, localpg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	next.Stop()
	if _, err := os.Stat(orphan.BaseDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the orphan %s was not reaped: %v", orphan.BaseDir, err)
	}
	conn := connect(t, kept.ConnString("postgres"))
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("the kept cluster was stopped by the next Start: %v", err)
	}
	conn.Close(ctx)

	if err := localpg.StopKept(t.TempDir(), nil); err == nil {
		t.Error("StopKept accepted a directory that holds no kept cluster")
	}
	if err := localpg.StopKept(kept.BaseDir, nil); err != nil {
		t.Fatalf("StopKept: %v", err)
	}
	if _, err := os.Stat(kept.BaseDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("StopKept left %s: %v", kept.BaseDir, err)
	}
	if c, err := pgx.Connect(ctx, kept.ConnString("postgres")); err == nil {
		c.Close(ctx)
		t.Error("the kept cluster still accepts connections after StopKept")
	}
}

// TestStandby: a physical standby replays what the primary writes.
func TestStandby(t *testing.T) {
	ctx := t.Context()
	standby, err := cluster.StartStandby(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { standby.Stop() })
	db := testpg.NewDatabase(t, cluster)
	testpg.Exec(t, cluster, db, "CREATE TABLE replayed (id int); INSERT INTO replayed VALUES (1), (2)")
	if err := standby.WaitReplayed(ctx, cluster); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, standby.ConnString(db))
	var n int
	var recovering bool
	if err := conn.QueryRow(ctx, "SELECT count(*), pg_is_in_recovery() FROM replayed").Scan(&n, &recovering); err != nil || n != 2 || !recovering {
		t.Fatalf("standby: %d rows, in recovery %t, %v", n, recovering, err)
	}
	conn.Close(ctx)
	if err := standby.Stop(); err != nil {
		t.Fatal(err)
	}
	// Its physical slot would keep the primary's WAL.
	var slots int
	if err := connect(t, cluster.ConnString("postgres")).QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_type = 'physical'").Scan(&slots); err != nil || slots != 0 {
		t.Errorf("%d physical slots left on the primary (%v)", slots, err)
	}
	var alive int
	if err := connect(t, cluster.ConnString("postgres")).QueryRow(ctx, "SELECT 1").Scan(&alive); err != nil {
		t.Errorf("the primary is gone after its standby stopped: %v", err)
	}
}
