package connect

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// hinted is an error whose text carries the HINT of the server error inside
// it: pgconn's PgError.Error() leaves the HINT out, and it is often the one
// sentence that tells a user what to do.
type hinted struct {
	err  error
	hint string
}

func (h hinted) Error() string { return h.err.Error() + " HINT: " + h.hint }
func (h hinted) Unwrap() error { return h.err }

// WithHint returns err with the HINT of the PostgreSQL error in its chain
// appended to its text, once; err itself when there is none.
func WithHint(err error) error {
	var pgErr *pgconn.PgError
	if err == nil || !errors.As(err, &pgErr) || pgErr.Hint == "" {
		return err
	}
	var already hinted
	if errors.As(err, &already) || strings.Contains(err.Error(), pgErr.Hint) {
		return err
	}
	return hinted{err: err, hint: pgErr.Hint}
}
