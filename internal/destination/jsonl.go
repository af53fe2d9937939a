package destination

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/tap-postgres/tap-postgres/internal/durable"
)

// jsonlLoader appends each stream's messages to its own JSON-lines file and
// makes the files durable (fsync, directory included) on flush. The
// records are the source's rows: the directory and files are private to
// the process's user and never opened through a symbolic link (package
// durable).
type jsonlLoader struct {
	dir   *durable.Dir
	files map[string]*streamFile
	// streamOfFile catches two streams whose names make one file name.
	streamOfFile map[string]string
	fence        func() error
	// open are the streams whose files are open, least recently used
	// first: with thousands of streams, a file and a buffer each would
	// hold gigabytes.
	open []*streamFile
	// closeErr is the first failure to make a file durable as it was
	// closed to make room: a load syncing the files it held finds that
	// one closed, and must not commit over it.
	mu       sync.Mutex
	closeErr error
}

// maxOpenFiles and fileBuffer bound what the streams' files hold: 4 MiB of
// buffers, whatever the number of streams.
const (
	maxOpenFiles = 64
	fileBuffer   = 64 << 10
)

// streamFile is a stream's file, open (f set) or closed after being made
// durable to make room for another.
type streamFile struct {
	name string
	f    *os.File
	w    *bufio.Writer
}

// OpenJSONL loads into one `<stream>.jsonl` file per stream under dir.
func OpenJSONL(dir string, opts Options) (Destination, error) {
	private, err := durable.OpenDir(dir)
	if err != nil {
		return nil, fmt.Errorf("jsonl destination: %w", err)
	}
	return newBatching(&jsonlLoader{dir: private, files: map[string]*streamFile{}, streamOfFile: map[string]string{}, fence: opts.Fence}, opts), nil
}

func (d *jsonlLoader) schema(m *message) error          { return d.append(m) }
func (d *jsonlLoader) record(m *message) error          { return d.append(m) }
func (d *jsonlLoader) activateVersion(m *message) error { return d.append(m) }

func (d *jsonlLoader) append(m *message) error {
	f, err := d.file(m.Stream)
	if err != nil {
		return err
	}
	if err := d.reopen(f); err != nil {
		return err
	}
	if _, err := f.w.Write(m.line); err != nil {
		return fmt.Errorf("jsonl destination %s: %w", m.Stream, err)
	}
	return f.w.WriteByte('\n')
}

// reopen makes f the most recently used open file, opening it again if it
// was closed, and closing the least recently used one past maxOpenFiles.
func (d *jsonlLoader) reopen(f *streamFile) error {
	if i := slices.Index(d.open, f); i >= 0 {
		if i < len(d.open)-1 {
			d.open = append(slices.Delete(d.open, i, i+1), f)
		}
		return nil
	}
	if len(d.open) >= maxOpenFiles {
		if err := d.closeFile(d.open[0]); err != nil {
			return err
		}
		d.open = d.open[1:]
	}
	if f.f == nil {
		file, err := d.dir.OpenFile(f.name, os.O_CREATE|os.O_APPEND|os.O_WRONLY)
		if err != nil {
			return fmt.Errorf("jsonl destination: %w", err)
		}
		f.f, f.w = file, bufio.NewWriterSize(file, fileBuffer)
	}
	d.open = append(d.open, f)
	return nil
}

// closeFile makes a file durable and closes it: a state committed later
// covers its lines. A load still syncing it finds it closed, and synced.
func (d *jsonlLoader) closeFile(f *streamFile) error {
	err := f.w.Flush()
	if err == nil {
		err = f.f.Sync()
	}
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	// The buffer goes with the file: kept for every stream, they would
	// hold 64 KiB each.
	f.f, f.w = nil, nil
	if err != nil {
		err = fmt.Errorf("jsonl destination %s: %w", f.name, err)
		d.mu.Lock()
		if d.closeErr == nil {
			d.closeErr = err
		}
		d.mu.Unlock()
	}
	return err
}

// file finds or creates a stream's file; stream names become file names
// safely.
func (d *jsonlLoader) file(stream string) (*streamFile, error) {
	if f := d.files[stream]; f != nil {
		return f, nil
	}
	name := strings.Map(func(r rune) rune {
		if r == '/' || r == 0 || r == '\\' {
			return '_'
		}
		return r
	}, stream)
	if other, ok := d.streamOfFile[name]; ok {
		return nil, fmt.Errorf("jsonl destination: streams %q and %q would share file %s.jsonl", other, stream, name)
	}
	d.streamOfFile[name] = stream
	fileName := name + ".jsonl"
	if holder, err := d.firstStream(fileName); err != nil {
		return nil, fmt.Errorf("jsonl destination: %w", err)
	} else if holder != "" && holder != stream {
		return nil, fmt.Errorf("jsonl destination: stream %q would write to %s, which holds stream %q", stream, filepath.Join(d.dir.Path(), fileName), holder)
	}
	sf := &streamFile{name: fileName}
	if err := d.reopen(sf); err != nil {
		return nil, err
	}
	// The new file's directory entry must be durable before a state that
	// covers its lines is committed.
	if err := d.dir.Sync(); err != nil {
		return nil, fmt.Errorf("jsonl destination: %w", err)
	}
	d.files[stream] = sf
	return sf, nil
}

// detach writes what the buffers hold to the files; the load fsyncs them,
// which covers at least those writes, whatever is appended meanwhile.
func (d *jsonlLoader) detach() func() error {
	if d.fence != nil {
		if err := d.fence(); err != nil {
			return func() error { return fmt.Errorf("jsonl destination: not written: %w", err) }
		}
	}
	files := make([]*os.File, 0, len(d.open))
	for _, f := range d.open {
		if err := f.w.Flush(); err != nil {
			return func() error { return fmt.Errorf("jsonl destination %s: %w", f.name, err) }
		}
		files = append(files, f.f)
	}
	return func() error {
		for _, f := range files {
			// Closed meanwhile to make room: closeFile synced it, or
			// recorded why it could not.
			if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
				return fmt.Errorf("jsonl destination %s: %w", f.Name(), err)
			}
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.closeErr
	}
}

func (d *jsonlLoader) close() error {
	var err error
	for _, f := range d.open {
		if ferr := f.w.Flush(); err == nil {
			err = ferr
		}
		if cerr := f.f.Close(); err == nil {
			err = cerr
		}
	}
	if cerr := d.dir.Close(); err == nil {
		err = cerr
	}
	return err
}

// firstStream is the stream of the first message of the file name ("" for
// a file that is missing or holds none yet), so that a later job's stream
// whose name makes the same file name is caught.
func (d *jsonlLoader) firstStream(name string) (string, error) {
	f, err := d.dir.OpenFile(name, os.O_RDONLY)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	var m struct {
		Stream string `json:"stream"`
	}
	if json.Unmarshal(line, &m) != nil {
		return "", nil
	}
	return m.Stream, nil
}
