package runner_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/runner"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

// TestStatusPages: the pages show each integration, its jobs and their
// extraction logs, answer 404 for what does not exist and 503 for a store
// that cannot be read, and hold no secret.
func TestStatusPages(t *testing.T) {
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, `CREATE TABLE shown (id integer PRIMARY KEY); INSERT INTO shown SELECT generate_series(1, 12);`)
	store := t.TempDir()
	integration := writeIntegration(t, "name: Shown Shop\n"+connectionYAML(db)+fmt.Sprintf(`default_replication_method: FULL_TABLE
tables: [{schema: public, table: shown}]
schedule: {frequency: 1h}
destination: {type: jsonl, path: %s}
`, filepath.Join(t.TempDir(), "out")))
	for range 2 {
		if code, out := runMain(t, "run", "--integration", integration, "--store", store); code != 0 {
			t.Fatalf("job: %s", out)
		}
	}
	in, err := runner.LoadIntegration(integration)
	if err != nil {
		t.Fatal(err)
	}
	server := httptest.NewServer(runner.StatusHandler([]*runner.Integration{in}, store, time.Now))
	defer server.Close()
	get := func(path string, status int, want ...string) string {
		t.Helper()
		resp, err := http.Get(server.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != status {
			t.Errorf("GET %s: %d, want %d\n%s", path, resp.StatusCode, status, body)
		}
		for _, w := range want {
			if !strings.Contains(string(body), w) {
				t.Errorf("GET %s lacks %q:\n%s", path, w, body)
			}
		}
		if strings.Contains(string(body), pg.Password) || strings.Contains(string(body), "password") {
			t.Errorf("GET %s shows a password:\n%s", path, body)
		}
		return string(body)
	}
	get("/", 200, "Shown Shop", fmt.Sprintf("%s:%d/%s", pg.Host, pg.Port, db), "jsonl", "every 1h0m0s",
		`<span class="succeeded">succeeded</span> (job 2`, "<td>24</td>")
	get("/integrations/shown_shop", 200, `href="/integrations/shown_shop/jobs/1/log"`, `href="/integrations/shown_shop/jobs/2/log"`,
		"<td>shown</td><td>12</td><td>12</td>", "Bookmark Unavailable")
	get("/integrations/shown_shop/jobs/1/log", 200, `job 1 of integration &#34;Shown Shop&#34; started`, `class="INFO"`)
	get("/integrations/nobody", 404)
	get("/integrations/shown_shop/jobs/99/log", 404)
	get("/integrations/shown_shop/jobs/x/log", 404)
	get("/nothing/here", 404)

	// A store that cannot be read is said so; the index still answers.
	unreachable := httptest.NewServer(runner.StatusHandler([]*runner.Integration{in}, "postgres://u@127.0.0.1:1/none?sslmode=disable&connect_timeout=2", time.Now))
	defer unreachable.Close()
	server = unreachable
	get("/", 200, "Shown Shop", `class="failed"`)
	get("/integrations/shown_shop", 503, "the store cannot be read")
}
