package localpg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// StartStandby starts a physical standby of c, streaming from it through a
// physical slot, in a fresh temporary directory: a base backup taken with
// the server's backup functions and a file copy (no pg_basebackup, which
// the npm builds lack). Stop it like any cluster.
func (c *Cluster) StartStandby(ctx context.Context) (*Cluster, error) {
	s := *c
	base, err := os.MkdirTemp("", "localpg-")
	if err != nil {
		return nil, fmt.Errorf("localpg: creating base directory: %w", err)
	}
	s.BaseDir, s.DataDir, s.logFile = base, filepath.Join(base, "data"), filepath.Join(base, "server.log")
	s.primary, s.physicalSlot = c, "localpg_standby_"+strings.TrimPrefix(filepath.Base(base), "localpg-")
	if err := s.copyStandby(ctx, c); err != nil {
		return nil, errors.Join(err, s.Stop())
	}
	return &s, nil
}

// dropPhysicalSlot drops the slot a standby streamed through, which would
// otherwise keep the primary's WAL.
func (s *Cluster) dropPhysicalSlot() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return s.primary.Exec(ctx, "postgres", fmt.Sprintf(
		"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '%s'", s.physicalSlot))
}

func (s *Cluster) copyStandby(ctx context.Context, primary *Cluster) error {
	if err := os.Chmod(s.BaseDir, 0o700); err != nil {
		return err
	}
	if err := s.chown(s.BaseDir); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.BaseDir, ownerPIDFile), []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o600); err != nil {
		return err
	}
	slot := s.physicalSlot
	if err := primary.Exec(ctx, "postgres", fmt.Sprintf("SELECT pg_create_physical_replication_slot('%s', true)", slot)); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, primary.ConnString("postgres"))
	if err != nil {
		return fmt.Errorf("localpg: connecting to the primary: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// The backup functions' names changed in PostgreSQL 15.
	start, stop := "SELECT pg_backup_start('localpg standby', true)", "SELECT labelfile FROM pg_backup_stop(true)"
	if primary.major < 15 {
		start, stop = "SELECT pg_start_backup('localpg standby', true, false)", "SELECT labelfile FROM pg_stop_backup(false, true)"
	}
	if _, err := conn.Exec(ctx, start); err != nil {
		return fmt.Errorf("localpg: starting the base backup: %w", err)
	}
	copyErr := s.copyData(ctx, primary.DataDir)
	var label string
	if err := conn.QueryRow(ctx, stop).Scan(&label); err != nil {
		return errors.Join(copyErr, fmt.Errorf("localpg: ending the base backup: %w", err))
	}
	if copyErr != nil {
		return copyErr
	}
	conninfo := fmt.Sprintf("host=%s port=%d user=%s password=%s", primary.Host, primary.Port, quoteConnValue(primary.User), quoteConnValue(primary.Password))
	files := map[string]string{
		"backup_label":   label,
		"standby.signal": "",
	}
	for name, text := range files {
		path := filepath.Join(s.DataDir, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			return err
		}
		if err := s.chown(path); err != nil {
			return err
		}
	}
	confPath := filepath.Join(s.DataDir, "postgresql.conf")
	conf, err := os.ReadFile(confPath)
	if err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	s.Port = port
	extra := fmt.Sprintf("\n# ---- standby, written by localpg ----\nport = %d\nunix_socket_directories = '%s'\nprimary_conninfo = '%s'\nprimary_slot_name = '%s'\nhot_standby = on\nhot_standby_feedback = on\n",
		port, strings.ReplaceAll(s.BaseDir, "'", "''"), strings.ReplaceAll(conninfo, "'", "''"), slot)
	if err := os.WriteFile(confPath, append(conf, extra...), 0o600); err != nil {
		return err
	}
	return s.pgctlStart(ctx)
}

// copyData copies the primary's data directory as its owner, leaving out
// what a base backup leaves out: the running server's pid file, WAL
// (streamed from the primary instead) and replication slots.
func (s *Cluster) copyData(ctx context.Context, from string) error {
	cp := exec.CommandContext(ctx, "cp", "-a", from, s.DataDir)
	if s.asRoot {
		cp = exec.CommandContext(ctx, "runuser", "-u", osUser, "--", "cp", "-a", from, s.DataDir)
	}
	out, err := cp.CombinedOutput()
	// The primary's pid file goes whatever cp did: stopping this cluster
	// would otherwise stop the primary.
	for _, name := range []string{"postmaster.pid", "postmaster.opts"} {
		_ = os.Remove(filepath.Join(s.DataDir, name))
	}
	// A file the server removes during the copy makes cp complain about it
	// alone; what matters is in the WAL the standby replays.
	if err != nil && !onlyVanishedFiles(string(out)) {
		return fmt.Errorf("localpg: copying %s: %w\n%s", from, err, out)
	}
	for _, dir := range []string{"pg_wal", "pg_replslot"} {
		entries, _ := os.ReadDir(filepath.Join(s.DataDir, dir))
		for _, e := range entries {
			if e.Name() != "archive_status" {
				_ = os.RemoveAll(filepath.Join(s.DataDir, dir, e.Name()))
			}
		}
	}
	return nil
}

// onlyVanishedFiles tells whether every complaint of cp is about a file
// that was gone by the time it was copied.
func onlyVanishedFiles(out string) bool {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[0] != "" && !slices.ContainsFunc(lines, func(l string) bool { return !strings.Contains(l, "No such file or directory") })
}

// WaitReplayed waits until the standby has replayed the primary's WAL up to
// now.
func (s *Cluster) WaitReplayed(ctx context.Context, primary *Cluster) error {
	var target string
	if err := queryRow(ctx, primary, "SELECT pg_current_wal_lsn()::text", &target); err != nil {
		return err
	}
	for {
		var done bool
		if err := queryRow(ctx, s, fmt.Sprintf("SELECT pg_last_wal_replay_lsn() >= '%s'::pg_lsn", target), &done); err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func queryRow(ctx context.Context, c *Cluster, sql string, dest ...any) error {
	conn, err := pgx.Connect(ctx, c.ConnString("postgres"))
	if err != nil {
		return fmt.Errorf("localpg: connecting: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.QueryRow(ctx, sql).Scan(dest...)
}
