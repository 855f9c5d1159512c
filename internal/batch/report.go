package batch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/smsq/smsq/internal/phone"
	"github.com/smsq/smsq/internal/tasks"
)

// Outcomes of a report line besides the tasks' own final outcomes (sent,
// deduplicated, expired, failed, invalid, blocked).
const (
	// OutcomePending: the line's task is queued and not final yet.
	OutcomePending = "pending"
	// OutcomeDuplicate: the line's idempotency key already named a task,
	// so nothing was queued for the line; KeyOutcome is that task's
	// outcome.
	OutcomeDuplicate = "duplicate"
	// OutcomeNotQueued: enqueueing the line failed (StatusError) or the
	// run was a dry run (StatusValid): no task exists for it.
	OutcomeNotQueued = "not-queued"
	// OutcomeMissing: Redis holds no record of the line's task: its
	// records expired (they are kept SMSQ_RETENTION after the task ended)
	// or it was queued into another Redis.
	OutcomeMissing = "missing"
)

// outcomeBlocked is the abuse guard's final outcome.
const outcomeBlocked = "blocked"

// StageEnqueue marks a report line whose outcome was decided when the
// batch queued it: nothing of it reached a worker.
const StageEnqueue = "enqueue"

// ReportLine is one line of a delivery report, written as one JSON line.
type ReportLine struct {
	// Line is the input line number, as in the batch's result line.
	Line    int    `json:"line"`
	Outcome string `json:"outcome"`
	// Stage is StageEnqueue for lines refused or not queued by the batch
	// (invalid, duplicate, not-queued).
	Stage  string `json:"stage,omitempty"`
	TaskID string `json:"taskId,omitempty"`
	Queue  string `json:"queue,omitempty"`
	// Reason says why, for every outcome but sent. Phones in it are
	// masked.
	Reason string `json:"reason,omitempty"`
	// GenAuth's answer to the task's last call.
	StatusCode int    `json:"statusCode,omitempty"`
	APICode    int    `json:"apiCode,omitempty"`
	RequestID  string `json:"requestId,omitempty"`
	// Attempts counts the task's attempts so far.
	Attempts   int       `json:"attempts,omitempty"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	// Last is the latest attempt's outcome of a pending task (retrying,
	// throttled, deferred, unknown), "" when no attempt began.
	Last string `json:"last,omitempty"`
	// KeyOutcome is, for a duplicate line, the outcome of the task its
	// key names (pending while that task is not final).
	KeyOutcome string `json:"keyOutcome,omitempty"`
}

// Final reports whether the line will not change on a later report.
func (l ReportLine) Final() bool {
	switch l.Outcome {
	case OutcomePending:
		return false
	case OutcomeDuplicate:
		return l.KeyOutcome != OutcomePending
	}
	return true
}

// Delivered reports whether a valid code went to the line's phone: sent,
// deduplicated (an earlier code is still valid), or a duplicate whose
// key's task was one of them.
func (l ReportLine) Delivered() bool {
	o := l.Outcome
	if o == OutcomeDuplicate {
		o = l.KeyOutcome
	}
	return tasks.Delivered(o)
}

// TaskRef names a task to look up: a result line's task ID and queue.
type TaskRef struct{ ID, Queue string }

// TaskState is what a Lookup found of one task.
type TaskState struct {
	// Found is false when Redis holds no record of the task.
	Found bool
	// Final is set once the task ended; Outcome is then its final outcome,
	// and before that the latest attempt's ("" before the first).
	Final   bool
	Outcome string
	Reason  string
	// GenAuth's answer to the last call, when there was one.
	StatusCode int
	APICode    int
	RequestID  string
	Attempts   int
	FinishedAt time.Time
}

// Lookup reads the state of tasks; out has one slot per ref. A Lookup
// should read a whole window in few round trips (a pipeline): Report
// calls it once per window of lines, again for those still pending.
type Lookup interface {
	Lookup(ctx context.Context, refs []TaskRef, out []TaskState) error
}

// LookupFunc adapts a function to Lookup.
type LookupFunc func(ctx context.Context, refs []TaskRef, out []TaskState) error

// Lookup calls f.
func (f LookupFunc) Lookup(ctx context.Context, refs []TaskRef, out []TaskState) error {
	return f(ctx, refs, out)
}

// Report defaults.
const (
	DefaultReportWindow = 1000
	DefaultPollMin      = 250 * time.Millisecond
	DefaultPollMax      = 2 * time.Second
	// MaxLookupErrors is how many lookups in a row may fail while waiting
	// before Report gives up.
	MaxLookupErrors = 5
)

// ReportConfig configures Report.
type ReportConfig struct {
	// Lookup reads the tasks' states; required.
	Lookup Lookup
	// Window is how many lines are looked up and held at once; default
	// DefaultReportWindow. Memory is bounded by it, not by the input.
	Window int
	// Wait is how long to wait for pending lines to become final; 0
	// reports each line as it is now. Waiting goes window by window, in
	// input order: once Wait has passed, later windows are looked up once.
	Wait time.Duration
	// PollMin and PollMax bound the pause between two lookups of a
	// window's pending lines (doubling from PollMin); defaults
	// DefaultPollMin and DefaultPollMax.
	PollMin, PollMax time.Duration
	// Output receives every line, in input order. An error from it stops
	// the report and is returned. Required.
	Output func(ReportLine) error
	// Progress, when set, is called after each window is written.
	Progress func(ReportSummary)
	// Now and Sleep are the clock; defaults time.Now and a sleep that ends
	// with ctx.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

func (c ReportConfig) withDefaults() ReportConfig {
	if c.Window == 0 {
		c.Window = DefaultReportWindow
	}
	if c.PollMin == 0 {
		c.PollMin = DefaultPollMin
	}
	if c.PollMax == 0 {
		c.PollMax = DefaultPollMax
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Sleep == nil {
		c.Sleep = sleepCtx
	}
	return c
}

func (c ReportConfig) validate() error {
	switch {
	case c.Lookup == nil:
		return errors.New("batch: ReportConfig.Lookup is required")
	case c.Output == nil:
		return errors.New("batch: ReportConfig.Output is required")
	case c.Window < 1:
		return fmt.Errorf("batch: ReportConfig.Window %d: must be at least 1", c.Window)
	case c.Wait < 0:
		return fmt.Errorf("batch: ReportConfig.Wait %s: must not be negative", c.Wait)
	case c.PollMin <= 0 || c.PollMax < c.PollMin:
		return fmt.Errorf("batch: ReportConfig.PollMin %s, PollMax %s: want 0 < PollMin <= PollMax", c.PollMin, c.PollMax)
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// ReportSummary counts a report's lines by outcome.
type ReportSummary struct {
	Lines int
	// ByOutcome counts the lines per Outcome.
	ByOutcome map[string]int
	// Pending counts the lines not final (Final false): pending ones and
	// duplicates whose key's task is pending.
	Pending int
	// NotDelivered counts the final lines that got no code (Delivered
	// false); RefusedInvalid those of them the batch refused as invalid.
	NotDelivered, RefusedInvalid int
	Elapsed                      time.Duration
}

// reportOrder is the order outcomes are listed in a summary.
var reportOrder = []string{
	tasks.OutcomeSent, tasks.OutcomeDeduplicated, OutcomeDuplicate, tasks.OutcomeExpired,
	tasks.OutcomeFailed, tasks.OutcomeInvalid, outcomeBlocked, OutcomeNotQueued, OutcomeMissing, OutcomePending,
}

// String is the one-line summary printed at the end of a report.
func (s ReportSummary) String() string {
	var parts []string
	for _, o := range reportOrder {
		if n := s.ByOutcome[o]; n > 0 || o == tasks.OutcomeSent || o == OutcomePending {
			parts = append(parts, fmt.Sprintf("%s %d", o, n))
		}
	}
	var others []string
	for o := range s.ByOutcome {
		if !slices.Contains(reportOrder, o) {
			others = append(others, o)
		}
	}
	sort.Strings(others)
	for _, o := range others {
		parts = append(parts, fmt.Sprintf("%s %d", o, s.ByOutcome[o]))
	}
	keyPending := s.Pending - s.ByOutcome[OutcomePending]
	tail := ""
	if keyPending > 0 {
		tail = fmt.Sprintf(" (and %d duplicates whose key's task is pending)", keyPending)
	}
	return fmt.Sprintf("%d lines: %s%s, in %.1fs", s.Lines, strings.Join(parts, ", "), tail, s.Elapsed.Seconds())
}

func (s *ReportSummary) add(l ReportLine) {
	if s.ByOutcome == nil {
		s.ByOutcome = map[string]int{}
	}
	s.Lines++
	s.ByOutcome[l.Outcome]++
	switch {
	case !l.Final():
		s.Pending++
	case !l.Delivered():
		s.NotDelivered++
		if l.Outcome == tasks.OutcomeInvalid && l.Stage == StageEnqueue {
			s.RefusedInvalid++
		}
	}
}

// ErrBadResults is wrapped by the errors of input that is not a batch's
// result file or an earlier report.
var ErrBadResults = errors.New("not a batch result or report line")

// maxResultLine bounds one line of a result file or report. The lines
// smsq writes are far shorter; anything longer is not one of them.
const maxResultLine = MaxLineBytes

// inputLine is one line of a result file (Status set) or of an earlier
// report (Outcome set).
type inputLine struct {
	ReportLine
	Status Status `json:"status"`
}

// ResultsReader reads a batch's result file, or an earlier report, line
// by line.
type ResultsReader struct {
	sc   *bufio.Scanner
	n    int // lines read
	last int // input line number of the last line read
}

// NewResultsReader reads from r.
func NewResultsReader(r io.Reader) *ResultsReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxResultLine)
	return &ResultsReader{sc: sc}
}

// next returns the next line, io.EOF at the end.
func (r *ResultsReader) next() (inputLine, error) {
	for r.sc.Scan() {
		r.n++
		b := bytes.TrimSpace(r.sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var in inputLine
		if err := json.Unmarshal(b, &in); err != nil {
			return in, fmt.Errorf("line %d of the input: %w: %v", r.n, ErrBadResults, err)
		}
		if err := r.check(&in); err != nil {
			return in, fmt.Errorf("line %d of the input: %w: %v", r.n, ErrBadResults, err)
		}
		return in, nil
	}
	if err := r.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return inputLine{}, fmt.Errorf("line %d of the input: %w: longer than %d bytes", r.n+1, ErrBadResults, maxResultLine)
		}
		return inputLine{}, err
	}
	return inputLine{}, io.EOF
}

// check validates a line: a known status or outcome, a task where one is
// needed, and line numbers rising as a batch writes them.
func (r *ResultsReader) check(in *inputLine) error {
	if in.Line <= r.last {
		return fmt.Errorf("input line %d after line %d: lines must be in input order, each once", in.Line, r.last)
	}
	r.last = in.Line
	switch {
	case in.Status != "" && in.Outcome != "":
		return errors.New("both a status and an outcome")
	case in.Status != "":
		switch in.Status {
		case StatusEnqueued, StatusDuplicate:
			if in.TaskID == "" {
				return fmt.Errorf("status %s without a taskId", in.Status)
			}
		case StatusInvalid, StatusError, StatusValid:
		default:
			return fmt.Errorf("unknown status %q", in.Status)
		}
	case in.Outcome != "":
		if !knownOutcome(in.Outcome) {
			return fmt.Errorf("unknown outcome %q", in.Outcome)
		}
		if (in.Outcome == OutcomePending || in.Outcome == OutcomeDuplicate) && in.TaskID == "" {
			return fmt.Errorf("outcome %s without a taskId", in.Outcome)
		}
		if in.Outcome == OutcomeDuplicate && in.KeyOutcome != "" && !knownOutcome(in.KeyOutcome) {
			return fmt.Errorf("unknown keyOutcome %q", in.KeyOutcome)
		}
	default:
		return errors.New("neither a status nor an outcome")
	}
	return nil
}

func knownOutcome(o string) bool {
	return tasks.IsFinal(o) || slices.Contains(reportOrder, o)
}

// slot is one line of the window being reported.
type slot struct {
	line ReportLine
	// ref is the task to look up; lookup is false when the line is decided.
	ref    TaskRef
	lookup bool
	dup    bool // a duplicate line: the task is the key's
}

// Report writes the final outcome of every line of a batch's result file
// (or of an earlier report: its final lines are kept as they are and only
// its pending ones looked up again) to cfg.Output, in input order.
//
// Lines are read, looked up and written cfg.Window at a time, so memory
// does not grow with the input. With cfg.Wait, Report waits on each
// window's pending lines until they are final or cfg.Wait has passed since
// it began; lines still pending then are reported as pending, and running
// Report again (over the result file, or over this report) updates them.
func Report(ctx context.Context, r *ResultsReader, cfg ReportConfig) (ReportSummary, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return ReportSummary{}, err
	}
	start := cfg.Now()
	deadline := start.Add(cfg.Wait)
	var sum ReportSummary
	window := make([]slot, 0, cfg.Window)
	refs := make([]TaskRef, 0, cfg.Window)
	idx := make([]int, 0, cfg.Window)
	states := make([]TaskState, cfg.Window)
	finish := func(err error) (ReportSummary, error) {
		sum.Elapsed = cfg.Now().Sub(start)
		return sum, err
	}
	for {
		window = window[:0]
		var readErr error
		for len(window) < cfg.Window {
			in, err := r.next()
			if err != nil {
				readErr = err
				break
			}
			window = append(window, slotOf(in))
		}
		if len(window) > 0 {
			if err := resolve(ctx, cfg, window, refs, idx, states, deadline); err != nil {
				return finish(err)
			}
			for _, s := range window {
				if err := cfg.Output(s.line); err != nil {
					return finish(fmt.Errorf("write report: %w", err))
				}
				sum.add(s.line)
			}
			if cfg.Progress != nil {
				p := sum
				p.Elapsed = cfg.Now().Sub(start)
				cfg.Progress(p)
			}
		}
		switch {
		case errors.Is(readErr, io.EOF):
			return finish(nil)
		case readErr != nil:
			return finish(readErr)
		}
	}
}

// slotOf turns an input line into the report line it starts as.
func slotOf(in inputLine) slot {
	if in.Outcome != "" {
		// An earlier report: final lines stand, pending ones are looked up
		// again.
		l := in.ReportLine
		l.Reason = phone.MaskText(l.Reason)
		switch {
		case l.Outcome == OutcomePending:
			return slot{line: l, ref: TaskRef{ID: l.TaskID, Queue: l.Queue}, lookup: true}
		case l.Outcome == OutcomeDuplicate && !l.Final():
			return slot{line: l, ref: TaskRef{ID: l.TaskID, Queue: l.Queue}, lookup: true, dup: true}
		}
		return slot{line: l}
	}
	l := ReportLine{Line: in.Line, TaskID: in.TaskID, Queue: in.Queue, Reason: phone.MaskText(in.Reason)}
	switch in.Status {
	case StatusEnqueued:
		l.Outcome = OutcomePending
		return slot{line: l, ref: TaskRef{ID: in.TaskID, Queue: in.Queue}, lookup: true}
	case StatusDuplicate:
		l.Outcome, l.Stage, l.KeyOutcome = OutcomeDuplicate, StageEnqueue, OutcomePending
		l.Reason = "the idempotency key already named a task: nothing was queued for this line"
		return slot{line: l, ref: TaskRef{ID: in.TaskID, Queue: in.Queue}, lookup: true, dup: true}
	case StatusInvalid:
		l.Outcome, l.Stage = tasks.OutcomeInvalid, StageEnqueue
	case StatusValid:
		l.Outcome, l.Stage, l.Reason = OutcomeNotQueued, StageEnqueue, "dry run: nothing was queued"
	default: // StatusError
		l.Outcome, l.Stage = OutcomeNotQueued, StageEnqueue
		l.Reason = "enqueue failed: " + l.Reason
	}
	return slot{line: l}
}

// resolve looks the window's undecided lines up, and with a wait looks
// the pending ones up again until they are final or the deadline passes.
func resolve(ctx context.Context, cfg ReportConfig, window []slot, refs []TaskRef, idx []int, states []TaskState, deadline time.Time) error {
	pause := cfg.PollMin
	failures := 0
	for {
		refs, idx = refs[:0], idx[:0]
		for i := range window {
			if window[i].lookup {
				refs = append(refs, window[i].ref)
				idx = append(idx, i)
			}
		}
		if len(refs) == 0 {
			return nil
		}
		clear(states[:len(refs)])
		err := cfg.Lookup.Lookup(ctx, refs, states[:len(refs)])
		switch {
		case err != nil && ctx.Err() != nil:
			return context.Cause(ctx)
		case err != nil:
			failures++
			if failures >= MaxLookupErrors || !cfg.Now().Before(deadline) {
				return fmt.Errorf("look up tasks: %w", err)
			}
		default:
			failures = 0
			for j, i := range idx {
				apply(&window[i], states[j])
			}
		}
		now := cfg.Now()
		if err == nil && (!now.Before(deadline) || !anyLookup(window)) {
			return nil
		}
		if err := cfg.Sleep(ctx, min(pause, max(deadline.Sub(now), time.Millisecond))); err != nil {
			return err
		}
		pause = min(2*pause, cfg.PollMax)
	}
}

func anyLookup(window []slot) bool {
	for i := range window {
		if window[i].lookup {
			return true
		}
	}
	return false
}

// apply sets a line from its task's state; a final state ends its lookups.
func apply(s *slot, st TaskState) {
	if s.dup {
		switch {
		case !st.Found:
			s.line.KeyOutcome, s.lookup = OutcomeMissing, false
		case st.Final:
			s.line.KeyOutcome, s.lookup = st.Outcome, false
		default:
			s.line.KeyOutcome = OutcomePending
		}
		return
	}
	l := &s.line
	*l = ReportLine{Line: l.Line, TaskID: l.TaskID, Queue: l.Queue}
	switch {
	case !st.Found:
		l.Outcome = OutcomeMissing
		l.Reason = "Redis holds no record of the task: its records expired after the retention, or it was queued into another Redis"
		s.lookup = false
		return
	case st.Final:
		l.Outcome = st.Outcome
		s.lookup = false
	default:
		l.Outcome, l.Last = OutcomePending, st.Outcome
	}
	l.Reason = phone.MaskText(st.Reason)
	l.StatusCode, l.APICode, l.RequestID = st.StatusCode, st.APICode, st.RequestID
	l.Attempts, l.FinishedAt = st.Attempts, st.FinishedAt
	if !st.Final {
		l.FinishedAt = time.Time{}
	}
}
