package destination

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sync"
)

// singerTarget pipes the messages into a Singer target command. The target
// decides when its data is durable: the states it prints on stdout (one
// JSON value per line, as Singer targets do) are what gets committed. Its
// stderr goes to the extraction log as the `target` source.
type singerTarget struct {
	opts  Options
	cmd   *exec.Cmd
	stdin io.WriteCloser
	in    *bufio.Writer
	lines lineSplitter
	// lastStream is the stream of the last record.
	lastStream string
	rows       map[string]int64
	// stateErr is the first error reading or committing the target's
	// states; drained tells Close that both of its outputs are read.
	stateErr error
	drained  sync.WaitGroup
}

// OpenSingerTarget starts command (program and arguments) and loads through it.
func OpenSingerTarget(command []string, opts Options) (Destination, error) {
	if len(command) == 0 {
		return nil, errors.New("singer target: no command")
	}
	cmd := exec.Command(command[0], command[1:]...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("singer target: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("singer target: %w", err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("singer target: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("singer target: start %s: %w", command[0], err)
	}
	t := &singerTarget{opts: opts, cmd: cmd, stdin: stdin, in: bufio.NewWriterSize(stdin, 1<<20), rows: map[string]int64{}}
	t.drained.Add(2)
	go t.readStates(stdout)
	go t.readLog(stderr)
	return t, nil
}

func (t *singerTarget) Rows() map[string]int64 { return t.rows }

func (t *singerTarget) Write(p []byte) (int, error) {
	_ = t.lines.each(p, t.count)
	if _, err := t.in.Write(p); err != nil {
		return 0, fmt.Errorf("singer target stopped reading its input: %w", err)
	}
	return len(p), nil
}

// count counts a record line; what the target makes of the line is its
// own business, so count never fails.
func (t *singerTarget) count(line []byte) error {
	m, err := parseMessage(line, t.lastStream)
	if err != nil || m.Type != "RECORD" {
		return nil
	}
	t.lastStream = m.Stream
	t.rows[m.Stream]++
	if t.opts.OnRecord != nil {
		t.opts.OnRecord(m.Stream)
	}
	return nil
}

// readStates commits each state the target prints, in order. A line that
// is not a JSON object is logged, not committed.
func (t *singerTarget) readStates(stdout io.Reader) {
	defer t.drained.Done()
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var state map[string]json.RawMessage
		if json.Unmarshal(line, &state) != nil {
			t.opts.Log.Warn(fmt.Sprintf("singer target printed a line that is not a state: %.200s", line))
			continue
		}
		if t.stateErr != nil {
			continue
		}
		if err := t.opts.Commit(bytes.Clone(line)); err != nil {
			t.stateErr = err
		}
	}
	if err := sc.Err(); err != nil && t.stateErr == nil {
		t.stateErr = fmt.Errorf("singer target: read its states: %w", err)
	}
}

func (t *singerTarget) readLog(stderr io.Reader) {
	defer t.drained.Done()
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		t.opts.Log.Info(sc.Text())
	}
}

// Close ends the target's input and waits for it to load, print its last
// state and exit.
func (t *singerTarget) Close() error {
	err := t.in.Flush()
	if err != nil {
		err = fmt.Errorf("singer target stopped reading its input: %w", err)
	}
	t.stdin.Close()
	t.drained.Wait()
	if werr := t.cmd.Wait(); werr != nil {
		err = errors.Join(fmt.Errorf("singer target %s: %w", t.cmd.Path, werr), err)
	}
	return errors.Join(err, t.stateErr)
}
