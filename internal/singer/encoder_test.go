package singer

import (
	"bytes"
	"encoding/json"
	"math"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/types"
)

// FuzzRecordEncoderMatchesEncodingJSON proves the appender emits exactly what
// encoding/json (SetEscapeHTML(false)) emits for the same record. Columns are
// sorted so that encoding/json's sorted map keys line up with column order.
func FuzzRecordEncoderMatchesEncodingJSON(f *testing.F) {
	f.Add("orders", "id", "name", "<b>&\u2028", int64(-5), 1.5e-7, true, uint8(0))
	f.Add("s\"t\\r", "a\x00", "é", "\xff\xfe", int64(math.MaxInt64), 1e21, false, uint8(7))
	f.Add("", "k", "k2", "", int64(0), -0.0, true, uint8(3))
	f.Fuzz(func(t *testing.T, stream, col1, col2, str string, n int64, fl float64, b bool, nullMask uint8) {
		if col1 == col2 || math.IsInf(fl, 0) || math.IsNaN(fl) {
			return
		}
		strType := &types.Type{Kind: types.KindString}
		intType := &types.Type{Kind: types.KindInteger}
		floatType := &types.Type{Kind: types.KindFloat}
		boolType := &types.Type{Kind: types.KindBoolean}
		cols := []string{col1, col2, col1 + "\x01i", col1 + "\x01j", col1 + "\x01k"}
		vals := []any{str, str + col2, json.Number(strconv.FormatInt(n, 10)), fl, b}
		texts := [][]byte{[]byte(str), []byte(str + col2), []byte(strconv.FormatInt(n, 10)), []byte(strconv.FormatFloat(fl, 'g', -1, 64)), []byte(strconv.FormatBool(b))}
		typs := []*types.Type{strType, strType, intType, floatType, boolType}
		order := []int{0, 1, 2, 3, 4}
		sort.Slice(order, func(i, j int) bool { return cols[order[i]] < cols[order[j]] })
		if hasDuplicate(cols) {
			return
		}
		sorted := make([]string, len(cols))
		for i, o := range order {
			sorted[i] = cols[o]
		}
		version := int64(1717243200000)
		extracted := time.Date(2024, 6, 1, 12, 0, 0, 123456000, time.UTC)
		enc := NewRecordEncoder(stream, sorted, version)
		enc.SetTimeExtracted(extracted)
		record := map[string]any{}
		line := enc.Begin(nil)
		for i, o := range order {
			line = enc.Field(line, i)
			if nullMask&(1<<o) != 0 {
				line = append(line, "null"...)
				record[cols[o]] = nil
				continue
			}
			line, _ = typs[o].AppendJSON(line, texts[o])
			record[cols[o]] = vals[o]
		}
		line = enc.End(line)

		var want bytes.Buffer
		je := json.NewEncoder(&want)
		je.SetEscapeHTML(false)
		if err := je.Encode(struct {
			Type          string         `json:"type"`
			Stream        string         `json:"stream"`
			Record        map[string]any `json:"record"`
			Version       int64          `json:"version"`
			TimeExtracted string         `json:"time_extracted"`
		}{"RECORD", stream, record, version, "2024-06-01T12:00:00.123456Z"}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(line, want.Bytes()) {
			t.Fatalf("encoder:\n%s\nencoding/json:\n%s", line, want.Bytes())
		}
	})
}

func hasDuplicate(s []string) bool {
	seen := map[string]bool{}
	for _, x := range s {
		if seen[x] {
			return true
		}
		seen[x] = true
	}
	return false
}

func BenchmarkRecordEncoder(b *testing.B) {
	cols := []string{"id", "int_col", "amount", "descr", "code", "flag", "updated_at", "day", "attrs", "uid", "score", "tags"}
	intT := &types.Type{Kind: types.KindInteger}
	row := []struct {
		t *types.Type
		v []byte
	}{
		{intT, []byte("123456")}, {intT, []byte("-42")}, {&types.Type{Kind: types.KindNumeric}, []byte("12345.67")},
		{&types.Type{Kind: types.KindString}, []byte("row-123456-e10adc3949ba59abbe56e057f20f883e")},
		{&types.Type{Kind: types.KindString}, []byte("C001234")}, {&types.Type{Kind: types.KindBoolean}, []byte("t")},
		{&types.Type{Kind: types.KindTimestamp}, []byte("2024-01-02 10:17:36.000456+00")},
		{&types.Type{Kind: types.KindDate}, []byte("2003-05-12")},
		{&types.Type{Kind: types.KindJSON}, []byte(`{"k": 56, "s": "v3", "ok": true}`)},
		{&types.Type{Kind: types.KindString}, []byte("e10adc39-49ba-59ab-be56-e057f20f883e")},
		{&types.Type{Kind: types.KindFloat}, []byte("17636.571428571428")},
		{&types.Type{Kind: types.KindArray, Elem: &types.Type{Kind: types.KindString}, Delim: ','}, []byte("{t1,t7}")},
	}
	enc := NewRecordEncoder("wide", cols, 1717243200000)
	enc.SetTimeExtracted(time.Now())
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = enc.Begin(buf[:0])
		for i, c := range row {
			buf = enc.Field(buf, i)
			buf, _ = c.t.AppendJSON(buf, c.v)
		}
		buf = enc.End(buf)
	}
	b.SetBytes(int64(len(buf)))
}
