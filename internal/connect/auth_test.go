package connect

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tap-postgres/tap-postgres/internal/config"
)

// fakeServer speaks just enough of the protocol to ask for a password in
// clear text, and records what it receives. With cert set it accepts TLS
// and shows that certificate; without, it refuses TLS.
type fakeServer struct {
	addr string
	cert *tls.Certificate

	mu        sync.Mutex
	passwords []string
}

func startFakeServer(t *testing.T, cert *tls.Certificate) *fakeServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{addr: l.Addr().String(), cert: cert}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go s.serve(conn)
		}
	}()
	return s
}

func (s *fakeServer) serve(conn net.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	backend := pgproto3.NewBackend(conn, conn)
	msg, err := backend.ReceiveStartupMessage()
	if err != nil {
		return
	}
	if _, ok := msg.(*pgproto3.SSLRequest); ok {
		if s.cert == nil {
			if _, err := conn.Write([]byte("N")); err != nil {
				return
			}
		} else {
			if _, err := conn.Write([]byte("S")); err != nil {
				return
			}
			tlsConn := tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{*s.cert}})
			if err := tlsConn.Handshake(); err != nil {
				return
			}
			conn = tlsConn
			backend = pgproto3.NewBackend(conn, conn)
		}
		if msg, err = backend.ReceiveStartupMessage(); err != nil {
			return
		}
	}
	if _, ok := msg.(*pgproto3.StartupMessage); !ok {
		return
	}
	backend.Send(&pgproto3.AuthenticationCleartextPassword{})
	if backend.Flush() != nil {
		return
	}
	if err := backend.SetAuthType(pgproto3.AuthTypeCleartextPassword); err != nil {
		return
	}
	reply, err := backend.Receive()
	if err != nil {
		return
	}
	if pw, ok := reply.(*pgproto3.PasswordMessage); ok {
		s.mu.Lock()
		s.passwords = append(s.passwords, pw.Password)
		s.mu.Unlock()
	}
	backend.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "28P01", Message: "password authentication failed"})
	backend.Flush()
}

func (s *fakeServer) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.passwords...)
}

// testCA makes a CA and a server certificate for 127.0.0.1 it signed; the
// CA is written to a PEM file.
func testCA(t *testing.T) (serverCert tls.Certificate, caFile string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, leafKey := newKey(), newKey()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}, caFile
}

// selfSigned is a certificate no client can verify.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	cert, _ := testCA(t) // signed by a CA the client is never given
	return cert
}

// TestCleartextPasswordOnlyToAVerifiedServer: the source's, a
// destination's and the store's passwords reach a server asking for them
// in clear text only when its certificate was verified.
func TestCleartextPasswordOnlyToAVerifiedServer(t *testing.T) {
	const secret = "s3cret-for-the-fake-server"
	verified, caFile := testCA(t)
	for _, tc := range []struct {
		name     string
		cert     *tls.Certificate
		sslmode  string
		rootCert string
		sent     bool
	}{
		{"prefer, server refuses TLS", nil, "prefer", "", false},
		{"allow, server refuses TLS", nil, "allow", "", false},
		{"disable", nil, "disable", "", false},
		{"prefer, self-signed certificate", ptr(selfSigned(t)), "prefer", "", false},
		{"require, self-signed certificate", ptr(selfSigned(t)), "require", "", false},
		{"verify-ca, certificate of the CA given", &verified, "verify-ca", caFile, true},
		{"verify-full, certificate of the CA given", &verified, "verify-full", caFile, true},
		{"require with a root certificate verifies", &verified, "require", caFile, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, via := range []string{"source", "key=value DSN", "URL DSN"} {
				server := startFakeServer(t, tc.cert)
				host, port, _ := net.SplitHostPort(server.addr)
				var cfg *pgx.ConnConfig
				var err error
				switch via {
				case "source":
					n, _ := strconv.Atoi(port)
					c := New(config.Config{Host: host, Port: n, User: "u", Password: config.Secret(secret), SSLMode: tc.sslmode,
						SSLRootCert: tc.rootCert, ConnectTimeout: 5 * time.Second}, slog.New(slog.NewTextHandler(io.Discard, nil)))
					cfg, err = c.ConnConfig("db")
				case "key=value DSN":
					dsn := "host=" + host + " port=" + port + " user=u password=" + secret + " dbname=db sslmode=" + tc.sslmode
					if tc.rootCert != "" {
						dsn += " sslrootcert=" + tc.rootCert
					}
					cfg, err = ParseDSN(dsn)
				default:
					dsn := "postgres://u:" + secret + "@" + server.addr + "/db?sslmode=" + tc.sslmode
					if tc.rootCert != "" {
						dsn += "&sslrootcert=" + tc.rootCert
					}
					cfg, err = ParseDSN(dsn)
				}
				if err != nil {
					t.Fatalf("%s: %v", via, err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				conn, err := pgx.ConnectConfig(ctx, cfg)
				cancel()
				if err == nil {
					conn.Close(context.Background())
					t.Fatalf("%s: the fake server let the client in", via)
				}
				got := server.received()
				if tc.sent && (len(got) == 0 || got[0] != secret) {
					t.Errorf("%s: the verified server did not receive the password (got %q; %v)", via, got, err)
				}
				if !tc.sent && len(got) > 0 {
					t.Errorf("%s: the password went to an unverified server in clear text: %q", via, got)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestDSNWithoutPasswordSendsNoAmbientOne: a destination or store DSN
// without a password, to a verified server asking for one in clear text,
// sends none of PGPASSWORD's or ~/.pgpass's (they may hold the source's).
func TestDSNWithoutPasswordSendsNoAmbientOne(t *testing.T) {
	const sourcePassword = "source-password-in-the-environment"
	passfile := filepath.Join(t.TempDir(), "pgpass")
	if err := os.WriteFile(passfile, []byte("*:*:*:*:"+sourcePassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGPASSWORD", sourcePassword)
	t.Setenv("PGPASSFILE", passfile)
	verified, caFile := testCA(t)
	server := startFakeServer(t, &verified)
	host, port, _ := net.SplitHostPort(server.addr)
	for _, dsn := range []string{
		"host=" + host + " port=" + port + " user=u dbname=db sslmode=verify-full sslrootcert=" + caFile,
		"postgres://u@" + server.addr + "/db?sslmode=verify-full&sslrootcert=" + caFile,
	} {
		cfg, err := ParseDSN(dsn)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if conn, err := pgx.ConnectConfig(ctx, cfg); err == nil {
			conn.Close(ctx)
		}
		cancel()
	}
	for _, got := range server.received() {
		if got == sourcePassword {
			t.Errorf("the server received the password of the environment")
		}
	}
}

// TestDSNCredentialsOnlyFromTheString: a destination or store DSN without
// a password takes none from PGPASSWORD or ~/.pgpass (they may hold the
// source's); a password or passfile the string names is used.
func TestDSNCredentialsOnlyFromTheString(t *testing.T) {
	passfile := filepath.Join(t.TempDir(), "pgpass")
	if err := os.WriteFile(passfile, []byte("*:*:*:*:from-the-passfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGPASSWORD", "source-password-from-env")
	t.Setenv("PGPASSFILE", passfile)
	for dsn, want := range map[string]string{
		"host=h user=u dbname=d":                                "",
		"postgres://u@h/d":                                      "",
		"postgres://h/d?user=u":                                 "",
		"host=h user=u password=own dbname=d":                   "own",
		"host=h user=u dbname=d password='it\\'s'":              "it's",
		"postgres://u:own@h/d":                                  "own",
		"postgres://u@h/d?password=own":                         "own",
		"host=h user=u dbname=d passfile=" + passfile:           "from-the-passfile",
		"postgres://u@h/d?passfile=" + passfile:                 "from-the-passfile",
		"postgres://u:p%40ss@h1:5432,h2:5433/d?sslmode=disable": "p@ss",
	} {
		cfg, err := ParseDSN(dsn)
		if err != nil {
			t.Errorf("ParseDSN(%q): %v", dsn, err)
			continue
		}
		if cfg.Password != want {
			t.Errorf("ParseDSN(%q) password %q, want %q", dsn, cfg.Password, want)
		}
	}
	if _, err := ParseDSN("host=h password='unterminated"); err == nil {
		t.Error("an unparsable DSN was accepted")
	}
}
