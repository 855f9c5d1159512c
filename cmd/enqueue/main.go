// Command enqueue queues SMS verification codes for smsq workers.
//
//	enqueue --channel CHANNEL_LOGIN --phone +8613800138000
//
// prints the task ID. Invalid input exits with status 2 and a message
// naming what is wrong; nothing is queued.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// usageError marks bad input: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func exitCode(err error, stderr *os.File) int {
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "enqueue:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "enqueue:", err)
		return 1
	}
}
