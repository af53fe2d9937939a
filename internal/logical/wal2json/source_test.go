package wal2json

import (
	"testing"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/logical"
)

// TestTranslate: wal2json's own value forms come out in PostgreSQL's text
// form, as the copy reads them, and the commit time is parsed.
func TestTranslate(t *testing.T) {
	msg := `{"action":"U","timestamp":"2024-06-01 12:00:00.5+00","schema":"s","table":"t",` +
		`"columns":[{"name":"b","type":"bytea","typeoid":17,"value":"deadbeef"},` +
		`{"name":"ok","type":"boolean","typeoid":16,"value":false},{"name":"on","type":"boolean","typeoid":16,"value":true},` +
		`{"name":"d","type":"flag","typeoid":16500,"value":"t"},{"name":"nb","type":"bytea","typeoid":17,"value":null}],` +
		`"identity":[{"name":"b","type":"bytea","typeoid":17,"value":"00"}]}`
	var s Source
	if err := DecodeV2([]byte(msg), &s.change); err != nil {
		t.Fatal(err)
	}
	if err := s.translate(0x10); err != nil {
		t.Fatal(err)
	}
	ev := s.event
	if ev.Op != logical.OpUpdate || ev.LSN != 0x10 || ev.Schema != "s" || ev.Table != "t" ||
		!ev.CommitTime.Equal(time.Date(2024, 6, 1, 12, 0, 0, 500000000, time.UTC)) {
		t.Fatalf("event %+v", ev)
	}
	want := map[string]string{"b": `\xdeadbeef`, "ok": "f", "on": "t", "d": "t"}
	for name, v := range want {
		if c := logical.Find(ev.New, name); c == nil || string(c.Value) != v {
			t.Errorf("column %s = %+v, want %q", name, c, v)
		}
	}
	if c := logical.Find(ev.New, "nb"); c == nil || !c.Null || c.Value != nil {
		t.Errorf("null bytea = %+v", c)
	}
	if c := logical.Find(ev.Old, "b"); c == nil || string(c.Value) != `\x00` {
		t.Errorf("old bytea = %+v", c)
	}
	if _, err := parseTimestamp("yesterday"); err == nil {
		t.Error("a timestamp that is none parsed")
	}
}

// BenchmarkTranslate is the per-change work after decoding: value forms and
// the commit time, which format 2 repeats on every change.
func BenchmarkTranslate(b *testing.B) {
	msg := []byte(`{"action":"U","timestamp":"2024-06-01 12:00:00.5+00","schema":"bench","table":"wide","columns":[{"name":"id","type":"bigint","typeoid":20,"value":123456},{"name":"flag","type":"boolean","typeoid":16,"value":true},{"name":"blob","type":"bytea","typeoid":17,"value":"deadbeef"}],"identity":[{"name":"id","type":"bigint","typeoid":20,"value":123456}]}`)
	var s Source
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeV2(msg, &s.change); err != nil {
			b.Fatal(err)
		}
		if err := s.translate(1); err != nil {
			b.Fatal(err)
		}
	}
}
