package runner_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/engine"
	"github.com/tap-postgres/tap-postgres/internal/runner"
)

// BenchmarkStatusPage draws an integration's page, and scrapes /metrics,
// from a directory store holding what a week of minute sampling and
// hourly jobs leave: two slots' 20,160 samples and 168 jobs of 50 tables.
func BenchmarkStatusPage(b *testing.B) {
	store := b.TempDir()
	integration := writeIntegration(b, fmt.Sprintf(`name: busy
connection: {host: 127.0.0.1, port: 5432, user: u, dbname: shop}
default_replication_method: LOG_BASED
tables: [{schema: public, table: t}]
schedule: {frequency: 1h}
destination: {type: jsonl, path: %s}
`, filepath.Join(b.TempDir(), "out")))
	in, err := runner.LoadIntegration(integration)
	if err != nil {
		b.Fatal(err)
	}
	s, err := runner.OpenStore(context.Background(), store, in.StoreKey())
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	start := now.Add(-7 * 24 * time.Hour)
	var samples []runner.SlotSample
	for at := start.Add(time.Minute); !at.After(now); at = at.Add(time.Minute) {
		for _, slot := range []string{"a", "b"} {
			smp := runner.SlotSample{At: at}
			smp.Database, smp.Slot, smp.Plugin, smp.WALStatus, smp.WALHeld, smp.Lag = "shop", slot, "pgoutput", "reserved", 1<<30, 1<<20
			samples = append(samples, smp)
		}
		if len(samples) >= 1000 {
			if err := s.AppendSlotSamples(samples); err != nil {
				b.Fatal(err)
			}
			samples = samples[:0]
		}
	}
	if err := s.AppendSlotSamples(samples); err != nil {
		b.Fatal(err)
	}
	for id := 1; id <= 168; id++ {
		rows := map[string]int64{}
		for t := range 50 {
			rows[fmt.Sprintf("table_%02d", t)] = int64(id * t)
		}
		started := start.Add(time.Duration(id) * time.Hour)
		slots := []engine.SlotHealth{{Database: "shop", Slot: "a", Plugin: "pgoutput"}, {Database: "shop", Slot: "b", Plugin: "pgoutput"}}
		if err := s.AppendJob(runner.JobRecord{ID: id, Started: started, Finished: started.Add(time.Minute), Status: "succeeded",
			Rows: rows, Sent: rows, Slots: slots}); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", runner.MetricsHandler([]*runner.Integration{in}, store, time.Now))
	mux.Handle("/", runner.StatusHandler([]*runner.Integration{in}, store, time.Now, nil))
	server := httptest.NewServer(mux)
	defer server.Close()
	for _, path := range []string{"/integrations/busy", "/metrics"} {
		b.Run(path, func(b *testing.B) {
			for b.Loop() {
				resp, err := http.Get(server.URL + path)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("GET %s: %d", path, resp.StatusCode)
				}
				b.ReportMetric(float64(n), "bytes/page")
			}
		})
	}
}
