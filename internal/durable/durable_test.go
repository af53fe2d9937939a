package durable_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tap-postgres/tap-postgres/internal/durable"
)

// TestPrivateWhateverTheUmask: directories are 0700 and files 0600 under a
// umask that would leave them open to all, or that would leave the owner
// unable to write, and a replaced file leaves no temporary behind.
func TestPrivateWhateverTheUmask(t *testing.T) {
	for _, umask := range []int{0, 0o277} {
		t.Run(fmt.Sprintf("umask %04o", umask), func(t *testing.T) {
			old := unix.Umask(umask)
			t.Cleanup(func() { unix.Umask(old) })
			top := filepath.Join(t.TempDir(), "created")
			dir, err := durable.OpenDir(top)
			if err != nil {
				t.Fatal(err)
			}
			defer dir.Close()
			sub, err := dir.Sub("sub")
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			if err := sub.WriteFile("replaced", []byte("one")); err != nil {
				t.Fatal(err)
			}
			if err := sub.WriteFile("replaced", []byte("two")); err != nil {
				t.Fatal(err)
			}
			f, err := sub.OpenFile("appended", os.O_CREATE|os.O_WRONLY|os.O_APPEND)
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
			for path, want := range map[string]os.FileMode{
				top:                                   0o700,
				filepath.Join(top, "sub"):             0o700,
				filepath.Join(top, "sub", "replaced"): 0o600,
				filepath.Join(top, "sub", "appended"): 0o600,
			} {
				if info, err := os.Stat(path); err != nil || info.Mode().Perm() != want {
					t.Errorf("%s: %v %v, want %v", path, info.Mode().Perm(), err, want)
				}
			}
			names, err := sub.Names()
			slices.Sort(names)
			if err != nil || !slices.Equal(names, []string{"appended", "replaced"}) {
				t.Errorf("entries: %v %v", names, err)
			}
			if data, err := sub.ReadFile("replaced"); err != nil || string(data) != "two" {
				t.Errorf("replaced: %q %v", data, err)
			}
		})
	}
}
