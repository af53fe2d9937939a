package runner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/tap-postgres/tap-postgres/internal/runner"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
)

// TestSupervisedJobOutOfMemory: a job whose process runs out of memory
// (ulimit -v, a 400 MB row, max_row_bytes raised past what the limit
// holds) ends with a CRITICAL line, not a Go stack dump, and is in the
// history as crashed with the cause, its log ending with it. A job that
// ends normally keeps its exit status.
func TestSupervisedJobOutOfMemory(t *testing.T) {
	t.Setenv("RUNNER_TEST_PASSWORD", pg.Password)
	db := testpg.NewDatabase(t, pg)
	testpg.Exec(t, pg, db, `CREATE TABLE big (id integer PRIMARY KEY, v text); INSERT INTO big VALUES (1, 'small');`)
	store := t.TempDir()
	integration := writeIntegration(t, "name: hungry\n"+connectionYAML(db)+fmt.Sprintf(`  max_row_bytes: 1073741823
default_replication_method: FULL_TABLE
tables: [{schema: public, table: big}]
destination: {type: jsonl, path: %s}
`, t.TempDir()))
	args := []string{"run", "--integration", integration, "--store", store}
	encoded, _ := json.Marshal(args)
	t.Setenv(envRunnerArgs, string(encoded))
	// The test binary is the job's program; its address space is bounded
	// as `ulimit -v` bounds it.
	child := []string{"sh", "-c", `ulimit -v 2300000 && exec "$0" -test.run='^$'`, os.Args[0]}
	supervise := func() (int, string) {
		var stdout, stderr bytes.Buffer
		code := runner.Supervise(context.Background(), child, args, &stdout, &stderr, nil)
		return code, stdout.String() + stderr.String()
	}
	if code, out := supervise(); code != 0 || !regexp.MustCompile(`(?m)^1 .* succeeded`).MatchString(out) {
		t.Fatalf("a job within its memory: exit %d\n%s", code, out)
	}

	testpg.Exec(t, pg, db, `UPDATE big SET v = repeat('x', 400000000) WHERE id = 1`)
	testpg.Exec(t, pg, "postgres", "SELECT 1") // the server is fine
	if code, out := supervise(); code != 1 {
		t.Fatalf("the job out of memory: exit %d\n%s", code, out)
	} else {
		lines := strings.Split(strings.TrimSpace(out), "\n")
		last := lines[len(lines)-1]
		if !strings.HasPrefix(last, "CRITICAL job 2 crashed: its process died: fatal error: ") || !strings.Contains(last, "out of memory") {
			t.Errorf("last line %q, want the CRITICAL of job 2 out of memory; output:\n%.3000s", last, out)
		}
		if strings.Contains(out, "goroutine ") {
			t.Errorf("a goroutine dump reached the output:\n%.3000s", out)
		}
	}
	code, jobs := runMain(t, "jobs", "--integration", integration, "--store", store)
	if code != 0 || !regexp.MustCompile(`(?m)^2 .* crashed .*its process died: fatal error: .*out of memory`).MatchString(jobs) {
		t.Fatalf("jobs after the crash:\n%s", jobs)
	}
	_, logText := runMain(t, "logs", "--integration", integration, "--store", store, "--job", "2")
	if lines := strings.Split(strings.TrimSpace(logText), "\n"); !strings.Contains(lines[len(lines)-1], "main - CRITICAL job 2 crashed: its process died: fatal error:") {
		t.Errorf("log of the crashed job:\n%s", logText)
	}
}
