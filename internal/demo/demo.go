// Package demo is README command 1: a throwaway local PostgreSQL with sample
// data, an integration with one table per replication method, a runner job
// into a local PostgreSQL destination, changes in the source, a second job,
// and the loading report of both — what a new user would do by hand.
package demo

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
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

// Run runs the demo; args are the demo subcommand's flags.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tap-postgres demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	outDir := fs.String("out", "demo-output", "directory for the integration file, the runner's store and logs")
	keep := fs.Bool("keep", false, "leave the PostgreSQL cluster running (its address is printed)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cli.ExitOK
		}
		return cli.ExitUsage
	}
	if err := run(ctx, *outDir, *keep, stdout); err != nil {
		fmt.Fprintf(stderr, "CRITICAL demo: %v\n", err)
		return cli.ExitError
	}
	return cli.ExitOK
}

func run(ctx context.Context, outDir string, keep bool, stdout io.Writer) (err error) {
	outDir, err = filepath.Abs(outDir)
	if err != nil {
		return err
	}
	store := filepath.Join(outDir, "store")
	// A fresh store each time: the demo's cluster is new too.
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
	cluster, err := localpg.Start(ctx, localpg.Options{OutputPlugins: "pgoutput, test_decoding"})
	if err != nil {
		return fmt.Errorf("start PostgreSQL (is postgresql-15 installed? scripts/demo.sh installs it): %w", err)
	}
	if keep {
		defer fmt.Fprintf(stdout, "\ncluster kept running: source %s, destination %s (stop it with: pg_ctl -D %s stop)\n",
			cluster.ConnString(source), cluster.ConnString(warehouse), cluster.DataDir)
	} else {
		defer func() { err = errors.Join(err, cluster.Stop()) }()
	}
	fmt.Fprintf(stdout, "==> source database %q: a shop schema and a table with every type; destination database %q\n", source, warehouse)
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
	tap := func(args ...string) (string, error) {
		var out bytes.Buffer
		all := append(args, "--integration", integration, "--store", store)
		if code := runner.Main(ctx, all, &out, runnerLog, time.Now); code != 0 {
			return "", fmt.Errorf("tap-postgres %s failed (exit %d); see %s", strings.Join(all, " "), code, runnerLog.Name())
		}
		return out.String(), nil
	}
	step := func(title string, args ...string) error {
		fmt.Fprintf(stdout, "\n==> %s\n$ tap-postgres %s --integration %s --store %s\n", title, strings.Join(args, " "), integration, store)
		out, err := tap(args...)
		fmt.Fprint(stdout, out)
		return err
	}

	if err := step("job 1: first copy of every table into the warehouse", "run"); err != nil {
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
	fmt.Fprintln(stdout, "\n==> job 2's extraction log (tap-postgres logs), its bookmark updates and last lines")
	for _, line := range excerpt(logText) {
		fmt.Fprintln(stdout, "    "+line)
	}
	if err := showWarehouse(ctx, cluster, stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nfiles: %s (integration), %s (state, job history, extraction logs), %s (runner's stderr)\n",
		integration, store, runnerLog.Name())
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
