package ha

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/tasks"
	"github.com/smsq/smsq/internal/workertest"
)

// The load of each run: every pair gets several tasks, so that most are
// deduplicated and some pairs are sent to again after the window.
const (
	totalTasks = 10000
	totalPairs = 2000
	producers  = 16
	window     = 5 * time.Second
)

// lossMargin is how long before a Redis master crash a write acknowledged
// by it may still be missing on its replica. Replication is asynchronous:
// on loopback the replica trails by well under a millisecond, so a second
// is generous and anything older must have survived.
const lossMargin = time.Second

// channels alternate per pair: one phone has a login and a register pair,
// whose reservations share a hash slot.
var channels = []genauth.Channel{genauth.ChannelLogin, genauth.ChannelRegister}

// pairOf returns the national number and channel of task i. Tasks come in
// twos per pair, so that the two race for the reservation, and each pair
// comes back two or three times, so that it is sent to again once its
// window has passed.
func pairOf(i int) (string, genauth.Channel) {
	p := (i / 2) % totalPairs
	return fmt.Sprintf("1391%07d", p/len(channels)), channels[p%len(channels)]
}

// taskID is task i's idempotency key, and so its asynq task ID.
func taskID(i int) string { return fmt.Sprintf("ha-%05d", i) }

// crash is what happens to Redis during a run. It returns when the
// deployment serves again, with the span in which acknowledged writes may
// have been lost: from lostSince (zero when none can be) until servedAt, when
// a new master took writes again. No write succeeds between the crash and
// servedAt, so a reservation missing afterwards was taken before the crash,
// even when its GenAuth call went out after it.
type crash func(t *testing.T) (lostSince, servedAt time.Time)

// TestCluster runs the load on a three-master Redis Cluster and kills a
// worker in the middle of it.
func TestCluster(t *testing.T) {
	long(t)
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	runLoad(t, c.URL(), nil)
}

// TestSentinel runs the load on a Sentinel group, kills a worker and
// crashes the master (SIGKILL) in the middle of it, so that the sentinels
// promote the replica while tasks are being enqueued and processed.
func TestSentinel(t *testing.T) {
	long(t)
	t.Parallel()
	g := redistest.StartSentinelGroup(t)
	runLoad(t, g.URL(), func(t *testing.T) (time.Time, time.Time) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		m, err := g.Master(ctx)
		if err != nil {
			t.Fatal(err)
		}
		at := time.Now()
		m.Kill()
		addr, err := g.WaitNewMaster(ctx, m.Addr())
		if err != nil {
			t.Fatal(err)
		}
		promoted := time.Now()
		t.Logf("master %s killed; sentinels promoted %s after %s", m.Addr(), addr, promoted.Sub(at).Round(time.Millisecond))
		return at.Add(-lossMargin), promoted
	})
}

// runLoad is one run: three workers, ten thousand tasks enqueued
// concurrently, a worker killed (and Redis crashed, when crashRedis is set)
// once processing is under way, a replacement worker started, and the
// checks once every task has finished.
func runLoad(t *testing.T, url string, crashRedis crash) {
	start := time.Now()
	e := newEnv(t, url, window)
	for range 3 {
		e.startWorker()
	}
	t.Logf("%d workers up after %s", 3, time.Since(start).Round(time.Millisecond))

	// Producers: each Send carries an idempotency key so that a Send that
	// failed during a failover can be retried without queueing the task
	// twice; ErrDuplicate on a retry means the first one went through.
	ackedAt := make([]time.Time, totalTasks)
	var retries, sendErrs sync.Map
	next := make(chan int)
	var wg sync.WaitGroup
	enqStart := time.Now()
	for range producers {
		wg.Go(func() {
			for i := range next {
				national, ch := pairOf(i)
				deadline := time.Now().Add(60 * time.Second)
				for attempt := 0; ; attempt++ {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					_, err := e.client.Send(ctx, smsq.Request{Channel: string(ch), Phone: national}, smsq.WithIdempotencyKey(taskID(i)))
					cancel()
					if err == nil || (attempt > 0 && errors.Is(err, smsq.ErrDuplicate)) {
						ackedAt[i] = time.Now()
						if attempt > 0 {
							retries.Store(i, attempt)
						}
						break
					}
					if time.Now().After(deadline) {
						sendErrs.Store(i, err)
						break
					}
					time.Sleep(100 * time.Millisecond) // producer back-off while Redis fails over
				}
			}
		})
	}
	enqDone := make(chan struct{})
	go func() {
		for i := range totalTasks {
			next <- i
		}
		close(next)
		wg.Wait()
		close(enqDone)
	}()

	// Mid-run: once a tenth of the GenAuth calls are made, crash Redis
	// (Sentinel) and then a worker.
	waitFor(t, 60*time.Second, func() (bool, string) {
		n := e.fake.Calls()
		return n >= totalPairs/10, fmt.Sprintf("%d GenAuth calls so far", n)
	})
	var lostSince, servedAt time.Time
	if crashRedis != nil {
		lostSince, servedAt = crashRedis(t)
	}
	// Kill a worker with calls in flight: GenAuth's answers are held until
	// more calls wait than the other two workers can make at once
	// (SMSQ_CONCURRENCY each), so that some of them are the victim's.
	e.fake.Hold()
	waitFor(t, 4*time.Second, func() (bool, string) {
		n := e.fake.InFlight()
		return n > 2*workertest.Concurrency, fmt.Sprintf("%d calls held", n)
	})
	victim := e.workers.List()[0]
	victim.Kill9(t)
	killedAt := time.Now()
	e.fake.Release()
	t.Logf("killed %s at +%s (%d GenAuth calls so far)", victim.Name, killedAt.Sub(start).Round(time.Millisecond), e.fake.Calls())
	// A supervisor restarts the crashed worker. asynq hands the killed
	// worker's tasks to the next recoverer pass that finds their lease
	// expired for 30 s: the replacement's first pass after a minute.
	e.startWorker()

	select {
	case <-enqDone:
	case <-time.After(90 * time.Second):
		t.Fatal("enqueueing did not finish in 90s")
	}
	enqTook := time.Since(enqStart)
	nRetried := 0
	retries.Range(func(_, _ any) bool { nRetried++; return true })
	sendErrs.Range(func(k, v any) bool {
		t.Errorf("Send of task %d failed for a minute: %v", k, v)
		return true
	})
	t.Logf("enqueued %d tasks in %s (%.0f/s), %d after retries", totalTasks, enqTook.Round(time.Millisecond), totalTasks/enqTook.Seconds(), nRetried)

	// Wait until no task is left to run, noting when most had finished.
	// (A task lost with a crashed master never finishes: the accounting
	// below decides whether its loss is tolerated.)
	var mostAt time.Time
	var done int
	waitEvery(t, 170*time.Second, time.Second, func() (bool, string) {
		n, open, err := e.progress()
		if err != nil {
			return false, "inspector: " + err.Error()
		}
		done = n
		if mostAt.IsZero() && n >= totalTasks*99/100 {
			mostAt = time.Now()
		}
		if open == 0 {
			return true, ""
		}
		return false, fmt.Sprintf("%d of %d tasks finished, %d to run", n, totalTasks, open)
	})
	doneAt := time.Now()
	st, err := e.states()
	if err != nil {
		t.Fatalf("inspector: %v", err)
	}
	t.Logf("99%% finished after %s (%.0f tasks/s from the first enqueue), all after %s",
		mostAt.Sub(enqStart).Round(time.Millisecond), totalTasks*0.99/mostAt.Sub(enqStart).Seconds(), doneAt.Sub(enqStart).Round(time.Millisecond))

	// Every task reached a recorded final outcome, in asynq's result and
	// in the history, and the outcomes add up.
	ctx := context.Background()
	counts := map[string]int{}
	var lostTolerated, fromHistory, mismatched int
	for i := range totalTasks {
		id := taskID(i)
		s, ok := st[id]
		histOutcome, histFinal, err := e.historyOutcome(ctx, id)
		if err != nil {
			t.Fatalf("history of %s: %v", id, err)
		}
		switch {
		case !ok:
			if !lostSince.IsZero() && !ackedAt[i].Before(lostSince) && ackedAt[i].Before(servedAt) {
				// Acknowledged by the master just before it crashed and not
				// yet on the replica: asynchronous replication loses it.
				lostTolerated++
				continue
			}
			t.Errorf("task %s (acknowledged at +%s) is lost", id, ackedAt[i].Sub(start).Round(time.Millisecond))
			continue
		case !isDone(s.State):
			t.Errorf("task %s is %s, not finished", id, s.State)
			continue
		}
		outcome := s.Result.Outcome
		if !s.HasRes {
			// The task finished without a result on it: only the history
			// can say how.
			if !histFinal {
				t.Errorf("task %s (%s) has no recorded result, in asynq or in the history; last error %q", id, s.State, s.LastErr)
				continue
			}
			fromHistory++
			outcome = histOutcome
		} else if !s.Result.Final || !tasks.IsFinal(outcome) {
			t.Errorf("task %s (%s) ends with non-final outcome %q", id, s.State, outcome)
		}
		if !histFinal {
			t.Errorf("task %s: history holds no final outcome (asynq result %q)", id, outcome)
		} else if histOutcome != outcome {
			mismatched++
			t.Logf("task %s: asynq result %q, history %q", id, outcome, histOutcome)
		}
		counts[outcome]++
	}
	sum := 0
	for _, o := range tasks.FinalOutcomes {
		sum += counts[o]
	}
	// Every task the listing found finished with a recorded outcome, and
	// asynq's own counters agree on how many finished.
	if sum != done || sum+lostTolerated != totalTasks {
		t.Errorf("outcomes %v add up to %d; asynq counts %d finished; want %d (%d lost in the failover)", counts, sum, done, totalTasks, lostTolerated)
	}
	if counts[tasks.OutcomeSent] < totalPairs-lostTolerated {
		t.Errorf("%d tasks sent, want at least one per pair (%d)", counts[tasks.OutcomeSent], totalPairs)
	}
	t.Logf("outcomes %v; %d from the history only; %d lost in the failover; %d history/result mismatches", counts, fromHistory, lostTolerated, mismatched)
	recovered := 0
	for _, s := range st {
		if strings.Contains(s.LastErr, asynq.ErrLeaseExpired.Error()) {
			recovered++
		}
	}
	if recovered == 0 {
		t.Errorf("no task was recovered from the killed worker (none ran into asynq's lease expiry)")
	}
	t.Logf("%d tasks recovered from the killed worker after their lease expired", recovered)

	// No (phone, channel) pair got two sends inside the window. With a
	// Redis crash, the one exception smsq cannot prevent: a reservation
	// taken just before the crash was lost with the master (its GenAuth call
	// may go out after the crash, before the new master serves).
	sent := e.fake.Sent()
	var tolerated int
	for _, c := range workertest.CloseSends(sent, window) {
		if !lostSince.IsZero() && !c.First.Before(lostSince) && c.First.Before(servedAt) && c.Second.After(lostSince.Add(lossMargin)) {
			tolerated++
			t.Logf("pair %s sent twice %s apart across the failover: its reservation was lost with the master", maskPair(c.Pair), c.Second.Sub(c.First).Round(time.Millisecond))
			continue
		}
		t.Errorf("pair %s sent at +%s and +%s, %s apart, inside the %s window", maskPair(c.Pair),
			c.First.Sub(start).Round(time.Millisecond), c.Second.Sub(start).Round(time.Millisecond), c.Second.Sub(c.First).Round(time.Millisecond), window)
	}
	t.Logf("GenAuth: %d calls, %d sends for %d sent outcomes (the killed worker's calls in flight are sent again after recovery); %d double sends across the failover",
		e.fake.Calls(), len(sent), counts[tasks.OutcomeSent], tolerated)

	numbers := make([]string, 0, totalPairs/len(channels))
	for p := 0; p < totalPairs; p += len(channels) {
		national, _ := pairOf(p)
		numbers = append(numbers, national)
	}
	sort.Strings(numbers)
	e.checkLogs(numbers)
	t.Logf("run took %s", time.Since(start).Round(time.Millisecond))
}
