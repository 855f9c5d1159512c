package faults

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/tasks"
	"github.com/smsq/smsq/internal/workertest"
)

// TestMain reports the tests skipped for want of redis-server and removes
// the worker binary built by the first scenario.
func TestMain(m *testing.M) {
	code := redistest.Main(m)
	workertest.Cleanup()
	os.Exit(code)
}

// worker is one running worker process.
type worker = workertest.Process

// taskState is what asynq holds about one task.
type taskState = workertest.Task

var (
	waitFor  = workertest.WaitFor
	isDone   = workertest.IsDone
	pairKey  = workertest.PairKey
	maskPair = workertest.MaskPair
)

// slow skips scenarios that wait for asynq's lease recovery under -short.
func slow(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("slow scenario: waits for asynq lease recovery; run without -short")
	}
}

// config describes one scenario's environment.
type config struct {
	// Window is SMSQ_WINDOW; default 3s.
	Window time.Duration
	// FakeWindow is the fake GenAuth's one-send rule. Default 1ms, so the
	// fake never refuses and every send smsq lets through is visible.
	FakeWindow time.Duration
	// Redis options (AppendOnly for restarts).
	Redis redistest.Options
	// Env holds extra worker settings, NAME=value.
	Env []string
}

// env is one scenario's world: its own Redis, fake GenAuth and workers.
type env struct {
	t      *testing.T
	cfg    config
	redis  *redistest.Server
	rdb    *redis.Client
	fake   *genauthtest.Server
	insp   *asynq.Inspector
	client *smsq.Client
	raw    *asynq.Client
	hist   *history.Store

	mu       sync.Mutex
	workers  *workertest.Group
	enqueued map[string]string // task ID -> queue
	phones   []string          // every number used, digits only, for the log check
}

func newEnv(t *testing.T, cfg config) *env {
	t.Helper()
	if cfg.Window == 0 {
		cfg.Window = 3 * time.Second
	}
	if cfg.FakeWindow == 0 {
		cfg.FakeWindow = time.Millisecond
	}
	e := &env{t: t, cfg: cfg, enqueued: map[string]string{}}
	// The worker carries the race detector when the suite runs with it.
	e.workers = workertest.NewGroup(t, workertest.Binary(t, raceEnabled))
	e.redis = redistest.Start(t, cfg.Redis)
	e.rdb = redis.NewClient(&redis.Options{Addr: e.redis.Addr(), MaxRetries: -1, DialTimeout: time.Second})
	e.fake = genauthtest.NewServer(genauthtest.Options{Window: cfg.FakeWindow})
	e.insp = asynq.NewInspectorFromRedisClient(e.rdb)
	c, err := smsq.NewClient(e.redis.URL())
	if err != nil {
		t.Fatalf("smsq.NewClient: %v", err)
	}
	e.client = c
	e.raw = asynq.NewClientFromRedisClient(e.rdb)
	if e.hist, err = history.New(history.Config{Client: e.rdb}); err != nil {
		t.Fatalf("history.New: %v", err)
	}
	t.Cleanup(func() {
		e.workers.Stop()
		e.fake.Close()
		e.client.Close()
		e.rdb.Close()
		if t.Failed() {
			e.workers.DumpLogs(t, 20000)
		}
	})
	return e
}

// startWorker starts a worker process and waits until it serves; extra
// settings override the scenario's. The worker carries the race detector
// when the suite runs with it.
func (e *env) startWorker(extra ...string) *worker {
	e.t.Helper()
	settings := workertest.Env(e.redis.URL(), e.fake, e.cfg.Window)
	settings = append(settings, e.cfg.Env...)
	settings = append(settings, extra...)
	return e.workers.Start(e.t, settings)
}

// phoneNumber returns the n-th test number in national form (+86 mobile).
func phoneNumber(n int) string { return fmt.Sprintf("1391%07d", n) }

// send enqueues through the producer API and returns the task ID.
func (e *env) send(channel, national string, opts ...smsq.Option) string {
	e.t.Helper()
	r, err := e.client.Send(context.Background(), smsq.Request{Channel: channel, Phone: national}, opts...)
	if err != nil {
		e.t.Fatalf("Send(%s): %v", channel, err)
	}
	e.track(r.TaskID, r.Queue, national)
	return r.TaskID
}

// sendRaw enqueues payload as a foreign producer would, with a raw asynq
// client and asynq's own defaults.
func (e *env) sendRaw(payload []byte, numbers ...string) string {
	e.t.Helper()
	info, err := e.raw.Enqueue(asynq.NewTask(tasks.TypeSendSMS, payload))
	if err != nil {
		e.t.Fatalf("raw enqueue: %v", err)
	}
	e.track(info.ID, info.Queue, numbers...)
	return info.ID
}

func (e *env) track(id, queue string, numbers ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.enqueued[id] = queue
	for _, n := range numbers {
		if d := digits(n); len(d) >= 7 {
			e.phones = append(e.phones, d)
		}
	}
}

func digits(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// states reads every task of the served queues, and the outcome of the
// enqueued tasks asynq no longer holds from the history.
func (e *env) states() (map[string]taskState, error) {
	e.mu.Lock()
	ids := make([]string, 0, len(e.enqueued))
	for id := range e.enqueued {
		ids = append(ids, id)
	}
	e.mu.Unlock()
	return workertest.States(context.Background(), e.insp, e.hist, ids...)
}

// waitDone waits until every enqueued task is completed or archived and
// returns the states.
func (e *env) waitDone(limit time.Duration) map[string]taskState {
	e.t.Helper()
	var last map[string]taskState
	waitFor(e.t, limit, func() (bool, string) {
		st, err := e.states()
		if err != nil {
			return false, "inspector: " + err.Error()
		}
		last = st
		e.mu.Lock()
		defer e.mu.Unlock()
		var open []string
		for id := range e.enqueued {
			if s, ok := st[id]; !ok || !isDone(s.State) {
				open = append(open, id+"="+s.State)
			}
		}
		if len(open) > 0 {
			sort.Strings(open)
			if len(open) > 10 {
				open = append(open[:10], "...")
			}
			return false, fmt.Sprintf("%d tasks not finished: %v", len(open), open)
		}
		return true, ""
	})
	return last
}

// waitFinal waits for one task to finish and returns its state.
func (e *env) waitFinal(id string, limit time.Duration) taskState {
	e.t.Helper()
	var s taskState
	waitFor(e.t, limit, func() (bool, string) {
		st, err := e.states()
		if err != nil {
			return false, "inspector: " + err.Error()
		}
		s = st[id]
		return isDone(s.State), fmt.Sprintf("task %s is %q", id, s.State)
	})
	return s
}

// outcomes counts final outcomes.
func outcomes(st map[string]taskState) map[string]int {
	n := map[string]int{}
	for _, s := range st {
		n[s.Result.Outcome]++
	}
	return n
}

// check runs the invariants every scenario must keep:
//
//	(a) no (phone, channel) pair got two sends inside the window;
//	(b) every enqueued task is completed or archived with a final outcome
//	    recorded in its result, and the outcomes add up;
//	(c) no worker log line holds a full phone number, and no worker
//	    panicked or raced.
func (e *env) check(st map[string]taskState) {
	e.t.Helper()
	e.checkSpacing(e.fake.Sent(), "sends")
	e.checkAccounting(st)
	e.checkLogs()
}

// checkSpacing fails when two of reqs for one pair are closer than the
// window.
func (e *env) checkSpacing(reqs []genauthtest.Request, what string) {
	e.t.Helper()
	for _, c := range workertest.CloseSends(reqs, e.cfg.Window) {
		e.t.Errorf("invariant (a): two %s for %s are %s apart, window %s", what, maskPair(c.Pair), c.Second.Sub(c.First), e.cfg.Window)
	}
}

func (e *env) checkAccounting(st map[string]taskState) {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	counts := map[string]int{}
	for id := range e.enqueued {
		s, ok := st[id]
		switch {
		case !ok:
			e.t.Errorf("invariant (b): task %s is lost", id)
			continue
		case !isDone(s.State):
			e.t.Errorf("invariant (b): task %s is %s, not finished", id, s.State)
			continue
		case !s.HasRes:
			e.t.Errorf("invariant (b): task %s (%s) has no recorded result; last error %q", id, s.State, s.LastErr)
			continue
		case !s.Result.Final || !tasks.IsFinal(s.Result.Outcome):
			e.t.Errorf("invariant (b): task %s (%s) ends with non-final outcome %q", id, s.State, s.Result.Outcome)
		}
		counts[s.Result.Outcome]++
	}
	sum := 0
	for _, o := range tasks.FinalOutcomes {
		sum += counts[o]
	}
	if sum != len(e.enqueued) {
		e.t.Errorf("invariant (b): enqueued %d != sent+deduplicated+expired+failed+invalid %d (%v)", len(e.enqueued), sum, counts)
	}
}

func (e *env) checkLogs() {
	e.t.Helper()
	ws := e.workers.List()
	e.mu.Lock()
	phones := append([]string(nil), e.phones...)
	e.mu.Unlock()
	for _, w := range ws {
		lines := w.Logs(e.t)
		for _, l := range workertest.PhoneLeaks(lines, phones) {
			e.t.Errorf("invariant (c): %s log line %d holds a full phone number: %s", w.Name, l.Line, l.Redacted)
		}
		for i, l := range lines {
			if l.Crash() {
				e.t.Errorf("%s log line %d: %s", w.Name, i+1, l.Raw)
			}
		}
	}
}

// callsByPair groups the fake's requests by pair, in arrival order.
func callsByPair(reqs []genauthtest.Request) map[string][]genauthtest.Request {
	out := map[string][]genauthtest.Request{}
	for _, r := range reqs {
		out[pairKey(r)] = append(out[pairKey(r)], r)
	}
	return out
}
