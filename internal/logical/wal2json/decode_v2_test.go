package wal2json

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecodeV2(t *testing.T) {
	msg := `{"action":"U","timestamp":"2024-06-01 12:00:00.5+00","schema":"my schema","table":"t\"q",` +
		`"columns":[{"name":"id","type":"integer","typeoid":23,"value":1},` +
		`{"name":"n","type":"numeric(38,20)","typeoid":1700,"value":12345678901234567890.12345678901234567890},` +
		`{"name":"s","type":"text","typeoid":25,"value":"a\"b\\c\n\u00e9\ud83d\ude00 \u0000"},` +
		`{"name":"b","type":"boolean","typeoid":16,"value":false},{"name":"x","type":"text","typeoid":25,"value":null}],` +
		`"identity":[{"name":"id","type":"integer","typeoid":23,"value":-7}]}`
	var c Change
	if err := DecodeV2([]byte(msg), &c); err != nil {
		t.Fatal(err)
	}
	if c.Action != ActionUpdate || c.Schema != "my schema" || c.Table != `t"q` || c.Timestamp != "2024-06-01 12:00:00.5+00" {
		t.Fatalf("header: %+v", c)
	}
	want := []struct {
		name, typ, value string
		null             bool
	}{
		{"id", "integer", "1", false},
		{"n", "numeric(38,20)", "12345678901234567890.12345678901234567890", false},
		{"s", "text", "a\"b\\c\né😀 \x00", false},
		{"b", "boolean", "false", false},
		{"x", "text", "", true},
	}
	if len(c.Columns) != len(want) {
		t.Fatalf("%d columns, want %d", len(c.Columns), len(want))
	}
	for i, w := range want {
		got := c.Columns[i]
		if got.Name != w.name || got.TypeName != w.typ || string(got.Value) != w.value || got.Null != w.null {
			t.Errorf("column %d = %q %q %q null=%v, want %+v", i, got.Name, got.TypeName, got.Value, got.Null, w)
		}
	}
	if len(c.Identity) != 1 || string(c.Identity[0].Value) != "-7" {
		t.Fatalf("identity: %+v", c.Identity)
	}
	// wal2json prints names format_type quoted without escaping them.
	raw := `{"action":"I","schema":"odd Schema","table":"t","columns":[{"name":"m","type":"odd Schema".mood,"typeoid":16470,"value":"calm"},` +
		`{"name":"c","type":"char","typeoid":18,"value":"a"}]}`
	if err := DecodeV2([]byte(raw), &c); err != nil {
		t.Fatal(err)
	}
	if c.Columns[0].TypeName != `"odd Schema".mood` || c.Columns[0].TypeOID != 16470 || string(c.Columns[0].Value) != "calm" ||
		c.Columns[1].TypeName != "char" || c.Columns[1].TypeOID != 18 {
		t.Fatalf("raw type names: %+v", c.Columns)
	}
	for _, bad := range []string{``, `{`, `{"action":"I"`, `{"action":"II"}`, `{"schema":"s"}`, `{"action":"I"} x`,
		`{"action":"I","columns":[{"value":tru}]}`, `{"action":"I","columns":[{"value":"\x"}]}`, `[1]`} {
		if err := DecodeV2([]byte(bad), &c); err == nil {
			t.Errorf("DecodeV2(%q) accepted malformed input", bad)
		}
	}
}

// FuzzDecodeV2 checks the hand-written decoder against encoding/json: for
// every input both accept, names, types and string values agree, and numbers
// are the exact source text.
func FuzzDecodeV2(f *testing.F) {
	f.Add(`{"action":"I","schema":"s","table":"t","columns":[{"name":"a","type":"text","value":"x\u00e9\ud800"}]}`)
	f.Add(`{"action":"D","identity":[{"name":"id","type":"bigint","typeoid":20,"value":-9223372036854775808}],"extra":{"a":[1,{}]}}`)
	f.Add(`{"action":"B","timestamp":"2024-01-01 00:00:00+00"}`)
	f.Add(`{"action":"U","columns":[{"name":"n","value":1.5e-7},{"name":"b","value":true},{"name":"z","value":null}],"identity":null}`)
	f.Fuzz(func(t *testing.T, in string) {
		var c Change
		err := DecodeV2([]byte(in), &c)
		// encoding/json replaces invalid UTF-8; we pass bytes through to the
		// formatter, which replaces them with a WARNING.
		if err != nil || !utf8.ValidString(in) {
			return
		}
		// Reference decoding with exact key matching, last duplicate wins.
		var top map[string]json.RawMessage
		if json.Unmarshal([]byte(in), &top) != nil {
			return // we accept a superset (lax numbers)
		}
		str := func(raw json.RawMessage) string {
			var v string
			_ = json.Unmarshal(raw, &v)
			return v
		}
		var cols []map[string]json.RawMessage
		if raw, ok := top["columns"]; ok && json.Unmarshal(raw, &cols) != nil {
			return
		}
		if string(c.Action) != str(top["action"]) || c.Schema != str(top["schema"]) || c.Table != str(top["table"]) || len(c.Columns) != len(cols) {
			t.Fatalf("header differs: %+v vs %s", c, in)
		}
		type refColumn struct {
			Name, Type string
			Value      json.RawMessage
		}
		ref := struct{ Columns []refColumn }{}
		for _, m := range cols {
			ref.Columns = append(ref.Columns, refColumn{Name: str(m["name"]), Type: str(m["type"]), Value: m["value"]})
		}
		for i, col := range c.Columns {
			r := ref.Columns[i]
			if col.Name != r.Name || col.TypeName != r.Type {
				t.Fatalf("column %d: %q %q vs %q %q", i, col.Name, col.TypeName, r.Name, r.Type)
			}
			raw := strings.TrimSpace(string(r.Value))
			switch {
			case raw == "null" || raw == "":
				if !col.Null && raw == "null" {
					t.Fatalf("column %d: null not decoded as NULL", i)
				}
			case raw[0] == '"':
				var want string
				if err := json.Unmarshal([]byte(raw), &want); err != nil {
					t.Fatal(err)
				}
				if string(col.Value) != want {
					t.Fatalf("column %d: %q, encoding/json %q", i, col.Value, want)
				}
			case raw[0] == '{' || raw[0] == '[':
				t.Fatalf("column %d: object value accepted", i)
			default:
				if string(col.Value) != raw {
					t.Fatalf("column %d: %q, source %q", i, col.Value, raw)
				}
			}
		}
	})
}

func BenchmarkDecodeV2(b *testing.B) {
	msg := []byte(`{"action":"U","timestamp":"2024-06-01 12:00:00.5+00","schema":"bench","table":"wide","columns":[{"name":"id","type":"bigint","typeoid":20,"value":123456},{"name":"int_col","type":"integer","typeoid":23,"value":-42},{"name":"amount","type":"numeric(12,2)","typeoid":1700,"value":12345.67},{"name":"descr","type":"text","typeoid":25,"value":"row-123456-e10adc3949ba59abbe56e057f20f883e"},{"name":"code","type":"character varying(32)","typeoid":1043,"value":"C001234"},{"name":"flag","type":"boolean","typeoid":16,"value":true},{"name":"updated_at","type":"timestamp with time zone","typeoid":1184,"value":"2024-01-02 10:17:36.000456+00"},{"name":"day","type":"date","typeoid":1082,"value":"2003-05-12"},{"name":"attrs","type":"jsonb","typeoid":3802,"value":"{\"k\": 56, \"s\": \"v3\", \"ok\": true}"},{"name":"uid","type":"uuid","typeoid":2950,"value":"e10adc39-49ba-59ab-be56-e057f20f883e"},{"name":"score","type":"double precision","typeoid":701,"value":17636.571428571428},{"name":"tags","type":"text[]","typeoid":1009,"value":"{t1,t7}"}],"identity":[{"name":"id","type":"bigint","typeoid":20,"value":123456}]}`)
	var c Change
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if err := DecodeV2(msg, &c); err != nil {
			b.Fatal(err)
		}
	}
}
