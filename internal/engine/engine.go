// Package engine composes the PostgreSQL side (connect, discovery, readers)
// with the Singer side (catalog, state, messages): it plans streams from the
// catalog and state, runs one replication method per stream, and decides
// when STATE is emitted.
package engine

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/config"
	"github.com/tap-postgres/tap-postgres/internal/connect"
	"github.com/tap-postgres/tap-postgres/internal/singer"
	"github.com/tap-postgres/tap-postgres/internal/types"
)

// stateEvery is the most records emitted between two STATE messages, and
// maxBatchBytes the most bytes of records held before they are sent.
const (
	stateEvery    = 1000
	maxBatchBytes = 8 << 20
)

// metricEvery is the longest time between two record_count metrics.
const metricEvery = 60 * time.Second

// Engine runs discovery and syncs for one config.
type Engine struct {
	cfg    config.Config
	conn   *connect.Connector
	log    *slog.Logger
	clock  func() time.Time
	states *stateCadence
	// slots are what Slots reports.
	slots []SlotHealth
	// changes are what Changes reports.
	changes map[string]ChangeCounts
}

// New prepares an engine. clock is injected so tests control versions and
// time_extracted; nil means time.Now.
func New(cfg config.Config, log *slog.Logger, clock func() time.Time) *Engine {
	if clock == nil {
		clock = time.Now
	}
	return &Engine{cfg: cfg, conn: connect.New(cfg, log), log: log, clock: clock,
		states: &stateCadence{every: cfg.StateInterval, clock: clock}}
}

// Close releases what connections share (the SSH tunnel).
func (e *Engine) Close() error { return e.conn.Close() }

func (e *Engine) typeOptions() types.Options {
	return types.Options{JSONAsObject: e.cfg.JSONAsObject}
}

// streamID is the reference's tap_stream_id.
func streamID(db, schema, table string) string {
	return fmt.Sprintf("%s-%s-%s", db, schema, table)
}

// metrics counts records per stream and logs singer-python style counters.
type metrics struct {
	log      *slog.Logger
	stream   string
	count    int64
	lastSent time.Time
	clock    func() time.Time
}

func newMetrics(log *slog.Logger, stream string, clock func() time.Time) *metrics {
	return &metrics{log: log, stream: stream, lastSent: clock(), clock: clock}
}

func (m *metrics) add(n int64) {
	m.count += n
	if m.clock().Sub(m.lastSent) >= metricEvery {
		m.flush()
	}
}

// flush logs the count since the last metric, as singer-python's Counter.
func (m *metrics) flush() {
	m.log.Info(fmt.Sprintf(`METRIC: {"type":"counter","metric":"record_count","value":%d,"tags":{"endpoint":%s}}`,
		m.count, types.AppendString(nil, m.stream)))
	m.count = 0
	m.lastSent = m.clock()
}

// stateCadence spaces STATE messages at least every apart. Each carries
// the whole state, so with thousands of streams a STATE at every stream
// event would make the output grow as streams × events (10,000 one-row
// tables: 16 GB); one skipped costs nothing, as the next carries its
// bookmarks too and its records are already ahead of it.
type stateCadence struct {
	mu    sync.Mutex
	every time.Duration
	clock func() time.Time
	last  time.Time
}

// write emits st when the interval has passed since the last STATE.
func (c *stateCadence) write(out *singer.Writer, st *singer.State) error {
	c.mu.Lock()
	now := c.clock()
	due := c.last.IsZero() || now.Sub(c.last) >= c.every
	if due {
		c.last = now
	}
	c.mu.Unlock()
	if !due {
		return nil
	}
	return writeState(out, st)
}

// force emits st now: the end of a run or of a database's stream.
func (c *stateCadence) force(out *singer.Writer, st *singer.State) error {
	c.mu.Lock()
	c.last = c.clock()
	c.mu.Unlock()
	return writeState(out, st)
}

// writeState emits STATE; the writer flushes, so the records it covers are
// out first. Callers go through a stateCadence.
func writeState(out *singer.Writer, st *singer.State) error {
	if err := out.WriteState(st); err != nil {
		return fmt.Errorf("write STATE: %w", err)
	}
	return nil
}

// Columns LOG_BASED adds to every record of its streams.
const (
	columnDeletedAt = "_sdc_deleted_at"
	columnLSN       = "_sdc_lsn"
)

// extraColumns are the log-only columns a stream's records carry.
func (e *Engine) extraColumns(p *streamPlan) []string {
	if p.method != MethodLogBased {
		return nil
	}
	if e.cfg.DebugLSN {
		return []string{columnDeletedAt, columnLSN}
	}
	return []string{columnDeletedAt}
}

// extraProperties declares extraColumns in the SCHEMA.
func (e *Engine) extraProperties(p *streamPlan) types.Properties {
	var props types.Properties
	for _, c := range e.extraColumns(p) {
		s := &types.Schema{Type: []string{"null", "string"}}
		if c == columnDeletedAt {
			s.Format = "date-time"
		}
		props = append(props, types.Property{Name: c, Schema: s})
	}
	return props
}
