package singer

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseState(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string // marshalled result
		wantErr string
	}{
		{"empty file", "", `{"currently_syncing":null,"bookmarks":{}}`, ""},
		{"empty object", "{}", `{"currently_syncing":null,"bookmarks":{}}`, ""},
		{"reference full table with xmin", `{"currently_syncing":"db-public-t","bookmarks":{"db-public-t":{"last_replication_method":"FULL_TABLE","version":1700000000000,"xmin":12345}}}`,
			`{"currently_syncing":"db-public-t","bookmarks":{"db-public-t":{"last_replication_method":"FULL_TABLE","version":1700000000000}}}`, ""},
		{"STATE message wrapper", `{"type":"STATE","value":{"bookmarks":{"a":{"lsn":123}}}}`,
			`{"currently_syncing":null,"bookmarks":{"a":{"lsn":123}}}`, ""},
		{"float and string integers", `{"bookmarks":{"a":{"version":1.7e12,"lsn":"99"}}}`,
			`{"currently_syncing":null,"bookmarks":{"a":{"version":1700000000000,"lsn":99}}}`, ""},
		{"resume key and incremental", `{"bookmarks":{"a":{"last_pk_fetched":{"id":"7"},"replication_key":"u","replication_key_value":"2024-01-01T00:00:00+00:00"}}}`,
			`{"currently_syncing":null,"bookmarks":{"a":{"last_pk_fetched":{"id":"7"},"replication_key":"u","replication_key_value":"2024-01-01T00:00:00+00:00"}}}`, ""},
		{"null values ignored", `{"currently_syncing":null,"bookmarks":{"a":{"version":null,"lsn":null}}}`,
			`{"currently_syncing":null,"bookmarks":{"a":{}}}`, ""},
		{"not JSON", `{"bookmarks":`, "", "state is not a JSON object"},
		{"array", `[1]`, "", "state is not a JSON object"},
		{"bookmarks not object", `{"bookmarks":[1]}`, "", `state "bookmarks" must be an object`},
		{"bad version", `{"bookmarks":{"a":{"version":"soon"}}}`, "", `state bookmark a: "version" has an invalid value`},
		{"negative lsn", `{"bookmarks":{"a":{"lsn":-1}}}`, "", `state bookmark a: "lsn" has an invalid value`},
		{"fractional version", `{"bookmarks":{"a":{"version":1.5}}}`, "", `"version" has an invalid value`},
		{"currently_syncing not string", `{"currently_syncing":5}`, "", `"currently_syncing" must be a string or null`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseState([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseState(%s) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseState(%s): %v", tt.in, err)
			}
			got, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("ParseState(%s) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestStateCloneIsDeep(t *testing.T) {
	s := NewState()
	id := "a"
	s.CurrentlySyncing = &id
	s.Bookmark("a").LastPKFetched = map[string]string{"id": "1"}
	c := s.Clone()
	s.Bookmark("a").LastPKFetched["id"] = "2"
	*s.CurrentlySyncing = "b"
	if c.Bookmarks["a"].LastPKFetched["id"] != "1" || *c.CurrentlySyncing != "a" {
		t.Fatalf("clone shares memory with the original: %+v", c)
	}
}

func FuzzParseState(f *testing.F) {
	for _, s := range []string{"", "{}", `{"bookmarks":{"a":{"version":1,"lsn":2,"last_pk_fetched":{"id":"1"}}}}`,
		`{"type":"STATE","value":{}}`, `{"currently_syncing":"x","bookmarks":{"x":{"xmin":1}}}`, `[`, `{"bookmarks":{"a":{"version":1e400}}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseState([]byte(in))
		if err != nil {
			return
		}
		// A parsed state must survive the round trip through its own output.
		out, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("marshal parsed state: %v", err)
		}
		again, err := ParseState(out)
		if err != nil {
			t.Fatalf("state %s does not parse back: %v", out, err)
		}
		out2, _ := json.Marshal(again)
		if string(out) != string(out2) {
			t.Fatalf("round trip changed the state: %s -> %s", out, out2)
		}
	})
}
