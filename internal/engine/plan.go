package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tap-postgres/tap-postgres/internal/config"
	"github.com/tap-postgres/tap-postgres/internal/discovery"
	"github.com/tap-postgres/tap-postgres/internal/singer"
)

// Replication methods (spelled once, in config).
const (
	MethodFullTable   = config.MethodFullTable
	MethodIncremental = config.MethodIncremental
	MethodLogBased    = config.MethodLogBased
)

// streamPlan is one selected stream resolved against the live table.
type streamPlan struct {
	id       string
	database string
	schema   string
	table    string
	// name is the stream name in messages.
	name   string
	method string
	// live is the table as it is now; columns are the ones synced, in table
	// order.
	live    *discovery.Table
	columns []*discovery.Column
	// keyProperties go to SCHEMA's key_properties.
	keyProperties []string
	// replicationKey is INCREMENTAL's ordering column.
	replicationKey string
}

// planSelected reads the catalog's selected streams. Tables are resolved
// later, per database, by resolveTables.
func (e *Engine) planSelected(catalog *singer.Catalog) ([]*streamPlan, error) {
	var plans []*streamPlan
	var problems []error
	for _, s := range catalog.Streams {
		meta := s.TableMeta()
		selected, _, err := meta.Bool(singer.MetaSelected)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		if !selected {
			continue
		}
		if catalog.Count(s.TapStreamID) > 1 {
			problems = append(problems, fmt.Errorf("stream %s is ambiguous: several tables map to this tap_stream_id (hyphens in schema or table names); it cannot be synced", s.TapStreamID))
			continue
		}
		p, err := e.planStream(s, meta)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		plans = append(plans, p)
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	slices.SortFunc(plans, func(a, b *streamPlan) int { return cmp.Compare(a.id, b.id) })
	return plans, nil
}

func (e *Engine) planStream(s *singer.Stream, meta singer.Meta) (*streamPlan, error) {
	p := &streamPlan{id: s.TapStreamID}
	var err error
	if p.method, err = meta.String(singer.MetaReplicationMethod); err != nil {
		return nil, err
	}
	p.method = strings.ToUpper(strings.TrimSpace(p.method))
	if p.method == "" {
		p.method = e.cfg.DefaultReplicationMethod
	}
	switch p.method {
	case "":
		return nil, fmt.Errorf("stream %s is selected but has no replication-method metadata and the config has no default_replication_method", s.TapStreamID)
	case MethodFullTable:
	case MethodIncremental:
		if p.replicationKey, err = meta.String(singer.MetaReplicationKey); err != nil {
			return nil, err
		}
		if p.replicationKey == "" {
			return nil, fmt.Errorf("stream %s uses INCREMENTAL replication but has no replication-key metadata", s.TapStreamID)
		}
	case MethodLogBased:
	default:
		return nil, fmt.Errorf("stream %s: unknown replication-method %q (FULL_TABLE, INCREMENTAL or LOG_BASED)", s.TapStreamID, p.method)
	}
	if p.database, err = meta.String(singer.MetaDatabaseName); err != nil {
		return nil, err
	}
	if p.schema, err = meta.String(singer.MetaSchemaName); err != nil {
		return nil, err
	}
	p.table = cmp.Or(s.TableName, s.Stream)
	if p.database == "" || p.schema == "" || p.table == "" {
		return nil, fmt.Errorf("stream %s: catalog entry lacks database-name, schema-name or table_name; run discovery again", s.TapStreamID)
	}
	p.name = StreamName(s, e.cfg.IncludeSchemasInDestinationStreamName)
	return p, nil
}

// StreamName is the stream name the tap's messages carry for a catalog
// stream: its stream (else its table), as `<schema>_<stream>` with
// include_schemas_in_destination_stream_name (the reference's single
// underscore).
func StreamName(s *singer.Stream, includeSchema bool) string {
	name := cmp.Or(s.Stream, s.TableName)
	if !includeSchema {
		return name
	}
	schema, _ := s.TableMeta().String(singer.MetaSchemaName)
	return schema + "_" + name
}

// ReadsWholeTable tells whether a sync reads a stream's whole table, given
// its method, replication key and committed bookmark: FULL_TABLE always; a
// first, reset or unfinished LOG_BASED copy; INCREMENTAL without a key
// value; and any stream whose method or key changed, as that wipes the
// bookmark.
func ReadsWholeTable(method, replicationKey string, bm *singer.Bookmark) bool {
	switch {
	case bm == nil || method == MethodFullTable:
		return true
	case bm.LastReplicationMethod != "" && bm.LastReplicationMethod != method:
		return true
	case method == MethodIncremental:
		return len(bm.ReplicationKeyValue) == 0 || bm.ReplicationKey != "" && bm.ReplicationKey != replicationKey
	}
	return !logCopyDone(bm)
}

// logCopyDone tells a LOG_BASED stream whose copy finished (streaming goes
// on from its lsn) from one still to copy or resume.
func logCopyDone(bm *singer.Bookmark) bool {
	return bm.LSN != 0 && bm.Version != 0 && !bm.CopyInProgress && bm.LastPKFetched == nil && !bm.ReferenceCopyInterrupted
}

// resolveTables loads the live tables of one database's plans and chooses
// their synced columns and keys.
func (e *Engine) resolveTables(ctx context.Context, db string, plans []*streamPlan, catalog *singer.Catalog) error {
	conn, err := e.conn.Connect(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	names := make([][2]string, len(plans))
	for i, p := range plans {
		names[i] = [2]string{p.schema, p.table}
	}
	tables, err := discovery.Tables(ctx, conn, discovery.Filter{Names: names}, e.typeOptions())
	if err != nil {
		return err
	}
	var problems []error
	for _, p := range plans {
		i := slices.IndexFunc(tables, func(t *discovery.Table) bool { return t.Schema == p.schema && t.Name == p.table })
		if i < 0 {
			problems = append(problems, fmt.Errorf("selected stream %s no longer exists: table %q.%q is missing or not readable in database %q",
				p.id, p.schema, p.table, db))
			continue
		}
		p.live = tables[i]
		if err := e.chooseColumns(p, catalog.Lookup(p.id)); err != nil {
			problems = append(problems, err)
		}
	}
	return errors.Join(problems...)
}

// chooseColumns applies the README's column rules ("Catalog"): automatic always, unsupported
// never, available unless `selected: false`. Columns the catalog does not
// know yet (added since discovery) are synced rather than silently dropped.
func (e *Engine) chooseColumns(p *streamPlan, s *singer.Stream) error {
	t := p.live
	for _, c := range t.Columns {
		if !c.Type.Supported() {
			continue
		}
		meta, known := s.ColumnMeta(c.Name)
		if slices.Contains(t.PrimaryKey, c.Name) || c.Name == p.replicationKey {
			p.columns = append(p.columns, c)
			continue
		}
		if !known {
			e.log.Info(fmt.Sprintf("stream %s: column %q is not in the catalog (added since discovery?); syncing it", p.id, c.Name))
			p.columns = append(p.columns, c)
			continue
		}
		selected, present, err := meta.Bool(singer.MetaSelected)
		if err != nil {
			return err
		}
		if !present {
			if selected, present, err = meta.Bool(singer.MetaSelectedByDefault); err != nil {
				return err
			}
			selected = selected || !present
		}
		if selected {
			p.columns = append(p.columns, c)
		}
	}
	for _, m := range s.Metadata {
		if len(m.Breadcrumb) == 2 && m.Breadcrumb[0] == "properties" && t.Column(m.Breadcrumb[1]) == nil {
			e.log.Warn(fmt.Sprintf("stream %s: catalog column %q no longer exists in the table; skipping it", p.id, m.Breadcrumb[1]))
		}
	}
	if p.replicationKey != "" {
		rk := t.Column(p.replicationKey)
		if rk == nil {
			return fmt.Errorf("stream %s: replication-key %q is not a column of %q.%q (or is not readable)", p.id, p.replicationKey, t.Schema, t.Name)
		}
		if !rk.Type.Supported() {
			return fmt.Errorf("stream %s: replication-key %q has an unsupported type %s", p.id, p.replicationKey, rk.SQLType)
		}
	}
	if len(p.columns) == 0 {
		return fmt.Errorf("stream %s: no column selected", p.id)
	}
	meta := s.TableMeta()
	var err error
	if t.IsView() {
		if p.keyProperties, err = meta.Strings(singer.MetaViewKeyProperties); err != nil {
			return err
		}
	} else {
		if p.keyProperties, err = meta.Strings(singer.MetaTableKeyProperties); err != nil {
			return err
		}
		if p.keyProperties == nil {
			p.keyProperties = t.PrimaryKey
		}
	}
	for _, k := range p.keyProperties {
		if !slices.ContainsFunc(p.columns, func(c *discovery.Column) bool { return c.Name == k }) {
			return fmt.Errorf("stream %s: key property %q is not a synced column", p.id, k)
		}
	}
	return nil
}
