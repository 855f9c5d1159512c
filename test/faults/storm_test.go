package faults

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/tasks"
)

// TestDuplicateStorm enqueues 500 tasks over 50 (phone, channel) pairs at
// once for three worker processes: exactly one GenAuth call per pair, the
// other 450 tasks deduplicated. The window is long enough for the whole
// storm to fit inside it, so every second call would be a violation.
func TestDuplicateStorm(t *testing.T) {
	t.Parallel()
	const pairs, perPair = 50, 10
	e := newEnv(t, config{Window: 60 * time.Second})
	for range 3 {
		e.startWorker()
	}
	channels := genauth.Channels()
	type pair struct{ phone, channel string }
	var jobs []pair
	for i := range pairs {
		p := pair{phoneNumber(1000 + i/2), string(channels[i%2])}
		for range perPair {
			jobs = append(jobs, p)
		}
	}
	// Interleave pairs so that every worker races for every pair.
	start := time.Now()
	var wg sync.WaitGroup
	ids := make([]smsq.Receipt, len(jobs))
	errs := make(chan error, len(jobs))
	for w := range 10 {
		wg.Go(func() {
			for i := w; i < len(jobs); i += 10 {
				r, err := e.client.Send(context.Background(), smsq.Request{Channel: jobs[i].channel, Phone: jobs[i].phone})
				if err != nil {
					errs <- err
					return
				}
				ids[i] = r
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Send: %v", err)
	}
	for i, r := range ids {
		e.track(r.TaskID, r.Queue, jobs[i].phone)
	}
	enqueued := time.Since(start)
	st := e.waitDone(90 * time.Second)
	took := time.Since(start)
	e.check(st)

	n := outcomes(st)
	if n[tasks.OutcomeSent] != pairs || n[tasks.OutcomeDeduplicated] != pairs*(perPair-1) {
		t.Errorf("outcomes %v, want %d sent and %d deduplicated", n, pairs, pairs*(perPair-1))
	}
	if got := e.fake.Calls(); got != pairs {
		t.Errorf("GenAuth calls %d, want %d (one per pair)", got, pairs)
	}
	for pair, calls := range callsByPair(e.fake.Requests()) {
		if len(calls) != 1 {
			t.Errorf("%s: %d calls, want 1", maskPair(pair), len(calls))
		}
	}
	t.Logf("storm: %d tasks over %d pairs, 3 workers: enqueued in %s, all final in %s; GenAuth calls %d; outcomes %v",
		len(jobs), pairs, enqueued.Round(time.Millisecond), took.Round(time.Millisecond), e.fake.Calls(), n)
}
