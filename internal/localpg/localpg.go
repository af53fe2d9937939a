// Package localpg starts throwaway PostgreSQL clusters for tests and demos.
//
// A cluster lives in a fresh temporary directory (BaseDir) that holds the data
// directory, the server log and the Unix socket. The server listens on
// 127.0.0.1 only, is configured for logical replication (wal_level=logical)
// and trades durability for speed (fsync=off and friends).
//
// PostgreSQL refuses to run as root, so when the calling process is root every
// server binary (initdb, pg_ctl, postgres) is run as the "postgres" OS user via
// runuser(1).
package localpg

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// DefaultBinDir is used when neither Options.BinDir nor $PGBIN is set.
	DefaultBinDir = "/usr/lib/postgresql/15/bin"
	// DefaultPassword is the superuser password used when
	// Options.SuperuserPassword is empty.
	DefaultPassword = "postgres-test-pw"

	superuser    = "postgres"
	osUser       = "postgres" // OS account that runs the server when we are root
	ownerPIDFile = "localpg-owner.pid"
	// keptFile marks a cluster its owner left running on purpose; it holds
	// the directory of the server binaries, which StopKept needs.
	keptFile   = "localpg-kept"
	startTries = 3
	tailLines  = 20
)

// Options configures Start. The zero value is usable.
type Options struct {
	// BinDir holds initdb, pg_ctl and postgres. Default: $PGBIN, else
	// DefaultBinDir.
	BinDir string
	// Port to listen on (127.0.0.1). 0 picks a free port; if the picked port
	// is taken by the time the server starts, another one is tried (up to 3
	// attempts).
	Port int
	// SuperuserPassword for the "postgres" role. Default DefaultPassword.
	SuperuserPassword string
	// ExtraConf lines are appended to postgresql.conf after the defaults (so
	// they override them), e.g. "ssl = on".
	ExtraConf []string
	// HBA lines are placed in pg_hba.conf before the default rules.
	HBA []string
	// Files are written into the data directory (mode 0600, owned by the
	// server's user) before it starts: certificates and keys ExtraConf
	// names by relative path.
	Files map[string][]byte
	// OutputPlugins is the value of output_plugin_libraries on servers that
	// know that setting (PostgreSQL's November 2026 minor releases and
	// later); older servers refuse to start with it, so it is left out
	// there. Default: DefaultOutputPlugins.
	OutputPlugins string
	// Log receives human-readable progress lines. May be nil.
	Log io.Writer
}

// DefaultOutputPlugins allows wal2json beside PostgreSQL's own plugins.
const DefaultOutputPlugins = "pgoutput, test_decoding, wal2json"

// Cluster is a running throwaway PostgreSQL server.
type Cluster struct {
	Host     string // always 127.0.0.1
	Port     int
	User     string // superuser name: "postgres"
	Password string // superuser password
	DataDir  string // BaseDir/data
	BaseDir  string // temporary directory holding everything; removed by Stop

	binDir string
	// hasPluginAllowList: the server knows output_plugin_libraries.
	hasPluginAllowList bool
	// hasWal2json: the server's library directory holds wal2json (Debian's
	// packages; not the npm builds of other majors).
	hasWal2json bool
	// major is the server's major version (12 for 12.22).
	major int
	// primary and physicalSlot are what a standby streams from.
	primary      *Cluster
	physicalSlot string
	logFile      string
	logw         io.Writer
	asRoot       bool
	uid          int
	gid          int
}

// Start creates a new cluster in a fresh temporary directory and starts it.
// On failure everything created is removed again and the error contains the
// tail of the server log or initdb output.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	began := time.Now()
	binDir := opts.BinDir
	if binDir == "" {
		binDir = os.Getenv("PGBIN")
	}
	if binDir == "" {
		binDir = DefaultBinDir
	}
	for _, b := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return nil, fmt.Errorf("localpg: looking for PostgreSQL binary %s: %w", b, err)
		}
	}
	allowList, err := knowsSetting(ctx, binDir, "output_plugin_libraries")
	if err != nil {
		return nil, err
	}
	pw := opts.SuperuserPassword
	if pw == "" {
		pw = DefaultPassword
	}

	c := &Cluster{
		Host:               "127.0.0.1",
		User:               superuser,
		Password:           pw,
		binDir:             binDir,
		hasPluginAllowList: allowList,
		logw:               opts.Log,
		asRoot:             os.Geteuid() == 0,
		uid:                -1,
		gid:                -1,
	}
	if c.asRoot {
		u, err := user.Lookup(osUser)
		if err != nil {
			return nil, fmt.Errorf("localpg: running as root, looking up OS user %q to run the server: %w", osUser, err)
		}
		if c.uid, err = strconv.Atoi(u.Uid); err != nil {
			return nil, fmt.Errorf("localpg: parsing uid of %q: %w", osUser, err)
		}
		if c.gid, err = strconv.Atoi(u.Gid); err != nil {
			return nil, fmt.Errorf("localpg: parsing gid of %q: %w", osUser, err)
		}
	}

	// Best effort: get rid of clusters left behind by processes that died
	// without calling Stop (killed test binaries, panics, timeouts).
	c.reapOrphans(ctx)

	base, err := os.MkdirTemp("", "localpg-")
	if err != nil {
		return nil, fmt.Errorf("localpg: creating base directory: %w", err)
	}
	c.BaseDir = base
	c.DataDir = filepath.Join(base, "data")
	c.logFile = filepath.Join(base, "server.log")

	if err := c.setup(ctx, opts); err != nil {
		c.logf("start failed, cleaning up %s", base)
		if cerr := c.destroy(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	if err := c.inspect(ctx); err != nil {
		return nil, errors.Join(err, c.destroy())
	}
	c.logf("cluster ready at %s:%d (data %s, pid %d) in %s",
		c.Host, c.Port, c.DataDir, c.postmasterPID(), time.Since(began).Round(time.Millisecond))
	return c, nil
}

func (c *Cluster) setup(ctx context.Context, opts Options) error {
	if err := os.Chmod(c.BaseDir, 0o700); err != nil {
		return fmt.Errorf("localpg: chmod %s: %w", c.BaseDir, err)
	}
	if err := c.chown(c.BaseDir); err != nil {
		return err
	}
	// Record which process owns this cluster so a later Start can reap it if
	// this process dies without calling Stop.
	ownerFile := filepath.Join(c.BaseDir, ownerPIDFile)
	if err := os.WriteFile(ownerFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return fmt.Errorf("localpg: writing %s: %w", ownerFile, err)
	}

	if err := c.initdb(ctx); err != nil {
		return err
	}

	for name, data := range opts.Files {
		path := filepath.Join(c.DataDir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return fmt.Errorf("localpg: writing %s: %w", path, err)
		}
		if err := c.chown(path); err != nil {
			return err
		}
	}

	hbaPath := filepath.Join(c.DataDir, "pg_hba.conf")
	var hba strings.Builder
	hba.WriteString("# written by localpg\n")
	for _, l := range opts.HBA {
		hba.WriteString(l + "\n")
	}
	hba.WriteString("local all all trust\n")
	hba.WriteString("local replication all trust\n")
	hba.WriteString("host all all 127.0.0.1/32 scram-sha-256\n")
	hba.WriteString("host replication all 127.0.0.1/32 scram-sha-256\n")
	// Overwriting an existing file keeps its owner (postgres).
	if err := os.WriteFile(hbaPath, []byte(hba.String()), 0o600); err != nil {
		return fmt.Errorf("localpg: writing %s: %w", hbaPath, err)
	}

	confPath := filepath.Join(c.DataDir, "postgresql.conf")
	origConf, err := os.ReadFile(confPath)
	if err != nil {
		return fmt.Errorf("localpg: reading %s: %w", confPath, err)
	}

	var lastErr error
	for attempt := 1; attempt <= startTries; attempt++ {
		port := opts.Port
		if port == 0 {
			if port, err = freePort(); err != nil {
				return err
			}
		}
		c.Port = port
		conf := c.conf(port, cmp.Or(opts.OutputPlugins, DefaultOutputPlugins), opts.ExtraConf)
		if err := os.WriteFile(confPath, append(append([]byte{}, origConf...), conf...), 0o600); err != nil {
			return fmt.Errorf("localpg: writing %s: %w", confPath, err)
		}
		lastErr = c.pgctlStart(ctx)
		if lastErr == nil {
			return nil
		}
		if opts.Port != 0 || ctx.Err() != nil || !c.portCollision() {
			return lastErr
		}
		c.logf("port %d was taken, retrying with another port (attempt %d/%d)", port, attempt, startTries)
		// Start the next attempt with a fresh log so the collision check
		// only sees the new attempt's messages.
		_ = os.Remove(c.logFile)
	}
	return lastErr
}

func (c *Cluster) conf(port int, outputPlugins string, extra []string) string {
	var b strings.Builder
	b.WriteString("\n# ---- written by localpg ----\n")
	fmt.Fprintf(&b, "listen_addresses = '127.0.0.1'\n")
	fmt.Fprintf(&b, "port = %d\n", port)
	fmt.Fprintf(&b, "unix_socket_directories = '%s'\n", strings.ReplaceAll(c.BaseDir, "'", "''"))
	b.WriteString("wal_level = logical\n")
	b.WriteString("max_replication_slots = 20\n")
	b.WriteString("max_wal_senders = 20\n")
	b.WriteString("fsync = off\n")
	b.WriteString("full_page_writes = off\n")
	b.WriteString("shared_buffers = 128MB\n")
	b.WriteString("max_connections = 100\n")
	b.WriteString("log_min_messages = warning\n")
	if c.hasPluginAllowList {
		fmt.Fprintf(&b, "output_plugin_libraries = '%s'\n", strings.ReplaceAll(outputPlugins, "'", "''"))
	}
	if len(extra) > 0 {
		b.WriteString("# ---- extra ----\n")
		for _, l := range extra {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// HasWal2json tells whether the server can load the wal2json plugin.
func (c *Cluster) HasWal2json() bool { return c.hasWal2json }

// Major is the server's major version: 12 for 12.22, 18 for 18.4.
func (c *Cluster) Major() int { return c.major }

// inspect learns the server's major version and whether wal2json is in its
// library directory.
func (c *Cluster) inspect(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, c.ConnString("postgres"))
	if err != nil {
		return fmt.Errorf("localpg: connecting: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var dir string
	var version int
	if err := conn.QueryRow(ctx, `SELECT setting, current_setting('server_version_num')::int FROM pg_config WHERE name = 'PKGLIBDIR'`).Scan(&dir, &version); err != nil {
		return fmt.Errorf("localpg: server version and library directory: %w", err)
	}
	c.major = version / 10000
	_, err = os.Stat(filepath.Join(dir, "wal2json.so"))
	c.hasWal2json = err == nil
	return nil
}

// HasPluginAllowList tells whether the server has output_plugin_libraries,
// the allow-list of logical decoding plugins.
func (c *Cluster) HasPluginAllowList() bool { return c.hasPluginAllowList }

// knowsSetting asks the server binary whether it has a configuration
// parameter: an unknown name in postgresql.conf stops a server from
// starting. --describe-config runs even as root.
func knowsSetting(ctx context.Context, binDir, name string) (bool, error) {
	out, err := exec.CommandContext(ctx, filepath.Join(binDir, "postgres"), "--describe-config").Output()
	if err != nil {
		return false, fmt.Errorf("localpg: postgres --describe-config: %w", err)
	}
	for line := range bytes.Lines(out) {
		if n, _, ok := bytes.Cut(line, []byte("\t")); ok && string(n) == name {
			return true, nil
		}
	}
	return false, nil
}

func (c *Cluster) initdb(ctx context.Context) error {
	pwFile := filepath.Join(c.BaseDir, "pwfile")
	if err := os.WriteFile(pwFile, []byte(c.Password+"\n"), 0o600); err != nil {
		return fmt.Errorf("localpg: writing password file: %w", err)
	}
	defer os.Remove(pwFile)
	if err := c.chown(pwFile); err != nil {
		return err
	}

	var errs []error
	for _, locale := range []string{"C.UTF-8", "C"} {
		start := time.Now()
		out, err := c.run(ctx, "initdb", "-D", c.DataDir, "-U", superuser, "-A", "scram-sha-256",
			"--pwfile="+pwFile, "-E", "UTF8", "--locale="+locale, "--no-sync")
		if err == nil {
			c.logf("initdb %s (locale %s) took %s", c.DataDir, locale, time.Since(start).Round(time.Millisecond))
			return nil
		}
		errs = append(errs, fmt.Errorf("initdb %s (locale %s): %w\n%s", c.DataDir, locale, err, tail(out, tailLines)))
		if ctx.Err() != nil {
			break
		}
		_ = os.RemoveAll(c.DataDir)
	}
	return fmt.Errorf("localpg: %w", errors.Join(errs...))
}

func (c *Cluster) pgctlStart(ctx context.Context) error {
	out, err := c.run(ctx, "pg_ctl", "-D", c.DataDir, "-l", c.logFile, "-w", "-t", "60", "start")
	if err != nil {
		return fmt.Errorf("localpg: pg_ctl start %s (port %d): %w\npg_ctl output:\n%s\nserver log:\n%s",
			c.DataDir, c.Port, err, tail(out, tailLines), c.serverLogTail())
	}
	return nil
}

// portCollision reports whether the last start failed because the port was
// in use.
func (c *Cluster) portCollision() bool {
	b, _ := os.ReadFile(c.logFile)
	s := string(b)
	return strings.Contains(s, "Address already in use") || strings.Contains(s, "could not bind")
}

// Stop shuts the server down (immediate mode) and removes BaseDir. It is safe
// to call more than once.
func (c *Cluster) Stop() error {
	if c == nil || c.BaseDir == "" {
		return nil
	}
	if _, err := os.Stat(c.BaseDir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	c.logf("stopping cluster on port %d and removing %s", c.Port, c.BaseDir)
	err := c.destroy()
	if c.primary != nil {
		err = errors.Join(err, c.dropPhysicalSlot())
	}
	return err
}

// Keep leaves the cluster running after this process exits: no later Start
// reaps it as an orphan. StopKept(BaseDir) stops and removes it.
func (c *Cluster) Keep() error {
	path := filepath.Join(c.BaseDir, keptFile)
	if err := os.WriteFile(path, []byte(c.binDir+"\n"), 0o600); err != nil {
		return fmt.Errorf("localpg: keep cluster %s: %w", c.BaseDir, err)
	}
	return nil
}

// StopKept stops a cluster left running by Keep and removes its directory.
// A directory Keep did not mark is refused, whatever it holds.
func StopKept(baseDir string, log io.Writer) error {
	bin, err := os.ReadFile(filepath.Join(baseDir, keptFile))
	if err != nil {
		return fmt.Errorf("localpg: %s is not a kept cluster: %w", baseDir, err)
	}
	c := &Cluster{
		BaseDir: baseDir,
		DataDir: filepath.Join(baseDir, "data"),
		binDir:  strings.TrimSpace(string(bin)),
		logFile: filepath.Join(baseDir, "server.log"),
		logw:    log,
		asRoot:  os.Geteuid() == 0,
	}
	return c.Stop()
}

// destroy stops the server if it is running and removes BaseDir.
func (c *Cluster) destroy() error {
	var errs []error
	if pid := c.postmasterPID(); pid > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		out, err := c.run(ctx, "pg_ctl", "-D", c.DataDir, "-m", "immediate", "-w", "-t", "30", "stop")
		cancel()
		if err != nil && processAlive(pid) {
			// Last resort: make sure no server outlives its directory.
			if kerr := syscall.Kill(pid, syscall.SIGKILL); kerr != nil && !errors.Is(kerr, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("localpg: pg_ctl stop %s: %w\n%s", c.DataDir, err, tail(out, tailLines)))
			}
		}
	}
	if err := os.RemoveAll(c.BaseDir); err != nil {
		errs = append(errs, fmt.Errorf("localpg: removing %s: %w", c.BaseDir, err))
	}
	return errors.Join(errs...)
}

// Restart restarts the server (pg_ctl restart, fast shutdown) keeping port
// and data. Existing connections are terminated.
func (c *Cluster) Restart(ctx context.Context) error {
	start := time.Now()
	out, err := c.run(ctx, "pg_ctl", "-D", c.DataDir, "-l", c.logFile, "-m", "fast", "-w", "-t", "60", "restart")
	if err != nil {
		return fmt.Errorf("localpg: pg_ctl restart %s (port %d): %w\npg_ctl output:\n%s\nserver log:\n%s",
			c.DataDir, c.Port, err, tail(out, tailLines), c.serverLogTail())
	}
	c.logf("restarted cluster on port %d (pid %d) in %s", c.Port, c.postmasterPID(), time.Since(start).Round(time.Millisecond))
	return nil
}

// ConnString returns a keyword/value connection string for database db as
// the superuser over TCP.
func (c *Cluster) ConnString(db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable",
		c.Host, c.Port, quoteConnValue(c.User), quoteConnValue(c.Password), quoteConnValue(db))
}

// Exec runs sql (which may contain several statements) in database db as the
// superuser using the simple query protocol.
func (c *Cluster) Exec(ctx context.Context, db string, sql string) error {
	conn, err := pgx.Connect(ctx, c.ConnString(db))
	if err != nil {
		return fmt.Errorf("localpg: connecting to database %q: %w", db, err)
	}
	defer conn.Close(context.Background())
	results, err := conn.PgConn().Exec(ctx, sql).ReadAll()
	if err == nil {
		for _, r := range results {
			if r.Err != nil {
				err = r.Err
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("localpg: executing SQL in database %q: %w", db, err)
	}
	return nil
}

// CreateDatabase creates database name (any characters allowed).
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	if err := c.Exec(ctx, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("localpg: creating database %q: %w", name, err)
	}
	return nil
}

// ---- helpers ----

func (c *Cluster) logf(format string, args ...any) {
	if c.logw == nil {
		return
	}
	fmt.Fprintf(c.logw, "localpg: "+format+"\n", args...)
}

// command builds the command for a server binary, via runuser when root.
func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	bin := filepath.Join(c.binDir, name)
	var cmd *exec.Cmd
	if c.asRoot {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", osUser, "--", bin}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, bin, args...)
	}
	if c.BaseDir != "" {
		cmd.Dir = c.BaseDir // the caller's cwd may be unreadable for postgres
	}
	// Messages in English so log matching (port collision) works.
	cmd.Env = append(os.Environ(), "LC_MESSAGES=C", "LANG=C.UTF-8")
	// pg_ctl forks the postmaster; should it ever keep our pipes open, do not
	// hang forever waiting for EOF.
	cmd.WaitDelay = 5 * time.Second
	// Own process group, so cancelling ctx also kills what runuser spawned.
	// (pg_ctl detaches the postmaster with setsid, so it is not affected.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	return cmd
}

func (c *Cluster) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := c.command(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%w)", err, ctx.Err())
	}
	return out.Bytes(), err
}

func (c *Cluster) chown(path string) error {
	if !c.asRoot {
		return nil
	}
	if err := os.Chown(path, c.uid, c.gid); err != nil {
		return fmt.Errorf("localpg: chown %s to %s: %w", path, osUser, err)
	}
	return nil
}

func (c *Cluster) serverLogTail() string {
	b, err := os.ReadFile(c.logFile)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", c.logFile, err)
	}
	return tail(b, tailLines)
}

// postmasterPID returns the pid from DataDir/postmaster.pid, or 0.
func (c *Cluster) postmasterPID() int {
	return readPID(filepath.Join(c.DataDir, "postmaster.pid"))
}

// reapOrphans stops and removes clusters in the temp directory whose owning
// process no longer exists. Errors are ignored: this is best effort.
func (c *Cluster) reapOrphans(ctx context.Context) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "localpg-*"))
	for _, dir := range dirs {
		if ctx.Err() != nil {
			return
		}
		if _, err := os.Stat(filepath.Join(dir, keptFile)); err == nil {
			continue // left running on purpose
		}
		owner := readPID(filepath.Join(dir, ownerPIDFile))
		if owner <= 0 || owner == os.Getpid() || processAlive(owner) {
			continue // being set up, or still owned
		}
		orphan := *c
		orphan.BaseDir = dir
		orphan.DataDir = filepath.Join(dir, "data")
		orphan.logFile = filepath.Join(dir, "server.log")
		c.logf("removing orphaned cluster %s (owner pid %d is gone)", dir, owner)
		_ = orphan.destroy()
	}
}

func readPID(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	if !s.Scan() {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(s.Text()))
	if err != nil {
		return 0
	}
	return pid
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	// A killed process whose parent has not reaped it yet still answers
	// kill(pid, 0); on Linux, look at its state.
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'Z' {
			return false
		}
	}
	return true
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("localpg: picking a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("localpg: picking a free port: %w", err)
	}
	return port, nil
}

// quoteConnValue quotes a value for a keyword/value connection string when
// needed.
func quoteConnValue(v string) string {
	if v != "" && !strings.ContainsAny(v, " '\\\t\n\r") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
