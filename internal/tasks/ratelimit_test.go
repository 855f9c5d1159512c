package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/smsq/smsq/internal/ratelimit"
	"github.com/smsq/smsq/internal/redistest"
)

// fakeLimiter answers Allow with the waits in order (0 once they run out)
// and logs the channels asked for.
type fakeLimiter struct {
	waits []time.Duration
	err   error

	mu       sync.Mutex
	channels []string
}

func (l *fakeLimiter) Allow(_ context.Context, channel string) (time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.channels = append(l.channels, channel)
	if l.err != nil {
		return 0, l.err
	}
	if len(l.channels) > len(l.waits) {
		return 0, nil
	}
	return l.waits[len(l.channels)-1], nil
}

func (l *fakeLimiter) asked() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.channels)
}

// rateRun is what one rate-limited attempt did.
type rateRun struct {
	res     Result
	err     error
	calls   int
	ops     []string
	slept   []time.Duration
	limiter *fakeLimiter
	records int
}

// runRateLimited runs one attempt at testEnqueued+at whose limiter answers
// waits; sleeping moves the fake clock instead of waiting. sleepErr, when
// set, is what the first sleep returns.
func runRateLimited(t *testing.T, at time.Duration, lim *fakeLimiter, meta *taskMeta, sleepErr error) rateRun {
	t.Helper()
	sender, resv, journal := &fakeSender{}, &fakeReserver{}, &fakeJournal{}
	var mu sync.Mutex
	now := testEnqueued.Add(at)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	h, err := NewHandler(HandlerConfig{
		Sender: sender, Reservations: resv, Journal: journal, Now: clock, RateLimiter: lim,
	})
	if err != nil {
		t.Fatalf("NewHandler: %v", err)
	}
	var run rateRun
	h.sleep = func(ctx context.Context, d time.Duration) error {
		run.slept = append(run.slept, d)
		if sleepErr != nil {
			return sleepErr
		}
		mu.Lock()
		now = now.Add(d)
		mu.Unlock()
		return nil
	}
	m := taskMeta{id: "task-1", maxRetry: DefaultMaxRetry, queue: QueueCritical}
	if meta != nil {
		m = *meta
	}
	run.err = h.processTask(context.Background(), newTestTask(t, nil), m)
	run.calls, run.ops, run.limiter = len(sender.calls()), resv.ops(), lim
	recs := journal.recorded()
	run.records = len(recs)
	if len(recs) > 0 {
		if err := json.Unmarshal(recs[len(recs)-1].entry.Result, &run.res); err != nil {
			t.Fatalf("recorded result is not JSON: %v", err)
		}
	}
	return run
}

func checkOps(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("reservation ops = %q, want %q", got, want)
	}
}

func TestRateLimitAllowsAtOnce(t *testing.T) {
	t.Parallel()
	r := runRateLimited(t, time.Second, &fakeLimiter{}, nil, nil)
	if r.err != nil || r.res.Outcome != OutcomeSent || r.calls != 1 {
		t.Fatalf("outcome %q, err %v, calls %d; want sent, nil, 1", r.res.Outcome, r.err, r.calls)
	}
	if got := r.limiter.asked(); !slices.Equal(got, []string{"CHANNEL_LOGIN"}) {
		t.Fatalf("limiter asked for %q, want [CHANNEL_LOGIN] once", got)
	}
	if len(r.slept) != 0 || r.res.RateWaitMS != 0 {
		t.Fatalf("slept %v, rateWaitMs %d; want no wait", r.slept, r.res.RateWaitMS)
	}
	checkOps(t, r.ops, "acquire", "markSent")
}

func TestRateLimitShortWaitThenSends(t *testing.T) {
	t.Parallel()
	lim := &fakeLimiter{waits: []time.Duration{300 * time.Millisecond, 200 * time.Millisecond}}
	r := runRateLimited(t, time.Second, lim, nil, nil)
	if r.err != nil || r.res.Outcome != OutcomeSent || r.calls != 1 {
		t.Fatalf("outcome %q, err %v, calls %d; want sent, nil, 1", r.res.Outcome, r.err, r.calls)
	}
	if len(r.slept) != 2 || r.slept[0] < 300*time.Millisecond || r.slept[0] > 331*time.Millisecond ||
		r.slept[1] < 200*time.Millisecond || r.slept[1] > 221*time.Millisecond {
		t.Fatalf("slept %v, want about [300ms 200ms]", r.slept)
	}
	if want := (r.slept[0] + r.slept[1]).Milliseconds(); r.res.RateWaitMS != want {
		t.Fatalf("rateWaitMs = %d, want %d", r.res.RateWaitMS, want)
	}
	if got := len(lim.asked()); got != 3 {
		t.Fatalf("limiter asked %d times, want 3", got)
	}
	checkOps(t, r.ops, "acquire", "markSent")
}

// TestRateLimitLongWaitDefers covers a wait longer than RateMaxWait at
// once, and short waits that add up to more than it.
func TestRateLimitLongWaitDefers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		waits     []time.Duration
		sleeps    int
		lastWait  time.Duration
		minWaited time.Duration
	}{
		{name: "one long wait", waits: []time.Duration{5 * time.Second}, lastWait: 5 * time.Second},
		{name: "short waits adding up", waits: []time.Duration{400 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond},
			sleeps: 2, lastWait: 400 * time.Millisecond, minWaited: 800 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runRateLimited(t, time.Second, &fakeLimiter{waits: tt.waits}, nil, nil)
			if r.res.Outcome != OutcomeThrottled || r.res.Final || r.calls != 0 {
				t.Fatalf("outcome %q final=%v, calls %d; want throttled, not final, no call", r.res.Outcome, r.res.Final, r.calls)
			}
			if !strings.Contains(r.res.Reason, "smsq rate limit") {
				t.Fatalf("reason %q does not name the smsq rate limit", r.res.Reason)
			}
			checkOps(t, r.ops, "acquire", "release")
			if len(r.slept) != tt.sleeps {
				t.Fatalf("slept %v, want %d sleeps", r.slept, tt.sleeps)
			}
			if r.err == nil || errors.Is(r.err, asynq.SkipRetry) || IsFailure(r.err) {
				t.Fatalf("error %v: want a retry that is not a failure", r.err)
			}
			lo, hi := tt.lastWait+scheduleSlack, tt.lastWait+scheduleSlack+tt.lastWait/10
			if d := RetryDelay(0, r.err, nil); d < lo || d > hi {
				t.Fatalf("RetryDelay = %v, want within [%v, %v]", d, lo, hi)
			}
			if r.res.RetryInMS != RetryDelay(0, r.err, nil).Milliseconds() {
				t.Fatalf("retryInMs = %d, want the delay asked of asynq", r.res.RetryInMS)
			}
			if r.res.RateWaitMS < tt.minWaited.Milliseconds() {
				t.Fatalf("rateWaitMs = %d, want at least %d", r.res.RateWaitMS, tt.minWaited.Milliseconds())
			}
		})
	}
}

func TestRateLimitPastDeadlineExpires(t *testing.T) {
	t.Parallel()
	sendBy := DefaultSendBy
	tests := []struct {
		name string
		at   time.Duration
		wait time.Duration
	}{
		{"long wait", sendBy - 3*time.Second, 5 * time.Second},
		{"short wait", sendBy - 100*time.Millisecond, 300 * time.Millisecond},
		{"deferral jitter", sendBy - 5*time.Second - 10*time.Millisecond, 5 * time.Second},
	}
	for _, tt := range tests {
		r := runRateLimited(t, tt.at, &fakeLimiter{waits: []time.Duration{tt.wait}}, nil, nil)
		if r.err != nil || r.res.Outcome != OutcomeExpired || !r.res.Final || r.calls != 0 {
			t.Fatalf("%s: outcome %q final=%v, err %v, calls %d; want expired, final, nil, no call", tt.name, r.res.Outcome, r.res.Final, r.err, r.calls)
		}
		if len(r.slept) != 0 {
			t.Fatalf("%s: slept %v, want no wait past the deadline", tt.name, r.slept)
		}
		if !strings.Contains(r.res.Reason, "smsq rate limit") {
			t.Fatalf("%s: reason %q does not name the smsq rate limit", tt.name, r.res.Reason)
		}
		checkOps(t, r.ops, "acquire", "release")
	}
}

func TestRateLimitLastTryFails(t *testing.T) {
	t.Parallel()
	last := &taskMeta{id: "task-1", retried: DefaultMaxRetry, maxRetry: DefaultMaxRetry, queue: QueueCritical}
	r := runRateLimited(t, time.Second, &fakeLimiter{waits: []time.Duration{5 * time.Second}}, last, nil)
	if r.res.Outcome != OutcomeFailed || !r.res.Final || r.err == nil {
		t.Fatalf("outcome %q final=%v, err %v; want failed, final, an error", r.res.Outcome, r.res.Final, r.err)
	}
	checkOps(t, r.ops, "acquire", "release")
}

func TestRateLimiterErrorRetries(t *testing.T) {
	t.Parallel()
	boom := errors.New("redis down")
	r := runRateLimited(t, time.Second, &fakeLimiter{err: boom}, nil, nil)
	if r.res.Outcome != OutcomeRetrying || r.calls != 0 || !errors.Is(r.err, boom) || !IsFailure(r.err) {
		t.Fatalf("outcome %q, calls %d, err %v (failure %v); want retrying, no call, a failure wrapping the cause",
			r.res.Outcome, r.calls, r.err, IsFailure(r.err))
	}
	checkOps(t, r.ops, "acquire", "release")
}

func TestRateLimitWaitCancelled(t *testing.T) {
	t.Parallel()
	r := runRateLimited(t, time.Second, &fakeLimiter{waits: []time.Duration{300 * time.Millisecond}}, nil, context.Canceled)
	if !errors.Is(r.err, context.Canceled) || r.calls != 0 || r.records != 0 {
		t.Fatalf("err %v, calls %d, records %d; want context.Canceled, no call, nothing recorded", r.err, r.calls, r.records)
	}
	checkOps(t, r.ops, "acquire", "release")
}

func TestRateMaxWaitConfig(t *testing.T) {
	t.Parallel()
	cfg := HandlerConfig{Sender: &fakeSender{}, Reservations: &fakeReserver{}, Journal: &fakeJournal{}}
	h, err := NewHandler(cfg)
	if err != nil {
		t.Fatalf("NewHandler: %v", err)
	}
	if h.rateMaxWait != DefaultRateMaxWait || h.limiter != nil {
		t.Fatalf("defaults: rateMaxWait %v, limiter %v; want %v, nil", h.rateMaxWait, h.limiter, DefaultRateMaxWait)
	}
	cfg.RateMaxWait = -time.Second
	if _, err := NewHandler(cfg); err == nil || !strings.Contains(err.Error(), "RateMaxWait") {
		t.Fatalf("NewHandler error = %v, want one naming RateMaxWait", err)
	}
}

func TestSleepCtx(t *testing.T) {
	t.Parallel()
	if err := sleepCtx(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("sleepCtx = %v, want nil", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan error, 1)
	go func() { done <- sleepCtx(ctx, time.Hour) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("sleepCtx on a cancelled context = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("sleepCtx did not return when its context ended")
	}
}

var _ RateLimiter = (*ratelimit.Limiter)(nil)

// TestRateLimitWithRedis runs two attempts through the real limiter: the
// second finds the burst spent and waits inside the handler for its turn.
func TestRateLimitWithRedis(t *testing.T) {
	t.Parallel()
	c := redistest.Start(t).Client()
	lim, err := ratelimit.New(ratelimit.Config{Client: c, Global: ratelimit.Limit{Rate: 10, Period: time.Second, Burst: 1}})
	if err != nil {
		t.Fatal(err)
	}
	sender, journal := &fakeSender{}, &fakeJournal{}
	h, err := NewHandler(HandlerConfig{Sender: sender, Reservations: &fakeReserver{}, Journal: journal, RateLimiter: lim})
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"task-1", "task-2"} {
		task := newTestTask(t, func(p *Payload) { p.EnqueuedAt = time.Now() })
		if err := h.processTask(context.Background(), task, taskMeta{id: id, maxRetry: DefaultMaxRetry}); err != nil {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	recs := journal.recorded()
	if len(recs) != 2 || len(sender.calls()) != 2 {
		t.Fatalf("%d records, %d calls; want 2, 2", len(recs), len(sender.calls()))
	}
	var second Result
	if err := json.Unmarshal(recs[1].entry.Result, &second); err != nil {
		t.Fatal(err)
	}
	if second.Outcome != OutcomeSent || second.RateWaitMS <= 0 {
		t.Fatalf("second attempt: outcome %q, rateWaitMs %d; want sent after a wait", second.Outcome, second.RateWaitMS)
	}
}
