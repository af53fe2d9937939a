package engine

import (
	"context"
	"fmt"
	"io"

	"github.com/tap-postgres/tap-postgres/internal/connect"
	"github.com/tap-postgres/tap-postgres/internal/logging"
	"github.com/tap-postgres/tap-postgres/internal/singer"
)

// Check is `--test`: it connects, reports the server, and with a catalog
// checks that each selected table can be read. It writes one line per finding
// to w and fails when any check failed.
func (e *Engine) Check(ctx context.Context, catalog *singer.Catalog, w io.Writer) error {
	return connect.WithHint(e.check(ctx, catalog, logging.CleanLines(w)))
}

func (e *Engine) check(ctx context.Context, catalog *singer.Catalog, w io.Writer) error {
	conn, err := e.conn.Connect(ctx, e.cfg.DBName)
	if err != nil {
		return err
	}
	var version, walLevel string
	err = conn.QueryRow(ctx, `SELECT version(), current_setting('wal_level')`).Scan(&version, &walLevel)
	fmt.Fprintf(w, "INFO connected to %s:%d database %q (%s)\n", e.cfg.Host, e.cfg.Port, e.cfg.DBName, connect.TLSState(conn.PgConn()))
	conn.Close(ctx)
	if err != nil {
		return fmt.Errorf("read server version: %w", err)
	}
	fmt.Fprintf(w, "INFO server: %s\n", version)
	if catalog == nil {
		return nil
	}
	plans, err := e.planSelected(catalog)
	if err != nil {
		return err
	}
	failed := 0
	for _, db := range databasesOf(plans) {
		if err := e.resolveTables(ctx, db, plansIn(plans, db), catalog); err != nil {
			for _, line := range splitJoined(err) {
				fmt.Fprintf(w, "ERROR %s\n", line)
				failed++
			}
		}
	}
	for _, p := range plans {
		if p.live != nil {
			fmt.Fprintf(w, "INFO stream %s: readable, %d columns selected\n", p.id, len(p.columns))
		}
	}
	var logPlans []*streamPlan
	for _, p := range plans {
		if p.method == MethodLogBased && p.live != nil {
			logPlans = append(logPlans, p)
		}
	}
	if len(logPlans) > 0 && walLevel != "logical" {
		fmt.Fprintf(w, "ERROR wal_level is %q: LOG_BASED streams need wal_level = logical (Aurora/RDS: rds.logical_replication = 1)\n", walLevel)
		failed++
	}
	for _, db := range databasesOf(logPlans) {
		ld := &logDatabase{name: db, plans: plansIn(logPlans, db)}
		slot, err := e.checkSlot(ctx, ld, singer.NewState())
		for _, f := range ld.findings {
			level := "INFO"
			if f.warning {
				level = "WARNING"
			}
			fmt.Fprintf(w, "%s database %q: %s\n", level, db, f.text)
		}
		if err != nil {
			for _, line := range splitJoined(err) {
				fmt.Fprintf(w, "ERROR %v\n", connect.WithHint(line))
				failed++
			}
			continue
		}
		fmt.Fprintf(w, "INFO database %q: slot %s (%s) is ready\n", db, slot.Name, slot.Plugin)
	}
	if failed > 0 {
		return fmt.Errorf("connection check failed: %d problem(s)", failed)
	}
	return nil
}

// splitJoined lists the errors an errors.Join put together.
func splitJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
