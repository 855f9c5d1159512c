package faults

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/tasks"
)

// backoffFloor is the least delay tasks.Backoff can choose before retry
// n+1 (half of 1s<<n): a retry sooner than that is a hot loop.
func backoffFloor(n int) time.Duration { return tasks.BackoffFloor(n) }

// gapSlack absorbs the difference between the clocks that stamp a retry's
// schedule and the fake's arrival time; lateness is never a failure.
const gapSlack = 20 * time.Millisecond

// schedSlack is asynq's scheduling granularity: it keeps retry times in
// whole Unix seconds (truncated), so a retry may run up to a second before
// the delay the handler asked for. Gaps that the reservation window
// guarantees need no such slack.
const schedSlack = time.Second

// minRetryGap is the least gap asynq can leave before retry n+1.
func minRetryGap(n int) time.Duration { return max(backoffFloor(n)-schedSlack, 0) }

// TestGenAuthFaults runs one task per fault against its own Redis, fake
// and worker, and checks the outcome, the number of calls and sends, and
// that consecutive calls are at least the backoff (or the window, after an
// unknown outcome) apart.
func TestGenAuthFaults(t *testing.T) {
	t.Parallel()
	const window = 3 * time.Second
	cases := []struct {
		name       string
		fakeWindow time.Duration
		env        []string
		faults     []genauthtest.Fault
		before     func(t *testing.T, e *env, phone string) // runs before the task is enqueued
		want       string
		calls      int
		sends      int
		retried    int
		minGaps    []time.Duration // lower bound of the gap before call i+2
	}{
		{
			name:   "5xx burst",
			faults: []genauthtest.Fault{{Kind: genauthtest.FaultBodyStatus, StatusCode: 500, Count: 3}},
			want:   tasks.OutcomeSent, calls: 4, sends: 1, retried: 3,
			minGaps: []time.Duration{minRetryGap(0), minRetryGap(1), minRetryGap(2)},
		},
		{
			name: "provider 601 then 602",
			faults: []genauthtest.Fault{
				{Kind: genauthtest.FaultBodyStatus, StatusCode: 601},
				{Kind: genauthtest.FaultBodyStatus, StatusCode: 602},
			},
			want: tasks.OutcomeSent, calls: 3, sends: 1, retried: 2,
			minGaps: []time.Duration{minRetryGap(0), minRetryGap(1)},
		},
		{
			// A gateway's 502 may hide a send (the upstream connection
			// dropped after GenAuth had the request): wait out the window.
			// Its 503 means nothing reached GenAuth: back off and retry.
			name:   "gateway 502 and 503",
			faults: []genauthtest.Fault{{Kind: genauthtest.FaultHTTPStatus, StatusCode: 502}, {Kind: genauthtest.FaultHTTPStatus, StatusCode: 503}},
			want:   tasks.OutcomeSent, calls: 3, sends: 1, retried: 1,
			minGaps: []time.Duration{window, minRetryGap(0)},
		},
		{
			// A throttle waits for Retry-After and does not spend a retry.
			name:   "429 with Retry-After",
			faults: []genauthtest.Fault{{Kind: genauthtest.FaultBodyStatus, StatusCode: 429, RetryAfter: 2 * time.Second, Count: 2}},
			want:   tasks.OutcomeSent, calls: 3, sends: 1, retried: 0,
			minGaps: []time.Duration{2*time.Second - schedSlack, 2*time.Second - schedSlack},
		},
		{
			// Another system sent to the pair: GenAuth answers 422 and the
			// code it sent is still valid.
			name:       "422 pair sent by another system",
			fakeWindow: time.Minute,
			before: func(t *testing.T, e *env, phone string) {
				c, err := genauth.New(genauth.Config{AppHost: e.fake.URL(), AppID: e.fake.AppID()})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.SendSMS(context.Background(), genauth.SendSMSRequest{Channel: genauth.ChannelLogin, PhoneNumber: phone, PhoneCountryCode: "+86"}); err != nil {
					t.Fatalf("send by another system: %v", err)
				}
			},
			want: tasks.OutcomeDeduplicated, calls: 2, sends: 1,
		},
		{
			name:   "timeout after send",
			env:    []string{"SMSQ_GENAUTH_TIMEOUT=300ms"},
			faults: []genauthtest.Fault{{Kind: genauthtest.FaultTimeout, Latency: 2 * time.Second}},
			// The first SMS went out; the retry comes after the window,
			// and this fake (1 ms rule) accepts it: two codes, a window
			// apart. TestUnknownThen422 covers GenAuth's real rule.
			want: tasks.OutcomeSent, calls: 2, sends: 2,
			minGaps: []time.Duration{window},
		},
		{
			name:   "malformed JSON",
			faults: []genauthtest.Fault{{Kind: genauthtest.FaultMalformed}},
			want:   tasks.OutcomeSent, calls: 2, sends: 1,
			minGaps: []time.Duration{window},
		},
		{
			name:   "connection reset before send",
			faults: []genauthtest.Fault{{Kind: genauthtest.FaultDrop}},
			want:   tasks.OutcomeSent, calls: 2, sends: 1,
			minGaps: []time.Duration{window},
		},
		{
			name:   "connection reset after send",
			faults: []genauthtest.Fault{{Kind: genauthtest.FaultDrop, SendBeforeFailing: true}},
			want:   tasks.OutcomeSent, calls: 2, sends: 2,
			minGaps: []time.Duration{window},
		},
		{
			name:   "malformed JSON after send",
			faults: []genauthtest.Fault{{Kind: genauthtest.FaultMalformed, SendBeforeFailing: true}},
			want:   tasks.OutcomeSent, calls: 2, sends: 2,
			minGaps: []time.Duration{window},
		},
		{
			name:   "permanent failure",
			faults: []genauthtest.Fault{{Kind: genauthtest.FaultBodyStatus, StatusCode: 402}},
			want:   tasks.OutcomeFailed, calls: 1, sends: 0,
		},
		{
			name:   "classification override",
			env:    []string{"SMSQ_CLASSIFY=statusCode:601=permanent"},
			faults: []genauthtest.Fault{{Kind: genauthtest.FaultBodyStatus, StatusCode: 601}},
			want:   tasks.OutcomeFailed, calls: 1, sends: 0,
		},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, config{Window: window, FakeWindow: c.fakeWindow, Env: c.env})
			e.startWorker()
			phone := phoneNumber(2000 + i)
			if c.before != nil {
				c.before(t, e, phone)
			}
			before := e.fake.Calls()
			for _, f := range c.faults {
				e.fake.Inject(f)
			}
			start := time.Now()
			id := e.send("CHANNEL_LOGIN", phone)
			s := e.waitFinal(id, 45*time.Second)
			took := time.Since(start)
			st := e.waitDone(10 * time.Second)
			if c.before == nil {
				e.check(st)
			} else {
				e.checkAccounting(st)
				e.checkLogs()
			}
			if s.Result.Outcome != c.want {
				t.Errorf("outcome %q (%s), want %q", s.Result.Outcome, s.Result.Reason, c.want)
			}
			if s.Retried != c.retried {
				t.Errorf("asynq retried %d, want %d", s.Retried, c.retried)
			}
			reqs := e.fake.Requests()
			if len(reqs) != c.calls {
				t.Errorf("calls %d, want %d", len(reqs), c.calls)
			}
			if got := len(e.fake.Sent()); got != c.sends {
				t.Errorf("sends %d, want %d", got, c.sends)
			}
			ours := reqs[before:]
			var gaps []string
			for j := 1; j < len(ours); j++ {
				gap := ours[j].Time.Sub(ours[j-1].Time)
				gaps = append(gaps, gap.Round(10*time.Millisecond).String())
				if j-1 < len(c.minGaps) && gap < c.minGaps[j-1]-gapSlack {
					t.Errorf("calls %d and %d are %s apart, want at least %s", j, j+1, gap, c.minGaps[j-1])
				}
			}
			t.Logf("%s: outcome %s after %s; calls %d (ours %d), sends %d, asynq retried %d, gaps %v",
				c.name, s.Result.Outcome, took.Round(10*time.Millisecond), len(reqs), len(ours), len(e.fake.Sent()), s.Retried, gaps)

			if c.want == tasks.OutcomeFailed {
				// A definite failure released the reservation: the next
				// task for the pair calls at once, inside the window.
				id2 := e.send("CHANNEL_LOGIN", phone)
				if s2 := e.waitFinal(id2, 20*time.Second); s2.Result.Outcome != tasks.OutcomeSent {
					t.Errorf("task after a definite failure: outcome %q, want sent (reservation not released?)", s2.Result.Outcome)
				}
			}
			if c.want == tasks.OutcomeDeduplicated {
				// GenAuth's 422 keeps the reservation: the next task inside
				// the window does not call.
				n := e.fake.Calls()
				id2 := e.send("CHANNEL_LOGIN", phone)
				if s2 := e.waitFinal(id2, 20*time.Second); s2.Result.Outcome != tasks.OutcomeDeduplicated {
					t.Errorf("task after 422: outcome %q, want deduplicated", s2.Result.Outcome)
				}
				if e.fake.Calls() != n {
					t.Errorf("task after 422 called GenAuth inside the window")
				}
			}
		})
	}
}

// TestGenAuthOutage keeps GenAuth answering 503 for 10 s while tasks
// arrive, then restores it: every task is sent once, and the calls per
// task stay within what the backoff schedule allows in 10 s.
func TestGenAuthOutage(t *testing.T) {
	t.Parallel()
	const outage = 10 * time.Second
	const n = 5
	e := newEnv(t, config{})
	e.startWorker()
	e.fake.Inject(genauthtest.Fault{Kind: genauthtest.FaultHTTPStatus, StatusCode: 503, Count: -1})
	start := time.Now()
	for i := range n {
		e.send("CHANNEL_LOGIN", phoneNumber(3000+i))
	}
	time.Sleep(outage) // the outage itself, not a wait for a condition
	e.fake.ClearFaults()
	st := e.waitDone(60 * time.Second)
	took := time.Since(start)
	e.check(st)
	if got := outcomes(st)[tasks.OutcomeSent]; got != n {
		t.Errorf("sent %d of %d", got, n)
	}
	// Failing calls within the outage: at t = 0 and then after at least
	// minRetryGap(0), minRetryGap(1), ... have passed; asynq's retry cap
	// bounds them too.
	maxFailing := 0
	for elapsed := time.Duration(0); elapsed <= outage; maxFailing++ {
		elapsed += minRetryGap(maxFailing)
	}
	maxCalls := min(maxFailing, tasks.DefaultMaxRetry) + 1
	var perTask []int
	for pair, calls := range callsByPair(e.fake.Requests()) {
		perTask = append(perTask, len(calls))
		if len(calls) > maxCalls {
			t.Errorf("%s: %d calls in a %s outage, backoff allows at most %d", maskPair(pair), len(calls), outage, maxCalls)
		}
		for j := 1; j < len(calls); j++ {
			if gap := calls[j].Time.Sub(calls[j-1].Time); gap < minRetryGap(j-1)-gapSlack {
				t.Errorf("%s: calls %d and %d are %s apart, backoff allows no less than %s", maskPair(pair), j, j+1, gap, minRetryGap(j-1))
			}
		}
		if sent := calls[len(calls)-1]; !sent.Sent {
			t.Errorf("%s: last call not sent", maskPair(pair))
		}
	}
	sort.Ints(perTask)
	t.Logf("outage %s: %d tasks all sent after %s; calls per task %v (bound %d); total calls %d",
		outage, n, took.Round(10*time.Millisecond), perTask, maxCalls, e.fake.Calls())
}

// TestUnknownThen422 loses the answer of a call that sent the SMS (client
// timeout, and a reset connection): smsq must not call again inside its
// window, and after it GenAuth's own rule (here longer than smsq's window,
// as GenAuth's minute is in production when SMSQ_WINDOW is shorter)
// answers 422, which proves the earlier attempt went through: sent, with
// one SMS only.
func TestUnknownThen422(t *testing.T) {
	t.Parallel()
	for i, f := range []genauthtest.Fault{
		{Kind: genauthtest.FaultTimeout, Latency: 2 * time.Second},
		{Kind: genauthtest.FaultDrop, SendBeforeFailing: true},
	} {
		t.Run(f.Kind.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, config{Window: 3 * time.Second, FakeWindow: time.Minute, Env: []string{"SMSQ_GENAUTH_TIMEOUT=300ms"}})
			e.startWorker()
			e.fake.Inject(f)
			id := e.send("CHANNEL_LOGIN", phoneNumber(4000+i))
			s := e.waitFinal(id, 30*time.Second)
			e.check(e.waitDone(5 * time.Second))
			reqs := e.fake.Requests()
			if s.Result.Outcome != tasks.OutcomeSent || s.Result.UnknownAttempts != 1 || s.Result.StatusCode != 422 {
				t.Errorf("result %+v; want sent after one unknown attempt, confirmed by 422", s.Result)
			}
			if !strings.Contains(s.Result.Reason, "confirms") {
				t.Errorf("reason %q does not say the 422 confirms the earlier send", s.Result.Reason)
			}
			if len(reqs) != 2 || len(e.fake.Sent()) != 1 {
				t.Fatalf("calls %d, sends %d; want 2 calls, 1 send", len(reqs), len(e.fake.Sent()))
			}
			if gap := reqs[1].Time.Sub(reqs[0].Time); gap < e.cfg.Window-gapSlack {
				t.Errorf("retry of an unknown outcome %s after the call, inside the %s window", gap, e.cfg.Window)
			}
			t.Logf("%s then 422: outcome %s, calls %d, sends %d, retry after %s", f.Kind, s.Result.Outcome, len(reqs), len(e.fake.Sent()),
				reqs[1].Time.Sub(reqs[0].Time).Round(10*time.Millisecond))
		})
	}
}

// TestDeadline keeps GenAuth down past tasks' send-by deadlines: they end
// expired, never sent late. A task whose answer was lost with a deadline
// shorter than the window ends expired without a second call.
func TestDeadline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, config{Window: 3 * time.Second, Env: []string{"SMSQ_GENAUTH_TIMEOUT=300ms"}})
	e.startWorker()

	// Lost answer, deadline inside the window: no second call.
	e.fake.Inject(genauthtest.Fault{Kind: genauthtest.FaultTimeout, Latency: time.Second})
	lost := e.send("CHANNEL_LOGIN", phoneNumber(5000), smsq.WithSendWithin(2*time.Second))
	if s := e.waitFinal(lost, 20*time.Second); s.Result.Outcome != tasks.OutcomeExpired || s.Result.UnknownAttempts != 1 {
		t.Errorf("lost answer, 2s deadline: outcome %q, unknown attempts %d; want expired, 1", s.Result.Outcome, s.Result.UnknownAttempts)
	}
	if got := e.fake.Calls(); got != 1 {
		t.Errorf("lost answer, 2s deadline: %d calls, want 1", got)
	}

	// GenAuth down past the deadline.
	e.fake.Inject(genauthtest.Fault{Kind: genauthtest.FaultBodyStatus, StatusCode: 503, Count: -1})
	const n = 4
	var ids []string
	for i := range n {
		ids = append(ids, e.send("CHANNEL_REGISTER", phoneNumber(5001+i), smsq.WithSendWithin(3*time.Second)))
	}
	st := e.waitDone(30 * time.Second)
	e.fake.ClearFaults()
	e.check(st)
	for _, id := range ids {
		s := st[id]
		if s.Result.Outcome != tasks.OutcomeExpired {
			t.Errorf("task %s: outcome %q (%s), want expired", id, s.Result.Outcome, s.Result.Reason)
		}
		if !s.Result.FinishedAt.Before(s.Result.SendBy.Add(2 * time.Second)) {
			t.Logf("task %s finished %s after its deadline", id, s.Result.FinishedAt.Sub(s.Result.SendBy))
		}
	}
	for _, r := range e.fake.Requests()[1:] {
		if r.Sent {
			t.Errorf("a send reached GenAuth: %s", maskPair(pairKey(r)))
		}
	}
	t.Logf("deadline: %d tasks expired while GenAuth was down; calls %d; outcomes %v", n, e.fake.Calls(), outcomes(st))
}

// TestGenAuthLongOutage keeps GenAuth answering 503 for 60 s, far longer
// than the first retries take but well inside the tasks' 5-minute send-by
// deadline: no task may end failed; every one is sent once GenAuth is
// back, within the 30 s backoff cap, and never faster than the backoff.
func TestGenAuthLongOutage(t *testing.T) {
	slow(t)
	t.Parallel()
	const outage = 60 * time.Second
	const n = 3
	e := newEnv(t, config{})
	e.startWorker()
	e.fake.Inject(genauthtest.Fault{Kind: genauthtest.FaultHTTPStatus, StatusCode: 503, Count: -1})
	for i := range n {
		e.send("CHANNEL_REGISTER", phoneNumber(3100+i))
	}
	time.Sleep(outage) // the outage itself, not a wait for a condition
	e.fake.ClearFaults()
	back := time.Now()
	st := e.waitDone(60 * time.Second)
	e.check(st)
	var after []time.Duration
	for _, s := range st {
		if s.Result.Outcome != tasks.OutcomeSent {
			t.Errorf("task %s: outcome %q (%s) after a %s outage, want sent", s.ID, s.Result.Outcome, s.Result.Reason, outage)
			continue
		}
		after = append(after, s.Result.FinishedAt.Sub(back))
		if d := s.Result.FinishedAt.Sub(back); d > 30*time.Second+2*time.Second {
			t.Errorf("task %s sent %s after GenAuth returned, want within the 30 s backoff cap", s.ID, d)
		}
	}
	var perTask []int
	for pair, calls := range callsByPair(e.fake.Requests()) {
		perTask = append(perTask, len(calls))
		for j := 1; j < len(calls); j++ {
			if gap := calls[j].Time.Sub(calls[j-1].Time); gap < minRetryGap(j-1)-gapSlack {
				t.Errorf("%s: calls %d and %d are %s apart, backoff allows no less than %s", maskPair(pair), j, j+1, gap, minRetryGap(j-1))
			}
		}
	}
	sort.Ints(perTask)
	sort.Slice(after, func(i, j int) bool { return after[i] < after[j] })
	t.Logf("GenAuth outage %s: outcomes %v; sent %v after it ended; calls per task %v", outage, outcomes(st), after, perTask)
}
