package destination_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tap-postgres/tap-postgres/internal/destination"
)

// TestJSONLFileNameCollisions: two streams whose names make one file name
// are refused, in one job and across jobs.
func TestJSONLFileNameCollisions(t *testing.T) {
	dir := t.TempDir()
	open := func() destination.Destination {
		d, err := destination.OpenJSONL(dir, destination.Options{
			Commit: func(json.RawMessage) error { return nil }, Clock: fixedClock, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := open()
	err := send(t, d, `{"type":"RECORD","stream":"a/b","record":{"id":1}}`, `{"type":"RECORD","stream":"a_b","record":{"id":2}}`)
	d.Close()
	if err == nil || !strings.Contains(err.Error(), `streams "a/b" and "a_b" would share file a_b.jsonl`) {
		t.Fatalf("one job: %v", err)
	}
	d = open()
	err = send(t, d, `{"type":"RECORD","stream":"a_b","record":{"id":3}}`)
	d.Close()
	if err == nil || !strings.Contains(err.Error(), `which holds stream "a/b"`) {
		t.Fatalf("a later job: %v", err)
	}
	d = open()
	if err := send(t, d, `{"type":"RECORD","stream":"a/b","record":{"id":4}}`, `{"type":"STATE","value":{}}`); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "a_b.jsonl"))
	if err != nil || strings.Count(string(data), "\n") != 2 {
		t.Fatalf("a_b.jsonl: %q %v", data, err)
	}
}

func openJSONL(t *testing.T, dir string) (destination.Destination, error) {
	t.Helper()
	return destination.OpenJSONL(dir, destination.Options{
		Commit: func(json.RawMessage) error { return nil }, Clock: fixedClock, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
}

// TestJSONLFilesPrivate: a fresh output directory is 0700 and its files
// 0600, and another user cannot read the records; a directory and file
// written by a version that made them 0755 and 0644 are tightened and
// appended to.
func TestJSONLFilesPrivate(t *testing.T) {
	parent, err := os.MkdirTemp("", "filesafety-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	// Any user may enter parent, as /tmp or a home directory: only the
	// modes the destination gives what it creates keep another user out.
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	fresh, old := filepath.Join(parent, "fresh"), filepath.Join(parent, "old")
	if err := os.Mkdir(old, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "a.jsonl"), []byte(`{"type":"RECORD","stream":"a","record":{"id":0}}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(old, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{fresh, old} {
		d, err := openJSONL(t, dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := send(t, d, `{"type":"RECORD","stream":"a","record":{"id":1,"secret":"hunter2"}}`, `{"type":"STATE","value":{}}`); err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "a.jsonl"): 0o600} {
			if info, err := os.Stat(path); err != nil || info.Mode().Perm() != want {
				t.Errorf("%s: %v %v, want %v", path, info.Mode().Perm(), err, want)
			}
		}
	}
	if data, err := os.ReadFile(filepath.Join(old, "a.jsonl")); err != nil || strings.Count(string(data), "\n") != 2 {
		t.Errorf("old file: %q %v", data, err)
	}

	if os.Geteuid() != 0 {
		t.Skip("reading as another user needs root")
	}
	nobodyCat := func(path string) (string, error) {
		out, err := exec.Command("runuser", "-u", "nobody", "--", "cat", path).CombinedOutput()
		return string(out), err
	}
	control := filepath.Join(parent, "control")
	if err := os.WriteFile(control, []byte("readable\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := nobodyCat(control); err != nil || out != "readable\n" {
		t.Fatalf("nobody cannot read the control file, so the test shows nothing: %v %s", err, out)
	}
	for _, dir := range []string{fresh, old} {
		if out, err := nobodyCat(filepath.Join(dir, "a.jsonl")); err == nil || !strings.Contains(out, "Permission denied") {
			t.Errorf("nobody reads the records in %s: %v\n%s", dir, err, out)
		}
	}
}

// TestJSONLNeverFollowsSymlinks: a stream's file that is a link to a file
// outside is refused, neither read nor appended to; so is an output
// directory that is a link.
func TestJSONLNeverFollowsSymlinks(t *testing.T) {
	const content = `{"type":"RECORD","stream":"a","record":{"root":"only"}}` + "\n"
	outside := filepath.Join(t.TempDir(), "root-only")
	if err := os.WriteFile(outside, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	link := filepath.Join(dir, "a.jsonl")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	d, err := openJSONL(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	err = send(t, d, `{"type":"RECORD","stream":"a","record":{"id":1}}`, `{"type":"STATE","value":{}}`)
	d.Close()
	if err == nil || !strings.Contains(err.Error(), link+" is a symbolic link") {
		t.Errorf("a linked stream file: %v", err)
	}
	if data, err := os.ReadFile(outside); err != nil || string(data) != content {
		t.Errorf("written through a link: %q %v", data, err)
	}

	linkedDir := filepath.Join(t.TempDir(), "out")
	target := t.TempDir()
	if err := os.Symlink(target, linkedDir); err != nil {
		t.Fatal(err)
	}
	if _, err := openJSONL(t, linkedDir); err == nil || !strings.Contains(err.Error(), linkedDir+" is a symbolic link") {
		t.Errorf("a linked output directory: %v", err)
	}
}

// TestJSONLRefusesOthersDirectory: an output directory writable by others,
// or owned by another user, is refused with the path and the fix.
func TestJSONLRefusesOthersDirectory(t *testing.T) {
	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := openJSONL(t, open); err == nil || !strings.Contains(err.Error(), open+" is writable by group or others (mode 0777)") || !strings.Contains(err.Error(), "chmod 700 "+open) {
		t.Errorf("a directory writable by all: %v", err)
	}
	if entries, _ := os.ReadDir(open); len(entries) != 0 {
		t.Errorf("written in refused %s: %v", open, entries)
	}
	if os.Geteuid() != 0 {
		t.Skip("giving a directory to another user needs root")
	}
	others := t.TempDir()
	if err := os.Chown(others, 65534, -1); err != nil {
		t.Fatal(err)
	}
	if _, err := openJSONL(t, others); err == nil || !strings.Contains(err.Error(), others+" is owned by uid 65534") || !strings.Contains(err.Error(), "chown") {
		t.Errorf("nobody's directory: %v", err)
	}
	if entries, _ := os.ReadDir(others); len(entries) != 0 {
		t.Errorf("written in refused %s: %v", others, entries)
	}
}

// TestJSONLManyStreams: thousands of streams do not hold a file and a
// buffer each; every stream's lines still arrive whole and in order, and
// what a committed state covers is on disk.
func TestJSONLManyStreams(t *testing.T) {
	dir := t.TempDir()
	var committed []string
	d, err := destination.OpenJSONL(dir, destination.Options{
		Commit: func(s json.RawMessage) error { committed = append(committed, string(s)); return nil },
		Clock:  fixedClock, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), BatchRows: 500,
	})
	if err != nil {
		t.Fatal(err)
	}
	const streams, rounds = 2000, 3
	var lines []string
	for r := range rounds {
		for s := range streams {
			lines = append(lines, fmt.Sprintf(`{"type":"RECORD","stream":"s%d","record":{"id":%d}}`, s, r))
		}
		lines = append(lines, fmt.Sprintf(`{"type":"STATE","value":{"bookmarks":{"round":%d}}}`, r))
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := send(t, d, lines...); err != nil {
		t.Fatal(err)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	// A 64 KiB buffer kept per stream would be 125 MiB here.
	if grown := int64(after.HeapInuse) - int64(before.HeapInuse); grown > 40<<20 {
		t.Errorf("the heap grew by %d MiB for %d streams", grown>>20, streams)
	}
	if open := filesOpenIn(t, dir); open > 64 {
		t.Errorf("%d files open in the output directory for %d streams", open, streams)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if len(committed) == 0 || committed[len(committed)-1] != `{"bookmarks":{"round":2}}` {
		t.Fatalf("committed states %q", committed)
	}
	for s := range streams {
		data, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("s%d.jsonl", s)))
		if err != nil {
			t.Fatal(err)
		}
		want := ""
		for r := range rounds {
			want += fmt.Sprintf(`{"type":"RECORD","stream":"s%d","record":{"id":%d}}`+"\n", s, r)
		}
		if string(data) != want {
			t.Fatalf("s%d.jsonl:\n%s\nwant:\n%s", s, data, want)
		}
	}
}

// filesOpenIn counts this process's open files under dir.
func filesOpenIn(t *testing.T, dir string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(target, dir+"/") {
			n++
		}
	}
	return n
}
