package runner

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// jobProgress draws a bar per stream on stderr while a job loads: rows,
// rate, and an ETA when the stream's row-count is known to be what this job
// copies. Log lines pass through it, printed above the bars.
type jobProgress struct {
	bars    *mpb.Progress
	totals  map[string]int64
	streams map[string]*streamProgress
}

type streamProgress struct {
	bar   *mpb.Bar
	total int64
	done  int64
	// unsent rows are handed to the bar in lumps: a bar update per row
	// would cost more than the row.
	unsent int
}

const progressLump = 1000

// isTerminal reports whether w is a terminal; progress is drawn only there.
// A character device is not enough: /dev/null is one.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// supervisedTerminal is the width of the terminal a job process's stderr
// ends on through Supervise, or 0.
func supervisedTerminal(w io.Writer) int {
	columns, err := strconv.Atoi(os.Getenv(terminalColumnsEnv))
	if w != os.Stderr || err != nil || columns <= 0 {
		return 0
	}
	return columns
}

func newJobProgress(w io.Writer, totals map[string]int64, options ...mpb.ContainerOption) *jobProgress {
	return &jobProgress{bars: mpb.New(append([]mpb.ContainerOption{mpb.WithOutput(w)}, options...)...),
		totals: totals, streams: map[string]*streamProgress{}}
}

func (p *jobProgress) record(stream string) {
	s := p.streams[stream]
	if s == nil {
		s = &streamProgress{total: p.totals[stream]}
		count := decor.CountersNoUnit("%d / %d rows", decor.WCSyncSpace)
		eta := decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO), "done")
		if s.total <= 0 {
			count = decor.CurrentNoUnit("%d rows", decor.WCSyncSpace)
			eta = decor.OnComplete(decor.Name(""), "done")
		}
		// Created without a total, the bar completes only in finish:
		// the row-count it shows is an estimate.
		s.bar = p.bars.AddBar(0,
			mpb.PrependDecorators(decor.Name(stream, decor.WCSyncSpaceR), count),
			mpb.AppendDecorators(rowRate(time.Now()), eta))
		if s.total > 0 {
			s.bar.SetTotal(s.total, false)
		}
		p.streams[stream] = s
	}
	s.done++
	s.unsent++
	if s.unsent >= progressLump {
		p.send(s)
	}
}

func (p *jobProgress) send(s *streamProgress) {
	if s.total > 0 && s.done >= s.total {
		s.total = s.done + progressLump
		s.bar.SetTotal(s.total, false)
	}
	s.bar.IncrBy(s.unsent)
	s.unsent = 0
}

// Write prints log lines above the bars.
func (p *jobProgress) Write(b []byte) (int, error) { return p.bars.Write(b) }

// finish completes every bar and waits until they are drawn.
func (p *jobProgress) finish() {
	for _, s := range p.streams {
		p.send(s)
		s.bar.SetTotal(-1, true)
	}
	p.bars.Wait()
}

// rowRate shows rows per second since start, frozen when the bar
// completes (mpb's own average shows nothing for a bar that completes
// before it was first drawn).
func rowRate(start time.Time) decor.Decorator {
	var final string
	return decor.Any(func(st decor.Statistics) string {
		if final != "" {
			return final
		}
		rate := "0 rows/s  "
		if secs := time.Since(start).Seconds(); secs > 0 {
			rate = fmt.Sprintf("%.0f rows/s  ", float64(st.Current)/secs)
		}
		if st.Completed {
			final = rate
		}
		return rate
	}, decor.WCSyncSpace)
}
