package types

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzIsJSONNumber agrees with encoding/json on what a number is.
func FuzzIsJSONNumber(f *testing.F) {
	for _, seed := range []string{"0", "-0", "01", "1.", ".5", "1e5", "1E+5", "-12.5e-3", "1e", "--1", "NaN", "Infinity", "12345678901234567890.123"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		var n json.Number
		want := json.Unmarshal(v, &n) == nil && bytes.Equal(bytes.TrimSpace(v), v) && len(v) > 0 && v[0] != '"'
		if got := IsJSONNumber(v); got != want {
			t.Fatalf("IsJSONNumber(%q) = %t, encoding/json %t", v, got, want)
		}
	})
}
