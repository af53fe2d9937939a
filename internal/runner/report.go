package runner

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/engine"
)

// TableLoad is one table's line of a loading report.
type TableLoad struct {
	Job      int       `json:"job"`
	Finished time.Time `json:"finished"`
	Stream   string    `json:"stream"`
	// Rows were loaded; RowsSent were sent to the destination, loaded or
	// not, unknown (nil) for jobs recorded before it was kept.
	Rows     int64  `json:"rows"`
	RowsSent *int64 `json:"rows_sent,omitempty"`
	// Changes are a LOG_BASED table's sent changes by kind; nil for other
	// methods, which cannot tell them apart.
	Changes  *engine.ChangeCounts `json:"changes,omitempty"`
	Duration string               `json:"duration"`
	Bookmark string               `json:"bookmark"`
	Status   string               `json:"status"`
	Error    string               `json:"error,omitempty"`
}

// LoadingReport lists per job and table what was loaded, and per table the
// rows loaded in the 24 hours before now.
type LoadingReport struct {
	Loads     []TableLoad      `json:"loads"`
	Last24h   map[string]int64 `json:"rows_last_24h"`
	Generated time.Time        `json:"generated"`
}

// noBookmark is what Stitch shows for full-table and log-based tables.
const noBookmark = "Bookmark Unavailable"

// Report builds the loading report from the job history.
func Report(jobs []JobRecord, now time.Time) LoadingReport {
	r := LoadingReport{Last24h: map[string]int64{}, Generated: now.UTC()}
	for _, j := range jobs {
		streams := make([]string, 0, len(j.Rows))
		for s := range j.Rows {
			streams = append(streams, s)
		}
		slices.Sort(streams)
		for _, s := range streams {
			bookmark := noBookmark
			if v, ok := j.Bookmarks[s]; ok {
				bookmark = string(v)
				// A string shows as its text; other values as JSON.
				var text string
				if json.Unmarshal(v, &text) == nil {
					bookmark = text
				}
			}
			load := TableLoad{Job: j.ID, Finished: j.Finished, Stream: s, Rows: j.Rows[s],
				Duration: tableDuration(j, s).String(), Bookmark: bookmark, Status: j.Status, Error: j.Error}
			if sent, ok := j.Sent[s]; ok {
				load.RowsSent = &sent
			}
			if c, ok := j.Changes[s]; ok {
				load.Changes = &c
			}
			r.Loads = append(r.Loads, load)
			if now.Sub(j.Finished) <= 24*time.Hour {
				r.Last24h[s] += j.Rows[s]
			}
		}
	}
	return r
}

// Print writes the report as terminal tables, or JSON for scripts.
func (r LoadingReport) Print(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tFINISHED\tTABLE\tROWS LOADED\tROWS SENT\tINS/UPD/DEL\tDURATION\tMAX BOOKMARK\tSTATUS\tERROR")
	for _, l := range r.Loads {
		sent := "-"
		if l.RowsSent != nil {
			sent = strconv.FormatInt(*l.RowsSent, 10)
		}
		changes := "-"
		if c := l.Changes; c != nil {
			changes = fmt.Sprintf("%d/%d/%d", c.Inserts, c.Updates, c.Deletes)
		}
		// An error of several lines would break the table's rows.
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Job, l.Finished.Format(time.RFC3339), l.Stream, l.Rows, sent,
			changes, l.Duration, l.Bookmark, l.Status, strings.ReplaceAll(l.Error, "\n", "; "))
	}
	fmt.Fprintln(tw, "\nTABLE\tROWS LOADED IN THE LAST 24 H")
	tables := make([]string, 0, len(r.Last24h))
	for t := range r.Last24h {
		tables = append(tables, t)
	}
	slices.Sort(tables)
	for _, t := range tables {
		fmt.Fprintf(tw, "%s\t%d\n", t, r.Last24h[t])
	}
	return tw.Flush()
}

// tableDuration is how long the job loaded the table; the job's duration for
// jobs recorded before durations were kept per table.
func tableDuration(j JobRecord, stream string) time.Duration {
	if d, ok := j.Durations[stream]; ok {
		return d.Round(time.Millisecond)
	}
	return j.Finished.Sub(j.Started).Round(time.Millisecond)
}
