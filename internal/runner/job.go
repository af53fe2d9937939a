package runner

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/vbauerster/mpb/v8"

	"github.com/tap-postgres/tap-postgres/internal/config"
	"github.com/tap-postgres/tap-postgres/internal/connect"
	"github.com/tap-postgres/tap-postgres/internal/destination"
	"github.com/tap-postgres/tap-postgres/internal/engine"
	"github.com/tap-postgres/tap-postgres/internal/logging"
	"github.com/tap-postgres/tap-postgres/internal/singer"
)

// RunJob runs one extraction: discovery, the tap in process from the
// committed state, loading into the destination, and state commits after
// each durable load. A crash anywhere repeats work on the next job but loses
// none, and the slot acknowledgement is always a position the destination
// holds, since the tap is given the committed state.
func RunJob(ctx context.Context, in *Integration, store Store, clock func() time.Time, stderr io.Writer) (JobRecord, error) {
	unlock, err := lockSoon(ctx, store)
	if err != nil {
		return JobRecord{}, err
	}
	defer unlock()
	if err := settleCrashed(store, clock); err != nil {
		return JobRecord{}, err
	}
	id, err := store.NextJobID()
	if err != nil {
		return JobRecord{}, err
	}
	host, _ := os.Hostname()
	job := JobRecord{ID: id, Started: clock().UTC(), Status: statusRunning, Host: host, PID: os.Getpid(), Rows: map[string]int64{}}
	logFile, err := store.CreateLog(job.ID)
	if err != nil {
		return JobRecord{}, err
	}
	defer logFile.Close()
	// Recorded as it starts, so that a job whose process dies (killed, out
	// of memory) is in the history, and settled as crashed later.
	if err := store.AppendJob(job); err != nil {
		return JobRecord{}, err
	}
	var mu sync.Mutex
	console := &consoleWriter{w: stderr}
	var progress *jobProgress
	if isTerminal(stderr) {
		progress = newJobProgress(stderr, nil)
		console.w = progress
	} else if columns := supervisedTerminal(stderr); columns > 0 {
		progress = newJobProgress(stderr, nil, mpb.ForceTTY(), mpb.WithWidth(columns))
		console.w = progress
	}
	sinks := io.MultiWriter(logFile, console)
	mainLog := logging.NewExtraction(sinks, &mu, "main", clock)
	tapLog := logging.NewExtraction(sinks, &mu, "tap", clock)
	targetLog := logging.NewExtraction(sinks, &mu, "target", clock)

	mainLog.Info(fmt.Sprintf("job %d of integration %q started", job.ID, in.Name))
	for _, w := range in.warnings {
		mainLog.Warn(w)
	}
	err = connect.WithHint(runJob(ctx, in, store, clock, tapLog, targetLog, progress, &job))
	if progress != nil {
		mu.Lock()
		progress.finish()
		console.w = stderr
		mu.Unlock()
	}
	job.Finished = clock().UTC()
	job.Status = statusSucceeded
	switch {
	case errors.Is(err, errStopped):
		job.Status = statusStopped
	case err != nil:
		job.Status, job.Error = statusFailed, err.Error()
	}
	herr := store.AppendJob(job)
	// The slots as the job found them start or extend their history; a
	// history that cannot take them is no reason to fail the job.
	if serr := store.AppendSlotSamples(samplesAt(job.Started, job.Slots)); serr != nil {
		mainLog.Warn(fmt.Sprintf("slot health not recorded: %v", serr))
	}
	if errors.Is(err, errStopped) && herr == nil {
		mainLog.Warn(fmt.Sprintf("job %d stopped by a signal; what it loaded is committed, the next job goes on from there", job.ID))
		return job, err
	}
	if err = errors.Join(err, herr); err != nil {
		mainLog.Log(ctx, logging.LevelCritical, err.Error())
		return job, err
	}
	mainLog.Info(fmt.Sprintf("job %d succeeded in %s", job.ID, job.Finished.Sub(job.Started).Round(time.Millisecond)))
	return job, nil
}

// lockSoon takes the job lock, waiting a few seconds while it is held: a
// `jobs`, `logs` or `report` settling crashed jobs holds it a moment, and
// a job starting then must not be refused for it.
func lockSoon(ctx context.Context, store Store) (func(), error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		unlock, err := store.Lock(ctx)
		if !errors.Is(err, errLockHeld) || time.Now().After(deadline) {
			return unlock, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// A job's status in the history.
const (
	statusRunning   = "running"
	statusSucceeded = "succeeded"
	statusFailed    = "failed"
	statusStopped   = "stopped"
	statusCrashed   = "crashed"
)

// crashedError is a crashed job's error.
const crashedError = "its process ended before the job did (killed, out of memory, or its machine lost); its extraction log ends where it stopped"

// settleCrashed records as crashed the jobs recorded as running, and says
// so at the end of their logs. The caller holds the job lock, so no process
// runs them any more.
func settleCrashed(store Store, clock func() time.Time) error {
	jobs, err := store.Jobs()
	if err != nil {
		return err
	}
	for _, j := range jobs {
		if j.Status == statusRunning {
			if err := settleJob(store, j, crashedError, clock); err != nil {
				return err
			}
		}
	}
	return nil
}

// settleJob records a job that was running as crashed, and says why at the
// end of its log.
func settleJob(store Store, j JobRecord, why string, clock func() time.Time) error {
	j.Status, j.Error = statusCrashed, why
	j.Finished = lastLogTime(store, j)
	if err := store.AppendJob(j); err != nil {
		return fmt.Errorf("settle crashed job %d: %w", j.ID, err)
	}
	// The history now says why; a log that cannot take the line (pruned)
	// must not stop every later job.
	if log, err := store.AppendLog(j.ID); err == nil {
		logging.NewExtraction(log, &sync.Mutex{}, "main", clock).Log(context.Background(), logging.LevelCritical,
			fmt.Sprintf("job %d crashed: %s", j.ID, why))
		_ = log.Close()
	}
	return nil
}

// lastLogTime is when a job's log last said something: the closest to its
// end that is known of a crashed job.
func lastLogTime(store Store, j JobRecord) time.Time {
	data, err := store.ReadLog(j.ID)
	if err != nil {
		return j.Started
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	const stamp = "2006-01-02 15:04:05,000Z"
	last := lines[len(lines)-1]
	if len(last) < len(stamp) {
		return j.Started
	}
	t, err := time.Parse(stamp, string(last[:len(stamp)]))
	if err != nil {
		return j.Started
	}
	return t
}

// errStopped ends a job that a signal stopped cleanly: the tap ended with
// a last STATE and the destination committed it.
var errStopped = errors.New("job stopped by a signal")

// consoleWriter is where log lines go on stderr: through the progress bars
// while they are drawn.
type consoleWriter struct{ w io.Writer }

func (c *consoleWriter) Write(p []byte) (int, error) { return c.w.Write(p) }

func runJob(ctx context.Context, in *Integration, store Store, clock func() time.Time, tapLog, targetLog *slog.Logger, progress *jobProgress, job *JobRecord) error {
	firstRun, err := checkNaming(in, store)
	if err != nil {
		return err
	}
	eng := engine.New(in.config, tapLog, clock)
	defer eng.Close()
	catalog, skipped, err := in.catalog(ctx, eng)
	if err != nil {
		return err
	}
	// The other tables go on; the job ends failed, naming the skipped ones.
	for _, e := range skipped {
		tapLog.Error("table left out of this job: " + e.Error())
	}
	// The names are fixed once something may reach the destination, not
	// by a first job refused before (whose error may ask to change them).
	if firstRun {
		if err := store.SaveNaming(namingOf(in)); err != nil {
			return err
		}
	}
	state, err := store.State()
	if err != nil {
		return err
	}
	committed := state.Clone()
	opts := destination.Options{
		Commit: func(value json.RawMessage) error {
			next, err := singer.ParseState(value)
			if err != nil {
				return fmt.Errorf("state from the destination: %w", err)
			}
			if err := store.CommitState(value); err != nil {
				return err
			}
			logBookmarkChanges(targetLog, committed, next)
			committed = next
			return nil
		},
		Clock:         clock,
		Fence:         store.Held,
		Log:           targetLog,
		BatchRows:     in.Destination.BatchRows,
		BatchInterval: time.Duration(in.Destination.BatchSeconds) * time.Second,
	}
	// A table's duration runs from its first record to its last: one map
	// lookup and one clock reading per record.
	type recordTimes struct{ first, last time.Time }
	times := map[string]*recordTimes{}
	if progress != nil {
		progress.totals = copyTotals(catalog, state, in.config)
	}
	opts.OnRecord = func(stream string) {
		now := clock()
		t := times[stream]
		if t == nil {
			t = &recordTimes{first: now}
			times[stream] = t
		}
		t.last = now
		if progress != nil {
			progress.record(stream)
		}
	}
	dest, err := in.openDestination(ctx, opts)
	if err != nil {
		return err
	}
	syncErr := eng.Sync(ctx, catalog, state, singer.NewWriter(dest))
	closeErr := dest.Close()
	job.Slots = eng.Slots()
	job.Changes = eng.Changes()
	job.Durations = map[string]time.Duration{}
	job.Sent = dest.Received()
	loaded := dest.Rows()
	for stream := range job.Sent {
		job.Rows[stream] = loaded[stream]
		if t := times[stream]; t != nil {
			job.Durations[stream] = t.last.Sub(t.first)
		}
	}
	// Keyed like the rows, by the stream name the messages carry.
	job.Bookmarks = map[string]json.RawMessage{}
	for _, st := range catalog.Streams {
		b := committed.Bookmarks[st.TapStreamID]
		if b == nil || len(b.ReplicationKeyValue) == 0 {
			continue
		}
		job.Bookmarks[engine.StreamName(st, in.config.IncludeSchemasInDestinationStreamName)] = b.ReplicationKeyValue
	}
	if closeErr == nil && len(skipped) == 0 && ctx.Err() != nil && errors.Is(syncErr, ctx.Err()) {
		return errStopped
	}
	if closeErr != nil && errors.Is(syncErr, destination.ErrInputRefused) {
		// The target stopped reading because it failed: its close error
		// says why, the tap's write error only repeats that it stopped.
		syncErr = nil
	}
	return errors.Join(append([]error{syncErr, closeErr}, skipped...)...)
}

// logBookmarkChanges logs each bookmark that a commit moves, as Stitch does:
// `State update: adding bookmarks.<stream>.<key> = <value>`.
func logBookmarkChanges(log *slog.Logger, before, after *singer.State) {
	ids := make([]string, 0, len(after.Bookmarks))
	for id := range after.Bookmarks {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		now, _ := json.Marshal(after.Bookmarks[id])
		var was []byte
		if b := before.Bookmarks[id]; b != nil {
			was, _ = json.Marshal(b)
		}
		if bytes.Equal(now, was) {
			continue
		}
		var fields, old map[string]json.RawMessage
		_ = json.Unmarshal(now, &fields)
		_ = json.Unmarshal(was, &old)
		keys := make([]string, 0, len(fields))
		for k := range fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !bytes.Equal(fields[k], old[k]) {
				log.Info(fmt.Sprintf("State update: adding bookmarks.%s.%s = %s%s", id, k, fields[k], lsnForm(k, fields[k])))
			}
		}
	}
}

// lsnForm gives an lsn bookmark, an integer in the reference tap's state,
// also in PostgreSQL's form, which every other line prints.
func lsnForm(key string, value json.RawMessage) string {
	if key != "lsn" {
		return ""
	}
	n, err := strconv.ParseUint(string(value), 10, 64)
	if err != nil {
		return ""
	}
	return " (" + pglogrepl.LSN(n).String() + ")"
}

func (in *Integration) openDestination(ctx context.Context, opts destination.Options) (destination.Destination, error) {
	switch d := in.Destination; d.Type {
	case "postgres":
		return destination.OpenPostgres(ctx, d.dsn, in.DestinationSchema(), in.owner(), opts)
	case "singer":
		return destination.OpenSingerTarget(d.Command, d.env, opts)
	default:
		return destination.OpenJSONL(d.Path, opts)
	}
}

// checkNaming refuses a job whose destination names would differ from the
// ones earlier jobs loaded into, as Stitch does; firstRun says none has
// recorded them yet.
func checkNaming(in *Integration, store Store) (firstRun bool, err error) {
	now := namingOf(in)
	ran, err := store.Naming()
	if err != nil || ran == nil {
		return err == nil, err
	}
	// The name was checked when the store was opened (openIntegrationStore).
	if ran.IncludeSchemasInDestinationStreamName != now.IncludeSchemasInDestinationStreamName {
		return false, fmt.Errorf("include_schemas_in_destination_stream_name cannot change once the integration has run (it ran with %t): destination table names would change; create a new integration instead", ran.IncludeSchemasInDestinationStreamName)
	}
	return false, nil
}

// owner names the integration in the destination's tables: its name,
// which cannot change once it has run, and its id when it has one.
func (in *Integration) owner() string {
	if in.ID != "" {
		return fmt.Sprintf("%s (id %s)", in.Name, in.ID)
	}
	return in.Name
}

func namingOf(in *Integration) Naming {
	return Naming{Name: in.Name, IncludeSchemasInDestinationStreamName: in.config.IncludeSchemasInDestinationStreamName}
}

// copyTotals is the row-count of each selected stream this job reads whole
// (as the engine decides), by message stream name; other streams' totals
// are unknown.
func copyTotals(catalog *singer.Catalog, state *singer.State, cfg config.Config) map[string]int64 {
	totals := map[string]int64{}
	for _, st := range catalog.Streams {
		meta := st.TableMeta()
		if selected, _, _ := meta.Bool(singer.MetaSelected); !selected {
			continue
		}
		method, _ := meta.String(singer.MetaReplicationMethod)
		key, _ := meta.String(singer.MetaReplicationKey)
		method = cmp.Or(method, cfg.DefaultReplicationMethod)
		if n, ok := meta.Int(singer.MetaRowCount); ok && engine.ReadsWholeTable(method, key, state.Bookmarks[st.TapStreamID]) {
			totals[engine.StreamName(st, cfg.IncludeSchemasInDestinationStreamName)] = int64(n)
		}
	}
	return totals
}

// catalog discovers the source and selects what the integration does;
// skipped lists the selected tables left out of this job.
func (in *Integration) catalog(ctx context.Context, eng *engine.Engine) (catalog *singer.Catalog, skipped []error, err error) {
	catalog, err = eng.Discover(ctx)
	if err != nil {
		return nil, nil, err
	}
	skipped, err = in.applySelections(catalog)
	if err != nil {
		return nil, nil, err
	}
	if err := distinctStreamNames(catalog, in.config.IncludeSchemasInDestinationStreamName); err != nil {
		return nil, nil, err
	}
	return catalog, skipped, nil
}

// distinctStreamNames refuses two selected tables whose messages would
// carry one stream name (same table in two databases, or in two schemas
// without include_schemas_in_destination_stream_name): a destination
// would merge them into one table, each copy's ACTIVATE_VERSION deleting
// the other's rows.
func distinctStreamNames(catalog *singer.Catalog, includeSchema bool) error {
	byName := map[string]string{}
	var problems []error
	for _, st := range catalog.Streams {
		if selected, _, _ := st.TableMeta().Bool(singer.MetaSelected); !selected {
			continue
		}
		name := engine.StreamName(st, includeSchema)
		if other, ok := byName[name]; ok {
			problems = append(problems, fmt.Errorf("selected tables %s and %s would both load as stream %q: select one (or, across schemas, set include_schemas_in_destination_stream_name)", other, st.TapStreamID, name))
			continue
		}
		byName[name] = st.TapStreamID
	}
	return errors.Join(problems...)
}
