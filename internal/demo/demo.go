// Package demo is README command 1: a throwaway local PostgreSQL with sample
// data, an integration with one table per replication method, a runner job
// into a local PostgreSQL destination, changes in the source, a second job,
// and the loading report of both — what a new user would do by hand.
package demo

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tap-postgres/tap-postgres/internal/cli"
	"github.com/tap-postgres/tap-postgres/internal/localpg"
	"github.com/tap-postgres/tap-postgres/internal/runner"
)

//go:embed sample.sql
var sampleSQL string

const (
	source    = "demo"
	warehouse = "warehouse"
)

// changes are what happens in the source between the two jobs.
const changes = `
UPDATE shop.customers SET name = 'Renamed Customer' WHERE id = 1;
DELETE FROM shop.orders WHERE customer_id = 7; DELETE FROM shop.customers WHERE id = 7;
INSERT INTO shop.customers VALUES (2501, 'new@example.com', 'New Customer', '{vip}', 'lang=>de', now());
INSERT INTO shop.orders VALUES (2501, 1, 'new', 99.95, '[{"sku": "SKU-NEW", "qty": 1}]', '2025-06-01');
INSERT INTO shop.page_views SELECT '/checkout/' || g, timestamp '2024-04-01' + g * interval '1 minute' FROM generate_series(1, 20) g;
UPDATE public.every_type SET c_numeric = 98765432109876543210.000000000000000001 WHERE id = 1;`

// Run runs the demo; args are the demo subcommand's flags. program is how
// the user started this binary (PATH name, relative path, or "go run
// ./cmd/tap-postgres"): the commands the demo prints start with it, so
// that they work as printed.
func Run(ctx context.Context, program string, args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("tap-postgres demo", flag.ContinueOnError)
	flags.SetOutput(stderr)
	outDir := flags.String("out", "demo-output", "directory for the integration file, the runner's store and logs")
	keep := flags.Bool("keep", false, "leave the PostgreSQL cluster running (its address and the command that stops it are printed)")
	port := flags.Int("port", 0, "TCP port of the demo's PostgreSQL on 127.0.0.1 (default: a free port)")
	stop := flags.Bool("stop", false, "stop the cluster a demo --keep left running for --out, and remove its files")
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cli.ExitOK
		}
		return cli.ExitUsage
	}
	if flags.NArg() > 0 || *port < 0 || *port > 65535 {
		fmt.Fprintf(stderr, "CRITICAL usage: tap-postgres demo [--out DIR] [--keep] [--port N] [--stop]\n")
		return cli.ExitUsage
	}
	dir, err := filepath.Abs(*outDir)
	if err == nil {
		if *stop {
			err = stopKept(dir, stdout)
		} else {
			err = run(ctx, options{program: program, outDir: dir, keep: *keep, port: *port}, stdout)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "CRITICAL demo: %v\n", err)
		return cli.ExitError
	}
	return cli.ExitOK
}

// Program is how to run this binary again, as printed for a user: argv0
// as they typed it, unless `go run` built it into a directory that is gone
// when it exits.
func Program(argv0 string) string {
	if strings.Contains(filepath.ToSlash(argv0), "/go-build") {
		return "go run ./cmd/tap-postgres"
	}
	return argv0
}

type options struct {
	program string
	outDir  string
	keep    bool
	port    int
}

// keptClusterFile, in the demo's directory, names the directory of the
// cluster a demo --keep left running.
const keptClusterFile = "kept-cluster"

// stopKept stops the cluster a demo --keep left for outDir, if any.
func stopKept(outDir string, stdout io.Writer) error {
	record := filepath.Join(outDir, keptClusterFile)
	base, err := os.ReadFile(record)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stdout, "no kept demo cluster for %s\n", outDir)
		return nil
	}
	if err != nil {
		return err
	}
	dir := strings.TrimSpace(string(base))
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		// Removed by hand, or the machine restarted and emptied /tmp.
		fmt.Fprintf(stdout, "the kept demo cluster %s is gone already\n", dir)
		return os.Remove(record)
	}
	if err := localpg.StopKept(dir, nil); err != nil {
		return fmt.Errorf("stop the kept cluster: %w", err)
	}
	fmt.Fprintf(stdout, "stopped the demo cluster and removed %s\n", dir)
	return os.Remove(record)
}

func run(ctx context.Context, o options, stdout io.Writer) (err error) {
	outDir := o.outDir
	store := filepath.Join(outDir, "store")
	// A fresh store each time: the demo's cluster is new too, so one a
	// previous demo --keep left for this directory goes as well.
	if err := stopKept(outDir, io.Discard); err != nil {
		return err
	}
	if err := os.RemoveAll(store); err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "==> starting a throwaway PostgreSQL 15 cluster (wal_level=logical, the server's default output plugins)")
	// pgoutput is built in and allowed by every server's defaults: the demo
	// leaves wal2json out of output_plugin_libraries, as a patched server
	// does.
	// A kept cluster listens for anyone on this machine: its superuser's
	// password is this run's own, printed once below.
	cluster, err := localpg.Start(ctx, localpg.Options{OutputPlugins: "pgoutput, test_decoding", Port: o.port, SuperuserPassword: rand.Text()})
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("start PostgreSQL (is postgresql-15 installed? scripts/demo.sh installs it): %w", err)
		}
		if o.port != 0 {
			return fmt.Errorf("start PostgreSQL on port %d (choose another with --port, or leave it out for a free one): %w", o.port, err)
		}
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	if o.keep {
		if err := cluster.Keep(); err != nil {
			return errors.Join(err, cluster.Stop())
		}
		if err := os.WriteFile(filepath.Join(outDir, keptClusterFile), []byte(cluster.BaseDir+"\n"), 0o600); err != nil {
			return errors.Join(err, cluster.Stop())
		}
	} else {
		defer func() { err = errors.Join(err, cluster.Stop()) }()
	}
	fmt.Fprintf(stdout, "==> source database %q: a shop schema and a table with every type; destination database %q (port %d)\n", source, warehouse, cluster.Port)
	for _, db := range []string{source, warehouse} {
		if err := cluster.CreateDatabase(ctx, db); err != nil {
			return err
		}
	}
	if err := cluster.Exec(ctx, source, sampleSQL); err != nil {
		return fmt.Errorf("load sample data: %w", err)
	}
	// The publication and slot LOG_BASED tables read, under the name
	// Stitch's setup uses.
	if err := cluster.Exec(ctx, source, "CREATE PUBLICATION stitch_demo FOR TABLE shop.customers, public.every_type WITH (publish_via_partition_root = true)"); err != nil {
		return fmt.Errorf("create the publication: %w", err)
	}
	if err := cluster.Exec(ctx, source, "SELECT pg_create_logical_replication_slot('stitch_demo', 'pgoutput')"); err != nil {
		return fmt.Errorf("create the replication slot: %w", err)
	}

	integration := filepath.Join(outDir, "integration.yaml")
	if err := os.WriteFile(integration, []byte(integrationFile(cluster)), 0o600); err != nil {
		return err
	}
	runnerLog, err := os.Create(filepath.Join(outDir, "runner.log"))
	if err != nil {
		return err
	}
	defer runnerLog.Close()
	command := func(args ...string) string {
		return fmt.Sprintf("%s %s --integration %s --store %s", o.program, strings.Join(args, " "), integration, store)
	}
	tap := func(args ...string) (string, error) {
		var out bytes.Buffer
		if code := runner.Main(ctx, append(args, "--integration", integration, "--store", store), &out, runnerLog, time.Now); code != 0 {
			return "", fmt.Errorf("%s failed (exit %d); see %s", command(args...), code, runnerLog.Name())
		}
		return out.String(), nil
	}
	step := func(title string, args ...string) error {
		fmt.Fprintf(stdout, "\n==> %s\n$ %s\n", title, command(args...))
		out, err := tap(args...)
		fmt.Fprint(stdout, out)
		return err
	}

	if err := step("job 1: first copy of every table into the warehouse", "run"); err != nil {
		return err
	}
	before, err := ordersAtBookmark(ctx, cluster)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n==> changing the source:%s\n", strings.ReplaceAll(changes, "\n", "\n    "))
	if err := cluster.Exec(ctx, source, changes); err != nil {
		return fmt.Errorf("change the source: %w", err)
	}
	if err := step("job 2: only what changed (log-based and incremental), a new version of the full table", "run"); err != nil {
		return err
	}
	if err := step("loading report of both jobs", "report"); err != nil {
		return err
	}
	logText, err := tap("logs")
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n==> job 2's extraction log: its bookmark updates and last lines\n$ %s\n", command("logs"))
	for _, line := range excerpt(logText) {
		fmt.Fprintln(stdout, "    "+line)
	}
	if err := showWarehouse(ctx, cluster, stdout); err != nil {
		return err
	}
	if err := explain(ctx, cluster, before, stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nfiles: %s (integration), %s (state, job history, extraction logs), %s (runner's stderr)\n",
		integration, store, runnerLog.Name())
	if !o.keep {
		fmt.Fprintf(stdout, "\nthe cluster is gone; to keep it and run jobs yourself: %s demo --keep --out %s\n", o.program, outDir)
		return nil
	}
	fmt.Fprintf(stdout, "\nthe cluster keeps running on port %d:\n  source:      %s\n  destination: %s\n", cluster.Port, cluster.ConnString(source), cluster.ConnString(warehouse))
	fmt.Fprintf(stdout, "change the source, then run a job and see what it loaded:\n  %s\n  %s\n", command("run"), command("report"))
	fmt.Fprintf(stdout, "or serve its status page (jobs, logs, loading report, slot; a job runs at once, then hourly), and open http://127.0.0.1:8080/:\n  %s\n",
		command("serve")+" --http 127.0.0.1:8080")
	fmt.Fprintf(stdout, "stop it and remove its files:\n  %s demo --stop --out %s\n", o.program, outDir)
	return nil
}

// bookmarkOrders are the orders at the INCREMENTAL bookmark after job 1.
type bookmarkOrders struct {
	bookmark string
	count    int64
}

func ordersAtBookmark(ctx context.Context, c *localpg.Cluster) (bookmarkOrders, error) {
	var b bookmarkOrders
	err := queryRow(ctx, c, source, `SELECT max(ordered_on)::text, count(*) FILTER (WHERE ordered_on = (SELECT max(ordered_on) FROM shop.orders)) FROM shop.orders`, &b.bookmark, &b.count)
	return b, err
}

// explain answers what a Stitch user asks on seeing the report, with the
// numbers of this run.
func explain(ctx context.Context, c *localpg.Cluster, before bookmarkOrders, stdout io.Writer) error {
	var inSource, inWarehouse, deleted int64
	if err := queryRow(ctx, c, source, `SELECT count(*) FROM shop.orders`, &inSource); err != nil {
		return err
	}
	if err := queryRow(ctx, c, warehouse, `SELECT count(*), count(*) FILTER (WHERE customer_id = 7) FROM demo_shop.orders`, &inWarehouse, &deleted); err != nil {
		return err
	}
	fmt.Fprintf(stdout, `
==> what to notice
  - orders (INCREMENTAL on ordered_on): the source has %d orders, the warehouse %d. INCREMENTAL
    selects rows whose ordered_on is at or after the bookmark, so it never sees a delete: the
    %d orders of customer 7, deleted in the source, stay in the warehouse. LOG_BASED sees
    deletes (customer 7 is marked _sdc_deleted_at); FULL_TABLE drops them with each new version.
  - job 2 loaded the %d orders dated %s again besides the new one: the bookmark comparison is
    inclusive (>=), so that no row committed later with the same ordered_on is missed. A keyed
    destination merges them; the report counts them.
  - customers (LOG_BASED): only the update, the delete and the insert travel, read from slot
    stitch_demo. Its bookmark lsn is a WAL position as an integer, the reference tap's state
    form; the State update lines above print it both ways, and every other line prints
    PostgreSQL's form. The slot is acknowledged up to a bookmark only once the warehouse has
    committed it: at the start of the next job.
  - page_views (FULL_TABLE, no key): copied whole each job; the new version replaces the old.
`, inSource, inWarehouse, deleted, before.count, before.bookmark)
	return nil
}

func queryRow(ctx context.Context, c *localpg.Cluster, db, sql string, dest ...any) error {
	conn, err := pgx.Connect(ctx, c.ConnString(db))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, sql).Scan(dest...); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

// integrationFile selects one table per replication method, and the table
// with every type by the log.
func integrationFile(c *localpg.Cluster) string {
	return fmt.Sprintf(`# A tap-postgres runner integration (see the README's "Runner" section).
# Any value may read a secret from the environment: password: ${PGPASSWORD}
name: Demo Shop
connection:
  host: %s
  port: %d
  user: %s
  password: %s
  dbname: %s
  filter_dbs: %s
default_replication_method: LOG_BASED
tables:
  - {schema: shop, table: customers}
  - {schema: shop, table: orders, replication_method: INCREMENTAL, replication_key: ordered_on}
  - {schema: shop, table: page_views, replication_method: FULL_TABLE}
  - {schema: public, table: every_type}
schedule:
  frequency: 1h
destination:
  type: postgres
  dsn: %s
`, c.Host, c.Port, c.User, c.Password, source, source, c.ConnString(warehouse))
}

// excerpt keeps the bookmark updates and the last lines of a log.
func excerpt(log string) []string {
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	var out []string
	for i, l := range lines {
		if strings.Contains(l, "State update:") || i >= len(lines)-3 || i == 0 {
			out = append(out, l)
		}
	}
	return out
}

func showWarehouse(ctx context.Context, c *localpg.Cluster, stdout io.Writer) error {
	conn, err := pgx.Connect(ctx, c.ConnString(warehouse))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	queries := []string{
		`SELECT id, name, _sdc_deleted_at IS NOT NULL AS deleted, _sdc_table_version FROM demo_shop.customers WHERE id IN (1, 7, 2501) ORDER BY id`,
		`SELECT count(*) AS page_views, count(DISTINCT _sdc_table_version) AS versions FROM demo_shop.page_views`,
		`SELECT count(*) AS orders, max(ordered_on) AS max_ordered_on FROM demo_shop.orders`,
		`SELECT id, c_numeric, c_jsonb, c_timestamptz FROM demo_shop.every_type ORDER BY id`,
	}
	fmt.Fprintln(stdout, "\n==> the warehouse (schema demo_shop, named after the integration)")
	for _, q := range queries {
		fmt.Fprintf(stdout, "\n%s;\n", q)
		rows, err := conn.Query(ctx, q, pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
		var names []string
		for _, f := range rows.FieldDescriptions() {
			names = append(names, f.Name)
		}
		fmt.Fprintln(stdout, "    "+strings.Join(names, " | "))
		for rows.Next() {
			// The simple protocol returns PostgreSQL's own text of each value.
			values := rows.RawValues()
			cells := make([]string, len(values))
			for i, v := range values {
				cells[i] = "NULL"
				if v != nil {
					cells[i] = string(v)
				}
			}
			fmt.Fprintln(stdout, "    "+strings.Join(cells, " | "))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	return nil
}
