// Package logging formats the tap's stderr log as Singer taps do: one
// `LEVEL message` line per record (INFO, WARNING, ERROR, CRITICAL), and the
// runner's extraction logs as Stitch's.
package logging

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
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
	writeClean(&b, capped(r.Message))
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
	writeClean(b, a.Value.Resolve().String())
}

// Clean is s as one line with no control character (see writeClean), for
// lines written without a logger.
func Clean(s string) string {
	var b strings.Builder
	writeClean(&b, capped(s))
	return b.String()
}

// maxMessage bounds a line: one quoting a runaway input (a 200 MB name)
// must not become a 200 MB line.
const maxMessage = 256 << 10

func capped(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	cut := maxMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…(" + strconv.Itoa(len(s)) + " bytes, cut)"
}

// CleanLines writes to w what it is given, each write one or more whole
// lines, with every control character but the line ends escaped.
func CleanLines(w io.Writer) io.Writer { return lineCleaner{w} }

type lineCleaner struct{ w io.Writer }

func (c lineCleaner) Write(p []byte) (int, error) {
	var b strings.Builder
	for i, line := range strings.SplitAfter(string(p), "\n") {
		if i > 0 && line == "" {
			break
		}
		body, end := strings.CutSuffix(line, "\n")
		writeClean(&b, body)
		if end {
			b.WriteByte('\n')
		}
	}
	if _, err := io.WriteString(c.w, b.String()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// writeClean writes s as one line with no control character: a name from
// a database (a table called "x\r\x1b[2J") must not rewrite the terminal
// or the extraction log. Newlines, which multi-line server messages hold,
// become "; "; other control characters their Go escapes.
func writeClean(b *strings.Builder, s string) {
	clean := true
	for _, r := range s {
		if isControl(r) {
			clean = false
			break
		}
	}
	if clean {
		b.WriteString(s)
		return
	}
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString("; ")
		case isControl(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
}

// isControl: C0, DEL and C1 (which some terminals obey as escapes).
func isControl(r rune) bool { return r < 0x20 || r >= 0x7f && r < 0xa0 }

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
