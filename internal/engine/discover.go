package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tap-postgres/tap-postgres/internal/connect"
	"github.com/tap-postgres/tap-postgres/internal/discovery"
	"github.com/tap-postgres/tap-postgres/internal/singer"
	"github.com/tap-postgres/tap-postgres/internal/types"
)

// Discover builds the catalog of every database the user can connect to.
func (e *Engine) Discover(ctx context.Context) (*singer.Catalog, error) {
	catalog, err := e.discover(ctx)
	return catalog, connect.WithHint(err)
}

func (e *Engine) discover(ctx context.Context) (*singer.Catalog, error) {
	boot, err := e.conn.Connect(ctx, e.cfg.DBName)
	if err != nil {
		return nil, err
	}
	dbs, err := discovery.Databases(ctx, boot, e.cfg.FilterDBs)
	boot.Close(ctx)
	if err != nil {
		return nil, err
	}
	if len(dbs) == 0 {
		return nil, fmt.Errorf("no database to discover (filter_dbs: %q)", strings.Join(e.cfg.FilterDBs, ","))
	}
	catalog := &singer.Catalog{Streams: []*singer.Stream{}}
	for _, db := range dbs {
		tables, err := e.discoverDatabase(ctx, db)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			e.log.Warn(fmt.Sprintf("skipping database %q: %v", db, err))
			continue
		}
		for _, t := range tables {
			s, err := e.catalogStream(t)
			if err != nil {
				return nil, err
			}
			catalog.Streams = append(catalog.Streams, s)
		}
	}
	if len(catalog.Streams) == 0 {
		return nil, errors.New("discovery found no tables the user can read in any database")
	}
	slices.SortFunc(catalog.Streams, func(a, b *singer.Stream) int { return strings.Compare(a.TapStreamID, b.TapStreamID) })
	for i := 1; i < len(catalog.Streams); i++ {
		if id := catalog.Streams[i].TapStreamID; id == catalog.Streams[i-1].TapStreamID {
			e.log.Warn(fmt.Sprintf("several tables map to tap_stream_id %s (hyphens in schema or table names); that stream cannot be selected", id))
		}
	}
	return catalog, nil
}

func (e *Engine) discoverDatabase(ctx context.Context, db string) ([]*discovery.Table, error) {
	conn, err := e.conn.Connect(ctx, db)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	tables, err := discovery.Tables(ctx, conn, discovery.Filter{Schemas: e.cfg.FilterSchemas}, e.typeOptions())
	if err != nil {
		return nil, err
	}
	e.log.Info(fmt.Sprintf("discovered %d tables in database %q", len(tables), db))
	return tables, nil
}

// catalogStream turns a discovered table into its catalog entry.
func (e *Engine) catalogStream(t *discovery.Table) (*singer.Stream, error) {
	id := streamID(t.Database, t.Schema, t.Name)
	keys := t.PrimaryKey
	if keys == nil {
		keys = []string{}
	}
	tableMeta := map[string]any{
		singer.MetaTableKeyProperties: keys,
		singer.MetaSchemaName:         t.Schema,
		singer.MetaDatabaseName:       t.Database,
		singer.MetaRowCount:           t.RowCount,
		singer.MetaIsView:             t.IsView(),
	}
	if t.IsPartition {
		tableMeta[singer.MetaIsPartition] = true
		if t.RootName != "" {
			tableMeta[singer.MetaPartitionRoot] = streamID(t.Database, t.RootSchema, t.RootName)
		}
	}
	var validKeys []string
	metadata := []*singer.Metadata{{Breadcrumb: []string{}, Metadata: tableMeta}}
	for _, c := range t.Columns {
		inclusion := singer.InclusionAvailable
		switch {
		case !c.Type.Supported():
			inclusion = singer.InclusionUnsupported
		case slices.Contains(t.PrimaryKey, c.Name):
			inclusion = singer.InclusionAutomatic
		}
		if inclusion != singer.InclusionUnsupported && c.Type.Kind != types.KindArray &&
			c.Type.Kind != types.KindJSON && c.Type.Kind != types.KindHstore {
			validKeys = append(validKeys, c.Name)
		}
		metadata = append(metadata, &singer.Metadata{
			Breadcrumb: []string{"properties", c.Name},
			Metadata: map[string]any{
				singer.MetaSQLDatatype:       c.CatalogType,
				singer.MetaInclusion:         inclusion,
				singer.MetaSelectedByDefault: inclusion != singer.InclusionUnsupported,
			},
		})
	}
	if validKeys != nil {
		tableMeta[singer.MetaValidReplKeys] = validKeys
	}
	schema := streamSchema(t, t.Columns, nil)
	raw, err := jsonMarshal(schema)
	if err != nil {
		return nil, fmt.Errorf("schema of %s: %w", id, err)
	}
	return &singer.Stream{TapStreamID: id, Stream: t.Name, TableName: t.Name, Schema: raw, Metadata: metadata}, nil
}

// streamSchema describes the given columns (plus extra log-based columns).
func streamSchema(t *discovery.Table, cols []*discovery.Column, extra types.Properties) *types.StreamSchema {
	used := map[string]bool{}
	props := make(types.Properties, 0, len(cols)+len(extra))
	for _, c := range cols {
		key := slices.Contains(t.PrimaryKey, c.Name)
		s, defs := c.Type.ColumnSchema(!key && !c.NotNull)
		for _, d := range defs {
			used[d] = true
		}
		props = append(props, types.Property{Name: c.Name, Schema: s})
	}
	props = append(props, extra...)
	return &types.StreamSchema{Type: "object", Properties: props, Definitions: types.DefinitionsFor(used)}
}
