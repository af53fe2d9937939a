// Package testpg shares one throwaway PostgreSQL cluster (see localpg) across
// the tests of a package.
//
// Typical use:
//
//	var cluster *localpg.Cluster
//
//	func TestMain(m *testing.M) { os.Exit(testpg.Run(m, &cluster)) }
//
//	func TestX(t *testing.T) {
//		db := testpg.NewDatabase(t, cluster)
//		testpg.Exec(t, cluster, db, "CREATE TABLE t (id int primary key)")
//	}
package testpg

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tap-postgres/tap-postgres/internal/localpg"
)

// startTimeout bounds how long Run waits for the cluster to come up.
const startTimeout = 3 * time.Minute

// Run starts one cluster for the whole test package, stores it in *cluster,
// runs the tests, stops the cluster and returns the exit code for os.Exit.
// If the cluster cannot be started the error is printed to stderr and 1 is
// returned (tests are not skipped).
func Run(m *testing.M, cluster **localpg.Cluster) int {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	start := time.Now()
	c, err := localpg.Start(ctx, localpg.Options{})
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "testpg: starting PostgreSQL cluster: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "testpg: PostgreSQL cluster on %s:%d started in %s\n",
		c.Host, c.Port, time.Since(start).Round(time.Millisecond))
	*cluster = c

	code := m.Run()

	*cluster = nil
	if err := c.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "testpg: stopping PostgreSQL cluster: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// NewDatabase creates a fresh database whose name is derived from t.Name()
// (lower-cased, reduced to [a-z0-9_], at most 50 characters) plus a random
// suffix, and drops it, ending its sessions, when the test finishes. It returns the
// database name.
func NewDatabase(t testing.TB, c *localpg.Cluster) string {
	t.Helper()
	if c == nil {
		t.Fatalf("testpg.NewDatabase: cluster is nil (is TestMain using testpg.Run?)")
	}
	name := dbName(t.Name())
	if err := c.CreateDatabase(t.Context(), name); err != nil {
		t.Fatalf("testpg: %v", err)
	}
	t.Cleanup(func() { DropDatabase(t, c, name) })
	return name
}

// DropDatabase drops database name, ending its sessions first, as DROP
// DATABASE … WITH (FORCE) would (that is PostgreSQL 13's).
func DropDatabase(t testing.TB, c *localpg.Cluster, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	end := fmt.Sprintf("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", quoteLiteral(name))
	err := c.Exec(ctx, "postgres", end)
	if err == nil {
		err = c.Exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize())
	}
	if err != nil {
		t.Errorf("testpg: dropping database %q: %v", name, err)
	}
}

// Exec runs sql (possibly several statements) in database db as the
// superuser and fails the test on error.
func Exec(t testing.TB, c *localpg.Cluster, db, sql string) {
	t.Helper()
	// Not t.Context(): that is cancelled before cleanups, which use Exec too.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Exec(ctx, db, sql); err != nil {
		t.Fatalf("testpg: executing %q in database %q: %v", abbrev(sql, 200), db, err)
	}
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func dbName(testName string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(testName) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	base := b.String()
	if len(base) > 50 {
		base = base[:50]
	}
	if base == "" || (base[0] >= '0' && base[0] <= '9') {
		base = "t_" + base
		if len(base) > 50 {
			base = base[:50]
		}
	}
	var suffix [4]byte
	_, _ = rand.Read(suffix[:]) // never fails
	return base + "_" + hex.EncodeToString(suffix[:])
}

func abbrev(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "..."
}
