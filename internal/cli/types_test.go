package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tap-postgres/tap-postgres/internal/cli"
	"github.com/tap-postgres/tap-postgres/internal/connect"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

// typeColumn is one column of the every-type table and how PostgreSQL itself
// computes the JSON we must emit for it.
type typeColumn struct {
	name, sqlType string
	// expected is a SQL expression (with %[1]s for the column) giving the
	// expected JSON value; NULL columns are handled around it.
	expected string
	// float compares numbers as float64 (PostgreSQL and Go disagree on
	// exponent spelling, not on value).
	float bool
}

const (
	asNumber = `CASE WHEN %[1]s::text IN ('NaN', 'Infinity', '-Infinity') THEN 'null'::json ELSE to_json(%[1]s) END`
	// asOutput is the type's output function; asText for types to_json
	// would turn into JSON structure (json, jsonb, composites).
	asOutput = `to_json(%[1]s)`
	asText   = `to_json(%[1]s::text)`
	// Timestamps: UTC, fraction only when non-zero (6 digits), clamped.
	tsExpr = `CASE WHEN %[1]s = 'infinity' OR %[1]s >= '10000-01-01' THEN '9999-12-31T23:59:59.999999+00:00'
		WHEN %[1]s = '-infinity' OR %[1]s < '0001-01-01' THEN '0001-01-01T00:00:00+00:00'
		ELSE to_char(%[1]s, 'YYYY-MM-DD"T"HH24:MI:SS')
		  || CASE WHEN extract(microseconds FROM %[1]s)::bigint %% 1000000 <> 0 THEN to_char(%[1]s, '.US') ELSE '' END
		  || '+00:00' END`
	dateExpr = `CASE WHEN %[1]s = 'infinity' OR %[1]s >= '10000-01-01' THEN '9999-12-31T00:00:00+00:00'
		WHEN %[1]s = '-infinity' OR %[1]s < '0001-01-01' THEN '0001-01-01T00:00:00+00:00'
		ELSE to_char(%[1]s, 'YYYY-MM-DD') || 'T00:00:00+00:00' END`
	timeExpr = `to_char(date '2000-01-01' + %[1]s, 'HH24:MI:SS')
		|| CASE WHEN extract(microseconds FROM %[1]s)::bigint %% 1000000 <> 0 THEN to_char(date '2000-01-01' + %[1]s, '.US') ELSE '' END`
)

func arrayOf(elemExpr string) string {
	return `coalesce((SELECT json_agg(` + strings.ReplaceAll(elemExpr, "%[1]s", "x") + `) FROM unnest(%[1]s) x), '[]'::json)`
}

func everyTypeColumns() []typeColumn {
	columns := allTypeColumns()
	if pg.Major() < 15 {
		// A numeric with a negative scale is PostgreSQL 15's.
		columns = slices.DeleteFunc(columns, func(c typeColumn) bool { return c.name == "c_numeric_neg_scale" })
	}
	if pg.Major() < 14 {
		// Numeric infinities and multiranges are PostgreSQL 14's.
		columns = slices.DeleteFunc(columns, func(c typeColumn) bool { return c.name == "c_numeric_inf" || c.name == "c_int4multirange" })
	}
	return columns
}

func allTypeColumns() []typeColumn {
	return []typeColumn{
		{"c_smallint", "smallint", asNumber, false},
		{"c_integer", "integer", asNumber, false},
		{"c_bigint", "bigint", asNumber, false},
		{"c_serial", "serial", asNumber, false},
		{"c_numeric", "numeric", asNumber, false},
		{"c_numeric_12_2", "numeric(12,2)", asNumber, false},
		{"c_numeric_38_0", "numeric(38,0)", asNumber, false},
		{"c_numeric_neg_scale", "numeric(3,-2)", asNumber, false},
		{"c_numeric_inf", "numeric", asNumber, false},
		{"c_real", "real", asNumber, true},
		{"c_double", "double precision", asNumber, true},
		{"c_bool", "boolean", `to_json(%[1]s)`, false},
		{"c_bit1", "bit(1)", `to_json(%[1]s = B'1')`, false},
		{"c_bit8", "bit(8)", asOutput, false},
		{"c_varbit", "bit varying(16)", asOutput, false},
		{"c_text", "text", asOutput, false},
		{"c_varchar", "character varying(20)", asOutput, false},
		{"c_char", "character(5)", asOutput, false},
		{"c_citext", "citext", asOutput, false},
		{"c_name", "name", asOutput, false},
		{"c_uuid", "uuid", asOutput, false},
		{"c_mood", "mood", asOutput, false},
		{"c_json", "json", asText, false},
		{"c_jsonb", "jsonb", asText, false},
		{"c_hstore", "hstore", `hstore_to_json(%[1]s)`, false},
		{"c_date", "date", `to_json(` + dateExpr + `)`, false},
		{"c_ts", "timestamp without time zone", `to_json(` + tsExpr + `)`, false},
		{"c_tstz", "timestamp with time zone", `to_json(` + strings.ReplaceAll(tsExpr, "%[1]s", "(%[1]s AT TIME ZONE 'UTC')") + `)`, false},
		{"c_time", "time without time zone", `to_json(` + timeExpr + `)`, false},
		{"c_timetz", "time with time zone", `to_json(` + strings.ReplaceAll(timeExpr, "%[1]s", "%[1]s::time") +
			` || regexp_replace(substring(%[1]s::text from '[+-][0-9:]+$'), '^([+-][0-9]{2})$', '\1:00'))`, false},
		{"c_interval", "interval", asOutput, false},
		{"c_bytea", "bytea", asOutput, false},
		{"c_inet", "inet", asOutput, false},
		{"c_cidr", "cidr", asOutput, false},
		{"c_macaddr", "macaddr", asOutput, false},
		{"c_macaddr8", "macaddr8", asOutput, false},
		{"c_money", "money", asOutput, false},
		{"c_xml", "xml", asOutput, false},
		{"c_point", "point", asOutput, false},
		{"c_line", "line", asOutput, false},
		{"c_lseg", "lseg", asOutput, false},
		{"c_box", "box", asOutput, false},
		{"c_path", "path", asOutput, false},
		{"c_polygon", "polygon", asOutput, false},
		{"c_circle", "circle", asOutput, false},
		{"c_int4range", "int4range", asOutput, false},
		{"c_int4multirange", "int4multirange", asOutput, false},
		{"c_tstzrange", "tstzrange", asOutput, false},
		{"c_tsvector", "tsvector", asOutput, false},
		{"c_tsquery", "tsquery", asOutput, false},
		{"c_oid", "oid", asOutput, false},
		{"c_pg_lsn", "pg_lsn", asOutput, false},
		{"c_pair", "pair", asText, false},
		{"c_posint", "posint", asNumber, false},
		{"c_dom_numeric", "amount", asNumber, false},
		{"c_dom_text", "short_text", asOutput, false},
		{"c_int_array", "integer[]", `to_json(%[1]s)`, false},
		{"c_int_2d", "integer[]", `to_json(%[1]s)`, false},
		{"c_text_array", "text[]", `to_json(%[1]s)`, false},
		{"c_varchar_array", "character varying(5)[]", `to_json(%[1]s)`, false},
		{"c_bool_array", "boolean[]", `to_json(%[1]s)`, false},
		{"c_mood_array", "mood[]", `to_json(%[1]s)`, false},
		{"c_posint_array", "posint[]", `to_json(%[1]s)`, false},
		{"c_numeric_array", "numeric[]", arrayOf(asNumber), false},
		{"c_float_array", "double precision[]", arrayOf(asNumber), true},
		{"c_tstz_array", "timestamp with time zone[]", arrayOf(`to_json(` + strings.ReplaceAll(tsExpr, "%[1]s", "(%[1]s AT TIME ZONE 'UTC')") + `)`), false},
		{"c_date_array", "date[]", arrayOf(`to_json(` + dateExpr + `)`), false},
		{"c_jsonb_array", "jsonb[]", arrayOf(asText), false},
		{"c_hstore_array", "hstore[]", arrayOf(`hstore_to_json(%[1]s)`), false},
		{"c_box_array", "box[]", arrayOf(asOutput), false},
		{"c_uuid_array", "uuid[]", arrayOf(asOutput), false},
		{"c_interval_array", "interval[]", arrayOf(asOutput), false},
	}
}

const everyTypeSetup = `
CREATE EXTENSION hstore;
CREATE EXTENSION citext;
CREATE TYPE mood AS ENUM ('sad', 'happy', 'in "quotes"');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE DOMAIN amount AS numeric(10,3);
CREATE DOMAIN short_text AS varchar(8);
CREATE TYPE pair AS (a integer, b text);
`

// everyTypeRows are the values besides the all-NULL row: ordinary values,
// then the edges (extremes, infinities, BC, special characters).
var everyTypeRows = []map[string]string{
	{
		"c_smallint": "-32768", "c_integer": "2147483647", "c_bigint": "-9223372036854775808", "c_serial": "7",
		"c_numeric": "12345678901234567890.123456789012345678901234567890", "c_numeric_12_2": "1234567890.10",
		"c_numeric_38_0": "99999999999999999999999999999999999999", "c_numeric_neg_scale": "12300",
		"c_real": "3.4028235e+38", "c_double": "0.1", "c_bool": "true", "c_bit1": "1", "c_bit8": "10100101", "c_varbit": "101",
		"c_text": "plain <b>&amp;</b> \"quoted\" back\\slash\nnewline\ttab é日本🙂 \u2028", "c_varchar": "varchar",
		"c_char": "ab", "c_citext": "MiXeD", "c_name": "a name", "c_uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		"c_mood": `in "quotes"`, "c_json": "{\"b\": [1, 2.50, \"x\"],\n \"a\": null}", "c_jsonb": `{"b": [1, 2.50, "x"], "a": null}`,
		"c_hstore": `"a"=>"1", "b c"=>NULL, "q\"t"=>"x\\y"`, "c_date": "2024-02-29", "c_ts": "2024-06-01 12:34:56.5",
		"c_tstz": "2024-06-01 12:34:56.123456+05:30", "c_time": "23:59:59.999999", "c_timetz": "12:00:00.5+02",
		"c_interval": "1 year 2 mons 3 days 04:05:06.789", "c_bytea": `\xdeadbeef00`, "c_inet": "192.168.1.5/24",
		"c_cidr": "10.0.0.0/8", "c_macaddr": "08:00:2b:01:02:03", "c_macaddr8": "08:00:2b:01:02:03:04:05",
		"c_money": "1234.56", "c_xml": "<a b=\"1\">x &amp; y</a>", "c_point": "(1.5,-2)", "c_line": "{1,-1,0}",
		"c_lseg": "[(0,0),(1,1)]", "c_box": "(1,1),(0,0)", "c_path": "[(0,0),(1,1),(2,0)]",
		"c_polygon": "((0,0),(1,1),(1,0))", "c_circle": "<(0,0),2>", "c_int4range": "[1,10)", "c_int4multirange": "{[1,3),[5,7)}", "c_numeric_inf": "Infinity",
		"c_tstzrange": "[2024-01-01 00:00:00+00,2024-02-01 00:00:00+00)", "c_tsvector": "'a' 'fat':2 'rat':3",
		"c_tsquery": "'fat' & 'rat'", "c_oid": "4294967295", "c_pg_lsn": "16/B374D848", "c_pair": `(1,"a b")`,
		"c_posint": "42", "c_dom_numeric": "1234567.125", "c_dom_text": "short",
		"c_int_array": "{1,NULL,-3}", "c_int_2d": "{{1,2},{3,4}}", "c_text_array": `{"a b","c\"d",NULL,"NULL","",x\\y}`,
		"c_varchar_array": "{abc,de}", "c_bool_array": "{t,f,NULL}", "c_mood_array": `{sad,"in \"quotes\""}`,
		"c_posint_array": "{1,2}", "c_numeric_array": "{1.10,-2.5e-20,NULL}", "c_float_array": "{1.5,1e-300,NULL}",
		"c_tstz_array": `{"2024-01-01 00:00:00+00","2024-01-01 00:00:00.25-08"}`, "c_date_array": "{2024-01-01,NULL}",
		"c_jsonb_array": `{"{\"a\": 1}","[1, 2]"}`, "c_hstore_array": `{"\"k\"=>\"v\""}`,
		"c_box_array": "{(1,1),(0,0);(3,3),(2,2)}", "c_uuid_array": "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
		"c_interval_array": `{"1 day","-00:00:01"}`,
	},
	{
		"c_smallint": "32767", "c_integer": "-2147483648", "c_bigint": "9223372036854775807", "c_serial": "8",
		"c_numeric": "NaN", "c_numeric_12_2": "-9999999999.99", "c_numeric_38_0": "0", "c_numeric_neg_scale": "-99900",
		"c_real": "-Infinity", "c_double": "NaN", "c_bool": "false", "c_bit1": "0", "c_bit8": "00000000", "c_varbit": "",
		"c_text": "", "c_varchar": "", "c_char": "", "c_citext": "", "c_name": "", "c_uuid": "00000000-0000-0000-0000-000000000000",
		"c_mood": "sad", "c_json": `"just a string"`, "c_jsonb": `[]`, "c_hstore": "",
		"c_date": "infinity", "c_ts": "-infinity", "c_tstz": "infinity", "c_time": "00:00:00", "c_timetz": "00:00:00-03:30",
		"c_interval": "-178000000 years", "c_bytea": `\x`, "c_inet": "::1", "c_cidr": "2001:db8::/32",
		"c_macaddr": "00:00:00:00:00:00", "c_macaddr8": "00:00:00:00:00:00:00:00", "c_money": "-0.01", "c_xml": "",
		"c_point": "(0,0)", "c_line": "{0,1,0}", "c_lseg": "[(0,0),(0,0)]", "c_box": "(0,0),(0,0)", "c_path": "((0,0),(1,1))",
		"c_polygon": "((0,0))", "c_circle": "<(0,0),0>", "c_int4range": "empty", "c_int4multirange": "{}", "c_numeric_inf": "-Infinity", "c_tstzrange": "(,)",
		"c_tsvector": "", "c_tsquery": "", "c_oid": "0", "c_pg_lsn": "0/0", "c_pair": "(,)",
		"c_posint": "1", "c_dom_numeric": "-0.001", "c_dom_text": "",
		"c_int_array": "{}", "c_int_2d": "{}", "c_text_array": "{}", "c_varchar_array": "{}", "c_bool_array": "{}",
		"c_mood_array": "{}", "c_posint_array": "{}", "c_numeric_array": "{}", "c_float_array": "{}",
		"c_tstz_array": "{}", "c_date_array": "{}", "c_jsonb_array": "{}", "c_hstore_array": "{}", "c_box_array": "{}",
		"c_uuid_array": "{}", "c_interval_array": "{}",
	},
	{
		"c_date": "0044-03-15 BC", "c_ts": "294276-12-31 23:59:59.999999", "c_tstz": "0001-01-01 00:00:00+00 BC",
		"c_real": "1.17549435e-38", "c_double": "-1.7976931348623157e+308",
		"c_tstz_array": `{infinity,-infinity}`, "c_date_array": `{"0001-01-01 BC","20000-01-01"}`,
	},
}

func createEveryTypeTable(t *testing.T, db, table string) {
	t.Helper()
	var cols []string
	for _, c := range everyTypeColumns() {
		cols = append(cols, pgx.Identifier{c.name}.Sanitize()+" "+c.sqlType)
	}
	testpg.Exec(t, pg, db, everyTypeSetup+"CREATE TABLE "+table+" (id integer PRIMARY KEY, "+strings.Join(cols, ", ")+");")
	testpg.Exec(t, pg, db, "INSERT INTO "+table+" (id) VALUES (0)")
	for i, row := range everyTypeRows {
		var names, values []string
		for name, v := range row {
			if !slices.ContainsFunc(everyTypeColumns(), func(c typeColumn) bool { return c.name == name }) {
				continue
			}
			names = append(names, pgx.Identifier{name}.Sanitize())
			values = append(values, "'"+strings.ReplaceAll(v, "'", "''")+"'")
		}
		testpg.Exec(t, pg, db, fmt.Sprintf("INSERT INTO %s (id, %s) VALUES (%d, %s)", table, strings.Join(names, ", "), i+1, strings.Join(values, ", ")))
	}
}

// TestEveryTypeMatchesPostgreSQL syncs a table with every type of the README's type table and
// compares each value with what PostgreSQL itself computes for the same row.
func TestEveryTypeMatchesPostgreSQL(t *testing.T) {
	db := testpg.NewDatabase(t, pg)
	createEveryTypeTable(t, db, "public.every_type")
	cfg := writeFile(t, "config.json", configFor(db, nil))
	catalog := discover(t, cfg)
	selectStreams(catalog, map[string]any{"replication-method": "FULL_TABLE"}, db+"-public-every_type")
	r := runTap(t, cli.Env{}, "--config", cfg, "--catalog", writeFile(t, "catalog.json", catalog))
	if r.code != 0 {
		t.Fatalf("sync exited %d:\n%s", r.code, r.stderr)
	}
	got := rawRecords(t, r.stdout, "every_type")
	if len(got) != len(everyTypeRows)+1 {
		t.Fatalf("got %d records, want %d", len(got), len(everyTypeRows)+1)
	}
	want := expectedRows(t, db, "public.every_type")
	for _, c := range everyTypeColumns() {
		for id, rec := range got {
			g, w := rec[c.name], want[id][c.name]
			if !sameJSON(t, g, w, c.float) {
				t.Errorf("row %d column %s (%s): tap emitted %s, PostgreSQL says %s", id, c.name, c.sqlType, g, w)
			}
		}
	}
	for _, warning := range []string{`column "c_date"`, `column "c_ts"`, `column "c_tstz"`} {
		if strings.Count(r.stderr, "WARNING stream "+db+"-public-every_type "+warning) != 1 {
			t.Errorf("want exactly one clamping WARNING for %s, stderr:\n%s", warning, r.stderr)
		}
	}
}

// rawRecords decodes one stream's records keyed by their integer id, values
// kept as raw JSON.
func rawRecords(t *testing.T, stdout, stream string) map[int]map[string]json.RawMessage {
	t.Helper()
	out := map[int]map[string]json.RawMessage{}
	for _, line := range strings.Split(stdout, "\n") {
		var m struct {
			Type   string                     `json:"type"`
			Stream string                     `json:"stream"`
			Record map[string]json.RawMessage `json:"record"`
		}
		if line == "" || json.Unmarshal([]byte(line), &m) != nil || m.Type != "RECORD" || m.Stream != stream {
			continue
		}
		id, err := strconv.Atoi(string(m.Record["id"]))
		if err != nil {
			t.Fatalf("record without integer id: %s", line)
		}
		out[id] = m.Record
	}
	return out
}

// expectedRows asks PostgreSQL for the expected JSON of every column, using
// the same session settings the tap uses.
func expectedRows(t *testing.T, db, table string) map[int]map[string]json.RawMessage {
	t.Helper()
	ctx := context.Background()
	cc, err := pgx.ParseConfig(pg.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range connect.SessionSettings() {
		cc.RuntimeParams[k] = v
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var exprs []string
	for _, c := range everyTypeColumns() {
		col := pgx.Identifier{c.name}.Sanitize()
		exprs = append(exprs, fmt.Sprintf("%s, CASE WHEN %s::text IS NULL THEN 'null'::json ELSE (%s)::json END",
			quoteLiteral(c.name), col, fmt.Sprintf(c.expected, col)))
	}
	// json_build_object takes at most 100 arguments: one object per column.
	var parts []string
	for _, e := range exprs {
		parts = append(parts, "json_build_object("+e+")::jsonb")
	}
	rows, err := conn.Query(ctx, "SELECT id, ("+strings.Join(parts, " || ")+")::text FROM "+table)
	if err != nil {
		t.Fatalf("expected values query: %v", err)
	}
	out := map[int]map[string]json.RawMessage{}
	for rows.Next() {
		var id int
		var doc string
		if err := rows.Scan(&id, &doc); err != nil {
			t.Fatal(err)
		}
		m := map[string]json.RawMessage{}
		if err := json.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatal(err)
		}
		out[id] = m
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// sameJSON compares two JSON values; numbers exactly as text unless asFloat.
func sameJSON(t *testing.T, a, b json.RawMessage, asFloat bool) bool {
	t.Helper()
	va, vb := decodeNumber(t, a), decodeNumber(t, b)
	if asFloat {
		return reflect.DeepEqual(floats(va), floats(vb))
	}
	return reflect.DeepEqual(va, vb)
}

func decodeNumber(t *testing.T, raw json.RawMessage) any {
	t.Helper()
	if raw == nil {
		return "<absent>"
	}
	var v any
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("invalid JSON %s: %v", raw, err)
	}
	return v
}

// floats turns json.Numbers into float64s, recursively.
func floats(v any) any {
	switch x := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil || math.IsInf(f, 0) {
			return string(x)
		}
		return f
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = floats(x[i])
		}
		return out
	}
	return v
}
