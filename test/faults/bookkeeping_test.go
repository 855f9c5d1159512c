package faults

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/tasks"
)

// TestSentThenRedisLost has GenAuth accept calls while Redis cannot take
// the bookkeeping that follows: killed (AOF) or full (maxmemory with
// noeviction) after the calls left and before their answers came back.
// The worker knows the sends went through: it must keep those outcomes
// and write them as soon as Redis takes writes again, so that no task
// comes back through asynq's lease recovery to an unknown state and sends
// a second SMS a window later. Exactly one GenAuth call per task, and
// every outcome recorded within seconds of Redis returning.
//
// The long outage outlasts the tasks' 30 s timeout and their asynq lease:
// asynq takes the tasks back while the worker still holds their outcomes,
// and their redelivery (after lease recovery) finds them sent.
func TestSentThenRedisLost(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		outage time.Duration
		full   bool // maxmemory reached instead of killed
		slow   bool
	}{
		{name: "killed 8s", outage: 8 * time.Second},
		{name: "full 8s", outage: 8 * time.Second, full: true},
		{name: "killed 40s, past the task timeout and lease", outage: 40 * time.Second, slow: true},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.slow {
				slow(t)
			}
			t.Parallel()
			e := newEnv(t, config{Window: 3 * time.Second, Redis: redistest.Options{AppendOnly: true}})
			w := e.startWorker()
			const n = 4
			e.fake.Hold()
			var ids []string
			for j := range n {
				ids = append(ids, e.send("CHANNEL_LOGIN", phoneNumber(8000+10*i+j)))
			}
			waitCalls(t, e, n)
			linesBefore := len(w.Logs(t))

			if c.full {
				if err := e.rdb.ConfigSet(context.Background(), "maxmemory", "1").Err(); err != nil {
					t.Fatal(err)
				}
			} else {
				e.redis.Kill()
			}
			down := time.Now()
			e.fake.Release()     // GenAuth sends and answers 200 while Redis cannot take it
			time.Sleep(c.outage) // the outage itself, not a wait for a condition
			if c.full {
				if err := e.rdb.ConfigSet(context.Background(), "maxmemory", "0").Err(); err != nil {
					t.Fatal(err)
				}
			} else {
				e.redis.Restart()
			}
			up := time.Now()

			// Recorded within seconds: the journal holds every final outcome.
			waitFor(t, 10*time.Second, func() (bool, string) {
				for _, id := range ids {
					h, ok, err := e.hist.Task(context.Background(), id)
					if err != nil {
						return false, err.Error()
					}
					if !ok || !h.Final {
						return false, "task " + id + " has no final outcome in its history yet"
					}
				}
				return true, ""
			})
			recorded := time.Since(up)

			st := e.waitDone(150 * time.Second)
			done := time.Since(up)
			e.check(st)
			if !w.Alive() {
				t.Fatalf("worker exited: %v", w.Err())
			}
			for _, id := range ids {
				if s := st[id]; s.Result.Outcome != tasks.OutcomeSent {
					t.Errorf("task %s: outcome %q (%s), want sent", id, s.Result.Outcome, s.Result.Reason)
				}
			}
			var perTask []int
			for pair, calls := range callsByPair(e.fake.Requests()) {
				perTask = append(perTask, len(calls))
				if len(calls) != 1 {
					t.Errorf("%s: %d GenAuth calls, want exactly 1", maskPair(pair), len(calls))
				}
			}
			sort.Ints(perTask)
			// The outage is logged once per kind of message and 30 s, not
			// once per task in flight or per poll.
			warnings, kinds := 0, map[string]int{}
			for _, l := range w.Logs(t)[linesBefore:] {
				if l.Level == "warn" || l.Level == "error" {
					warnings++
					kinds[l.Component+": "+l.Message]++
				}
			}
			perKind := int(up.Sub(down)/(30*time.Second)) + 1
			for msg, k := range kinds {
				if k > perKind {
					t.Errorf("outage line logged %d times in %s, want at most %d (once per 30 s): %s", k, up.Sub(down).Round(time.Second), perKind, msg)
				}
			}
			t.Logf("sent, then Redis %s: %d tasks, GenAuth calls per task %v, sends %d; every outcome in the history %s after Redis returned, tasks finished %s after (outage %s); outcomes %v; %d warning lines in %d kinds",
				map[bool]string{false: "killed", true: "full"}[c.full], n, perTask, len(e.fake.Sent()),
				recorded.Round(10*time.Millisecond), done.Round(10*time.Millisecond), up.Sub(down).Round(10*time.Millisecond), outcomes(st), warnings, len(kinds))
		})
	}
}
