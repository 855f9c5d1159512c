// Command enqueue queues SMS verification codes for smsq workers, and
// explains what became of them.
//
//	enqueue --channel CHANNEL_LOGIN --phone +8613800138000
//
// prints the task ID. Invalid input exits with status 2 and a message
// naming what is wrong; nothing is queued. An idempotency key already in
// use exits 3, an unreachable Redis 1. With --wait it waits for the final
// outcome and exits 0 when a code is live, 4 when none was sent, 5 while
// still pending.
//
//	enqueue outcomes [--follow] [--group G]
//
// prints the outcome stream as JSON Lines.
//
//	enqueue batch [flags] [FILE|-]
//
// queues every line of a CSV or JSON Lines file and writes one JSON result
// line per input line; it exits 1 when a line was invalid or failed.
//
//	enqueue report [--wait] RESULTS
//
// writes what became of every line of a batch's result file, in input
// order; it exits 0 when every line got a code, 4 when some got none and
// 5 while some are pending.
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
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/tracing"
)

func main() {
	// go-redis logs every failed dial; the command's own error says it once.
	redis.SetLogger(quietLogger{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Traces, when OpenTelemetry's variables ask for them: every enqueue
	// is a producer span of the global provider (see smsq.Client.Enqueue).
	tp, err := tracing.Setup(ctx, tracing.Config{Getenv: os.Getenv, ServiceName: "smsq-enqueue"})
	if err == nil {
		if tp.Enabled() {
			otel.SetTracerProvider(tp.TracerProvider())
		}
		err = run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
		flushSpans(tp)
	} else {
		err = usageError{err}
	}
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// flushSpans exports the spans still buffered before the command exits.
func flushSpans(tp *tracing.Provider) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tp.Shutdown(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "enqueue: cannot export the last spans:", err)
	}
}

// quietLogger drops go-redis's internal log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// usageError marks bad input: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// Exit statuses, documented in the README: a script retrying an enqueue
// must tell "try again" (exitFailure) from "already queued"
// (exitDuplicate) and from "never will be" (exitUsage).
const (
	exitOK        = 0
	exitFailure   = 1 // Redis unreachable, or another failure: nothing known to be queued; safe to retry with the same key
	exitUsage     = 2 // bad flags or input: nothing queued; retrying the same input fails again
	exitDuplicate = 3 // the idempotency key is already in use: nothing new queued
)

// exitCode prints err and maps it to the exit status.
func exitCode(err error, stderr io.Writer) int {
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "enqueue:", err)
		return exitUsage
	case errors.Is(err, smsq.ErrDuplicate):
		fmt.Fprintln(stderr, "enqueue:", err)
		return exitDuplicate
	case errors.Is(err, errNotDelivered):
		fmt.Fprintln(stderr, "enqueue:", err)
		return exitNotDelivered
	case errors.Is(err, errPending):
		fmt.Fprintln(stderr, "enqueue:", err)
		return exitPending
	default:
		fmt.Fprintln(stderr, "enqueue:", err)
		return exitFailure
	}
}
