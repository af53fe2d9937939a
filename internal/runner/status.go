package runner

import (
	"bytes"
	"cmp"
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/schedule"
)

//go:embed status.html
var statusTemplates embed.FS

// StatusHandler serves the integrations' status as server-rendered pages
// (no JavaScript; charts are inline SVG): each integration with its last
// job; per integration its extraction logs over a day, loading reports,
// rows per table over time, settings and slot health; each job's
// extraction log. Nothing shown holds a secret: the source is its host and
// database, the destination its kind. With actions (a token and serve's
// controls) the integration page also offers "run now", "stop the running
// job" and "reset table", as POSTs carrying the token; without, the pages
// are read-only and every action answers 403.
func StatusHandler(integrations []*Integration, store string, clock func() time.Time, actions *Actions) http.Handler {
	pages := template.Must(template.New("").Funcs(template.FuncMap{
		"since": func(t time.Time) string { return clock().Sub(t).Round(time.Second).String() },
		"stamp": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"bytes": bytesText,
		"deref": func(n *int64) int64 { return *n },
		"add":   func(a, b float64) float64 { return a + b },
	}).ParseFS(statusTemplates, "status.html"))
	s := &statusPages{integrations: integrations, store: store, clock: clock, pages: pages, actions: actions}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET /integrations/{key}", s.integration)
	mux.HandleFunc("GET /integrations/{key}/jobs/{id}/log", s.log)
	mux.HandleFunc("POST /integrations/{key}/run", s.act(s.runNow))
	mux.HandleFunc("POST /integrations/{key}/stop", s.act(s.stop))
	mux.HandleFunc("POST /integrations/{key}/reset", s.act(s.reset))
	return mux
}

// Actions enable the page's actions: Token must come with each, and
// Controls reach serve's jobs.
type Actions struct {
	Token    string
	Controls *Controls
}

type statusPages struct {
	integrations []*Integration
	store        string
	clock        func() time.Time
	pages        *template.Template
	actions      *Actions
}

// integrationRow is what the index shows of one integration.
type integrationRow struct {
	Key, Name, Source, Destination, Schedule string
	NextRun                                  time.Time
	Last                                     *JobRecord
	RowsLast24h                              int64
	StoreError                               string
}

func (s *statusPages) index(w http.ResponseWriter, r *http.Request) {
	now := s.clock()
	var rows []integrationRow
	for _, in := range s.integrations {
		row := integrationRow{Key: in.StoreKey(), Name: in.Name, Destination: in.Destination.Type, Source: sourceOf(in)}
		if sched, err := schedule.Parse(in.Schedule); err == nil && in.Schedule != (schedule.Spec{}) {
			row.Schedule, row.NextRun = sched.String(), sched.Next(now)
		}
		jobs, err := s.jobs(r.Context(), in)
		if err != nil {
			row.StoreError = oneLine(err)
		} else if len(jobs) > 0 {
			row.Last = &jobs[len(jobs)-1]
			for _, n := range Report(jobs, now).Last24h {
				row.RowsLast24h += n
			}
		}
		rows = append(rows, row)
	}
	s.render(w, http.StatusOK, "index", rows)
}

// sourceOf names the source without a secret: host, port and database.
func sourceOf(in *Integration) string {
	return in.config.Host + ":" + strconv.Itoa(in.config.Port) + "/" + in.config.DBName
}

// integrationPage is what the integration page shows of the selected day.
type integrationPage struct {
	Key, Name, Source, Destination, Schedule string
	Day, PrevDay, NextDay                    string
	Jobs                                     []JobRecord
	Extractions                              barChart
	Report                                   LoadingReport
	Rows                                     []tableRowsChart
	Settings                                 []settingRow
	SelectAll                                bool
	DefaultMethod                            string
	Slots                                    []slotPanel
	SlotError                                string
	Actions                                  bool
	Running                                  bool
	Streams                                  []string
	Message                                  string
}

// settingRow is a selected table as the integration file selects it.
type settingRow struct {
	Table, Method, ReplicationKey, ViewKey, Columns string
}

// slotPanel is one slot: as last sampled, and its history.
type slotPanel struct {
	Last    SlotSample
	Warning string
	Chart   lineChart
}

// dayLayout is how a day is named in the page's address.
const dayLayout = "2006-01-02"

func (s *statusPages) integration(w http.ResponseWriter, r *http.Request) {
	in := s.find(r.PathValue("key"))
	if in == nil {
		s.render(w, http.StatusNotFound, "missing", "no integration "+r.PathValue("key"))
		return
	}
	page, status, err := s.integrationPage(r.Context(), in, r.URL.Query().Get("day"))
	if err != nil {
		s.render(w, status, "missing", err.Error())
		return
	}
	// A fixed text per action: a link cannot put words of its own on the
	// page where the token is typed.
	page.Message = actionDone[r.URL.Query().Get("done")]
	s.render(w, http.StatusOK, "integration", page)
}

func (s *statusPages) integrationPage(ctx context.Context, in *Integration, dayParam string) (integrationPage, int, error) {
	now := s.clock().UTC()
	jobs, err := s.jobs(ctx, in)
	if err != nil && !errors.Is(err, errNoJobYet) {
		return integrationPage{}, http.StatusServiceUnavailable, fmt.Errorf("the store cannot be read: %s", oneLine(err))
	}
	// The day shown is asked for, or the last job's: a page opened a day
	// after the last job still shows it.
	day := now.Truncate(24 * time.Hour)
	if len(jobs) > 0 {
		day = jobs[len(jobs)-1].Started.UTC().Truncate(24 * time.Hour)
	}
	if dayParam != "" {
		if day, err = time.Parse(dayLayout, dayParam); err != nil {
			return integrationPage{}, http.StatusBadRequest, fmt.Errorf("day %q is not a date like %s", dayParam, now.Format(dayLayout))
		}
	}
	page := integrationPage{Key: in.StoreKey(), Name: in.Name, Source: sourceOf(in), Destination: in.Destination.Type,
		Day: day.Format(dayLayout), PrevDay: day.AddDate(0, 0, -1).Format(dayLayout), NextDay: day.AddDate(0, 0, 1).Format(dayLayout),
		Extractions: extractionChart(in.StoreKey(), jobs, day, now), Rows: rowsCharts(jobs, day),
		SelectAll: in.SelectAll, DefaultMethod: in.DefaultReplicationMethod, Actions: s.actions != nil}
	if sched, err := schedule.Parse(in.Schedule); err == nil && in.Schedule != (schedule.Spec{}) {
		page.Schedule = fmt.Sprintf("%s; next job at %s", sched, sched.Next(now).UTC().Format(time.RFC3339))
	}
	var ofDay []JobRecord
	for _, j := range jobs {
		if !j.Started.Before(day) && j.Started.Before(day.Add(24*time.Hour)) {
			ofDay = append(ofDay, j)
		}
		page.Running = page.Running || j.Status == statusRunning
	}
	page.Report = Report(ofDay, now)
	slices.Reverse(ofDay)
	page.Jobs = ofDay
	for _, t := range in.Tables {
		row := settingRow{Table: t.Schema + "." + t.Table, Method: cmp.Or(t.ReplicationMethod, in.DefaultReplicationMethod),
			ReplicationKey: t.ReplicationKey, ViewKey: strings.Join(t.ViewKey, ", "), Columns: "all"}
		if t.Database != "" {
			row.Table = t.Database + "." + row.Table
		}
		if len(t.Columns) > 0 {
			row.Columns = strings.Join(t.Columns, ", ") + " (and the keys)"
		}
		page.Settings = append(page.Settings, row)
	}
	err = readStore(ctx, s.store, in, func(store Store) error {
		samples, err := store.SlotSamples(now.Add(-slotHistory))
		if err != nil {
			return err
		}
		page.Slots = slotPanels(samples, now, in.config.SlotWALWarnBytes)
		if page.Actions {
			state, err := store.State()
			if err != nil {
				return err
			}
			page.Streams = slices.Sorted(maps.Keys(state.Bookmarks))
		}
		return nil
	})
	if err != nil && !errors.Is(err, errNoJobYet) {
		page.SlotError = oneLine(err)
	}
	return page, http.StatusOK, nil
}

// slotPanels groups samples by slot, newest sample on top of each.
func slotPanels(samples []SlotSample, now time.Time, warnBytes int) []slotPanel {
	bySlot := map[string][]SlotSample{}
	for _, smp := range samples {
		k := smp.Database + "\x00" + smp.Slot
		bySlot[k] = append(bySlot[k], smp)
	}
	var panels []slotPanel
	for _, k := range slices.Sorted(maps.Keys(bySlot)) {
		history := bySlot[k]
		last := history[len(history)-1]
		p := slotPanel{Last: last, Chart: slotChart(history, now)}
		switch {
		case last.WALStatus == "lost":
			p.Warning = "the slot lost WAL it needs: jobs fail until it is recreated and its streams reset (see the job's log)"
		case last.WALStatus == "unreserved":
			p.Warning = "unreserved: the slot holds more WAL than max_slot_wal_keep_size and loses some at the next checkpoint"
		case warnBytes > 0 && last.WALHeld > int64(warnBytes):
			p.Warning = fmt.Sprintf("holds more WAL than slot_wal_warn_bytes (%s)", bytesText(int64(warnBytes)))
		}
		panels = append(panels, p)
	}
	return panels
}

// logLine is a line of an extraction log, with its level for colour.
type logLine struct{ Level, Text string }

func (s *statusPages) log(w http.ResponseWriter, r *http.Request) {
	in := s.find(r.PathValue("key"))
	id, err := strconv.Atoi(r.PathValue("id"))
	if in == nil || err != nil || id <= 0 {
		s.render(w, http.StatusNotFound, "missing", "no such job")
		return
	}
	var data []byte
	err = readStore(r.Context(), s.store, in, func(store Store) error {
		var err error
		data, err = store.ReadLog(id)
		return err
	})
	if err != nil {
		s.render(w, http.StatusNotFound, "missing", oneLine(err))
		return
	}
	var lines []logLine
	var critical []string
	for _, text := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		level := ""
		for _, l := range []string{"CRITICAL", "ERROR", "WARNING", "INFO"} {
			if strings.Contains(text, " - "+l+" ") {
				level = l
				break
			}
		}
		if level == "CRITICAL" {
			critical = append(critical, text)
		}
		lines = append(lines, logLine{Level: level, Text: text})
	}
	s.render(w, http.StatusOK, "log", struct {
		Key, Name string
		ID        int
		Critical  []string
		Lines     []logLine
	}{in.StoreKey(), in.Name, id, critical, lines})
}

func (s *statusPages) find(key string) *Integration {
	for _, in := range s.integrations {
		if in.StoreKey() == key {
			return in
		}
	}
	return nil
}

func (s *statusPages) jobs(ctx context.Context, in *Integration) ([]JobRecord, error) {
	var jobs []JobRecord
	err := readStore(ctx, s.store, in, func(store Store) error {
		var err error
		jobs, err = store.Jobs()
		return err
	})
	return jobs, err
}

// errNoJobYet answers a read of a directory store in which an integration
// has no part yet.
var errNoJobYet = errors.New("no job has run yet")

// readStore runs read on in's part of the store; a page or a scrape never
// creates one (errNoJobYet).
func readStore(ctx context.Context, location string, in *Integration, read func(Store) error) error {
	if !storeMayExist(location, in) {
		return errNoJobYet
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	store, err := OpenStore(ctx, location, in.StoreKey())
	if err != nil {
		return err
	}
	defer store.Close()
	return read(store)
}

func (s *statusPages) render(w http.ResponseWriter, status int, page string, data any) {
	// Drawn whole before it is sent: a page that fails half-way is a 500
	// saying why, never a page cut short.
	var body bytes.Buffer
	if err := s.pages.ExecuteTemplate(&body, page, data); err != nil {
		http.Error(w, "the page could not be drawn: "+oneLine(err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = body.WriteTo(w)
}

// act checks an action's token, then runs it: 403 without actions or with
// a wrong token, 404 for no such integration, 409 when it cannot be done
// now; done, it sends the browser back to the page with its actionDone
// code.
func (s *statusPages) act(action func(r *http.Request, in *Integration) (done string, err error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.actions == nil {
			s.render(w, http.StatusForbidden, "missing", "actions are off: serve was started without --http-token")
			return
		}
		// A proxy's own Authorization (Basic) leaves the form's token.
		token, bearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !bearer {
			token = r.PostFormValue("token")
		}
		if subtle.ConstantTimeCompare([]byte(token), []byte(s.actions.Token)) != 1 {
			s.render(w, http.StatusForbidden, "missing", "wrong or missing token")
			return
		}
		in := s.find(r.PathValue("key"))
		if in == nil {
			s.render(w, http.StatusNotFound, "missing", "no integration "+r.PathValue("key"))
			return
		}
		done, err := action(r, in)
		if err != nil {
			s.render(w, http.StatusConflict, "missing", oneLine(err))
			return
		}
		http.Redirect(w, r, "/integrations/"+url.PathEscape(in.StoreKey())+"?done="+done, http.StatusSeeOther)
	}
}

// actionDone is what the page says after each action, by the code its
// redirect carries.
var actionDone = map[string]string{
	"run":   "a job was asked for: it starts in a moment (after the job that is ending, if one is)",
	"stop":  "the running job was told to stop: it ends after its last STATE is loaded",
	"reset": "the stream was reset: the next job copies it again",
}

func (s *statusPages) runNow(_ *http.Request, in *Integration) (string, error) {
	return "run", s.actions.Controls.RunNow(in)
}

func (s *statusPages) stop(_ *http.Request, in *Integration) (string, error) {
	return "stop", s.actions.Controls.Stop(in)
}

func (s *statusPages) reset(r *http.Request, in *Integration) (string, error) {
	stream := r.PostFormValue("stream")
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	store, err := openIntegrationStore(ctx, s.store, in)
	if err != nil {
		return "", err
	}
	defer store.Close()
	return "reset", Reset(ctx, store, stream)
}
