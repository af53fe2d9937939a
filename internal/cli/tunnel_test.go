package cli_test

import (
	"strings"
	"testing"

	"github.com/tap-postgres/tap-postgres/internal/cli"
	"github.com/tap-postgres/tap-postgres/internal/testpg"
	"github.com/tap-postgres/tap-postgres/internal/testsshd"
)

// TestSSHTunnel runs discovery, a full copy and a log-based run through a
// real sshd, and checks that unknown or changed host keys are refused.
func TestSSHTunnel(t *testing.T) {
	sshd := testsshd.Start(t)
	db := testpg.NewDatabase(t, pg)
	slot := slotFor(db)
	testpg.Exec(t, pg, db, "CREATE TABLE tunnelled (id integer PRIMARY KEY, v text); INSERT INTO tunnelled VALUES (1, 'a'), (2, 'b')")
	newSlot(t, db, slot)
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

	byPath := writeFile(t, "path.json", tunnel(map[string]any{"private_key": keyPath, "known_hosts": knownHostsPath}))
	logCat := logCatalog(t, byPath, db+"-public-tunnelled")
	_, s1 := logRun(t, byPath, logCat, nil)
	testpg.Exec(t, pg, db, "INSERT INTO tunnelled VALUES (3, 'c')")
	r, _ := logRun(t, byPath, logCat, s1)
	if recs := records(r.messages, "tunnelled"); len(recs) != 1 || recs[0]["v"] != "c" {
		t.Fatalf("log-based through the tunnel: %v\n%s", recs, r.stderr)
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
		"changed host key":      {map[string]any{"private_key": sshd.ClientKey, "known_hosts": sshd.OtherHostKnownHosts}, "not in known_hosts: refusing"},
		"wrong fingerprint":     {map[string]any{"private_key": sshd.ClientKey, "host_key_fingerprint": "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "does not match host_key_fingerprint"},
		"missing passphrase":    {map[string]any{"private_key": sshd.ClientKeyEncrypted, "known_hosts": sshd.KnownHosts}, "encrypted and no passphrase"},
		"unauthorised key":      {map[string]any{"private_key": sshd.ClientKeyEncrypted, "passphrase": "wrong-passphrase", "known_hosts": sshd.KnownHosts}, "private_key cannot be read"},
		"password not accepted": {map[string]any{"password": "S3cr3t-tunnel-pw", "known_hosts": sshd.KnownHosts}, "unable to authenticate"},
	} {
		r := runTap(t, cli.Env{}, "--config", writeFile(t, "bad.json", tunnel(tc.extra)), "--discover")
		last := lastLine(r.stderr)
		if r.code != 1 || !strings.HasPrefix(last, "CRITICAL") || !strings.Contains(last, tc.want) {
			t.Errorf("%s: exit %d, last line %q, want a CRITICAL containing %q", name, r.code, last, tc.want)
		}
		for _, secret := range []string{"S3cr3t-tunnel-pw", testsshd.Passphrase, "wrong-passphrase", "PRIVATE KEY"} {
			if strings.Contains(r.stderr+r.stdout, secret) {
				t.Errorf("%s: output contains a secret (%q)", name, secret)
			}
		}
	}

	sshd.Stop()
	r = runTap(t, cli.Env{}, "--config", good, "--discover")
	if r.code != 1 || !strings.Contains(lastLine(r.stderr), "ssh tunnel: connect to") {
		t.Fatalf("with sshd gone: exit %d, last line %q", r.code, lastLine(r.stderr))
	}
}
