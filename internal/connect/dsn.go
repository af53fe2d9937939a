package connect

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ParseDSN parses a connection string (URL or key=value) for a connection
// named by the user whole (a destination, the runner's store). Its errors
// never quote the string: pgx's redaction is best effort and misses a
// password holding an escaped quote.
func ParseDSN(dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	var parseErr *pgconn.ParseConfigError
	if errors.As(err, &parseErr) {
		bare := *parseErr
		bare.ConnString = ""
		return nil, errors.New("the connection string cannot be parsed: " + strings.TrimPrefix(bare.Error(), "cannot parse ``: "))
	}
	return cfg, err
}
