package destination

import "testing"

func TestColumnType(t *testing.T) {
	for schema, want := range map[string]string{
		`{"type":["integer"],"minimum":-2147483648,"maximum":2147483647}`:                          typeBigint,
		`{"type":["null","integer"],"minimum":-9223372036854775808,"maximum":9223372036854775807}`: typeBigint,
		`{"type":["integer"],"minimum":0,"maximum":9223372036854775808}`:                           typeNumeric,
		`{"type":"integer"}`:                                             typeNumeric,
		`{"type":["null","number"],"multipleOf":0.01}`:                   typeNumeric,
		`{"type":["boolean"]}`:                                           typeBoolean,
		`{"type":["null","string"],"format":"date-time"}`:                typeTimestamptz,
		`{"type":["null","string"],"maxLength":20}`:                      typeText,
		`{"type":["null","object"],"properties":{}}`:                     typeJSONB,
		`{"type":["null","array"],"items":{"$ref":"#/definitions/x"}}`:   typeJSONB,
		`{"type":["null","object","array","string","number","boolean"]}`: typeJSONB,
		`{}`:       typeJSONB,
		`not json`: typeJSONB,
	} {
		if got := columnType([]byte(schema)); got != want {
			t.Errorf("columnType(%s) = %s, want %s", schema, got, want)
		}
	}
}

func TestSafeName(t *testing.T) {
	for in, want := range map[string]string{
		"Orders": "orders", "Total Amount": "total_amount", "1st": "_1st", "": "_", "héllo": "h_llo",
		"a-b.c": "a_b_c", "_sdc_x": "_sdc_x",
		"abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij": "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabc",
	} {
		if got := SafeName(in); got != want {
			t.Errorf("SafeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAppendKeyValue(t *testing.T) {
	same := [][2]string{{`2`, `2.0`}, {`-7`, `-7.00`}, {`0`, `-0.0`}, {`10`, `1e1`}, {`2.00`, `2e0`}, {`-0`, `0`}, {`0.5`, `5e-1`}, {`"a"`, `"\u0061"`}, {`12345678901234567890.10`, `12345678901234567890.1`}}
	for _, p := range same {
		if a, b := appendKeyValue(nil, []byte(p[0])), appendKeyValue(nil, []byte(p[1])); string(a) != string(b) {
			t.Errorf("%s and %s are different keys: %q, %q", p[0], p[1], a, b)
		}
	}
	different := [][2]string{{`2`, `"2"`}, {`2`, `2.1`}, {`true`, `"true"`}, {`1e99999`, `1e99998`}}
	for _, p := range different {
		if a, b := appendKeyValue(nil, []byte(p[0])), appendKeyValue(nil, []byte(p[1])); string(a) == string(b) {
			t.Errorf("%s and %s are one key: %q", p[0], p[1], a)
		}
	}
}
