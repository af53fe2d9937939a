package singer

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseCatalog(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"minimal", `{"streams":[{"tap_stream_id":"db-s-t","stream":"t","metadata":[]}]}`, ""},
		{"not JSON", `{"streams":[`, "catalog is not valid JSON"},
		{"wrong shape", `{"streams":{"a":1}}`, "does not have the Singer catalog shape"},
		{"no streams", `{}`, `catalog has no "streams" list`},
		{"no id", `{"streams":[{"stream":"t"}]}`, "stream #1 has no tap_stream_id"},
		{"duplicate ids are legal until selected", `{"streams":[{"tap_stream_id":"a"},{"tap_stream_id":"a"}]}`, ""},
		{"null metadata", `{"streams":[{"tap_stream_id":"a","metadata":[null]}]}`, "null metadata entry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCatalog([]byte(tt.in))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseCatalog: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseCatalog(%s) error = %v, want %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestMetaAccessors(t *testing.T) {
	c, err := ParseCatalog([]byte(`{"streams":[{"tap_stream_id":"a","metadata":[
		{"breadcrumb":[],"metadata":{"selected":"true","replication-method":"FULL_TABLE","view-key-properties":["id"],"bad":5}},
		{"breadcrumb":["properties","c"],"metadata":{"selected":false}}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Lookup("a")
	m := s.TableMeta()
	if v, present, err := m.Bool("selected"); !v || !present || err != nil {
		t.Fatalf("selected = %v %v %v", v, present, err)
	}
	if _, _, err := m.Bool("bad"); err == nil || !strings.Contains(err.Error(), `catalog stream a metadata "bad"`) {
		t.Fatalf("bad bool error = %v", err)
	}
	if v, err := m.Strings("view-key-properties"); err != nil || len(v) != 1 || v[0] != "id" {
		t.Fatalf("view-key-properties = %v %v", v, err)
	}
	if _, err := m.String("bad"); err == nil {
		t.Fatal("a number read as a string")
	}
	cm, ok := s.ColumnMeta("c")
	if v, present, err := cm.Bool("selected"); !ok || v || !present || err != nil {
		t.Fatalf("column selected = %v %v %v %v", ok, v, present, err)
	}
	if _, ok := s.ColumnMeta("missing"); ok {
		t.Fatal("a column the catalog does not list was found")
	}
	s.SetEntry("selected", true, "properties", "c")
	if v, _, _ := cm.Bool("selected"); !v {
		t.Fatal("SetEntry did not update the existing entry")
	}
}

func FuzzParseCatalog(f *testing.F) {
	for _, s := range []string{`{"streams":[]}`, `{"streams":[{"tap_stream_id":"a","metadata":[{"breadcrumb":[],"metadata":{"selected":true}}]}]}`, `[`, `{"streams":null}`, `{"streams":[null]}`} {
		f.Add(s)
	}
	// A catalog the tap accepts reads back the same after the tap writes it
	// (as --discover does): same streams, same selection, or the same error.
	f.Fuzz(func(t *testing.T, in string) {
		c, err := ParseCatalog([]byte(in))
		if err != nil {
			return
		}
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("an accepted catalog cannot be written: %v", err)
		}
		again, err := ParseCatalog(out)
		if err != nil {
			t.Fatalf("the written catalog is refused: %v\n%s", err, out)
		}
		if len(again.Streams) != len(c.Streams) {
			t.Fatalf("%d streams written, %d read back", len(c.Streams), len(again.Streams))
		}
		for i, s := range c.Streams {
			if again.Streams[i].TapStreamID != s.TapStreamID {
				t.Fatalf("stream %d: id %q read back as %q", i, s.TapStreamID, again.Streams[i].TapStreamID)
			}
			v1, p1, err1 := s.TableMeta().Bool("selected")
			v2, p2, err2 := again.Streams[i].TableMeta().Bool("selected")
			if v1 != v2 || p1 != p2 || (err1 == nil) != (err2 == nil) {
				t.Fatalf("stream %s: selected %v/%v/%v read back as %v/%v/%v", s.TapStreamID, v1, p1, err1, v2, p2, err2)
			}
		}
	})
}
