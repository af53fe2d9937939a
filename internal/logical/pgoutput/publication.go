package pgoutput

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Table is a selected table, as the publication must hold it.
type Table struct {
	Schema, Name string
	// Partitioned: a partitioned root, whose changes the publication holds
	// through the root (publish_via_partition_root) or through its
	// partitions.
	Partitioned bool
}

// Publication is a publication as pg_publication describes it.
type Publication struct {
	Name                             string
	AllTables, ViaRoot               bool
	Insert, Update, Delete, Truncate bool
	tables                           map[[2]string]publishedTable
}

// publishedTable is a row of pg_publication_tables: from PostgreSQL 15 a
// publication may send only some columns (attnames) and rows (rowfilter).
type publishedTable struct {
	Columns   []string `json:"attnames"`
	RowFilter *string  `json:"rowfilter"`
}

// PublicationName is the publication a slot streams: the configured name
// ({dbname} replaced), else the slot's name.
func PublicationName(configured, slot, db string) string {
	if configured == "" {
		return slot
	}
	return strings.ReplaceAll(configured, "{dbname}", db)
}

// ReadPublication reads a publication and the tables it publishes; nil when
// there is none of that name.
func ReadPublication(ctx context.Context, conn *pgx.Conn, name string) (*Publication, error) {
	// to_jsonb reads whichever columns this server's pg_publication has
	// (pubtruncate from 11, pubviaroot from 13).
	var doc []byte
	err := conn.QueryRow(ctx, `SELECT to_jsonb(p) FROM pg_publication p WHERE pubname = $1`, name).Scan(&doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read publication %s: %w", name, err)
	}
	var row struct {
		AllTables bool  `json:"puballtables"`
		Insert    bool  `json:"pubinsert"`
		Update    bool  `json:"pubupdate"`
		Delete    bool  `json:"pubdelete"`
		Truncate  *bool `json:"pubtruncate"`
		ViaRoot   bool  `json:"pubviaroot"`
	}
	if err := json.Unmarshal(doc, &row); err != nil {
		return nil, fmt.Errorf("read publication %s: %w", name, err)
	}
	p := &Publication{Name: name, AllTables: row.AllTables, ViaRoot: row.ViaRoot, Insert: row.Insert, Update: row.Update,
		Delete: row.Delete, Truncate: row.Truncate == nil || *row.Truncate, tables: map[[2]string]publishedTable{}}
	// to_jsonb again: attnames and rowfilter exist from PostgreSQL 15.
	rows, err := conn.Query(ctx, `SELECT schemaname, tablename, to_jsonb(pt) FROM pg_publication_tables pt WHERE pubname = $1`, name)
	if err != nil {
		return nil, fmt.Errorf("read the tables of publication %s: %w", name, err)
	}
	for rows.Next() {
		var t [2]string
		var entry []byte
		var pt publishedTable
		err := rows.Scan(&t[0], &t[1], &entry)
		if err == nil {
			err = json.Unmarshal(entry, &pt)
		}
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("read the tables of publication %s: %w", name, err)
		}
		p.tables[t] = pt
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the tables of publication %s: %w", name, err)
	}
	return p, nil
}

// Missing lists the tables whose changes the publication does not send. A
// partitioned root counts when the publication holds it or every one of
// its partitions.
func (p *Publication) Missing(ctx context.Context, conn *pgx.Conn, tables []Table) ([]Table, error) {
	var missing []Table
	for _, t := range tables {
		if _, ok := p.tables[[2]string{t.Schema, t.Name}]; ok {
			continue
		}
		if t.Partitioned {
			leaves, err := partitions(ctx, conn, t)
			if err != nil {
				return nil, err
			}
			all := len(leaves) > 0
			for _, l := range leaves {
				_, ok := p.tables[l]
				all = all && ok
			}
			if all {
				continue
			}
		}
		missing = append(missing, t)
	}
	return missing, nil
}

func partitions(ctx context.Context, conn *pgx.Conn, t Table) ([][2]string, error) {
	rows, err := conn.Query(ctx, `
		SELECT n.nspname, c.relname FROM pg_partition_tree(to_regclass($1)) pt
		JOIN pg_class c ON c.oid = pt.relid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE pt.isleaf`, pgx.Identifier{t.Schema, t.Name}.Sanitize())
	if err != nil {
		return nil, fmt.Errorf("list the partitions of %s: %w", pgx.Identifier{t.Schema, t.Name}.Sanitize(), err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) ([2]string, error) {
		var l [2]string
		return l, row.Scan(&l[0], &l[1])
	})
}

// Restriction is what a publication leaves out of a table it publishes.
type Restriction struct {
	// Schema and Name are the table the restriction is on: the selected
	// table, or one of its partitions.
	Schema, Name string
	// RowFilter is the WHERE clause rows must pass; empty for none.
	RowFilter string
	// Hidden are selected columns the column list leaves out.
	Hidden []string
}

// Restrictions lists the row filters and column lists that keep rows or
// selected columns of t (or, for a partitioned root published through its
// partitions, of a partition) out of the stream.
func (p *Publication) Restrictions(ctx context.Context, conn *pgx.Conn, t Table, columns []string) ([]Restriction, error) {
	entries := [][2]string{{t.Schema, t.Name}}
	if _, ok := p.tables[entries[0]]; !ok && t.Partitioned {
		leaves, err := partitions(ctx, conn, t)
		if err != nil {
			return nil, err
		}
		entries = leaves
	}
	var out []Restriction
	for _, e := range entries {
		pt, ok := p.tables[e]
		if !ok {
			continue
		}
		r := Restriction{Schema: e[0], Name: e[1]}
		if pt.RowFilter != nil {
			r.RowFilter = *pt.RowFilter
		}
		if pt.Columns != nil {
			for _, c := range columns {
				if !slices.Contains(pt.Columns, c) {
					r.Hidden = append(r.Hidden, c)
				}
			}
		}
		if r.RowFilter != "" || r.Hidden != nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// Unpublished names the kinds of change the publication leaves out.
func (p *Publication) Unpublished() []string {
	var out []string
	for _, k := range []struct {
		name string
		on   bool
	}{{"insert", p.Insert}, {"update", p.Update}, {"delete", p.Delete}, {"truncate", p.Truncate}} {
		if !k.on {
			out = append(out, k.name)
		}
	}
	return out
}

// KeylessTables lists the published tables (partitions of published roots
// included) without a primary key, replica identity index or REPLICA
// IDENTITY FULL: PostgreSQL refuses UPDATE and DELETE on them while the
// publication publishes those.
func (p *Publication) KeylessTables(ctx context.Context, conn *pgx.Conn) ([][2]string, error) {
	if !p.Update && !p.Delete {
		return nil, nil
	}
	rows, err := conn.Query(ctx, `
		WITH published AS (
			SELECT c.oid FROM pg_publication_tables pt
			JOIN pg_namespace n ON n.nspname = pt.schemaname
			JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
			WHERE pt.pubname = $1),
		leaves AS (
			SELECT oid FROM published
			UNION SELECT t.relid FROM published, pg_partition_tree(published.oid) t WHERE t.isleaf)
		SELECT n.nspname, c.relname FROM leaves l
		JOIN pg_class c ON c.oid = l.oid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND (c.relreplident = 'n' OR c.relreplident = 'd' AND NOT EXISTS (
			SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
		ORDER BY 1, 2`, p.Name)
	if err != nil {
		return nil, fmt.Errorf("find keyless tables of publication %s: %w", p.Name, err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) ([2]string, error) {
		var t [2]string
		return t, row.Scan(&t[0], &t[1])
	})
}
