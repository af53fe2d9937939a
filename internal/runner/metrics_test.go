package runner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tap-postgres/tap-postgres/internal/runner"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

// TestMetrics: `serve --http` serves /metrics in Prometheus' text format,
// parsed here with Prometheus' own parser and checked against `report
// --json` and the slot: jobs by status, rows loaded and sent per table,
// job durations, the last success, the next run, the WAL the slot held.
func TestMetrics(t *testing.T) {
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	db := testpg.NewDatabase(t, pg)
	slot := "s_" + db[len(db)-8:]
	testpg.Exec(t, pg, db, `CREATE TABLE watched (id integer PRIMARY KEY, v text); INSERT INTO watched SELECT g, 'v' FROM generate_series(1, 30) g;`)
	newSlot(t, db, slot)
	store := t.TempDir()
	integration := writeIntegration(t, "name: watched\n"+connectionYAML(db)+fmt.Sprintf(`  slot_name: %s
default_replication_method: LOG_BASED
tables: [{schema: public, table: watched}]
schedule: {frequency: 1h}
destination: {type: jsonl, path: %s}
`, slot, filepath.Join(t.TempDir(), "out")))
	if code, out := runMain(t, "run", "--integration", integration, "--store", store); code != 0 {
		t.Fatalf("first job: %s", out)
	}
	testpg.Exec(t, pg, db, `UPDATE watched SET v = 'w' WHERE id <= 5`)

	// serve runs a job at once; its /metrics is scraped while it runs on.
	addr := freeAddress(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan int)
	var serveErr bytes.Buffer
	go func() {
		served <- runner.Main(ctx, []string{"serve", "--integration", integration, "--store", store, "--http", addr}, io.Discard, &serveErr, nil)
	}()
	var families map[string]*dto.MetricFamily
	deadline := time.Now().Add(60 * time.Second)
	for {
		families = scrape(t, "http://"+addr+"/metrics")
		if families != nil && value(families, "tap_postgres_jobs_total", "status", "succeeded") == 2 {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no second succeeded job in /metrics within a minute:\n%s", serveErr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	if code := <-served; code != 0 {
		t.Fatalf("serve: exit %d\n%s", code, serveErr.String())
	}

	code, reportJSON := runMain(t, "report", "--integration", integration, "--store", store, "--json")
	var report struct {
		Loads []struct {
			Job      int       `json:"job"`
			Finished time.Time `json:"finished"`
			Stream   string    `json:"stream"`
			Rows     int64     `json:"rows"`
			RowsSent int64     `json:"rows_sent"`
		} `json:"loads"`
	}
	if err := json.Unmarshal([]byte(reportJSON[:strings.LastIndex(reportJSON, "}")+1]), &report); err != nil || code != 0 {
		t.Fatalf("report --json: %v\n%s", err, reportJSON)
	}
	var loaded, sent int64
	var last time.Time
	for _, l := range report.Loads {
		loaded += l.Rows
		sent += l.RowsSent
		last = l.Finished
	}
	for name, want := range map[string]float64{
		"tap_postgres_rows_loaded_total":              float64(loaded),
		"tap_postgres_records_sent_total":             float64(sent),
		"tap_postgres_last_success_timestamp_seconds": float64(last.Unix()),
		"tap_postgres_store_up":                       1,
	} {
		if got := value(families, name, "", ""); got != want {
			t.Errorf("%s = %v, want %v (report --json)", name, got, want)
		}
	}
	if loaded != 35 {
		t.Errorf("report: %d rows loaded, want 30 copied and 5 updates", loaded)
	}
	if h := families["tap_postgres_job_duration_seconds"]; h == nil || h.Metric[0].GetHistogram().GetSampleCount() != 2 {
		t.Errorf("job duration histogram: %v", h)
	}
	if next := value(families, "tap_postgres_next_run_seconds", "", ""); next <= 0 || next > 3600 {
		t.Errorf("next run in %v s, want within the hour", next)
	}
	wal := families["tap_postgres_slot_wal_held_bytes"]
	if wal == nil || len(wal.Metric) != 1 || wal.Metric[0].GetGauge().GetValue() <= 0 || label(wal.Metric[0], "slot") != slot || label(wal.Metric[0], "wal_status") != "reserved" {
		t.Errorf("slot WAL held: %v", wal)
	}
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(body), pg.Password) || strings.Contains(strings.ToLower(string(body)), "password") {
		t.Fatalf("/metrics shows a password:\n%s", body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics is not Prometheus' text format: %v", err)
	}
	return families
}

// value is the sum of a family's samples, those with the label's value
// when one is named.
func value(families map[string]*dto.MetricFamily, name, labelName, labelValue string) float64 {
	var sum float64
	for _, m := range families[name].GetMetric() {
		if labelName != "" && label(m, labelName) != labelValue {
			continue
		}
		sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return sum
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
