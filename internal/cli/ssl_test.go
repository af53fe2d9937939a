package cli_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/cli"
	"github.com/tap-postgres/tap-postgres/internal/localpg"
)

type certPair struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	keyPEM  []byte
}

// newCert issues a certificate; parent nil makes a self-signed CA.
func newCert(t *testing.T, cn string, dnsNames []string, parent *certPair) *certPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     dnsNames,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	signer, signerKey := tmpl, key
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	} else {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &certPair{cert: cert, key: key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})}
}

// TestSSLModes runs a cluster with ssl=on and certificates made here: its
// own CA, a server certificate for "localhost" only, and a client
// certificate for cert authentication.
func TestSSLModes(t *testing.T) {
	ca := newCert(t, "tap test CA", nil, nil)
	otherCA := newCert(t, "some other CA", nil, nil)
	server := newCert(t, "localhost", []string{"localhost"}, ca)
	client := newCert(t, "certuser", nil, ca)
	ctx := context.Background()
	sslpg, err := localpg.Start(ctx, localpg.Options{
		ExtraConf: []string{"ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'", "ssl_ca_file = 'ca.crt'"},
		HBA:       []string{"hostssl all certuser 127.0.0.1/32 cert"},
		Files:     map[string][]byte{"server.crt": server.certPEM, "server.key": server.keyPEM, "ca.crt": ca.certPEM},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sslpg.Stop()
	if err := sslpg.Exec(ctx, "postgres", "CREATE ROLE certuser LOGIN; CREATE TABLE public.secure (id integer PRIMARY KEY); GRANT SELECT ON public.secure TO certuser"); err != nil {
		t.Fatal(err)
	}
	caPath, otherCAPath := writeFile(t, "ca.crt", ca.certPEM), writeFile(t, "other.crt", otherCA.certPEM)
	clientCert, clientKey := writeFile(t, "client.crt", client.certPEM), writeFile(t, "client.key", client.keyPEM)
	conf := func(host string, extra map[string]any) string {
		cfg := map[string]any{"host": host, "port": sslpg.Port, "user": sslpg.User, "password": sslpg.Password, "dbname": "postgres"}
		for k, v := range extra {
			cfg[k] = v
		}
		return writeFile(t, "config.json", cfg)
	}
	for _, tc := range []struct {
		name string
		cfg  string
		// wantErr is part of the CRITICAL line; "" means success.
		wantErr, wantLog string
	}{
		{"verify-full", conf("localhost", map[string]any{"sslmode": "verify-full", "sslrootcert": caPath}), "", "with sslmode=verify-full: SSL on, TLS"},
		{"verify-full host mismatch", conf("127.0.0.1", map[string]any{"sslmode": "verify-full", "sslrootcert": caPath}), "cannot validate certificate for 127.0.0.1", ""},
		{"verify-ca ignores the name", conf("127.0.0.1", map[string]any{"sslmode": "verify-ca", "sslrootcert": caPath}), "", "SSL on"},
		{"verify-ca wrong CA", conf("localhost", map[string]any{"sslmode": "verify-ca", "sslrootcert": otherCAPath}), "certificate signed by unknown authority", ""},
		{"require", conf("127.0.0.1", map[string]any{"sslmode": "require"}), "", "with sslmode=require: SSL on"},
		{"ssl true means require", conf("127.0.0.1", map[string]any{"ssl": true}), "", "with sslmode=require: SSL on"},
		{"prefer uses SSL", conf("127.0.0.1", nil), "", "with sslmode=prefer: SSL on"},
		{"client certificate", conf("localhost", map[string]any{"user": "certuser", "password": "", "sslmode": "verify-full",
			"sslrootcert": caPath, "sslcert": clientCert, "sslkey": clientKey}), "", "SSL on"},
		{"client certificate missing", conf("localhost", map[string]any{"user": "certuser", "password": "", "sslmode": "verify-full",
			"sslrootcert": caPath}), "connection requires a valid client certificate", ""},
		{"require without server SSL", configPath(t, map[string]any{"sslmode": "require"}), "server refused TLS", ""},
		{"disable", conf("127.0.0.1", map[string]any{"sslmode": "disable"}), "", "with sslmode=disable: SSL off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runTap(t, cli.Env{}, "--config", tc.cfg, "--discover")
			if tc.wantErr == "" {
				if r.code != 0 || !strings.Contains(r.stderr, tc.wantLog) {
					t.Fatalf("exit %d, want success logging %q:\n%s", r.code, tc.wantLog, r.stderr)
				}
				return
			}
			last := lastLine(r.stderr)
			t.Logf("%s", last)
			if r.code != 1 || !strings.HasPrefix(last, "CRITICAL") || !strings.Contains(last, tc.wantErr) {
				t.Fatalf("exit %d, last line %q; want a CRITICAL containing %q", r.code, last, tc.wantErr)
			}
		})
	}
}

// configPath writes a config for the shared (non-SSL) test cluster.
func configPath(t *testing.T, extra map[string]any) string {
	return writeFile(t, "plain.json", configFor("postgres", extra))
}
