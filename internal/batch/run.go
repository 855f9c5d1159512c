package batch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/phone"
	"github.com/smsq/smsq/internal/tasks"
)

// Status is what became of one line.
type Status string

// Line statuses.
const (
	// StatusEnqueued: the task is queued.
	StatusEnqueued Status = "enqueued"
	// StatusDuplicate: a task with the line's idempotency key is already
	// queued or retained; nothing new was queued. Not a failure: it is what
	// re-running a file reports.
	StatusDuplicate Status = "duplicate"
	// StatusValid: the line is valid (dry run; nothing was queued).
	StatusValid Status = "valid"
	// StatusInvalid: the line does not parse or holds an invalid field;
	// Redis was not touched.
	StatusInvalid Status = "invalid"
	// StatusError: the line is valid but enqueueing failed (Redis error or
	// timeout); it may be retried.
	StatusError Status = "error"
)

// Result is the report of one line, written as one JSON line.
type Result struct {
	// Line is the line number in the input (see Record.Line).
	Line   int    `json:"line"`
	Status Status `json:"status"`
	// TaskID is the queued task's ID, or the idempotency key of a duplicate
	// or of a valid line in a dry run.
	TaskID string `json:"taskId,omitempty"`
	// Queue is the task's queue.
	Queue string `json:"queue,omitempty"`
	// Reason says what is wrong with an invalid line or why enqueueing
	// failed. Phone numbers in it are masked.
	Reason string `json:"reason,omitempty"`
}

// Enqueuer queues one task smsq.Prepare returned; *smsq.Client is one. A
// reused idempotency key is an error wrapping smsq.ErrDuplicate.
type Enqueuer interface {
	Enqueue(ctx context.Context, t *asynq.Task, v tasks.Validated) (*asynq.TaskInfo, error)
}

var _ Enqueuer = (*smsq.Client)(nil)

// Defaults.
const (
	DefaultConcurrency = 16
	DefaultTimeout     = 5 * time.Second
	DefaultMaxErrors   = 100
)

// ErrTooManyErrors is returned by Run when Config.MaxErrors lines failed to
// enqueue: Redis is likely down, and going on would only report more.
var ErrTooManyErrors = errors.New("too many enqueue errors")

// Config configures Run.
type Config struct {
	// Enqueuer queues valid lines; nil makes a dry run, which validates
	// every line and queues nothing.
	Enqueuer Enqueuer
	// Concurrency is how many lines are enqueued at once; default
	// DefaultConcurrency.
	Concurrency int
	// Window bounds how many lines may be read ahead of the oldest line not
	// yet reported, and so the memory used; default 64 x Concurrency. It
	// must be at least Concurrency.
	Window int
	// Timeout bounds each enqueue; default DefaultTimeout.
	Timeout time.Duration
	// MaxErrors stops reading after this many StatusError lines; default
	// DefaultMaxErrors, negative for no limit.
	MaxErrors int
	// Output receives every line's Result, in input order, from one
	// goroutine. An error from it stops the run and is returned. Required.
	Output func(Result) error
	// Progress, when set, is called after each line's result is written,
	// from the goroutine calling Output.
	Progress func(Progress)
	// CountUnread makes a run that stops early (MaxErrors, an Output
	// failure) read the rest of the input, queueing nothing, to count the
	// lines it did not process (Summary.Unprocessed). For files: on a pipe
	// the rest may never come.
	CountUnread bool
	// Served are the queues workers serve: a line for another queue is
	// invalid, since its task would wait forever. Default
	// smsq.DefaultServedQueues.
	Served []string
	// AnyQueue accepts lines for queues outside Served, for workers that
	// will serve them but do not yet.
	AnyQueue bool
}

func (c Config) withDefaults() Config {
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Window == 0 {
		c.Window = 64 * c.Concurrency
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxErrors == 0 {
		c.MaxErrors = DefaultMaxErrors
	}
	if c.Served == nil {
		c.Served = smsq.DefaultServedQueues()
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Output == nil:
		return errors.New("batch: Config.Output is required")
	case c.Concurrency < 1:
		return fmt.Errorf("batch: Config.Concurrency %d: must be at least 1", c.Concurrency)
	case c.Window < c.Concurrency:
		return fmt.Errorf("batch: Config.Window %d: must be at least Concurrency (%d)", c.Window, c.Concurrency)
	case c.Timeout < 0:
		return fmt.Errorf("batch: Config.Timeout %s: must be positive", c.Timeout)
	}
	return nil
}

// Progress is how far a run is.
type Progress struct {
	// Done counts the lines reported; Read the lines read from the input
	// (at most Window ahead of Done).
	Done, Read int
	// ReadBytes is the input those Read lines took, when the Reader tells
	// (an Offset method, as CSVReader and JSONLReader have); 0 otherwise.
	ReadBytes int64
}

// Summary counts the lines of a run by status. Lines counts the lines
// that got a result, and only those.
type Summary struct {
	Lines, Enqueued, Duplicate, Valid, Invalid, Errors int
	// Unprocessed counts the lines of input a run that stopped early did
	// not process and reported nothing for: read but not started when it
	// stopped, and, with Config.CountUnread, the rest of the input.
	Unprocessed int
	// Unread is set when a run stopped before the end of the input and
	// did not count the rest (Config.CountUnread unset).
	Unread bool
	// LastLine is the input line number of the last line reported.
	LastLine int
	Elapsed  time.Duration
}

// Rate returns lines per second.
func (s Summary) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Lines) / s.Elapsed.Seconds()
}

// String is the one-line summary printed at the end of a run.
func (s Summary) String() string {
	var parts []string
	if s.Valid > 0 || (s.Enqueued == 0 && s.Duplicate == 0 && s.Errors == 0) {
		parts = append(parts, fmt.Sprintf("valid %d", s.Valid))
	}
	if s.Enqueued > 0 || s.Duplicate > 0 || s.Errors > 0 || s.Valid == 0 {
		parts = append(parts, fmt.Sprintf("enqueued %d, duplicate %d", s.Enqueued, s.Duplicate))
	}
	parts = append(parts, fmt.Sprintf("invalid %d, error %d", s.Invalid, s.Errors))
	switch {
	case s.Unprocessed > 0 && s.Unread:
		parts = append(parts, fmt.Sprintf("not processed: %d lines and the input after line %d", s.Unprocessed, s.LastLine))
	case s.Unprocessed > 0:
		parts = append(parts, fmt.Sprintf("not processed %d", s.Unprocessed))
	case s.Unread:
		parts = append(parts, fmt.Sprintf("not processed: the input after line %d", s.LastLine))
	}
	return fmt.Sprintf("%s, in %.1fs (%.0f lines/s)", strings.Join(parts, ", "), s.Elapsed.Seconds(), s.Rate())
}

func (s *Summary) add(r Result) {
	s.Lines++
	s.LastLine = r.Line
	switch r.Status {
	case StatusEnqueued:
		s.Enqueued++
	case StatusDuplicate:
		s.Duplicate++
	case StatusValid:
		s.Valid++
	case StatusInvalid:
		s.Invalid++
	case StatusError:
		s.Errors++
	}
}

type job struct {
	seq int
	rec Record
}

type done struct {
	seq int
	res Result
	// skipped: the run stopped before the line was started.
	skipped bool
}

// Run reads r to the end, enqueues every valid line and reports each line
// to cfg.Output in input order. Lines are processed by cfg.Concurrency
// goroutines; at most cfg.Window lines are held at once, so memory does not
// grow with the input.
//
// Run stops early when ctx ends, when the reader fails, when Output fails
// or after cfg.MaxErrors failed enqueues; lines already being enqueued are
// finished and reported (each within cfg.Timeout), lines read but not
// started are not enqueued, later ones are not read (see
// Config.CountUnread), and the error says why. The Summary counts the lines
// reported and those not processed.
func Run(ctx context.Context, r Reader, cfg Config) (Summary, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return Summary{}, err
	}
	start := time.Now()
	runCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)

	var (
		mu         sync.Mutex
		stopped    bool
		dispatched int
		dropped    int   // read but not dispatched; set before readerDone is closed
		unread     bool  // stopped before the end of the input, rest not counted
		readErr    error // set before jobs is closed
		readerDone = make(chan struct{})
		read       atomic.Int64 // records read, for Progress
		readBytes  atomic.Int64
	)
	offset, _ := r.(interface{ Offset() int64 })
	slots := make(chan struct{}, cfg.Window)
	jobs := make(chan job, cfg.Concurrency)
	results := make(chan done, cfg.Concurrency)

	// The reader runs apart from the collector so that a Read blocked on a
	// pipe cannot keep Run from returning once it is told to stop.
	go func() {
		defer close(readerDone)
		// rest counts the records after a stop, with CountUnread.
		rest := func(n int) {
			if !cfg.CountUnread {
				unread = true
				dropped = n
				return
			}
			for ctx.Err() == nil {
				if _, err := r.Read(); err != nil {
					break
				}
				n++
			}
			unread = ctx.Err() != nil
			dropped = n
		}
		for seq := 0; ; seq++ {
			select {
			case slots <- struct{}{}:
			case <-runCtx.Done():
				readErr = context.Cause(runCtx)
				close(jobs)
				rest(0)
				return
			}
			rec, err := r.Read()
			if errors.Is(err, io.EOF) {
				close(jobs)
				return
			}
			if offset != nil {
				readBytes.Store(offset.Offset())
			}
			read.Add(1)
			if err != nil {
				readErr = err
				stop(err)
				close(jobs)
				return
			}
			mu.Lock()
			if stopped {
				mu.Unlock()
				close(jobs)
				rest(1)
				return
			}
			dispatched++
			mu.Unlock()
			jobs <- job{seq: seq, rec: rec}
		}
	}()

	// Workers decide in input order whether a line starts, so that the
	// lines that got a result once the run stops are a prefix of the input:
	// a worker that took line n+1 must not start it when line n, taken by a
	// slower worker, is skipped.
	var (
		turnMu sync.Mutex
		turn   = sync.NewCond(&turnMu)
		decide int // seq of the next line to decide on
	)
	starts := func(seq int) bool {
		turnMu.Lock()
		defer turnMu.Unlock()
		for decide != seq {
			turn.Wait()
		}
		decide++
		turn.Broadcast()
		return runCtx.Err() == nil
	}
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Go(func() {
			for j := range jobs {
				if !starts(j.seq) {
					// Not started before the stop: not enqueued, no result.
					results <- done{seq: j.seq, skipped: true}
					continue
				}
				results <- done{seq: j.seq, res: process(runCtx, cfg, j.rec)}
			}
		})
	}
	go func() { wg.Wait(); close(results) }()

	var (
		sum          Summary
		pending      = map[int]done{}
		next         int
		target       = -1 // lines to report once stopped; -1 while running
		failure      error
		outputFailed bool // no more results can be written
	)
	emit := func(d done) {
		pending[d.seq] = d
		for {
			d, ok := pending[next]
			if !ok {
				return
			}
			delete(pending, next)
			next++
			<-slots
			if d.skipped || outputFailed {
				sum.Unprocessed++
				continue
			}
			res := d.res
			if err := cfg.Output(res); err != nil {
				outputFailed = true
				failure = fmt.Errorf("write result: %w", err)
				stop(failure)
				sum.Unprocessed++
				continue
			}
			sum.add(res)
			if cfg.Progress != nil {
				// The two counts may be a line apart: good enough for a bar.
				cfg.Progress(Progress{Done: sum.Lines, Read: int(read.Load()), ReadBytes: readBytes.Load()})
			}
			if failure == nil && res.Status == StatusError && cfg.MaxErrors > 0 && sum.Errors >= cfg.MaxErrors {
				failure = fmt.Errorf("%w: stopped after %d lines failed to enqueue", ErrTooManyErrors, sum.Errors)
				stop(failure)
			}
		}
	}
	doneCh := runCtx.Done()
	drained := false
	for !drained && (target < 0 || next < target) {
		select {
		case d, ok := <-results:
			if !ok {
				drained = true
				break
			}
			emit(d)
		case <-doneCh:
			doneCh = nil
			mu.Lock()
			stopped = true
			target = dispatched
			mu.Unlock()
		}
	}
	if target >= 0 || failure != nil {
		// Stopped early: the reader has stopped, or is blocked in a Read
		// of a quiet pipe (then it counts nothing and unread stands).
		if cfg.CountUnread {
			<-readerDone
			sum.Unprocessed += dropped
			sum.Unread = unread
		} else {
			sum.Unread = true
		}
	}
	sum.Elapsed = time.Since(start)
	switch {
	case failure != nil:
		return sum, failure
	case drained:
		// Every line read was reported; readErr says whether the input ended.
		return sum, readErr
	default:
		return sum, context.Cause(runCtx)
	}
}

// process validates one record and enqueues it.
func process(ctx context.Context, cfg Config, rec Record) Result {
	res := Result{Line: rec.Line}
	if rec.Err != nil {
		res.Status, res.Reason = StatusInvalid, phone.MaskText(rec.Err.Error())
		return res
	}
	t, v, err := smsq.Prepare(rec.Request(), time.Now(), rec.Options()...)
	if err != nil {
		res.Status, res.Reason = StatusInvalid, phone.MaskText(strings.TrimPrefix(err.Error(), smsq.ErrInvalidRequest.Error()+": "))
		return res
	}
	res.TaskID = v.IdempotencyKey
	res.Queue = rec.Queue
	if res.Queue == "" {
		res.Queue = tasks.QueueFor(v.Channel)
	}
	if !cfg.AnyQueue {
		if err := smsq.CheckServed(res.Queue, cfg.Served); err != nil {
			res.Status, res.Reason = StatusInvalid, strings.TrimPrefix(err.Error(), smsq.ErrInvalidRequest.Error()+": ")
			return res
		}
	}
	if cfg.Enqueuer == nil {
		res.Status = StatusValid
		return res
	}
	// Detached from ctx: a line being enqueued when the run stops is
	// finished, so its report says what happened in Redis.
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Timeout)
	defer cancel()
	info, err := cfg.Enqueuer.Enqueue(ectx, t, v)
	switch {
	case errors.Is(err, smsq.ErrDuplicate):
		res.Status = StatusDuplicate
	case err != nil:
		res.Status, res.Reason = StatusError, phone.MaskText(err.Error())
	default:
		res.Status, res.TaskID, res.Queue = StatusEnqueued, info.ID, info.Queue
	}
	return res
}
