package runner_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/runner"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

// TestStatusPages: the pages show each integration, its jobs (from every
// machine that ran them) and their extraction logs, the same from a
// directory and a PostgreSQL store; answer 404 for what does not exist, 400
// for a day that is not one, 503 for a store that cannot be read; hold no
// secret; and refuse every action without the token.
func TestStatusPages(t *testing.T) {
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	t.Run("directory store", func(t *testing.T) { testStatusPages(t, t.TempDir()) })
	t.Run("PostgreSQL store", func(t *testing.T) { testStatusPages(t, storeURL(testpg.NewDatabase(t, pg), "")) })
}

func testStatusPages(t *testing.T, store string) {
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, `CREATE TABLE shown (id integer PRIMARY KEY); INSERT INTO shown SELECT generate_series(1, 12);`)
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
	// A job another machine ran, as its process recorded it.
	other, err := runner.OpenStore(context.Background(), store, in.StoreKey())
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now().UTC().Add(-time.Second)
	err = other.AppendJob(runner.JobRecord{ID: 3, Started: started, Finished: started.Add(time.Second), Status: "failed",
		Error: "lost its destination", Host: "machine-b", PID: 4242, Rows: map[string]int64{"shown": 0}})
	other.Close()
	if err != nil {
		t.Fatal(err)
	}
	server := httptest.NewServer(runner.StatusHandler([]*runner.Integration{in}, store, time.Now, nil))
	defer server.Close()
	get := func(path string, status int, want ...string) string {
		t.Helper()
		resp, err := http.Get(server.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		return checkPage(t, "GET "+path, resp, status, want...)
	}
	today := time.Now().UTC().Format("2006-01-02")
	page := get("/integrations/shown_shop", 200, `href="/integrations/shown_shop/jobs/1/log"`, `href="/integrations/shown_shop/jobs/2/log"`,
		`<td>shown</td><td class="rows">12</td><td class="sent">12</td>`, "Bookmark Unavailable",
		"Extraction logs, "+today, `data-job="1" data-status="succeeded"`, `data-job="2" data-status="succeeded"`,
		"<td>public.shown</td><td>FULL_TABLE</td>", "no LOG_BASED slot sampled yet", "shown: 24",
		`data-job="3" data-status="failed"`, "<td>machine-b (pid 4242)</td>", "lost its destination", fmt.Sprintf("(pid %d)", os.Getpid()))
	if strings.Contains(page, "<form") {
		t.Errorf("a page without --http-token offers actions:\n%s", page)
	}
	get("/integrations/shown_shop?day=2001-02-03", 200, "Extraction logs, 2001-02-03", "no job on this day")
	get("/integrations/shown_shop?day=yesterday", 400, "is not a date")
	get("/integrations/shown_shop/jobs/1/log", 200, `job 1 of integration &#34;Shown Shop&#34; started`, `class="INFO"`)
	get("/integrations/nobody", 404)
	get("/integrations/shown_shop/jobs/99/log", 404)
	get("/integrations/shown_shop/jobs/x/log", 404)
	get("/nothing/here", 404)

	// Without --http-token every action is refused; an action is a POST.
	for _, action := range []string{"run", "stop", "reset"} {
		post(t, server.URL+"/integrations/shown_shop/"+action, url.Values{"token": {"anything-at-all-long"}}, 403, "actions are off")
	}
	get("/integrations/shown_shop/run", 405)

	// With a token: a wrong or missing one is refused, the right one acts.
	const token = "s3cret-token-of-the-page"
	controls := runner.NewControls([]*runner.Integration{in})
	acting := httptest.NewServer(runner.StatusHandler([]*runner.Integration{in}, store, time.Now, &runner.Actions{Token: token, Controls: controls}))
	defer acting.Close()
	server = acting
	page = get("/integrations/shown_shop", 200, `action="/integrations/shown_shop/run"`, `action="/integrations/shown_shop/reset"`, "<option>"+db+"-public-shown</option>")
	if strings.Contains(page, token) {
		t.Errorf("the page shows its token")
	}
	post(t, acting.URL+"/integrations/shown_shop/run", url.Values{"token": {"wrong-token-of-the-page"}}, 403, "wrong or missing token")
	post(t, acting.URL+"/integrations/shown_shop/run", nil, 403, "wrong or missing token")
	post(t, acting.URL+"/integrations/nobody/run", url.Values{"token": {token}}, 404)
	post(t, acting.URL+"/integrations/shown_shop/run", url.Values{"token": {token}}, 200, "a job was asked for")
	post(t, acting.URL+"/integrations/shown_shop/run", url.Values{"token": {token}}, 409, "already asked for")
	post(t, acting.URL+"/integrations/shown_shop/stop", url.Values{"token": {token}}, 409, "no job of this integration runs")
	// The token also comes as a bearer header; a proxy's Basic header
	// leaves the form's.
	for _, h := range []struct{ authorization, form string }{{"Bearer " + token, ""}, {"Basic dXNlcjpwdw==", token}} {
		req, _ := http.NewRequest("POST", acting.URL+"/integrations/shown_shop/stop", strings.NewReader(url.Values{"token": {h.form}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", h.authorization)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusConflict { // past the token: no job runs
			t.Errorf("stop with Authorization %q and form token %q: %d, want 409", h.authorization, h.form, resp.StatusCode)
		}
	}
	if page := get("/integrations/shown_shop?done=Type+your+token+at+evil.example", 200); strings.Contains(page, "evil.example") {
		t.Errorf("the page shows a message the link made up")
	}
	post(t, acting.URL+"/integrations/shown_shop/reset", url.Values{"token": {token}, "stream": {"nope"}}, 409, "has no bookmark")
	post(t, acting.URL+"/integrations/shown_shop/reset", url.Values{"token": {token}, "stream": {db + "-public-shown"}}, 200, "was reset")
	if page := get("/integrations/shown_shop", 200); strings.Contains(page, "<option>"+db+"-public-shown</option>") {
		t.Errorf("the reset stream still has a bookmark")
	}

	// A store that cannot be read is said so; the index still answers.
	unreachable := httptest.NewServer(runner.StatusHandler([]*runner.Integration{in}, "postgres://u@127.0.0.1:1/none?sslmode=disable&connect_timeout=2", time.Now, nil))
	defer unreachable.Close()
	server = unreachable
	get("/", 200, "Shown Shop", `class="failed"`)
	get("/integrations/shown_shop", 503, "the store cannot be read")
}

// post sends an action's form as a browser does, following the redirect to
// the page, and checks the answer.
func post(t *testing.T, address string, form url.Values, status int, want ...string) {
	t.Helper()
	resp, err := http.PostForm(address, form)
	if err != nil {
		t.Fatal(err)
	}
	checkPage(t, "POST "+address, resp, status, want...)
}

// checkPage checks an answer's status and content, and that it shows no
// password; it returns the page.
func checkPage(t *testing.T, request string, resp *http.Response, status int, want ...string) string {
	t.Helper()
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Errorf("%s: %d, want %d\n%s", request, resp.StatusCode, status, body)
	}
	for _, w := range want {
		if !strings.Contains(string(body), w) {
			t.Errorf("%s lacks %q:\n%s", request, w, body)
		}
	}
	// The token fields are <input type="password">; no value may follow.
	if strings.Contains(string(body), pg.Password) || strings.Contains(strings.ReplaceAll(string(body), `type="password"`, ""), "password") {
		t.Errorf("%s shows a password:\n%s", request, body)
	}
	return string(body)
}
