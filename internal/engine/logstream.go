package engine

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tap-postgres/tap-postgres/internal/connect"
	"github.com/tap-postgres/tap-postgres/internal/discovery"
	"github.com/tap-postgres/tap-postgres/internal/logical"
	"github.com/tap-postgres/tap-postgres/internal/logical/pgoutput"
	"github.com/tap-postgres/tap-postgres/internal/logical/wal2json"
	"github.com/tap-postgres/tap-postgres/internal/singer"
	"github.com/tap-postgres/tap-postgres/internal/types"
)

// receiveWait is how long one receive waits before stop conditions are
// checked again.
const receiveWait = time.Second

// stateInterval is the longest a run streams changes without a STATE.
const stateInterval = 5 * time.Second

// logStream is one selected stream as the change stream feeds it.
type logStream struct {
	p   *streamPlan
	bm  *singer.Bookmark
	enc *singer.RecordEncoder
	// index maps synced column names to positions in p.columns.
	index map[string]int
	// ignored maps columns that are not synced (deselected, unsupported) to
	// their type, to tell them from columns added since.
	ignored map[string]ignoredType
	keyCols []int
	warned  []types.Issue
	// vals is per-change scratch: the value of each synced column.
	vals []*logical.Column
	// liveColumns caches, per transaction, which columns the table has
	// now: an update lacking a column either left its TOAST value unchanged
	// (the column exists) or follows a DROP COLUMN.
	liveColumns map[string]bool
	// extractedAt is the time_extracted the encoder currently carries.
	extractedAt time.Time
	metrics     *metrics
	// recopy is set when a change cannot be carried by the log (a truncated
	// partition): the bookmark stays put and is wiped when the run ends.
	recopy bool
	// changes counts what the stream sent, by kind.
	changes ChangeCounts
}

// logRun streams one database's slot into its LOG_BASED streams.
type logRun struct {
	e       *Engine
	ld      *logDatabase
	state   *singer.State
	catalog *singer.Catalog
	out     *singer.Writer
	conn    *pgx.Conn // normal connection: catalog lookups and TOAST re-reads
	streams map[[2]string]*logStream
	// types caches the types changes name, resolved to Types.
	types map[typeKey]resolvedType
	// partitionSchemas hold selected partitioned roots: changes on tables
	// there that no stream names may come from a partition created since.
	partitionSchemas map[string]bool
	unrouted         map[[2]string]bool
	// pending holds records back while unchanged TOAST values are re-read.
	pending []pendingRecord
	buf     []byte
	// commitTime is the current transaction's commit time as JSON, made by
	// timestamp, the formatter of timestamptz values.
	commitTime []byte
	timestamp  types.Type
	// txTime is when the current transaction arrived: its time_extracted.
	txTime time.Time
	// scratch holds the commit time's text on its way to JSON.
	scratch []byte
	inTx    bool
	// txBegin is where the current transaction begins, lastCommit where
	// the last one received whole ends: what a failing stream points at.
	txBegin, lastCommit logical.LSN
	sinceState          int
	lastState           time.Time
	emitted             int64
}

// streamDatabase streams the slot of one database from the smallest bookmark
// of its streams, confirming only what the state given at start held, until
// a stop condition is met between transactions.
func (e *Engine) streamDatabase(ctx context.Context, ld *logDatabase, catalog *singer.Catalog, state, startState *singer.State, out *singer.Writer, runStart time.Time) error {
	conn, err := e.conn.Connect(ctx, ld.name)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	r := e.newLogRun(ld, catalog, state, out, conn)
	defer e.keepChanges(r.streams)
	var start, ack uint64
	var tables []wal2json.Table
	toRoot := map[[2]string]*logStream{}
	for _, p := range ld.plans {
		ls, err := r.newLogStream(p)
		if err != nil {
			return err
		}
		r.streams[[2]string{p.schema, p.table}] = ls
		tables = append(tables, wal2json.Table{Schema: p.schema, Name: p.table})
		if p.live.Kind == discovery.KindPartitionedTable {
			parts, err := partitionsOf(ctx, conn, p)
			if err != nil {
				return err
			}
			for _, part := range parts {
				toRoot[part] = ls
			}
			// Partitions created during the run are in the root's schema
			// too: take the whole schema, and route by the catalog.
			tables = append(tables, wal2json.Table{Schema: p.schema, WholeSchema: true})
			r.partitionSchemas[p.schema] = true
		}
		if lsn := ls.bm.LSN; start == 0 || lsn < start {
			start = lsn
		}
		if lsn := startState.Bookmark(p.id).LSN; lsn != 0 && (ack == 0 || lsn < ack) {
			ack = lsn
		}
	}
	// Changes on a partition go to its selected root (README, "LOG_BASED"), even when the
	// partition is selected on its own too.
	for part, ls := range toRoot {
		r.streams[part] = ls
	}
	end, err := logical.CurrentLSN(ctx, conn)
	if err != nil {
		return err
	}
	cfg, err := e.conn.ConnConfig(ld.name)
	if err != nil {
		return err
	}
	// Reading goes on after a stop signal until the current transaction's
	// commit: the stream's context is not the run's.
	io := context.WithoutCancel(ctx)
	sc := logical.StreamConfig{Slot: ld.slot.Name, Start: logical.LSN(start), Ack: logical.LSN(ack), Clock: e.clock}
	src, err := e.openSource(io, conn, &cfg.Config, ld, sc, tables)
	if err != nil {
		return fmt.Errorf("database %q: %w", ld.name, err)
	}
	defer src.Close(io)
	e.log.Info(fmt.Sprintf("database %q: streaming slot %s (%s) from %s (confirming %s), until %s",
		ld.name, ld.slot.Name, ld.slot.Plugin, logical.LSN(start), logical.LSN(ack), end))
	return r.consume(ctx, src, end, runStart)
}

func (e *Engine) newLogRun(ld *logDatabase, catalog *singer.Catalog, state *singer.State, out *singer.Writer, conn *pgx.Conn) *logRun {
	return &logRun{e: e, ld: ld, state: state, catalog: catalog, out: out, conn: conn,
		streams: map[[2]string]*logStream{}, types: map[typeKey]resolvedType{},
		partitionSchemas: map[string]bool{}, unrouted: map[[2]string]bool{}, lastState: e.clock(), timestamp: types.Type{Kind: types.KindTimestamp}}
}

// consume applies the change stream until a stop condition holds between
// transactions. end is the WAL position at the start of streaming. Reading
// goes on after a stop signal (ctx) until the current transaction's commit.
func (r *logRun) consume(ctx context.Context, src logical.Source, end logical.LSN, runStart time.Time) error {
	e := r.e
	io := context.WithoutCancel(ctx)
	var lastKeepalive logical.LSN
	reachedEnd := false
	lastData := e.clock()
	for {
		if !r.inTx {
			reason := ""
			switch {
			case ctx.Err() != nil:
				reason = "stop requested"
			case e.cfg.BreakAtEndLSN && reachedEnd:
				reason = fmt.Sprintf("reached %s, the end of WAL at the start of streaming", end)
			case e.clock().Sub(lastData) >= e.cfg.LogicalPollTotal:
				reason = fmt.Sprintf("no change for %s (logical_poll_total_seconds)", e.cfg.LogicalPollTotal)
			case e.clock().Sub(runStart) >= e.cfg.MaxRun:
				reason = fmt.Sprintf("ran for %s (max_run_seconds)", e.cfg.MaxRun)
			}
			if reason != "" {
				return r.finish(reason, lastKeepalive)
			}
		}
		ev, err := src.Next(io, receiveWait)
		if err != nil {
			return r.streamFailed(err)
		}
		switch {
		case ev == nil:
		case ev.Op == logical.OpKeepalive:
			lastKeepalive = max(lastKeepalive, ev.LSN)
			if ev.LSN >= end {
				reachedEnd = true
			}
		default:
			lastData = e.clock()
			// Catalog lookups and re-reads finish the transaction being
			// read even after a stop signal.
			if err := r.apply(io, ev); err != nil {
				return err
			}
			if ev.LSN >= end && !r.inTx {
				reachedEnd = true
			}
		}
	}
}

// programLimitExceeded is SQLSTATE program_limit_exceeded: a string past
// PostgreSQL's 1 GB, which the server reports as "out of memory".
const programLimitExceeded = "54000"

// streamFailed says where in the WAL the stream broke: a server error while
// decoding one transaction recurs at every run, holding the slot's WAL, so
// the CRITICAL names that transaction, and for wal2json's 1 GB limit the
// way past it.
func (r *logRun) streamFailed(err error) error {
	ld := r.ld
	where := fmt.Sprintf("the transaction that begins at %s", r.txBegin)
	if !r.inTx {
		where = "the first transaction to commit after " + r.lastCommit.String()
		if r.lastCommit == 0 {
			where = "the first transaction it sends"
		}
	}
	if size, tooLarge := connect.RowTooLarge(err); tooLarge {
		return fmt.Errorf("database %q: slot %s sent a change of %s of %d bytes, more than max_row_bytes (%d): the tap would need several times that in memory, so it stops here, at every run, while the slot holds the WAL from this point on. "+
			"Raise max_row_bytes above %d (a value is at most 1 GB) where the memory is there",
			ld.name, ld.slot.Name, where, size, r.e.cfg.MaxRowBytes, size)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return fmt.Errorf("database %q: %w", ld.name, err)
	}
	if pgErr.Code == programLimitExceeded && ld.slot.Plugin == pluginWal2json {
		return fmt.Errorf("database %q: slot %s cannot decode %s: %w. "+
			"wal2json writes a change as one JSON string of at most 1 GB, and a value of this transaction is larger once escaped (a control character takes six bytes): "+
			"every run stops here while the slot holds the WAL from this point on. "+
			"Get past it with pgoutput, which sends values as they are stored: %s SELECT pg_drop_replication_slot('%s'); SELECT * FROM pg_create_logical_replication_slot('%s', 'pgoutput'); "+
			"then reset the LOG_BASED streams of database %q (the new slot starts now; their next copy has the row)",
			ld.name, ld.slot.Name, where, err, createPublication(ld.slot.Name, ld.plans), ld.slot.Name, ld.slot.Name, ld.name)
	}
	return fmt.Errorf("database %q: slot %s failed on %s: %w", ld.name, ld.slot.Name, where, err)
}

// openSource starts streaming through the slot's output plugin.
func (e *Engine) openSource(ctx context.Context, conn *pgx.Conn, cfg *pgconn.Config, ld *logDatabase, sc logical.StreamConfig, tables []wal2json.Table) (logical.Source, error) {
	if ld.slot.Plugin == pluginPgoutput {
		version, err := pgoutput.ServerVersion(ctx, conn)
		if err != nil {
			return nil, err
		}
		return pgoutput.Open(ctx, cfg, sc, pgoutput.Options{Publication: ld.publication, ServerVersion: version})
	}
	return wal2json.Open(ctx, cfg, sc, wal2json.Options{Format: e.cfg.Wal2jsonMessageFormat, Tables: tables})
}

// partitionsOf lists the partitions (at any depth) of a partitioned table.
func partitionsOf(ctx context.Context, conn *pgx.Conn, p *streamPlan) ([][2]string, error) {
	if p.live.Kind != discovery.KindPartitionedTable {
		return nil, nil
	}
	rows, err := conn.Query(ctx, `
		SELECT n.nspname, c.relname FROM pg_partition_tree($1::oid) t
		JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE t.relid <> $1::oid`, p.live.OID)
	if err != nil {
		return nil, fmt.Errorf("stream %s: list partitions: %w", p.id, err)
	}
	var out [][2]string
	for rows.Next() {
		var part [2]string
		if err := rows.Scan(&part[0], &part[1]); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, part)
	}
	return out, rows.Err()
}

// ignoredType is the type of a column that is not synced, as last seen: a
// change of type makes the column worth a second look (a type with no text
// form may become one with it).
type ignoredType struct {
	name string
	oid  uint32
}

// same tells whether a change's column still has the type: by name where
// the plugin names types, else by OID.
func (t ignoredType) same(c *logical.Column) bool {
	switch {
	case c.TypeName != "":
		return c.TypeName == t.name
	case c.TypeOID != 0:
		return c.TypeOID == t.oid
	}
	return true
}

func (r *logRun) newLogStream(p *streamPlan) (*logStream, error) {
	ls := &logStream{p: p, bm: r.state.Bookmark(p.id), metrics: newMetrics(r.e.log, p.name, r.e.clock)}
	ls.bm.LastReplicationMethod = MethodLogBased
	ls.rebuild(r.e)
	return ls, r.writeSchema(ls)
}

// rebuild derives the encoder and lookups from the plan's columns.
func (ls *logStream) rebuild(e *Engine) {
	p := ls.p
	names := append(columnNames(p.columns), e.extraColumns(p)...)
	ls.enc = singer.NewRecordEncoder(p.name, names, ls.bm.Version)
	ls.extractedAt = time.Time{}
	ls.index = make(map[string]int, len(p.columns))
	for i, c := range p.columns {
		ls.index[c.Name] = i
	}
	if ls.ignored == nil {
		ls.ignored = map[string]ignoredType{}
		for _, c := range p.live.Columns {
			if _, synced := ls.index[c.Name]; !synced {
				ls.ignored[c.Name] = ignoredType{name: c.SQLType, oid: c.TypeOID}
			}
		}
	}
	ls.keyCols = columnIndexes(p.columns, p.live.PrimaryKey)
	ls.warned = make([]types.Issue, len(p.columns))
	ls.vals = make([]*logical.Column, len(p.columns))
}

func (r *logRun) writeSchema(ls *logStream) error {
	err := r.out.WriteSchema(singer.SchemaMessage{
		Stream:             ls.p.name,
		Schema:             streamSchema(ls.p.live, ls.p.columns, r.e.extraProperties(ls.p)),
		KeyProperties:      ls.p.keyProperties,
		BookmarkProperties: []string{"lsn"},
	})
	if err != nil {
		return fmt.Errorf("stream %s: write SCHEMA: %w", ls.p.id, err)
	}
	return nil
}

// apply handles one event of the change stream.
func (r *logRun) apply(ctx context.Context, ev *logical.Event) error {
	switch ev.Op {
	case logical.OpBegin:
		r.inTx = true
		r.txBegin = ev.LSN
		r.txTime = r.e.clock()
		r.setCommitTime(ev.CommitTime)
		for _, ls := range r.streams {
			ls.liveColumns = nil
		}
		return nil
	case logical.OpCommit:
		r.inTx = false
		r.lastCommit = ev.LSN
		if err := r.flush(ctx); err != nil {
			return err
		}
		return r.committed(uint64(ev.LSN))
	}
	ls, err := r.route(ctx, ev.Schema, ev.Table)
	if err != nil || ls == nil {
		return err
	}
	if err := r.change(ctx, ls, ev); err != nil {
		return err
	}
	if len(r.pending) == 0 && r.sinceState >= stateEvery {
		// Mid-transaction the bookmarks keep the last commit: the STATE
		// only marks progress.
		return r.writeState()
	}
	return nil
}

// route finds the stream of a changed table: its own, or its partitioned
// root's for a partition (one created during the run is looked up once).
func (r *logRun) route(ctx context.Context, schema, table string) (*logStream, error) {
	key := [2]string{schema, table}
	if ls := r.streams[key]; ls != nil || !r.partitionSchemas[schema] || r.unrouted[key] {
		return ls, nil
	}
	var rootSchema, rootTable string
	err := r.conn.QueryRow(ctx, `
		SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = pg_partition_root(to_regclass(quote_ident($1) || '.' || quote_ident($2)))`, schema, table).Scan(&rootSchema, &rootTable)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("find the partitioned root of %q.%q: %w", schema, table, err)
	}
	ls := r.streams[[2]string{rootSchema, rootTable}]
	if ls == nil || ls.p.live.Kind != discovery.KindPartitionedTable {
		r.unrouted[key] = true
		return nil, nil
	}
	r.e.log.Info(fmt.Sprintf("stream %s: new partition %q.%q", ls.p.id, schema, table))
	r.streams[key] = ls
	return ls, nil
}

// setCommitTime keeps the transaction's commit time as _sdc_deleted_at's
// JSON, formatted as the copy formats a timestamptz.
func (r *logRun) setCommitTime(t time.Time) {
	r.commitTime = r.commitTime[:0]
	if t.IsZero() {
		return
	}
	text := t.UTC().AppendFormat(r.scratch[:0], "2006-01-02 15:04:05.999999-07")
	r.scratch = text
	r.commitTime, _ = r.timestamp.AppendJSON(r.commitTime, text)
}

// change handles one row change of a selected stream.
func (r *logRun) change(ctx context.Context, ls *logStream, ev *logical.Event) error {
	if len(r.commitTime) == 0 {
		r.setCommitTime(ev.CommitTime)
	}
	at := ev.LSN
	ls.changes.count(ev.Op)
	switch ev.Op {
	case logical.OpInsert:
		return r.upsertRow(ctx, ls, ev, false, false)
	case logical.OpUpdate:
		return r.upsertRow(ctx, ls, ev, true, false)
	case logical.OpDelete:
		return r.delete(ctx, ls, ev.Old, at)
	case logical.OpTruncate:
		if err := r.flush(ctx); err != nil {
			return err
		}
		if ev.Schema != ls.p.schema || ev.Table != ls.p.table {
			// One partition emptied: a new version would empty the whole
			// root in the target. The root is copied again next run.
			r.e.log.Warn(fmt.Sprintf("stream %s: partition %q.%q was truncated; the stream will be copied again on the next run",
				ls.p.id, ev.Schema, ev.Table))
			ls.recopy = true
			return nil
		}
		ls.bm.Version = r.e.newVersion(ls.bm.Version)
		ls.enc.SetVersion(ls.bm.Version)
		r.e.log.Info(fmt.Sprintf("stream %s: TRUNCATE at %s; new version %d", ls.p.id, at, ls.bm.Version))
		return r.out.WriteActivateVersion(ls.p.name, ls.bm.Version)
	}
	return nil
}

// upsertRow emits an inserted or updated row. An update that changed the
// key first deletes the old key; oldKeyDeleted says that delete already went
// out (the row is being applied again after a shape change).
func (r *logRun) upsertRow(ctx context.Context, ls *logStream, ev *logical.Event, update, oldKeyDeleted bool) error {
	at := ev.LSN
	if err := r.mapColumns(ctx, ls, ev.New); err != nil {
		return err
	}
	if update && !oldKeyDeleted && len(ls.keyCols) > 0 && len(ev.Old) > 0 && keyChanged(ls, ev.Old) {
		oldKeyDeleted = true
		if err := r.delete(ctx, ls, ev.Old, at); err != nil {
			return err
		}
		// delete reused the scratch; map the new row again.
		if err := r.mapColumns(ctx, ls, ev.New); err != nil {
			return err
		}
	}
	var missing []int
	for i, v := range ls.vals {
		if v != nil {
			continue
		}
		// Unchanged TOAST values are absent from an update's new row: the
		// old row has them under REPLICA IDENTITY FULL.
		if old := logical.Find(ev.Old, ls.p.columns[i].Name); old != nil {
			ls.vals[i] = old
			continue
		}
		missing = append(missing, i)
	}
	if len(missing) > 0 {
		dropped, err := r.droppedColumns(ctx, ls, missing)
		if err != nil {
			return err
		}
		if len(dropped) > 0 {
			if err := r.reshape(ctx, ls, shapeChange{dropped: dropped}); err != nil {
				return err
			}
			return r.upsertRow(ctx, ls, ev, update, oldKeyDeleted)
		}
	}
	return r.record(ctx, ls, missing, at, false)
}

// mapColumns points ls.vals at the change's columns. Columns the stream has
// not seen, and columns whose type changed, are taken into the stream's
// shape from the change itself (the catalog may have moved on since) and
// announced in a new SCHEMA. A column the change lacks is the caller's to
// explain: unchanged TOAST, a dropped column, or one the plugin does not
// send (pgoutput leaves out generated columns).
func (r *logRun) mapColumns(ctx context.Context, ls *logStream, cols []logical.Column) error {
	clear(ls.vals)
	var added []*discovery.Column
	retyped := map[int]*discovery.Column{}
	for j := range cols {
		c := &cols[j]
		if i, ok := ls.index[c.Name]; ok {
			cur := ls.p.columns[i]
			if c.TypeOID != 0 && c.TypeOID != cur.TypeOID || c.TypeName != "" && c.TypeName != cur.SQLType ||
				c.TypeModKnown && c.TypeMod != cur.TypeMod {
				rt, err := r.resolveType(ctx, c)
				if err != nil {
					return fmt.Errorf("stream %s column %q: %w", ls.p.id, c.Name, err)
				}
				col := *cur
				col.SQLType, col.Type, col.TypeMod = rt.sqlType, rt.t, rt.typeMod
				if c.TypeOID != 0 {
					col.TypeOID = c.TypeOID
				}
				if col.TypeOID == cur.TypeOID && sameSchema(col.Type, cur.Type) {
					// The same type spelled differently ("char" and
					// "\"char\""): remember the spelling, nothing changed.
					ls.p.columns[i] = &col
				} else {
					retyped[i] = &col
				}
			}
			ls.vals[i] = c
			continue
		}
		if typ, known := ls.ignored[c.Name]; known && typ.same(c) {
			continue
		}
		col, err := r.newColumn(ctx, ls, c)
		if err != nil {
			return err
		}
		if col == nil {
			ls.ignored[c.Name] = ignoredType{name: c.TypeName, oid: c.TypeOID}
			continue
		}
		added = append(added, col)
	}
	if len(retyped) == 0 && added == nil {
		return nil
	}
	if err := r.reshape(ctx, ls, shapeChange{added: added, retyped: retyped}); err != nil {
		return err
	}
	return r.mapColumns(ctx, ls, cols)
}

// newColumn decides whether a column first seen in the log is synced: it is
// unless the catalog deselects it or its type has no text form.
func (r *logRun) newColumn(ctx context.Context, ls *logStream, c *logical.Column) (*discovery.Column, error) {
	if s := r.catalog.Lookup(ls.p.id); s != nil {
		if meta, known := s.ColumnMeta(c.Name); known {
			selected, present, err := meta.Bool(singer.MetaSelected)
			if err != nil {
				return nil, err
			}
			if present && !selected {
				return nil, nil
			}
		}
	}
	rt, err := r.resolveType(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("stream %s new column %q: %w", ls.p.id, c.Name, err)
	}
	if !rt.t.Supported() {
		return nil, nil
	}
	return &discovery.Column{Name: c.Name, SQLType: rt.sqlType, TypeOID: c.TypeOID, TypeMod: rt.typeMod, Type: rt.t}, nil
}

// typeKey is a column type as a change describes it.
type typeKey struct {
	name         string
	oid          uint32
	typeMod      int32
	typeModKnown bool
}

// resolvedType is a change's column type looked up in the catalog.
type resolvedType struct {
	t       *types.Type
	sqlType string
	typeMod int32
}

// resolveType turns a change's column type into a Type, once per type: by
// its name when the plugin names types (wal2json), else by OID and typmod.
func (r *logRun) resolveType(ctx context.Context, c *logical.Column) (resolvedType, error) {
	key := typeKey{name: c.TypeName, oid: c.TypeOID, typeMod: c.TypeMod, typeModKnown: c.TypeModKnown}
	if rt, ok := r.types[key]; ok {
		return rt, nil
	}
	var rt resolvedType
	var err error
	if c.TypeModKnown {
		rt.t, rt.sqlType, err = discovery.ResolveTypeMod(ctx, r.conn, c.TypeOID, c.TypeMod, r.e.typeOptions())
		rt.typeMod = c.TypeMod
	} else {
		rt.t, rt.typeMod, err = discovery.ResolveLogType(ctx, r.conn, c.TypeName, c.TypeOID, r.e.typeOptions())
		rt.sqlType = cmp.Or(c.TypeName, rt.t.BaseName)
	}
	if err != nil {
		return resolvedType{}, err
	}
	r.types[key] = rt
	return rt, nil
}

// sameSchema tells whether two types look alike to the target.
func sameSchema(a, b *types.Type) bool {
	sa, da := a.ColumnSchema(true)
	sb, db := b.ColumnSchema(true)
	ja, errA := json.Marshal(sa)
	jb, errB := json.Marshal(sb)
	return errA == nil && errB == nil && a.Kind == b.Kind && bytes.Equal(ja, jb) && fmt.Sprint(da) == fmt.Sprint(db)
}

// shapeChange is what a change showed of a table's new shape: columns by
// position in the old shape, new ones at the end.
type shapeChange struct {
	dropped []int
	added   []*discovery.Column
	retyped map[int]*discovery.Column
}

// reshape applies a shape change and announces it. Held records go out
// first, in the shape they were read in.
func (r *logRun) reshape(ctx context.Context, ls *logStream, sc shapeChange) error {
	if err := r.flush(ctx); err != nil {
		return err
	}
	var cols []*discovery.Column
	for i, c := range ls.p.columns {
		if slices.Contains(sc.dropped, i) {
			continue
		}
		if nc, ok := sc.retyped[i]; ok {
			c = nc
		}
		cols = append(cols, c)
	}
	ls.p.columns = append(cols, sc.added...)
	r.e.log.Info(fmt.Sprintf("stream %s: columns changed to %s; sending a new SCHEMA", ls.p.id, strings.Join(columnNames(ls.p.columns), ", ")))
	ls.rebuild(r.e)
	return r.writeSchema(ls)
}

// droppedColumns tells which of an update's missing columns no longer exist
// in the table (the others left their TOAST values unchanged).
func (r *logRun) droppedColumns(ctx context.Context, ls *logStream, missing []int) ([]int, error) {
	if ls.liveColumns == nil {
		names, err := discovery.ColumnNames(ctx, r.conn, ls.p.schema, ls.p.table)
		if err != nil {
			return nil, fmt.Errorf("stream %s: reload columns: %w", ls.p.id, err)
		}
		ls.liveColumns = map[string]bool{}
		for _, n := range names {
			ls.liveColumns[n] = true
		}
	}
	var dropped []int
	for _, i := range missing {
		if !ls.liveColumns[ls.p.columns[i].Name] {
			dropped = append(dropped, i)
		}
	}
	return dropped, nil
}

func keyChanged(ls *logStream, identity []logical.Column) bool {
	for _, k := range ls.keyCols {
		old := logical.Find(identity, ls.p.columns[k].Name)
		cur := ls.vals[k]
		if old == nil || cur == nil {
			continue
		}
		if old.Null != cur.Null || !bytes.Equal(old.Value, cur.Value) {
			return true
		}
	}
	return false
}

// maxPending bounds the records held back while unchanged TOAST values wait
// to be re-read: memory stays flat and one query serves many rows.
const maxPending = 1000

// pendingRecord is a record held back, with its values copied out of the
// decoder's buffers.
type pendingRecord struct {
	ls         *logStream
	vals       []*logical.Column
	needs      []int
	at         logical.LSN
	deleted    bool
	commitTime []byte
}

// hold queues a record behind earlier held ones, so that order is kept.
func (r *logRun) hold(ls *logStream, needs []int, at logical.LSN, deleted bool) {
	vals := make([]*logical.Column, len(ls.vals))
	for i, v := range ls.vals {
		if v != nil {
			vals[i] = &logical.Column{Name: v.Name, Value: bytes.Clone(v.Value), Null: v.Null}
		}
	}
	r.pending = append(r.pending, pendingRecord{ls: ls, vals: vals, needs: needs, at: at, deleted: deleted,
		commitTime: bytes.Clone(r.commitTime)})
}

// flush re-reads the unchanged TOAST values held records need, one query
// per stream, and emits the records in order. A row's current value is at
// least as new as the change; a row gone since is left without them (a
// later delete in the stream says so).
func (r *logRun) flush(ctx context.Context) error {
	if len(r.pending) == 0 {
		return nil
	}
	byStream := map[*logStream][]int{}
	for i, p := range r.pending {
		if len(p.needs) > 0 {
			byStream[p.ls] = append(byStream[p.ls], i)
		}
	}
	for ls, held := range byStream {
		if err := r.reread(ctx, ls, held); err != nil {
			return err
		}
	}
	for _, p := range r.pending {
		if err := r.emitValues(p.ls, p.vals, p.at, p.deleted, p.commitTime); err != nil {
			return err
		}
	}
	clear(r.pending)
	r.pending = r.pending[:0]
	return nil
}

// reread fetches, by key, the missing columns of the held records of one
// stream.
func (r *logRun) reread(ctx context.Context, ls *logStream, held []int) error {
	if len(ls.keyCols) == 0 {
		r.e.log.Warn(fmt.Sprintf("stream %s: unchanged TOAST values cannot be re-read without a primary key; they are left out of the record (ALTER TABLE ... REPLICA IDENTITY FULL keeps them)", ls.p.id))
		return nil
	}
	var missing []int
	for _, h := range held {
		for _, i := range r.pending[h].needs {
			if !slices.Contains(missing, i) {
				missing = append(missing, i)
			}
		}
	}
	var cols, keys, tuples []string
	for _, k := range ls.keyCols {
		name := pgx.Identifier{ls.p.columns[k].Name}.Sanitize()
		cols, keys = append(cols, name), append(keys, name)
	}
	for _, i := range missing {
		cols = append(cols, pgx.Identifier{ls.p.columns[i].Name}.Sanitize())
	}
	var params [][]byte
	for _, h := range held {
		var ph []string
		for _, k := range ls.keyCols {
			v := r.pending[h].vals[k]
			if v == nil || v.Null {
				ph = nil
				break
			}
			params = append(params, v.Value)
			ph = append(ph, fmt.Sprintf("$%d", len(params)))
		}
		if ph != nil {
			tuples = append(tuples, "("+strings.Join(ph, ", ")+")")
		}
	}
	if len(tuples) == 0 {
		return nil
	}
	sql := fmt.Sprintf("SELECT %s FROM %s WHERE (%s) IN (%s)", strings.Join(cols, ", "),
		pgx.Identifier{ls.p.schema, ls.p.table}.Sanitize(), strings.Join(keys, ", "), strings.Join(tuples, ", "))
	rr := r.conn.PgConn().ExecParams(ctx, sql, params, nil, nil, nil)
	current := map[string][][]byte{}
	for rr.NextRow() {
		values := rr.Values()
		row := make([][]byte, len(values))
		for i, v := range values {
			row[i] = bytes.Clone(v)
		}
		current[joinKey(row[:len(ls.keyCols)])] = row[len(ls.keyCols):]
	}
	if _, err := rr.Close(); err != nil {
		return fmt.Errorf("stream %s: re-read unchanged TOAST values: %w", ls.p.id, err)
	}
	for _, h := range held {
		p := &r.pending[h]
		key := make([][]byte, len(ls.keyCols))
		for n, k := range ls.keyCols {
			if v := p.vals[k]; v != nil {
				key[n] = v.Value
			}
		}
		row, ok := current[joinKey(key)]
		if !ok {
			continue
		}
		for _, i := range p.needs {
			v := row[slices.Index(missing, i)]
			p.vals[i] = &logical.Column{Name: ls.p.columns[i].Name, Value: v, Null: v == nil}
		}
	}
	return nil
}

// joinKey makes a map key of key values as PostgreSQL prints them. The key
// columns are compared in their text form, which is what both the change
// and the query give.
func joinKey(values [][]byte) string {
	return string(bytes.Join(values, []byte{0}))
}

// delete emits the deleted row's key with _sdc_deleted_at. Without a primary
// key, the old row REPLICA IDENTITY FULL gave stands in for it.
func (r *logRun) delete(ctx context.Context, ls *logStream, identity []logical.Column, at logical.LSN) error {
	clear(ls.vals)
	for j := range identity {
		c := &identity[j]
		i, ok := ls.index[c.Name]
		if !ok {
			continue
		}
		if len(ls.keyCols) > 0 && !slices.Contains(ls.keyCols, i) {
			continue
		}
		ls.vals[i] = c
	}
	return r.record(ctx, ls, nil, at, true)
}

// record emits ls.vals now, or holds it when it needs re-read values or
// records before it are held.
func (r *logRun) record(ctx context.Context, ls *logStream, needs []int, at logical.LSN, deleted bool) error {
	if len(needs) == 0 && len(r.pending) == 0 {
		return r.emitValues(ls, ls.vals, at, deleted, r.commitTime)
	}
	r.hold(ls, needs, at, deleted)
	if len(r.pending) >= maxPending {
		return r.flush(ctx)
	}
	return nil
}

// emitValues writes one RECORD; absent values are left out.
func (r *logRun) emitValues(ls *logStream, vals []*logical.Column, at logical.LSN, deleted bool, commitTime []byte) error {
	if r.txTime.IsZero() {
		r.txTime = r.e.clock()
	}
	if !ls.extractedAt.Equal(r.txTime) {
		ls.enc.SetTimeExtracted(r.txTime)
		ls.extractedAt = r.txTime
	}
	buf := ls.enc.Begin(r.buf[:0])
	for i, v := range vals {
		if v == nil {
			continue
		}
		buf = ls.enc.Field(buf, i)
		if v.Null {
			buf = append(buf, "null"...)
			continue
		}
		var issue types.Issue
		buf, issue = ls.p.columns[i].Type.AppendJSON(buf, v.Value)
		if fresh := issue &^ ls.warned[i]; fresh != 0 {
			ls.warned[i] |= fresh
			warnValueIssue(r.e.log, ls.p.id, ls.p.columns[i], fresh)
		}
	}
	n := len(ls.p.columns)
	buf = ls.enc.Field(buf, n)
	if deleted {
		buf = append(buf, commitTime...)
	} else {
		buf = append(buf, "null"...)
	}
	if r.e.cfg.DebugLSN {
		buf = ls.enc.Field(buf, n+1)
		buf = append(buf, '"')
		buf = append(buf, at.String()...)
		buf = append(buf, '"')
	}
	buf = ls.enc.End(buf)
	r.buf = buf
	if err := r.out.WriteRecordLine(buf); err != nil {
		return err
	}
	r.emitted++
	r.sinceState++
	ls.metrics.add(1)
	return nil
}

// committed moves every stream of the database to the commit's position.
func (r *logRun) committed(commit uint64) error {
	for _, ls := range r.uniqueStreams() {
		if !ls.recopy {
			ls.bm.LSN = max(ls.bm.LSN, commit)
		}
	}
	r.commitTime = r.commitTime[:0]
	if r.sinceState > 0 && r.e.clock().Sub(r.lastState) >= stateInterval {
		return r.writeState()
	}
	return nil
}

func (r *logRun) uniqueStreams() []*logStream {
	var out []*logStream
	for _, ls := range r.streams {
		if !slices.Contains(out, ls) {
			out = append(out, ls)
		}
	}
	return out
}

func (r *logRun) writeState() error {
	r.sinceState = 0
	r.lastState = r.e.clock()
	return r.e.states.write(r.out, r.state)
}

// finish stops between transactions. With every received change emitted,
// the bookmarks may move to the last keepalive's WAL end, so the slot of an
// idle database advances on the next run.
func (r *logRun) finish(reason string, lastKeepalive logical.LSN) error {
	for _, ls := range r.uniqueStreams() {
		ls.metrics.flush()
		if ls.recopy {
			delete(r.state.Bookmarks, ls.p.id)
			continue
		}
		ls.bm.LSN = max(ls.bm.LSN, uint64(lastKeepalive))
	}
	r.e.log.Info(fmt.Sprintf("database %q: stopped streaming (%s) after %d records", r.ld.name, reason, r.emitted))
	r.sinceState = 0
	return r.e.states.force(r.out, r.state)
}

// ChangeCounts are the row changes a LOG_BASED stream sent, by kind: what
// a loading report shows beside the rows loaded.
type ChangeCounts struct {
	Inserts int64 `json:"inserts"`
	Updates int64 `json:"updates"`
	Deletes int64 `json:"deletes"`
}

func (c *ChangeCounts) count(op logical.Op) {
	switch op {
	case logical.OpInsert:
		c.Inserts++
	case logical.OpUpdate:
		c.Updates++
	case logical.OpDelete:
		c.Deletes++
	}
}

// keepChanges adds the streams' counts to what Changes reports; a
// partitioned root is reached through each of its partitions, and counted
// once.
func (e *Engine) keepChanges(streams map[[2]string]*logStream) {
	seen := map[*logStream]bool{}
	for _, ls := range streams {
		if ls == nil || seen[ls] || ls.changes == (ChangeCounts{}) {
			continue
		}
		seen[ls] = true
		if e.changes == nil {
			e.changes = map[string]ChangeCounts{}
		}
		c := e.changes[ls.p.name]
		c.Inserts += ls.changes.Inserts
		c.Updates += ls.changes.Updates
		c.Deletes += ls.changes.Deletes
		e.changes[ls.p.name] = c
	}
}

// Changes are the row changes the last Sync's LOG_BASED streams sent, by
// stream name; streams that sent none are absent.
func (e *Engine) Changes() map[string]ChangeCounts { return e.changes }
