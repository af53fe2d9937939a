// Package cli is the tap's command line: flags to options, errors to exit
// codes and the final CRITICAL line. It is the only place that is handed the
// process's stdout.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/config"
	"github.com/tap-postgres/tap-postgres/internal/engine"
	"github.com/tap-postgres/tap-postgres/internal/logging"
	"github.com/tap-postgres/tap-postgres/internal/singer"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// Env is what a run may touch besides its arguments.
type Env struct {
	Stdout, Stderr io.Writer
	// Clock is injected so tests control versions; nil means time.Now.
	Clock func() time.Time
}

type options struct {
	configPath, catalogPath, statePath string
	discover, test                     bool
}

// Usage lists every mode and subcommand of the binary, one line each.
const Usage = `usage:
  tap-postgres --config CONFIG.json --discover > catalog.json      Singer tap: write the catalog
  tap-postgres --config CONFIG.json --catalog CATALOG.json [--state STATE.json]
                                                                   Singer tap: sync the selected streams to stdout
  tap-postgres --config CONFIG.json --test [--catalog CATALOG.json] Singer tap: check the connection, tables and slots
  tap-postgres check  --integration FILE                           runner: check an integration's source and destination
  tap-postgres run    --integration FILE [--store DIR]             runner: run one job now
  tap-postgres serve  --integration FILE... [--store DIR] [--http ADDR]  runner: jobs on schedules; /metrics at ADDR
  tap-postgres reset  --integration FILE --stream ID [--store DIR] runner: copy a stream again on the next job
  tap-postgres jobs   --integration FILE [--store DIR]             runner: list the jobs
  tap-postgres logs   --integration FILE [--job N] [--store DIR]   runner: print a job's extraction log
  tap-postgres report --integration FILE [--json] [--store DIR]    runner: loading report
  tap-postgres demo   [--out DIR] [--keep] [--port N]              a throwaway PostgreSQL, sample data, two jobs
  tap-postgres demo   --stop [--out DIR]                           stop the cluster demo --keep left running
Each subcommand's flags: tap-postgres SUBCOMMAND --help
`

// usageError is a problem with the command line itself (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// Run runs the tap with args (without the program name) and returns the exit
// status.
func Run(ctx context.Context, args []string, env Env) (code int) {
	log := logging.New(env.Stderr, slog.LevelInfo)
	defer func() {
		// A bug must still end with a CRITICAL line, not a stack trace.
		if r := recover(); r != nil {
			log.Log(ctx, logging.LevelCritical, fmt.Sprintf("internal error: %v", r))
			code = ExitError
		}
	}()
	opts, err := parseFlags(args, env.Stderr)
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(env.Stderr, "CRITICAL usage: %s\n", ue.msg)
			return ExitUsage
		}
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		fmt.Fprintf(env.Stderr, "CRITICAL usage: %v\n", err)
		return ExitUsage
	}
	if err := run(ctx, opts, env, log); err != nil {
		log.Log(ctx, logging.LevelCritical, oneLine(err))
		return ExitError
	}
	return ExitOK
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("tap-postgres", flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, name := range []string{"c", "config"} {
		fs.StringVar(&o.configPath, name, "", "config JSON file")
	}
	for _, name := range []string{"catalog", "p", "properties"} {
		fs.StringVar(&o.catalogPath, name, "", "catalog JSON file (--properties is the older name)")
	}
	for _, name := range []string{"s", "state"} {
		fs.StringVar(&o.statePath, name, "", "state JSON file")
	}
	for _, name := range []string{"d", "discover"} {
		fs.BoolVar(&o.discover, name, false, "write the catalog to stdout")
	}
	fs.BoolVar(&o.test, "test", false, "check the connection (and, with --catalog, the selected tables)")
	fs.Usage = func() {
		fmt.Fprint(stderr, Usage)
		fmt.Fprintln(stderr, "\nflags of the Singer tap:")
		fs.PrintDefaults()
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, Usage)
		return o, usageError{"give a mode (--discover, --catalog, --test) with --config, or a subcommand"}
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	case o.configPath == "":
		return o, usageError{"--config is required"}
	case o.discover && (o.catalogPath != "" || o.test):
		return o, usageError{"--discover cannot be combined with --catalog or --test"}
	case !o.discover && !o.test && o.catalogPath == "":
		return o, usageError{"one of --discover, --catalog (or --properties) or --test is required"}
	}
	return o, nil
}

func run(ctx context.Context, o options, env Env, log *slog.Logger) error {
	cfg, err := loadConfig(o.configPath, log)
	if err != nil {
		return err
	}
	eng := engine.New(cfg, log, env.Clock)
	defer eng.Close()
	out := singer.NewWriter(env.Stdout)
	var catalog *singer.Catalog
	if o.catalogPath != "" {
		if catalog, err = loadCatalog(o.catalogPath); err != nil {
			return err
		}
	}
	switch {
	case o.discover:
		catalog, err := eng.Discover(ctx)
		if err != nil {
			return err
		}
		return out.WriteCatalog(catalog)
	case o.test:
		return eng.Check(ctx, catalog, env.Stderr)
	}
	state := singer.NewState()
	if o.statePath != "" {
		data, err := os.ReadFile(o.statePath)
		if err != nil {
			return fmt.Errorf("read state file: %w", err)
		}
		if state, err = singer.ParseState(data); err != nil {
			return fmt.Errorf("state file %s: %w", o.statePath, err)
		}
	}
	if err := eng.Sync(ctx, catalog, state, out); err != nil {
		// What was emitted before the failure must still reach the target.
		return errors.Join(err, out.Flush())
	}
	return out.Flush()
}

func loadConfig(path string, log *slog.Logger) (config.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return config.Config{}, fmt.Errorf("read config file: %w", err)
	}
	cfg, warnings, err := config.Parse(data)
	for _, w := range warnings {
		log.Warn(w)
	}
	if err != nil {
		return config.Config{}, fmt.Errorf("config file %s: %w", path, err)
	}
	return cfg, nil
}

func loadCatalog(path string) (*singer.Catalog, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read catalog file: %w", err)
	}
	catalog, err := singer.ParseCatalog(data)
	if err != nil {
		return nil, fmt.Errorf("catalog file %s: %w", path, err)
	}
	return catalog, nil
}

// oneLine keeps the CRITICAL cause on the last line, joined errors included.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
