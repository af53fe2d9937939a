package destination_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"strings"
	"testing"

	"github.com/tap-postgres/tap-postgres/internal/destination"
)

// targetInput is what a tap sends: two records of a, a state, one record
// each of a and b, a second state.
const targetInput = `{"type":"SCHEMA","stream":"a","schema":{"type":"object"},"key_properties":["id"]}
{"type":"RECORD","stream":"a","record":{"id":1}}
{"type":"RECORD","stream":"a","record":{"id":2}}
{"type":"STATE","value":{"bookmarks":{"a":{"id":2,"lsn":123456789012345678}},"currently_syncing":"a"}}
{"type":"SCHEMA","stream":"b","schema":{"type":"object"},"key_properties":["id"]}
{"type":"RECORD","stream":"a","record":{"id":3}}
{"type":"RECORD","stream":"b","record":{"id":"é"}}
{"type":"STATE","value":{"bookmarks":{"a":{"id":3},"b":{"id":"é"}},"currently_syncing":null}}
`

// targetRun is what a Singer target made of targetInput.
type targetRun struct {
	loaded, received map[string]int64
	commits          []string
	log              string
	writeErr         error
	closeErr         error
}

// runTarget pipes input into a shell script as a Singer target.
func runTarget(t *testing.T, script, input string) targetRun {
	t.Helper()
	var run targetRun
	var log bytes.Buffer
	d, err := destination.OpenSingerTarget([]string{"sh", "-c", script}, nil, destination.Options{
		Commit: func(state json.RawMessage) error {
			run.commits = append(run.commits, string(state))
			return nil
		},
		Log: slog.New(slog.NewTextHandler(&log, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	_, run.writeErr = d.Write([]byte(input))
	run.closeErr = d.Close()
	run.loaded, run.received, run.log = d.Rows(), d.Received(), log.String()
	return run
}

// TestSingerTargetCountsWhatItsStatesCover: a record counts as loaded only
// once the target prints a state sent after it, however the target spells
// the state; every record sent counts as received.
func TestSingerTargetCountsWhatItsStatesCover(t *testing.T) {
	received := map[string]int64{"a": 3, "b": 1}
	for _, c := range []struct {
		name, script string
		loaded       map[string]int64
		unmatched    bool
	}{
		{"both states echoed", `sed -n 's/^{"type":"STATE","value":\(.*\)}$/\1/p'`, map[string]int64{"a": 3, "b": 1}, false},
		// As Python's json.dumps prints it: other key order, spaces,
		// non-ASCII escaped.
		{"first state only, re-serialised", `cat >/dev/null; echo '{"currently_syncing": "a", "bookmarks": {"a": {"lsn": 123456789012345678, "id": 2}}}'`,
			map[string]int64{"a": 2}, false},
		{"second state only, re-serialised", `cat >/dev/null; echo '{"currently_syncing": null, "bookmarks": {"b": {"id": "\u00e9"}, "a": {"id": 3}}}'`,
			map[string]int64{"a": 3, "b": 1}, false},
		// Equal to the first state but for the LSN's last digit, which a
		// comparison through float64 would miss.
		{"a state never sent", `cat >/dev/null; echo '{"bookmarks":{"a":{"id":2,"lsn":123456789012345679}},"currently_syncing":"a"}'`,
			map[string]int64{}, true},
		{"no state", `cat >/dev/null`, map[string]int64{}, false},
		{"first state printed twice", `cat >/dev/null; s='{"bookmarks":{"a":{"id":2,"lsn":123456789012345678}},"currently_syncing":"a"}'; echo "$s"; echo "$s"`,
			map[string]int64{"a": 2}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			run := runTarget(t, c.script, targetInput)
			if err := errors.Join(run.writeErr, run.closeErr); err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(run.loaded, c.loaded) || !maps.Equal(run.received, received) {
				t.Fatalf("loaded %v, received %v; want %v, %v", run.loaded, run.received, c.loaded, received)
			}
			if warned := strings.Contains(run.log, "none of those sent to it"); warned != c.unmatched {
				t.Fatalf("warned of an unmatched state: %t\n%s", warned, run.log)
			}
		})
	}
}

// TestSingerTargetFailureSaysWhy: a failed target's error carries the line
// of its stderr that says why, and a target that loaded nothing before it
// failed has nothing counted as loaded.
func TestSingerTargetFailureSaysWhy(t *testing.T) {
	const critical = `time=2026-01-01 00:00:00 name=target_postgres level=CRITICAL message=Primary key is set to mandatory but not defined in the [a] stream`
	long := strings.Repeat("é", 400)
	for _, c := range []struct {
		name, script, input, why string
		// refused: the target exits before it reads everything.
		refused bool
	}{
		// pipelinewise: a CRITICAL log line, then the traceback of the
		// exception it raises.
		{"error level", `cat >/dev/null; echo 'INFO starting' >&2; echo '` + critical + `' >&2
			printf 'Traceback (most recent call last):\n  File "/bin/target-postgres", line 8, in <module>\n    raise Exception("key_properties field is required")\nException: key_properties field is required\n\n' >&2; exit 1`,
			targetInput, critical, false},
		{"exception, then more output", `cat >/dev/null; printf 'Traceback (most recent call last):\n  File "t.py", line 3, in <module>\nKeyError: %s\nclosing\n' "'id'" >&2; exit 1`,
			targetInput, "KeyError: 'id'", false},
		{"last line", `cat >/dev/null; echo 'loading a' >&2; echo 'connection refused' >&2; exit 2`, targetInput, "connection refused", false},
		// Cut within a character: before it.
		{"long line cut", `cat >/dev/null; echo 'ERROR x` + long + `' >&2; exit 1`, targetInput, "ERROR x" + long[:292] + "…", false},
		// It exits before reading: the writes that follow break, which
		// the exit explains.
		{"exit before reading", `echo 'CRITICAL cannot load stream a' >&2; exit 1`,
			strings.Repeat(`{"type":"RECORD","stream":"a","record":{"id":1}}`+"\n", 100000), "CRITICAL cannot load stream a", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			run := runTarget(t, c.script, c.input)
			if refused := errors.Is(run.writeErr, destination.ErrInputRefused); refused != c.refused || (!refused && run.writeErr != nil) {
				t.Fatalf("write: %v", run.writeErr)
			}
			if err := run.closeErr; err == nil || !strings.HasPrefix(err.Error(), "singer target sh: exit status ") || !strings.HasSuffix(err.Error(), ": "+c.why) {
				t.Fatalf("close: %v\nwant an error ending %q", err, c.why)
			}
			if len(run.loaded) != 0 || len(run.commits) != 0 {
				t.Fatalf("loaded %v, commits %v", run.loaded, run.commits)
			}
		})
	}
}
