package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"
)

// JobProcessEnv marks the process Supervise starts for a job.
const JobProcessEnv = "TAP_POSTGRES_JOB_PROCESS"

// terminalColumnsEnv tells a job process whose stderr Supervise reads that
// it ends on a terminal that wide: it draws its progress bars all the same.
const terminalColumnsEnv = "TAP_POSTGRES_TERMINAL_COLUMNS"

// Supervise runs `run` in a child process (child: the program and its
// arguments, ending with args) so that a job whose process dies — out of
// memory, killed — still ends with a CRITICAL line, on stderr and at the
// end of its extraction log, and is settled in the history as crashed with
// the cause. The Go runtime's dump of a dying process is kept off stderr
// (a runtime error prints every frame whatever GOTRACEBACK says). A stop
// signal (ctx) is passed on to the child, which stops as it would alone.
func Supervise(ctx context.Context, child, args []string, stdout, stderr io.Writer, clock func() time.Time) int {
	if clock == nil {
		clock = time.Now
	}
	cmd := exec.CommandContext(ctx, child[0], child[1:]...)
	cmd.Env = append(os.Environ(), JobProcessEnv+"=1")
	if f, ok := stderr.(*os.File); ok && isTerminal(f) {
		if width, _, err := term.GetSize(int(f.Fd())); err == nil {
			cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d", terminalColumnsEnv, width))
		}
	}
	filter := &crashFilter{w: stderr}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, filter
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "CRITICAL start the job's process: %v\n", err)
		return 1
	}
	waitErr := cmd.Wait()
	state := cmd.ProcessState
	if state == nil {
		fmt.Fprintf(stderr, "CRITICAL the job's process: %v\n", waitErr)
		return 1
	}
	signaled := false
	if ws, ok := state.Sys().(syscall.WaitStatus); ok {
		signaled = ws.Signaled()
	}
	if !signaled && !filter.crashed {
		return state.ExitCode()
	}
	why := crashCause(filter.said.String(), state)
	// A stop signal may have come first: settling must go on all the same.
	settleCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := settleDead(settleCtx, args, state.Pid(), why, clock, stderr); err != nil {
		fmt.Fprintf(stderr, "CRITICAL the job's process died (%s), and its job could not be settled: %s\n", why, oneLine(err))
	}
	return 1
}

// crashFilter passes a job process's stderr on until the Go runtime starts
// saying why the process dies; what it says is kept (the first 64 KiB).
// Bytes go through as they come (progress bars redraw without newlines),
// but the start of a line is held while it may still begin a crash.
type crashFilter struct {
	w       io.Writer
	line    []byte // the current line up to what was passed on or held
	held    int    // bytes at the end of line not passed on yet
	crashed bool
	said    bytes.Buffer
}

// crashStarts begin what the Go runtime prints as a process dies.
var crashStarts = []string{"fatal error: ", "panic: ", "runtime: ", "SIGSEGV: ", "SIGBUS: ", "SIGILL: ", "SIGFPE: "}

func (f *crashFilter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if f.crashed {
			f.said.Write(p[:min(len(p), 64<<10-f.said.Len())])
			return n, nil
		}
		chunk := p
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			chunk = p[:i+1]
		}
		p = p[len(chunk):]
		f.line = append(f.line, chunk...)
		f.held += len(chunk)
		switch {
		case slices.ContainsFunc(crashStarts, func(c string) bool { return bytes.HasPrefix(f.line, []byte(c)) }):
			f.crashed = true
			f.said.Write(f.line)
			continue
		case slices.ContainsFunc(crashStarts, func(c string) bool { return bytes.HasPrefix([]byte(c), f.line) }):
			// Could still be one: hold.
		default:
			if _, err := f.w.Write(f.line[len(f.line)-f.held:]); err != nil {
				return n, err
			}
			f.held = 0
		}
		if f.line[len(f.line)-1] == '\n' {
			f.line, f.held = f.line[:0], 0
		}
	}
	return n, nil
}

// crashCause says why a job process died, from the runtime's last words
// or the signal that killed it.
func crashCause(said string, state *os.ProcessState) string {
	lines := strings.Split(strings.TrimSpace(said), "\n")
	if i := slices.IndexFunc(lines, func(l string) bool {
		return strings.HasPrefix(l, "fatal error: ") || strings.HasPrefix(l, "panic: ")
	}); i >= 0 {
		return strings.TrimSpace(lines[i])
	}
	if lines[0] != "" {
		return strings.TrimSpace(lines[0])
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		cause := "killed by signal " + ws.Signal().String()
		if ws.Signal() == syscall.SIGKILL {
			cause += " (the kernel's out-of-memory killer, or kill -9)"
		}
		return cause
	}
	return state.String()
}

// settleDead settles the job the dead process pid ran, and says so last.
func settleDead(ctx context.Context, args []string, pid int, why string, clock func() time.Time, stderr io.Writer) error {
	cl, _ := parseCommandLine(args, io.Discard)
	if cl == nil {
		return errors.New("its command line cannot be read")
	}
	in, err := LoadIntegration(cl.integrations[0])
	if err != nil {
		return err
	}
	store, err := openIntegrationStore(ctx, cl.store, in)
	if err != nil {
		return err
	}
	defer store.Close()
	unlock, err := store.Lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	jobs, err := store.Jobs()
	if err != nil {
		return err
	}
	for _, j := range jobs {
		if j.Status == statusRunning && j.PID == pid {
			cause := fmt.Sprintf("its process died: %s; its extraction log ends where it stopped", why)
			if err := settleJob(store, j, cause, clock); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "CRITICAL job %d crashed: %s\n", j.ID, cause)
			return nil
		}
	}
	fmt.Fprintf(stderr, "CRITICAL the job's process died before its job was recorded: %s\n", why)
	return nil
}
