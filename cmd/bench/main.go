// Command bench measures smsq against a real Redis and the fake GenAuth:
// enqueue throughput, processing throughput beside a raw asynq handler and
// the sender a user would write by hand, throughput per worker process
// with a slow GenAuth, enqueue-to-call latency, Redis commands and round
// trips per task, idle cost, worker memory, rate-limiter accuracy, Redis
// memory per retained task with the capacity it implies, and enqueue batch
// beside raw asynq Enqueue. It prints a table, or JSON with -json, each
// figure that has a target beside it, met or not.
//
// By default it starts a private redis-server on a free port, so that
// INFO commandstats sees nothing but the bench; -redis-url (or REDIS_URL
// when redis-server is not installed) points it at another server, whose
// database must be empty because the bench flushes it between phases.
// Multi-process phases build and run cmd/worker, so run it from inside the
// module: go run ./cmd/bench.
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
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
