package connect

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/tap-postgres/tap-postgres/internal/config"
)

// tunnelKeepalive is how often the tunnel proves it is alive; a dead one
// is closed so that database calls fail instead of hanging.
const tunnelKeepalive = 15 * time.Second

// tunnel is an SSH client through which database connections are dialled;
// the database host is resolved on the far side.
type tunnel struct {
	cfg     config.SSHTunnel
	timeout time.Duration
	log     *slog.Logger

	mu     sync.Mutex
	client *ssh.Client
	done   chan struct{}
}

func newTunnel(cfg config.SSHTunnel, timeout time.Duration, log *slog.Logger) *tunnel {
	return &tunnel{cfg: cfg, timeout: timeout, log: log}
}

// dial opens a connection to addr through the tunnel, starting the tunnel
// on first use.
func (t *tunnel) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	client, err := t.connect(ctx)
	if err != nil {
		return nil, err
	}
	channel, err := client.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("ssh tunnel: open %s through %s: %w", addr, t.address(), err)
	}
	return withDeadlines(channel), nil
}

// withDeadlines puts a net.Pipe in front of an SSH channel, which has no
// read or write deadlines: pgx cancels and times out by deadline, and a
// replication stream waits for messages with one.
func withDeadlines(channel net.Conn) net.Conn {
	ours, theirs := net.Pipe()
	go func() {
		_, _ = io.Copy(channel, theirs)
		channel.Close()
	}()
	go func() {
		_, _ = io.Copy(theirs, channel)
		theirs.Close()
	}()
	return ours
}

func (t *tunnel) address() string {
	return net.JoinHostPort(t.cfg.Host, strconv.Itoa(t.cfg.Port))
}

func (t *tunnel) connect(ctx context.Context) (*ssh.Client, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.client != nil {
		return t.client, nil
	}
	auth, err := t.authMethods()
	if err != nil {
		return nil, err
	}
	hostKey, err := t.hostKeyCallback()
	if err != nil {
		return nil, err
	}
	cc := &ssh.ClientConfig{User: t.cfg.Username, Auth: auth, HostKeyCallback: hostKey, Timeout: t.timeout}
	d := net.Dialer{Timeout: t.timeout}
	raw, err := d.DialContext(ctx, "tcp", t.address())
	if err != nil {
		return nil, fmt.Errorf("ssh tunnel: connect to %s: %w", t.address(), err)
	}
	// The handshake honours the connect timeout too.
	_ = raw.SetDeadline(time.Now().Add(t.timeout))
	sc, chans, reqs, err := ssh.NewClientConn(raw, t.address(), cc)
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("ssh tunnel: %s: %w", t.address(), err)
	}
	_ = raw.SetDeadline(time.Time{})
	t.client = ssh.NewClient(sc, chans, reqs)
	t.done = make(chan struct{})
	go t.keepalive(t.client, t.done)
	return t.client, nil
}

// keepalive closes the client when the server stops answering.
func (t *tunnel) keepalive(client *ssh.Client, done chan struct{}) {
	ticker := time.NewTicker(tunnelKeepalive)
	defer ticker.Stop()
	for {
		select {
		case <-done:
			return
		case <-ticker.C:
		}
		reply := make(chan error, 1)
		go func() {
			_, _, err := client.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		select {
		case err := <-reply:
			if err == nil {
				continue
			}
		case <-time.After(tunnelKeepalive):
		case <-done:
			return
		}
		t.log.Warn(fmt.Sprintf("ssh tunnel to %s stopped answering keepalives; closing it", t.address()))
		client.Close()
		return
	}
}

func (t *tunnel) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.client == nil {
		return nil
	}
	close(t.done)
	err := t.client.Close()
	t.client = nil
	return err
}

func (t *tunnel) authMethods() ([]ssh.AuthMethod, error) {
	var methods []ssh.AuthMethod
	if key := t.cfg.PrivateKey.Reveal(); key != "" {
		pem := []byte(key)
		if !strings.Contains(key, "PRIVATE KEY") {
			data, err := os.ReadFile(key)
			if err != nil {
				return nil, errors.New("ssh tunnel: private_key is neither PEM text nor a readable file")
			}
			pem = data
		}
		var signer ssh.Signer
		var err error
		if pass := t.cfg.Passphrase.Reveal(); pass != "" {
			signer, err = ssh.ParsePrivateKeyWithPassphrase(pem, []byte(pass))
		} else {
			signer, err = ssh.ParsePrivateKey(pem)
		}
		if err != nil {
			var missing *ssh.PassphraseMissingError
			if errors.As(err, &missing) {
				return nil, errors.New("ssh tunnel: private_key is encrypted and no passphrase is set")
			}
			// The parser's message never contains key material.
			return nil, fmt.Errorf("ssh tunnel: private_key cannot be read: %w", err)
		}
		methods = append(methods, ssh.PublicKeys(signer))
	}
	if pw := t.cfg.Password.Reveal(); pw != "" {
		methods = append(methods, ssh.Password(pw))
	}
	return methods, nil
}

// hostKeyCallback accepts only a host key listed in known_hosts (text or
// path) or matching host_key_fingerprint. There is no way to skip the check.
func (t *tunnel) hostKeyCallback() (ssh.HostKeyCallback, error) {
	if fp := t.cfg.HostKeyFingerprint; fp != "" {
		return func(_ string, _ net.Addr, key ssh.PublicKey) error {
			got := ssh.FingerprintSHA256(key)
			if subtle.ConstantTimeCompare([]byte(got), []byte(fp)) != 1 {
				return fmt.Errorf("host key %s does not match host_key_fingerprint %s: refusing to connect", got, fp)
			}
			return nil
		}, nil
	}
	text := []byte(t.cfg.KnownHosts)
	if !strings.Contains(t.cfg.KnownHosts, " ") {
		data, err := os.ReadFile(t.cfg.KnownHosts)
		if err != nil {
			return nil, fmt.Errorf("ssh tunnel: known_hosts is neither known_hosts text nor a readable file: %w", err)
		}
		text = data
	}
	// OpenSSH's meaning: hashed names, patterns, @revoked keys refused,
	// @cert-authority keys trusted to sign host certificates and nothing
	// else. knownhosts also takes a CA key for a plain host key, so plain
	// keys are checked without those lines.
	withCAs, err := knownHostsCallback(text)
	if err != nil {
		return nil, err
	}
	withoutCAs, err := knownHostsCallback(withoutCertAuthorities(text))
	if err != nil {
		return nil, err
	}
	check := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		if _, isCert := key.(*ssh.Certificate); isCert {
			return withCAs(hostname, remote, key)
		}
		return withoutCAs(hostname, remote, key)
	}
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := check(hostname, remote, key)
		var revoked *knownhosts.RevokedError
		var keyErr *knownhosts.KeyError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &revoked):
			return fmt.Errorf("host key %s of %s is revoked in known_hosts: refusing to connect", ssh.FingerprintSHA256(key), t.address())
		case errors.As(err, &keyErr) && len(keyErr.Want) > 0:
			return fmt.Errorf("host key %s of %s is not in known_hosts: refusing to connect (the host's key changed: known_hosts lists another)",
				ssh.FingerprintSHA256(key), t.address())
		case errors.As(err, &keyErr):
			return fmt.Errorf("host key %s of %s is not in known_hosts: refusing to connect (unknown host key)", ssh.FingerprintSHA256(key), t.address())
		default:
			return fmt.Errorf("host key %s of %s: %w: refusing to connect", ssh.FingerprintSHA256(key), t.address(), err)
		}
	}, nil
}

// knownHostsCallback checks host keys against known_hosts text; knownhosts
// reads files only.
func knownHostsCallback(text []byte) (ssh.HostKeyCallback, error) {
	f, err := os.CreateTemp("", "tap-postgres-known-hosts-")
	if err != nil {
		return nil, fmt.Errorf("ssh tunnel: known_hosts: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("ssh tunnel: known_hosts: %w", err)
	}
	check, err := knownhosts.New(f.Name())
	if err != nil {
		return nil, fmt.Errorf("ssh tunnel: known_hosts: %w", err)
	}
	return check, nil
}

// withoutCertAuthorities drops the @cert-authority lines of known_hosts.
func withoutCertAuthorities(text []byte) []byte {
	var out []byte
	for line := range bytes.Lines(text) {
		if fields := bytes.Fields(line); len(fields) == 0 || string(fields[0]) != "@cert-authority" {
			out = append(out, line...)
		}
	}
	return out
}
