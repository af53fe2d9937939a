package runner

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/schedule"
)

// Clock is the time the scheduler sees; tests drive their own.
type Clock interface {
	Now() time.Time
	// After delivers once d has passed.
	After(d time.Duration) <-chan time.Time
}

// systemClock is the wall clock.
type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// JobFunc runs one job of an integration.
type JobFunc func(ctx context.Context, in *Integration) error

// Serve runs each integration's jobs on its schedule until ctx ends. A tick
// that finds the integration's previous job still running is skipped and
// logged. When ctx ends, running jobs get the cancellation (a LOG_BASED job
// stops between transactions with a final STATE that is committed) and
// Serve returns once they are done.
func Serve(ctx context.Context, integrations []*Integration, clock Clock, log *slog.Logger, run JobFunc) error {
	schedules := make([]schedule.Schedule, len(integrations))
	for i, in := range integrations {
		if in.Schedule == (schedule.Spec{}) {
			return fmt.Errorf("integration %q has no schedule", in.Name)
		}
		s, err := schedule.Parse(in.Schedule)
		if err != nil {
			return fmt.Errorf("integration %q: %w", in.Name, err)
		}
		schedules[i] = s
	}
	var wg sync.WaitGroup
	for i, in := range integrations {
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveOne(ctx, in, schedules[i], clock, log, run)
		}()
	}
	wg.Wait()
	return nil
}

func serveOne(ctx context.Context, in *Integration, sched schedule.Schedule, clock Clock, log *slog.Logger, run JobFunc) {
	var jobs sync.WaitGroup
	defer jobs.Wait()
	running := make(chan struct{}, 1)
	next := sched.Next(clock.Now())
	if iv, ok := sched.(schedule.Interval); ok && !iv.Anchored {
		// A plain frequency starts at once, then every frequency.
		next = clock.Now()
	}
	if next.IsZero() {
		// A schedule without a next start never makes a job due (the
		// zero time would look overdue forever).
		log.Error(fmt.Sprintf("integration %q: %s never fires; no job is scheduled", in.Name, sched))
		return
	}
	log.Info(fmt.Sprintf("integration %q: %s; first job at %s", in.Name, sched, next.UTC().Format(time.RFC3339)))
	for {
		select {
		case <-ctx.Done():
			return
		case <-clock.After(next.Sub(clock.Now())):
		}
		tick := next
		next = sched.Next(tick)
		select {
		case running <- struct{}{}:
			jobs.Add(1)
			go func() {
				defer jobs.Done()
				defer func() { <-running }()
				if err := run(ctx, in); err != nil {
					log.Error(fmt.Sprintf("integration %q: job failed: %v", in.Name, err))
				}
			}()
		default:
			log.Warn(fmt.Sprintf("integration %q: the job due at %s is skipped: the previous job is still running",
				in.Name, tick.UTC().Format(time.RFC3339)))
		}
		if next.IsZero() {
			log.Error(fmt.Sprintf("integration %q: %s fires no more after %s; no further job is scheduled", in.Name, sched, tick.UTC().Format(time.RFC3339)))
			return
		}
	}
}
