// Package connect opens PostgreSQL connections as the config describes them:
// host, TLS mode and the session settings every connection starts with, so
// that value output never depends on server or role defaults.
package connect

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tap-postgres/tap-postgres/internal/config"
)

// SessionSettings are sent in the startup packet, which outranks database and
// role defaults (ALTER ROLE ... SET TimeZone), so they always apply.
func SessionSettings() map[string]string {
	return map[string]string{
		"TimeZone":           "UTC",
		"DateStyle":          "ISO",
		"IntervalStyle":      "postgres",
		"bytea_output":       "hex",
		"extra_float_digits": "3",
		"client_encoding":    "UTF8",
	}
}

// Connector opens connections to any database of the configured server,
// through the SSH tunnel when one is configured.
type Connector struct {
	cfg    config.Config
	log    *slog.Logger
	tunnel *tunnel
	// tlsLogged makes the chosen SSL state an INFO line once per run.
	tlsLogged sync.Once
}

// New prepares connections; the tunnel opens on first use.
func New(cfg config.Config, log *slog.Logger) *Connector {
	c := &Connector{cfg: cfg, log: log}
	if cfg.SSHTunnel != nil {
		c.tunnel = newTunnel(*cfg.SSHTunnel, cfg.ConnectTimeout, log)
	}
	return c
}

// Close closes the tunnel, if any.
func (c *Connector) Close() error {
	if c.tunnel == nil {
		return nil
	}
	return c.tunnel.close()
}

// ConnConfig builds the pgx configuration for one database.
func (c *Connector) ConnConfig(dbname string) (*pgx.ConnConfig, error) {
	params := []string{
		"host=" + quote(c.cfg.Host),
		"port=" + strconv.Itoa(c.cfg.Port),
		"user=" + quote(c.cfg.User),
		"dbname=" + quote(dbname),
		"sslmode=" + quote(c.cfg.SSLMode),
		"connect_timeout=" + strconv.Itoa(int(c.cfg.ConnectTimeout.Seconds())),
	}
	for key, value := range map[string]string{"sslrootcert": c.cfg.SSLRootCert, "sslcert": c.cfg.SSLCert, "sslkey": c.cfg.SSLKey} {
		if value != "" {
			params = append(params, key+"="+quote(value))
		}
	}
	// The password is set on the parsed config, never in the string, so no
	// parse error can echo it.
	cc, err := pgx.ParseConfig(strings.Join(params, " "))
	if err != nil {
		return nil, fmt.Errorf("connection settings for database %q: %w", dbname, err)
	}
	cc.Password = c.cfg.Password.Reveal()
	cc.ConnectTimeout = c.cfg.ConnectTimeout
	for k, v := range SessionSettings() {
		cc.RuntimeParams[k] = v
	}
	cc.RuntimeParams["application_name"] = c.cfg.ApplicationName
	GuardPassword(&cc.Config)
	// A message as large as a row may be (1 GB) would take as much memory,
	// and its JSON several times that: past max_row_bytes it is an error
	// the caller names (see RowTooLarge).
	maxRow := c.cfg.MaxRowBytes
	cc.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		f := pgproto3.NewFrontend(r, w)
		f.SetMaxBodyLen(maxRow)
		return f
	}
	if c.tunnel != nil {
		// The database host is resolved on the far side of the tunnel.
		cc.LookupFunc = func(_ context.Context, host string) ([]string, error) { return []string{host}, nil }
		cc.DialFunc = c.tunnel.dial
	}
	return cc, nil
}

// Connect opens a normal connection to dbname.
func (c *Connector) Connect(ctx context.Context, dbname string) (*pgx.Conn, error) {
	cc, err := c.ConnConfig(dbname)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, &connectError{
			msg: fmt.Sprintf("connect to database %q on %s:%d: %s", dbname, c.cfg.Host, c.cfg.Port, dedupeLines(err.Error())),
			err: err,
		}
	}
	c.tlsLogged.Do(func() {
		via := ""
		if c.tunnel != nil {
			via = " through the SSH tunnel to " + c.tunnel.address()
		}
		line := fmt.Sprintf("connected to %s:%d%s with sslmode=%s: %s", c.cfg.Host, c.cfg.Port, via, c.cfg.SSLMode, TLSState(conn.PgConn()))
		if warning := TLSWarning(conn.PgConn(), &cc.Config); warning != "" {
			c.log.Warn(line + "; " + warning)
		} else {
			c.log.Info(line)
		}
	})
	return conn, nil
}

// connectError keeps the server's error for errors.As while its message
// reads as one line.
type connectError struct {
	msg string
	err error
}

func (e *connectError) Error() string { return e.msg }
func (e *connectError) Unwrap() error { return e.err }

// dedupeLines joins pgconn's one-line-per-attempt message into one line,
// each distinct attempt once (sslmode=prefer tries twice per address).
func dedupeLines(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !slices.Contains(out, line) {
			out = append(out, line)
		}
	}
	return strings.Join(out, " ")
}

// TLSState describes the connection's encryption for the logs.
func TLSState(pc *pgconn.PgConn) string {
	tc, ok := pc.Conn().(*tls.Conn)
	if !ok {
		return "SSL off"
	}
	st := tc.ConnectionState()
	return fmt.Sprintf("SSL on, %s, %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
}

// RowTooLarge tells whether err is a server message past max_row_bytes,
// and its size.
func RowTooLarge(err error) (int, bool) {
	var tooLarge *pgproto3.ExceededMaxBodyLenErr
	if errors.As(err, &tooLarge) {
		return tooLarge.ActualBodyLen, true
	}
	return 0, false
}

// TLSWarning says what a connection leaves unprotected, or "" when it is
// encrypted and the server's certificate was verified.
func TLSWarning(pc *pgconn.PgConn, cfg *pgconn.Config) string {
	const fix = "sslmode=verify-full with sslrootcert protects it"
	if _, ok := pc.Conn().(*tls.Conn); !ok {
		return "the connection is not encrypted (" + fix + ")"
	}
	if !VerifiesServer(cfg) {
		return "the server's certificate is not verified, so anyone between could pose as the server (" + fix + ")"
	}
	return ""
}

// quote writes a libpq keyword/value string value.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
