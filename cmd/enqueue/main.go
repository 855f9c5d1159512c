// Command enqueue queues SMS verification codes for smsq workers, and
// explains what became of them.
//
//	enqueue --channel CHANNEL_LOGIN --phone +8613800138000
//
// prints the task ID. Invalid input exits with status 2 and a message
// naming what is wrong; nothing is queued.
//
//	enqueue batch [flags] [FILE|-]
//
// queues every line of a CSV or JSON Lines file and writes one JSON result
// line per input line; it exits 1 when a line was invalid or failed.
//
//	enqueue why --phone +8613800138000 [--channel CHANNEL_LOGIN]
//	enqueue why --task ID
//
// shows the phone's reservations and recent tasks with their outcomes, or
// one task's history and asynq state. Phone numbers are always masked.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"
)

func main() {
	// go-redis logs every failed dial; the command's own error says it once.
	redis.SetLogger(quietLogger{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// quietLogger drops go-redis's internal log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// usageError marks bad input: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitCode prints err and maps it to the exit status: 2 for bad input,
// 1 for any other failure.
func exitCode(err error, stderr io.Writer) int {
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
