package runner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tap-postgres/tap-postgres/internal/connect"
	"github.com/tap-postgres/tap-postgres/internal/singer"
)

// DefaultStoreSchema is the schema of the PostgreSQL store unless the
// location names another in its fragment (postgres://…/db#schema).
const DefaultStoreSchema = "tap_postgres_runner"

// pgCallTimeout bounds each of the store's statements.
const pgCallTimeout = time.Minute

// pgStore keeps the store in a PostgreSQL schema, so that jobs of an
// integration can run on several machines. Its calls share one connection
// (reopened if it breaks); a held job lock has a connection of its own.
type pgStore struct {
	// ctx is OpenStore's without its cancellation: a job stopped by
	// SIGTERM still commits its last state and records itself.
	ctx         context.Context
	config      *pgx.ConnConfig
	schema      string
	integration string
	lockKey     int64
	// noSlotHistory says why slot samples are neither kept nor read (a
	// store of an earlier version whose role cannot add their table).
	noSlotHistory error

	mu   sync.Mutex // guards the fields below and the use of both connections
	conn *pgx.Conn
	// lockConn holds the job lock while a job runs; state commits go through
	// it, so that a job that lost its lock (its session died) cannot commit.
	lockConn *pgx.Conn
}

// isPostgresLocation tells a PostgreSQL store's location from a directory.
func isPostgresLocation(location string) bool {
	return strings.HasPrefix(location, "postgres://") || strings.HasPrefix(location, "postgresql://")
}

// openPgStore connects to the location (a postgres:// URL, optionally with
// a #schema fragment) and creates the store's schema and tables if missing.
func openPgStore(ctx context.Context, location, integration string) (*pgStore, error) {
	dsn, fragment, _ := strings.Cut(location, "#")
	schema := DefaultStoreSchema
	if fragment != "" {
		s, err := url.PathUnescape(fragment)
		if err != nil {
			return nil, fmt.Errorf("open store: schema in %q: %w", "#"+fragment, err)
		}
		schema = s
	}
	config, err := connect.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	// Commits are durable whatever the server's default.
	config.RuntimeParams["synchronous_commit"] = "on"
	if config.RuntimeParams["application_name"] == "" {
		config.RuntimeParams["application_name"] = "tap-postgres runner"
	}
	s := &pgStore{
		ctx:         context.WithoutCancel(ctx),
		config:      config,
		schema:      schema,
		integration: integration,
		lockKey:     advisoryKey("job", schema, integration),
	}
	s.conn, err = pgx.ConnectConfig(ctx, config)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := s.setup(ctx); err != nil {
		s.conn.Close(context.Background())
		return nil, fmt.Errorf("open store: schema %s: %w", schema, err)
	}
	return s, nil
}

// advisoryKey is a 64-bit advisory lock key for the parts, distinct from
// other applications' keys in all likelihood.
func advisoryKey(parts ...string) int64 {
	h := sha256.Sum256([]byte("tap-postgres runner\x00" + strings.Join(parts, "\x00")))
	return int64(binary.BigEndian.Uint64(h[:8]))
}

func (s *pgStore) table(name string) string { return pgx.Identifier{s.schema, name}.Sanitize() }

// tables are the store's tables and their columns, created when missing;
// each is keyed by the integration, so integrations share them.
func (s *pgStore) tables() [][2]string {
	return [][2]string{
		{"state", `integration text PRIMARY KEY,
			state jsonb NOT NULL,
			committed_at timestamptz NOT NULL DEFAULT now()`},
		{"jobs", `integration text NOT NULL,
			id integer NOT NULL,
			record jsonb NOT NULL,
			PRIMARY KEY (integration, id)`},
		{"logs", `integration text NOT NULL,
			job_id integer NOT NULL,
			created_at timestamptz NOT NULL DEFAULT now(),
			PRIMARY KEY (integration, job_id)`},
		{"log_lines", `integration text NOT NULL,
			job_id integer NOT NULL,
			line integer NOT NULL,
			text text NOT NULL,
			PRIMARY KEY (integration, job_id, line),
			FOREIGN KEY (integration, job_id) REFERENCES ` + s.table("logs") + ` ON DELETE CASCADE`},
		{"naming", `integration text PRIMARY KEY,
			naming jsonb NOT NULL`},
		// The key is also the index by integration and time that reads
		// and drops samples.
		{"slot_samples", `integration text NOT NULL,
			at timestamptz NOT NULL,
			database text NOT NULL,
			slot text NOT NULL,
			sample jsonb NOT NULL,
			PRIMARY KEY (integration, at, database, slot)`},
	}
}

// setup creates what is missing, under a transaction-level advisory lock so
// that two machines starting at once do not race on the catalog. A store
// whose tables exist needs no privilege to create anything; one made by an
// earlier version gets only its missing tables, and when its role may not
// create slot_samples it works on without slot history (said by every
// read and write of it) rather than refusing every job.
func (s *pgStore) setup(ctx context.Context) error {
	tables := s.tables()
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t[0]
	}
	var present []string
	var schemaExists bool
	if err := s.conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = $1),
			coalesce((SELECT array_agg(tablename::text) FROM pg_catalog.pg_tables WHERE schemaname = $1 AND tablename = ANY($2)), '{}')`,
		s.schema, names).Scan(&schemaExists, &present); err != nil {
		return err
	}
	var missing [][2]string
	for _, t := range tables {
		if !slices.Contains(present, t[0]) {
			missing = append(missing, t)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, advisoryKey("setup", s.schema)); err != nil {
			return err
		}
		if !schemaExists {
			if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{s.schema}.Sanitize()); err != nil {
				return err
			}
		}
		for _, t := range missing {
			if _, err := tx.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+s.table(t[0])+" ("+t[1]+")"); err != nil {
				return err
			}
		}
		return nil
	})
	var pgErr *pgconn.PgError
	if len(missing) == 1 && missing[0][0] == "slot_samples" && errors.As(err, &pgErr) && pgErr.Code == "42501" {
		s.noSlotHistory = fmt.Errorf("slot history is off: the store has no table %s and its role may not create it (%s); as the store's owner: CREATE TABLE %s (%s)",
			s.table("slot_samples"), pgErr.Message, s.table("slot_samples"), strings.Join(strings.Fields(missing[0][1]), " "))
		return nil
	}
	return err
}

// do runs fn on the store's connection, reconnecting first if it broke,
// with a bounded context; errors are wrapped with what.
func (s *pgStore) do(what string, fn func(ctx context.Context, conn *pgx.Conn) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, pgCallTimeout)
	defer cancel()
	if s.conn == nil || s.conn.IsClosed() {
		conn, err := pgx.ConnectConfig(ctx, s.config)
		if err != nil {
			return fmt.Errorf("%s: reconnect: %w", what, err)
		}
		s.conn = conn
	}
	if err := fn(ctx, s.conn); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func (s *pgStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	var err error
	if s.lockConn != nil {
		err = s.lockConn.Close(ctx)
		s.lockConn = nil
	}
	if s.conn != nil {
		err = errors.Join(err, s.conn.Close(ctx))
		s.conn = nil
	}
	if err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// Lock takes a session-level advisory lock on a connection of its own, held
// until unlock: the server releases it when that session ends, however the
// holder dies. TCP keepalives make the server notice a vanished machine
// within about a minute and a half.
func (s *pgStore) Lock(ctx context.Context) (unlock func(), err error) {
	config := s.config.Copy()
	config.RuntimeParams["application_name"] = truncate("tap-postgres job lock: "+s.integration, 63)
	config.RuntimeParams["tcp_keepalives_idle"] = "60"
	config.RuntimeParams["tcp_keepalives_interval"] = "10"
	config.RuntimeParams["tcp_keepalives_count"] = "3"
	conn, err := pgx.ConnectConfig(ctx, config)
	if err != nil {
		return nil, fmt.Errorf("job lock: %w", err)
	}
	// An idle session timeout would end the session, and the lock with it,
	// while the job runs (the setting exists from PostgreSQL 14).
	_, err = conn.Exec(ctx, `SELECT set_config('idle_session_timeout', '0', false)
		WHERE current_setting('server_version_num')::int >= 140000`)
	var got bool
	if err == nil {
		err = conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, s.lockKey).Scan(&got)
	}
	if err != nil || !got {
		conn.Close(context.Background())
		if err != nil {
			return nil, fmt.Errorf("job lock: %w", err)
		}
		return nil, errLockHeld
	}
	s.mu.Lock()
	s.lockConn = conn
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
			defer cancel()
			// Closing the session would release the lock too; unlocking
			// first says so explicitly to a pooler-free server.
			_, _ = conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, s.lockKey)
			_ = conn.Close(ctx)
			if s.lockConn == conn {
				s.lockConn = nil
			}
		})
	}, nil
}

// Held checks that the lock's session is alive: the session holds the
// lock until unlock, and a session that ended released it.
func (s *pgStore) Held() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lockConn == nil || s.lockConn.IsClosed() {
		return errors.New("job lock lost: its session has ended")
	}
	ctx, cancel := context.WithTimeout(s.ctx, pgCallTimeout)
	defer cancel()
	if _, err := s.lockConn.Exec(ctx, "SELECT 1"); err != nil {
		return fmt.Errorf("job lock lost: %w", err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func (s *pgStore) State() (*singer.State, error) {
	var data []byte
	err := s.do("read committed state", func(ctx context.Context, conn *pgx.Conn) error {
		err := conn.QueryRow(ctx, "SELECT state FROM "+s.table("state")+" WHERE integration = $1", s.integration).Scan(&data)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if data == nil {
		return singer.NewState(), nil
	}
	return singer.ParseState(data)
}

// CommitState is one statement, so atomic and, committed synchronously,
// durable. While a job holds the lock it goes through the lock's session:
// a job whose session died (and whose lock another machine may now hold)
// gets an error instead of overwriting the newer job's state.
func (s *pgStore) CommitState(state json.RawMessage) error {
	query := "INSERT INTO " + s.table("state") + ` (integration, state, committed_at) VALUES ($1, $2, now())
		ON CONFLICT (integration) DO UPDATE SET state = EXCLUDED.state, committed_at = EXCLUDED.committed_at`
	return s.do("commit state", func(ctx context.Context, conn *pgx.Conn) error {
		if s.lockConn != nil {
			if s.lockConn.IsClosed() {
				return errors.New("the job lock's session has ended")
			}
			conn = s.lockConn
		}
		_, err := conn.Exec(ctx, query, s.integration, []byte(state))
		return err
	})
}

// NextJobID is one past the highest job number in the history or the logs,
// so that a job that crashed before it was recorded keeps its log.
func (s *pgStore) NextJobID() (int, error) {
	var last int
	err := s.do("number the job", func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, `SELECT greatest(
			(SELECT max(id) FROM `+s.table("jobs")+` WHERE integration = $1),
			(SELECT max(job_id) FROM `+s.table("logs")+` WHERE integration = $1), 0)`, s.integration).Scan(&last)
	})
	return last + 1, err
}

// AppendJob records a job as it starts and as it ends (a job recorded
// again replaces its row).
func (s *pgStore) AppendJob(j JobRecord) error {
	// jsonb refuses \u0000, which an error text could carry.
	j.Error = strings.ReplaceAll(j.Error, "\x00", "\uFFFD")
	record, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("record job: %w", err)
	}
	return s.do("record job", func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "INSERT INTO "+s.table("jobs")+` (integration, id, record) VALUES ($1, $2, $3)
			ON CONFLICT (integration, id) DO UPDATE SET record = EXCLUDED.record`, s.integration, j.ID, record)
		return err
	})
}

func (s *pgStore) Jobs() ([]JobRecord, error) {
	var jobs []JobRecord
	err := s.do("read job history", func(ctx context.Context, conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, "SELECT record FROM "+s.table("jobs")+" WHERE integration = $1 ORDER BY id", s.integration)
		if err != nil {
			return err
		}
		var data []byte
		_, err = pgx.ForEachRow(rows, []any{&data}, func() error {
			var j JobRecord
			if err := json.Unmarshal(data, &j); err != nil {
				return err
			}
			jobs = append(jobs, j)
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return jobs, nil
}

// CreateLog starts job id's extraction log, replacing any earlier one of
// that number. Each whole line written is inserted (and so durable) at
// once; a partial line waits for its newline or Close.
func (s *pgStore) CreateLog(id int) (io.WriteCloser, error) {
	err := s.do("extraction log", func(ctx context.Context, conn *pgx.Conn) error {
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "DELETE FROM "+s.table("logs")+" WHERE integration = $1 AND job_id = $2", s.integration, id); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO "+s.table("logs")+" (integration, job_id) VALUES ($1, $2)", s.integration, id)
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	return &pgLog{s: s, id: id}, nil
}

func (s *pgStore) AppendLog(id int) (io.WriteCloser, error) {
	var lines int
	err := s.do("extraction log", func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, "SELECT coalesce(max(line), 0) FROM "+s.table("log_lines")+" WHERE integration = $1 AND job_id = $2",
			s.integration, id).Scan(&lines)
	})
	if err != nil {
		return nil, err
	}
	return &pgLog{s: s, id: id, lines: lines}, nil
}

// pgLog writes one job's extraction log, a row per line.
type pgLog struct {
	s      *pgStore
	id     int
	buf    []byte // written but not yet stored: a partial line, or lines whose insert failed
	lines  int    // lines stored
	closed bool
}

// Write takes all of p; an error says that a line could not be stored yet
// (it stays buffered and is tried again by the next Write or Close).
func (w *pgLog) Write(p []byte) (int, error) {
	if w.closed {
		return 0, fmt.Errorf("extraction log of job %d: closed", w.id)
	}
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		if err := w.store(w.buf[:i]); err != nil {
			return len(p), err
		}
		w.buf = w.buf[i+1:]
	}
}

// Close stores a last partial line.
func (w *pgLog) Close() error {
	if w.closed {
		return nil
	}
	for len(w.buf) > 0 {
		line, rest, _ := bytes.Cut(w.buf, []byte{'\n'})
		if err := w.store(line); err != nil {
			return err
		}
		w.buf = rest
	}
	w.closed = true
	return nil
}

func (w *pgLog) store(line []byte) error {
	// A text column takes neither NUL nor invalid UTF-8.
	text := strings.ReplaceAll(strings.ToValidUTF8(string(line), "\uFFFD"), "\x00", "\uFFFD")
	err := w.s.do(fmt.Sprintf("extraction log of job %d", w.id), func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "INSERT INTO "+w.s.table("log_lines")+` (integration, job_id, line, text) VALUES ($1, $2, $3, $4)`,
			w.s.integration, w.id, w.lines+1, text)
		return err
	})
	if err == nil {
		w.lines++
	}
	return err
}

// ReadLog returns the log's lines, each ended by a newline.
func (s *pgStore) ReadLog(id int) ([]byte, error) {
	var found bool
	var out bytes.Buffer
	err := s.do(fmt.Sprintf("read extraction log of job %d", id), func(ctx context.Context, conn *pgx.Conn) error {
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM "+s.table("logs")+" WHERE integration = $1 AND job_id = $2)",
			s.integration, id).Scan(&found); err != nil || !found {
			return err
		}
		rows, err := conn.Query(ctx, "SELECT text FROM "+s.table("log_lines")+" WHERE integration = $1 AND job_id = $2 ORDER BY line",
			s.integration, id)
		if err != nil {
			return err
		}
		var line string
		_, err = pgx.ForEachRow(rows, []any{&line}, func() error {
			out.WriteString(line)
			out.WriteByte('\n')
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("no extraction log for job %d", id)
	}
	return out.Bytes(), nil
}

func (s *pgStore) Naming() (*Naming, error) {
	var data []byte
	err := s.do("read naming settings", func(ctx context.Context, conn *pgx.Conn) error {
		err := conn.QueryRow(ctx, "SELECT naming FROM "+s.table("naming")+" WHERE integration = $1", s.integration).Scan(&data)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	})
	if err != nil || data == nil {
		return nil, err
	}
	var n Naming
	if err := json.Unmarshal(data, &n); err != nil {
		return nil, fmt.Errorf("read naming settings: %w", err)
	}
	return &n, nil
}

func (s *pgStore) SaveNaming(n Naming) error {
	data, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("save naming settings: %w", err)
	}
	return s.do("save naming settings", func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "INSERT INTO "+s.table("naming")+` (integration, naming) VALUES ($1, $2)
			ON CONFLICT (integration) DO UPDATE SET naming = EXCLUDED.naming`, s.integration, data)
		return err
	})
}

// AppendSlotSamples inserts the samples and deletes the integration's
// samples older than slotHistory in one transaction; the index makes the
// delete cheap at every append. It goes through the store's connection,
// not the job lock's: serve samples while a job runs.
func (s *pgStore) AppendSlotSamples(samples []SlotSample) error {
	if s.noSlotHistory != nil {
		return s.noSlotHistory
	}
	samples, horizon := recentSamples(samples)
	if len(samples) == 0 {
		return nil
	}
	at := make([]time.Time, len(samples))
	databases := make([]string, len(samples))
	slots := make([]string, len(samples))
	records := make([]string, len(samples))
	for i, smp := range samples {
		record, err := json.Marshal(smp)
		if err != nil {
			return fmt.Errorf("record slot samples: %w", err)
		}
		at[i], databases[i], slots[i], records[i] = smp.At, smp.Database, smp.Slot, string(record)
	}
	return s.do("record slot samples", func(ctx context.Context, conn *pgx.Conn) error {
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "DELETE FROM "+s.table("slot_samples")+" WHERE integration = $1 AND at < $2", s.integration, horizon); err != nil {
				return err
			}
			// A sample of the same slot at the same instant is the same.
			_, err := tx.Exec(ctx, "INSERT INTO "+s.table("slot_samples")+` (integration, at, database, slot, sample)
				SELECT $1, u.at, u.database, u.slot, u.record::jsonb
				FROM unnest($2::timestamptz[], $3::text[], $4::text[], $5::text[]) AS u(at, database, slot, record)
				ON CONFLICT DO NOTHING`, s.integration, at, databases, slots, records)
			return err
		})
	})
}

func (s *pgStore) SlotSamples(since time.Time) ([]SlotSample, error) {
	if s.noSlotHistory != nil {
		return nil, s.noSlotHistory
	}
	var samples []SlotSample
	err := s.do("read slot samples", func(ctx context.Context, conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, "SELECT sample FROM "+s.table("slot_samples")+" WHERE integration = $1 AND at >= $2 ORDER BY at, database, slot",
			s.integration, since)
		if err != nil {
			return err
		}
		var data []byte
		_, err = pgx.ForEachRow(rows, []any{&data}, func() error {
			var smp SlotSample
			if err := json.Unmarshal(data, &smp); err != nil {
				return err
			}
			samples = append(samples, smp)
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return samples, nil
}
