package destination

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
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
	// Its own process group: a Ctrl-C at the terminal stops the runner,
	// which ends the target's input so that it loads and prints its last
	// state, instead of killing it at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var pipes []io.Closer
	fail := func(err error) (Destination, error) {
		for _, p := range pipes {
			p.Close()
		}
		return nil, fmt.Errorf("singer target: %w", err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fail(err)
	}
	pipes = append(pipes, stdin)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fail(err)
	}
	pipes = append(pipes, stdout)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return fail(err)
	}
	pipes = append(pipes, stderr)
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("start %s: %w", command[0], err))
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
// is not a state (a JSON object with a "bookmarks" object) is logged and
// not committed: committing it would lose every bookmark.
func (t *singerTarget) readStates(stdout io.Reader) {
	defer t.drained.Done()
	r := bufio.NewReader(stdout)
	for {
		line, err := r.ReadBytes('\n')
		if line = bytes.TrimSpace(line); len(line) > 0 {
			t.stateLine(line)
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			if t.stateErr == nil {
				t.stateErr = fmt.Errorf("singer target: read its states: %w", err)
			}
			return
		}
	}
}

func (t *singerTarget) stateLine(line []byte) {
	var state struct {
		Bookmarks json.RawMessage `json:"bookmarks"`
	}
	if json.Unmarshal(line, &state) != nil || len(state.Bookmarks) == 0 || state.Bookmarks[0] != '{' {
		t.opts.Log.Warn(fmt.Sprintf("singer target printed a line that is not a state, not committed: %.200s", line))
		return
	}
	if t.stateErr == nil {
		t.stateErr = t.opts.Commit(line)
	}
}

// readLog passes the target's stderr lines to the log; a line too long for
// a log line is cut, and reading goes on (a target blocked on a full pipe
// would never end).
func (t *singerTarget) readLog(stderr io.Reader) {
	defer t.drained.Done()
	const maxLine = 64 << 10
	r := bufio.NewReaderSize(stderr, maxLine)
	for {
		line, err := r.ReadSlice('\n')
		cut := err == bufio.ErrBufferFull
		if text := strings.TrimRight(string(line), "\r\n"); text != "" || cut {
			if cut {
				text += " …(line cut)"
			}
			t.opts.Log.Info(text)
		}
		for err == bufio.ErrBufferFull {
			_, err = r.ReadSlice('\n')
		}
		if err != nil {
			return
		}
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
