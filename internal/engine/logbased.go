package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tap-postgres/tap-postgres/internal/logical"
	"github.com/tap-postgres/tap-postgres/internal/singer"
)

// slotBusyWait bounds the wait for a slot still held by another process (a
// killed predecessor's walsender lingers a few seconds).
const slotBusyWait = 15 * time.Second

// logDatabase is what the checks made before anything else found for one
// database's LOG_BASED streams.
type logDatabase struct {
	name  string
	plans []*streamPlan
	slot  logical.Slot
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
		ld.slot = slot
		dbs = append(dbs, ld)
	}
	return dbs, nil
}

// checkSlot finds the database's slot and makes sure streaming from it can
// lose nothing: it exists with wal2json, no other process holds it, and it is
// not confirmed past any stream's bookmark.
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
			case s.Plugin != "wal2json":
				unusable = append(unusable, fmt.Sprintf("%s uses plugin %q, not wal2json", s.Name, s.Plugin))
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
			return logical.Slot{}, fmt.Errorf("%s; create it with: SELECT * FROM pg_create_logical_replication_slot('%s', 'wal2json');", msg, names[0])
		}
		if usable.ActivePID == 0 {
			for _, p := range ld.plans {
				if lsn := state.Bookmark(p.id).LSN; lsn != 0 && uint64(usable.ConfirmedFlush) > lsn {
					return logical.Slot{}, fmt.Errorf("slot %s is already confirmed to %s, past stream %s's bookmark %s: the changes in between are gone from the slot; reset that stream (remove its bookmark) to copy it again",
						usable.Name, usable.ConfirmedFlush, p.id, logical.LSN(lsn))
				}
			}
			e.log.Info(fmt.Sprintf("database %q: using slot %s (confirmed to %s)", ld.name, usable.Name, usable.ConfirmedFlush))
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
	case bm.LSN != 0 && bm.Version != 0:
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
