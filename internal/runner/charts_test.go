package runner

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestExtractionChart(t *testing.T) {
	day := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	now := day.Add(13 * time.Hour)
	jobs := []JobRecord{
		{ID: 1, Started: day.Add(-time.Hour), Finished: day.Add(-50 * time.Minute), Status: statusSucceeded}, // the day before
		{ID: 2, Started: day.Add(6 * time.Hour), Finished: day.Add(6*time.Hour + 10*time.Minute), Status: statusSucceeded},
		{ID: 3, Started: day.Add(12 * time.Hour), Finished: day.Add(12*time.Hour + time.Second), Status: statusFailed},
		{ID: 4, Started: day.Add(12*time.Hour + 55*time.Minute), Status: statusRunning},
		{ID: 5, Started: day.Add(24 * time.Hour), Finished: day.Add(25 * time.Hour), Status: statusSucceeded}, // the day after
	}
	c := extractionChart("shop", jobs, day, now)
	if len(c.Bars) != 3 {
		t.Fatalf("%d bars, want the 3 jobs started that day: %+v", len(c.Bars), c.Bars)
	}
	byJob := map[int]chartBar{}
	for _, b := range c.Bars {
		byJob[b.Job] = b
	}
	plotW := c.Width - c.Left - chartRight
	for _, tc := range []struct {
		job    int
		class  string
		x      float64
		height float64 // of the plot's 15 minutes scale
		title  string
	}{
		{2, statusSucceeded, c.Left + plotW*6/24, 10.0 / 15, "job 2: succeeded, started 06:00:00, 10m0s"},
		{3, statusFailed, c.Left + plotW*12/24, 1.0 / 900, "job 3: failed"},
		{4, statusRunning, c.Left + plotW*(12+55.0/60)/24, 5.0 / 15, "job 4: in progress, started 12:55:00, running for 5m0s"},
	} {
		b, ok := byJob[tc.job]
		if !ok {
			t.Fatalf("no bar for job %d", tc.job)
		}
		plotH := c.Bottom - chartTop
		if b.Class != tc.class || !near(b.X+jobBarWidth/2, tc.x) || !near(b.H, max(minBarHeight, plotH*tc.height)) || !near(b.Y+b.H, c.Bottom) {
			t.Errorf("job %d: bar %+v, want class %s x %.1f height %.1f", tc.job, b, tc.class, tc.x, max(minBarHeight, plotH*tc.height))
		}
		if !strings.HasPrefix(b.Title, tc.title) {
			t.Errorf("job %d: title %q, want %q…", tc.job, b.Title, tc.title)
		}
		if b.Href != "/integrations/shop/jobs/"+strconv.Itoa(tc.job)+"/log" {
			t.Errorf("job %d links to %s", tc.job, b.Href)
		}
	}
	if top := c.YTicks[len(c.YTicks)-1].Text; top != "15m0s" {
		t.Errorf("duration axis top %s, want 15m0s (the longest job ran 10m)", top)
	}
}

func near(a, b float64) bool { return a-b < 0.01 && b-a < 0.01 }

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

func TestRowsCharts(t *testing.T) {
	last := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	jobs := []JobRecord{
		{Finished: last.AddDate(0, 0, -20), Rows: map[string]int64{"a": 1000}}, // before the 14 days
		{Finished: last.AddDate(0, 0, -13).Add(time.Hour), Rows: map[string]int64{"a": 10}},
		{Finished: last.Add(2 * time.Hour), Rows: map[string]int64{"a": 30, "b": 7}},
		{Finished: last.Add(3 * time.Hour), Rows: map[string]int64{"a": 20}},
		{Finished: last.Add(26 * time.Hour), Rows: map[string]int64{"b": 1000}}, // after
		{Rows: map[string]int64{"c": 1}},                                        // still running
	}
	charts := rowsCharts(jobs, last)
	if len(charts) != 2 || charts[0].Table != "a" || charts[1].Table != "b" {
		t.Fatalf("charts for %+v, want a and b", charts)
	}
	a := charts[0]
	if a.Total != 60 || len(a.Chart.Bars) != 2 {
		t.Fatalf("a: total %d with %d bars, want 60 in 2 days", a.Total, len(a.Chart.Bars))
	}
	first, lastBar := a.Chart.Bars[0], a.Chart.Bars[1]
	if first.X >= lastBar.X || lastBar.H <= first.H {
		t.Errorf("day bars out of order or scale: %+v %+v", first, lastBar)
	}
	if top := a.Chart.YTicks[1].Text; top != "50" {
		t.Errorf("axis top %s, want 50 for a day of 50 rows", top)
	}
	if !strings.Contains(lastBar.Title, "50 rows loaded on 2026-11-30") {
		t.Errorf("title %q", lastBar.Title)
	}
}

func TestNiceScales(t *testing.T) {
	for _, tc := range []struct {
		n, want float64
	}{{0, 1}, {1, 1}, {3, 5}, {50, 50}, {51, 100}, {120000, 200000}} {
		if got := niceCount(tc.n); got != tc.want {
			t.Errorf("niceCount(%v) = %v, want %v", tc.n, got, tc.want)
		}
	}
	for _, tc := range []struct{ d, want time.Duration }{
		{0, 10 * time.Second}, {11 * time.Second, 30 * time.Second}, {2 * time.Hour, 3 * time.Hour}, {30 * time.Hour, 48 * time.Hour},
	} {
		if got := niceDuration(tc.d); got != tc.want {
			t.Errorf("niceDuration(%s) = %s, want %s", tc.d, got, tc.want)
		}
	}
}

func TestSlotChart(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	samples := []SlotSample{
		{At: now.Add(-8 * 24 * time.Hour)}, // older than the chart
		{At: now.Add(-slotHistory / 2)},
		{At: now},
	}
	samples[1].WALHeld, samples[1].Lag = 1000, 400
	samples[2].WALHeld, samples[2].Lag = 2000, 0
	c := slotChart(samples, now)
	held := strings.Fields(c.Lines[0].Points)
	lag := strings.Fields(c.Lines[1].Points)
	if len(held) != 2 || len(lag) != 2 {
		t.Fatalf("points %q %q, want the 2 samples of the last 7 days", held, lag)
	}
	// 2000 bytes on a 2000 axis is the top; 0 is the bottom; the middle
	// of the week is the middle of the plot.
	plotW := c.Width - c.Left - chartRight - 16
	if want := []string{ftoa(c.Left+plotW/2) + "," + ftoa(c.Bottom-(c.Bottom-chartTop)/2), ftoa(c.Left+plotW) + "," + ftoa(chartTop)}; held[0] != want[0] || held[1] != want[1] {
		t.Errorf("WAL held points %q, want %q", held, want)
	}
	if lag[1] != ftoa(c.Left+plotW)+","+ftoa(c.Bottom) {
		t.Errorf("lag points %q", lag)
	}
	if c.YTicks[1].Text != "2.0 KiB" {
		t.Errorf("axis top %s", c.YTicks[1].Text)
	}
}

func TestSlotChartOfAWeekOfMinutes(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	var samples []SlotSample
	for at := now.Add(-slotHistory); !at.After(now); at = at.Add(time.Minute) {
		s := SlotSample{At: at}
		s.WALHeld = 1000
		samples = append(samples, s)
	}
	samples[5000].WALHeld = 1 << 30 // a peak of one minute
	c := slotChart(samples, now)
	points := strings.Fields(c.Lines[0].Points)
	if len(points) > int(c.Width) || len(points) < 500 {
		t.Fatalf("%d points for %d samples, want one per unit of width at most", len(points), len(samples))
	}
	peakY := ftoa(c.Bottom - (c.Bottom-chartTop)*float64(1<<30)/niceCount(1<<30))
	peaks := 0
	for _, p := range points {
		if strings.HasSuffix(p, ","+peakY) {
			peaks++
		}
	}
	if peaks != 1 {
		t.Errorf("the one-minute peak is drawn %d times (at y %s), want once", peaks, peakY)
	}
}

func TestBytesText(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1536, "1.5 KiB"}, {5 << 20, "5.0 MiB"}, {3 << 30, "3.0 GiB"}, {-(2 << 20), "-2.0 MiB"}} {
		if got := bytesText(tc.n); got != tc.want {
			t.Errorf("bytesText(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}
