// Package durable writes files so that what a crash leaves is known: the
// runner's committed state and the JSONL destination's files are made
// durable (fsync, directory included) before anything relies on them.
//
// The files hold extracted rows and the state that decides what the next
// job extracts, so they are kept private to the process's user:
// directories 0700, files 0600, whatever the umask. Everything is opened
// relative to a directory held open once checked, with O_NOFOLLOW, so that
// neither a symbolic link planted in a directory nor a directory renamed
// and replaced after the check can redirect a write or inject what is read.
// os.Root is not used: it follows a symbolic link that stays inside the
// root, and it cannot create a temporary file.
package durable

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

const (
	dirPerm  = 0o700
	filePerm = 0o600
)

// Dir is a directory private to the process's user, held open: what is
// opened in it is the directory that was checked, whatever becomes of its
// path afterwards.
type Dir struct {
	fd   int
	path string
}

// OpenDir opens the directory at path, creating it (and missing parents)
// when it does not exist. Symbolic links in path's parents are followed,
// being the caller's choice; path itself must not be one.
//
// A directory another user owns, or that group or others may write to, is
// refused: they could read what is kept there or plant links in it. One of
// ours that is merely readable by others, as older versions created them,
// is tightened to 0700.
func OpenDir(path string) (*Dir, error) {
	path = filepath.Clean(path)
	fd, err := openDirAt(unix.AT_FDCWD, path, path)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(path, dirPerm); err != nil {
			return nil, err
		}
		fd, err = openDirAt(unix.AT_FDCWD, path, path)
	}
	if err != nil {
		return nil, err
	}
	return &Dir{fd: fd, path: path}, nil
}

// Sub opens the subdirectory name of d, creating it when missing, under
// the same rules as OpenDir.
func (d *Dir) Sub(name string) (*Dir, error) {
	path := filepath.Join(d.path, name)
	if err := unix.Mkdirat(d.fd, name, dirPerm); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, &os.PathError{Op: "mkdir", Path: path, Err: err}
	}
	fd, err := openDirAt(d.fd, name, path)
	if err != nil {
		return nil, err
	}
	return &Dir{fd: fd, path: path}, nil
}

func openDirAt(dirfd int, name, path string) (int, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, openError(dirfd, name, path, err)
	}
	if err := keepPrivate(fd, path, unix.S_IFDIR); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// Path is where d was opened, for messages.
func (d *Dir) Path() string { return d.path }

// Close releases d. Closing it again does nothing, rather than close a
// descriptor number reused since.
func (d *Dir) Close() error {
	fd := d.fd
	if fd < 0 {
		return nil
	}
	d.fd = -1
	return unix.Close(fd)
}

// Sync makes d's entries (files created or renamed in it) durable.
func (d *Dir) Sync() error {
	if err := unix.Fsync(d.fd); err != nil {
		return &os.PathError{Op: "fsync", Path: d.path, Err: err}
	}
	return nil
}

// OpenFile opens the file name in d with flag (os.O_*), never through a
// symbolic link. A file it creates is 0600; an existing one of ours is
// tightened to 0600, another user's refused.
func (d *Dir) OpenFile(name string, flag int) (*os.File, error) {
	path := filepath.Join(d.path, name)
	fd, err := unix.Openat(d.fd, name, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC, filePerm)
	if err != nil {
		return nil, openError(d.fd, name, path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	if err := keepPrivate(fd, path, unix.S_IFREG); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// ReadFile is the content of the file name in d, read as OpenFile opens it.
func (d *Dir) ReadFile(name string) ([]byte, error) {
	f, err := d.OpenFile(name, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// WriteFile replaces the file name in d with data atomically and durably:
// written to a temporary file, fsynced, renamed over name, directory
// fsynced. A crash leaves either the old content or the new. The
// temporary's name is unpredictable and created exclusively, so nothing
// planted in advance is written through; the rename replaces a symbolic
// link at name rather than following it.
func (d *Dir) WriteFile(name string, data []byte) error {
	tmp := name + ".tmp-" + rand.Text()
	f, err := d.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return err
	}
	if err := writeAndSync(f, data); err != nil {
		unix.Unlinkat(d.fd, tmp, 0)
		return err
	}
	if err := unix.Renameat(d.fd, tmp, d.fd, name); err != nil {
		unix.Unlinkat(d.fd, tmp, 0)
		return &os.LinkError{Op: "rename", Old: f.Name(), New: filepath.Join(d.path, name), Err: err}
	}
	return d.Sync()
}

func writeAndSync(f *os.File, data []byte) error {
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Names are the names of d's entries, in directory order.
func (d *Dir) Names() ([]string, error) {
	// A descriptor of its own: reading entries moves its offset.
	fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: d.path, Err: err}
	}
	f := os.NewFile(uintptr(fd), d.path)
	defer f.Close()
	return f.Readdirnames(-1)
}

// openError explains a failed open, a symbolic link in words that say why
// it is refused (O_NOFOLLOW fails on one with ELOOP, or ENOTDIR when a
// directory was wanted).
func openError(dirfd int, name, path string, err error) error {
	var st unix.Stat_t
	if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return fmt.Errorf("%s is a symbolic link: refusing to follow it, it could redirect what is written or inject what is read (remove it)", path)
	}
	return &os.PathError{Op: "open", Path: path, Err: err}
}

// keepPrivate checks that the open fd at path is of kind (unix.S_IFDIR or
// unix.S_IFREG) and ours, and sets its mode to 0700 or 0600.
func keepPrivate(fd int, path string, kind uint32) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != kind {
		if kind == unix.S_IFDIR {
			return fmt.Errorf("%s is not a directory", path)
		}
		return fmt.Errorf("%s is not a regular file", path)
	}
	if euid := os.Geteuid(); int(st.Uid) != euid {
		return fmt.Errorf("%s is owned by uid %d, not by this process's user (uid %d): refusing to use it, its owner could read or replace what is kept there (chown %d %s, or use another path)",
			path, st.Uid, euid, euid, path)
	}
	perm := uint32(filePerm)
	if kind == unix.S_IFDIR {
		// Another user who could write here may have planted anything,
		// which tightening the mode now would not undo.
		if st.Mode&0o022 != 0 {
			return fmt.Errorf("%s is writable by group or others (mode %04o): refusing to use it, another user could have planted links or files in it (check its content, then chmod 700 %s)",
				path, st.Mode&0o7777, path)
		}
		perm = dirPerm
	}
	if st.Mode&0o7777 != perm {
		if err := unix.Fchmod(fd, perm); err != nil {
			return &os.PathError{Op: "chmod", Path: path, Err: err}
		}
	}
	return nil
}
