package logical

import (
	"slices"
	"strings"
	"testing"
)

func TestSplitList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"pgoutput, test_decoding", []string{"pgoutput", "test_decoding"}},
		{"pgoutput,test_decoding,wal2json", []string{"pgoutput", "test_decoding", "wal2json"}},
		{`"pgoutput, test_decoding, wal2json"`, []string{"pgoutput, test_decoding, wal2json"}},
		{`pgoutput, "wal2json"`, []string{"pgoutput", "wal2json"}},
		{`"a""b", WAL2JSON `, []string{`a"b`, "wal2json"}},
		{"", nil},
		{"  ", nil},
	} {
		if got := SplitList(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("SplitList(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	one := PluginAllowList{Known: true, Readable: true, Items: SplitList(`"pgoutput, test_decoding, wal2json"`)}
	if one.Allows("wal2json") {
		t.Error("one quoted string holding commas allowed wal2json")
	}
}

func FuzzSplitList(f *testing.F) {
	for _, s := range []string{"pgoutput, test_decoding", `"a""b", c`, `"unterminated`, `"x" y, z`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, most := len(SplitList(s)), strings.Count(s, ",")+1; n > most {
			t.Fatalf("%q split into %d items, more than its %d comma-separated parts", s, n, most)
		}
	})
}
