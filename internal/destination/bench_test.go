package destination_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"testing"

	"github.com/tap-postgres/tap-postgres/internal/destination"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

// BenchmarkPostgresLoad loads records shaped like bench.wide's (12 columns)
// by key, b.N per run in batches of 20000, reported as rows/s: new keys
// (appended), keys the table holds (merged through the staging table), new
// text keys (appended; a text key's order is the server's collation, so a
// later batch's keys are told new by the keys this job appended, not by
// the greatest), and new text keys into a table an earlier job filled
// (appended once the server finds none of them).
func BenchmarkPostgresLoad(b *testing.B) {
	for _, c := range []struct {
		name string
		// earlier is the first key an earlier job loads b.N of; -1: none.
		earlier int
		textKey bool
	}{
		{name: "existing-keys=false", earlier: -1},
		{name: "existing-keys=true", earlier: 0},
		{name: "text-keys", earlier: -1, textKey: true},
		{name: "text-keys-later-job", earlier: 1 << 30, textKey: true},
	} {
		b.Run(c.name, func(b *testing.B) { benchmarkLoad(b, c.earlier, c.textKey) })
	}
}

func benchmarkLoad(b *testing.B, earlier int, textKey bool) {
	db := testpg.NewDatabase(b, pg)
	load := func(input []byte) {
		d, err := destination.OpenPostgres(context.Background(), pg.ConnString(db), "bench", "test", destination.Options{
			Commit: func(json.RawMessage) error { return nil }, Clock: fixedClock,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := d.Write(input); err != nil {
			b.Fatal(err)
		}
		if err := d.Close(); err != nil {
			b.Fatal(err)
		}
	}
	if earlier >= 0 {
		load(wideRecords(b.N, earlier, textKey))
	}
	input := wideRecords(b.N, 0, textKey)
	b.ResetTimer()
	load(input)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// wideRecords are n records of stream wide, keys from first on; with
// textKey their keys are strings in no order.
func wideRecords(n, first int, textKey bool) []byte {
	var in bytes.Buffer
	idType, id := `{"type":["integer"],"minimum":-9223372036854775808,"maximum":9223372036854775807}`, func(i int) string { return strconv.Itoa(i) }
	if textKey {
		idType, id = `{"type":["string"]}`, func(i int) string { return fmt.Sprintf(`"%08x-%d"`, uint32(i)*2654435761, i) }
	}
	in.WriteString(`{"type":"SCHEMA","stream":"wide","schema":{"type":"object","properties":{"id":` + idType + `,` +
		`"a":{"type":["null","string"]},"b":{"type":["null","integer"],"minimum":-2147483648,"maximum":2147483647},"c":{"type":["null","number"]},"d":{"type":["null","string"],"format":"date-time"},` +
		`"e":{"type":["null","boolean"]},"f":{"type":["null","string"]},"g":{"type":["null","number"]},"h":{"type":["null","string"]},"i":{"type":["null","string"],"format":"date-time"},` +
		`"j":{"type":["null","integer"],"minimum":-2147483648,"maximum":2147483647},"k":{"type":["null","string"]}}},"key_properties":["id"]}` + "\n")
	for i := first; i < first+n; i++ {
		fmt.Fprintf(&in, `{"type":"RECORD","stream":"wide","record":{"id":%s,"a":"name %d","b":%d,"c":%d.25,"d":"2024-06-01T12:00:00.000000+00:00","e":true,"f":"some text that is a bit longer, like a description","g":12345.678,"h":"x","i":"2024-06-01T12:00:00.000000+00:00","j":7,"k":"k"},"version":1,"time_extracted":"2026-11-24T11:00:00.000000Z"}`+"\n", id(i), i, i, i)
		if i%1000 == 999 {
			fmt.Fprintf(&in, `{"type":"STATE","value":{"n":%d}}`+"\n", i)
		}
	}
	return in.Bytes()
}
