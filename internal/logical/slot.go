package logical

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// LSN is a WAL position.
type LSN = pglogrepl.LSN

// Slot is a logical replication slot as pg_replication_slots shows it.
type Slot struct {
	Name     string
	Plugin   string
	Database string
	// ActivePID is the backend streaming from the slot, 0 when idle.
	ActivePID      int32
	ConfirmedFlush LSN
	// WALStatus is pg_replication_slots.wal_status (PostgreSQL 13+):
	// reserved, extended, unreserved or lost; "" before 13.
	WALStatus string
	// WALHeld is how many bytes of WAL the slot keeps the server from
	// removing: from its restart_lsn to the end of WAL.
	WALHeld int64
	// SafeWALSize is pg_replication_slots.safe_wal_size (PostgreSQL 13+):
	// the WAL that can still be written before the slot is in danger of
	// losing what it needs; nil when the server does not say (before 13,
	// or no max_slot_wal_keep_size).
	SafeWALSize *int64
	// WALEnd is the end of WAL (walEnd) when the slot was read, so that a
	// lag is measured against the same position as WALHeld.
	WALEnd LSN
}

// validSlotName is what PostgreSQL accepts as a slot name.
func validSlotName(n string) bool {
	if n == "" || len(n) > 63 {
		return false
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// SlotNames lists the slot names to try for a database, in order: the
// configured name ({dbname} replaced) alone when set, else stitch_<db> and
// stitch. Names PostgreSQL cannot hold are left out.
func SlotNames(configured, db string) []string {
	var names []string
	if configured != "" {
		names = []string{strings.ReplaceAll(configured, "{dbname}", db)}
	} else {
		names = []string{"stitch_" + db, "stitch"}
	}
	var valid []string
	for _, n := range names {
		if validSlotName(n) {
			valid = append(valid, n)
		}
	}
	return valid
}

// walEnd is the end of the server's WAL. A standby (decoding there from
// PostgreSQL 16) has no position of its own to write at, and
// pg_current_wal_lsn() fails there: where it has replayed to is its end.
const walEnd = `CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END`

// Slots returns the existing slots among names, in the order of names.
func Slots(ctx context.Context, conn *pgx.Conn, names []string) ([]Slot, error) {
	// to_jsonb reads wal_status and safe_wal_size where the server has
	// them (13+). The end of WAL is read once, so that WALHeld and WALEnd
	// agree while the server writes.
	rows, err := conn.Query(ctx, `
		SELECT slot_name, coalesce(plugin, ''), coalesce(database, ''), coalesce(active_pid, 0),
		       coalesce(confirmed_flush_lsn, '0/0')::text, coalesce(to_jsonb(s)->>'wal_status', ''),
		       coalesce(pg_wal_lsn_diff(e.lsn, restart_lsn), 0)::bigint,
		       (to_jsonb(s)->>'safe_wal_size')::bigint, coalesce(e.lsn, '0/0')::text
		FROM pg_replication_slots s, (SELECT `+walEnd+` AS lsn) e
		WHERE slot_name = ANY($1::text[])`, names)
	if err != nil {
		return nil, fmt.Errorf("read pg_replication_slots: %w", err)
	}
	found := map[string]Slot{}
	for rows.Next() {
		var s Slot
		var confirmed, end string
		if err := rows.Scan(&s.Name, &s.Plugin, &s.Database, &s.ActivePID, &confirmed, &s.WALStatus, &s.WALHeld, &s.SafeWALSize, &end); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read pg_replication_slots: %w", err)
		}
		if s.ConfirmedFlush, err = pglogrepl.ParseLSN(confirmed); err != nil {
			rows.Close()
			return nil, fmt.Errorf("slot %s confirmed_flush_lsn %q: %w", s.Name, confirmed, err)
		}
		if s.WALEnd, err = pglogrepl.ParseLSN(end); err != nil {
			rows.Close()
			return nil, fmt.Errorf("end of WAL %q: %w", end, err)
		}
		found[s.Name] = s
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read pg_replication_slots: %w", err)
	}
	var out []Slot
	for _, n := range names {
		if s, ok := found[n]; ok {
			out = append(out, s)
		}
	}
	return out, nil
}

// CurrentLSN is the server's current WAL write position.
func CurrentLSN(ctx context.Context, conn *pgx.Conn) (LSN, error) {
	var text string
	if err := conn.QueryRow(ctx, `SELECT (`+walEnd+`)::text`).Scan(&text); err != nil {
		return 0, fmt.Errorf("read current WAL position: %w", err)
	}
	return pglogrepl.ParseLSN(text)
}

// SnapshotSlot is a temporary slot created only for its exported snapshot:
// a copy read in that snapshot holds exactly the transactions that committed
// before ConsistentPoint, so streaming from ConsistentPoint neither misses nor
// needs anything else.
type SnapshotSlot struct {
	conn            *pgconn.PgConn
	Snapshot        string
	ConsistentPoint LSN
}

// CreateSnapshotSlot opens a replication connection and creates the
// temporary slot (plugin pgoutput, always present). It waits for
// transactions running at that moment to finish. The snapshot stays
// importable until Close, and the caller must import it before Close.
func CreateSnapshotSlot(ctx context.Context, cfg *pgconn.Config, name string) (*SnapshotSlot, error) {
	conn, err := pgconn.ConnectConfig(ctx, replicationConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("open replication connection: %w", err)
	}
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, name, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Temporary: true, SnapshotAction: "EXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication})
	if err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("create temporary slot %s: %w", name, err)
	}
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("temporary slot consistent point %q: %w", res.ConsistentPoint, err)
	}
	return &SnapshotSlot{conn: conn, Snapshot: res.SnapshotName, ConsistentPoint: lsn}, nil
}

// Close drops the temporary slot with its connection.
func (s *SnapshotSlot) Close(ctx context.Context) error { return s.conn.Close(ctx) }

// replicationConfig is cfg in logical replication mode (simple protocol
// only; catalog queries go through a normal connection).
func replicationConfig(cfg *pgconn.Config) *pgconn.Config {
	c := cfg.Copy()
	c.RuntimeParams["replication"] = "database"
	return c
}
