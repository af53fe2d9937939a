// Package testsshd starts a real OpenSSH server on a free loopback port for
// tunnel tests, with host and client keys the test generates.
package testsshd

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Binary is where Debian's openssh-server puts sshd.
const Binary = "/usr/sbin/sshd"

// Passphrase protects ClientKeyEncrypted.
const Passphrase = "tunnel-passphrase-9f3k"

// Server is a running sshd.
type Server struct {
	Host string
	Port int
	User string
	// KnownHosts is a known_hosts line for the server's host key.
	KnownHosts string
	// Fingerprint is the host key's SHA256: fingerprint.
	Fingerprint string
	// ClientKey and ClientKeyEncrypted are PEM private keys sshd accepts.
	ClientKey, ClientKeyEncrypted string
	// OtherHostKnownHosts lists a different key for the same host: a
	// changed host key.
	OtherHostKnownHosts string
	hostKey             ssh.PublicKey
	// PasswordUser and Password log in with a password (see Options).
	PasswordUser, Password string
	// Log is what sshd printed.
	Log *SyncBuffer
	cmd *exec.Cmd
}

// Options change what the server offers.
type Options struct {
	// PasswordLogin creates a throwaway system user with a password and lets
	// sshd accept passwords. It needs root (useradd, chpasswd); the user is
	// deleted when the test ends.
	PasswordLogin bool
}

// SyncBuffer is a buffer sshd's output goroutine and the test may share.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Start runs sshd until the test ends. It fails the test when sshd is not
// installed (scripts/install-deps.sh installs openssh-server).
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Fatalf("testsshd: %s not found (install openssh-server): %v", Binary, err)
	}
	dir := t.TempDir()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Host: "127.0.0.1", User: me.Username, Log: &SyncBuffer{}}
	hostPub, hostPEM := newKey(t, "")
	s.hostKey = hostPub
	s.Fingerprint = ssh.FingerprintSHA256(hostPub)
	otherPub, _ := newKey(t, "")
	clientPub, clientPEM := newKey(t, "")
	encPub, encPEM := newKey(t, Passphrase)
	s.ClientKey, s.ClientKeyEncrypted = clientPEM, encPEM
	write(t, filepath.Join(dir, "host_key"), hostPEM)
	write(t, filepath.Join(dir, "authorized_keys"),
		string(ssh.MarshalAuthorizedKey(clientPub))+string(ssh.MarshalAuthorizedKey(encPub)))
	if os.Geteuid() == 0 {
		// Privilege separation needs this directory (the package makes it
		// at boot, which a fresh CI machine may not have had).
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
	}
	passwordAuth := "no"
	if opts.PasswordLogin {
		s.PasswordUser, s.Password = createPasswordUser(t)
		passwordAuth = "yes"
	}
	for attempt := 0; ; attempt++ {
		s.Port = freePort(t)
		conf := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s
StrictModes no
PermitRootLogin yes
PasswordAuthentication %s
KbdInteractiveAuthentication no
UsePAM no
AllowTcpForwarding yes
LogLevel VERBOSE
`, s.Port, filepath.Join(dir, "host_key"), filepath.Join(dir, "sshd.pid"), filepath.Join(dir, "authorized_keys"), passwordAuth)
		write(t, filepath.Join(dir, "sshd_config"), conf)
		s.cmd = exec.Command(Binary, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
		s.cmd.Stdout, s.cmd.Stderr = s.Log, s.Log
		// Its own process group, so that Stop ends the per-connection
		// children too (they hold the log pipe open).
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		s.cmd.WaitDelay = 5 * time.Second
		if err := s.cmd.Start(); err != nil {
			t.Fatalf("testsshd: start: %v", err)
		}
		if waitListening(s.Host, s.Port, 5*time.Second) {
			break
		}
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		if attempt == 2 {
			t.Fatalf("testsshd: sshd did not listen:\n%s", s.Log)
		}
	}
	t.Cleanup(s.Stop)
	s.KnownHosts = s.KnownHostsFor(s.Port)
	s.OtherHostKnownHosts = fmt.Sprintf("[%s]:%d %s", s.Host, s.Port, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(otherPub))))
	return s
}

// KnownHostsFor is the known_hosts line of the server's key as reached on
// another port (through a proxy).
func (s *Server) KnownHostsFor(port int) string {
	return fmt.Sprintf("[%s]:%d %s", s.Host, port, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.hostKey))))
}

// Stop kills sshd and its connection children (every tunnel through it).
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// createPasswordUser adds a system user with a random password.
func createPasswordUser(t testing.TB) (string, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("testsshd: a password login needs root to create its user")
	}
	var raw [6]byte
	if _, err := rand.Read(raw[:]); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("taptun%x", raw[:3])
	password := fmt.Sprintf("Tun-%x-pw", raw[3:])
	if out, err := exec.Command("useradd", "--create-home", "--shell", "/bin/sh", name).CombinedOutput(); err != nil {
		t.Fatalf("testsshd: useradd: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("userdel", "--remove", name).Run() })
	chpasswd := exec.Command("chpasswd")
	chpasswd.Stdin = strings.NewReader(name + ":" + password + "\n")
	if out, err := chpasswd.CombinedOutput(); err != nil {
		t.Fatalf("testsshd: chpasswd: %v: %s", err, out)
	}
	return name, password
}

func newKey(t testing.TB, passphrase string) (ssh.PublicKey, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sshPub, string(pem.EncodeToMemory(block))
}

func write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitListening(host string, port int, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}
