package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tap-postgres/tap-postgres/internal/config"
	"github.com/tap-postgres/tap-postgres/internal/connect"
	"github.com/tap-postgres/tap-postgres/internal/discovery"
	"github.com/tap-postgres/tap-postgres/internal/logical"
	"github.com/tap-postgres/tap-postgres/internal/logical/pgoutput"
	"github.com/tap-postgres/tap-postgres/internal/singer"
)

// slotBusyWait bounds the wait for a slot still held by another process (a
// killed predecessor's walsender lingers a few seconds).
const slotBusyWait = 15 * time.Second

// Output plugins the tap decodes.
const (
	pluginPgoutput = "pgoutput"
	pluginWal2json = "wal2json"
)

// logDatabase is what the checks made before anything else found for one
// database's LOG_BASED streams.
type logDatabase struct {
	name  string
	plans []*streamPlan
	slot  logical.Slot
	// publication is what a pgoutput slot streams.
	publication string
	// findings are what the checks noticed beside the slot (the plugin
	// allow-list, keyless published tables): logged by a sync, printed by
	// --test.
	findings []finding
}

// finding is one thing a check noticed about a database, a warning or not.
type finding struct {
	warning bool
	text    string
}

func (ld *logDatabase) note(format string, args ...any) {
	ld.findings = append(ld.findings, finding{text: fmt.Sprintf(format, args...)})
}

func (ld *logDatabase) warn(format string, args ...any) {
	ld.findings = append(ld.findings, finding{warning: true, text: fmt.Sprintf(format, args...)})
}

// prepareLogBased refuses what LOG_BASED cannot do and checks each
// database's slot, before any message is written.
func (e *Engine) prepareLogBased(ctx context.Context, plans []*streamPlan, state *singer.State) ([]*logDatabase, error) {
	var logPlans []*streamPlan
	var problems []error
	for _, p := range plans {
		if p.method != MethodLogBased {
			continue
		}
		if p.live.IsView() {
			problems = append(problems, fmt.Errorf("stream %s is a view: LOG_BASED cannot replicate views; use FULL_TABLE or INCREMENTAL", p.id))
			continue
		}
		if len(p.live.PrimaryKey) == 0 && !p.live.ReplicaIdentityFull {
			e.log.Warn(fmt.Sprintf("stream %s has no primary key and no REPLICA IDENTITY FULL: its updates and deletes cannot be captured (ALTER TABLE %s REPLICA IDENTITY FULL)",
				p.id, pgx.Identifier{p.schema, p.table}.Sanitize()))
		}
		logPlans = append(logPlans, p)
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	var dbs []*logDatabase
	for _, db := range databasesOf(logPlans) {
		ld := &logDatabase{name: db, plans: plansIn(logPlans, db)}
		slot, err := e.checkSlot(ctx, ld, state)
		if err != nil {
			return nil, err
		}
		for _, f := range ld.findings {
			if f.warning {
				e.log.Warn(fmt.Sprintf("database %q: %s", ld.name, f.text))
			} else {
				e.log.Info(fmt.Sprintf("database %q: %s", ld.name, f.text))
			}
		}
		ld.slot = slot
		ids := make([]string, len(ld.plans))
		for i, p := range ld.plans {
			ids[i] = p.id
		}
		e.slots = append(e.slots, slotHealth(ld.name, ids, slot, state))
		dbs = append(dbs, ld)
	}
	return dbs, nil
}

// SlotHealth is a slot as a sync found it before streaming, or as
// ReadSlotHealth found it since.
type SlotHealth struct {
	Database string `json:"database"`
	Slot     string `json:"slot"`
	Plugin   string `json:"plugin"`
	// Active says a process was streaming from the slot.
	Active bool `json:"active"`
	// WALStatus is pg_replication_slots.wal_status (PostgreSQL 13+), or
	// SlotMissing for a slot ReadSlotHealth no longer found.
	WALStatus string `json:"wal_status,omitempty"`
	// SafeWALSize is pg_replication_slots.safe_wal_size, in bytes, where
	// the server gives it.
	SafeWALSize *int64 `json:"safe_wal_size_bytes,omitempty"`
	// WALHeld is the WAL the slot kept from removal, in bytes.
	WALHeld int64 `json:"wal_held_bytes"`
	// Lag is how far the committed state is behind the end of WAL, in
	// bytes (slotLag).
	Lag int64 `json:"lag_bytes"`
	// Streams are the tap_stream_ids of the database's LOG_BASED streams.
	Streams []string `json:"streams,omitempty"`
}

// SlotMissing is the WALStatus of a slot that no longer exists.
const SlotMissing = "missing"

// Slots are the slots the last Sync streamed from, as it found them.
func (e *Engine) Slots() []SlotHealth { return e.slots }

// slotHealth is what SlotHealth says of slot, read for the database's
// LOG_BASED streams with the committed state.
func slotHealth(database string, streams []string, slot logical.Slot, state *singer.State) SlotHealth {
	return SlotHealth{
		Database:    database,
		Slot:        slot.Name,
		Plugin:      slot.Plugin,
		Active:      slot.ActivePID != 0,
		WALStatus:   slot.WALStatus,
		SafeWALSize: slot.SafeWALSize,
		WALHeld:     slot.WALHeld,
		Lag:         slotLag(slot, streams, state),
		Streams:     streams,
	}
}

// slotLag is the WAL between the committed position of the streams and
// the end of WAL when the slot was read: what the next run has to read.
// The committed position is the smallest lsn bookmark among the streams
// (the next run streams from there), or the slot's confirmed position when
// none has one yet (nothing committed to go back to). A position past the
// end (a standby replaying behind what was read from it) is no lag.
func slotLag(slot logical.Slot, streams []string, state *singer.State) int64 {
	from := uint64(slot.ConfirmedFlush)
	if state != nil {
		var smallest uint64
		for _, id := range streams {
			if b := state.Bookmarks[id]; b != nil && b.LSN != 0 && (smallest == 0 || b.LSN < smallest) {
				smallest = b.LSN
			}
		}
		if smallest != 0 {
			from = smallest
		}
	}
	if uint64(slot.WALEnd) <= from {
		return 0
	}
	return int64(uint64(slot.WALEnd) - from)
}

// ReadSlotHealth reads the known slots again outside a sync, as a runner
// samples them between jobs: Database, Plugin and Streams stay as known,
// Lag is measured against state (the committed state). A slot that no
// longer exists comes back with WALStatus SlotMissing and nothing held,
// so that its disappearance is seen; a database that cannot be read is
// left out and named in the error, the others' slots still returned.
func ReadSlotHealth(ctx context.Context, cfg config.Config, known []SlotHealth, state *singer.State, log *slog.Logger) ([]SlotHealth, error) {
	connector := connect.New(cfg, log)
	defer connector.Close()
	var databases []string
	for _, k := range known {
		if !slices.Contains(databases, k.Database) {
			databases = append(databases, k.Database)
		}
	}
	var out []SlotHealth
	var problems []error
	for _, db := range databases {
		var names []string
		for _, k := range known {
			if k.Database == db {
				names = append(names, k.Slot)
			}
		}
		slots, err := readSlots(ctx, connector, db, names)
		if err != nil {
			problems = append(problems, connect.WithHint(err))
			continue
		}
		for _, k := range known {
			if k.Database != db {
				continue
			}
			i := slices.IndexFunc(slots, func(s logical.Slot) bool { return s.Name == k.Slot })
			if i < 0 {
				out = append(out, SlotHealth{Database: db, Slot: k.Slot, Plugin: k.Plugin, WALStatus: SlotMissing, Streams: k.Streams})
				continue
			}
			out = append(out, slotHealth(db, k.Streams, slots[i], state))
		}
	}
	return out, errors.Join(problems...)
}

// readSlots reads the named slots through a connection to database db of
// its own.
func readSlots(ctx context.Context, connector *connect.Connector, db string, names []string) ([]logical.Slot, error) {
	conn, err := connector.Connect(ctx, db)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	slots, err := logical.Slots(ctx, conn, names)
	if err != nil {
		return nil, fmt.Errorf("database %q: %w", db, err)
	}
	return slots, nil
}

// standbyCanDecode refuses a standby before PostgreSQL 16, which cannot
// decode, and notes one that can.
func standbyCanDecode(ctx context.Context, conn *pgx.Conn, ld *logDatabase) error {
	var recovering bool
	var version int
	if err := conn.QueryRow(ctx, `SELECT pg_is_in_recovery(), current_setting('server_version_num')::int`).Scan(&recovering, &version); err != nil {
		return fmt.Errorf("database %q: is the server a standby: %w", ld.name, err)
	}
	switch {
	case !recovering:
		return nil
	case version < 160000:
		return fmt.Errorf("database %q: the server is a standby (in recovery), and PostgreSQL %d cannot decode changes on a standby (16 and later can): point the LOG_BASED streams at the primary, or use a standby of PostgreSQL 16 or later",
			ld.name, version/10000)
	}
	ld.note("the server is a standby: the slot and its publication (created on the primary) are read here; a new slot waits for the primary's next running-transactions record (every 15 s while it is busy; SELECT pg_log_standby_snapshot() on the primary writes one now)")
	return nil
}

// checkSlot finds the database's slot and makes sure streaming from it can
// lose nothing: it exists with a plugin the tap decodes and the server
// allows, its publication (pgoutput) sends every change of every selected
// table, no other process holds it, and it is not confirmed past any
// stream's bookmark.
func (e *Engine) checkSlot(ctx context.Context, ld *logDatabase, state *singer.State) (logical.Slot, error) {
	names := logical.SlotNames(e.cfg.SlotName, ld.name)
	if len(names) == 0 {
		return logical.Slot{}, fmt.Errorf("database %q: no usable slot name (slot names allow only a-z, 0-9 and _); set slot_name in the config", ld.name)
	}
	conn, err := e.conn.Connect(ctx, ld.name)
	if err != nil {
		return logical.Slot{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := standbyCanDecode(ctx, conn, ld); err != nil {
		return logical.Slot{}, err
	}
	allow, err := logical.ReadPluginAllowList(ctx, conn)
	if err != nil {
		return logical.Slot{}, fmt.Errorf("database %q: %w", ld.name, err)
	}
	switch {
	case !allow.Known:
		ld.note("the server has no output_plugin_libraries: every installed plugin is allowed")
	case allow.Readable:
		ld.note("output_plugin_libraries = '%s'", allow.Value)
	default:
		ld.note("output_plugin_libraries cannot be read by this role (superuser or pg_read_all_settings only)")
	}
	deadline := e.clock().Add(slotBusyWait)
	for {
		slots, err := logical.Slots(ctx, conn, names)
		if err != nil {
			return logical.Slot{}, fmt.Errorf("database %q: %w", ld.name, err)
		}
		var usable *logical.Slot
		var unusable []string
		for i, s := range slots {
			switch {
			case s.Plugin != pluginWal2json && s.Plugin != pluginPgoutput:
				unusable = append(unusable, fmt.Sprintf("%s uses plugin %q; the tap reads pgoutput and wal2json", s.Name, s.Plugin))
			case s.Database != ld.name:
				unusable = append(unusable, fmt.Sprintf("%s belongs to database %q", s.Name, s.Database))
			default:
				usable = &slots[i]
			}
			if usable != nil {
				break
			}
		}
		if usable == nil {
			msg := fmt.Sprintf("database %q has no logical replication slot for LOG_BASED streams: tried %s", ld.name, strings.Join(names, ", "))
			if len(unusable) > 0 {
				msg += " (" + strings.Join(unusable, "; ") + ")"
			}
			pub := pgoutput.PublicationName(e.cfg.PublicationName, names[0], ld.name)
			wal2jsonNote := ""
			if allow.Readable && !allow.Allows(pluginWal2json) {
				wal2jsonNote = fmt.Sprintf(" (which this server allows only once output_plugin_libraries lists it; it is '%s')", allow.Value)
			}
			return logical.Slot{}, fmt.Errorf("%s; create one with pgoutput, which every server allows: %s SELECT * FROM pg_create_logical_replication_slot('%s', 'pgoutput'); or with wal2json%s: SELECT * FROM pg_create_logical_replication_slot('%s', 'wal2json');",
				msg, createPublication(pub, ld.plans), names[0], wal2jsonNote, names[0])
		}
		if usable.ActivePID == 0 {
			for _, p := range ld.plans {
				if lsn := state.Bookmark(p.id).LSN; lsn != 0 && uint64(usable.ConfirmedFlush) > lsn {
					return logical.Slot{}, fmt.Errorf("slot %s is already confirmed to %s, past stream %s's bookmark %s: the changes in between are gone from the slot; reset that stream (remove its bookmark) to copy it again",
						usable.Name, usable.ConfirmedFlush, p.id, logical.LSN(lsn))
				}
			}
			if err := e.checkSlotHealth(ld, usable); err != nil {
				return logical.Slot{}, err
			}
			if err := e.checkPlugin(ctx, conn, ld, usable, allow); err != nil {
				return logical.Slot{}, err
			}
			e.log.Info(fmt.Sprintf("database %q: using slot %s (%s, confirmed to %s)", ld.name, usable.Name, usable.Plugin, usable.ConfirmedFlush))
			return *usable, nil
		}
		if !e.clock().Before(deadline) {
			return logical.Slot{}, fmt.Errorf("slot %s is in use by another process (PID %d); one slot can serve only one consumer, and two consumers lose changes",
				usable.Name, usable.ActivePID)
		}
		e.log.Info(fmt.Sprintf("slot %s is in use by PID %d; waiting for it to be released", usable.Name, usable.ActivePID))
		select {
		case <-ctx.Done():
			return logical.Slot{}, context.Cause(ctx)
		case <-time.After(time.Second):
		}
	}
}

// checkSlotHealth refuses a slot that lost WAL it needs, and warns of one
// that may lose it or holds more than slot_wal_warn_bytes: the slot that
// keeps WAL until the source's disk fills is how a CDC pipeline hurts
// production.
func (e *Engine) checkSlotHealth(ld *logDatabase, slot *logical.Slot) error {
	switch slot.WALStatus {
	case "lost":
		var ids []string
		for _, p := range ld.plans {
			ids = append(ids, p.id)
		}
		return fmt.Errorf("database %q: slot %s has lost WAL it needs (wal_status lost: max_slot_wal_keep_size let the server remove it), so the changes since its position are gone. "+
			"Recreate the slot: SELECT pg_drop_replication_slot('%s'); SELECT * FROM pg_create_logical_replication_slot('%s', '%s'); then reset its LOG_BASED streams (%s) so that they are copied again",
			ld.name, slot.Name, slot.Name, slot.Name, slot.Plugin, strings.Join(ids, ", "))
	case "unreserved":
		ld.warn("slot %s is unreserved: it holds more WAL than max_slot_wal_keep_size and will lose some at the next checkpoint unless this run moves it on", slot.Name)
	}
	if limit := int64(e.cfg.SlotWALWarnBytes); limit > 0 && slot.WALHeld > limit {
		ld.warn("slot %s holds %d bytes of WAL (%.1f GiB), more than slot_wal_warn_bytes (%d): the server keeps it until the slot moves on", slot.Name, slot.WALHeld, float64(slot.WALHeld)/(1<<30), limit)
	}
	return nil
}

// checkPlugin makes sure the slot's plugin can stream every selected
// change: wal2json must be allowed by output_plugin_libraries, pgoutput's
// publication must hold the selected tables and every kind of change.
func (e *Engine) checkPlugin(ctx context.Context, conn *pgx.Conn, ld *logDatabase, slot *logical.Slot, allow logical.PluginAllowList) error {
	if slot.Plugin == pluginPgoutput {
		return e.checkPublication(ctx, conn, ld, slot)
	}
	if !allow.Known {
		return nil
	}
	if allow.Readable {
		if allow.Allows(pluginWal2json) {
			return nil
		}
		return pluginRefused(ld, slot, allow, fmt.Sprintf("output_plugin_libraries is '%s'", allow.Value))
	}
	err := logical.ProbePlugin(ctx, conn, slot.Name)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		return pluginRefused(ld, slot, allow, connect.WithHint(err).Error())
	}
	if err != nil {
		return fmt.Errorf("database %q: %w", ld.name, err)
	}
	return nil
}

// pluginRefused explains a wal2json slot the server will not decode, and
// both ways out.
func pluginRefused(ld *logDatabase, slot *logical.Slot, allow logical.PluginAllowList, why string) error {
	// Items holding commas or blanks are the one-string trap, no plugin.
	var items []string
	for _, item := range allow.Items {
		if item != "" && !strings.ContainsAny(item, ", \t") {
			items = append(items, item)
		}
	}
	if len(items) == 0 {
		items = []string{pluginPgoutput, "test_decoding"}
	}
	var quoted []string
	for _, item := range append(items, pluginWal2json) {
		quoted = append(quoted, "'"+strings.ReplaceAll(item, "'", "''")+"'")
	}
	return fmt.Errorf("database %q: slot %s uses wal2json, which this server does not allow as an output plugin (%s; PostgreSQL's November 2026 minor releases load only the plugins output_plugin_libraries lists). "+
		"Either allow wal2json, as a superuser: ALTER SYSTEM SET output_plugin_libraries = %s; SELECT pg_reload_conf(); "+
		"(list the items separately: one quoted string holding commas is a single item and allows nothing; on RDS/Aurora set it in the DB parameter group), "+
		"or use pgoutput, which every server allows: %s SELECT pg_drop_replication_slot('%s'); SELECT * FROM pg_create_logical_replication_slot('%s', 'pgoutput'); then reset the LOG_BASED streams of database %q (the new slot starts now)",
		ld.name, slot.Name, why, strings.Join(quoted, ", "), createPublication(slot.Name, ld.plans), slot.Name, slot.Name, ld.name)
}

// createPublication is the statement that publishes the selected tables.
// It leaves publish_via_partition_root off: a partitioned table's changes
// then arrive under its partitions' names (the tap routes them to the
// root), and so does a TRUNCATE of one partition, which PostgreSQL does not
// publish at all through the root.
func createPublication(name string, plans []*streamPlan) string {
	var tables []string
	for _, p := range plans {
		tables = append(tables, pgx.Identifier{p.schema, p.table}.Sanitize())
	}
	return fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s;", pgx.Identifier{name}.Sanitize(), strings.Join(tables, ", "))
}

// checkPublication makes sure a pgoutput slot's publication sends every
// change of every selected table.
func (e *Engine) checkPublication(ctx context.Context, conn *pgx.Conn, ld *logDatabase, slot *logical.Slot) error {
	ld.publication = pgoutput.PublicationName(e.cfg.PublicationName, slot.Name, ld.name)
	pub, err := pgoutput.ReadPublication(ctx, conn, ld.publication)
	if err != nil {
		return fmt.Errorf("database %q: %w", ld.name, err)
	}
	if pub == nil {
		return fmt.Errorf("database %q: slot %s uses pgoutput, which streams a publication, and publication %s does not exist (set publication_name, or create it): %s",
			ld.name, slot.Name, pgx.Identifier{ld.publication}.Sanitize(), createPublication(ld.publication, ld.plans))
	}
	var tables []pgoutput.Table
	for _, p := range ld.plans {
		tables = append(tables, pgoutput.Table{Schema: p.schema, Name: p.table, Partitioned: p.live.Kind == discovery.KindPartitionedTable})
	}
	missing, err := pub.Missing(ctx, conn, tables)
	if err != nil {
		return fmt.Errorf("database %q: %w", ld.name, err)
	}
	var problems []error
	if len(missing) > 0 {
		var names []string
		for _, t := range missing {
			names = append(names, pgx.Identifier{t.Schema, t.Name}.Sanitize())
		}
		problems = append(problems, fmt.Errorf("database %q: publication %s does not publish %s, so its changes would never arrive: ALTER PUBLICATION %s ADD TABLE %s;",
			ld.name, pgx.Identifier{pub.Name}.Sanitize(), strings.Join(names, ", "), pgx.Identifier{pub.Name}.Sanitize(), strings.Join(names, ", ")))
	}
	for _, p := range ld.plans {
		// Generated columns are not published before PostgreSQL 18 (nor
		// after it without publish_generated_columns): the stream re-reads
		// them, no column list hides them.
		var published []string
		for _, c := range p.columns {
			if !c.Generated {
				published = append(published, c.Name)
			}
		}
		restrictions, err := pub.Restrictions(ctx, conn, pgoutput.Table{Schema: p.schema, Name: p.table, Partitioned: p.live.Kind == discovery.KindPartitionedTable}, published)
		if err != nil {
			return fmt.Errorf("database %q: %w", ld.name, err)
		}
		for _, r := range restrictions {
			table := pgx.Identifier{r.Schema, r.Name}.Sanitize()
			var what []string
			if r.RowFilter != "" {
				what = append(what, "only the rows WHERE "+r.RowFilter+" (rows outside it, and updates that move rows out of it, would never arrive)")
			}
			if r.Hidden != nil {
				what = append(what, "without the selected columns "+strings.Join(r.Hidden, ", ")+" (records would lack them)")
			}
			problems = append(problems, fmt.Errorf("database %q: publication %s publishes %s %s; publish the whole table: ALTER PUBLICATION %s DROP TABLE %s; ALTER PUBLICATION %s ADD TABLE %s;",
				ld.name, pgx.Identifier{pub.Name}.Sanitize(), table, strings.Join(what, " and "),
				pgx.Identifier{pub.Name}.Sanitize(), table, pgx.Identifier{pub.Name}.Sanitize(), table))
		}
	}
	if lacking := pub.Unpublished(); len(lacking) > 0 {
		problems = append(problems, fmt.Errorf("database %q: publication %s does not publish %s, which would be lost without a trace: ALTER PUBLICATION %s SET (publish = 'insert, update, delete, truncate');",
			ld.name, pgx.Identifier{pub.Name}.Sanitize(), strings.Join(lacking, ", "), pgx.Identifier{pub.Name}.Sanitize()))
	}
	if err := errors.Join(problems...); err != nil {
		return err
	}
	keyless, err := pub.KeylessTables(ctx, conn)
	if err != nil {
		return fmt.Errorf("database %q: %w", ld.name, err)
	}
	for _, t := range keyless {
		name := pgx.Identifier{t[0], t[1]}.Sanitize()
		ld.warn("table %s is in publication %s but has no primary key or replica identity: PostgreSQL refuses UPDATE and DELETE on it while the publication publishes them; run ALTER TABLE %s REPLICA IDENTITY FULL;",
			name, pgx.Identifier{pub.Name}.Sanitize(), name)
	}
	if pub.ViaRoot {
		for _, p := range ld.plans {
			if p.live.Kind != discovery.KindPartitionedTable {
				continue
			}
			ld.warn("publication %s publishes partitions through their root, and PostgreSQL then does not publish a TRUNCATE of one partition of %s: its rows would stay in the target until the stream is reset; ALTER PUBLICATION %s SET (publish_via_partition_root = false); sends it",
				pgx.Identifier{pub.Name}.Sanitize(), pgx.Identifier{p.schema, p.table}.Sanitize(), pgx.Identifier{pub.Name}.Sanitize())
		}
	}
	ld.note("publication %s publishes every selected table", pgx.Identifier{pub.Name}.Sanitize())
	return nil
}

// copyLogBased runs the first-run copy of a LOG_BASED stream, or resumes an
// interrupted one. A new copy reads in the exported snapshot of a temporary
// slot and bookmarks that slot's consistent point: exactly the transactions
// committed before it are in the copy, so streaming from it loses nothing.
func (e *Engine) copyLogBased(ctx context.Context, p *streamPlan, sk *sink) error {
	var bm singer.Bookmark
	_ = sk.do(func(_ *singer.Writer, st *singer.State) error {
		bm = *st.Bookmark(p.id)
		return nil
	})
	switch {
	case bm.LSN != 0 && bm.ReferenceCopyInterrupted:
		// The reference tap stopped mid-copy: copy again from a fresh
		// snapshot; streaming from its older lsn covers the time between.
		e.log.Info(fmt.Sprintf("stream %s: the reference tap's copy was interrupted (xmin bookmark); copying the table again", p.id))
		_ = sk.do(func(_ *singer.Writer, st *singer.State) error {
			st.Bookmark(p.id).LastPKFetched = nil
			return nil
		})
		return e.copyStream(ctx, p, sk, "")
	case bm.LSN != 0 && (bm.CopyInProgress || bm.LastPKFetched != nil):
		// An interrupted copy resumes after its last key (or starts over
		// when it had none yet) and keeps its lsn: streaming from there
		// covers everything the new snapshot might miss.
		return e.copyStream(ctx, p, sk, "")
	case logCopyDone(&bm):
		return nil
	}
	cc, err := e.conn.ConnConfig(p.database)
	if err != nil {
		return err
	}
	e.log.Info(fmt.Sprintf("stream %s: taking a snapshot for the initial copy (waits for transactions running now to finish)", p.id))
	snap, err := logical.CreateSnapshotSlot(ctx, &cc.Config, fmt.Sprintf("tap_snapshot_%d", e.clock().UnixNano()))
	if err != nil {
		return fmt.Errorf("stream %s: %w", p.id, err)
	}
	defer snap.Close(context.WithoutCancel(ctx))
	_ = sk.do(func(_ *singer.Writer, st *singer.State) error {
		b := st.Bookmark(p.id)
		b.LSN = uint64(snap.ConsistentPoint)
		b.LastPKFetched = nil
		return nil
	})
	return e.copyStream(ctx, p, sk, snap.Snapshot)
}
