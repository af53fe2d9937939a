// Command tap-postgres is a Singer tap for PostgreSQL.
package main

import (
	"context"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/tap-postgres/tap-postgres/internal/cli"
	"github.com/tap-postgres/tap-postgres/internal/demo"
	"github.com/tap-postgres/tap-postgres/internal/runner"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var code int
	switch {
	case len(os.Args) > 1 && os.Args[1] == "demo":
		code = demo.Run(ctx, demo.Program(os.Args[0]), os.Args[2:], os.Stdout, os.Stderr)
	case len(os.Args) > 1 && os.Args[1] == "run" && os.Getenv(runner.JobProcessEnv) == "":
		// The job runs in a child process, so that its death is reported.
		code = runner.Supervise(ctx, append([]string{executable()}, os.Args[1:]...), os.Args[1:], os.Stdout, os.Stderr, nil)
	case len(os.Args) > 1 && slices.Contains(runner.Commands(), os.Args[1]):
		code = runner.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, nil)
	default:
		code = cli.Run(ctx, os.Args[1:], cli.Env{Stdout: os.Stdout, Stderr: os.Stderr})
	}
	stop()
	os.Exit(code)
}

// executable is this program, for a child process: its path when the
// system says it, else as it was started.
func executable() string {
	if exe, err := os.Executable(); err == nil {
		return exe
	}
	return os.Args[0]
}
