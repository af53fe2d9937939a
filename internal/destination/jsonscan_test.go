package destination

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// FuzzEachMember: on any object encoding/json accepts, the members walked
// are its members, keys decoded the same and values the same text.
func FuzzEachMember(f *testing.F) {
	for _, seed := range []string{
		`{}`, ` { "a" : 1 , "b":"x\"y" } `, `{"k\u00e9y":{"n":[1,{"x":"]}"}]},"z":null}`,
		`{"a":true,"b":false,"c":-0.5e+10,"d":"\ud83d\ude00 \ud800 x"}`, `{"a":1,"a":2}`, `{"a":}`, `[1]`, `{"a":"\t"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var want map[string]json.RawMessage
		if json.Unmarshal(data, &want) != nil || want == nil || !utf8.Valid(data) {
			return
		}
		got := map[string][]byte{}
		if err := eachMember(data, func(key, value []byte) error {
			got[string(key)] = bytes.Clone(value)
			return nil
		}); err != nil {
			t.Fatalf("eachMember refused %q: %v", data, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%q: %d members, encoding/json %d", data, len(got), len(want))
		}
		for k, v := range want {
			if !bytes.Equal(got[k], v) {
				t.Fatalf("%q member %q: %q, encoding/json %q", data, k, got[k], v)
			}
		}
	})
}

// FuzzAppendUnquoted: a JSON string decodes as encoding/json decodes it.
func FuzzAppendUnquoted(f *testing.F) {
	for _, seed := range []string{`""`, `"a\"b\\c\/\b\f\n\r\t"`, `"\u00e9\u20AC"`, `"\ud83d\ude00"`, `"\ud800x"`, `"\udc00\ud800"`, `"\u12"`, `"a`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, quoted []byte) {
		var want string
		wantErr := json.Unmarshal(quoted, &want) != nil
		// Spans are exact: the caller never passes surrounding space.
		if !utf8.Valid(quoted) || len(quoted) > 0 && quoted[0] != '"' || !bytes.Equal(bytes.TrimSpace(quoted), quoted) {
			return
		}
		got, err := appendUnquoted(nil, quoted)
		if wantErr {
			if err == nil {
				t.Fatalf("%q accepted, encoding/json refuses it", quoted)
			}
			return
		}
		if err != nil || string(got) != want {
			t.Fatalf("%q: %q, %v; encoding/json %q", quoted, got, err, want)
		}
	})
}

func TestIsDateTime(t *testing.T) {
	for s, want := range map[string]bool{
		"2024-06-01": true, "2024-06-01T12:00:00+00:00": true, "2024-06-01T12:00:00.123456+00:00": true,
		"2024-06-01 12:00:00Z": true, "2024-06-01T12:00": true, "0001-01-01T00:00:00+05": true, "2024-06-01T12:00:00-0130": true,
		"2026-11-24T11:00:00.000000Z": true,
		"now":                         false, "epoch": false, "infinity": false, "20240101": false, "2024-06-01T": false, "2024-06-01T12": false,
		"2024-06-01T12:00:00.": false, "2024-06-01T12:00:00Zx": false, "2024-06-01T12:00:00+1": false, "2024-06-01T12:00:00+01:": false, "": false,
	} {
		if got := isDateTime([]byte(s)); got != want {
			t.Errorf("isDateTime(%q) = %t", s, got)
		}
	}
}
