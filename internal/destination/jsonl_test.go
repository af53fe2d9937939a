package destination_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
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
