package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/tap-postgres/tap-postgres/internal/singer"
)

// Sync replicates the catalog's selected streams, starting from state, and
// writes messages to out.
func (e *Engine) Sync(ctx context.Context, catalog *singer.Catalog, state *singer.State, out *singer.Writer) error {
	runStart := e.clock()
	// The acknowledgement may only confirm what the target had committed:
	// the state as given, before this run changes it.
	startState := state.Clone()
	plans, err := e.planSelected(catalog)
	if err != nil {
		return err
	}
	if len(plans) == 0 {
		e.log.Warn("no stream is selected in the catalog; nothing to sync")
		return nil
	}
	var problems []error
	for _, db := range databasesOf(plans) {
		if err := e.resolveTables(ctx, db, plansIn(plans, db), catalog); err != nil {
			problems = append(problems, err)
		}
	}
	if err := errors.Join(problems...); err != nil {
		return err
	}
	for _, p := range plans {
		e.resetChangedBookmark(p, state)
	}
	logDBs, err := e.prepareLogBased(ctx, plans, state)
	if err != nil {
		return err
	}
	for _, p := range interruptedFirst(plans, state) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("sync interrupted: %w", context.Cause(ctx))
		}
		if err := e.syncStream(ctx, p, state, out); err != nil {
			return err
		}
	}
	for _, ld := range logDBs {
		if err := e.streamDatabase(ctx, ld, catalog, state, startState, out, runStart); err != nil {
			return err
		}
	}
	return writeState(out, state)
}

// resetChangedBookmark wipes a stream's bookmark when its replication method
// or key changed: a new version and a full copy, as a table reset.
func (e *Engine) resetChangedBookmark(p *streamPlan, state *singer.State) {
	bm := state.Bookmark(p.id)
	switch {
	case bm.LastReplicationMethod != "" && bm.LastReplicationMethod != p.method:
		e.log.Info(fmt.Sprintf("stream %s: replication method changed from %s to %s; starting over with a new version",
			p.id, bm.LastReplicationMethod, p.method))
	case p.method == MethodIncremental && bm.ReplicationKey != "" && bm.ReplicationKey != p.replicationKey:
		e.log.Info(fmt.Sprintf("stream %s: replication-key changed from %q to %q; starting over with a new version",
			p.id, bm.ReplicationKey, p.replicationKey))
	default:
		return
	}
	*bm = singer.Bookmark{}
}

func (e *Engine) syncStream(ctx context.Context, p *streamPlan, state *singer.State, out *singer.Writer) error {
	switch p.method {
	case MethodFullTable:
		return e.syncFullTable(ctx, p, state, out)
	case MethodIncremental:
		return e.syncIncremental(ctx, p, state, out)
	case MethodLogBased:
		return e.copyLogBased(ctx, p, state, out)
	}
	return fmt.Errorf("stream %s: replication method %s is not supported", p.id, p.method)
}

func databasesOf(plans []*streamPlan) []string {
	var dbs []string
	for _, p := range plans {
		if !slices.Contains(dbs, p.database) {
			dbs = append(dbs, p.database)
		}
	}
	return dbs
}

func plansIn(plans []*streamPlan, db string) []*streamPlan {
	var out []*streamPlan
	for _, p := range plans {
		if p.database == db {
			out = append(out, p)
		}
	}
	return out
}

// interruptedFirst moves the stream named by currently_syncing to the front,
// so an interrupted copy finishes before others start.
func interruptedFirst(plans []*streamPlan, state *singer.State) []*streamPlan {
	if state.CurrentlySyncing == nil {
		return plans
	}
	i := slices.IndexFunc(plans, func(p *streamPlan) bool { return p.id == *state.CurrentlySyncing })
	if i <= 0 {
		return plans
	}
	return append([]*streamPlan{plans[i]}, slices.Delete(slices.Clone(plans), i, i+1)...)
}
