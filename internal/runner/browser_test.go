package runner_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tap-postgres/tap-postgres/internal/runner"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

var updateScreenshot = flag.Bool("update", false, "rewrite docs/status-page.png from the browser test")

// chromiumPath is Debian's chromium (scripts/install-deps.sh test installs
// it), or the browser $CHROMIUM names; chromedp never downloads one.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("the browser test needs Debian's chromium (scripts/install-deps.sh test installs it) or $CHROMIUM: %v", err)
	}
	return p
}

// TestStatusPageInBrowser opens the status page of a `serve` with two
// integrations after real jobs in headless Chromium: the extraction-log
// bars (one per job, coloured by status) link to the jobs' logs, the
// loading report's figures are `report --json`'s, and the slot panel shows
// the WAL the slot holds after writes; "Run now", with the token, runs a
// job. Its screenshot is kept when it fails (and, with -update, written as
// the README's docs/status-page.png).
func TestStatusPageInBrowser(t *testing.T) {
	browser := chromiumPath(t)
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	db := testpg.NewDatabase(t, pg)
	slot := "s_" + db[len(db)-8:]
	testpg.Exec(t, pg, db, `
		CREATE TABLE orders (id integer PRIMARY KEY, amount numeric(12,2), note text);
		INSERT INTO orders SELECT g, g * 1.25, 'order ' || g FROM generate_series(1, 500) g;
		CREATE TABLE customers (id integer PRIMARY KEY, name text);
		INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 40) g;`)
	newSlot(t, db, slot)
	store := t.TempDir()
	// No job falls due while the test runs: the page shows the jobs run here.
	quiet := fmt.Sprintf("schedule: {frequency: 24h, anchor: %q}\n", time.Now().Add(12*time.Hour).UTC().Format(time.RFC3339))
	changes := writeIntegration(t, "name: Shop Changes\n"+connectionYAML(db)+fmt.Sprintf(`  slot_name: %s
default_replication_method: LOG_BASED
tables: [{schema: public, table: orders}]
%sdestination: {type: jsonl, path: %s}
`, slot, quiet, filepath.Join(t.TempDir(), "changes")))
	customers := writeIntegration(t, "name: Shop Customers\n"+connectionYAML(db)+fmt.Sprintf(`default_replication_method: FULL_TABLE
tables: [{schema: public, table: customers}]
%sdestination: {type: jsonl, path: %s}
`, quiet, filepath.Join(t.TempDir(), "customers")))
	job := func(integration string, succeeds bool) {
		t.Helper()
		code, out := runMain(t, "run", "--integration", integration, "--store", store)
		if (code == 0) != succeeds {
			t.Fatalf("job exited %d:\n%s", code, out)
		}
	}
	job(changes, true)
	testpg.Exec(t, pg, db, `UPDATE orders SET amount = amount + 1 WHERE id <= 120; DELETE FROM orders WHERE id > 490`)
	job(changes, true)
	job(customers, true)
	testpg.Exec(t, pg, db, `ALTER TABLE customers RENAME TO clients`)
	job(customers, false)
	// Writes after the last job: the slot holds their WAL.
	testpg.Exec(t, pg, db, `INSERT INTO orders SELECT g, g, repeat('n', 200) FROM generate_series(501, 3000) g`)

	const token = "browser-test-token-of-the-page"
	t.Setenv("TAP_POSTGRES_HTTP_TOKEN", token)
	addr := freeAddress(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan int)
	go func() {
		served <- runner.Main(ctx, []string{"serve", "--integration", changes, "--integration", customers, "--store", store, "--http", addr},
			io.Discard, io.Discard, nil)
	}()
	defer func() {
		cancel()
		<-served
	}()

	options := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-dev-shm-usage", true))
	if os.Geteuid() == 0 {
		options = append(options, chromedp.NoSandbox)
	}
	allocCtx, closeAlloc := chromedp.NewExecAllocator(context.Background(), options...)
	defer closeAlloc()
	browserCtx, closeBrowser := chromedp.NewContext(allocCtx)
	defer closeBrowser()
	browserCtx, timeout := context.WithTimeout(browserCtx, 90*time.Second)
	defer timeout()

	base := "http://" + addr
	waitForServe(t, base)
	// The screenshot outlives a failed test, for a person to look at.
	shots, err := os.MkdirTemp("", "status-page-")
	must(t, err)
	screenshot := filepath.Join(shots, "status-page.png")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the page as the browser drew it: %s (and its HTML beside it)", screenshot)
		} else {
			os.RemoveAll(shots)
		}
	})
	var png []byte
	capture := func() {
		var err error
		if png, err = chromedp.Run(browserCtx, chromedp.FullScreenshot(100)); err != nil {
			t.Errorf("screenshot: %v", err)
			return
		}
		html, err := chromedp.Run(browserCtx, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
		if err != nil {
			t.Errorf("page HTML: %v", err)
		}
		if err := errors.Join(os.WriteFile(screenshot, png, 0o600), os.WriteFile(filepath.Join(shots, "status-page.html"), []byte(html), 0o600)); err != nil {
			t.Error(err)
		}
	}

	// The index lists both; its link opens an integration's page.
	must(t, chromedp.Do(browserCtx, chromedp.Navigate(base+"/")))
	integrations := run(t, browserCtx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("table a")].map(a => a.textContent)`))
	must(t, chromedp.Do(browserCtx, chromedp.Click(chromedp.Search(`//a[text()="Shop Customers"]`)), chromedp.WaitVisible(chromedp.ID("extractions"))))
	if strings.Join(integrations, ",") != "Shop Changes,Shop Customers" {
		t.Errorf("index lists %q", integrations)
	}

	// Shop Customers: a green bar and a red one, which opens the failed
	// job's log with its CRITICAL on top.
	statusColours := map[string]string{"succeeded": "rgb(46, 158, 79)", "failed": "rgb(217, 48, 37)"}
	checkBars := func(name string, want []string) {
		t.Helper()
		bars := run(t, browserCtx, chromedp.Evaluate[[]struct {
			Job    string  `json:"job"`
			Status string  `json:"status"`
			Fill   string  `json:"fill"`
			Href   string  `json:"href"`
			Height float64 `json:"height"`
		}](`[...document.querySelectorAll("svg rect[data-job]")].map(r => ({
			job: r.dataset.job, status: r.dataset.status, fill: getComputedStyle(r).fill,
			href: r.parentElement.getAttribute("href"), height: r.height.baseVal.value}))`))
		if len(bars) != len(want) {
			capture()
			t.Fatalf("%s: %d extraction bars, want %d: %+v", name, len(bars), len(want), bars)
		}
		for i, b := range bars {
			if b.Job != strconv.Itoa(i+1) || b.Status != want[i] || b.Fill != statusColours[want[i]] || b.Height <= 0 ||
				!strings.HasSuffix(b.Href, "/jobs/"+b.Job+"/log") {
				t.Errorf("%s: bar %d is %+v, want job %d %s drawn in %s linking to its log", name, i, b, i+1, want[i], statusColours[want[i]])
			}
		}
	}
	checkBars("Shop Customers", []string{"succeeded", "failed"})
	must(t, chromedp.Do(browserCtx, chromedp.Click(chromedp.CSS(`svg a rect[data-job="2"]`)), chromedp.WaitVisible(chromedp.CSS("pre.critical"))))
	title := run(t, browserCtx, chromedp.Text(chromedp.CSS("h1")))
	critical := run(t, browserCtx, chromedp.Text(chromedp.CSS("pre.critical")))
	if title != "Job 2" || !strings.Contains(critical, "CRITICAL") || !strings.Contains(critical, "customers") {
		t.Errorf("the failed bar opened %q with %q on top", title, critical)
	}

	// Shop Changes: two green bars; the loading report is report --json's;
	// the slot holds the WAL of the writes after its last job.
	must(t, chromedp.Do(browserCtx, chromedp.Navigate(base+"/integrations/shop_changes"), chromedp.WaitVisible(chromedp.ID("slots"))))
	checkBars("Shop Changes", []string{"succeeded", "succeeded"})
	type changeCounts struct{ Inserts, Updates, Deletes int64 }
	type load struct {
		Job     int           `json:"job"`
		Stream  string        `json:"stream"`
		Rows    int64         `json:"rows"`
		Changes *changeCounts `json:"changes"`
		Status  string        `json:"status"`
	}
	shown := run(t, browserCtx, chromedp.Evaluate[[]load](`[...document.querySelectorAll("#loads tr[data-job]")].map(tr => ({
		job: +tr.dataset.job, stream: tr.dataset.table, rows: +tr.querySelector(".rows").textContent,
		changes: tr.querySelector(".changes").textContent === "-" ? null :
			(([i, u, d]) => ({Inserts: i, Updates: u, Deletes: d}))(tr.querySelector(".changes").textContent.split(" / ").map(Number)),
		status: tr.querySelector("td:nth-child(8)").textContent}))`))
	code, out := runMain(t, "report", "--integration", changes, "--store", store, "--json")
	var report struct{ Loads []load }
	if err := json.Unmarshal([]byte(out), &report); code != 0 || err != nil {
		t.Fatalf("report --json: %v\n%s", err, out)
	}
	text := func(loads []load) string {
		var b strings.Builder
		for _, l := range loads {
			fmt.Fprintf(&b, "%d %s %d %v %s; ", l.Job, l.Stream, l.Rows, l.Changes, l.Status)
		}
		return b.String()
	}
	want := "1 orders 500 <nil> succeeded; 2 orders 130 &{0 120 10} succeeded; "
	if text(shown) != text(report.Loads) || text(shown) != want {
		t.Errorf("the page's loading report %s\nreport --json %s\nwant %s (job 2 sent 120 updates and 10 deletes)", text(shown), text(report.Loads), want)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		held := run(t, browserCtx, chromedp.Evaluate[struct {
			Bytes  string `json:"bytes"`
			Slot   string `json:"slot"`
			Points string `json:"points"`
		}](`({bytes: document.querySelector("td.held")?.dataset.bytes ?? "",
			slot: document.querySelector("table.slot td:nth-child(2)")?.textContent ?? "",
			points: document.querySelector("polyline.held")?.getAttribute("points") ?? ""})`))
		n, _ := strconv.ParseInt(held.Bytes, 10, 64)
		if held.Slot == slot && n > 500_000 && len(strings.Fields(held.Points)) >= 1 {
			break
		}
		if time.Now().After(deadline) {
			capture()
			t.Fatalf("the slot panel shows %+v; want slot %s holding the ~600 kB written after the last job, with its history", held, slot)
		}
		time.Sleep(500 * time.Millisecond)
		must(t, chromedp.Do(browserCtx, chromedp.Reload()))
	}
	capture()
	if *updateScreenshot {
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "status-page.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// "Run now", with the token typed into its form, runs a job that
	// streams the writes.
	must(t, chromedp.Do(browserCtx,
		chromedp.SendKeys(chromedp.CSS(`form[action$="/run"] input[name=token]`), token),
		chromedp.Click(chromedp.CSS(`form[action$="/run"] button`)),
		chromedp.WaitVisible(chromedp.CSS("p.message"))))
	if message := run(t, browserCtx, chromedp.Text(chromedp.CSS("p.message"))); !strings.Contains(message, "a job was asked for") {
		t.Errorf("run now answered %q", message)
	}
	deadline = time.Now().Add(60 * time.Second)
	for {
		must(t, chromedp.Do(browserCtx, chromedp.Navigate(base+"/integrations/shop_changes"), chromedp.WaitVisible(chromedp.ID("extractions"))))
		statuses := run(t, browserCtx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("svg rect[data-job]")].map(r => r.dataset.status)`))
		if strings.Join(statuses, ",") == "succeeded,succeeded,succeeded" {
			break
		}
		if time.Now().After(deadline) {
			capture()
			t.Fatalf("after run now, the bars are %q; want a third job that succeeded", statuses)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if rows := run(t, browserCtx, chromedp.Text(chromedp.CSS(`#loads tr[data-job="3"] .rows`))); rows != "2500" {
		t.Errorf("the asked-for job loaded %s rows, want the 2500 inserted after job 2", rows)
	}
	if changes := run(t, browserCtx, chromedp.Text(chromedp.CSS(`#loads tr[data-job="3"] .changes`))); changes != "2500 / 0 / 0" {
		t.Errorf("the asked-for job sent %s inserts / updates / deletes, want 2500 / 0 / 0", changes)
	}
	if page := run(t, browserCtx, chromedp.Evaluate[string](`document.documentElement.outerHTML`)); strings.Contains(page, token) || strings.Contains(page, pg.Password) {
		t.Errorf("the page shows the token or the source's password")
	}
}

// run runs a browser action that gives a value.
func run[T any](t *testing.T, ctx context.Context, action chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, action)
	must(t, err)
	return v
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// freeAddress is a loopback address nothing listens on.
func freeAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitForServe waits until serve answers.
func waitForServe(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve does not answer at %s: %v", base, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
