package connect

import (
	"crypto/tls"
	"errors"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ParseDSN parses a connection string (URL or key=value) for a connection
// named by the user whole (a destination, the runner's store). Its
// credentials come from the string alone: pgx's libpq emulation would fill
// a missing password from PGPASSWORD or ~/.pgpass, which may hold the
// source's (the README's CronJob sets PGPASSWORD for it); a `passfile` the
// string names is still read. A password is never sent in clear text to a
// server whose certificate was not verified (see GuardPassword). Errors
// never quote the string: pgx's redaction is best effort and misses a
// password holding an escaped quote.
func ParseDSN(dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(withoutAmbientPassword(dsn))
	var parseErr *pgconn.ParseConfigError
	if errors.As(err, &parseErr) {
		bare := *parseErr
		bare.ConnString = ""
		return nil, errors.New("the connection string cannot be parsed: " + strings.TrimPrefix(bare.Error(), "cannot parse ``: "))
	}
	if err != nil {
		return nil, err
	}
	GuardPassword(&cfg.Config)
	return cfg, nil
}

// withoutAmbientPassword makes an empty password and no password file the
// defaults of dsn, which its own settings override: a key=value string
// takes the last of a repeated key, and a URL is given them only when it
// names neither.
func withoutAmbientPassword(dsn string) string {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return "password='' passfile='' " + dsn
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn // pgx reports it
	}
	q := u.Query()
	if _, has := u.User.Password(); has || q.Has("password") {
		return dsn
	}
	if !q.Has("passfile") {
		q.Set("passfile", "")
	}
	q.Set("password", "")
	u.RawQuery = q.Encode()
	return u.String()
}

// GuardPassword refuses cleartext password authentication unless every
// address tried verifies the server's certificate: under sslmode=prefer or
// require, a server that refuses TLS or shows any certificate would
// otherwise receive the password as typed. md5 and SCRAM, which never send
// it, stay allowed. A require_auth the user set is theirs.
func GuardPassword(cfg *pgconn.Config) {
	if cfg.RequireAuth == "" && !VerifiesServer(cfg) {
		cfg.RequireAuth = "!password"
	}
}

// VerifiesServer tells whether every address tried (fallbacks included)
// checks the server's certificate: sslmode verify-ca or verify-full, or
// require with a root certificate, as libpq does.
func VerifiesServer(cfg *pgconn.Config) bool {
	if !verifies(cfg.TLSConfig) {
		return false
	}
	for _, f := range cfg.Fallbacks {
		if !verifies(f.TLSConfig) {
			return false
		}
	}
	return true
}

func verifies(c *tls.Config) bool {
	// pgx checks verify-ca's chain itself, in VerifyPeerCertificate.
	return c != nil && (!c.InsecureSkipVerify || c.VerifyPeerCertificate != nil)
}
