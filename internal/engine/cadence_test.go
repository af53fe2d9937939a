package engine

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/singer"
)

func TestStateCadence(t *testing.T) {
	now := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	out := singer.NewWriter(&buf)
	c := &stateCadence{every: 5 * time.Second, clock: func() time.Time { return now }}
	st := singer.NewState()
	for _, step := range []struct {
		advance time.Duration
		force   bool
		written bool
	}{
		{0, false, true},                // the first is always written
		{time.Second, false, false},     // too soon
		{3 * time.Second, false, false}, // 4 s after the last written
		{time.Second, false, true},      // 5 s
		{time.Second, true, true},       // forced, however soon
		{4 * time.Second, false, false}, // 4 s after the forced one
	} {
		now = now.Add(step.advance)
		before := strings.Count(buf.String(), `"type":"STATE"`)
		write := c.write
		if step.force {
			write = c.force
		}
		if err := write(out, st); err != nil {
			t.Fatal(err)
		}
		if written := strings.Count(buf.String(), `"type":"STATE"`) > before; written != step.written {
			t.Errorf("at %s (force %t): written %t, want %t", now.Format(time.TimeOnly), step.force, written, step.written)
		}
	}
}
