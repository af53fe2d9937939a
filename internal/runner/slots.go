package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/engine"
	"github.com/tap-postgres/tap-postgres/internal/singer"
)

// SlotSample is a slot's health at one time.
type SlotSample struct {
	At time.Time `json:"at"`
	engine.SlotHealth
}

// slotHistory is how long slot samples are kept: the status page shows a
// slot's last days, and a store must not grow with every minute of serve.
const slotHistory = 7 * 24 * time.Hour

// slotSampleEvery is how often serve samples the slots between jobs.
const slotSampleEvery = time.Minute

// slotSampleTimeout bounds the reading of one integration's slots from its
// source: a source that stops answering must not stall its sampler for
// good.
const slotSampleTimeout = time.Minute

// samplesAt stamps slots with the time they were read. A sample leaves
// out the slot's Streams: kept every minute for a week they would repeat
// the database's stream ids tens of thousands of times, and the sampler
// reads them from the job record (the last job's Slots keep them).
func samplesAt(at time.Time, slots []engine.SlotHealth) []SlotSample {
	samples := make([]SlotSample, len(slots))
	for i, s := range slots {
		s.Streams = nil
		samples[i] = SlotSample{At: at.UTC(), SlotHealth: s}
	}
	return samples
}

// recentSamples drops the samples older than slotHistory before the newest
// of them, and says where that horizon is. The samples carry the clock
// that read them, so a store needs none of its own.
func recentSamples(samples []SlotSample) (kept []SlotSample, horizon time.Time) {
	for _, s := range samples {
		if s.At.After(horizon) {
			horizon = s.At
		}
	}
	horizon = horizon.Add(-slotHistory)
	for _, s := range samples {
		if !s.At.Before(horizon) {
			kept = append(kept, s)
		}
	}
	return kept, horizon
}

// SampleSlots records the health of each integration's slots every
// interval (at once, then every `every`) until ctx ends, so that the
// status page and /metrics follow a slot between jobs as well: the WAL a
// slot holds grows while no job runs. An integration is sampled once a
// job of it has recorded slots, the latest such job's (a job that failed
// before reaching its slots leaves them as they were); its samples are
// read with its source config and measured against its committed state.
// Failures are WARNING lines, each distinct one once per integration;
// they never stop serve.
func SampleSlots(ctx context.Context, integrations []*Integration, location string, every time.Duration, clock func() time.Time, log *slog.Logger) {
	var wg sync.WaitGroup
	for _, in := range integrations {
		wg.Add(1)
		// One sampler per integration: a source that is slow to answer
		// delays only its own samples.
		go func() {
			defer wg.Done()
			ticker := time.NewTicker(every)
			defer ticker.Stop()
			var logged string // the last failure logged
			for {
				err := sampleSlots(ctx, in, location, clock)
				switch {
				case err == nil:
					logged = ""
				case ctx.Err() != nil:
					return
				case oneLine(err) != logged:
					logged = oneLine(err)
					log.Warn(fmt.Sprintf("integration %q: slot health not sampled: %s", in.Name, logged))
				}
				select {
				case <-ctx.Done():
					return
				case <-ticker.C:
				}
			}
		}()
	}
	wg.Wait()
}

// sampleSlots reads in's slots once and appends what was read. The store
// is read, then written, in readStore calls of their own; the source is
// read between them, bounded by slotSampleTimeout: no store (a PostgreSQL
// store's connection) is held open while a slow source answers (a tunnel,
// several databases), and the source's bound is its own.
func sampleSlots(ctx context.Context, in *Integration, location string, clock func() time.Time) error {
	var known []engine.SlotHealth
	var state *singer.State
	err := readStore(ctx, location, in, func(store Store) error {
		jobs, err := store.Jobs()
		if err != nil {
			return err
		}
		job := lastSlotJob(jobs)
		if job == nil {
			return nil
		}
		known = job.Slots
		state, err = store.State()
		return err
	})
	if errors.Is(err, errNoJobYet) || (err == nil && known == nil) {
		return nil
	}
	if err != nil {
		return err
	}
	at := clock()
	readCtx, cancel := context.WithTimeout(ctx, slotSampleTimeout)
	defer cancel()
	// Jobs log how they connect (TLS, tunnel); every minute here would
	// only repeat it.
	quiet := slog.New(slog.DiscardHandler)
	slots, readErr := engine.ReadSlotHealth(readCtx, in.config, known, state, quiet)
	cancel()
	if len(slots) == 0 {
		return readErr
	}
	err = readStore(ctx, location, in, func(store Store) error {
		return store.AppendSlotSamples(samplesAt(at, slots))
	})
	return errors.Join(readErr, err)
}

// lastSlotJob is the latest job that recorded slots: the sampler follows
// its slots (a job that failed before reaching its slots leaves them as
// they were), and /metrics shows them. Nil when none did.
func lastSlotJob(jobs []JobRecord) *JobRecord {
	for i := len(jobs) - 1; i >= 0; i-- {
		if len(jobs[i].Slots) > 0 {
			return &jobs[i]
		}
	}
	return nil
}

// sampleWhileServing runs SampleSlots every slotSampleEvery for serve; the
// function it returns stops it and waits for it, so that serve returns
// only once no sample is being written.
func sampleWhileServing(ctx context.Context, integrations []*Integration, location string, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		SampleSlots(ctx, integrations, location, slotSampleEvery, time.Now, log)
	}()
	return func() {
		cancel()
		<-done
	}
}
