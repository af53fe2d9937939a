package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/tap-postgres/tap-postgres/internal/pgread"
	"github.com/tap-postgres/tap-postgres/internal/singer"
)

// partBounds splits a large table's copy into up to max_parallel_streams key
// ranges on its first key column, from the column's histogram (pg_stats,
// kept by ANALYZE): no scan of the table is needed to plan. Small tables,
// tables without statistics and settings of one reader give none.
func (e *Engine) partBounds(ctx context.Context, p *streamPlan) ([]string, error) {
	parts := e.cfg.MaxParallelStreams
	if parts < 2 || len(p.live.PrimaryKey) == 0 || p.live.IsView() || p.live.RowCount < int64(2*e.cfg.IterSize) {
		return nil, nil
	}
	conn, err := e.conn.Connect(ctx, p.database)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `
		SELECT b FROM pg_stats s, unnest(s.histogram_bounds::text::text[]) WITH ORDINALITY AS h(b, n)
		WHERE s.schemaname = $1 AND s.tablename = $2 AND s.attname = $3
		ORDER BY n`, p.schema, p.table, p.live.PrimaryKey[0])
	if err != nil {
		return nil, fmt.Errorf("stream %s: read key histogram: %w", p.id, err)
	}
	hist, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("stream %s: read key histogram: %w", p.id, err)
	}
	var bounds []string
	for i := 1; i < parts; i++ {
		j := i * len(hist) / parts
		if j <= 0 || j >= len(hist) || len(bounds) > 0 && bounds[len(bounds)-1] == hist[j] {
			continue
		}
		bounds = append(bounds, hist[j])
	}
	return bounds, nil
}

// newParts turns bounds into the ranges [-inf, b1), [b1, b2), … [bn, +inf).
func newParts(bounds []string) []singer.CopyPart {
	parts := make([]singer.CopyPart, len(bounds)+1)
	for i := range bounds {
		b := bounds[i]
		parts[i].Upper = &b
		parts[i+1].Lower = &b
	}
	return parts
}

// copyParts reads a table's key ranges at once, every reader in the same
// snapshot (exported by the first, or the one given), each sending its own
// batches with a STATE holding its own last key: the records of one stream
// interleave, and each range resumes on its own after a crash.
func (e *Engine) copyParts(ctx context.Context, p *streamPlan, sk *sink, bm *singer.Bookmark, keyCols []int, snapshot string) (int64, error) {
	conn, err := e.conn.Connect(ctx, p.database)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	lead, err := pgread.BeginSnapshot(ctx, conn.PgConn(), snapshot)
	if err != nil {
		return 0, err
	}
	if snapshot == "" {
		// The exporting transaction stays open until every reader is done.
		if snapshot, err = lead.ExportSnapshot(ctx); err != nil {
			return 0, err
		}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total int64
	var errs []error
	// Readers stay within max_parallel_streams, also when a copy planned
	// with more parts resumes under a lower setting.
	readers := make(chan struct{}, max(1, e.cfg.MaxParallelStreams))
	for i := range bm.CopyParts {
		if bm.CopyParts[i].Done {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case readers <- struct{}{}:
				defer func() { <-readers }()
			case <-ctx.Done():
				return
			}
			n, err := e.copyPart(ctx, p, sk, bm, i, keyCols, snapshot)
			mu.Lock()
			defer mu.Unlock()
			total += n
			if err != nil {
				errs = append(errs, err)
				cancel(err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return total, err
	}
	return total, lead.Close(ctx)
}

// copyPart reads one key range, resuming after its own last key.
func (e *Engine) copyPart(ctx context.Context, p *streamPlan, sk *sink, bm *singer.Bookmark, i int, keyCols []int, snapshot string) (int64, error) {
	part := &bm.CopyParts[i]
	q := pgread.Query{Schema: p.schema, Table: p.table, Columns: columnNames(p.columns), KeyColumns: keyCols}
	if part.Lower != nil {
		q.Lower = []byte(*part.Lower)
	}
	if part.Upper != nil {
		q.Upper = []byte(*part.Upper)
	}
	var after [][]byte
	if part.LastPKFetched != nil {
		after = make([][]byte, len(keyCols))
		for n, k := range keyCols {
			v, ok := part.LastPKFetched[p.columns[k].Name]
			if !ok {
				return 0, fmt.Errorf("stream %s: part %d of the interrupted copy has no value for key column %q", p.id, i, p.columns[k].Name)
			}
			after[n] = []byte(v)
		}
	}
	return e.copyRange(ctx, p, sk, q, after, bm.Version, snapshot, func(key map[string]string, done bool) {
		if key != nil {
			part.LastPKFetched = key
		}
		part.Done = done
	})
}
