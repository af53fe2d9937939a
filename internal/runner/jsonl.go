package runner

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// jsonlDestination loads messages into one JSON-lines file per stream. It
// reads the tap's output line by line; at each STATE it makes every file
// durable (fsync) and only then hands the state to commit, so a committed
// state never covers records a crash could lose.
type jsonlDestination struct {
	dir     string
	files   map[string]*streamFile
	pending []byte
	commit  func(state json.RawMessage) error
	rows    map[string]int64
}

type streamFile struct {
	f *os.File
	w *bufio.Writer
}

func newJSONLDestination(dir string, commit func(json.RawMessage) error) (*jsonlDestination, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("jsonl destination: %w", err)
	}
	return &jsonlDestination{dir: dir, files: map[string]*streamFile{}, commit: commit, rows: map[string]int64{}}, nil
}

// Write takes the tap's output in any chunking.
func (d *jsonlDestination) Write(p []byte) (int, error) {
	d.pending = append(d.pending, p...)
	for {
		i := bytes.IndexByte(d.pending, '\n')
		if i < 0 {
			return len(p), nil
		}
		if err := d.line(d.pending[:i]); err != nil {
			return 0, err
		}
		d.pending = d.pending[i+1:]
	}
}

func (d *jsonlDestination) line(line []byte) error {
	var m struct {
		Type   string          `json:"type"`
		Stream string          `json:"stream"`
		Value  json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(line, &m); err != nil {
		return fmt.Errorf("jsonl destination: a message is not JSON: %w", err)
	}
	switch m.Type {
	case "STATE":
		if err := d.sync(); err != nil {
			return err
		}
		return d.commit(m.Value)
	case "RECORD", "SCHEMA", "ACTIVATE_VERSION":
		f, err := d.file(m.Stream)
		if err != nil {
			return err
		}
		if m.Type == "RECORD" {
			d.rows[m.Stream]++
		}
		if _, err := f.w.Write(line); err != nil {
			return err
		}
		return f.w.WriteByte('\n')
	}
	return nil
}

// file opens a stream's file; stream names become file names safely.
func (d *jsonlDestination) file(stream string) (*streamFile, error) {
	if f := d.files[stream]; f != nil {
		return f, nil
	}
	name := strings.Map(func(r rune) rune {
		if r == '/' || r == 0 || r == '\\' {
			return '_'
		}
		return r
	}, stream)
	f, err := os.OpenFile(filepath.Join(d.dir, name+".jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("jsonl destination: %w", err)
	}
	// The new file's directory entry must be durable before a state that
	// covers its lines is committed.
	if err := syncDir(d.dir); err != nil {
		f.Close()
		return nil, fmt.Errorf("jsonl destination: %w", err)
	}
	sf := &streamFile{f: f, w: bufio.NewWriterSize(f, 1<<20)}
	d.files[stream] = sf
	return sf, nil
}

func (d *jsonlDestination) sync() error {
	for stream, f := range d.files {
		if err := f.w.Flush(); err != nil {
			return fmt.Errorf("jsonl destination %s: %w", stream, err)
		}
		if err := f.f.Sync(); err != nil {
			return fmt.Errorf("jsonl destination %s: %w", stream, err)
		}
	}
	return nil
}

// Close makes everything written durable and closes the files. Records after
// the last STATE stay in the files but no state covers them: the next job
// sends them again.
func (d *jsonlDestination) Close() error {
	err := d.sync()
	for _, f := range d.files {
		if cerr := f.f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
