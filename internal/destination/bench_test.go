package destination_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/tap-postgres/tap-postgres/internal/destination"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

// BenchmarkPostgresLoad loads records shaped like bench.wide's (12 columns)
// by key, b.N per run, reported as rows/s: new keys (appended), then keys
// the table holds (merged through the staging table).
func BenchmarkPostgresLoad(b *testing.B) {
	for _, existing := range []bool{false, true} {
		b.Run(fmt.Sprintf("existing-keys=%t", existing), func(b *testing.B) { benchmarkLoad(b, existing) })
	}
}

func benchmarkLoad(b *testing.B, existing bool) {
	db := testpg.NewDatabase(b, pg)
	input := wideRecords(b.N)
	load := func() {
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
	if existing {
		load()
	}
	b.ResetTimer()
	load()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

func wideRecords(n int) []byte {
	var in bytes.Buffer
	in.WriteString(`{"type":"SCHEMA","stream":"wide","schema":{"type":"object","properties":{"id":{"type":["integer"],"minimum":-9223372036854775808,"maximum":9223372036854775807},` +
		`"a":{"type":["null","string"]},"b":{"type":["null","integer"],"minimum":-2147483648,"maximum":2147483647},"c":{"type":["null","number"]},"d":{"type":["null","string"],"format":"date-time"},` +
		`"e":{"type":["null","boolean"]},"f":{"type":["null","string"]},"g":{"type":["null","number"]},"h":{"type":["null","string"]},"i":{"type":["null","string"],"format":"date-time"},` +
		`"j":{"type":["null","integer"],"minimum":-2147483648,"maximum":2147483647},"k":{"type":["null","string"]}}},"key_properties":["id"]}` + "\n")
	for i := range n {
		fmt.Fprintf(&in, `{"type":"RECORD","stream":"wide","record":{"id":%d,"a":"name %d","b":%d,"c":%d.25,"d":"2024-06-01T12:00:00.000000+00:00","e":true,"f":"some text that is a bit longer, like a description","g":12345.678,"h":"x","i":"2024-06-01T12:00:00.000000+00:00","j":7,"k":"k"},"version":1,"time_extracted":"2026-11-24T11:00:00.000000Z"}`+"\n", i, i, i, i)
		if i%1000 == 999 {
			fmt.Fprintf(&in, `{"type":"STATE","value":{"n":%d}}`+"\n", i)
		}
	}
	return in.Bytes()
}
