package demo

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tap-postgres/tap-postgres/internal/singer"
)

// TestDemoSyncsSampleData runs README command 1's code path end to end.
func TestDemoSyncsSampleData(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own PostgreSQL cluster")
	}
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := Run(context.Background(), []string{"--out", out}, &stdout, &stderr); code != 0 {
		t.Fatalf("demo exited %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	for _, want := range []string{"customers     2500", "orders        7500", "every_type    2", "page_views    500"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout.String())
		}
	}
	if strings.Contains(stdout.String(), "orders_p0") {
		t.Errorf("partitions synced besides their root:\n%s", stdout.String())
	}
	data, err := os.ReadFile(filepath.Join(out, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	state, err := singer.ParseState(data)
	if err != nil {
		t.Fatal(err)
	}
	if state.CurrentlySyncing != nil || state.Bookmarks["demo-shop-customers"].Version == 0 {
		t.Fatalf("final state is not a completed sync: %s", data)
	}
}
