// Package discovery reads what a database holds from its system catalogs:
// databases, relations, readable columns, primary keys and resolved column
// types. It is the PostgreSQL side and knows nothing of Singer.
package discovery

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/tap-postgres/tap-postgres/internal/types"
)

// Relation kinds (pg_class.relkind).
const (
	KindTable            = 'r'
	KindPartitionedTable = 'p'
	KindView             = 'v'
	KindMaterializedView = 'm'
)

// Table is one relation the user can read.
type Table struct {
	Database, Schema, Name string
	OID                    uint32
	Kind                   byte
	IsPartition            bool
	// RootSchema and RootName name a partition's partitioned root.
	RootSchema, RootName string
	RowCount             int64
	// ReplicaIdentityFull is set for REPLICA IDENTITY FULL tables.
	ReplicaIdentityFull bool
	Columns             []*Column
	// PrimaryKey lists key columns in key order; empty when the table has no
	// primary key or the user cannot read all of its columns.
	PrimaryKey []string
}

// IsView is true for views and materialized views.
func (t *Table) IsView() bool { return t.Kind == KindView || t.Kind == KindMaterializedView }

// Column returns the named column, or nil.
func (t *Table) Column(name string) *Column {
	for _, c := range t.Columns {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Column is one column the user may SELECT.
type Column struct {
	Name    string
	Num     int16
	NotNull bool
	// SQLType is format_type(atttypid, atttypmod): what change streams name.
	SQLType string
	// CatalogType is the catalog's sql-datatype, the reference tap's text:
	// format_type without typmod (numeric, character varying), except
	// bit(N) for a bit string longer than one.
	CatalogType string
	// TypeOID is atttypid, TypeMod atttypmod.
	TypeOID uint32
	TypeMod int32
	Type    *types.Type
	// Generated: a generated column (attgenerated), whose value change
	// streams may not carry (pgoutput before PostgreSQL 18 never does).
	Generated bool
}

// Databases lists the databases to discover: not templates, not rdsadmin,
// accepting connections, narrowed by filter when it is not empty.
func Databases(ctx context.Context, conn *pgx.Conn, filter []string) ([]string, error) {
	rows, err := conn.Query(ctx, `
		SELECT datname FROM pg_database
		WHERE NOT datistemplate AND datallowconn AND datname <> 'rdsadmin'
		  AND (cardinality($1::text[]) = 0 OR datname = ANY($1::text[]))
		ORDER BY datname`, nonNil(filter))
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	dbs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	return dbs, nil
}

// Filter narrows Tables. Empty fields mean no narrowing.
type Filter struct {
	Schemas []string
	// Names are schema-qualified tables: {schema, table}.
	Names [][2]string
}

// Tables reads every relation of the connected database that the filter
// admits and the user can read, with readable columns and resolved types.
// Tables without a readable column are left out.
func Tables(ctx context.Context, conn *pgx.Conn, filter Filter, opts types.Options) ([]*Table, error) {
	db := conn.Config().Database
	var version int
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
		return nil, fmt.Errorf("discover %s: server version: %w", db, err)
	}
	tables, err := relations(ctx, conn, db, filter, version)
	if err != nil {
		return nil, fmt.Errorf("discover %s: relations: %w", db, err)
	}
	if len(tables) == 0 {
		return nil, nil
	}
	byOID := make(map[uint32]*Table, len(tables))
	oids := make([]uint32, 0, len(tables))
	for _, t := range tables {
		byOID[t.OID] = t
		oids = append(oids, t.OID)
	}
	lookup, err := typeLookup(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("discover %s: types: %w", db, err)
	}
	if err := loadColumns(ctx, conn, byOID, oids, lookup, opts); err != nil {
		return nil, fmt.Errorf("discover %s: columns: %w", db, err)
	}
	if err := loadPrimaryKeys(ctx, conn, byOID, oids); err != nil {
		return nil, fmt.Errorf("discover %s: primary keys: %w", db, err)
	}
	return slices.DeleteFunc(tables, func(t *Table) bool { return len(t.Columns) == 0 }), nil
}

func relations(ctx context.Context, conn *pgx.Conn, db string, filter Filter, version int) ([]*Table, error) {
	// pg_partition_root and pg_partition_tree arrived in PostgreSQL 12.
	rootExpr, countExpr := `NULL::oid`, `c.reltuples`
	if version >= 120000 {
		rootExpr = `CASE WHEN c.relispartition THEN pg_partition_root(c.oid) END`
		countExpr = `CASE WHEN c.relkind = 'p' THEN (SELECT coalesce(sum(GREATEST(p.reltuples, 0)), 0)
			FROM pg_partition_tree(c.oid) pt JOIN pg_class p ON p.oid = pt.relid WHERE pt.isleaf)
			ELSE c.reltuples END`
	}
	schemas, names, tables := nonNil(filter.Schemas), []string{}, []string{}
	for _, n := range filter.Names {
		names, tables = append(names, n[0]), append(tables, n[1])
	}
	rows, err := conn.Query(ctx, `
		WITH rel AS (
			SELECT c.oid, n.nspname, c.relname, c.relkind::text AS relkind, c.relispartition,
			       GREATEST(`+countExpr+`, 0)::bigint AS row_count,
			       c.relreplident = 'f' AS replica_identity_full,
			       `+rootExpr+` AS root
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE c.relkind IN ('r', 'p', 'v', 'm')
			  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
			  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
			  AND has_schema_privilege(n.oid, 'USAGE')
			  AND (cardinality($1::text[]) = 0 OR n.nspname = ANY($1::text[]))
			  AND (cardinality($2::text[]) = 0 OR (n.nspname, c.relname) IN (SELECT * FROM unnest($2::text[], $3::text[])))
		)
		SELECT rel.oid, rel.nspname, rel.relname, rel.relkind, rel.relispartition, rel.row_count,
		       rel.replica_identity_full, coalesce(rn.nspname, ''), coalesce(rc.relname, '')
		FROM rel
		LEFT JOIN pg_class rc ON rc.oid = rel.root AND rc.oid <> rel.oid
		LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace`, schemas, names, tables)
	if err != nil {
		return nil, err
	}
	var out []*Table
	for rows.Next() {
		t := &Table{Database: db}
		var kind string
		if err := rows.Scan(&t.OID, &t.Schema, &t.Name, &kind, &t.IsPartition, &t.RowCount,
			&t.ReplicaIdentityFull, &t.RootSchema, &t.RootName); err != nil {
			rows.Close()
			return nil, err
		}
		t.Kind = kind[0]
		out = append(out, t)
	}
	return out, rows.Err()
}

func typeLookup(ctx context.Context, conn *pgx.Conn) (types.Lookup, error) {
	rows, err := conn.Query(ctx, `
		SELECT oid, typname, typtype::text, typcategory::text, typelem, typbasetype, typtypmod, typdelim::text
		FROM pg_type`)
	if err != nil {
		return nil, err
	}
	all := map[uint32]types.CatalogType{}
	for rows.Next() {
		var ct types.CatalogType
		var typ, cat, delim string
		if err := rows.Scan(&ct.OID, &ct.Name, &typ, &cat, &ct.Elem, &ct.BaseType, &ct.BaseTypmod, &delim); err != nil {
			rows.Close()
			return nil, err
		}
		ct.Type, ct.Category, ct.Delim = firstByte(typ), firstByte(cat), firstByte(delim)
		all[ct.OID] = ct
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return func(oid uint32) (types.CatalogType, bool) {
		ct, ok := all[oid]
		return ct, ok
	}, nil
}

func loadColumns(ctx context.Context, conn *pgx.Conn, byOID map[uint32]*Table, oids []uint32, lookup types.Lookup, opts types.Options) error {
	rows, err := conn.Query(ctx, `
		SELECT a.attrelid, a.attname, a.attnum, a.atttypid, a.atttypmod, a.attnotnull,
		       format_type(a.atttypid, a.atttypmod),
		       CASE WHEN a.atttypid = 'bit'::regtype AND a.atttypmod > 1
		            THEN format_type(a.atttypid, a.atttypmod)
		            ELSE format_type(a.atttypid, NULL) END,
		       a.attgenerated <> ''
		FROM pg_attribute a
		WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
		  AND has_column_privilege(a.attrelid, a.attnum, 'SELECT')
		ORDER BY a.attrelid, a.attnum`, oids)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var rel uint32
		c := &Column{}
		if err := rows.Scan(&rel, &c.Name, &c.Num, &c.TypeOID, &c.TypeMod, &c.NotNull, &c.SQLType, &c.CatalogType, &c.Generated); err != nil {
			return err
		}
		t := byOID[rel]
		c.Type, err = types.Resolve(c.TypeOID, c.TypeMod, lookup, opts)
		if err != nil {
			return fmt.Errorf("%s.%s column %s: %w", t.Schema, t.Name, c.Name, err)
		}
		t.Columns = append(t.Columns, c)
	}
	return rows.Err()
}

func loadPrimaryKeys(ctx context.Context, conn *pgx.Conn, byOID map[uint32]*Table, oids []uint32) error {
	rows, err := conn.Query(ctx, `
		SELECT con.conrelid, array_agg(a.attname ORDER BY k.ord)
		FROM pg_constraint con
		CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
		JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
		WHERE con.contype = 'p' AND con.conrelid = ANY($1::oid[])
		GROUP BY con.conrelid`, oids)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var rel uint32
		var key []string
		if err := rows.Scan(&rel, &key); err != nil {
			return err
		}
		t := byOID[rel]
		// A key the user cannot fully read cannot order or identify rows.
		if !slices.ContainsFunc(key, func(k string) bool { return t.Column(k) == nil }) {
			t.PrimaryKey = key
		}
	}
	return rows.Err()
}

func firstByte(s string) byte {
	if s == "" {
		return 0
	}
	return s[0]
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// ColumnNames lists the columns of schema.table the user may read, as the
// table is now: one light query, for the log path that asks once per
// transaction whether a column a change lacks still exists.
func ColumnNames(ctx context.Context, conn *pgx.Conn, schema, table string) ([]string, error) {
	rows, err := conn.Query(ctx, `
		SELECT attname FROM pg_attribute
		WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped
		  AND has_column_privilege(attrelid, attnum, 'SELECT')
		ORDER BY attnum`, pgx.Identifier{schema, table}.Sanitize())
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// ResolveLogType resolves a column type as wal2json reports it at the time
// of a change: its format_type name and OID. The name carries the typmod
// (numeric(12,2), bit(1)) and is used when it denotes that very OID; names
// that do not resolve back to it ("char", types outside the search path)
// fall back to the OID alone. It returns the typmod the name carries (-1
// for none).
func ResolveLogType(ctx context.Context, conn *pgx.Conn, name string, oid uint32, opts types.Options) (*types.Type, int32, error) {
	lookup, err := typeLookup(ctx, conn)
	if err != nil {
		return nil, 0, fmt.Errorf("resolve type %q: %w", name, err)
	}
	var named uint32
	// regtype input accepts nothing but a type name, so the cast below
	// cannot run anything else.
	if err := conn.QueryRow(ctx, `SELECT to_regtype($1)::oid`, name).Scan(&named); err != nil || named == 0 || oid != 0 && named != oid {
		if oid == 0 {
			return nil, 0, fmt.Errorf("resolve type %q: not a type name", name)
		}
		t, err := types.Resolve(oid, -1, lookup, opts)
		return t, -1, err
	}
	rr := conn.PgConn().ExecParams(ctx, "SELECT NULL::"+name, nil, nil, nil, nil)
	// The descriptions live in the connection's buffers: read them first.
	fields := rr.FieldDescriptions()
	if len(fields) != 1 {
		rr.Close()
		return nil, 0, fmt.Errorf("resolve type %q: no result column", name)
	}
	typeOID, typmod := fields[0].DataTypeOID, fields[0].TypeModifier
	if _, err := rr.Close(); err != nil {
		return nil, 0, fmt.Errorf("resolve type %q: %w", name, err)
	}
	t, err := types.Resolve(typeOID, typmod, lookup, opts)
	return t, typmod, err
}

// ResolveTypeMod resolves a column type given by OID and typmod (as
// pgoutput's Relation messages give it), with its format_type name.
func ResolveTypeMod(ctx context.Context, conn *pgx.Conn, oid uint32, typmod int32, opts types.Options) (*types.Type, string, error) {
	lookup, err := typeLookup(ctx, conn)
	if err != nil {
		return nil, "", fmt.Errorf("resolve type %d: %w", oid, err)
	}
	var name string
	if err := conn.QueryRow(ctx, `SELECT format_type($1::oid, $2::int4)`, oid, typmod).Scan(&name); err != nil {
		return nil, "", fmt.Errorf("resolve type %d: %w", oid, err)
	}
	t, err := types.Resolve(oid, typmod, lookup, opts)
	return t, name, err
}
