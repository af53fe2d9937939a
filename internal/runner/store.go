package runner

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/singer"
)

// Store keeps one integration's committed state, job history and extraction
// logs in a directory on local disk.
type Store struct {
	dir string
}

// OpenStore opens (creating) the integration's directory under root.
func OpenStore(root, integration string) (*Store, error) {
	dir := filepath.Join(root, integration)
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return &Store{dir: dir}, nil
}

// Lock takes the integration's job lock. The lock is the kernel's (flock on
// an open file), so it goes away with the process that held it: a crashed
// job never leaves a stale lock behind.
func (s *Store) Lock() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(s.dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("job lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errors.New("a job of this integration is already running")
		}
		return nil, fmt.Errorf("job lock: %w", err)
	}
	return func() { f.Close() }, nil
}

func (s *Store) statePath() string { return filepath.Join(s.dir, "state.json") }

// State is the last committed state (empty before the first job).
func (s *Store) State() (*singer.State, error) {
	data, err := os.ReadFile(s.statePath())
	if errors.Is(err, fs.ErrNotExist) {
		return singer.NewState(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read committed state: %w", err)
	}
	return singer.ParseState(data)
}

// CommitState replaces the committed state atomically and durably: a crash
// leaves either the old state or the new one.
func (s *Store) CommitState(state json.RawMessage) error {
	tmp := s.statePath() + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("commit state: %w", err)
	}
	if _, err := f.Write(state); err != nil {
		f.Close()
		return fmt.Errorf("commit state: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("commit state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("commit state: %w", err)
	}
	if err := os.Rename(tmp, s.statePath()); err != nil {
		return fmt.Errorf("commit state: %w", err)
	}
	return syncDir(s.dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// JobRecord is one line of the job history.
type JobRecord struct {
	ID       int              `json:"id"`
	Started  time.Time        `json:"started"`
	Finished time.Time        `json:"finished"`
	Status   string           `json:"status"`
	Error    string           `json:"error,omitempty"`
	Rows     map[string]int64 `json:"rows"`
	// Bookmarks are INCREMENTAL streams' replication key values after the
	// job, by stream name; other streams have none to show.
	Bookmarks map[string]json.RawMessage `json:"bookmarks,omitempty"`
}

func (s *Store) jobsPath() string { return filepath.Join(s.dir, "jobs.jsonl") }

// Jobs lists the job history, oldest first.
func (s *Store) Jobs() ([]JobRecord, error) {
	f, err := os.Open(s.jobsPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read job history: %w", err)
	}
	defer f.Close()
	var jobs []JobRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var j JobRecord
		// A line torn by a crash mid-append is skipped, not fatal.
		if json.Unmarshal(sc.Bytes(), &j) == nil {
			jobs = append(jobs, j)
		}
	}
	return jobs, sc.Err()
}

// NextJobID is one past the highest job number seen in the history or the
// logs, so that a job that crashed before it was recorded keeps its log.
func (s *Store) NextJobID() (int, error) {
	jobs, err := s.Jobs()
	if err != nil {
		return 0, err
	}
	next := 1
	for _, j := range jobs {
		next = max(next, j.ID+1)
	}
	logs, err := filepath.Glob(filepath.Join(s.dir, "logs", "job-*.log"))
	if err != nil {
		return 0, err
	}
	for _, l := range logs {
		var id int
		if _, err := fmt.Sscanf(filepath.Base(l), "job-%d.log", &id); err == nil {
			next = max(next, id+1)
		}
	}
	return next, nil
}

// AppendJob records a finished job.
func (s *Store) AppendJob(j JobRecord) error {
	f, err := os.OpenFile(s.jobsPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("record job: %w", err)
	}
	line, err := json.Marshal(j)
	if err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("record job: %w", err)
	}
	return f.Close()
}

// LogPath is where job id's extraction log is kept.
func (s *Store) LogPath(id int) string {
	return filepath.Join(s.dir, "logs", fmt.Sprintf("job-%06d.log", id))
}
