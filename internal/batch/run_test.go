package batch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/tasks"
)

// fakeEnqueuer is an Enqueuer whose behaviour a test sets.
type fakeEnqueuer struct {
	EnqueueFunc func(ctx context.Context, t *asynq.Task) (*asynq.TaskInfo, error)
	calls       atomic.Int64
}

func (f *fakeEnqueuer) Enqueue(ctx context.Context, t *asynq.Task, _ tasks.Validated) (*asynq.TaskInfo, error) {
	f.calls.Add(1)
	return f.EnqueueFunc(ctx, t)
}

// collect returns an Output that appends to a slice, and the slice.
func collect() (func(Result) error, *[]Result) {
	var out []Result
	return func(r Result) error { out = append(out, r); return nil }, &out
}

func csvReader(t *testing.T, in string) Reader {
	t.Helper()
	r, err := NewCSVReader(strings.NewReader(in))
	if err != nil {
		t.Fatalf("NewCSVReader: %v", err)
	}
	return r
}

const mixedCSV = `channel,phone,idempotency_key,queue
CHANNEL_LOGIN,+8613800138000,k1,
CHANNEL_LOGIN,12345,k2,
CHANNEL_NOPE,+8613800138001,,
CHANNEL_REGISTER,13800138002,,low
CHANNEL_RESET_PASSWORD,13800138003,bad key,
`

func TestRunDryRun(t *testing.T) {
	t.Parallel()
	out, got := collect()
	sum, err := Run(context.Background(), csvReader(t, mixedCSV), Config{Output: out, Concurrency: 3})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := []Result{
		{Line: 2, Status: StatusValid, TaskID: "k1", Queue: "critical"},
		{Line: 3, Status: StatusInvalid, Reason: `phoneNumber: invalid phone number: "***45" is not a valid number for country code +86`},
		{Line: 4, Status: StatusInvalid, Reason: `channel: "CHANNEL_NOPE" is not one of ` + channelList()},
		{Line: 5, Status: StatusValid, Queue: "low"},
		{Line: 6, Status: StatusInvalid, Reason: `idempotencyKey: "bad key" may hold only printable ASCII without spaces`},
	}
	assertResults(t, *got, want)
	if sum.Valid != 2 || sum.Invalid != 3 || sum.Lines != 5 || sum.LastLine != 6 {
		t.Fatalf("summary = %+v, want 2 valid, 3 invalid, 5 lines, last line 6", sum)
	}
}

func channelList() string {
	var names []string
	for _, c := range genauth.Channels() {
		names = append(names, string(c))
	}
	return strings.Join(names, ", ")
}

func assertResults(t *testing.T, got, want []Result) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d results, want %d:\n%+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("result %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// genLines is a Reader of n valid records, counting reads.
type genLines struct {
	n, read int
	reads   atomic.Int64
}

func (g *genLines) Read() (Record, error) {
	if g.read >= g.n {
		return Record{}, io.EOF
	}
	g.read++
	g.reads.Add(1)
	return Record{Line: g.read + 1, Channel: "CHANNEL_LOGIN", Phone: fmt.Sprintf("+86138%08d", g.read), IdempotencyKey: fmt.Sprintf("k%d", g.read)}, nil
}

func TestRunKeepsInputOrderAndMapsErrors(t *testing.T) {
	t.Parallel()
	enq := &fakeEnqueuer{EnqueueFunc: func(ctx context.Context, task *asynq.Task) (*asynq.TaskInfo, error) {
		id, _ := strings.CutPrefix(taskID(task), "k")
		var n int
		fmt.Sscan(id, &n)
		// Later lines finish first, so that order must be restored.
		time.Sleep(time.Duration(50-n%50) * 20 * time.Microsecond)
		switch n % 10 {
		case 3:
			return nil, fmt.Errorf("%w: %q", smsq.ErrDuplicate, "key")
		case 7:
			return nil, errors.New("READONLY You can't write against a read only replica")
		}
		return &asynq.TaskInfo{ID: taskID(task), Queue: "critical"}, nil
	}}
	out, got := collect()
	sum, err := Run(context.Background(), &genLines{n: 200}, Config{Enqueuer: enq, Output: out, Concurrency: 8, Window: 16, MaxErrors: -1})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(*got) != 200 {
		t.Fatalf("got %d results, want 200", len(*got))
	}
	for i, r := range *got {
		n := i + 1
		want := Result{Line: n + 1, Status: StatusEnqueued, TaskID: fmt.Sprintf("k%d", n), Queue: "critical"}
		switch n % 10 {
		case 3:
			want.Status = StatusDuplicate
		case 7:
			want.Status, want.Reason = StatusError, "READONLY You can't write against a read only replica"
		}
		if r != want {
			t.Fatalf("result %d = %+v, want %+v", i, r, want)
		}
	}
	if sum.Enqueued != 160 || sum.Duplicate != 20 || sum.Errors != 20 {
		t.Fatalf("summary = %+v, want 160 enqueued, 20 duplicate, 20 error", sum)
	}
}

// taskID reads the idempotency key a task was made with (its payload's
// idempotencyKey), since asynq.Task does not expose its options.
func taskID(t *asynq.Task) string {
	s := string(t.Payload())
	_, after, _ := strings.Cut(s, `"idempotencyKey":"`)
	id, _, _ := strings.Cut(after, `"`)
	return id
}

// TestRunReadsAheadBoundedly proves the memory bound: while the enqueuer is
// stuck, no more than Window lines are read.
func TestRunReadsAheadBoundedly(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	enq := &fakeEnqueuer{EnqueueFunc: func(ctx context.Context, task *asynq.Task) (*asynq.TaskInfo, error) {
		<-release
		return &asynq.TaskInfo{ID: "x", Queue: "critical"}, nil
	}}
	gen := &genLines{n: 200}
	out, got := collect()
	done := make(chan error, 1)
	go func() {
		_, err := Run(context.Background(), gen, Config{Enqueuer: enq, Output: out, Concurrency: 4, Window: 32})
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for enq.calls.Load() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("enqueuer called %d times, want 4", enq.calls.Load())
		}
		time.Sleep(time.Millisecond)
	}
	// Give the reader every chance to run ahead, then check it did not.
	time.Sleep(50 * time.Millisecond)
	if n := gen.reads.Load(); n > 32 {
		t.Fatalf("read %d lines while 4 were stuck, want at most the window of 32", n)
	}
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not finish")
	}
	if len(*got) != 200 {
		t.Fatalf("got %d results, want 200", len(*got))
	}
}

func TestRunStopsAfterMaxErrors(t *testing.T) {
	t.Parallel()
	for _, countUnread := range []bool{false, true} {
		enq := &fakeEnqueuer{EnqueueFunc: func(ctx context.Context, task *asynq.Task) (*asynq.TaskInfo, error) {
			return nil, errors.New("dial tcp: connection refused")
		}}
		const n = 5000
		gen := &genLines{n: n}
		out, got := collect()
		sum, err := Run(context.Background(), gen, Config{Enqueuer: enq, Output: out, Concurrency: 4, MaxErrors: 10, CountUnread: countUnread})
		if !errors.Is(err, ErrTooManyErrors) {
			t.Fatalf("Run error = %v, want ErrTooManyErrors", err)
		}
		// Lines already in flight are reported, later ones not read.
		if sum.Errors < 10 || int(enq.calls.Load()) != len(*got) {
			t.Fatalf("errors %d, output %d, enqueue calls %d: want >= 10 errors and a result line for every line enqueued", sum.Errors, len(*got), enq.calls.Load())
		}
		if !countUnread && gen.reads.Load() > int64(64*4+1) {
			t.Fatalf("read %d lines after the stop, want at most one window", gen.reads.Load())
		}
		// The summary counts the result lines, and says what was left.
		if sum.Lines != len(*got) || sum.Errors != len(*got) {
			t.Fatalf("summary %+v counts lines without a result line (%d result lines)", sum, len(*got))
		}
		if countUnread && (sum.Lines+sum.Unprocessed != n || sum.Unread) {
			t.Fatalf("summary %+v: want the %d lines without a result counted", sum, n-sum.Lines)
		}
		if !countUnread && !sum.Unread {
			t.Fatalf("summary %+v: want the unread input said", sum)
		}
		if str := sum.String(); !strings.Contains(str, "not processed") {
			t.Fatalf("summary %q does not say lines were not processed", str)
		}
		for i, r := range *got {
			if r.Line != i+2 || r.Status != StatusError {
				t.Fatalf("result %d = %+v, want line %d error", i, r, i+2)
			}
		}
	}
}

// blockingReader blocks its second Read until the test ends, like a quiet
// pipe.
type blockingReader struct {
	n       int
	unblock chan struct{}
}

func (b *blockingReader) Read() (Record, error) {
	b.n++
	if b.n == 1 {
		return Record{Line: 1, Channel: "CHANNEL_LOGIN", Phone: "+8613800138000"}, nil
	}
	<-b.unblock
	return Record{}, io.EOF
}

func TestRunReturnsWhenCancelledDuringABlockedRead(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	r := &blockingReader{unblock: make(chan struct{})}
	t.Cleanup(func() { close(r.unblock) })
	var mu sync.Mutex
	var got []Result
	out := func(res Result) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, res)
		cancel() // the first result arrives while the reader is blocked
		return nil
	}
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, r, Config{Output: out})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run error = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].Status != StatusValid {
		t.Fatalf("results = %+v, want the one valid line", got)
	}
}

func TestRunStopsOnOutputError(t *testing.T) {
	t.Parallel()
	broken := errors.New("broken pipe")
	calls := 0
	out := func(Result) error { calls++; return broken }
	_, err := Run(context.Background(), &genLines{n: 10000}, Config{Output: out})
	if !errors.Is(err, broken) || calls != 1 {
		t.Fatalf("Run error = %v after %d outputs, want broken pipe after 1", err, calls)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	out := func(Result) error { return nil }
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "Config.Output is required"},
		{Config{Output: out, Concurrency: -1}, "Config.Concurrency -1"},
		{Config{Output: out, Concurrency: 8, Window: 4}, "Config.Window 4"},
		{Config{Output: out, Timeout: -time.Second}, "Config.Timeout -1s"},
	}
	for _, tt := range tests {
		_, err := Run(context.Background(), &genLines{}, tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Fatalf("Run(%+v) error = %v, want one naming %q", tt.cfg, err, tt.want)
		}
	}
}

func TestSummaryString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s    Summary
		want string
	}{
		{Summary{Lines: 4, Enqueued: 2, Duplicate: 1, Errors: 1, Elapsed: 2 * time.Second}, "enqueued 2, duplicate 1, invalid 0, error 1, in 2.0s (2 lines/s)"},
		{Summary{Lines: 3, Valid: 2, Invalid: 1, Elapsed: time.Second}, "valid 2, invalid 1, error 0, in 1.0s (3 lines/s)"},
		{Summary{}, "valid 0, enqueued 0, duplicate 0, invalid 0, error 0, in 0.0s (0 lines/s)"},
		{Summary{Lines: 10, Errors: 10, Unprocessed: 90, LastLine: 11, Elapsed: time.Second}, "enqueued 0, duplicate 0, invalid 0, error 10, not processed 90, in 1.0s (10 lines/s)"},
		{Summary{Lines: 10, Errors: 10, Unprocessed: 3, Unread: true, LastLine: 11, Elapsed: time.Second}, "enqueued 0, duplicate 0, invalid 0, error 10, not processed: 3 lines and the input after line 11, in 1.0s (10 lines/s)"},
	}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.want {
			t.Fatalf("String() = %q, want %q", got, tt.want)
		}
	}
}

// A phone number in the wrong column must not come back in clear in a
// reason or a header error.
func TestReasonsMaskPhoneNumbers(t *testing.T) {
	t.Parallel()
	in := "channel,phone,delay,client_ip\n" +
		"CHANNEL_LOGIN,+8613800138000,+8613800138001,\n" +
		"CHANNEL_LOGIN,+8613800138000,,13800138002\n"
	out, got := collect()
	if _, err := Run(context.Background(), csvReader(t, in), Config{Output: out, Concurrency: 1}); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(*got) != 2 {
		t.Fatalf("results = %+v, want 2", *got)
	}
	for i, r := range *got {
		if r.Status != StatusInvalid || r.Reason == "" {
			t.Errorf("line %d: %+v, want invalid with a reason", i+2, r)
		}
		for _, full := range []string{"13800138001", "13800138002"} {
			if strings.Contains(r.Reason, full) {
				t.Errorf("line %d: reason %q holds a full phone number", i+2, r.Reason)
			}
		}
	}
	if !strings.Contains((*got)[0].Reason, "delay") || !strings.Contains((*got)[1].Reason, "clientIp") {
		t.Errorf("reasons %q, %q: want them to name delay and clientIp", (*got)[0].Reason, (*got)[1].Reason)
	}

	// No header row: the first line is data.
	_, err := NewCSVReader(strings.NewReader("CHANNEL_LOGIN,+8613800138000\n"))
	if !errors.Is(err, ErrHeader) || strings.Contains(err.Error(), "13800138000") {
		t.Fatalf("NewCSVReader without a header: %v; want ErrHeader without the full number", err)
	}
}

// A key or queue column holding a phone number makes the line invalid
// before Redis is touched: it would become a Redis key name.
func TestRunRefusesPhonesInKeysAndQueues(t *testing.T) {
	t.Parallel()
	in := "channel,phone,idempotency_key,queue\n" +
		"CHANNEL_LOGIN,+8613800138000,login_13800138008_1,\n" +
		"CHANNEL_LOGIN,+8613800138000,,13800138040\n" +
		"CHANNEL_LOGIN,+8613800138000,opaque-1,low\n"
	var calls int
	enq := &fakeEnqueuer{EnqueueFunc: func(_ context.Context, task *asynq.Task) (*asynq.TaskInfo, error) {
		calls++
		return &asynq.TaskInfo{ID: taskID(task), Queue: "low"}, nil
	}}
	out, got := collect()
	if _, err := Run(context.Background(), csvReader(t, in), Config{Enqueuer: enq, Output: out, Concurrency: 1}); err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := []struct {
		status  Status
		mention string
	}{{StatusInvalid, "idempotencyKey: the key holds a phone number"}, {StatusInvalid, "queue: the name holds a phone number"}, {StatusEnqueued, ""}}
	if len(*got) != len(want) || calls != 1 {
		t.Fatalf("results %+v after %d enqueues; want %d results and 1 enqueue", *got, calls, len(want))
	}
	for i, r := range *got {
		if r.Status != want[i].status || !strings.Contains(r.Reason, want[i].mention) {
			t.Errorf("line %d: %+v, want %s mentioning %q", r.Line, r, want[i].status, want[i].mention)
		}
		if strings.Contains(r.Reason, "13800138") {
			t.Errorf("line %d: reason %q quotes the number", r.Line, r.Reason)
		}
	}
}

// A line for a queue no worker serves is invalid and never enqueued;
// AnyQueue lets it through for a worker yet to come.
func TestRunRefusesUnservedQueues(t *testing.T) {
	t.Parallel()
	in := "channel,phone,queue\n" +
		"CHANNEL_LOGIN,+8613800138000,Critical\n" +
		"CHANNEL_LOGIN,+8613800138000,bulk\n" +
		"CHANNEL_LOGIN,+8613800138000,\n" +
		"CHANNEL_REGISTER,+8613800138000,\n"
	for _, tc := range []struct {
		cfg  Config
		want []Status
	}{
		{Config{}, []Status{StatusInvalid, StatusInvalid, StatusEnqueued, StatusEnqueued}},
		{Config{Served: []string{"bulk", "critical"}}, []Status{StatusInvalid, StatusEnqueued, StatusEnqueued, StatusInvalid}},
		{Config{AnyQueue: true}, []Status{StatusEnqueued, StatusEnqueued, StatusEnqueued, StatusEnqueued}},
	} {
		var calls atomic.Int32
		enq := &fakeEnqueuer{EnqueueFunc: func(_ context.Context, task *asynq.Task) (*asynq.TaskInfo, error) {
			calls.Add(1)
			return &asynq.TaskInfo{ID: "x", Queue: "q"}, nil
		}}
		out, got := collect()
		cfg := tc.cfg
		cfg.Enqueuer, cfg.Output, cfg.Concurrency = enq, out, 1
		if _, err := Run(context.Background(), csvReader(t, in), cfg); err != nil {
			t.Fatalf("Run: %v", err)
		}
		enqueued := 0
		for i, r := range *got {
			if r.Status != tc.want[i] {
				t.Errorf("served %v, any %v: line %d = %+v, want %s", cfg.Served, cfg.AnyQueue, r.Line, r, tc.want[i])
			}
			if r.Status == StatusInvalid && !strings.Contains(r.Reason, "no worker serves this queue (served: ") {
				t.Errorf("line %d: reason %q does not say which queues are served", r.Line, r.Reason)
			}
			if r.Status == StatusEnqueued {
				enqueued++
			}
		}
		if int(calls.Load()) != enqueued {
			t.Errorf("%d enqueues for %d enqueued lines", calls.Load(), enqueued)
		}
	}
}
