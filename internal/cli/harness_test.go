package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/cli"
	"github.com/tap-postgres/tap-postgres/internal/localpg"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

var pg *localpg.Cluster

func TestMain(m *testing.M) { os.Exit(testpg.Run(m, &pg)) }

// tapResult is what one run of the tap printed.
type tapResult struct {
	code     int
	stdout   string
	stderr   string
	messages []map[string]any
}

// runTap runs the tap's Run function as the binary would, with real files.
func runTap(t *testing.T, env cli.Env, args ...string) tapResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if env.Stdout == nil {
		env.Stdout = &stdout
	}
	env.Stderr = &stderr
	code := cli.Run(context.Background(), args, env)
	r := tapResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
	if env.Stdout == &stdout && code == 0 && !contains(args, "--discover") {
		r.messages = parseMessages(t, stdout.Bytes())
	}
	return r
}

func parseMessages(t *testing.T, out []byte) []map[string]any {
	t.Helper()
	var msgs []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("stdout line is not JSON: %v\n%s", err, line)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// writeFile writes v (JSON-encoded unless it is a string or []byte) into the
// test's temp dir.
func writeFile(t *testing.T, name string, v any) string {
	t.Helper()
	var data []byte
	switch x := v.(type) {
	case string:
		data = []byte(x)
	case []byte:
		data = x
	default:
		var err error
		if data, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// configFor is a config for db as superuser, plus extra keys.
func configFor(db string, extra map[string]any) map[string]any {
	// Every STATE the record cadence makes, not one per 5 s: the tests
	// look at each (TestStateInterval checks the default spacing).
	cfg := map[string]any{
		"host": pg.Host, "port": pg.Port, "user": pg.User, "password": pg.Password,
		"dbname": db, "filter_dbs": db, "state_interval_seconds": 0,
	}
	for k, v := range extra {
		cfg[k] = v
	}
	return cfg
}

// discover runs --discover and returns the catalog.
func discover(t *testing.T, cfgPath string) map[string]any {
	t.Helper()
	r := runTap(t, cli.Env{}, "--config", cfgPath, "--discover")
	if r.code != 0 {
		t.Fatalf("discover exited %d:\n%s", r.code, r.stderr)
	}
	var catalog map[string]any
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.UseNumber()
	if err := dec.Decode(&catalog); err != nil {
		t.Fatalf("catalog is not JSON: %v", err)
	}
	return catalog
}

func streams(catalog map[string]any) []map[string]any {
	var out []map[string]any
	for _, s := range catalog["streams"].([]any) {
		out = append(out, s.(map[string]any))
	}
	return out
}

func findStream(t *testing.T, catalog map[string]any, id string) map[string]any {
	t.Helper()
	for _, s := range streams(catalog) {
		if s["tap_stream_id"] == id {
			return s
		}
	}
	t.Fatalf("stream %s not in catalog", id)
	return nil
}

// metadataAt returns the metadata map at a breadcrumb.
func metadataAt(stream map[string]any, breadcrumb ...string) map[string]any {
	for _, m := range stream["metadata"].([]any) {
		entry := m.(map[string]any)
		bc := entry["breadcrumb"].([]any)
		if len(bc) != len(breadcrumb) {
			continue
		}
		match := true
		for i := range bc {
			if bc[i] != breadcrumb[i] {
				match = false
			}
		}
		if match {
			return entry["metadata"].(map[string]any)
		}
	}
	return nil
}

// selectStreams marks the given streams selected (all when ids is empty)
// with the given table-level metadata.
func selectStreams(catalog map[string]any, extra map[string]any, ids ...string) {
	for _, s := range streams(catalog) {
		if len(ids) > 0 && !contains(ids, s["tap_stream_id"].(string)) {
			continue
		}
		md := metadataAt(s)
		md["selected"] = true
		for k, v := range extra {
			md[k] = v
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// records returns the record payloads of one stream, in order.
func records(msgs []map[string]any, stream string) []map[string]any {
	var out []map[string]any
	for _, m := range msgs {
		if m["type"] == "RECORD" && m["stream"] == stream {
			out = append(out, m["record"].(map[string]any))
		}
	}
	return out
}

// lastState returns the value of the last STATE message.
func lastState(t *testing.T, msgs []map[string]any) map[string]any {
	t.Helper()
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i]["type"] == "STATE" {
			return msgs[i]["value"].(map[string]any)
		}
	}
	t.Fatal("no STATE message")
	return nil
}

var volatile = regexp.MustCompile(`("(?:version|time_extracted)":)("[^"]*"|\d+)`)

// maskVolatile replaces versions and extraction times, which change every run.
func maskVolatile(s string) string { return volatile.ReplaceAllString(s, `$1"<masked>"`) }

// golden compares got with testdata/name, rewriting it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if string(want) != got {
		t.Fatalf("output differs from %s (run go test -update after checking the change):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// fixedClock returns a clock that starts at a fixed instant and moves 1 ms
// per call, so versions are distinct and predictable.
func fixedClock(start time.Time) func() time.Time {
	now := start
	return func() time.Time {
		now = now.Add(time.Millisecond)
		return now
	}
}
