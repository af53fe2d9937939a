package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/tap-postgres/tap-postgres/internal/connect"
	"github.com/tap-postgres/tap-postgres/internal/singer"
)

// Sync replicates the catalog's selected streams, starting from state, and
// writes messages to out.
func (e *Engine) Sync(ctx context.Context, catalog *singer.Catalog, state *singer.State, out *singer.Writer) error {
	return connect.WithHint(e.sync(ctx, catalog, state, out))
}

func (e *Engine) sync(ctx context.Context, catalog *singer.Catalog, state *singer.State, out *singer.Writer) error {
	runStart := e.clock()
	// The acknowledgement may only confirm what the target had committed:
	// the state as given, before this run changes it.
	startState := state.Clone()
	e.dropBookmarksNotIn(catalog, state)
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
	if err := e.syncStreams(ctx, interruptedFirst(plans, state), newSink(out, state, e.states)); err != nil {
		return err
	}
	for _, ld := range logDBs {
		if ctx.Err() != nil {
			e.log.Info(fmt.Sprintf("stop requested: database %q is not streamed in this run", ld.name))
			continue
		}
		if err := e.streamDatabase(ctx, ld, catalog, state, startState, out, runStart); err != nil {
			return err
		}
	}
	return e.states.force(out, state)
}

// dropBookmarksNotIn forgets the bookmarks of streams of the catalog's
// databases and schemas that it no longer lists (tables dropped, or no
// longer discovered): every STATE carries the whole state, and one of 50 MB
// would make each STATE as big. A stream id does not say where its
// database name ends ("shop-eu-public-orders" may be database shop-eu), so
// a bookmark goes only when a database and a schema the catalog lists
// account for it; others stay, for a state shared by runs of several
// catalogs.
func (e *Engine) dropBookmarksNotIn(catalog *singer.Catalog, state *singer.State) {
	listed := make(map[string]bool, len(catalog.Streams))
	schemas := map[string][]string{} // by database
	for _, s := range catalog.Streams {
		listed[s.TapStreamID] = true
		meta := s.TableMeta()
		db, dbErr := meta.String(singer.MetaDatabaseName)
		schema, schemaErr := meta.String(singer.MetaSchemaName)
		if dbErr == nil && schemaErr == nil && !slices.Contains(schemas[db], schema) {
			schemas[db] = append(schemas[db], schema)
		}
	}
	ours := func(id string) bool {
		for db, names := range schemas {
			rest, found := strings.CutPrefix(id, db+"-")
			if found && slices.ContainsFunc(names, func(schema string) bool { return strings.HasPrefix(rest, schema+"-") }) {
				return true
			}
		}
		return false
	}
	var dropped []string
	for id := range state.Bookmarks {
		if !listed[id] && ours(id) {
			dropped = append(dropped, id)
			delete(state.Bookmarks, id)
		}
	}
	if len(dropped) == 0 {
		return
	}
	slices.Sort(dropped)
	shown := dropped[:min(len(dropped), 10)]
	more := ""
	if len(dropped) > len(shown) {
		more = fmt.Sprintf(" and %d more", len(dropped)-len(shown))
	}
	e.log.Info(fmt.Sprintf("state: dropped the bookmarks of %d streams the catalog no longer lists (a stream listed again is copied afresh): %s%s",
		len(dropped), strings.Join(shown, ", "), more))
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

// syncStreamRecovering is syncStream with a bug in it made an error: in
// a goroutine of its own, a panic would end the process with a stack
// trace instead of the CRITICAL line every failure ends with.
func (e *Engine) syncStreamRecovering(ctx context.Context, p *streamPlan, sk *sink) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("stream %s: internal error: %v", p.id, r)
		}
	}()
	return e.syncStream(ctx, p, sk)
}

// syncStreams copies up to max_parallel_streams streams at once (1, the
// default, spares a production primary). Their messages interleave on the
// output; each stream's own messages, and the STATEs covering them, stay in
// order. The first failure stops the others.
func (e *Engine) syncStreams(ctx context.Context, plans []*streamPlan, sk *sink) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	slots := make(chan struct{}, max(1, e.cfg.MaxParallelStreams))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for _, p := range plans {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if err := e.syncStreamRecovering(ctx, p, sk); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
				cancel(err)
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	if err := context.Cause(ctx); err != nil && ctx.Err() != nil {
		return fmt.Errorf("sync interrupted: %w", err)
	}
	return nil
}

func (e *Engine) syncStream(ctx context.Context, p *streamPlan, sk *sink) error {
	switch p.method {
	case MethodFullTable:
		return e.syncFullTable(ctx, p, sk)
	case MethodIncremental:
		return e.syncIncremental(ctx, p, sk)
	case MethodLogBased:
		return e.copyLogBased(ctx, p, sk)
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
