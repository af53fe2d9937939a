package runner

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vbauerster/mpb/v8"
	"golang.org/x/sys/unix"
)

// TestJobProgress draws bars per stream with the rows counted, a rate and
// completion; log lines written through it come out too.
func TestJobProgress(t *testing.T) {
	var out bytes.Buffer
	p := newJobProgress(&out, map[string]int64{"orders": 2000}, mpb.WithAutoRefresh(), mpb.WithWidth(100), mpb.WithRefreshRate(10*time.Millisecond))
	for range 2500 {
		p.record("orders")
	}
	for range 10 {
		p.record("log_t")
	}
	// The rate is drawn while a bar runs: let a few refreshes pass.
	time.Sleep(200 * time.Millisecond)
	if _, err := p.Write([]byte("2026-11-24 12:00:00,000Z tap - INFO a log line\n")); err != nil {
		t.Fatal(err)
	}
	p.finish()
	text := out.String()
	for _, want := range []string{"orders", "2500 / 2500 rows", "log_t", "10 rows", "rows/s", "done", "INFO a log line"} {
		if !strings.Contains(text, want) {
			t.Errorf("progress output lacks %q:\n%q", want, text)
		}
	}
}

func TestIsTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	if isTerminal(f) || isTerminal(&bytes.Buffer{}) || isTerminal(devNull) {
		t.Fatal("a file, a buffer or /dev/null taken for a terminal")
	}
	// A pseudo-terminal's follower side is a terminal, as a user's is.
	leader, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer leader.Close()
	if err := unix.IoctlSetPointerInt(int(leader.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(leader.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	if !isTerminal(tty) {
		t.Fatal("a pseudo-terminal not taken for a terminal")
	}
}
