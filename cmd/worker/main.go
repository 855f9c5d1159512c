// Command worker processes genauth:send_sms tasks: it reserves each
// (phone, channel) pair, calls GenAuth and records every outcome.
//
// With no REDIS_URL and nothing listening on 127.0.0.1:6379 it starts an
// embedded Redis; with no GENAUTH_APP_HOST it sends to a built-in fake
// GenAuth (sandbox). So `go run ./cmd/worker` works on a fresh machine.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	stdlog "log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/smsq/smsq/internal/logging"
)

func main() {
	// go-redis reports every failed dial on its own; during a Redis outage
	// that is one line per connection attempt. Route it through the same
	// once-per-interval limiter as asynq's messages.
	base := zerolog.New(os.Stderr).With().Timestamp().Logger()
	redis.SetLogger(logging.Redis{A: &logging.Asynq{Log: base, Every: 30 * time.Second, Component: "go-redis"}})
	// Libraries that complain through the standard log package (asynq's
	// queue-metrics collector, once per failed scrape) get the same
	// treatment instead of plain-text lines in the JSON stream.
	stdlog.SetFlags(0)
	stdlog.SetOutput(logging.Std{A: &logging.Asynq{Log: base, Every: 30 * time.Second, Component: "stdlog"}})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}
