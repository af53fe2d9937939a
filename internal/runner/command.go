package runner

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/destination"
	"github.com/tap-postgres/tap-postgres/internal/engine"
	"github.com/tap-postgres/tap-postgres/internal/logging"
	"github.com/tap-postgres/tap-postgres/internal/singer"
)

// Commands lists the runner's subcommands.
func Commands() []string { return []string{"check", "run", "serve", "reset", "jobs", "logs", "report"} }

// integrationFlags collects repeated --integration flags.
type integrationFlags []string

func (f *integrationFlags) String() string     { return strings.Join(*f, ",") }
func (f *integrationFlags) Set(v string) error { *f = append(*f, v); return nil }

// Main runs a runner subcommand and returns the exit status.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, clock func() time.Time) int {
	if clock == nil {
		clock = time.Now
	}
	if len(args) == 0 {
		fmt.Fprintln(stderr, "CRITICAL usage: tap-postgres check|run|serve|reset|jobs|logs|report --integration FILE [--store DIR]")
		return 2
	}
	cl, code := parseCommandLine(args, stderr)
	if cl == nil {
		return code
	}
	if args[0] == "serve" {
		return serveCommand(ctx, cl.integrations, cl.store, cl.http, cl.httpToken, stderr)
	}
	in, err := LoadIntegration(cl.integrations[0])
	if err != nil {
		fmt.Fprintf(stderr, "CRITICAL %s\n", oneLine(err))
		return 1
	}
	if args[0] == "check" {
		if err := Check(ctx, in, stdout); err != nil {
			fmt.Fprintf(stderr, "CRITICAL %s\n", oneLine(err))
			return 1
		}
		return 0
	}
	if args[0] != "run" && !storeMayExist(cl.store, in) {
		fmt.Fprintf(stderr, "CRITICAL no job of integration %q has run with store %s (is --store right?)\n", in.Name, cl.store)
		return 1
	}
	store, err := openIntegrationStore(ctx, cl.store, in)
	if err != nil {
		fmt.Fprintf(stderr, "CRITICAL %s\n", oneLine(err))
		return 1
	}
	defer store.Close()
	if args[0] != "run" {
		next, err := store.NextJobID()
		if err != nil {
			fmt.Fprintf(stderr, "CRITICAL %s\n", oneLine(err))
			return 1
		}
		if next == 1 {
			fmt.Fprintf(stderr, "CRITICAL no job of integration %q has run with store %s (is --store right?)\n", in.Name, redactedStore(cl.store))
			return 1
		}
	}
	if args[0] != "run" {
		settleIfIdle(ctx, store, clock, stderr)
	}
	switch args[0] {
	case "run":
		job, err := RunJob(ctx, in, store, clock, stderr)
		if err != nil {
			// A job refused before its log existed (the lock, the store)
			// has said nothing yet.
			if job.ID == 0 {
				fmt.Fprintf(stderr, "CRITICAL %s\n", oneLine(err))
			}
			return 1
		}
		printJobs(stdout, []JobRecord{job})
	case "reset":
		if err := Reset(ctx, store, cl.stream); err != nil {
			fmt.Fprintf(stderr, "CRITICAL %s\n", oneLine(err))
			return 1
		}
		fmt.Fprintf(stdout, "stream %s reset: the next job copies it again in a new version\n", cl.stream)
	case "jobs":
		jobs, err := store.Jobs()
		if err != nil {
			fmt.Fprintf(stderr, "CRITICAL %s\n", oneLine(err))
			return 1
		}
		printJobs(stdout, jobs)
	case "report":
		jobs, err := store.Jobs()
		if err != nil {
			fmt.Fprintf(stderr, "CRITICAL %s\n", oneLine(err))
			return 1
		}
		if err := Report(jobs, clock()).Print(stdout, cl.asJSON); err != nil {
			fmt.Fprintf(stderr, "CRITICAL %s\n", oneLine(err))
			return 1
		}
	case "logs":
		id := cl.job
		if id == 0 {
			// The newest log, also of a job that crashed before it was
			// recorded.
			next, err := store.NextJobID()
			if err != nil {
				fmt.Fprintf(stderr, "CRITICAL %s\n", oneLine(err))
				return 1
			}
			if id = next - 1; id == 0 {
				fmt.Fprintln(stderr, "CRITICAL no job has run yet")
				return 1
			}
		}
		data, err := store.ReadLog(id)
		if err != nil {
			fmt.Fprintf(stderr, "CRITICAL %s\n", oneLine(err))
			return 1
		}
		_, _ = stdout.Write(data)
	default:
		fmt.Fprintf(stderr, "CRITICAL usage: unknown command %q\n", args[0])
		return 2
	}
	return 0
}

// serveCommand runs every integration on its schedule until SIGINT/SIGTERM.
func serveCommand(ctx context.Context, paths []string, storeDir, httpAddr, httpToken string, stderr io.Writer) int {
	var ins []*Integration
	for _, p := range paths {
		in, err := LoadIntegration(p)
		if err != nil {
			fmt.Fprintf(stderr, "CRITICAL %s\n", oneLine(err))
			return 1
		}
		ins = append(ins, in)
	}
	// Jobs of several integrations share stderr: whole lines, and no
	// progress bars (a writer that is not the terminal itself).
	var mu sync.Mutex
	shared := &lockedWriter{mu: &mu, w: stderr}
	log := logging.NewExtraction(stderr, &mu, "main", time.Now)
	owners := map[string]string{}
	for _, in := range ins {
		if other, taken := owners[in.StoreKey()]; taken {
			fmt.Fprintf(stderr, "CRITICAL integrations %s and %s share the store key %s (names fold to lower case and \"_\"): give one an \"id\" of its own\n",
				clip(other), clip(in.Name), in.StoreKey())
			return 1
		}
		owners[in.StoreKey()] = in.Name
	}
	controls := NewControls(ins)
	if httpAddr != "" {
		httpAddr = httpAddress(httpAddr)
		listener, err := net.Listen("tcp", httpAddr)
		if err != nil {
			fmt.Fprintf(stderr, "CRITICAL serve --http %s: %v\n", httpAddr, err)
			return 1
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", MetricsHandler(ins, storeDir, time.Now))
		var actions *Actions
		if httpToken != "" {
			actions = &Actions{Token: httpToken, Controls: controls}
		}
		mux.Handle("/", StatusHandler(ins, storeDir, time.Now, actions))
		server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = server.Serve(listener) }()
		defer server.Close()
		log.Info(fmt.Sprintf("status at http://%s/, metrics at http://%s/metrics", listener.Addr(), listener.Addr()))
	}
	defer sampleWhileServing(ctx, ins, storeDir, log)()
	err := Serve(ctx, ins, systemClock{}, log, func(ctx context.Context, in *Integration) error {
		store, err := openIntegrationStore(ctx, storeDir, in)
		if err != nil {
			return err
		}
		defer store.Close()
		_, err = RunJob(ctx, in, store, time.Now, shared)
		return err
	}, controls)
	if err != nil {
		fmt.Fprintf(stderr, "CRITICAL %s\n", oneLine(err))
		return 1
	}
	return 0
}

// storeMayExist is false for a directory store in which in has no part
// yet: reading one would create it empty. A PostgreSQL store is asked.
func storeMayExist(location string, in *Integration) bool {
	if isPostgresLocation(location) {
		return true
	}
	_, err := os.Stat(filepath.Join(location, in.StoreKey()))
	return !errors.Is(err, iofs.ErrNotExist)
}

// settleIfIdle settles crashed jobs when no job runs (the lock is free),
// so that jobs, logs and report show them as they are.
func settleIfIdle(ctx context.Context, store Store, clock func() time.Time, stderr io.Writer) {
	unlock, err := store.Lock(ctx)
	if err != nil {
		return // a job runs: what it recorded as running is so
	}
	defer unlock()
	if err := settleCrashed(store, clock); err != nil {
		fmt.Fprintf(stderr, "WARNING %s\n", oneLine(err))
	}
}

// openIntegrationStore opens in's part of the store, refused when another
// integration's jobs wrote it: names that fold to one key ("Audit-PG",
// "Audit PG") would otherwise share state and history. Nothing is read
// or written for the refused one.
func openIntegrationStore(ctx context.Context, location string, in *Integration) (Store, error) {
	store, err := OpenStore(ctx, location, in.StoreKey())
	if err != nil {
		return nil, err
	}
	ran, err := store.Naming()
	switch {
	case err != nil:
	case ran == nil || ran.Name == in.Name:
		return store, nil
	case in.ID != "":
		err = fmt.Errorf("the integration with id %s ran as %s, the file says %s: the integration name cannot change once it has run (the destination schema is named after it); create a new integration instead",
			in.ID, clip(ran.Name), clip(in.Name))
	default:
		err = fmt.Errorf("integration %s has the store key %s of integration %s, which has run (names fold to lower case and \"_\"): give it an \"id\" of its own, or another name; if it is %s renamed, the name cannot change once it has run",
			clip(in.Name), in.StoreKey(), clip(ran.Name), clip(ran.Name))
	}
	store.Close()
	return nil, err
}

// commandLine is a runner subcommand's flags.
type commandLine struct {
	command      string
	integrations []string
	store        string
	stream       string
	job          int
	asJSON       bool
	http         string
	httpToken    string
}

// parseCommandLine reads a subcommand's flags; nil with the exit status
// when they are wrong or --help was asked (said on stderr).
func parseCommandLine(args []string, stderr io.Writer) (*commandLine, int) {
	fs := flag.NewFlagSet("tap-postgres "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: tap-postgres %s --integration FILE [flags]\nflags:\n", args[0])
		fs.PrintDefaults()
	}
	cl := &commandLine{command: args[0]}
	var integrations integrationFlags
	fs.Var(&integrations, "integration", "integration file (YAML); serve takes several")
	fs.StringVar(&cl.store, "store", "tap-postgres-runs", "store: a directory, or a postgres:// URL (then better given by "+storeEnv+" or --store-file, which ps does not show)")
	storeFile := fs.String("store-file", "", "file holding the store's location (a postgres:// URL with its password)")
	fs.StringVar(&cl.stream, "stream", "", "reset: the tap_stream_id to copy again")
	fs.IntVar(&cl.job, "job", 0, "logs: the job (default: the last)")
	fs.BoolVar(&cl.asJSON, "json", false, "report: JSON instead of tables")
	fs.StringVar(&cl.http, "http", "", "serve: also serve a status page and /metrics (Prometheus) at this address, e.g. 127.0.0.1:9187")
	fs.StringVar(&cl.httpToken, "http-token", "", "serve --http: enable the status page's actions (run now, stop, reset table), each of which must carry this token (at least 16 characters; better given by "+httpTokenEnv+", which ps does not show)")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, 0
		}
		return nil, 2
	}
	location, err := storeLocation(fs, cl.store, *storeFile)
	if err != nil {
		fmt.Fprintf(stderr, "CRITICAL usage: %s\n", oneLine(err))
		return nil, 2
	}
	cl.store = location
	if cl.httpToken != "" && cl.http == "" {
		fmt.Fprintln(stderr, "CRITICAL usage: --http-token goes with serve --http")
		return nil, 2
	}
	if cl.httpToken == "" && cl.http != "" {
		cl.httpToken = os.Getenv(httpTokenEnv)
	}
	if cl.httpToken != "" && len(cl.httpToken) < minHTTPTokenChars {
		fmt.Fprintf(stderr, "CRITICAL usage: the status page's token (--http-token or %s) has fewer than %d characters\n", httpTokenEnv, minHTTPTokenChars)
		return nil, 2
	}
	if len(integrations) == 0 || args[0] != "serve" && len(integrations) > 1 {
		fmt.Fprintln(stderr, "CRITICAL usage: --integration is required (once; serve takes several)")
		return nil, 2
	}
	cl.integrations = integrations
	return cl, 0
}

// httpTokenEnv holds the status page's action token when --http-token is
// not given.
const httpTokenEnv = "TAP_POSTGRES_HTTP_TOKEN"

// minHTTPTokenChars keeps a guessable token from guarding the actions.
const minHTTPTokenChars = 16

// defaultHTTPPort is --http's port when the address has none.
const defaultHTTPPort = "8080"

// httpAddress is --http's address to listen on: host:port as given, or a
// host alone on defaultHTTPPort.
func httpAddress(addr string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	return net.JoinHostPort(strings.Trim(addr, "[]"), defaultHTTPPort)
}

// storeEnv holds the store's location when neither --store nor
// --store-file is given: a password in a command line is in every user's
// ps.
const storeEnv = "TAP_POSTGRES_STORE"

// storeLocation is the store from --store, --store-file or storeEnv, in
// that order; two of the flags at once are refused.
func storeLocation(fs *flag.FlagSet, flagValue, file string) (string, error) {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "store" })
	switch {
	case given && file != "":
		return "", errors.New("--store and --store-file name the store twice; give one")
	case file != "":
		data, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--store-file: %w", err)
		}
		location := strings.TrimSpace(string(data))
		if location == "" {
			return "", fmt.Errorf("--store-file %s is empty", file)
		}
		return location, nil
	case !given && os.Getenv(storeEnv) != "":
		return strings.TrimSpace(os.Getenv(storeEnv)), nil
	}
	return flagValue, nil
}

// redactedStore names a store location without its password.
func redactedStore(location string) string {
	if !isPostgresLocation(location) {
		return location
	}
	u, err := url.Parse(location)
	if err != nil {
		return "(the PostgreSQL store)"
	}
	return u.Redacted()
}

// Reset clears one stream's bookmark in the committed state, so that the
// next job copies it again in a new version (the destination then drops the
// old version's rows) — the same mechanism a changed method uses.
func Reset(ctx context.Context, store Store, stream string) error {
	if stream == "" {
		return fmt.Errorf("reset: --stream is required")
	}
	unlock, err := store.Lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	state, err := store.State()
	if err != nil {
		return err
	}
	if _, ok := state.Bookmarks[stream]; !ok {
		ids := slices.Sorted(maps.Keys(state.Bookmarks))
		if len(ids) == 0 {
			return fmt.Errorf("reset: stream %s has no bookmark, and no stream of this integration has one yet", stream)
		}
		return fmt.Errorf("reset: stream %s has no bookmark; --stream takes a tap_stream_id (<database>-<schema>-<table>), one of: %s",
			stream, strings.Join(ids, ", "))
	}
	delete(state.Bookmarks, stream)
	if state.CurrentlySyncing != nil && *state.CurrentlySyncing == stream {
		state.CurrentlySyncing = nil
	}
	data, err := json.Marshal(state)
	if err != nil {
		return err
	}
	return store.CommitState(data)
}

func printJobs(w io.Writer, jobs []JobRecord) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tSTARTED\tDURATION\tSTATUS\tROWS\tERROR")
	for _, j := range jobs {
		var rows int64
		for _, n := range j.Rows {
			rows += n
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\n", j.ID, j.Started.Format(time.RFC3339), j.Finished.Sub(j.Started).Round(time.Millisecond), j.Status, rows, j.Error)
	}
	_ = tw.Flush()
}

// Check tries the integration without running a job: the source as the
// tap's --test does (connection, each selected table, slot and wal_level
// for LOG_BASED), then the destination.
func Check(ctx context.Context, in *Integration, w io.Writer) error {
	for _, warning := range in.warnings {
		fmt.Fprintf(w, "WARNING %s\n", logging.Clean(warning))
	}
	eng := engine.New(in.config, logging.New(io.Discard, slog.LevelError), time.Now)
	defer eng.Close()
	catalog, skipped, err := in.catalog(ctx, eng)
	if err != nil {
		return err
	}
	for _, e := range skipped {
		fmt.Fprintf(w, "ERROR %s\n", oneLine(e))
	}
	for _, s := range catalog.Streams {
		meta := s.TableMeta()
		selected, _, _ := meta.Bool(singer.MetaSelected)
		isView, _, _ := meta.Bool(singer.MetaIsView)
		if keys, _ := meta.Strings(singer.MetaViewKeyProperties); selected && isView && len(keys) == 0 {
			fmt.Fprintf(w, "WARNING stream %s is a view without view_key: its records have no key, so a destination that upserts by key (postgres, most Singer targets) cannot load it; give the selection view_key: [column, …]\n", logging.Clean(s.TapStreamID))
		}
	}
	sourceErr := errors.Join(append([]error{eng.Check(ctx, catalog, w)}, skipped...)...)
	var line string
	switch d := in.Destination; d.Type {
	case "postgres":
		line, err = destination.CheckPostgres(ctx, d.dsn, in.DestinationSchema())
	case "singer":
		line, err = destination.CheckSingerTarget(d.Command)
	default:
		line, err = destination.CheckJSONL(d.Path)
	}
	if err != nil {
		fmt.Fprintf(w, "ERROR %s\n", oneLine(err))
	} else {
		fmt.Fprintf(w, "INFO %s\n", logging.Clean(line))
	}
	return errors.Join(sourceErr, err)
}

// lockedWriter serializes writes of several writers.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
