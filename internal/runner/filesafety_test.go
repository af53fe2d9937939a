package runner_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/runner"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

// sharedParent is a directory any user may enter, as /tmp or a home
// directory is: only the modes of what the runner creates in it can keep
// another user out. It holds a world-readable control file, which shows
// that runAsNobody can read what it is allowed to.
func sharedParent(t *testing.T) (dir, control string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "filesafety-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	control = filepath.Join(dir, "control")
	if err := os.WriteFile(control, []byte("readable\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, control
}

// runAsNobody runs a command as the unprivileged nobody account.
func runAsNobody(t *testing.T, args ...string) (string, error) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("running a command as another user needs root")
	}
	out, err := exec.Command("runuser", append([]string{"-u", "nobody", "--"}, args...)...).CombinedOutput()
	return string(out), err
}

// assertUnreadableByNobody: nobody reads the control file but none of paths.
func assertUnreadableByNobody(t *testing.T, control string, paths ...string) {
	t.Helper()
	if out, err := runAsNobody(t, "cat", control); err != nil || out != "readable\n" {
		t.Fatalf("nobody cannot read the control file, so the test shows nothing: %v %s", err, out)
	}
	for _, p := range paths {
		if out, err := runAsNobody(t, "cat", p); err == nil || !strings.Contains(out, "Permission denied") {
			t.Errorf("nobody reads %s: %v\n%s", p, err, out)
		}
	}
}

// assertPrivate: every directory under root, root included, is 0700 and
// every file 0600, nothing else; it returns the files.
func assertPrivate(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		switch {
		case info.IsDir():
			if info.Mode().Perm() != 0o700 {
				t.Errorf("directory %s: mode %v, want 0700", path, info.Mode().Perm())
			}
		case info.Mode().IsRegular():
			files = append(files, path)
			if info.Mode().Perm() != 0o600 {
				t.Errorf("file %s: mode %v, want 0600", path, info.Mode().Perm())
			}
		default:
			t.Errorf("%s: unexpected %v", path, info.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestJobFilesPrivate: a job in a fresh store, loading into a fresh JSONL
// directory, leaves every directory 0700 and every file 0600, and another
// user reads neither the state nor the records.
func TestJobFilesPrivate(t *testing.T) {
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, `CREATE TABLE accounts (id int PRIMARY KEY, secret text); INSERT INTO accounts VALUES (1, 'hunter2');`)
	parent, control := sharedParent(t)
	store, out := filepath.Join(parent, "store"), filepath.Join(parent, "out")
	integration := writeIntegration(t, "name: private\n"+connectionYAML(db)+`default_replication_method: FULL_TABLE
tables: [{schema: public, table: accounts}]
destination: {type: jsonl, path: `+out+"}\n")
	if code, output := runMain(t, "run", "--integration", integration, "--store", store); code != 0 {
		t.Fatalf("job: %s", output)
	}
	storeFiles := assertPrivate(t, store)
	for _, name := range []string{"state.json", "jobs.jsonl", "naming.json", "lock", filepath.Join("logs", "job-000001.log")} {
		if !slices.Contains(storeFiles, filepath.Join(store, "private", name)) {
			t.Errorf("the job left no %s: %v", name, storeFiles)
		}
	}
	records := filepath.Join(out, "accounts.jsonl")
	if outFiles := assertPrivate(t, out); len(outFiles) != 1 || outFiles[0] != records {
		t.Errorf("JSONL files: %v", outFiles)
	}
	t.Run("another user", func(t *testing.T) {
		assertUnreadableByNobody(t, control, filepath.Join(store, "private", "state.json"), filepath.Join(store, "private", "jobs.jsonl"), records)
		if out, err := runAsNobody(t, "ls", store); err == nil {
			t.Errorf("nobody lists the store: %s", out)
		}
	})
}

// outsideFile is a root-only file outside the store, what a planted link
// would point the runner at.
func outsideFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "root-only")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func assertUnchanged(t *testing.T, path, content string) {
	t.Helper()
	if data, err := os.ReadFile(path); err != nil || string(data) != content {
		t.Errorf("%s was written through a link: %q %v", path, data, err)
	}
}

func plant(t *testing.T, target, link string) {
	t.Helper()
	if err := os.RemoveAll(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func openLocalStore(t *testing.T, root, integration string) runner.Store {
	t.Helper()
	store, err := runner.OpenStore(context.Background(), root, integration)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// TestStoreNeverFollowsSymlinks: links planted in an integration's
// directory, to a file outside, are never written or read through: the
// state's temporary cannot be predicted, a committed state replaces a
// link, and the history, the state, the naming settings, the lock and the
// logs refuse one clearly. A link at state.json cannot inject a state.
func TestStoreNeverFollowsSymlinks(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "planted")
	store := openLocalStore(t, root, "planted")
	const content = "root only\n"
	outside := outsideFile(t, content)

	plant(t, outside, filepath.Join(dir, "state.json.tmp"))
	if err := store.CommitState(json.RawMessage(`{"bookmarks":{"a":{"v":1}}}`)); err != nil {
		t.Fatal(err)
	}
	assertUnchanged(t, outside, content)
	if info, err := os.Lstat(filepath.Join(dir, "state.json")); err != nil || !info.Mode().IsRegular() {
		t.Errorf("state.json after a commit: %v %v", info, err)
	}

	plant(t, outside, filepath.Join(dir, "state.json"))
	if err := store.CommitState(json.RawMessage(`{"bookmarks":{"a":{"v":2}}}`)); err != nil {
		t.Fatal(err)
	}
	assertUnchanged(t, outside, content)
	if data, err := os.ReadFile(filepath.Join(dir, "state.json")); err != nil || !strings.Contains(string(data), `"v":2`) {
		t.Errorf("a commit over a link: %s %v", data, err)
	}

	injected := outsideFile(t, `{"bookmarks":{"a":{"v":"injected"}}}`)
	plant(t, injected, filepath.Join(dir, "state.json"))
	if state, err := store.State(); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "state.json")+" is a symbolic link") {
		t.Errorf("state read through a link: %v %v", state, err)
	}

	jobs := filepath.Join(dir, "jobs.jsonl")
	plant(t, outside, jobs)
	if err := store.AppendJob(runner.JobRecord{ID: 1, Status: "succeeded", Started: time.Now(), Finished: time.Now()}); err == nil || !strings.Contains(err.Error(), jobs+" is a symbolic link") {
		t.Errorf("job recorded through a link: %v", err)
	}
	if _, err := store.Jobs(); err == nil || !strings.Contains(err.Error(), jobs+" is a symbolic link") {
		t.Errorf("history read through a link: %v", err)
	}

	naming := filepath.Join(dir, "naming.json")
	plant(t, injected, naming)
	if _, err := store.Naming(); err == nil || !strings.Contains(err.Error(), naming+" is a symbolic link") {
		t.Errorf("naming read through a link: %v", err)
	}

	lock := filepath.Join(dir, "lock")
	plant(t, outside, lock)
	if _, err := store.Lock(context.Background()); err == nil || !strings.Contains(err.Error(), lock+" is a symbolic link") {
		t.Errorf("lock taken through a link: %v", err)
	}

	log := filepath.Join(dir, "logs", "job-000007.log")
	plant(t, outside, log)
	if w, err := store.CreateLog(7); err == nil || !strings.Contains(err.Error(), log+" is a symbolic link") {
		t.Errorf("log created through a link: %v", err)
		if w != nil {
			w.Close()
		}
	}
	if _, err := store.ReadLog(7); err == nil || !strings.Contains(err.Error(), log+" is a symbolic link") {
		t.Errorf("log read through a link: %v", err)
	}
	assertUnchanged(t, outside, content)

	// A linked integration directory or logs directory is refused whole.
	other := t.TempDir()
	plant(t, other, filepath.Join(root, "linked"))
	if _, err := runner.OpenStore(context.Background(), root, "linked"); err == nil || !strings.Contains(err.Error(), filepath.Join(root, "linked")+" is a symbolic link") {
		t.Errorf("a linked integration directory: %v", err)
	}
	plant(t, other, filepath.Join(dir, "logs"))
	if _, err := runner.OpenStore(context.Background(), root, "planted"); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "logs")+" is a symbolic link") {
		t.Errorf("a linked logs directory: %v", err)
	}
	if entries, _ := os.ReadDir(other); len(entries) != 0 {
		t.Errorf("written through a linked directory: %v", entries)
	}
}

// TestStoreRefusesOthersDirectories: a store, integration or logs
// directory that another user owns or may write to is refused, naming the
// directory and the fix, before anything in it is read or written.
func TestStoreRefusesOthersDirectories(t *testing.T) {
	const nobody = 65534
	cases := []struct {
		name string
		// spoil makes the directory at path another user's, given the
		// store's root.
		spoil func(t *testing.T, root string) (path string)
		want  string
	}{
		{"store root writable by all", func(t *testing.T, root string) string {
			mustChmod(t, root, 0o777)
			return root
		}, "writable by group or others (mode 0777)"},
		{"integration directory writable by group", func(t *testing.T, root string) string {
			dir := filepath.Join(root, "x")
			mustChmod(t, dir, 0o770)
			return dir
		}, "writable by group or others (mode 0770)"},
		{"integration directory owned by nobody", func(t *testing.T, root string) string {
			dir := filepath.Join(root, "x")
			mustChown(t, dir, nobody)
			return dir
		}, "owned by uid 65534"},
		{"logs owned by nobody", func(t *testing.T, root string) string {
			dir := filepath.Join(root, "x", "logs")
			mustChown(t, dir, nobody)
			return dir
		}, "owned by uid 65534"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, "x", "logs"), 0o700); err != nil {
				t.Fatal(err)
			}
			path := c.spoil(t, root)
			_, err := runner.OpenStore(context.Background(), root, "x")
			if err == nil || !strings.Contains(err.Error(), path+" is "+c.want) {
				t.Fatalf("want %q about %s, got %v", c.want, path, err)
			}
			if !strings.Contains(err.Error(), "chmod 700") && !strings.Contains(err.Error(), "chown") {
				t.Errorf("no fix suggested: %v", err)
			}
			if entries, _ := os.ReadDir(filepath.Join(root, "x")); len(entries) != 1 {
				t.Errorf("written in a refused store: %v", entries)
			}
		})
	}
}

func mustChmod(t *testing.T, path string, mode fs.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func mustChown(t *testing.T, path string, uid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("giving a directory to another user needs root")
	}
	if err := os.Chown(path, uid, -1); err != nil {
		t.Fatal(err)
	}
}

// TestOldStoreTightened: a store written by a version that made it 0755
// and its files 0644 keeps its state, history, naming and logs, and is
// made private as it is used.
func TestOldStoreTightened(t *testing.T) {
	parent, control := sharedParent(t)
	root := filepath.Join(parent, "store")
	dir := filepath.Join(root, "old")
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	old := map[string]string{
		"state.json":              `{"bookmarks":{"public-accounts":{"replication_key_value":41}}}`,
		"jobs.jsonl":              `{"id":1,"started":"2026-01-01T00:00:00Z","finished":"2026-01-01T00:01:00Z","status":"succeeded","rows":{"accounts":4}}` + "\n",
		"naming.json":             `{"name":"old","include_schemas_in_destination_stream_name":true}`,
		"lock":                    "",
		"logs/job-000001.log":     "job 1 started\n",
		"logs/job-000002.log":     "job 2 crashed\n",
		"state.json.tmp":          "left by a crash\n",
		"logs/not-a-job-log.text": "",
	}
	for name, content := range old {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{root, dir, filepath.Join(dir, "logs")} {
		mustChmod(t, d, 0o755)
	}

	store := openLocalStore(t, root, "old")
	unlock, err := store.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if state, err := store.State(); err != nil {
		t.Errorf("old state: %v", err)
	} else if data, _ := json.Marshal(state); !strings.Contains(string(data), `"replication_key_value":41`) {
		t.Errorf("old state: %s", data)
	}
	if jobs, err := store.Jobs(); err != nil || len(jobs) != 1 || jobs[0].Rows["accounts"] != 4 {
		t.Errorf("old history: %v %v", jobs, err)
	}
	if n, err := store.Naming(); err != nil || n == nil || !n.IncludeSchemasInDestinationStreamName {
		t.Errorf("old naming: %v %v", n, err)
	}
	if next, err := store.NextJobID(); err != nil || next != 3 {
		t.Errorf("next job: %d %v", next, err)
	}
	for id, want := range map[int]string{1: "job 1 started\n", 2: "job 2 crashed\n"} {
		if log, err := store.ReadLog(id); err != nil || string(log) != want {
			t.Errorf("old log %d: %q %v", id, log, err)
		}
	}
	if err := store.AppendJob(runner.JobRecord{ID: 3, Status: "succeeded"}); err != nil {
		t.Fatal(err)
	}
	if jobs, err := store.Jobs(); err != nil || len(jobs) != 2 {
		t.Errorf("history after a new job: %v %v", jobs, err)
	}

	for _, d := range []string{root, dir, filepath.Join(dir, "logs")} {
		if info, err := os.Stat(d); err != nil || info.Mode().Perm() != 0o700 {
			t.Errorf("directory %s: %v %v, want 0700", d, info.Mode().Perm(), err)
		}
	}
	// What was used is 0600; the rest is behind directories now 0700.
	for _, name := range []string{"state.json", "jobs.jsonl", "naming.json", "lock", "logs/job-000001.log", "logs/job-000002.log"} {
		if info, err := os.Stat(filepath.Join(dir, name)); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("file %s: %v %v, want 0600", name, info.Mode().Perm(), err)
		}
	}
	t.Run("another user", func(t *testing.T) {
		assertUnreadableByNobody(t, control, filepath.Join(dir, "state.json.tmp"), filepath.Join(dir, "logs", "not-a-job-log.text"))
	})
}
