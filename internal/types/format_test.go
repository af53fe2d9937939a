package types

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"testing"
)

func scalar(kind Kind) *Type { return &Type{Kind: kind} }

func arrayOf(elem *Type) *Type { return &Type{Kind: KindArray, Elem: elem, Delim: ','} }

func TestAppendJSON(t *testing.T) {
	tests := []struct {
		name  string
		typ   *Type
		text  string
		want  string
		issue Issue
	}{
		{"integer", scalar(KindInteger), "-9223372036854775808", "-9223372036854775808", 0},
		{"numeric exact", scalar(KindNumeric), "12345678901234567890.123456789012345678", "12345678901234567890.123456789012345678", 0},
		{"numeric trailing zeros kept", scalar(KindNumeric), "1.10", "1.10", 0},
		{"numeric NaN", scalar(KindNumeric), "NaN", "null", 0},
		{"numeric -Infinity", scalar(KindNumeric), "-Infinity", "null", 0},
		{"integer not a number", scalar(KindInteger), "new column", `"new column"`, IssueMalformed},
		{"numeric leading zero", scalar(KindNumeric), "01", `"01"`, IssueMalformed},
		{"numeric exponent", scalar(KindNumeric), "-1.5e-20", "-1.5e-20", 0},
		{"float8 exponent", scalar(KindFloat), "1e+100", "1e+100", 0},
		{"float8 small", scalar(KindFloat), "1.5e-07", "1.5e-7", 0},
		{"float8 plain", scalar(KindFloat), "0.1", "0.1", 0},
		{"float8 large plain", scalar(KindFloat), "1e+20", "100000000000000000000", 0},
		{"float8 NaN", scalar(KindFloat), "NaN", "null", 0},
		{"float8 Infinity", scalar(KindFloat), "Infinity", "null", 0},
		{"float4", &Type{Kind: KindFloat, Float32: true}, "3.4028235e+38", "3.4028235e+38", 0},
		{"float4 short", &Type{Kind: KindFloat, Float32: true}, "0.1", "0.1", 0},
		{"bool t", scalar(KindBoolean), "t", "true", 0},
		{"bool false from wal2json", scalar(KindBoolean), "false", "false", 0},
		{"bit1", scalar(KindBit1), "1", "true", 0},
		{"string escapes", scalar(KindString), "a\"b\\c\n\t<>&\u2028\x01", `"a\"b\\c\n\t<>&\u2028\u0001"`, 0},
		{"string invalid utf8", scalar(KindString), "a\xffb", `"a\ufffdb"`, IssueInvalidUTF8},
		{"json as text", scalar(KindJSON), `{"a": 1}`, `"{\"a\": 1}"`, 0},
		{"json as object compacted", &Type{Kind: KindJSON, JSONAsObject: true}, "{\"a\" :\n [1, \"x y\"]}", `{"a":[1,"x y"]}`, 0},
		{"hstore", scalar(KindHstore), `"a"=>"1", "b c"=>NULL, "q\"uote"=>"back\\slash"`, `{"a":"1","b c":null,"q\"uote":"back\\slash"}`, 0},
		{"hstore empty", scalar(KindHstore), ``, `{}`, 0},
		{"date", scalar(KindDate), "2024-02-29", `"2024-02-29T00:00:00+00:00"`, 0},
		{"date infinity", scalar(KindDate), "infinity", `"9999-12-31T00:00:00+00:00"`, IssueClamped},
		{"date BC", scalar(KindDate), "0044-03-15 BC", `"0001-01-01T00:00:00+00:00"`, IssueClamped},
		{"date year 10000", scalar(KindDate), "10000-01-01", `"9999-12-31T00:00:00+00:00"`, IssueClamped},
		{"timestamp", scalar(KindTimestamp), "2024-06-01 12:00:00", `"2024-06-01T12:00:00+00:00"`, 0},
		{"timestamp fraction", scalar(KindTimestamp), "2024-06-01 12:00:00.5", `"2024-06-01T12:00:00.500000+00:00"`, 0},
		{"timestamptz utc", scalar(KindTimestamp), "2024-06-01 12:00:00.123456+00", `"2024-06-01T12:00:00.123456+00:00"`, 0},
		{"timestamptz offset converted", scalar(KindTimestamp), "2024-06-01 02:00:00.25+05:30", `"2024-05-31T20:30:00.250000+00:00"`, 0},
		{"timestamptz LMT seconds", scalar(KindTimestamp), "1850-01-01 00:00:00-04:56:02", `"1850-01-01T04:56:02+00:00"`, 0},
		{"timestamp infinity", scalar(KindTimestamp), "infinity", `"9999-12-31T23:59:59.999999+00:00"`, IssueClamped},
		{"timestamp -infinity", scalar(KindTimestamp), "-infinity", `"0001-01-01T00:00:00+00:00"`, IssueClamped},
		{"timestamptz BC", scalar(KindTimestamp), "0001-12-31 23:00:00+00 BC", `"0001-01-01T00:00:00+00:00"`, IssueClamped},
		{"timestamp year 275000", scalar(KindTimestamp), "275000-01-01 00:00:00", `"9999-12-31T23:59:59.999999+00:00"`, IssueClamped},
		{"timestamptz pushed past 9999", scalar(KindTimestamp), "9999-12-31 23:00:00-05", `"9999-12-31T23:59:59.999999+00:00"`, IssueClamped},
		{"timestamp malformed", scalar(KindTimestamp), "yesterday", `"yesterday"`, IssueMalformed},
		{"time", scalar(KindTime), "13:01:02.5", `"13:01:02.500000"`, 0},
		{"time zero fraction", scalar(KindTime), "13:01:02", `"13:01:02"`, 0},
		{"timetz hour offset", scalar(KindTimeTZ), "13:01:02+02", `"13:01:02+02:00"`, 0},
		{"timetz minute offset", scalar(KindTimeTZ), "13:01:02.000001-03:30", `"13:01:02.000001-03:30"`, 0},
		{"int array", arrayOf(scalar(KindInteger)), "{1,NULL,-3}", `[1,null,-3]`, 0},
		{"empty array", arrayOf(scalar(KindInteger)), "{}", `[]`, 0},
		{"2d array", arrayOf(scalar(KindInteger)), "{{1,2},{3,4}}", `[[1,2],[3,4]]`, 0},
		{"array bounds", arrayOf(scalar(KindInteger)), "[0:1]={7,8}", `[7,8]`, 0},
		{"text array quoting", arrayOf(scalar(KindString)), `{"a b","c\"d","NULL",null,"x\\y",plain}`, `["a b","c\"d","NULL",null,"x\\y","plain"]`, 0},
		{"box array semicolon", &Type{Kind: KindArray, Elem: scalar(KindString), Delim: ';'}, `{(1,1),(0,0);(2,2),(1,1)}`, `["(1,1),(0,0)","(2,2),(1,1)"]`, 0},
		{"timestamp array", arrayOf(scalar(KindTimestamp)), `{"2024-01-01 00:00:00+00",infinity}`, `["2024-01-01T00:00:00+00:00","9999-12-31T23:59:59.999999+00:00"]`, IssueClamped},
		{"numeric array NaN", arrayOf(scalar(KindNumeric)), `{1.5,NaN}`, `[1.5,null]`, 0},
		{"json array", arrayOf(scalar(KindJSON)), `{"{\"a\": 1}"}`, `["{\"a\": 1}"]`, 0},
		{"hstore array", arrayOf(scalar(KindHstore)), `{"\"a\"=>\"1\""}`, `[{"a":"1"}]`, 0},
		{"malformed array", arrayOf(scalar(KindInteger)), "{1,2", `"{1,2"`, IssueMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, issue := tt.typ.AppendJSON([]byte("prefix:"), []byte(tt.text))
			if string(got) != "prefix:"+tt.want || issue != tt.issue {
				t.Fatalf("AppendJSON(%q) = %s, issue %d; want %s, issue %d", tt.text, got, issue, tt.want, tt.issue)
			}
			if !json.Valid(got[len("prefix:"):]) {
				t.Fatalf("not valid JSON: %s", got)
			}
		})
	}
}

func marshalNoHTML(t testing.TB, v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return string(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

func FuzzAppendStringMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{"", "plain", "<a&b>", "\u2028\u2029", "\x00\x1f\x7f", "a\xffb\xc3", "é日本🙂", "\"\\/\b\f\n\r\t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := string(AppendString(nil, s))
		if want := marshalNoHTML(t, s); got != want {
			t.Fatalf("AppendString(%q) = %s, encoding/json = %s", s, got, want)
		}
	})
}

func FuzzAppendFloatMatchesEncodingJSON(f *testing.F) {
	for _, v := range []float64{0, -0.0, 1, 0.1, 1e-7, 1e21, 1e20, 123456789.125, math.MaxFloat64, math.SmallestNonzeroFloat64} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v float64) {
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return
		}
		if got, want := string(AppendFloat(nil, v, 64)), marshalNoHTML(t, v); got != want {
			t.Fatalf("AppendFloat(%v, 64) = %s, encoding/json = %s", v, got, want)
		}
		f32 := float32(v)
		if math.IsInf(float64(f32), 0) {
			return
		}
		if got, want := string(AppendFloat(nil, float64(f32), 32)), marshalNoHTML(t, f32); got != want {
			t.Fatalf("AppendFloat(%v, 32) = %s, encoding/json = %s", f32, got, want)
		}
		// The text path: PostgreSQL's shortest round-trip text of the same value.
		text := strconv.FormatFloat(v, 'g', -1, 64)
		got, _ := appendFloatText(nil, []byte(text), false)
		if want := marshalNoHTML(t, v); string(got) != want {
			t.Fatalf("appendFloatText(%q) = %s, encoding/json = %s", text, got, want)
		}
	})
}

// FuzzAppendJSONNeverInvalid feeds arbitrary text to every kind: whatever the
// input, the output must be valid JSON.
func FuzzAppendJSONNeverInvalid(f *testing.F) {
	for _, s := range []string{"{1,2}", `"a"=>"b"`, "2024-01-01 00:00:00+00", "13:00:00+02", "{{\"a\\\"\"}}", "[1:2]={1,2}", `{"a": [1]}`} {
		f.Add(s)
	}
	kinds := []*Type{
		scalar(KindString), scalar(KindInteger), scalar(KindNumeric), scalar(KindFloat), scalar(KindBoolean),
		scalar(KindBit1), scalar(KindHstore), scalar(KindDate), scalar(KindTimestamp), scalar(KindTime),
		scalar(KindTimeTZ), arrayOf(scalar(KindString)), arrayOf(arrayOf(scalar(KindTimestamp))),
		arrayOf(scalar(KindHstore)), scalar(KindJSON),
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, typ := range kinds {
			got, _ := typ.AppendJSON(nil, []byte(s))
			if !json.Valid(got) {
				t.Fatalf("kind %d: AppendJSON(%q) = %s is not valid JSON", typ.Kind, s, got)
			}
		}
	})
}

// BenchmarkAppendJSON measures each type family's formatter on typical
// server text; allocations per value are reported.
func BenchmarkAppendJSON(b *testing.B) {
	families := []struct {
		name string
		typ  *Type
		text string
	}{
		{"integer", scalar(KindInteger), "-1234567890"},
		{"numeric", scalar(KindNumeric), "12345678901234567890.123456789"},
		{"float8", scalar(KindFloat), "17636.571428571428"},
		{"boolean", scalar(KindBoolean), "t"},
		{"text", scalar(KindString), "row-123456-e10adc3949ba59abbe56e057f20f883e"},
		{"text escaped", scalar(KindString), "line \"one\"\nline\ttwo é"},
		{"jsonb as text", scalar(KindJSON), `{"k": 56, "s": "v3", "ok": true}`},
		{"jsonb as object", &Type{Kind: KindJSON, JSONAsObject: true}, `{"k": 56, "s": "v3", "ok": true}`},
		{"hstore", scalar(KindHstore), `"a"=>"1", "b"=>NULL, "c"=>"x y"`},
		{"date", scalar(KindDate), "2003-05-12"},
		{"timestamptz", scalar(KindTimestamp), "2024-01-02 10:17:36.000456+00"},
		{"timestamptz offset", scalar(KindTimestamp), "2024-01-02 10:17:36.000456+05:30"},
		{"time", scalar(KindTime), "10:17:36.5"},
		{"text array", arrayOf(scalar(KindString)), `{t1,t7,"a b"}`},
		{"int 2d array", arrayOf(scalar(KindInteger)), "{{1,2,3},{4,5,6}}"},
	}
	for _, f := range families {
		b.Run(f.name, func(b *testing.B) {
			text := []byte(f.text)
			buf := make([]byte, 0, 256)
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = f.typ.AppendJSON(buf[:0], text)
			}
		})
	}
}
