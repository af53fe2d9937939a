package destination

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"unicode/utf8"
)

// singerTarget pipes the messages into a Singer target command. The target
// decides when its data is durable: the states it prints on stdout (one
// JSON value per line, as Singer targets do) are what gets committed. Its
// stderr goes to the extraction log as the `target` source. A record
// counts as loaded once the target prints a state sent after it.
type singerTarget struct {
	opts Options
	// name is the program as the integration gives it.
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	in    *bufio.Writer
	lines lineSplitter
	// lastStream is the stream of the last record.
	lastStream string
	// received counts every record sent to the target, sinceState those
	// sent since the last STATE (nil before the first such record).
	received   map[string]int64
	sinceState map[string]int64
	// mu guards the fields up to warnedUnmatched, shared by Write and
	// readStates.
	mu sync.Mutex
	// sentStates are the states sent that no state printed by the target
	// has covered yet, oldest first; lastCovered is the last that one has.
	sentStates      []sentState
	lastCovered     stateKey
	loaded          map[string]int64
	warnedUnmatched bool
	// stateErr is the first error reading or committing the target's
	// states; failure is what its stderr says about a failure; drained
	// tells Close that both of its outputs are read.
	stateErr error
	failure  failureLines
	drained  sync.WaitGroup
}

// sentState is a state sent to the target, with the records sent between
// the state before it and it.
type sentState struct {
	key  stateKey
	rows map[string]int64
}

// ErrInputRefused is in the error of a write that the target no longer
// reads: it exited, and Close says why.
var ErrInputRefused = errors.New("singer target stopped reading its input")

// OpenSingerTarget starts command (program and arguments) and loads
// through it. Its environment is TargetEnv's: env, and of the runner's
// own only what is harmless.
func OpenSingerTarget(command []string, env map[string]string, opts Options) (Destination, error) {
	if len(command) == 0 {
		return nil, errors.New("singer target: no command")
	}
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Env = TargetEnv(os.Environ(), env)
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
	t := &singerTarget{opts: opts, name: command[0], cmd: cmd, stdin: stdin, in: bufio.NewWriterSize(stdin, 1<<20),
		received: map[string]int64{}, loaded: map[string]int64{}}
	t.drained.Add(2)
	go t.readStates(stdout)
	go t.readLog(stderr)
	return t, nil
}

// Rows counts the records that a state printed by the target covers.
func (t *singerTarget) Rows() map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.loaded
}

func (t *singerTarget) Received() map[string]int64 { return t.received }

func (t *singerTarget) Write(p []byte) (int, error) {
	_ = t.lines.each(p, t.count)
	if _, err := t.in.Write(p); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInputRefused, err)
	}
	return len(p), nil
}

// count counts a record line and notes which records a STATE covers;
// what the target makes of a line is its own business, so count never
// fails.
func (t *singerTarget) count(line []byte) error {
	m, err := parseMessage(line, t.lastStream)
	if err != nil {
		return nil
	}
	switch m.Type {
	case "RECORD":
		t.lastStream = m.Stream
		t.received[m.Stream]++
		if t.sinceState == nil {
			t.sinceState = map[string]int64{}
		}
		t.sinceState[m.Stream]++
		if t.opts.OnRecord != nil {
			t.opts.OnRecord(m.Stream)
		}
	case "STATE":
		// A state that cannot be keyed cannot be matched: its records
		// go to the next state, which covers them too.
		key, err := keyOfState(m.Value)
		if err != nil {
			return nil
		}
		t.mu.Lock()
		t.sentStates = append(t.sentStates, sentState{key: key, rows: t.sinceState})
		t.mu.Unlock()
		t.sinceState = nil
	}
	return nil
}

// stateKey identifies a state's value whatever its spelling: targets print
// the states they were sent re-serialised (key order, spacing, escapes).
// A hash, not the text: a target that prints nothing until the end would
// otherwise have the runner hold every state of the job.
type stateKey [sha256.Size]byte

// keyOfState hashes the value's canonical form: objects with sorted keys,
// numbers as written (so that large integers such as LSNs stay exact).
func keyOfState(value []byte) (stateKey, error) {
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return stateKey{}, fmt.Errorf("key a state: %w", err)
	}
	canonical, err := json.Marshal(v)
	if err != nil {
		return stateKey{}, fmt.Errorf("key a state: %w", err)
	}
	return sha256.Sum256(canonical), nil
}

// covered counts as loaded the records sent before the state the target
// printed. Of equal states sent, the first is taken: a later one could
// count records that the target has not loaded.
func (t *singerTarget) covered(printed []byte) {
	key, err := keyOfState(printed)
	if err != nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	i := slices.IndexFunc(t.sentStates, func(s sentState) bool { return s.key == key })
	if i < 0 {
		// Once: a target that rewrites states would otherwise warn at each.
		if key != t.lastCovered && !t.warnedUnmatched {
			t.warnedUnmatched = true
			t.opts.Log.Warn("singer target printed a state that is none of those sent to it since the last it printed: the records it covers are not counted as loaded")
		}
		return
	}
	for _, s := range t.sentStates[:i+1] {
		for stream, n := range s.rows {
			t.loaded[stream] += n
		}
	}
	clear(t.sentStates[:i+1])
	t.sentStates = t.sentStates[i+1:]
	t.lastCovered = key
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
	t.covered(line)
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
			t.failure.see(text)
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
// state and exit. A target that failed says why on its stderr: the line
// that says it best goes into the error.
func (t *singerTarget) Close() error {
	flushErr := t.in.Flush()
	t.stdin.Close()
	t.drained.Wait()
	if err := t.cmd.Wait(); err != nil {
		// Its input broke because it exited: the exit is the cause.
		exitErr := fmt.Errorf("singer target %s: %w", t.name, err)
		if why := t.failure.best(); why != "" {
			exitErr = fmt.Errorf("%w: %s", exitErr, why)
		}
		return errors.Join(exitErr, t.stateErr)
	}
	if flushErr != nil {
		return errors.Join(fmt.Errorf("%w: %w", ErrInputRefused, flushErr), t.stateErr)
	}
	return t.stateErr
}

// TargetEnv is a Singer target's environment: of the runner's (parent),
// only what locates programs, users, locales, time zones, temporary
// files, Python and CA certificates and proxies; then env. The runner's
// secrets (PGPASSWORD, the store's location, DSNs, SSH passwords) stay
// with it: a target is any program, and /proc/PID/environ is readable by
// its user for as long as it runs.
func TargetEnv(parent []string, env map[string]string) []string {
	var out []string
	for _, kv := range parent {
		name, _, _ := strings.Cut(kv, "=")
		if _, own := env[name]; !own && passedToTargets(name) {
			out = append(out, kv)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(env)) {
		out = append(out, name+"="+env[name])
	}
	return out
}

func passedToTargets(name string) bool {
	switch name {
	case "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TZ", "TMPDIR", "LANG", "LANGUAGE",
		"PYTHONPATH", "PYTHONHOME", "PYTHONIOENCODING", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "VIRTUAL_ENV",
		"SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
		"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy":
		return true
	}
	return strings.HasPrefix(name, "LC_")
}

// failureLines keeps, of a target's stderr, the lines that best say why it
// failed: the last that names an error level (the target's own words, as
// pipelinewise's `CRITICAL Primary key is set to mandatory…`), else the
// last that names an exception (a Python traceback ends with one, but
// more output may follow), else the last line.
type failureLines struct{ level, exception, last string }

var (
	errorLevelLine = regexp.MustCompile(`\b(CRITICAL|FATAL|ERROR)\b|(?i:\blevel=(critical|fatal|error)\b|^(error|fatal|panic):)`)
	exceptionLine  = regexp.MustCompile(`^([A-Za-z_]\w*\.)*[A-Za-z_]\w*(Error|Exception|Exit|Interrupt)\b`)
)

// maxFailureLine bounds the line put into an error, which the job history
// and its reports show on one line.
const maxFailureLine = 300

func (f *failureLines) see(line string) {
	line = strings.TrimSpace(line)
	if line == "" {
		return
	}
	if len(line) > maxFailureLine {
		cut := maxFailureLine
		for cut > 0 && !utf8.RuneStart(line[cut]) {
			cut--
		}
		line = line[:cut] + "…"
	}
	f.last = line
	switch {
	case errorLevelLine.MatchString(line):
		f.level = line
	case exceptionLine.MatchString(line):
		f.exception = line
	}
}

func (f *failureLines) best() string { return cmp.Or(f.level, f.exception, f.last) }
