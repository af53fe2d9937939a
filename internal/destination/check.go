package destination

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/jackc/pgx/v5"

	"github.com/tap-postgres/tap-postgres/internal/connect"
)

// CheckPostgres connects to the destination and checks that the role can
// create the schema or, when it exists, create tables in it.
func CheckPostgres(ctx context.Context, dsn, schema string) (string, error) {
	cfg, err := connect.ParseDSN(dsn)
	if err != nil {
		return "", fmt.Errorf("postgres destination: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", fmt.Errorf("postgres destination: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists, canCreate bool
	var version string
	err = conn.QueryRow(ctx, `SELECT current_setting('server_version'),
			EXISTS (SELECT FROM pg_namespace WHERE nspname = $1),
			CASE WHEN EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)
				THEN has_schema_privilege($1, 'CREATE')
				ELSE has_database_privilege(current_database(), 'CREATE') END`, schema).Scan(&version, &exists, &canCreate)
	if err != nil {
		return "", fmt.Errorf("postgres destination: check privileges: %w", err)
	}
	where := fmt.Sprintf("database %q on %s:%d (PostgreSQL %s)", conn.Config().Database, conn.Config().Host, conn.Config().Port, version)
	switch {
	case exists && !canCreate:
		return "", fmt.Errorf("postgres destination %s: the role cannot create tables in schema %q", where, schema)
	case !exists && !canCreate:
		return "", fmt.Errorf("postgres destination %s: schema %q does not exist and the role cannot create it", where, schema)
	case exists:
		return fmt.Sprintf("postgres destination: %s, tables go to existing schema %q", where, schema), nil
	}
	return fmt.Sprintf("postgres destination: %s, schema %q will be created", where, schema), nil
}

// CheckJSONL checks that files can be created in dir.
func CheckJSONL(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("jsonl destination: %w", err)
	}
	f, err := os.CreateTemp(dir, ".tap-postgres-check-*")
	if err != nil {
		return "", fmt.Errorf("jsonl destination: %w", err)
	}
	f.Close()
	if err := os.Remove(f.Name()); err != nil {
		return "", fmt.Errorf("jsonl destination: %w", err)
	}
	return fmt.Sprintf("jsonl destination: %s is writable", dir), nil
}

// CheckSingerTarget checks that the target's program can be found.
func CheckSingerTarget(command []string) (string, error) {
	if len(command) == 0 {
		return "", errors.New("singer target: no command")
	}
	path, err := exec.LookPath(command[0])
	if err != nil {
		return "", fmt.Errorf("singer target: %w", err)
	}
	return fmt.Sprintf("singer target: %s found", path), nil
}
