package connect

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestWithHint(t *testing.T) {
	pgErr := &pgconn.PgError{Severity: "ERROR", Code: "42501", Message: `library "wal2json" may not be used as an output plugin`,
		Hint: `add it to "output_plugin_libraries" and reload`}
	wrapped := fmt.Errorf("start replication: %w", pgErr)
	got := WithHint(wrapped)
	want := `start replication: ERROR: library "wal2json" may not be used as an output plugin (SQLSTATE 42501) HINT: add it to "output_plugin_libraries" and reload`
	if got.Error() != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if !errors.Is(got, pgErr) {
		t.Fatal("the server error is no longer in the chain")
	}
	if again := WithHint(fmt.Errorf("job: %w", got)); again.Error() != "job: "+want {
		t.Fatalf("hint appended twice: %s", again)
	}
	plain := errors.New("no server error")
	if WithHint(plain) != plain || WithHint(nil) != nil {
		t.Fatal("an error without a hint changed")
	}
	noHint := fmt.Errorf("x: %w", &pgconn.PgError{Message: "m"})
	if WithHint(noHint) != noHint {
		t.Fatal("a server error without a hint changed")
	}
}
