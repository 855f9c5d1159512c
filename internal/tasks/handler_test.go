package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/history"
)

// testEnqueued is when test tasks were enqueued; their send-by deadline is
// five minutes later.
var testEnqueued = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

const (
	testE164     = "+8613800138000"
	testNational = "13800138000"
	testWindow   = 60 * time.Second
)

// fakeSender is a Sender whose answer is SendSMSFunc's, or a success.
type fakeSender struct {
	SendSMSFunc func(ctx context.Context, req genauth.SendSMSRequest) (*genauth.Response, error)

	mu   sync.Mutex
	reqs []genauth.SendSMSRequest
}

func (s *fakeSender) SendSMS(ctx context.Context, req genauth.SendSMSRequest) (*genauth.Response, error) {
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	s.mu.Unlock()
	if s.SendSMSFunc != nil {
		return s.SendSMSFunc(ctx, req)
	}
	return &genauth.Response{HTTPStatus: 200, StatusCode: 200, Message: "Operation successful", RequestID: "req-ok"}, nil
}

func (s *fakeSender) calls() []genauth.SendSMSRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// fakeReserver is a Reserver that grants every reservation unless told
// otherwise, and logs the operations asked of it.
type fakeReserver struct {
	AcquireFunc     func(ctx context.Context, e164, channel, owner string) (dedupe.Acquired, dedupe.Reservation, error)
	MarkSentFunc    func(ctx context.Context, e164, channel, owner string) error
	MarkUnknownFunc func(ctx context.Context, e164, channel, owner string) error
	ReleaseFunc     func(ctx context.Context, e164, channel, owner string) (bool, error)
	WindowFunc      func() time.Duration

	mu  sync.Mutex
	log []string
}

func (r *fakeReserver) note(op, e164, channel, owner string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, op)
	if e164 != testE164 && owner != "" {
		// Record the mismatch so that the test sees it in ops().
		r.log = append(r.log, "wrong-phone:"+e164)
	}
}

func (r *fakeReserver) ops() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log)
}

func (r *fakeReserver) Acquire(ctx context.Context, e164, channel, owner string) (dedupe.Acquired, dedupe.Reservation, error) {
	r.note("acquire", e164, channel, owner)
	if r.AcquireFunc != nil {
		return r.AcquireFunc(ctx, e164, channel, owner)
	}
	return dedupe.AcquiredNew, dedupe.Reservation{Owner: owner, State: dedupe.StateReserved, TTL: r.Window()}, nil
}

func (r *fakeReserver) MarkSent(ctx context.Context, e164, channel, owner string) error {
	r.note("markSent", e164, channel, owner)
	if r.MarkSentFunc != nil {
		return r.MarkSentFunc(ctx, e164, channel, owner)
	}
	return nil
}

func (r *fakeReserver) MarkUnknown(ctx context.Context, e164, channel, owner string) error {
	r.note("markUnknown", e164, channel, owner)
	if r.MarkUnknownFunc != nil {
		return r.MarkUnknownFunc(ctx, e164, channel, owner)
	}
	return nil
}

func (r *fakeReserver) Release(ctx context.Context, e164, channel, owner string) (bool, error) {
	r.note("release", e164, channel, owner)
	if r.ReleaseFunc != nil {
		return r.ReleaseFunc(ctx, e164, channel, owner)
	}
	return true, nil
}

// PhoneHash differs from dedupe.PhoneHash, as a keyed store's does: the
// handler must index the history by the store's hash.
func (r *fakeReserver) PhoneHash(e164 string) string {
	return "keyed-" + dedupe.PhoneHash(e164)
}

func (r *fakeReserver) Window() time.Duration {
	if r.WindowFunc != nil {
		return r.WindowFunc()
	}
	return testWindow
}

// recorded is one Journal.Record call.
type recorded struct {
	phoneHash string
	entry     history.Entry
	unknown   bool
}

// fakeJournal is a Journal that reports every attempt as the first unless
// told otherwise.
type fakeJournal struct {
	BeginFunc  func(ctx context.Context, taskID string, now time.Time) (history.Begun, error)
	RecordFunc func(ctx context.Context, phoneHash string, e history.Entry, unknownAttempt bool) error

	mu      sync.Mutex
	begins  int
	records []recorded
}

func (j *fakeJournal) Begin(ctx context.Context, taskID string, _ history.Identity, now time.Time) (history.Begun, error) {
	j.mu.Lock()
	j.begins++
	j.mu.Unlock()
	if j.BeginFunc != nil {
		return j.BeginFunc(ctx, taskID, now)
	}
	return history.Begun{Attempt: 1, FirstSeen: now}, nil
}

func (j *fakeJournal) Record(ctx context.Context, phoneHash string, e history.Entry, unknownAttempt bool) error {
	j.mu.Lock()
	j.records = append(j.records, recorded{phoneHash: phoneHash, entry: e, unknown: unknownAttempt})
	j.mu.Unlock()
	if j.RecordFunc != nil {
		return j.RecordFunc(ctx, phoneHash, e, unknownAttempt)
	}
	return nil
}

func (j *fakeJournal) recorded() []recorded {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.records)
}

// newTestTask builds a CHANNEL_LOGIN task for 13800138000 enqueued at
// testEnqueued, after edit changes the payload.
func newTestTask(t testing.TB, edit func(*Payload)) *asynq.Task {
	t.Helper()
	p := Payload{Channel: "CHANNEL_LOGIN", PhoneNumber: testNational, PhoneCountryCode: "+86"}
	if edit != nil {
		edit(&p)
	}
	task, _, err := NewTask(p, testEnqueued)
	if err != nil {
		t.Fatalf("NewTask: %v", err)
	}
	return task
}

func genauthErr(status int) *genauth.Error {
	return &genauth.Error{HTTPStatus: 200, StatusCode: status, Message: fmt.Sprintf("refused %d", status), RequestID: fmt.Sprintf("req-%d", status)}
}

func reply(resp *genauth.Response, err error) func(context.Context, genauth.SendSMSRequest) (*genauth.Response, error) {
	return func(context.Context, genauth.SendSMSRequest) (*genauth.Response, error) { return resp, err }
}

func heldBy(owner string, state dedupe.State, ttl time.Duration) func(context.Context, string, string, string) (dedupe.Acquired, dedupe.Reservation, error) {
	return func(context.Context, string, string, string) (dedupe.Acquired, dedupe.Reservation, error) {
		r := dedupe.Reservation{Owner: owner, State: state, TTL: ttl}
		return 0, r, fmt.Errorf("%w (owner %q)", dedupe.ErrHeld, owner)
	}
}

func reentered(state dedupe.State, ttl time.Duration) func(context.Context, string, string, string) (dedupe.Acquired, dedupe.Reservation, error) {
	return func(_ context.Context, _, _, owner string) (dedupe.Acquired, dedupe.Reservation, error) {
		return dedupe.AcquiredReentered, dedupe.Reservation{Owner: owner, State: state, TTL: ttl}, nil
	}
}

func begun(b history.Begun) func(context.Context, string, time.Time) (history.Begun, error) {
	return func(_ context.Context, _ string, now time.Time) (history.Begun, error) {
		if b.FirstSeen.IsZero() {
			b.FirstSeen = now
		}
		return b, nil
	}
}

// errWant describes what ProcessTask returns: nil, a final error that
// skips retries, a final error on the last try, or a retry after a delay
// in [minDelay, maxDelay] that does or does not count as a failure.
type errWant int

const (
	wantNil errWant = iota
	wantSkipRetry
	wantRetry
	wantLastTry
)

type handlerCase struct {
	name string
	// task input: edit changes the default payload; raw replaces it.
	edit func(*Payload)
	raw  []byte
	meta *taskMeta
	// handler setup
	onHeld      string
	clock       time.Duration // time since testEnqueued at the attempt; default 1s
	send        func(context.Context, genauth.SendSMSRequest) (*genauth.Response, error)
	acquire     func(context.Context, string, string, string) (dedupe.Acquired, dedupe.Reservation, error)
	begin       func(context.Context, string, time.Time) (history.Begun, error)
	cancelBegin bool // cancel the task's context once Begin returns

	wantOutcome     string // empty: nothing recorded
	wantFinal       bool
	wantCalls       int
	wantOps         []string
	wantErr         errWant
	wantFailure     bool // IsFailure(err), for wantRetry
	minDelay        time.Duration
	maxDelay        time.Duration
	wantUnknown     bool // the record counts an unknown attempt
	wantHolder      string
	wantReason      string // substring of Result.Reason
	wantUnknownSeen int    // Result.UnknownAttempts
}

func runCase(t *testing.T, tc handlerCase) (Result, error, *fakeSender, *fakeReserver, *fakeJournal) {
	t.Helper()
	sender := &fakeSender{SendSMSFunc: tc.send}
	resv := &fakeReserver{AcquireFunc: tc.acquire}
	journal := &fakeJournal{BeginFunc: tc.begin}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if tc.cancelBegin {
		inner := journal.BeginFunc
		journal.BeginFunc = func(c context.Context, id string, now time.Time) (history.Begun, error) {
			cancel()
			if inner != nil {
				return inner(c, id, now)
			}
			return history.Begun{Attempt: 1, FirstSeen: now}, nil
		}
	}
	clock := tc.clock
	if clock == 0 {
		clock = time.Second
	}
	h, err := NewHandler(HandlerConfig{
		Sender: sender, Reservations: resv, Journal: journal, OnHeld: tc.onHeld,
		Now: func() time.Time { return testEnqueued.Add(clock) },
	})
	if err != nil {
		t.Fatalf("NewHandler: %v", err)
	}
	var task *asynq.Task
	if tc.raw != nil {
		task = asynq.NewTask(TypeSendSMS, tc.raw)
	} else {
		task = newTestTask(t, tc.edit)
	}
	meta := taskMeta{id: "task-1", retried: 0, maxRetry: DefaultMaxRetry, queue: QueueCritical}
	if tc.meta != nil {
		meta = *tc.meta
	}
	perr := h.processTask(ctx, task, meta)

	var res Result
	if recs := journal.recorded(); len(recs) > 0 {
		last := recs[len(recs)-1]
		if err := json.Unmarshal(last.entry.Result, &res); err != nil {
			t.Fatalf("recorded result %q is not JSON: %v", last.entry.Result, err)
		}
	}
	return res, perr, sender, resv, journal
}

func checkCase(t *testing.T, tc handlerCase, res Result, err error, sender *fakeSender, resv *fakeReserver, journal *fakeJournal) {
	t.Helper()
	meta := taskMeta{retried: 0}
	if tc.meta != nil {
		meta = *tc.meta
	}
	switch tc.wantErr {
	case wantNil:
		if err != nil {
			t.Fatalf("ProcessTask error = %v, want nil", err)
		}
	case wantSkipRetry:
		if !errors.Is(err, asynq.SkipRetry) {
			t.Fatalf("ProcessTask error = %v, want one wrapping asynq.SkipRetry", err)
		}
	case wantLastTry:
		if err == nil || errors.Is(err, asynq.SkipRetry) {
			t.Fatalf("ProcessTask error = %v, want a plain error (asynq archives the last try)", err)
		}
	case wantRetry:
		if err == nil || errors.Is(err, asynq.SkipRetry) {
			t.Fatalf("ProcessTask error = %v, want a retryable error", err)
		}
		if got := IsFailure(err); got != tc.wantFailure {
			t.Fatalf("IsFailure(%v) = %v, want %v", err, got, tc.wantFailure)
		}
		if d := RetryDelay(meta.retried, err, nil); d < tc.minDelay || d > tc.maxDelay {
			t.Fatalf("RetryDelay = %v, want within [%v, %v]", d, tc.minDelay, tc.maxDelay)
		}
		if tc.wantOutcome != "" && tc.minDelay > 0 && res.RetryInMS != RetryDelay(meta.retried, err, nil).Milliseconds() && !tc.wantFailure {
			t.Fatalf("Result.RetryInMS = %d, want the delay asked of asynq", res.RetryInMS)
		}
	}

	if got := len(sender.calls()); got != tc.wantCalls {
		t.Fatalf("GenAuth calls = %d, want %d", got, tc.wantCalls)
	}
	if got := resv.ops(); !slices.Equal(got, tc.wantOps) {
		t.Fatalf("reservation ops = %q, want %q", got, tc.wantOps)
	}

	recs := journal.recorded()
	if tc.wantOutcome == "" {
		if len(recs) != 0 {
			t.Fatalf("recorded %d entries (%+v), want none", len(recs), recs)
		}
		return
	}
	if len(recs) != 1 {
		t.Fatalf("recorded %d entries, want 1", len(recs))
	}
	rec := recs[0]
	if rec.entry.Outcome != tc.wantOutcome || rec.entry.Final != tc.wantFinal {
		t.Fatalf("recorded entry %s final=%v, want %s final=%v", rec.entry.Outcome, rec.entry.Final, tc.wantOutcome, tc.wantFinal)
	}
	if rec.entry.TaskID != "task-1" {
		t.Fatalf("recorded task ID %q, want task-1", rec.entry.TaskID)
	}
	// Only a colliding task's entry is kept apart from the ID's holder.
	if collided := strings.Contains(tc.wantReason, "names another task"); (rec.entry.Collision != "") != collided {
		t.Fatalf("recorded entry collision %q, want one: %v", rec.entry.Collision, collided)
	}
	if rec.unknown != tc.wantUnknown {
		t.Fatalf("recorded unknownAttempt = %v, want %v", rec.unknown, tc.wantUnknown)
	}
	if res.Outcome != tc.wantOutcome || res.Final != tc.wantFinal {
		t.Fatalf("Result outcome %s final=%v, want %s final=%v", res.Outcome, res.Final, tc.wantOutcome, tc.wantFinal)
	}
	if res.Holder != tc.wantHolder {
		t.Fatalf("Result.Holder = %q, want %q", res.Holder, tc.wantHolder)
	}
	if !strings.Contains(res.Reason, tc.wantReason) {
		t.Fatalf("Result.Reason = %q, want it to contain %q", res.Reason, tc.wantReason)
	}
	if res.UnknownAttempts != tc.wantUnknownSeen {
		t.Fatalf("Result.UnknownAttempts = %d, want %d", res.UnknownAttempts, tc.wantUnknownSeen)
	}
	if tc.wantOutcome != OutcomeInvalid {
		if want := resv.PhoneHash(testE164); rec.phoneHash != want {
			t.Fatalf("recorded under phone hash %q, want the store's %q", rec.phoneHash, want)
		}
		if res.Phone != "+86 138****8000" || res.Channel != "CHANNEL_LOGIN" {
			t.Fatalf("Result phone, channel = %q, %q; want masked phone and CHANNEL_LOGIN", res.Phone, res.Channel)
		}
	}
}

func TestProcessTaskOutcomes(t *testing.T) {
	t.Parallel()
	backoffFirst := [2]time.Duration{500 * time.Millisecond, time.Second}
	windowJitter := [2]time.Duration{testWindow + scheduleSlack, testWindow + scheduleSlack + testWindow/10}
	dialErr := &genauth.Error{Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	timeoutErr := &genauth.Error{Err: context.DeadlineExceeded, RequestWritten: true}
	lastTry := &taskMeta{id: "task-1", retried: DefaultMaxRetry, maxRetry: DefaultMaxRetry, queue: QueueCritical}

	tests := []handlerCase{
		{
			name: "sent", wantOutcome: OutcomeSent, wantFinal: true, wantCalls: 1,
			wantOps: []string{"acquire", "markSent"},
		},
		{
			name: "422 after an earlier unknown attempt is sent",
			send: reply(nil, genauthErr(422)), begin: begun(history.Begun{Attempt: 2, UnknownAttempts: 1}),
			wantOutcome: OutcomeSent, wantFinal: true, wantCalls: 1, wantOps: []string{"acquire", "markSent"},
			wantReason: "earlier attempt", wantUnknownSeen: 1,
		},
		{
			// The previous attempt began and recorded nothing (its worker
			// died, possibly mid-call): GenAuth's 422 confirms that call.
			name: "422 after an interrupted attempt is sent",
			send: reply(nil, genauthErr(422)), begin: begun(history.Begun{Attempt: 2, Interrupted: true}),
			wantOutcome: OutcomeSent, wantFinal: true, wantCalls: 1, wantOps: []string{"acquire", "markSent"},
			wantReason: "earlier attempt",
		},
		{
			name:        "422 without an earlier unknown is held by genauth",
			send:        reply(nil, genauthErr(422)),
			wantOutcome: OutcomeDeduplicated, wantFinal: true, wantCalls: 1, wantOps: []string{"acquire", "markSent"},
			wantHolder: "genauth",
		},
		{
			name: "422 with policy defer waits for the window",
			send: reply(nil, genauthErr(422)), onHeld: OnHeldDefer,
			wantOutcome: OutcomeDeferred, wantCalls: 1, wantOps: []string{"acquire", "markSent"},
			wantErr: wantRetry, minDelay: windowJitter[0], maxDelay: windowJitter[1], wantHolder: "genauth",
		},
		{
			name:        "throttled with Retry-After",
			send:        reply(nil, &genauth.Error{HTTPStatus: 200, StatusCode: 429, RetryAfter: 7 * time.Second}),
			wantOutcome: OutcomeThrottled, wantCalls: 1, wantOps: []string{"acquire", "release"},
			wantErr: wantRetry, minDelay: 7*time.Second + scheduleSlack, maxDelay: 7*time.Second + scheduleSlack + 700*time.Millisecond,
		},
		{
			name:        "throttled without Retry-After",
			send:        reply(nil, &genauth.Error{HTTPStatus: 429}),
			wantOutcome: OutcomeThrottled, wantCalls: 1, wantOps: []string{"acquire", "release"},
			wantErr: wantRetry, minDelay: DefaultThrottleDelay + scheduleSlack, maxDelay: DefaultThrottleDelay + scheduleSlack + DefaultThrottleDelay/10,
		},
		{
			name:        "dial error retries with backoff",
			send:        reply(nil, dialErr),
			wantOutcome: OutcomeRetrying, wantCalls: 1, wantOps: []string{"acquire", "release"},
			wantErr: wantRetry, wantFailure: true, minDelay: backoffFirst[0], maxDelay: backoffFirst[1],
		},
		{
			name:        "error before any call retries",
			send:        reply(nil, errors.New("connection pool closed")),
			wantOutcome: OutcomeRetrying, wantCalls: 1, wantOps: []string{"acquire", "release"},
			wantErr: wantRetry, wantFailure: true, minDelay: backoffFirst[0], maxDelay: backoffFirst[1],
		},
		{
			name:        "timeout after the request was written is unknown",
			send:        reply(nil, timeoutErr),
			wantOutcome: OutcomeUnknown, wantCalls: 1, wantOps: []string{"acquire", "markUnknown"},
			wantErr: wantRetry, minDelay: windowJitter[0], maxDelay: windowJitter[1],
			wantUnknown: true, wantUnknownSeen: 1,
		},
		{
			name: "unknown with the deadline inside the window expires",
			send: reply(nil, timeoutErr), edit: func(p *Payload) { p.SendBy = testEnqueued.Add(30 * time.Second) },
			wantOutcome: OutcomeExpired, wantFinal: true, wantCalls: 1, wantOps: []string{"acquire", "markUnknown"},
			wantUnknown: true, wantUnknownSeen: 1, wantReason: "may have been sent",
		},
		{
			name:        "held by another task, policy dedupe",
			acquire:     heldBy("task-0", dedupe.StateSent, 40*time.Second),
			wantOutcome: OutcomeDeduplicated, wantFinal: true, wantOps: []string{"acquire"}, wantHolder: "task-0",
		},
		{
			name:    "held by another task, payload asks to defer",
			acquire: heldBy("task-0", dedupe.StateSent, 40*time.Second), edit: func(p *Payload) { p.OnHeld = OnHeldDefer },
			wantOutcome: OutcomeDeferred, wantOps: []string{"acquire"}, wantHolder: "task-0",
			wantErr: wantRetry, minDelay: 40*time.Second + scheduleSlack, maxDelay: 44*time.Second + scheduleSlack,
		},
		{
			name:    "held by another task, worker defaults to defer",
			acquire: heldBy("task-0", dedupe.StateReserved, 40*time.Second), onHeld: OnHeldDefer,
			wantOutcome: OutcomeDeferred, wantOps: []string{"acquire"}, wantHolder: "task-0",
			wantErr: wantRetry, minDelay: 40*time.Second + scheduleSlack, maxDelay: 44*time.Second + scheduleSlack,
		},
		{
			name:    "payload dedupe overrides worker defer",
			acquire: heldBy("task-0", dedupe.StateSent, 40*time.Second), onHeld: OnHeldDefer,
			edit:        func(p *Payload) { p.OnHeld = OnHeldDedupe },
			wantOutcome: OutcomeDeduplicated, wantFinal: true, wantOps: []string{"acquire"}, wantHolder: "task-0",
		},
		{
			name:    "defer past the deadline expires",
			acquire: heldBy("task-0", dedupe.StateSent, 40*time.Second), onHeld: OnHeldDefer,
			edit:        func(p *Payload) { p.SendBy = testEnqueued.Add(20 * time.Second) },
			wantOutcome: OutcomeExpired, wantFinal: true, wantOps: []string{"acquire"}, wantHolder: "task-0",
			wantReason: "deadline",
		},
		{
			name:        "deadline already passed",
			clock:       DefaultSendBy + time.Second,
			wantOutcome: OutcomeExpired, wantFinal: true, wantReason: "deadline",
		},
		{
			name:        "deadline exactly now",
			clock:       DefaultSendBy,
			wantOutcome: OutcomeExpired, wantFinal: true,
		},
		{
			name:        "payload without times uses the first attempt plus the default",
			raw:         []byte(`{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000"}`),
			begin:       begun(history.Begun{Attempt: 3, FirstSeen: testEnqueued.Add(-DefaultSendBy)}),
			wantOutcome: OutcomeExpired, wantFinal: true,
		},
		{
			name:        "re-entered reservation already sent",
			acquire:     reentered(dedupe.StateSent, 30*time.Second),
			wantOutcome: OutcomeSent, wantFinal: true, wantOps: []string{"acquire"}, wantReason: "earlier attempt",
		},
		{
			name:        "re-entered reservation still reserved",
			acquire:     reentered(dedupe.StateReserved, 30*time.Second),
			wantOutcome: OutcomeUnknown, wantOps: []string{"acquire", "markUnknown"},
			wantErr: wantRetry, minDelay: windowJitter[0], maxDelay: windowJitter[1],
			wantUnknown: true, wantUnknownSeen: 1,
		},
		{
			name:    "re-entered reservation already unknown",
			acquire: reentered(dedupe.StateUnknown, 20*time.Second), begin: begun(history.Begun{Attempt: 2, UnknownAttempts: 1}),
			wantOutcome: OutcomeUnknown, wantOps: []string{"acquire"},
			wantErr: wantRetry, minDelay: 20*time.Second + scheduleSlack, maxDelay: 22*time.Second + scheduleSlack,
			wantUnknown: false, wantUnknownSeen: 1,
		},
		{
			name:  "task already finished",
			begin: begun(history.Begun{Attempt: 2, Outcome: OutcomeSent}),
		},
		{
			// Even when the holder already finished as sent: never its result.
			name:        "task ID names another task",
			begin:       begun(history.Begun{Collision: &history.Collision{Queue: QueueLow}}),
			wantOutcome: OutcomeInvalid, wantFinal: true, wantErr: wantSkipRetry,
			wantReason: "task ID already names another task (queue low",
		},
		{
			name:    "colliding task redelivered after its outcome was recorded",
			begin:   begun(history.Begun{Collision: &history.Collision{Queue: QueueLow, Recorded: []byte(`{"outcome":"invalid"}`)}}),
			wantErr: wantSkipRetry,
		},
		{
			name:    "task already failed stays archived",
			begin:   begun(history.Begun{Attempt: 2, Outcome: OutcomeFailed}),
			wantErr: wantSkipRetry,
		},
		{
			name: "last try with Redis failing on the reservation records failed",
			meta: lastTry,
			acquire: func(context.Context, string, string, string) (dedupe.Acquired, dedupe.Reservation, error) {
				return 0, dedupe.Reservation{}, errors.New("connection refused")
			},
			wantOutcome: OutcomeFailed, wantFinal: true, wantOps: []string{"acquire"},
			wantErr: wantLastTry, wantReason: "retries exhausted",
		},
		{
			name: "last try with a transient error fails",
			meta: lastTry, send: reply(nil, genauthErr(500)),
			wantOutcome: OutcomeFailed, wantFinal: true, wantCalls: 1, wantOps: []string{"acquire", "release"},
			wantErr: wantLastTry, wantReason: "retries exhausted",
		},
		{
			name: "last try throttled fails",
			meta: lastTry, send: reply(nil, &genauth.Error{HTTPStatus: 200, StatusCode: 429, RetryAfter: time.Second}),
			wantOutcome: OutcomeFailed, wantFinal: true, wantCalls: 1, wantOps: []string{"acquire", "release"},
			wantErr: wantLastTry, wantReason: "retries exhausted",
		},
		{
			name: "last try unknown fails and keeps the reservation",
			meta: lastTry, send: reply(nil, timeoutErr),
			wantOutcome: OutcomeFailed, wantFinal: true, wantCalls: 1, wantOps: []string{"acquire", "markUnknown"},
			wantErr: wantLastTry, wantReason: "retries exhausted", wantUnknownSeen: 1,
		},
		{
			name:        "context ended before the call",
			cancelBegin: true,
			wantOps:     []string{"acquire", "release"}, wantErr: wantLastTry,
		},
	}
	for _, code := range []int{400, 401, 402, 403, 404} {
		tests = append(tests, handlerCase{
			name:        fmt.Sprintf("permanent %d", code),
			send:        reply(nil, genauthErr(code)),
			wantOutcome: OutcomeFailed, wantFinal: true, wantCalls: 1, wantOps: []string{"acquire", "release"},
			wantErr: wantSkipRetry, wantReason: fmt.Sprintf("statusCode %d", code),
		})
	}
	for _, code := range []int{500, 502, 503, 601, 602} {
		tests = append(tests, handlerCase{
			name:        fmt.Sprintf("retry %d", code),
			send:        reply(nil, genauthErr(code)),
			wantOutcome: OutcomeRetrying, wantCalls: 1, wantOps: []string{"acquire", "release"},
			wantErr: wantRetry, wantFailure: true, minDelay: backoffFirst[0], maxDelay: backoffFirst[1],
		})
	}
	for name, raw := range map[string]string{
		"bad JSON":        `{"channel":`,
		"empty":           ``,
		"unknown channel": `{"channel":"CHANNEL_LOGON","phoneNumber":"13800138000"}`,
		"bad phone":       `{"channel":"CHANNEL_LOGIN","phoneNumber":"12345"}`,
		"fixed line":      `{"channel":"CHANNEL_LOGIN","phoneNumber":"+861065529988"}`,
		"too big":         `{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000","x":"` + strings.Repeat("x", MaxPayloadSize) + `"}`,
		"wrong types":     `{"channel":7,"phoneNumber":["13800138000"]}`,
		"null":            `null`,
		"clientIp zone":   `{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000","clientIp":"fe80::1%1.2.3.4, 6.6.6.6"}`,
		"clientIp CR/LF":  `{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000","clientIp":"fe80::1%\r\nX-Evil: 1"}`,
	} {
		tests = append(tests, handlerCase{
			name: "invalid: " + name, raw: []byte(raw),
			wantOutcome: OutcomeInvalid, wantFinal: true, wantErr: wantSkipRetry,
		})
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, err, sender, resv, journal := runCase(t, tc)
			checkCase(t, tc, res, err, sender, resv, journal)
		})
	}
}

func TestProcessTaskSendsNormalisedRequest(t *testing.T) {
	t.Parallel()
	tc := handlerCase{edit: func(p *Payload) {
		p.PhoneNumber, p.PhoneCountryCode = "+86 138-0013 8000", ""
		p.ClientIP, p.Lang = "203.0.113.7", "en-US"
	}}
	res, err, sender, _, journal := runCase(t, tc)
	if err != nil {
		t.Fatalf("ProcessTask: %v", err)
	}
	calls := sender.calls()
	if len(calls) != 1 {
		t.Fatalf("GenAuth calls = %d, want 1", len(calls))
	}
	want := genauth.SendSMSRequest{Channel: genauth.ChannelLogin, PhoneNumber: testNational, PhoneCountryCode: "+86", ClientIP: "203.0.113.7", Lang: "en-US"}
	if calls[0] != want {
		t.Fatalf("request = %+v, want %+v", calls[0], want)
	}
	if res.StatusCode != 200 || res.HTTPStatus != 200 || res.RequestID != "req-ok" || res.Class != "sent" || res.Queue != QueueCritical {
		t.Fatalf("Result = %+v, want GenAuth's answer, class sent, queue critical", res)
	}
	if res.Attempt != 1 || !res.SendBy.Equal(testEnqueued.Add(DefaultSendBy)) || !res.EnqueuedAt.Equal(testEnqueued) {
		t.Fatalf("Result = %+v, want attempt 1 and the task's times", res)
	}
	if n := journal.begins; n != 1 {
		t.Fatalf("Begin called %d times, want 1", n)
	}
}

func TestProcessTaskRefusesWithoutTaskID(t *testing.T) {
	t.Parallel()
	res, err, sender, resv, _ := runCase(t, handlerCase{meta: &taskMeta{maxRetry: 5}})
	if !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("error = %v, want SkipRetry", err)
	}
	if len(sender.calls()) != 0 || len(resv.ops()) != 0 || res.Outcome != "" {
		t.Fatalf("calls %d, ops %q, result %+v; want nothing done", len(sender.calls()), resv.ops(), res)
	}
	// ProcessTask outside asynq has no task ID either.
	h, err := NewHandler(HandlerConfig{Sender: sender, Reservations: resv, Journal: &fakeJournal{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.ProcessTask(context.Background(), newTestTask(t, nil)); !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("ProcessTask without asynq context: error = %v, want SkipRetry", err)
	}
}

func TestProcessTaskBookkeepingErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("redis down")
	t.Run("begin", func(t *testing.T) {
		t.Parallel()
		_, err, sender, resv, _ := runCase(t, handlerCase{begin: func(context.Context, string, time.Time) (history.Begun, error) { return history.Begun{}, boom }})
		if !errors.Is(err, boom) || errors.Is(err, asynq.SkipRetry) {
			t.Fatalf("error = %v, want the Begin error, retried", err)
		}
		if len(sender.calls()) != 0 || len(resv.ops()) != 0 {
			t.Fatalf("calls %d, ops %q; want none", len(sender.calls()), resv.ops())
		}
	})
	t.Run("acquire", func(t *testing.T) {
		t.Parallel()
		_, err, sender, _, _ := runCase(t, handlerCase{acquire: func(context.Context, string, string, string) (dedupe.Acquired, dedupe.Reservation, error) {
			return 0, dedupe.Reservation{}, boom
		}})
		if !errors.Is(err, boom) || errors.Is(err, asynq.SkipRetry) {
			t.Fatalf("error = %v, want the Acquire error, retried", err)
		}
		if len(sender.calls()) != 0 {
			t.Fatalf("GenAuth calls = %d, want 0", len(sender.calls()))
		}
	})
	t.Run("final record without a call", func(t *testing.T) {
		t.Parallel()
		// Past its deadline: nothing was asked of GenAuth, so a rerun
		// decides the same again.
		journal := &fakeJournal{RecordFunc: func(context.Context, string, history.Entry, bool) error { return boom }}
		h, err := NewHandler(HandlerConfig{Sender: &fakeSender{}, Reservations: &fakeReserver{}, Journal: journal,
			Now: func() time.Time { return testEnqueued.Add(time.Hour) }})
		if err != nil {
			t.Fatal(err)
		}
		err = h.processTask(context.Background(), newTestTask(t, nil), taskMeta{id: "task-1", maxRetry: 5})
		if !errors.Is(err, boom) {
			t.Fatalf("error = %v, want the Record error so that the task runs again", err)
		}
		if h.pending.size() != 0 {
			t.Fatalf("%d outcomes kept, want none", h.pending.size())
		}
	})
}

// downJournal is a fakeJournal whose writes fail while down is set, and
// whose Begin reads back the final outcome written, as history.Store does.
type downJournal struct {
	fakeJournal
	down    atomic.Bool
	mu      sync.Mutex
	written []history.Entry
}

func newDownJournal(boom error, begin bool) *downJournal {
	j := &downJournal{}
	j.RecordFunc = func(_ context.Context, _ string, e history.Entry, _ bool) error {
		if j.down.Load() {
			return boom
		}
		j.mu.Lock()
		j.written = append(j.written, e)
		j.mu.Unlock()
		return nil
	}
	if !begin {
		return j
	}
	j.BeginFunc = func(_ context.Context, _ string, now time.Time) (history.Begun, error) {
		if j.down.Load() {
			return history.Begun{}, boom
		}
		b := history.Begun{Attempt: 1, FirstSeen: now}
		if n := j.finalSent(); n > 0 {
			b.Outcome = OutcomeSent
		}
		return b, nil
	}
	return j
}

// finalSent counts the final sent entries written.
func (j *downJournal) finalSent() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := 0
	for _, e := range j.written {
		if e.Final && e.Outcome == OutcomeSent {
			n++
		}
	}
	return n
}

// TestProcessTaskKeepsDefiniteOutcomes: GenAuth accepted the send but Redis
// refuses the journal entry and the sent mark. The handler must keep the
// outcome and write it once Redis takes writes, never let the task run
// again on state that does not know of the send, and never call GenAuth a
// second time.
func TestProcessTaskKeepsDefiniteOutcomes(t *testing.T) {
	t.Parallel()
	boom := errors.New("OOM command not allowed when used memory > 'maxmemory'")
	newHandler := func(t *testing.T, journal Journal, sender *fakeSender, resv *fakeReserver, every time.Duration) *Handler {
		h, err := NewHandler(HandlerConfig{Sender: sender, Reservations: resv, Journal: journal,
			Now: func() time.Time { return testEnqueued.Add(time.Second) }})
		if err != nil {
			t.Fatal(err)
		}
		h.pending.every = every
		return h
	}
	meta := taskMeta{id: "task-1", maxRetry: DefaultMaxRetry}
	// endsAfterSend is a sender whose call succeeds as Redis fills up and
	// the task's context ends (its timeout, say) before the record.
	endsAfterSend := func(journal *downJournal) (*fakeSender, context.Context) {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		return &fakeSender{SendSMSFunc: func(context.Context, genauth.SendSMSRequest) (*genauth.Response, error) {
			journal.down.Store(true)
			cancel()
			return &genauth.Response{HTTPStatus: 200, StatusCode: 200}, nil
		}}, ctx
	}

	t.Run("written while the task is held", func(t *testing.T) {
		t.Parallel()
		journal, sender, resv := newDownJournal(boom, false), &fakeSender{}, &fakeReserver{}
		journal.down.Store(true) // after the attempt opened
		h := newHandler(t, journal, sender, resv, 5*time.Millisecond)
		var up atomic.Bool
		time.AfterFunc(100*time.Millisecond, func() { up.Store(true); journal.down.Store(false) })
		if err := h.processTask(context.Background(), newTestTask(t, nil), meta); err != nil {
			t.Fatalf("error = %v, want nil: the send is recorded once Redis takes writes", err)
		}
		if !up.Load() {
			t.Fatalf("returned before Redis took the write")
		}
		if journal.finalSent() != 1 || h.pending.size() != 0 {
			t.Fatalf("final sent entries %d, kept %d; want 1 written, none kept", journal.finalSent(), h.pending.size())
		}
		if got := resv.ops(); len(got) < 3 || got[0] != "acquire" || slices.ContainsFunc(got[1:], func(op string) bool { return op != "markSent" }) {
			t.Fatalf("reservation ops %q, want the sent mark written again with each try of the entry, nothing else", got)
		}
		if len(sender.calls()) != 1 {
			t.Fatalf("GenAuth calls %d, want 1", len(sender.calls()))
		}
	})

	t.Run("kept past the task's context", func(t *testing.T) {
		t.Parallel()
		journal, resv := newDownJournal(boom, true), &fakeReserver{}
		sender, ctx := endsAfterSend(journal)
		// Only the redelivery may write the kept outcome here.
		h := newHandler(t, journal, sender, resv, time.Hour)
		err := h.processTask(ctx, newTestTask(t, nil), meta)
		if !errors.Is(err, boom) || errors.Is(err, asynq.SkipRetry) {
			t.Fatalf("error = %v, want the Record error (asynq has taken the task back)", err)
		}
		if !h.pending.holds("task-1") {
			t.Fatal("the sent outcome is not kept")
		}
		// A redelivery while Redis still refuses writes acts on nothing.
		if err := h.processTask(context.Background(), newTestTask(t, nil), meta); err == nil {
			t.Fatal("redelivery with its outcome still kept: error nil, want a retry")
		}
		if len(sender.calls()) != 1 {
			t.Fatalf("GenAuth calls %d, want 1", len(sender.calls()))
		}
		// Redis is back: the redelivery writes the kept outcome first and
		// finds the task finished.
		journal.down.Store(false)
		if err := h.processTask(context.Background(), newTestTask(t, nil), meta); err != nil {
			t.Fatalf("redelivery after Redis returned: error = %v, want nil", err)
		}
		if len(sender.calls()) != 1 || journal.finalSent() != 1 {
			t.Fatalf("GenAuth calls %d, final sent entries %d; want 1 and 1", len(sender.calls()), journal.finalSent())
		}
	})

	t.Run("written by the flusher", func(t *testing.T) {
		t.Parallel()
		journal := newDownJournal(boom, false)
		sender, ctx := endsAfterSend(journal)
		h := newHandler(t, journal, sender, &fakeReserver{}, 5*time.Millisecond)
		_ = h.processTask(ctx, newTestTask(t, nil), meta)
		if h.pending.size() != 1 {
			t.Fatalf("kept %d outcomes, want 1", h.pending.size())
		}
		journal.down.Store(false)
		deadline := time.Now().Add(5 * time.Second)
		for h.pending.size() > 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if h.pending.size() != 0 || journal.finalSent() != 1 {
			t.Fatalf("kept %d, final sent entries %d; want the flusher to write it", h.pending.size(), journal.finalSent())
		}
	})

	t.Run("shutdown reports what it could not write", func(t *testing.T) {
		t.Parallel()
		journal := newDownJournal(boom, false)
		sender, ctx := endsAfterSend(journal)
		h := newHandler(t, journal, sender, &fakeReserver{}, 5*time.Millisecond)
		_ = h.processTask(ctx, newTestTask(t, nil), meta)
		fctx, fcancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer fcancel()
		if left := h.FlushPending(fctx); left != 1 {
			t.Fatalf("FlushPending left %d, want 1", left)
		}
		journal.down.Store(false)
		if left := h.FlushPending(context.Background()); left != 0 || journal.finalSent() != 1 {
			t.Fatalf("FlushPending left %d, final sent %d; want 0 and 1", left, journal.finalSent())
		}
	})
}

func TestNewHandlerConfig(t *testing.T) {
	t.Parallel()
	ok := HandlerConfig{Sender: &fakeSender{}, Reservations: &fakeReserver{}, Journal: &fakeJournal{}}
	tests := []struct {
		name    string
		edit    func(*HandlerConfig)
		mention string
	}{
		{"no sender", func(c *HandlerConfig) { c.Sender = nil }, "Sender"},
		{"no reservations", func(c *HandlerConfig) { c.Reservations = nil }, "Reservations"},
		{"no journal", func(c *HandlerConfig) { c.Journal = nil }, "Journal"},
		{"bad policy", func(c *HandlerConfig) { c.OnHeld = "later" }, "OnHeld"},
		{"negative SendBy", func(c *HandlerConfig) { c.SendBy = -time.Second }, "SendBy"},
	}
	for _, tt := range tests {
		cfg := ok
		tt.edit(&cfg)
		_, err := NewHandler(cfg)
		if err == nil || !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("%s: NewHandler error = %v, want one naming %s", tt.name, err, tt.mention)
		}
	}
	h, err := NewHandler(ok)
	if err != nil {
		t.Fatalf("NewHandler: %v", err)
	}
	if h.onHeld != OnHeldDedupe || h.sendBy != DefaultSendBy || h.now == nil {
		t.Fatalf("defaults: onHeld %q, sendBy %v; want %q, %v", h.onHeld, h.sendBy, OnHeldDedupe, DefaultSendBy)
	}
}

// TestRetriesSpanTheDeadline: transient failures alone never end a task
// before its send-by deadline. However the jitter falls, DefaultMaxRetry
// retries take at least DefaultSendBy, while the first retry still comes
// within a second and no gap exceeds 30 s, so a task comes through soon
// after an outage ends.
func TestRetriesSpanTheDeadline(t *testing.T) {
	t.Parallel()
	var least, most time.Duration
	for n := range DefaultMaxRetry {
		least += BackoffFloor(n)
		most += 2 * BackoffFloor(n)
		if 2*BackoffFloor(n) > 30*time.Second {
			t.Fatalf("retry %d may wait %s, more than 30 s", n+1, 2*BackoffFloor(n))
		}
	}
	if least < DefaultSendBy {
		t.Fatalf("%d retries may all be over within %s, before the %s send-by deadline", DefaultMaxRetry, least, DefaultSendBy)
	}
	if first := 2 * BackoffFloor(0); first > time.Second {
		t.Fatalf("first retry may wait %s, want within a second", first)
	}
	t.Logf("%d retries span %s to %s", DefaultMaxRetry, least, most)
}

func TestRetryDelayAndIsFailure(t *testing.T) {
	t.Parallel()
	plain := errors.New("boom")
	if !IsFailure(plain) {
		t.Fatal("IsFailure(plain error) = false")
	}
	for n := range 40 {
		d := RetryDelay(n, plain, nil)
		base := min(time.Second<<min(n, 16), 30*time.Second)
		if d < base/2 || d > base {
			t.Fatalf("RetryDelay(%d) = %v, want within [%v, %v]", n, d, base/2, base)
		}
	}
	de := &delayError{err: plain, delay: 3 * time.Second}
	if got := RetryDelay(4, fmt.Errorf("wrapped: %w", de), nil); got != 3*time.Second {
		t.Fatalf("RetryDelay(delayError 3s) = %v", got)
	}
	if IsFailure(de) || !IsFailure(&delayError{err: plain, failure: true}) {
		t.Fatal("IsFailure does not follow delayError.failure")
	}
	if !errors.Is(de, plain) || de.Error() != "boom" {
		t.Fatalf("delayError does not unwrap to its cause")
	}
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLogsNeverHoldThePhoneNumber(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	logger := zerolog.New(&buf).Level(zerolog.DebugLevel)

	swapped := []byte(`{"channel":"13800138000","phoneNumber":"CHANNEL_LOGIN"}`)
	runs := []struct {
		send    func(context.Context, genauth.SendSMSRequest) (*genauth.Response, error)
		acquire func(context.Context, string, string, string) (dedupe.Acquired, dedupe.Reservation, error)
		raw     []byte
		edit    func(*Payload)
	}{
		{},
		{send: reply(nil, genauthErr(400))},
		{send: reply(nil, genauthErr(500))},
		{send: reply(nil, genauthErr(422))},
		{send: reply(nil, &genauth.Error{HTTPStatus: 200, StatusCode: 429, RetryAfter: 7 * time.Second})},
		{send: reply(nil, &genauth.Error{Err: context.DeadlineExceeded, RequestWritten: true})},
		{acquire: heldBy("task-0", dedupe.StateSent, 30*time.Second)},
		{acquire: heldBy("task-0", dedupe.StateSent, 30*time.Second), edit: func(p *Payload) { p.OnHeld = OnHeldDefer }},
		{edit: func(p *Payload) { p.PhoneNumber = "+86 138 0013 8000"; p.PhoneCountryCode = "" }},
		{raw: []byte(`{"channel":"CHANNEL_LOGON","phoneNumber":"13800138000"}`)},
		{raw: []byte(`{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000","clientIp":"x"}`)},
		{raw: []byte(`{"channel":"CHANNEL_LOGIN","phoneNumber":"+8613800138000","phoneCountryCode":"+1"}`)},
		{raw: []byte(`{"channel":"CHANNEL_LOGIN","phoneNumber":"8613800138000","phoneCountryCode":"+44"}`)},
		{raw: swapped},
	}
	for i, r := range runs {
		h, err := NewHandler(HandlerConfig{
			Sender: &fakeSender{SendSMSFunc: r.send}, Reservations: &fakeReserver{AcquireFunc: r.acquire}, Journal: &fakeJournal{},
			Logger: &logger, Now: func() time.Time { return testEnqueued.Add(time.Second) },
		})
		if err != nil {
			t.Fatal(err)
		}
		task := asynq.NewTask(TypeSendSMS, r.raw)
		if r.raw == nil {
			task = newTestTask(t, r.edit)
		}
		_ = h.processTask(context.Background(), task, taskMeta{id: fmt.Sprintf("task-%d", i+1), maxRetry: 5, queue: QueueCritical})
	}
	out := buf.String()
	if strings.Count(out, "\n") < len(runs) {
		t.Fatalf("captured %d log lines, want at least %d:\n%s", strings.Count(out, "\n"), len(runs), out)
	}
	for _, full := range []string{"13800138000", "8613800138000", "0013 8000", "0013-8000"} {
		if strings.Contains(out, full) {
			t.Fatalf("logs hold the full number %q:\n%s", full, out)
		}
	}
	if !strings.Contains(out, `"phone":"+86 138****8000"`) {
		t.Fatalf("logs lack the masked phone field:\n%s", out)
	}
}

// TestLogsMaskPhonesInTaskIDsAndQueues: a raw producer can still put a
// phone number into a task ID or a queue name (smsq's producers refuse
// both); the worker processes the task and keeps the number out of its
// logs.
func TestLogsMaskPhonesInTaskIDsAndQueues(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	logger := zerolog.New(&buf).Level(zerolog.DebugLevel)
	for _, acquire := range []func(context.Context, string, string, string) (dedupe.Acquired, dedupe.Reservation, error){
		nil, heldBy("login_13900139000_0", dedupe.StateSent, 30*time.Second),
	} {
		h, err := NewHandler(HandlerConfig{
			Sender: &fakeSender{}, Reservations: &fakeReserver{AcquireFunc: acquire}, Journal: &fakeJournal{},
			Logger: &logger, Now: func() time.Time { return testEnqueued.Add(time.Second) },
		})
		if err != nil {
			t.Fatal(err)
		}
		_ = h.processTask(context.Background(), newTestTask(t, nil), taskMeta{id: "login_13800138008_1", maxRetry: 5, queue: "13800138040"})
	}
	out := buf.String()
	if !strings.Contains(out, `"task_id":"login_`) || !strings.Contains(out, `"queue":"`) {
		t.Fatalf("logs lack the task_id and queue fields:\n%s", out)
	}
	for _, full := range []string{"13800138008", "13800138040", "13900139000"} {
		if strings.Contains(out, full) {
			t.Fatalf("logs hold the full number %q:\n%s", full, out)
		}
	}
}

// TestOutageWarningsAreRateLimited: during a Redis outage every task in
// flight fails the same way; the worker logs each kind of failure once per
// interval, not once per task, and the next line says how many it held
// back.
func TestOutageWarningsAreRateLimited(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	log := zerolog.New(&buf)
	boom := errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")
	journal := &fakeJournal{BeginFunc: func(context.Context, string, time.Time) (history.Begun, error) { return history.Begun{}, boom }}
	h, err := NewHandler(HandlerConfig{Sender: &fakeSender{}, Reservations: &fakeReserver{}, Journal: journal, Logger: &log})
	if err != nil {
		t.Fatal(err)
	}
	h.repeats.Every = 3 * time.Second
	run := func(n int) {
		for i := range n {
			_ = h.processTask(context.Background(), newTestTask(t, nil), taskMeta{id: fmt.Sprintf("task-%d", i), maxRetry: DefaultMaxRetry})
		}
	}
	run(20)
	if got := strings.Count(buf.String(), "cannot open attempt"); got != 1 {
		t.Fatalf("20 tasks failing on Redis logged %d lines, want 1:\n%s", got, buf.String())
	}
	time.Sleep(3100 * time.Millisecond) // the interval passes
	run(1)
	if got := strings.Count(buf.String(), "cannot open attempt"); got != 2 || !strings.Contains(buf.String(), `"repeated":19`) {
		t.Fatalf("after the interval: %d lines, want 2, the second with repeated 19:\n%s", got, buf.String())
	}
}
