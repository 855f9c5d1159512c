package faults

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/tasks"
)

func waitCalls(t *testing.T, e *env, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.fake.WaitForCalls(ctx, n); err != nil {
		t.Fatal(err)
	}
}

// TestKill9 kills a worker with calls in flight: some already sent with
// their answers still on the way, others held before GenAuth acted. A new
// worker starts at once, as a supervisor would restart it. asynq hands the
// crashed worker's tasks back only after their lease (30 s) and its
// recoverer's own 30 s of slack have passed, on its one-minute tick: every
// task must then reach a recorded outcome, and no pair may get two calls
// inside the window.
func TestKill9(t *testing.T) {
	slow(t)
	t.Parallel()
	e := newEnv(t, config{Window: 3 * time.Second, Env: []string{"SMSQ_GENAUTH_TIMEOUT=30s"}})
	a := e.startWorker()

	// Four calls that send, then keep their answer past the crash.
	const sentLost, held = 4, 4
	e.fake.Inject(genauthtest.Fault{Kind: genauthtest.FaultTimeout, Latency: time.Minute, Count: sentLost})
	for i := range sentLost {
		e.send("CHANNEL_LOGIN", phoneNumber(6000+i))
	}
	waitCalls(t, e, sentLost)
	// Four calls held before GenAuth does anything.
	e.fake.Hold()
	for i := range held {
		e.send("CHANNEL_LOGIN", phoneNumber(6000+sentLost+i))
	}
	waitCalls(t, e, sentLost+held)
	// Duplicates arriving while the calls are in flight are deduplicated
	// by the reservations.
	var dups []string
	for i := range sentLost + held {
		dups = append(dups, e.send("CHANNEL_LOGIN", phoneNumber(6000+i)))
	}
	for _, id := range dups {
		if s := e.waitFinal(id, 20*time.Second); s.Result.Outcome != tasks.OutcomeDeduplicated {
			t.Errorf("duplicate during in-flight call: outcome %q, want deduplicated", s.Result.Outcome)
		}
	}

	a.Kill9(t)
	killed := time.Now()
	e.startWorker()
	e.fake.Release()

	st := e.waitDone(150 * time.Second)
	e.check(st)
	e.checkSpacing(e.fake.Requests(), "calls")

	var rec []time.Duration
	for _, s := range st {
		if s.Result.FinishedAt.After(killed) {
			rec = append(rec, s.Result.FinishedAt.Sub(killed))
			if s.Result.Outcome != tasks.OutcomeSent || s.Result.Attempt != 2 {
				t.Errorf("recovered task %s: outcome %q on attempt %d, want sent on attempt 2", s.ID, s.Result.Outcome, s.Result.Attempt)
			}
		}
	}
	if len(rec) != sentLost+held {
		t.Errorf("%d tasks finished after the crash, want %d", len(rec), sentLost+held)
	}
	sort.Slice(rec, func(i, j int) bool { return rec[i] < rec[j] })
	resent := 0
	for _, calls := range callsByPair(e.fake.Sent()) {
		if len(calls) > 1 {
			resent++
		}
	}
	if len(rec) > 0 {
		t.Logf("kill -9: %d tasks in flight recovered %s to %s after the kill; calls %d; sends %d (%d pairs sent again after the window: their first answer died with the worker); outcomes %v",
			len(rec), rec[0].Round(100*time.Millisecond), rec[len(rec)-1].Round(100*time.Millisecond), e.fake.Calls(), len(e.fake.Sent()), resent, outcomes(st))
	}
}

// TestSigterm stops a worker with SIGTERM while its calls have sent the
// SMS and their answers take 3 s, past a 1 s shutdown timeout: asynq puts
// the tasks back at once while their handlers may still run. Another
// worker picks them up, either at once (it finds the reservations of calls
// that never answered and waits for the window) or only after the window
// has passed (the reservations are gone; the journal still knows the
// attempt was cut off). Either way GenAuth's 422 then confirms the sends:
// one SMS per pair, recorded as sent, no two calls inside the window.
func TestSigterm(t *testing.T) {
	t.Parallel()
	for _, late := range []bool{false, true} {
		name := "other worker running"
		if late {
			name = "worker restarted after the window"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, config{Window: 3 * time.Second, FakeWindow: time.Minute,
				Env: []string{"SMSQ_SHUTDOWN_TIMEOUT=1s", "SMSQ_GENAUTH_TIMEOUT=10s"}})
			a := e.startWorker()
			const n = 4
			e.fake.Inject(genauthtest.Fault{Kind: genauthtest.FaultTimeout, Latency: 3 * time.Second, Count: n})
			for i := range n {
				e.send("CHANNEL_VERIFY_MFA", phoneNumber(6100+i))
			}
			waitCalls(t, e, n)
			called := time.Now()
			if !late {
				e.startWorker()
			}
			stopped := a.Term(t, 15*time.Second)
			if late {
				time.Sleep(time.Until(called.Add(e.cfg.Window + time.Second))) // let the reservations expire
				e.startWorker()
			}
			st := e.waitDone(45 * time.Second)
			e.check(st)
			e.checkSpacing(e.fake.Requests(), "calls")
			if got := len(e.fake.Sent()); got != n {
				t.Errorf("sends %d, want %d (one per pair)", got, n)
			}
			for _, s := range st {
				if s.Result.Outcome != tasks.OutcomeSent {
					t.Errorf("task %s: outcome %q (%s), want sent", s.ID, s.Result.Outcome, s.Result.Reason)
				}
			}
			requeued := 0
			for _, l := range a.Logs(t) {
				if strings.HasPrefix(l.Message, "Quitting worker") {
					requeued++
				}
			}
			t.Logf("SIGTERM (%s): worker exited %s after the signal; %d tasks requeued past the shutdown timeout; calls %d, sends %d; outcomes %v",
				name, stopped.Round(10*time.Millisecond), requeued, e.fake.Calls(), len(e.fake.Sent()), outcomes(st))
		})
	}
}

// TestRedisRestart kills Redis (AOF, fsync always) for a few seconds while
// tasks are pending, scheduled, waiting to retry and in flight, then
// starts it again: nothing is lost, the same worker process carries on by
// itself, and the outage is logged once per message and interval, not
// once per poll.
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	const outage = 4 * time.Second
	e := newEnv(t, config{Window: 3 * time.Second, Redis: redistest.Options{AppendOnly: true},
		Env: []string{"SMSQ_CONCURRENCY=4"}})
	w := e.startWorker()
	// An idle worker on an empty queue polls all through the outage.
	idle := e.startWorker("SMSQ_QUEUES=low=1")

	// Retrying: throttled with a Retry-After that outlasts the outage.
	e.fake.Inject(genauthtest.Fault{Kind: genauthtest.FaultBodyStatus, StatusCode: 429, RetryAfter: 6 * time.Second, Count: 2})
	retrying := []string{e.send("CHANNEL_REGISTER", phoneNumber(7000)), e.send("CHANNEL_REGISTER", phoneNumber(7001))}
	waitCalls(t, e, 2)
	waitFor(t, 10*time.Second, func() (bool, string) {
		st, err := e.states()
		if err != nil {
			return false, err.Error()
		}
		for _, id := range retrying {
			if st[id].State != "retry" {
				return false, "task " + id + " is " + st[id].State
			}
		}
		return true, ""
	})
	// In flight: four held calls fill the worker's concurrency.
	e.fake.Hold()
	for i := range 4 {
		e.send("CHANNEL_LOGIN", phoneNumber(7010+i))
	}
	waitCalls(t, e, 6)
	// Pending: no free slot for them.
	for i := range 3 {
		e.send("CHANNEL_LOGIN", phoneNumber(7020+i))
	}
	// Scheduled.
	for i := range 3 {
		e.send("CHANNEL_LOGIN", phoneNumber(7030+i), smsq.WithDelay(3*time.Second))
	}
	before, err := e.states()
	if err != nil {
		t.Fatal(err)
	}
	byState := map[string]int{}
	for _, s := range before {
		byState[s.State]++
	}

	linesBefore := map[*worker]int{w: len(w.Logs(t)), idle: len(idle.Logs(t))}
	e.redis.Kill()
	down := time.Now()
	time.Sleep(outage) // the outage itself, not a wait for a condition
	e.redis.Restart()
	up := time.Now()
	e.fake.Release()

	st := e.waitDone(60 * time.Second)
	recovered := time.Since(up)
	e.check(st)
	for _, x := range []*worker{w, idle} {
		if !x.Alive() {
			t.Fatalf("%s exited during the Redis outage: %v", x.Name, x.Err())
		}
	}
	if got := outcomes(st)[tasks.OutcomeSent]; got != len(st) {
		t.Errorf("sent %d of %d: %v", got, len(st), outcomes(st))
	}

	// Outage logging: asynq's repeated messages are rate-limited per
	// message (30 s), so each appears once however many polls failed.
	perMsg := map[string]int{}
	total := 0
	for _, x := range []*worker{w, idle} {
		for _, l := range x.Logs(t)[linesBefore[x]:] {
			if l.Component != "asynq" || (l.Level != "warn" && l.Level != "error") {
				continue
			}
			total++
			perMsg[x.Name+": "+l.Message]++
		}
	}
	for msg, n := range perMsg {
		t.Logf("outage log line x%d: %s", n, msg)
		if n > 1 {
			t.Errorf("outage message logged %d times, want once per 30 s interval: %s", n, msg)
		}
	}
	polls := int(outage / (100 * time.Millisecond)) // per worker
	if total > polls/2 {
		t.Errorf("%d asynq warnings during a %s outage with %d polls: logging per poll", total, outage, polls)
	}
	t.Logf("Redis restart: tasks before the kill %v; outage %s; all %d tasks sent %s after Redis returned, same worker processes; asynq outage lines %d (distinct %d, polls during outage ~%d)",
		byState, up.Sub(down).Round(10*time.Millisecond), len(st), recovered.Round(10*time.Millisecond), total, len(perMsg), polls)
}
