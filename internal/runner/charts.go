package runner

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
)

// The status page's charts are drawn here as geometry that status.html
// renders as inline SVG: no script runs in the browser.

// chartBar is one bar of a chart, in SVG user units.
type chartBar struct {
	X, Y, W, H float64
	// Class colours it (a job's status).
	Class string
	// Href is what the bar links to; Title is its tooltip.
	Href, Title string
	// Job is the extraction's job id (0 for other charts).
	Job int
}

// chartTick is an axis label at a position.
type chartTick struct {
	At   float64
	Text string
}

// barChart is a chart of bars with ticks on both axes.
type barChart struct {
	Width, Height float64
	// Left, Bottom: where the plot area starts (room for the labels).
	Left, Bottom float64
	Bars         []chartBar
	XTicks       []chartTick
	YTicks       []chartTick
}

// Chart dimensions, in SVG user units.
const (
	chartWidth   = 960
	chartHeight  = 180
	chartLeft    = 56
	chartBottom  = 20
	chartTop     = 8
	chartRight   = 24
	jobBarWidth  = 8
	minBarHeight = 3
)

// extractionChart draws the jobs started on the day beginning at dayStart
// (UTC) as Stitch's Extraction Logs do: one bar per job at its start, as
// tall as it lasted, coloured by status; a running job lasts until now.
func extractionChart(key string, jobs []JobRecord, dayStart, now time.Time) barChart {
	c := barChart{Width: chartWidth, Height: chartHeight, Left: chartLeft, Bottom: chartHeight - chartBottom}
	plotW, plotH := c.Width-c.Left-chartRight, c.Bottom-chartTop
	dayEnd := dayStart.Add(24 * time.Hour)
	var longest time.Duration
	var shown []JobRecord
	for _, j := range jobs {
		if j.Started.Before(dayStart) || !j.Started.Before(dayEnd) {
			continue
		}
		shown = append(shown, j)
		longest = max(longest, jobDuration(j, now))
	}
	scale := niceDuration(longest)
	for _, j := range shown {
		d := jobDuration(j, now)
		h := max(minBarHeight, plotH*d.Seconds()/scale.Seconds())
		x := c.Left + plotW*j.Started.Sub(dayStart).Seconds()/(24*time.Hour).Seconds() - jobBarWidth/2
		title := fmt.Sprintf("job %d: %s, started %s, %s", j.ID, j.Status, j.Started.UTC().Format("15:04:05"), d.Round(time.Second))
		if j.Status == statusRunning {
			title = fmt.Sprintf("job %d: in progress, started %s, running for %s", j.ID, j.Started.UTC().Format("15:04:05"), d.Round(time.Second))
		}
		c.Bars = append(c.Bars, chartBar{X: x, Y: c.Bottom - h, W: jobBarWidth, H: h, Class: j.Status,
			Href: fmt.Sprintf("/integrations/%s/jobs/%d/log", key, j.ID), Title: title, Job: j.ID})
	}
	for hour := 0; hour <= 24; hour += 3 {
		c.XTicks = append(c.XTicks, chartTick{At: c.Left + plotW*float64(hour)/24, Text: fmt.Sprintf("%02d:00", hour)})
	}
	c.YTicks = []chartTick{{At: c.Bottom, Text: "0"}, {At: chartTop, Text: scale.String()}}
	return c
}

// jobDuration is how long a job ran, until now for one still running.
func jobDuration(j JobRecord, now time.Time) time.Duration {
	end := j.Finished
	if j.Status == statusRunning || end.IsZero() {
		end = now
	}
	return max(0, end.Sub(j.Started))
}

// niceDuration is the axis' top: the first round duration at least d.
func niceDuration(d time.Duration) time.Duration {
	for _, step := range []time.Duration{10 * time.Second, 30 * time.Second, time.Minute, 5 * time.Minute, 15 * time.Minute,
		30 * time.Minute, time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour} {
		if d <= step {
			return step
		}
	}
	return 24 * time.Hour * time.Duration((d+24*time.Hour-1)/(24*time.Hour))
}

// niceCount is an axis' top for counts: 1, 2 or 5 times a power of ten.
func niceCount(n float64) float64 {
	for top := 1.0; ; top *= 10 {
		for _, m := range []float64{1, 2, 5} {
			if n <= top*m {
				return top * m
			}
		}
	}
}

// tableRowsChart is one table's rows loaded per day.
type tableRowsChart struct {
	Table string
	Total int64
	Chart barChart
}

// Rows-per-table charts are small multiples: one per table, a bar per day.
const (
	rowsChartDays   = 14
	rowsChartWidth  = 320
	rowsChartHeight = 90
	rowsChartLeft   = 48
)

// rowsCharts draws, per table, the rows loaded each day of the rowsChartDays
// ending with the day beginning at lastDay (UTC), by when the jobs finished.
func rowsCharts(jobs []JobRecord, lastDay time.Time) []tableRowsChart {
	first := lastDay.AddDate(0, 0, -(rowsChartDays - 1))
	perTable := map[string][]int64{}
	for _, j := range jobs {
		if j.Finished.IsZero() {
			continue
		}
		day := int(j.Finished.Sub(first).Hours() / 24)
		if j.Finished.Before(first) || day >= rowsChartDays {
			continue
		}
		for table, n := range j.Rows {
			if perTable[table] == nil {
				perTable[table] = make([]int64, rowsChartDays)
			}
			perTable[table][day] += n
		}
	}
	var charts []tableRowsChart
	for _, table := range slices.Sorted(maps.Keys(perTable)) {
		days := perTable[table]
		var total, most int64
		for _, n := range days {
			total += n
			most = max(most, n)
		}
		c := barChart{Width: rowsChartWidth, Height: rowsChartHeight, Left: rowsChartLeft, Bottom: rowsChartHeight - chartBottom}
		top := niceCount(float64(most))
		plotH := c.Bottom - chartTop
		barW := (c.Width - c.Left - chartRight) / rowsChartDays
		for i, n := range days {
			if n == 0 {
				continue
			}
			h := max(minBarHeight, plotH*float64(n)/top)
			day := first.AddDate(0, 0, i)
			c.Bars = append(c.Bars, chartBar{X: c.Left + float64(i)*barW + 1, Y: c.Bottom - h, W: barW - 2, H: h, Class: "rows",
				Title: fmt.Sprintf("%s: %d rows loaded on %s", table, n, day.Format("2006-01-02"))})
		}
		c.XTicks = []chartTick{{At: c.Left + barW/2, Text: first.Format("01-02")}, {At: c.Left + barW*(rowsChartDays-0.5), Text: lastDay.Format("01-02")}}
		c.YTicks = []chartTick{{At: c.Bottom, Text: "0"}, {At: chartTop, Text: fmt.Sprint(top)}}
		charts = append(charts, tableRowsChart{Table: table, Total: total, Chart: c})
	}
	return charts
}

// lineChart is series of points drawn as polylines over a time axis.
type lineChart struct {
	Width, Height, Left, Bottom float64
	Lines                       []chartLine
	XTicks, YTicks              []chartTick
}

// chartLine is one series: an SVG polyline's points.
type chartLine struct {
	Class, Name, Points string
}

// Slot history charts span slotHistory.
const (
	slotChartWidth  = 720
	slotChartHeight = 140
	slotChartLeft   = 72
)

// slotChart draws one slot's WAL held and lag over the slotHistory before
// now.
func slotChart(samples []SlotSample, now time.Time) lineChart {
	c := lineChart{Width: slotChartWidth, Height: slotChartHeight, Left: slotChartLeft, Bottom: slotChartHeight - chartBottom}
	start := now.Add(-slotHistory)
	plotW, plotH := c.Width-c.Left-chartRight-16, c.Bottom-chartTop
	var most int64
	for _, s := range samples {
		most = max(most, s.WALHeld, s.Lag)
	}
	top := niceCount(float64(most))
	x := func(t time.Time) float64 { return c.Left + plotW*t.Sub(start).Seconds()/slotHistory.Seconds() }
	y := func(v int64) float64 { return c.Bottom - plotH*float64(v)/top }
	// A week of minute samples is ten thousand points a slot: one per
	// unit of width is all a line can show, each its bucket's highest (the
	// peak is what matters of WAL held).
	type point struct{ held, lag int64 }
	buckets := make([]*point, int(plotW)+1)
	for _, s := range samples {
		if s.At.Before(start) || s.At.After(now) {
			continue
		}
		i := int(x(s.At) - c.Left)
		if buckets[i] == nil {
			buckets[i] = &point{s.WALHeld, s.Lag}
		} else {
			buckets[i].held, buckets[i].lag = max(buckets[i].held, s.WALHeld), max(buckets[i].lag, s.Lag)
		}
	}
	var held, lag []byte
	for i, p := range buckets {
		if p == nil {
			continue
		}
		px := c.Left + float64(i)
		held = fmt.Appendf(held, "%.1f,%.1f ", px, y(p.held))
		lag = fmt.Appendf(lag, "%.1f,%.1f ", px, y(p.lag))
	}
	c.Lines = []chartLine{{Class: "held", Name: "WAL held", Points: string(held)}, {Class: "lag", Name: "lag", Points: string(lag)}}
	for d := 0; d <= int(slotHistory/(24*time.Hour)); d++ {
		t := start.Add(time.Duration(d) * 24 * time.Hour)
		c.XTicks = append(c.XTicks, chartTick{At: x(t), Text: t.UTC().Format("01-02 15h")})
	}
	c.YTicks = []chartTick{{At: c.Bottom, Text: "0"}, {At: chartTop, Text: bytesText(int64(top))}}
	return c
}

// bytesText is a byte count as people read it; a negative one (a slot's
// safe_wal_size once it is past max_slot_wal_keep_size) keeps its sign.
func bytesText(n int64) string {
	if n < 0 && n != math.MinInt64 {
		return "-" + bytesText(-n)
	}
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
