package runner

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tap-postgres/tap-postgres/internal/singer"

	"github.com/tap-postgres/tap-postgres/internal/engine"
)

// applySelections marks what the integration selects in a freshly discovered
// catalog. Select all takes every table but views, and partitioned roots
// rather than their partitions, each LOG_BASED; tables created since the
// last job are picked up because every job discovers again. Columns are all
// synced unless a selection lists them (new columns included).
//
// A selected table that is missing or whose listed columns are not there is
// left out of this job (skipped), so that the other tables go on; a
// LOG_BASED one stops the job instead (fatal): the database's slot would
// move past its changes.
func (in *Integration) applySelections(cat *singer.Catalog) (skipped []error, fatal error) {
	var skips, fatals []error
	problem := func(method string, err error) {
		if strings.ToUpper(cmp.Or(method, in.DefaultReplicationMethod)) == engine.MethodLogBased {
			fatals = append(fatals, err)
		} else {
			skips = append(skips, err)
		}
	}
	for _, sel := range in.Tables {
		db := sel.Database
		if db == "" {
			db = in.config.DBName
		}
		found := false
		for _, s := range cat.Streams {
			meta := s.TableMeta()
			schemaName, _ := meta.String(singer.MetaSchemaName)
			dbName, _ := meta.String(singer.MetaDatabaseName)
			if dbName != db || schemaName != sel.Schema || s.TableName != sel.Table {
				continue
			}
			found = true
			s.SetEntry(singer.MetaSelected, true)
			if m := sel.ReplicationMethod; m != "" {
				s.SetEntry(singer.MetaReplicationMethod, strings.ToUpper(m))
			}
			if sel.ReplicationKey != "" {
				s.SetEntry(singer.MetaReplicationKey, sel.ReplicationKey)
			}
			if sel.ViewKey != nil {
				s.SetEntry(singer.MetaViewKeyProperties, sel.ViewKey)
			}
			if sel.Columns != nil {
				if err := selectColumns(s, sel); err != nil {
					s.SetEntry(singer.MetaSelected, false)
					problem(sel.ReplicationMethod, err)
				}
			}
		}
		if !found {
			problem(sel.ReplicationMethod, fmt.Errorf("table %s.%s.%s is selected but was not discovered (missing, or not readable by the user)", db, sel.Schema, sel.Table))
		}
	}
	if in.SelectAll {
		for _, s := range cat.Streams {
			meta := s.TableMeta()
			isView, _, _ := meta.Bool(singer.MetaIsView)
			isPartition, _, _ := meta.Bool(singer.MetaIsPartition)
			if isView || isPartition {
				continue
			}
			if selected, _, _ := meta.Bool(singer.MetaSelected); !selected {
				s.SetEntry(singer.MetaSelected, true)
				s.SetEntry(singer.MetaReplicationMethod, engine.MethodLogBased)
			}
		}
	}
	return skips, errors.Join(fatals...)
}

// selectColumns deselects the columns a selection does not list; key
// columns stay (they are always synced).
func selectColumns(s *singer.Stream, sel Selection) error {
	var known []string
	for _, m := range s.Metadata {
		if len(m.Breadcrumb) != 2 || m.Breadcrumb[0] != "properties" {
			continue
		}
		name := m.Breadcrumb[1]
		known = append(known, name)
		m.Metadata[singer.MetaSelected] = slices.Contains(sel.Columns, name)
	}
	var problems []error
	for _, c := range sel.Columns {
		if !slices.Contains(known, c) {
			problems = append(problems, fmt.Errorf("table %s.%s: selected column %q does not exist (or is not readable)", sel.Schema, sel.Table, c))
		}
	}
	return errors.Join(problems...)
}
