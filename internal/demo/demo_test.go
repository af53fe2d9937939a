package demo

import (
	"bytes"
	"context"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/tap-postgres/tap-postgres/internal/localpg"
)

// program stands for the binary in the commands the demo prints.
const program = "bin/tap-postgres"

// TestDemoRunsTwoJobs runs README command 1's code path end to end: two
// runner jobs into the warehouse around changes in the source, on the port
// asked for, the cluster kept and then stopped by the command printed.
func TestDemoRunsTwoJobs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own PostgreSQL cluster")
	}
	port := freePort(t)
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := Run(context.Background(), program, []string{"--out", dir, "--keep", "--port", strconv.Itoa(port)}, &stdout, &stderr); code != 0 {
		t.Fatalf("demo exited %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^1 .* succeeded +10502 *$`),
		regexp.MustCompile(`(?m)^2 .* succeeded +543 *$`),
		regexp.MustCompile(`(?m)^2 .* customers +3 .* Bookmark Unavailable +succeeded`),
		regexp.MustCompile(`(?m)^2 .* orders +19 .* 2025-06-01T00:00:00\+00:00 +succeeded`),
		regexp.MustCompile(`(?m)^page_views +1020$`),
		regexp.MustCompile(`target - INFO State update: adding bookmarks\.demo-shop-orders\.replication_key_value = "2025-06-01T00:00:00\+00:00"`),
		regexp.MustCompile(`(?m)^ +7 \| Customer 7 \| t \| \d+$`),
		regexp.MustCompile(`(?m)^ +1 \| Renamed Customer \| f \| \d+$`),
		regexp.MustCompile(`(?m)^ +520 \| 1$`),
		regexp.MustCompile(`(?m)^ +1 \| 98765432109876543210\.000000000000000001 \|`),
		// What a Stitch user asks: deletes INCREMENTAL cannot see, rows
		// at the bookmark sent again.
		regexp.MustCompile(`the source has 7498 orders, the warehouse 7501\.`),
		regexp.MustCompile(`\s3 orders of customer 7, deleted in the source, stay in the warehouse`),
		regexp.MustCompile(`job 2 loaded the 18 orders dated 2024-12-30 again`),
		regexp.MustCompile(`port ` + strconv.Itoa(port)),
	} {
		if !want.MatchString(out) {
			t.Errorf("demo output lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "orders_p0") {
		t.Errorf("partitions loaded besides their root:\n%s", out)
	}
	lsn := regexp.MustCompile(`bookmarks\.demo-shop-customers\.lsn = (\d+) \(([0-9A-F]+/[0-9A-F]+)\)`).FindStringSubmatch(out)
	if lsn == nil {
		t.Errorf("the lsn bookmark is not printed in both forms:\n%s", out)
	} else if parsed, err := pglogrepl.ParseLSN(lsn[2]); err != nil || strconv.FormatUint(uint64(parsed), 10) != lsn[1] {
		t.Errorf("lsn bookmark %s printed as %s (%v)", lsn[1], lsn[2], err)
	}
	for _, line := range strings.Split(out, "\n") {
		if c := strings.TrimPrefix(strings.TrimSpace(line), "$ "); strings.Contains(c, "--integration") && !strings.HasPrefix(c, program+" ") {
			t.Errorf("printed command does not start with %q: %s", program, line)
		}
	}

	source := regexp.MustCompile(`(?m)^  source: +(.*)$`).FindStringSubmatch(out)
	stop := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(program) + ` (demo --stop .*)$`).FindStringSubmatch(out)
	if source == nil || stop == nil {
		t.Fatalf("no source address or stop command printed:\n%s", out)
	}
	if strings.Contains(source[1], "password="+localpg.DefaultPassword) || !strings.Contains(source[1], "password=") {
		t.Errorf("the kept cluster's superuser password is not this run's own: %s", source[1])
	}
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, source[1])
	if err != nil {
		t.Fatalf("the kept cluster does not answer at %s: %v", source[1], err)
	}
	conn.Close(ctx)
	stdout.Reset()
	if code := Run(ctx, program, strings.Fields(stop[1])[1:], &stdout, &stderr); code != 0 {
		t.Fatalf("%s exited %d: %s", stop[1], code, stderr.String())
	}
	if conn, err := pgx.Connect(ctx, source[1]); err == nil {
		conn.Close(ctx)
		t.Errorf("the cluster still answers after %s", stop[1])
	}
}

// TestDemoPortTaken: a port in use is named in the error.
func TestDemoPortTaken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own PostgreSQL cluster")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	var stdout, stderr bytes.Buffer
	if code := Run(t.Context(), program, []string{"--out", t.TempDir(), "--port", strconv.Itoa(port)}, &stdout, &stderr); code != 1 {
		t.Fatalf("demo on a taken port exited %d, want 1\n%s", code, stderr.String())
	}
	if want := "start PostgreSQL on port " + strconv.Itoa(port) + " (choose another with --port"; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
	}
}

func TestProgram(t *testing.T) {
	for argv0, want := range map[string]string{
		"tap-postgres":     "tap-postgres",
		"bin/tap-postgres": "bin/tap-postgres",
		"/tmp/go-build1234/b001/exe/tap-postgres": "go run ./cmd/tap-postgres",
	} {
		if got := Program(argv0); got != want {
			t.Errorf("Program(%q) = %q, want %q", argv0, got, want)
		}
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
