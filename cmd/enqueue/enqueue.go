package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/batch"
	"github.com/smsq/smsq/internal/config"
	"github.com/smsq/smsq/internal/redisconn"
	"github.com/smsq/smsq/internal/tasks"
)

const defaultRedisURL = "redis://127.0.0.1:6379/0"

// single holds the settings of a one-off enqueue.
type single struct {
	RedisURL       string
	Channel        string
	Phone          string
	CountryCode    string
	ClientIP       string
	Lang           string
	IdempotencyKey string
	Queue          string
	Delay          time.Duration
	SendWithin     time.Duration
	Defer          bool
	Timeout        time.Duration
	AnyQueue       bool
}

func bindSingle(set *config.Set, s *single) {
	set.Secret(&s.RedisURL, "redis-url", "REDIS_URL", defaultRedisURL, "Redis URL, as for the worker")
	set.String(&s.Channel, "channel", "", "", "GenAuth channel, e.g. CHANNEL_LOGIN")
	set.String(&s.Phone, "phone", "", "", "phone number: E.164 (+8613800138000) or national with --country-code")
	set.String(&s.CountryCode, "country-code", "", "", "calling code for a national number (default +86)")
	set.String(&s.ClientIP, "client-ip", "", "", "end user's IP, forwarded to GenAuth as x-real-ip")
	set.String(&s.Lang, "lang", "", "", "SMS language: zh-CN, en-US, ja-JP or zh-TW")
	set.String(&s.IdempotencyKey, "idempotency-key", "", "", "task ID; enqueueing the same key twice is refused")
	set.String(&s.Queue, "queue", "", "", "queue (default: critical for login and MFA verification, default otherwise)")
	set.Duration(&s.Delay, "delay", "", 0, "send no earlier than this from now")
	set.Duration(&s.SendWithin, "send-within", "", 0, "deadline after which the code is not sent (default 5m after it is due)")
	set.Bool(&s.Defer, "defer", "", false, "when an earlier code's window is open, wait for it and send, instead of deduplicating")
	set.Bool(&s.AnyQueue, "allow-unserved-queue", "", false, "queue even when no live worker serves the queue (for a worker yet to start)")
	set.Duration(&s.Timeout, "timeout", "SMSQ_ENQUEUE_TIMEOUT", 5*time.Second, "give up when Redis does not answer within this")
}

// usage lists the three forms of the command.
const usage = `usage:
  enqueue [flags]                        queue one code (--channel, --phone)
  enqueue batch [flags] [FILE|-]         queue every line of a CSV or JSON Lines file
  enqueue report [flags] [RESULTS|-]     what became of every line of a batch
  enqueue why [flags] --phone P | --task ID
                                         show why a phone got no code, or what became of a task
  enqueue guard [list|lift|exempt|unexempt] [flags]
                                         the abuse guard's blocks and counters; lift a block, exempt a number
  enqueue verified --phone P --channel CH
                                         report a code as used (the guard's conversion breaker)
Run "enqueue batch -h", "enqueue report -h", "enqueue why -h", "enqueue guard -h" or
"enqueue verified -h" for their flags.

Flags of the one-code form:
`

// run is the whole command; tests call it. The first argument picks a
// subcommand; without one, the flags queue a single code.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "batch":
			return runBatch(ctx, args[1:], getenv, stdin, stdout, stderr)
		case "why":
			return runWhy(ctx, args[1:], getenv, stdout, stderr)
		case "report":
			return runReport(ctx, args[1:], getenv, stdin, stdout, stderr)
		case "guard":
			return runGuard(ctx, args[1:], getenv, stdout, stderr)
		case "verified":
			return runVerified(ctx, args[1:], getenv, stdout, stderr)
		}
	}
	return runSingle(ctx, args, getenv, stdout, stderr)
}

// parseArgs parses a subcommand's flags; bad flags are usage errors
// (exit status 2), -h is not an error at all.
func parseArgs(set *config.Set, args []string) error {
	if err := set.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	return nil
}

// runSingle queues one code.
func runSingle(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var s single
	set := config.NewSet("enqueue", getenv, stderr)
	bindSingle(set, &s)
	setUsage(set, usage)
	if err := parseArgs(set, args); err != nil {
		return err
	}
	if set.FlagSet().NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", set.FlagSet().Arg(0))}
	}
	if s.Channel == "" || s.Phone == "" {
		return usageError{errors.New("--channel and --phone are required")}
	}
	if s.Timeout <= 0 {
		return usageError{fmt.Errorf("--timeout %s: must be positive", s.Timeout)}
	}
	// One line of a batch, given as flags: the same request and options.
	rec := batch.Record{
		Channel: s.Channel, Phone: s.Phone, CountryCode: s.CountryCode, ClientIP: s.ClientIP, Lang: s.Lang,
		IdempotencyKey: s.IdempotencyKey, Queue: s.Queue, Delay: s.Delay, SendWithin: s.SendWithin,
	}
	if s.Defer {
		rec.OnHeld = tasks.OnHeldDefer
	}
	req, opts := rec.Request(), rec.Options()
	// Validate before connecting: bad input never waits on Redis.
	if _, _, err := smsq.Prepare(req, time.Now(), opts...); err != nil {
		return usageError{err}
	}
	rdb, err := redisconn.Open(s.RedisURL, redisconn.Options{DialTimeout: 2 * time.Second})
	if err != nil {
		return usageError{fmt.Errorf("REDIS_URL: %w", err)}
	}
	defer rdb.Close()
	// A Redis that is down is named (URL without its password) before any
	// command, as the other subcommands and the worker do.
	if err := redisconn.Ping(ctx, rdb, s.RedisURL, s.Timeout); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	// A queue no live worker serves would hold the task forever.
	served, err := liveServed(rdb)
	if err != nil {
		return err
	}
	if s.AnyQueue {
		opts = append(opts, smsq.AllowUnservedQueue())
	}
	rc, err := smsq.NewClientFromRedis(rdb, smsq.WithServedQueues(served.names...)).Send(ctx, req, opts...)
	if err != nil {
		return served.unservedError(err)
	}
	fmt.Fprintln(stdout, rc.TaskID)
	fmt.Fprintf(stderr, "queued %s for %s in queue %s, send by %s\n", rc.Channel, rc.Phone, rc.Queue, rc.SendBy.Format(time.RFC3339))
	return nil
}

// setUsage prints head before the flag defaults in -h output.
func setUsage(set *config.Set, head string) {
	fs := set.FlagSet()
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), head)
		fs.PrintDefaults()
	}
}
