package demo

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
)

// TestDemoRunsTwoJobs runs README command 1's code path end to end: two
// runner jobs into the warehouse around changes in the source.
func TestDemoRunsTwoJobs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own PostgreSQL cluster")
	}
	var stdout, stderr bytes.Buffer
	if code := Run(context.Background(), []string{"--out", t.TempDir()}, &stdout, &stderr); code != 0 {
		t.Fatalf("demo exited %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^1 .* succeeded +10502 *$`),
		regexp.MustCompile(`(?m)^2 .* succeeded +543 *$`),
		regexp.MustCompile(`(?m)^2 .* customers +3 .* Bookmark Unavailable +succeeded`),
		regexp.MustCompile(`(?m)^2 .* orders +19 .* 2025-06-01T00:00:00\+00:00 +succeeded`),
		regexp.MustCompile(`(?m)^page_views +1020$`),
		regexp.MustCompile(`target - INFO State update: adding bookmarks\.demo-shop-orders\.replication_key_value = "2025-06-01T00:00:00\+00:00"`),
		regexp.MustCompile(`(?m)^ +7 \| Customer 7 \| t \| \d+$`),
		regexp.MustCompile(`(?m)^ +1 \| Renamed Customer \| f \| \d+$`),
		regexp.MustCompile(`(?m)^ +520 \| 1$`),
		regexp.MustCompile(`(?m)^ +1 \| 98765432109876543210\.000000000000000001 \|`),
	} {
		if !want.MatchString(out) {
			t.Errorf("demo output lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "orders_p0") {
		t.Errorf("partitions loaded besides their root:\n%s", out)
	}
}
