package logging

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// ExtractionHandler writes Stitch's extraction log lines:
// `2024-06-01 12:00:00,123Z tap - INFO message`, source main, tap or target.
type ExtractionHandler struct {
	mu     *sync.Mutex
	w      io.Writer
	source string
	clock  func() time.Time
	attrs  string
}

// NewExtraction returns a logger for one source; loggers made with the same
// mutex and writer interleave whole lines.
func NewExtraction(w io.Writer, mu *sync.Mutex, source string, clock func() time.Time) *slog.Logger {
	return slog.New(&ExtractionHandler{mu: mu, w: w, source: source, clock: clock})
}

// Enabled logs INFO and above.
func (h *ExtractionHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

// Handle writes one line.
func (h *ExtractionHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	ts := h.clock().UTC()
	b.WriteString(ts.Format("2006-01-02 15:04:05"))
	b.WriteByte(',')
	b.WriteString(ts.Format(".000")[1:])
	b.WriteString("Z ")
	b.WriteString(h.source)
	b.WriteString(" - ")
	b.WriteString(LevelName(r.Level))
	b.WriteByte(' ')
	b.WriteString(strings.ReplaceAll(r.Message, "\n", "; "))
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		writeAttr(&b, a)
		return true
	})
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

// WithAttrs adds attrs to every line.
func (h *ExtractionHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range attrs {
		writeAttr(&b, a)
	}
	c := *h
	c.attrs = b.String()
	return &c
}

// WithGroup flattens groups.
func (h *ExtractionHandler) WithGroup(string) slog.Handler { return h }
