// Package durable writes files so that what a crash leaves is known: the
// runner's committed state and the JSONL destination's files are made
// durable (fsync, directory included) before anything relies on them.
package durable

import (
	"os"
	"path/filepath"
)

// SyncDir makes dir's entries (files created or renamed in it) durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// WriteFile replaces path with data atomically and durably: written to a
// temporary file, fsynced, renamed over path, directory fsynced. A crash
// leaves either the old content or the new.
func WriteFile(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}
