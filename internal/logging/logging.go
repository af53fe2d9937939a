// Package logging formats the tap's stderr log as Singer taps do: one
// `LEVEL message` line per record (INFO, WARNING, ERROR, CRITICAL), and the
// runner's extraction logs as Stitch's.
package logging

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// LevelCritical is the level of the last line of a failed run.
const LevelCritical = slog.Level(12)

// Handler is a slog.Handler writing `<prefix>LEVEL message key=value ...`
// lines.
type Handler struct {
	mu     *sync.Mutex
	w      io.Writer
	level  slog.Leveler
	prefix func() string
	attrs  string
}

// New returns a logger writing `LEVEL message` lines to w at level and above.
func New(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(&Handler{mu: &sync.Mutex{}, w: w, level: level, prefix: func() string { return "" }})
}

// NewExtraction returns a logger writing Stitch's extraction log lines,
// `2024-06-01 12:00:00,123Z tap - INFO message`, for one source (main, tap
// or target). Loggers sharing mu and w interleave whole lines.
func NewExtraction(w io.Writer, mu *sync.Mutex, source string, clock func() time.Time) *slog.Logger {
	return slog.New(&Handler{mu: mu, w: w, level: slog.LevelInfo, prefix: func() string {
		ts := clock().UTC()
		return ts.Format("2006-01-02 15:04:05") + "," + ts.Format(".000")[1:] + "Z " + source + " - "
	}})
}

// Enabled reports whether the level is logged.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

// Handle writes one line.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(h.prefix())
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

// WithAttrs returns a handler adding attrs to every line.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range attrs {
		writeAttr(&b, a)
	}
	c := *h
	c.attrs = b.String()
	return &c
}

// WithGroup is not used by the tap; groups are flattened.
func (h *Handler) WithGroup(string) slog.Handler { return h }

func writeAttr(b *strings.Builder, a slog.Attr) {
	if a.Equal(slog.Attr{}) {
		return
	}
	b.WriteByte(' ')
	b.WriteString(a.Key)
	b.WriteByte('=')
	b.WriteString(a.Value.Resolve().String())
}

// LevelName maps slog levels to Singer's names.
func LevelName(l slog.Level) string {
	switch {
	case l >= LevelCritical:
		return "CRITICAL"
	case l >= slog.LevelError:
		return "ERROR"
	case l >= slog.LevelWarn:
		return "WARNING"
	case l >= slog.LevelInfo:
		return "INFO"
	}
	return "DEBUG"
}
