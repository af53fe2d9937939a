package runner

import (
	"context"
	"errors"
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
// controls, when not nil, lets the status page start a job now and stop
// the running one.
func Serve(ctx context.Context, integrations []*Integration, clock Clock, log *slog.Logger, run JobFunc, controls *Controls) error {
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
			serveOne(ctx, in, schedules[i], clock, log, run, controls.of(in))
		}()
	}
	wg.Wait()
	return nil
}

func serveOne(ctx context.Context, in *Integration, sched schedule.Schedule, clock Clock, log *slog.Logger, run JobFunc, control *jobControl) {
	var jobs sync.WaitGroup
	defer jobs.Wait()
	defer control.close()
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
	start := func() {
		jobs.Add(1)
		jobCtx, stop := context.WithCancel(ctx)
		control.started(stop)
		go func() {
			defer jobs.Done()
			defer control.ended(running)
			defer stop()
			switch err := run(jobCtx, in); {
			case errors.Is(err, errStopped):
				log.Info(fmt.Sprintf("integration %q: the job stopped as asked (from the status page, or serve is stopping); what it loaded is committed", in.Name))
			case err != nil:
				log.Error(fmt.Sprintf("integration %q: job failed: %v", in.Name, err))
			}
		}()
	}
	for {
		tick, asked := next, false
		select {
		case <-ctx.Done():
			return
		case <-clock.After(next.Sub(clock.Now())):
			next = sched.Next(tick)
		case <-control.asked():
			tick, asked = clock.Now(), true
			log.Info(fmt.Sprintf("integration %q: a job was asked for from the status page", in.Name))
		}
		if ctx.Err() != nil {
			return // both were ready: shutting down wins
		}
		switch {
		case asked:
			// The page said the job starts: one ending just now is let
			// finish first, never dropped.
			select {
			case running <- struct{}{}:
				start()
			case <-ctx.Done():
				return
			}
		default:
			select {
			case running <- struct{}{}:
				start()
			default:
				log.Warn(fmt.Sprintf("integration %q: the job due at %s is skipped: the previous job is still running",
					in.Name, tick.UTC().Format(time.RFC3339)))
			}
		}
		if next.IsZero() && !asked {
			log.Error(fmt.Sprintf("integration %q: %s fires no more after %s; no further job is scheduled", in.Name, sched, tick.UTC().Format(time.RFC3339)))
			return
		}
	}
}

// Controls are what the status page's actions (README, "Metrics and status
// pages") ask of the jobs this serve runs: a job now, or the running one
// stopped as SIGTERM stops it.
type Controls struct {
	jobs map[*Integration]*jobControl
}

// NewControls prepares the controls of integrations' jobs.
func NewControls(integrations []*Integration) *Controls {
	c := &Controls{jobs: map[*Integration]*jobControl{}}
	for _, in := range integrations {
		c.jobs[in] = &jobControl{ask: make(chan struct{}, 1)}
	}
	return c
}

// jobControl is one integration's: a request for a job, and how to stop
// the running one.
type jobControl struct {
	ask    chan struct{}
	mu     sync.Mutex
	stop   context.CancelFunc
	closed bool
}

// Errors of the actions, which the page shows as they are.
var (
	errJobRunning   = errors.New("a job of this integration is running: wait for it to end, or stop it")
	errNoJobRunning = errors.New("no job of this integration runs in this serve (a job another process runs is stopped there)")
	errJobAsked     = errors.New("a job was already asked for and has not started yet")
	errNotServing   = errors.New("serve no longer schedules this integration's jobs (it is stopping, or its schedule has no next start)")
)

func (c *Controls) of(in *Integration) *jobControl {
	if c == nil {
		return nil
	}
	return c.jobs[in]
}

// RunNow asks for a job of in at once, refused while one runs.
func (c *Controls) RunNow(in *Integration) error {
	j := c.of(in)
	j.mu.Lock()
	defer j.mu.Unlock()
	switch {
	case j.closed:
		return errNotServing
	case j.stop != nil:
		return errJobRunning
	}
	select {
	case j.ask <- struct{}{}:
		return nil
	default:
		return errJobAsked
	}
}

// Stop stops in's running job: the tap ends with a last STATE, which the
// destination commits, as at SIGTERM.
func (c *Controls) Stop(in *Integration) error {
	j := c.of(in)
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.stop == nil {
		return errNoJobRunning
	}
	j.stop()
	return nil
}

// asked delivers requests for a job; never without controls.
func (j *jobControl) asked() <-chan struct{} {
	if j == nil {
		return nil
	}
	return j.ask
}

func (j *jobControl) started(stop context.CancelFunc) {
	if j != nil {
		j.mu.Lock()
		j.stop = stop
		j.mu.Unlock()
	}
}

// ended frees the integration's running slot and forgets the job's stop
// together, so that no request sees one without the other.
func (j *jobControl) ended(running <-chan struct{}) {
	if j == nil {
		<-running
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	<-running
	j.stop = nil
}

// close refuses later requests: no loop reads them any more.
func (j *jobControl) close() {
	if j != nil {
		j.mu.Lock()
		j.closed = true
		j.mu.Unlock()
	}
}
