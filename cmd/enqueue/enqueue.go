package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/batch"
	"github.com/smsq/smsq/internal/config"
	"github.com/smsq/smsq/internal/phone"
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
	Wait           bool
	WaitTimeout    time.Duration
	JSON           bool
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
	set.Bool(&s.Wait, "wait", "", false, "wait for the final outcome and exit with its status (0 a code is live, 4 none sent, 5 still pending)")
	set.Duration(&s.WaitTimeout, "wait-timeout", "", 30*time.Second, "with --wait: how long to wait for the final outcome")
	set.Bool(&s.JSON, "json", "", false, "with --wait: print the outcome as one JSON object instead of the task ID")
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
  enqueue outcomes [--follow] [--group G]
                                         print the outcome stream as JSON Lines
Run "enqueue batch -h", "enqueue report -h", "enqueue why -h", "enqueue guard -h",
"enqueue verified -h" or "enqueue outcomes -h" for their flags.

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
		case "outcomes":
			return runOutcomes(ctx, args[1:], getenv, stdout, stderr)
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
	if s.Wait && s.WaitTimeout <= 0 {
		return usageError{fmt.Errorf("--wait-timeout %s: must be positive", s.WaitTimeout)}
	}
	if s.JSON && !s.Wait {
		return usageError{errors.New("--json needs --wait (without it the task ID is the whole answer)")}
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
	sctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	// A queue no live worker serves would hold the task forever.
	served, err := liveServed(rdb)
	if err != nil {
		return err
	}
	if s.AnyQueue {
		opts = append(opts, smsq.AllowUnservedQueue())
	}
	client := smsq.NewClientFromRedis(rdb, smsq.WithServedQueues(served.names...))
	defer client.Close()
	rc, err := client.Send(sctx, req, opts...)
	if err != nil {
		return served.unservedError(err)
	}
	if !s.JSON {
		fmt.Fprintln(stdout, rc.TaskID)
	}
	fmt.Fprintf(stderr, "queued %s for %s in queue %s, send by %s\n", rc.Channel, rc.Phone, rc.Queue, rc.SendBy.Format(time.RFC3339))
	if !s.Wait {
		return nil
	}
	wctx, wcancel := context.WithTimeout(ctx, s.WaitTimeout)
	defer wcancel()
	o, err := client.Wait(wctx, rc.TaskID)
	return waitVerdict(o, err, ctx.Err() != nil, s.JSON, stdout, stderr)
}

// waitVerdict prints what --wait learnt and maps it to the exit status:
// nil (0) when a code is live for the pair (sent, or deduplicated behind
// one sent earlier), errNotDelivered (4) for the other final outcomes,
// errPending (5) when the wait timed out first, another error (1) when it
// could not learn.
func waitVerdict(o smsq.Outcome, err error, interrupted, asJSON bool, stdout, stderr io.Writer) error {
	pending := err != nil && errors.Is(err, context.DeadlineExceeded) && !interrupted
	if err != nil && !pending {
		return fmt.Errorf("wait for the outcome: %w", err)
	}
	if asJSON {
		b, jerr := json.Marshal(o)
		if jerr != nil {
			return jerr
		}
		fmt.Fprintln(stdout, string(b))
	}
	if pending {
		last := ""
		if o.Last != "" {
			last = " (latest attempt: " + o.Last + ")"
		}
		return verdict{errPending, fmt.Sprintf("task %s has no final outcome yet%s; see enqueue why --task %s", phone.MaskID(o.TaskID), last, phone.MaskID(o.TaskID))}
	}
	line := o.State
	if o.Event.Reason != "" {
		line += ": " + o.Event.Reason
	}
	if o.Event.RequestID != "" {
		line += " (GenAuth requestId " + o.Event.RequestID + ")"
	}
	if o.RetryIn > 0 {
		line += fmt.Sprintf("; a new code for this phone and channel in %s", o.RetryIn.Round(time.Second))
	}
	fmt.Fprintln(stderr, line)
	if tasks.Delivered(o.State) {
		return nil
	}
	return verdict{errNotDelivered, "no code sent: " + o.State}
}

// verdict is an outcome that sets the exit status (kind), told in its
// own words.
type verdict struct {
	kind error
	msg  string
}

func (v verdict) Error() string { return v.msg }
func (v verdict) Unwrap() error { return v.kind }

// setUsage prints head before the flag defaults in -h output.
func setUsage(set *config.Set, head string) {
	fs := set.FlagSet()
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), head)
		fs.PrintDefaults()
	}
}
