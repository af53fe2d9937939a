package cli_test

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/tap-postgres/tap-postgres/internal/cli"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
	"github.com/tap-postgres/tap-postgres/internal/testsshd"
)

// TestSSHTunnel runs discovery, a full copy and a log-based run through a
// real sshd, and checks that unknown or changed host keys are refused.
func TestSSHTunnel(t *testing.T) {
	forEachDecoder(t, decoders, func(t *testing.T, dec decoder) {
		sshd := testsshd.Start(t, testsshd.Options{PasswordLogin: true})
		db := testpg.NewDatabase(t, pg)
		slot := slotFor(db)
		testpg.Exec(t, pg, db, "CREATE TABLE tunnelled (id integer PRIMARY KEY, v text); INSERT INTO tunnelled VALUES (1, 'a'), (2, 'b')")
		newSlot(t, db, slot, dec)
		tunnel := func(extra map[string]any) map[string]any {
			tc := map[string]any{"host": sshd.Host, "port": sshd.Port, "username": sshd.User}
			for k, v := range extra {
				tc[k] = v
			}
			// The database host is resolved on the far side: "localhost" there.
			return configFor(db, map[string]any{"host": "localhost", "ssh_tunnel": tc, "slot_name": slot})
		}
		keyPath := writeFile(t, "id_ed25519", sshd.ClientKey)
		knownHostsPath := writeFile(t, "known_hosts", sshd.KnownHosts+"\n")

		good := writeFile(t, "config.json", tunnel(map[string]any{"private_key": sshd.ClientKey, "known_hosts": sshd.KnownHosts}))
		catalog := discover(t, good)
		selectStreams(catalog, map[string]any{"replication-method": "FULL_TABLE"}, db+"-public-tunnelled")
		full := runTap(t, cli.Env{}, "--config", good, "--catalog", writeFile(t, "catalog.json", catalog))
		if full.code != 0 || len(records(full.messages, "tunnelled")) != 2 {
			t.Fatalf("full copy through the tunnel: exit %d\n%s", full.code, full.stderr)
		}
		if !strings.Contains(sshd.Log.String(), "Accepted publickey for "+sshd.User) {
			t.Fatalf("sshd saw no login; its log:\n%s", sshd.Log)
		}

		// known_hosts as OpenSSH reads it: a hashed name, other lines around.
		fields := strings.Fields(sshd.KnownHosts)
		hashed := fmt.Sprintf("%s\n# a comment\n%s %s %s\n", sshd.OtherHostKnownHosts, knownhosts.HashHostname(fields[0]), fields[1], fields[2])
		hashedCfg := writeFile(t, "hashed.json", tunnel(map[string]any{"private_key": sshd.ClientKey, "known_hosts": hashed}))
		if r := runTap(t, cli.Env{}, "--config", hashedCfg, "--discover"); r.code != 0 {
			t.Fatalf("hashed known_hosts entry: exit %d\n%s", r.code, r.stderr)
		}

		byPath := writeFile(t, "path.json", tunnel(map[string]any{"private_key": keyPath, "known_hosts": knownHostsPath}))
		logCat := logCatalog(t, byPath, db+"-public-tunnelled")
		_, s1 := logRun(t, byPath, logCat, nil)
		testpg.Exec(t, pg, db, "INSERT INTO tunnelled VALUES (3, 'c')")
		r, _ := logRun(t, byPath, logCat, s1)
		if recs := records(r.messages, "tunnelled"); len(recs) != 1 || recs[0]["v"] != "c" {
			t.Fatalf("log-based through the tunnel: %v\n%s", recs, r.stderr)
		}

		// Through the tunnel the stream still waits with deadlines: an idle
		// stop comes on time.
		idleCfg := tunnel(map[string]any{"private_key": sshd.ClientKey, "known_hosts": sshd.KnownHosts})
		idleCfg["break_at_end_lsn"], idleCfg["logical_poll_total_seconds"] = false, 2
		began := time.Now()
		if r := runTap(t, cli.Env{}, "--config", writeFile(t, "idle.json", idleCfg), "--catalog", logCat, "--state", writeFile(t, "s1.json", s1)); r.code != 0 {
			t.Fatalf("idle run through the tunnel: exit %d\n%s", r.code, r.stderr)
		}
		if took := time.Since(began); took > 8*time.Second {
			t.Fatalf("an idle stop after 2 s took %v through the tunnel", took)
		}

		byPassword := tunnel(map[string]any{"known_hosts": knownHostsPath, "password": sshd.Password})
		byPassword["ssh_tunnel"].(map[string]any)["username"] = sshd.PasswordUser
		if r := runTap(t, cli.Env{}, "--config", writeFile(t, "pw.json", byPassword), "--discover"); r.code != 0 ||
			strings.Contains(r.stderr, sshd.Password) {
			t.Fatalf("password login: exit %d\n%s", r.code, r.stderr)
		}

		encrypted := writeFile(t, "enc.json", tunnel(map[string]any{"private_key": sshd.ClientKeyEncrypted,
			"passphrase": testsshd.Passphrase, "host_key_fingerprint": sshd.Fingerprint}))
		if r := runTap(t, cli.Env{}, "--config", encrypted, "--discover"); r.code != 0 {
			t.Fatalf("encrypted key with passphrase, fingerprint check: exit %d\n%s", r.code, r.stderr)
		}

		for name, tc := range map[string]struct {
			extra map[string]any
			want  string
		}{
			"changed host key": {map[string]any{"private_key": sshd.ClientKey, "known_hosts": sshd.OtherHostKnownHosts}, "not in known_hosts: refusing"},
			"revoked host key": {map[string]any{"private_key": sshd.ClientKey, "known_hosts": "@revoked " + sshd.KnownHosts + "\n" + sshd.KnownHosts}, "is revoked in known_hosts: refusing"},
			// A CA key signs host certificates; it is no host's plain key.
			"cert-authority line": {map[string]any{"private_key": sshd.ClientKey, "known_hosts": "@cert-authority " + sshd.KnownHosts}, "not in known_hosts: refusing"},
			"wrong fingerprint":   {map[string]any{"private_key": sshd.ClientKey, "host_key_fingerprint": "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "does not match host_key_fingerprint"},
			"missing passphrase":  {map[string]any{"private_key": sshd.ClientKeyEncrypted, "known_hosts": sshd.KnownHosts}, "encrypted and no passphrase"},
			"unauthorised key":    {map[string]any{"private_key": sshd.ClientKeyEncrypted, "passphrase": "wrong-passphrase", "known_hosts": sshd.KnownHosts}, "private_key cannot be read"},
			"wrong password":      {map[string]any{"password": "S3cr3t-tunnel-pw", "known_hosts": sshd.KnownHosts}, "unable to authenticate"},
		} {
			r := runTap(t, cli.Env{}, "--config", writeFile(t, "bad.json", tunnel(tc.extra)), "--discover")
			last := lastLine(r.stderr)
			t.Logf("%s: %s", name, last)
			if r.code != 1 || !strings.HasPrefix(last, "CRITICAL") || !strings.Contains(last, tc.want) {
				t.Errorf("%s: exit %d, last line %q, want a CRITICAL containing %q", name, r.code, last, tc.want)
			}
			for _, secret := range []string{"S3cr3t-tunnel-pw", testsshd.Passphrase, "wrong-passphrase", "PRIVATE KEY"} {
				if strings.Contains(r.stderr+r.stdout, secret) {
					t.Errorf("%s: output contains a secret (%q)", name, secret)
				}
			}
		}

		// A tunnel whose network goes silent mid-run is an error, not a hang:
		// the keepalives notice and close it.
		proxy := startFreezableProxy(t, fmt.Sprintf("%s:%d", sshd.Host, sshd.Port))
		streamingCfg := tunnel(map[string]any{"private_key": sshd.ClientKey, "known_hosts": sshd.KnownHostsFor(proxy.port), "port": proxy.port})
		streamingCfg["break_at_end_lsn"], streamingCfg["logical_poll_total_seconds"] = false, 120
		streaming := writeFile(t, "streaming.json", streamingCfg)
		_, s2 := logRun(t, byPath, logCat, nil)
		done := make(chan tapResult)
		go func() {
			done <- runTap(t, cli.Env{}, "--config", streaming, "--catalog", logCat, "--state", writeFile(t, "s2.json", s2))
		}()
		time.Sleep(1500 * time.Millisecond)
		proxy.freeze()
		frozenAt := time.Now()
		select {
		case r := <-done:
			if r.code != 1 || !strings.HasPrefix(lastLine(r.stderr), "CRITICAL") || !strings.Contains(r.stderr, "stopped answering keepalives") {
				t.Fatalf("tunnel died mid-run: exit %d\n%s", r.code, r.stderr)
			}
			t.Logf("silent tunnel, after %v: %s", time.Since(frozenAt), lastLine(r.stderr))
		case <-time.After(60 * time.Second):
			t.Fatal("the run hung after its tunnel went silent")
		}

		sshd.Stop()
		r = runTap(t, cli.Env{}, "--config", good, "--discover")
		if r.code != 1 || !strings.Contains(lastLine(r.stderr), "ssh tunnel: connect to") {
			t.Fatalf("with sshd gone: exit %d, last line %q", r.code, lastLine(r.stderr))
		}
	})
}

// freezableProxy forwards TCP to a target until frozen; then it holds every
// connection open and silent, as a dead network path does.
type freezableProxy struct {
	port   int
	frozen chan struct{}
	once   sync.Once
	mu     sync.Mutex
	conns  []net.Conn
}

func startFreezableProxy(t *testing.T, target string) *freezableProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezableProxy{port: l.Addr().(*net.TCPAddr).Port, frozen: make(chan struct{})}
	release := make(chan struct{})
	t.Cleanup(func() {
		close(release)
		l.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			select {
			case <-p.frozen:
				<-release
				return
			default:
			}
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
	return p
}

func (p *freezableProxy) freeze() { p.once.Do(func() { close(p.frozen) }) }
