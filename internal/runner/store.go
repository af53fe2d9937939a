package runner

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/durable"
	"github.com/tap-postgres/tap-postgres/internal/engine"
	"github.com/tap-postgres/tap-postgres/internal/singer"
)

// Store keeps one integration's committed state, job history, extraction
// logs and naming settings.
type Store interface {
	// Lock takes the integration's job lock; it is released by unlock or
	// when the holder dies, never left stale.
	Lock(ctx context.Context) (unlock func(), err error)
	// Held reports an error once the lock taken by Lock is lost, so that a
	// job stops loading before another one, holding it now, has loaded.
	Held() error
	// State is the last committed state (empty before the first job).
	State() (*singer.State, error)
	// CommitState replaces the committed state atomically and durably.
	CommitState(state json.RawMessage) error
	// NextJobID numbers a new job.
	NextJobID() (int, error)
	AppendJob(j JobRecord) error
	// Jobs is the job history, oldest first.
	Jobs() ([]JobRecord, error)
	CreateLog(id int) (io.WriteCloser, error)
	// AppendLog adds lines to an existing job's log.
	AppendLog(id int) (io.WriteCloser, error)
	ReadLog(id int) ([]byte, error)
	// Naming is what the first job ran with; nil before it.
	Naming() (*Naming, error)
	SaveNaming(n Naming) error
	// AppendSlotSamples records slot health and drops the samples older
	// than slotHistory before the newest one appended. It takes no job
	// lock: serve samples while a job runs, and both may append at once.
	AppendSlotSamples(samples []SlotSample) error
	// SlotSamples are the samples taken at since or later, oldest first.
	SlotSamples(since time.Time) ([]SlotSample, error)
	Close() error
}

// errLockHeld is Lock's answer while another process holds the job lock.
var errLockHeld = errors.New("a job of this integration is already running")

// Naming is what shapes destination names: it cannot change once the
// integration has run (README, "Runner").
type Naming struct {
	Name                                  string `json:"name"`
	IncludeSchemasInDestinationStreamName bool   `json:"include_schemas_in_destination_stream_name"`
}

// OpenStore opens the integration's store at location: a PostgreSQL
// database when location is a postgres:// or postgresql:// URL (tables in
// schema DefaultStoreSchema, or in the schema named by a #fragment, created
// when missing), so that jobs can run on several machines; otherwise a
// directory on local disk.
func OpenStore(ctx context.Context, location, integration string) (Store, error) {
	if isPostgresLocation(location) {
		return openPgStore(ctx, location, integration)
	}
	return openDirStore(location, integration)
}

// dirStore keeps the store in a directory on local disk, private to the
// process's user and never read or written through a symbolic link
// (package durable): the state decides what the next job extracts, and the
// logs and history tell what was.
type dirStore struct {
	dir  *durable.Dir
	logs *durable.Dir
}

// The files of an integration's directory.
const (
	stateFile  = "state.json"
	jobsFile   = "jobs.jsonl"
	namingFile = "naming.json"
	lockFile   = "lock"
	slotsFile  = "slots.jsonl"
	// slotsLockFile serializes the appends to slotsFile with its rewrites,
	// which would otherwise lose a sample appended in between.
	slotsLockFile = "slots.lock"
)

func openDirStore(root, integration string) (*dirStore, error) {
	rootDir, err := durable.OpenDir(root)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	defer rootDir.Close()
	dir, err := rootDir.Sub(integration)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	logs, err := dir.Sub("logs")
	if err != nil {
		dir.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	return &dirStore{dir: dir, logs: logs}, nil
}

func (s *dirStore) Close() error { return errors.Join(s.logs.Close(), s.dir.Close()) }

// Held: a kernel lock stays held as long as its holder lives.
func (s *dirStore) Held() error { return nil }

// Lock is the kernel's (flock on an open file), so it goes away with the
// process that held it.
func (s *dirStore) Lock(context.Context) (unlock func(), err error) {
	f, err := s.dir.OpenFile(lockFile, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return nil, fmt.Errorf("job lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errLockHeld
		}
		return nil, fmt.Errorf("job lock: %w", err)
	}
	return func() { f.Close() }, nil
}

func (s *dirStore) State() (*singer.State, error) {
	data, err := s.dir.ReadFile(stateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return singer.NewState(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read committed state: %w", err)
	}
	return singer.ParseState(data)
}

// CommitState writes a new file and renames it over the old: a crash
// leaves either the old state or the new one.
func (s *dirStore) CommitState(state json.RawMessage) error {
	if err := s.dir.WriteFile(stateFile, state); err != nil {
		return fmt.Errorf("commit state: %w", err)
	}
	return nil
}

// JobRecord is one line of the job history.
type JobRecord struct {
	ID       int       `json:"id"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Status is running (recorded as the job starts), succeeded, failed,
	// stopped, or crashed: its process ended while it ran.
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
	// Host and PID name the process that ran it.
	Host string `json:"host,omitempty"`
	PID  int    `json:"pid,omitempty"`
	// Rows are the records loaded per stream, every stream sent included.
	// Records written before Sent was kept counted, for a Singer target,
	// the records sent to it.
	Rows map[string]int64 `json:"rows"`
	// Sent are the records sent to the destination per stream, loaded or
	// not; nil in records written before it was kept.
	Sent map[string]int64 `json:"sent,omitempty"`
	// Slots are the LOG_BASED slots the job streamed from, as it found
	// them (WAL held, wal_status).
	Slots []engine.SlotHealth `json:"slots,omitempty"`
	// Changes are the row changes LOG_BASED streams sent, by kind.
	Changes map[string]engine.ChangeCounts `json:"changes,omitempty"`
	// Durations are per stream, from its first record to its last.
	Durations map[string]time.Duration `json:"durations,omitempty"`
	// Bookmarks are INCREMENTAL streams' replication key values after the
	// job, by stream name; other streams have none to show.
	Bookmarks map[string]json.RawMessage `json:"bookmarks,omitempty"`
}

func (s *dirStore) Jobs() ([]JobRecord, error) {
	f, err := s.dir.OpenFile(jobsFile, os.O_RDONLY)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read job history: %w", err)
	}
	defer f.Close()
	var jobs []JobRecord
	at := map[int]int{}
	sc := bufio.NewScanner(f)
	// A job of thousands of streams makes a long line.
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	for sc.Scan() {
		var j JobRecord
		// A line torn by a crash mid-append is skipped, not fatal.
		if json.Unmarshal(sc.Bytes(), &j) != nil {
			continue
		}
		// A job is recorded as it starts and again as it ends: the last
		// record says how it is.
		if i, seen := at[j.ID]; seen {
			jobs[i] = j
			continue
		}
		at[j.ID] = len(jobs)
		jobs = append(jobs, j)
	}
	return jobs, sc.Err()
}

// NextJobID is one past the highest job number seen in the history or the
// logs, so that a job that crashed before it was recorded keeps its log.
func (s *dirStore) NextJobID() (int, error) {
	jobs, err := s.Jobs()
	if err != nil {
		return 0, err
	}
	next := 1
	for _, j := range jobs {
		next = max(next, j.ID+1)
	}
	logs, err := s.logs.Names()
	if err != nil {
		return 0, fmt.Errorf("list extraction logs: %w", err)
	}
	for _, l := range logs {
		if isLog, _ := filepath.Match("job-*.log", l); !isLog {
			continue
		}
		var id int
		if _, err := fmt.Sscanf(l, "job-%d.log", &id); err == nil {
			next = max(next, id+1)
		}
	}
	return next, nil
}

// AppendJob records a job as it starts and as it ends.
func (s *dirStore) AppendJob(j JobRecord) error {
	line, err := json.Marshal(j)
	if err != nil {
		return err
	}
	f, err := s.dir.OpenFile(jobsFile, os.O_CREATE|os.O_RDWR|os.O_APPEND)
	if err != nil {
		return fmt.Errorf("record job: %w", err)
	}
	if err := appendLines(f, append(line, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("record job: %w", err)
	}
	return f.Close()
}

// appendLines writes lines (each ended by a newline) to f, opened with
// O_APPEND, in one write: two processes appending at once never mix their
// lines.
func appendLines(f *os.File, lines []byte) error {
	// A line torn by a crash must not swallow the first of these.
	if info, err := f.Stat(); err == nil && info.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, info.Size()-1); err == nil && last[0] != '\n' {
			lines = append([]byte{'\n'}, lines...)
		}
	}
	_, err := f.Write(lines)
	return err
}

func logName(id int) string { return fmt.Sprintf("job-%06d.log", id) }

func (s *dirStore) CreateLog(id int) (io.WriteCloser, error) {
	f, err := s.logs.OpenFile(logName(id), os.O_CREATE|os.O_TRUNC|os.O_WRONLY)
	if err != nil {
		return nil, fmt.Errorf("extraction log: %w", err)
	}
	return f, nil
}

func (s *dirStore) AppendLog(id int) (io.WriteCloser, error) {
	f, err := s.logs.OpenFile(logName(id), os.O_CREATE|os.O_APPEND|os.O_WRONLY)
	if err != nil {
		return nil, fmt.Errorf("extraction log: %w", err)
	}
	return f, nil
}

func (s *dirStore) ReadLog(id int) ([]byte, error) {
	data, err := s.logs.ReadFile(logName(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no extraction log for job %d", id)
	}
	if err != nil {
		return nil, fmt.Errorf("read extraction log of job %d: %w", id, err)
	}
	return data, nil
}

func (s *dirStore) Naming() (*Naming, error) {
	data, err := s.dir.ReadFile(namingFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read naming settings: %w", err)
	}
	var n Naming
	if err := json.Unmarshal(data, &n); err != nil {
		return nil, fmt.Errorf("read naming settings %s: %w", filepath.Join(s.dir.Path(), namingFile), err)
	}
	return &n, nil
}

func (s *dirStore) SaveNaming(n Naming) error {
	data, err := json.Marshal(n)
	if err != nil {
		return err
	}
	if err := s.dir.WriteFile(namingFile, data); err != nil {
		return fmt.Errorf("save naming settings: %w", err)
	}
	return nil
}

// AppendSlotSamples adds the samples to slots.jsonl in one write. The
// samples older than slotHistory go only when the file's first one is a
// day past it: the file is then rewritten (atomically, package durable)
// about once a day, where a rewrite at every append would copy a week of
// samples each minute.
func (s *dirStore) AppendSlotSamples(samples []SlotSample) error {
	samples, horizon := recentSamples(samples)
	if len(samples) == 0 {
		return nil
	}
	var lines []byte
	for _, smp := range samples {
		line, err := json.Marshal(smp)
		if err != nil {
			return fmt.Errorf("record slot samples: %w", err)
		}
		lines = append(append(lines, line...), '\n')
	}
	unlock, err := s.lockSlots()
	if err != nil {
		return fmt.Errorf("record slot samples: %w", err)
	}
	defer unlock()
	f, err := s.dir.OpenFile(slotsFile, os.O_CREATE|os.O_RDWR|os.O_APPEND)
	if err != nil {
		return fmt.Errorf("record slot samples: %w", err)
	}
	defer f.Close()
	if err := appendLines(f, lines); err != nil {
		return fmt.Errorf("record slot samples: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("record slot samples: %w", err)
	}
	first, err := bufio.NewReader(io.NewSectionReader(f, 0, info.Size())).ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("record slot samples: read %s: %w", f.Name(), err)
	}
	var oldest SlotSample
	// A first line torn by a crash goes with the rewrite as well.
	if json.Unmarshal(first, &oldest) == nil && !oldest.At.Before(horizon.Add(-24*time.Hour)) {
		return nil
	}
	if err := s.rewriteSlotSamples(horizon); err != nil {
		return fmt.Errorf("record slot samples: drop those older than %s: %w", slotHistory, err)
	}
	return nil
}

// slotsLockWait bounds the wait for slots.lock. Its holders keep it for
// one write, or a rewrite once a day, so it comes in well under that; a
// holder stuck longer (a hung disk, a process stopped) makes the append an
// error rather than a wait for good: a job appends its samples as it ends,
// holding its job lock.
const slotsLockWait = 10 * time.Second

// slotsLockRetry is how often a held slots.lock is tried again.
const slotsLockRetry = 20 * time.Millisecond

// lockSlots takes the lock of slots.jsonl's writers, waiting for it at
// most slotsLockWait; the kernel releases it with its holder.
func (s *dirStore) lockSlots() (unlock func(), err error) {
	f, err := s.dir.OpenFile(slotsLockFile, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(slotsLockWait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		if !time.Now().Before(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s: still held by another writer after %s", f.Name(), slotsLockWait)
		}
		time.Sleep(slotsLockRetry)
	}
}

// rewriteSlotSamples replaces slots.jsonl with its samples taken at
// horizon or later; the caller holds lockSlots.
func (s *dirStore) rewriteSlotSamples(horizon time.Time) error {
	var kept []byte
	err := s.scanSlotSamples(func(line []byte, smp SlotSample) {
		if !smp.At.Before(horizon) {
			kept = append(append(kept, line...), '\n')
		}
	})
	if err != nil {
		return err
	}
	return s.dir.WriteFile(slotsFile, kept)
}

// scanSlotSamples calls fn with each line of slots.jsonl and its sample;
// lines torn by a crash are skipped.
func (s *dirStore) scanSlotSamples(fn func(line []byte, smp SlotSample)) error {
	f, err := s.dir.OpenFile(slotsFile, os.O_RDONLY)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	// Samples written by an earlier version list their database's
	// streams: thousands make a long line.
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	for sc.Scan() {
		var smp SlotSample
		if json.Unmarshal(sc.Bytes(), &smp) == nil {
			fn(sc.Bytes(), smp)
		}
	}
	return sc.Err()
}

// SlotSamples reads slots.jsonl without the writers' lock: appends are
// single writes and a rewrite is a rename, so a reader sees whole samples
// (a line still being written is skipped as torn).
func (s *dirStore) SlotSamples(since time.Time) ([]SlotSample, error) {
	var samples []SlotSample
	err := s.scanSlotSamples(func(_ []byte, smp SlotSample) {
		if !smp.At.Before(since) {
			samples = append(samples, smp)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("read slot samples: %w", err)
	}
	// A job appends the samples of its start at its end, after samples
	// serve took meanwhile.
	slices.SortStableFunc(samples, func(a, b SlotSample) int { return a.At.Compare(b.At) })
	return samples, nil
}
