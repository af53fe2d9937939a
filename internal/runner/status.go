package runner

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/schedule"
)

//go:embed status.html
var statusTemplates embed.FS

// StatusHandler serves the integrations' status as server-rendered pages
// (no JavaScript): each integration with its last job, its jobs, and each
// job's extraction log. Nothing shown holds a secret: the source is its
// host and database, the destination its kind.
func StatusHandler(integrations []*Integration, store string, clock func() time.Time) http.Handler {
	pages := template.Must(template.New("").Funcs(template.FuncMap{
		"since": func(t time.Time) string { return clock().Sub(t).Round(time.Second).String() },
		"stamp": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	}).ParseFS(statusTemplates, "status.html"))
	s := &statusPages{integrations: integrations, store: store, clock: clock, pages: pages}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET /integrations/{key}", s.integration)
	mux.HandleFunc("GET /integrations/{key}/jobs/{id}/log", s.log)
	return mux
}

type statusPages struct {
	integrations []*Integration
	store        string
	clock        func() time.Time
	pages        *template.Template
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
		row := integrationRow{Key: in.StoreKey(), Name: in.Name, Destination: in.Destination.Type,
			Source: in.config.Host + ":" + strconv.Itoa(in.config.Port) + "/" + in.config.DBName}
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

func (s *statusPages) integration(w http.ResponseWriter, r *http.Request) {
	in := s.find(r.PathValue("key"))
	if in == nil {
		s.render(w, http.StatusNotFound, "missing", "no integration "+r.PathValue("key"))
		return
	}
	jobs, err := s.jobs(r.Context(), in)
	if err != nil {
		s.render(w, http.StatusServiceUnavailable, "missing", "the store cannot be read: "+oneLine(err))
		return
	}
	slices.Reverse(jobs)
	s.render(w, http.StatusOK, "integration", struct {
		Key, Name string
		Jobs      []JobRecord
		Report    LoadingReport
	}{in.StoreKey(), in.Name, jobs, Report(jobs, s.clock())})
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
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = s.pages.ExecuteTemplate(w, page, data)
}
