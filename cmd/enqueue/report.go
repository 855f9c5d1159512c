package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/batch"
	"github.com/smsq/smsq/internal/config"
	"github.com/smsq/smsq/internal/redisconn"
)

// Exit statuses of a delivery report (enqueue report, enqueue batch
// --wait), documented in the README.
const (
	exitNotDelivered = 4 // every line is final, and some got no code
	exitPending      = 5 // some lines were still pending when the report was written
)

// errNotDelivered and errPending carry a report's verdict to exitCode.
var (
	errNotDelivered = errors.New("some lines got no code")
	errPending      = errors.New("some lines are still pending")
)

// reportSettings holds the settings of enqueue report, and of the report
// enqueue batch --wait writes.
type reportSettings struct {
	RedisURL     string
	Out          string
	Wait         bool
	WaitTimeout  time.Duration
	Window       int
	AllowInvalid bool
	Timeout      time.Duration
	Stats        bool
}

// maxReportWindow bounds --window: a window's lines and states are held
// at once.
const maxReportWindow = 100_000

// defaultWaitTimeout bounds --wait: about a send-by deadline (5 minutes)
// and a retry after it, for tasks queued just before.
const defaultWaitTimeout = 10 * time.Minute

func bindReport(set *config.Set, s *reportSettings) {
	set.Secret(&s.RedisURL, "redis-url", "REDIS_URL", defaultRedisURL, "Redis URL, as for the worker")
	set.String(&s.Out, "out", "", "", "write the report to this file (replaced only once complete) instead of standard output")
	bindWait(set, s)
	set.Int(&s.Window, "window", "", batch.DefaultReportWindow, "lines looked up and held at once")
	set.Bool(&s.AllowInvalid, "allow-invalid", "", false, "lines refused as invalid at enqueue do not make the exit status 4")
	set.Duration(&s.Timeout, "timeout", "SMSQ_ENQUEUE_TIMEOUT", 5*time.Second, "give up when Redis does not answer within this")
	set.Bool(&s.Stats, "stats", "", false, "print the peak memory (resident set) at the end")
}

// bindWait binds the flags enqueue batch shares with enqueue report.
func bindWait(set *config.Set, s *reportSettings) {
	set.Bool(&s.Wait, "wait", "", false, "wait until every line's task is final (or --wait-timeout passes) before reporting it")
	set.Duration(&s.WaitTimeout, "wait-timeout", "", defaultWaitTimeout, "with --wait, report lines still pending after this as pending")
}

func (s *reportSettings) check() error {
	switch {
	case s.Window < 1 || s.Window > maxReportWindow:
		return usageError{fmt.Errorf("--window %d: must be between 1 and %d", s.Window, maxReportWindow)}
	case s.WaitTimeout <= 0:
		return usageError{fmt.Errorf("--wait-timeout %s: must be positive", s.WaitTimeout)}
	case s.Timeout <= 0:
		return usageError{fmt.Errorf("--timeout %s: must be positive", s.Timeout)}
	}
	return nil
}

const reportUsage = `usage: enqueue report [flags] [RESULTS|-]

Writes the outcome of every line of a batch's result file (the output of
enqueue batch), in input order, as one JSON line per line. RESULTS may also
be an earlier report: its final lines are kept, its pending ones looked up
again. Exit status 0: every line got a code; 4: every line is final and some
got none; 5: some are still pending; 1: Redis unreachable; 2: bad flags or
input.

`

// runReport is enqueue report.
func runReport(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	var s reportSettings
	set := config.NewSet("enqueue report", getenv, stderr)
	bindReport(set, &s)
	setUsage(set, reportUsage)
	if err := parseArgs(set, args); err != nil {
		return err
	}
	fs := set.FlagSet()
	if fs.NArg() > 1 {
		return usageError{fmt.Errorf("unexpected argument %q: give one result file", fs.Arg(1))}
	}
	if err := s.check(); err != nil {
		return err
	}
	in, _, closeIn, err := openInput(fs.Arg(0), stdin)
	if err != nil {
		return usageError{err}
	}
	defer closeIn()
	rdb, err := redisconn.Open(s.RedisURL, redisconn.Options{PoolSize: lookupConcurrency + 4, DialTimeout: 2 * time.Second})
	if err != nil {
		return usageError{fmt.Errorf("REDIS_URL: %w", err)}
	}
	defer rdb.Close()
	if err := redisconn.Ping(ctx, rdb, s.RedisURL, s.Timeout); err != nil {
		return err
	}
	return writeReport(ctx, s, rdb, in, stdout, stderr)
}

// writeReport reports the result lines read from in, to s.Out or stdout,
// prints the summary on stderr and returns the report's verdict.
func writeReport(ctx context.Context, s reportSettings, rdb redis.UniversalClient, in io.Reader, stdout, stderr io.Writer) error {
	out, commit, abort, err := createOut(s.Out, stdout)
	if err != nil {
		return usageError{fmt.Errorf("--out: %w", err)}
	}
	defer abort()
	w := bufio.NewWriterSize(out, 64<<10)
	lookup, err := newOutcomeLookup(rdb, s.Timeout)
	if err != nil {
		return err
	}
	cfg := batch.ReportConfig{
		Lookup: lookup,
		Window: s.Window,
		Output: func(l batch.ReportLine) error {
			b, err := json.Marshal(l)
			if err != nil {
				return err
			}
			_, err = w.Write(append(b, '\n'))
			return err
		},
	}
	if s.Wait {
		cfg.Wait = s.WaitTimeout
	}
	sum, err := batch.Report(ctx, batch.NewResultsReader(in), cfg)
	if ferr := w.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("write report: %w", ferr)
	}
	if err == nil {
		err = commit()
	}
	if sum.Lines > 0 || err == nil {
		fmt.Fprintln(stderr, "report:", sum)
	}
	if s.Stats {
		fmt.Fprintln(stderr, "peak memory (VmHWM):", peakRSS())
	}
	switch {
	case errors.Is(err, batch.ErrBadResults):
		return usageError{err}
	case err != nil:
		return err
	case sum.Pending > 0:
		return fmt.Errorf("%w: %d lines (run the report again to update them)", errPending, sum.Pending)
	}
	notDelivered := sum.NotDelivered
	if s.AllowInvalid {
		notDelivered -= sum.RefusedInvalid
	}
	if notDelivered > 0 {
		return fmt.Errorf("%w: %d lines; see their report lines", errNotDelivered, notDelivered)
	}
	return nil
}

// createOut opens where a report goes: stdout, or a temporary file next
// to path that commit renames to path, so that an interrupted report
// leaves an earlier one whole, and a report may be written over the
// report it reads. abort removes the temporary file unless committed.
func createOut(path string, stdout io.Writer) (w io.Writer, commit func() error, abort func(), err error) {
	if path == "" {
		return stdout, func() error { return nil }, func() {}, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, nil, nil, err
	}
	done := false
	commit = func() error {
		if err := f.Close(); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		if err := os.Rename(f.Name(), path); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		done = true
		return nil
	}
	abort = func() {
		if !done {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}
	return f, commit, abort, nil
}

// lookupConcurrency is how many tasks a lookup reads at once.
const lookupConcurrency = 16

// outcomeLookup reads tasks' outcomes with smsq.Client.Outcome, a window's
// tasks lookupConcurrency at a time.
type outcomeLookup struct {
	c       *smsq.Client
	timeout time.Duration
}

// newOutcomeLookup returns a lookup whose client knows every queue Redis
// has seen, not only those served now: a task waiting in a queue no
// worker serves yet is pending, not unknown.
func newOutcomeLookup(rdb redis.UniversalClient, timeout time.Duration) (*outcomeLookup, error) {
	queues, err := asynq.NewInspectorFromRedisClient(rdb).Queues()
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	queues = append(queues, smsq.DefaultServedQueues()...)
	slices.Sort(queues)
	queues = slices.Compact(queues)
	return &outcomeLookup{c: smsq.NewClientFromRedis(rdb, smsq.WithServedQueues(queues...)), timeout: timeout}, nil
}

// Lookup is batch.Lookup.
func (l *outcomeLookup) Lookup(ctx context.Context, refs []batch.TaskRef, out []batch.TaskState) error {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
		next  = make(chan int)
	)
	for range min(lookupConcurrency, len(refs)) {
		wg.Go(func() {
			for i := range next {
				st, err := l.one(ctx, refs[i].ID)
				if err != nil {
					errMu.Lock()
					if first == nil {
						first = err
					}
					errMu.Unlock()
					continue
				}
				out[i] = st
			}
		})
	}
	for i := range refs {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

func (l *outcomeLookup) one(ctx context.Context, id string) (batch.TaskState, error) {
	o, err := l.c.Outcome(ctx, id)
	switch {
	case errors.Is(err, smsq.ErrNoSuchTask):
		return batch.TaskState{}, nil
	case err != nil:
		return batch.TaskState{}, err
	case !o.Final:
		return batch.TaskState{Found: true, Outcome: o.Last}, nil
	}
	e := o.Event
	return batch.TaskState{
		Found: true, Final: true, Outcome: o.State, Reason: e.Reason,
		StatusCode: e.StatusCode, APICode: e.APICode, RequestID: e.RequestID,
		Attempts: e.Attempts, FinishedAt: e.FinishedAt,
	}, nil
}
