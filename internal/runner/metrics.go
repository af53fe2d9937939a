package runner

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tap-postgres/tap-postgres/internal/schedule"
)

// MetricsHandler serves the integrations' job history in Prometheus' text
// format, read from the store at each scrape: what `report` shows, as
// series an alerting system can watch (README, "Metrics").
func MetricsHandler(integrations []*Integration, store string, clock func() time.Time) http.Handler {
	registry := prometheus.NewRegistry()
	registry.MustRegister(&historyCollector{integrations: integrations, store: store, clock: clock})
	return promhttp.HandlerFor(registry, promhttp.HandlerOpts{})
}

// durationBuckets are job durations worth telling apart: seconds to hours.
var durationBuckets = []float64{1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600}

var (
	descStoreUp = prometheus.NewDesc("tap_postgres_store_up",
		"Whether the integration's store could be read at this scrape.", []string{"integration"}, nil)
	descJobs = prometheus.NewDesc("tap_postgres_jobs_total",
		"Jobs recorded, by how they ended (running for one not ended yet).", []string{"integration", "status"}, nil)
	descDuration = prometheus.NewDesc("tap_postgres_job_duration_seconds",
		"Duration of the jobs that ended.", []string{"integration"}, nil)
	descRowsLoaded = prometheus.NewDesc("tap_postgres_rows_loaded_total",
		"Rows the destination loaded (for a Singer target: covered by a state it printed).", []string{"integration", "table"}, nil)
	descRecordsSent = prometheus.NewDesc("tap_postgres_records_sent_total",
		"Records the tap emitted to the destination.", []string{"integration", "table"}, nil)
	descLastSuccess = prometheus.NewDesc("tap_postgres_last_success_timestamp_seconds",
		"When the last job that succeeded ended (Unix time).", []string{"integration"}, nil)
	descNextRun = prometheus.NewDesc("tap_postgres_next_run_seconds",
		"Seconds until the schedule's next job.", []string{"integration"}, nil)
	descSlotWAL = prometheus.NewDesc("tap_postgres_slot_wal_held_bytes",
		"WAL a LOG_BASED slot kept from removal, as last sampled.", []string{"integration", "database", "slot", "wal_status"}, nil)
	descSlotLag = prometheus.NewDesc("tap_postgres_slot_lag_bytes",
		"WAL between the committed state of a LOG_BASED slot's streams and the end of WAL, as last sampled.", []string{"integration", "database", "slot"}, nil)
	descSlotActive = prometheus.NewDesc("tap_postgres_slot_active",
		"Whether a process was streaming from the LOG_BASED slot (1) or not (0), as last sampled.", []string{"integration", "database", "slot"}, nil)
	descSlotSampled = prometheus.NewDesc("tap_postgres_slot_sampled_timestamp_seconds",
		"When the LOG_BASED slot's values shown were read (Unix time): its newest sample, or the last job's view when none is newer.", []string{"integration", "database", "slot"}, nil)
)

// historyCollector reads each integration's history when scraped.
type historyCollector struct {
	integrations []*Integration
	store        string
	clock        func() time.Time
}

func (c *historyCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descStoreUp, descJobs, descDuration, descRowsLoaded, descRecordsSent, descLastSuccess, descNextRun, descSlotWAL, descSlotLag, descSlotActive, descSlotSampled} {
		ch <- d
	}
}

func (c *historyCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.clock()
	for _, in := range c.integrations {
		if sched, err := schedule.Parse(in.Schedule); err == nil && in.Schedule != (schedule.Spec{}) {
			ch <- prometheus.MustNewConstMetric(descNextRun, prometheus.GaugeValue, sched.Next(now).Sub(now).Seconds(), in.Name)
		}
		jobs, samples, err := c.history(in, now)
		up := 1.0
		if err != nil {
			up = 0
		}
		ch <- prometheus.MustNewConstMetric(descStoreUp, prometheus.GaugeValue, up, in.Name)
		if err != nil {
			continue
		}
		collectHistory(ch, in.Name, jobs, samples)
	}
}

// history is in's job history and the samples of its slots that may be
// newer than the last job's view of them: those taken since that job
// started, within slotHistory. None before its first job.
func (c *historyCollector) history(in *Integration, now time.Time) ([]JobRecord, []SlotSample, error) {
	var jobs []JobRecord
	var samples []SlotSample
	err := readStore(context.Background(), c.store, in, func(store Store) error {
		var err error
		if jobs, err = store.Jobs(); err != nil {
			return err
		}
		job := lastSlotJob(jobs)
		if job == nil {
			return nil
		}
		since := now.Add(-slotHistory)
		if job.Started.After(since) {
			since = job.Started
		}
		// Slot history that cannot be read (a store whose role may not
		// create slot_samples: the page says why) leaves the job's view
		// of each slot, not a store that looks down.
		samples, _ = store.SlotSamples(since)
		return nil
	})
	if errors.Is(err, errNoJobYet) {
		return nil, nil, nil
	}
	return jobs, samples, err
}

// shownSlots are the slots of the latest job that recorded slots, each as
// its newest sample says, or as that job found it when no sample is newer.
// Each slot falls back on its own: one whose database cannot be read keeps
// its series, at the time of its last value, while the others move on.
func shownSlots(jobs []JobRecord, samples []SlotSample) []SlotSample {
	job := lastSlotJob(jobs)
	if job == nil {
		return nil
	}
	shown := samplesAt(job.Started, job.Slots)
	at := map[[2]string]int{}
	for i, s := range shown {
		at[[2]string{s.Database, s.Slot}] = i
	}
	for _, s := range samples {
		if i, ok := at[[2]string{s.Database, s.Slot}]; ok && !s.At.Before(shown[i].At) {
			shown[i] = s
		}
	}
	return shown
}

// collectHistory turns the history into metrics; the slots' are
// shownSlots'.
func collectHistory(ch chan<- prometheus.Metric, name string, jobs []JobRecord, samples []SlotSample) {
	statuses := map[string]float64{}
	loaded, sent := map[string]float64{}, map[string]float64{}
	buckets := make(map[float64]uint64, len(durationBuckets))
	var count uint64
	var sum float64
	var lastSuccess time.Time
	for _, j := range jobs {
		statuses[j.Status]++
		for table, n := range j.Rows {
			loaded[table] += float64(n)
		}
		for table, n := range j.Sent {
			sent[table] += float64(n)
		}
		if j.Status != statusRunning && !j.Finished.IsZero() {
			d := j.Finished.Sub(j.Started).Seconds()
			count++
			sum += d
			for _, b := range durationBuckets {
				if d <= b {
					buckets[b]++
				}
			}
		}
		if j.Status == statusSucceeded && j.Finished.After(lastSuccess) {
			lastSuccess = j.Finished
		}
	}
	for status, n := range statuses {
		ch <- prometheus.MustNewConstMetric(descJobs, prometheus.CounterValue, n, name, status)
	}
	ch <- prometheus.MustNewConstHistogram(descDuration, count, sum, buckets, name)
	for table, n := range loaded {
		ch <- prometheus.MustNewConstMetric(descRowsLoaded, prometheus.CounterValue, n, name, table)
	}
	for table, n := range sent {
		ch <- prometheus.MustNewConstMetric(descRecordsSent, prometheus.CounterValue, n, name, table)
	}
	if !lastSuccess.IsZero() {
		ch <- prometheus.MustNewConstMetric(descLastSuccess, prometheus.GaugeValue, float64(lastSuccess.Unix()), name)
	}
	for _, s := range shownSlots(jobs, samples) {
		ch <- prometheus.MustNewConstMetric(descSlotWAL, prometheus.GaugeValue, float64(s.WALHeld), name, s.Database, s.Slot, s.WALStatus)
		ch <- prometheus.MustNewConstMetric(descSlotLag, prometheus.GaugeValue, float64(s.Lag), name, s.Database, s.Slot)
		active := 0.0
		if s.Active {
			active = 1
		}
		ch <- prometheus.MustNewConstMetric(descSlotActive, prometheus.GaugeValue, active, name, s.Database, s.Slot)
		ch <- prometheus.MustNewConstMetric(descSlotSampled, prometheus.GaugeValue, float64(s.At.Unix()), name, s.Database, s.Slot)
	}
}
