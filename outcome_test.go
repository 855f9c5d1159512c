package smsq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/outcome"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/tasks"
)

// finish writes what a worker writes when task id ends with r: the
// journal's final entry, then the announcement and stream entry.
func finish(t *testing.T, rdb redis.UniversalClient, id string, r tasks.Result) {
	t.Helper()
	ctx := context.Background()
	hist, err := history.New(history.Config{Client: rdb})
	if err != nil {
		t.Fatal(err)
	}
	r.Final = tasks.IsFinal(r.Outcome) || r.Outcome == tasks.OutcomeBlocked
	data, _ := json.Marshal(r)
	if err := hist.Record(ctx, "hash-1", history.Entry{TaskID: id, Outcome: r.Outcome, Final: r.Final, UpdatedAt: r.FinishedAt, Result: data}, false); err != nil {
		t.Fatal(err)
	}
	if !r.Final {
		return
	}
	s, err := outcome.New(outcome.Config{Client: rdb})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, r.Event(id, "hash-1"), ""); err != nil {
		t.Fatal(err)
	}
}

func realClient(t *testing.T, opts ...smsq.ClientOption) (*smsq.Client, *redis.Client) {
	t.Helper()
	rdb := redistest.Start(t).Client()
	c := smsq.NewClientFromRedis(rdb, opts...)
	t.Cleanup(func() { _ = c.Close() })
	return c, rdb
}

func TestOutcomeStates(t *testing.T) {
	t.Parallel()
	c, rdb := realClient(t)
	ctx := context.Background()

	_, err := c.Outcome(ctx, "never-queued")
	if !errors.Is(err, smsq.ErrNoSuchTask) {
		t.Fatalf("unknown ID: %v, want ErrNoSuchTask", err)
	}
	if _, err := c.Wait(ctx, "never-queued"); !errors.Is(err, smsq.ErrNoSuchTask) {
		t.Fatalf("Wait on an unknown ID: %v, want ErrNoSuchTask", err)
	}

	rc, err := c.Send(ctx, smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13800138000"}, smsq.WithIdempotencyKey("login-1"))
	if err != nil {
		t.Fatal(err)
	}
	o, err := c.Outcome(ctx, rc.TaskID)
	if err != nil || o.Final || o.State != smsq.StatePending || o.Last != "" {
		t.Fatalf("queued task: %+v, %v; want pending", o, err)
	}

	finished := time.Now().Add(-10 * time.Second).UTC().Truncate(time.Millisecond)
	finish(t, rdb, rc.TaskID, tasks.Result{Outcome: tasks.OutcomeDeferred, Queue: "critical", Holder: "other", ReservedForMS: 60_000, FinishedAt: finished})
	o, err = c.Outcome(ctx, rc.TaskID)
	if err != nil || o.Final || o.Last != tasks.OutcomeDeferred {
		t.Fatalf("deferred task: %+v, %v", o, err)
	}
	if o.RetryIn < 40*time.Second || o.RetryIn > 50*time.Second {
		t.Errorf("deferred 10 s ago behind a 60 s reservation: RetryIn %s, want about 50 s", o.RetryIn)
	}

	finish(t, rdb, rc.TaskID, tasks.Result{
		Outcome: tasks.OutcomeDeduplicated, Queue: "critical", Channel: "CHANNEL_LOGIN", Phone: "+86 138****8000",
		IdempotencyKey: "login-1", Holder: "other", ReservedForMS: 60_000, Attempt: 2, FinishedAt: finished,
		EnqueuedAt: finished.Add(-time.Second),
	})
	o, err = c.Outcome(ctx, rc.TaskID)
	if err != nil || !o.Final || o.State != tasks.OutcomeDeduplicated {
		t.Fatalf("deduplicated task: %+v, %v", o, err)
	}
	ev := o.Event
	if ev.TaskID != "login-1" || ev.Key != "login-1" || ev.Queue != "critical" || ev.Phone != "+86 138****8000" ||
		ev.PhoneHash != "hash-1" || ev.Attempts != 2 || ev.RetryInMS != 60_000 || !ev.FinishedAt.Equal(finished) || ev.V != outcome.Version {
		t.Errorf("event %+v", ev)
	}
	if o.RetryIn < 40*time.Second || o.RetryIn > 50*time.Second {
		t.Errorf("deduplicated 10 s ago behind a 60 s reservation: RetryIn %s, want about 50 s", o.RetryIn)
	}
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"state":"deduplicated"`, `"final":true`, `"event":{"v":1,"taskId":"login-1"`, `"retryInMs":`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON %s lacks %s", b, want)
		}
	}
}

// A task queued for a worker yet to serve its queue (AllowUnservedQueue)
// is pending, not unknown, before any worker begins it.
func TestOutcomeOfATaskInAnUnservedQueue(t *testing.T) {
	t.Parallel()
	c, _ := realClient(t, smsq.WithServedQueues("critical"))
	ctx := context.Background()
	rc, err := c.Send(ctx, smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13800138000"}, smsq.WithQueue("later"), smsq.AllowUnservedQueue())
	if err != nil {
		t.Fatal(err)
	}
	if o, err := c.Outcome(ctx, rc.TaskID); err != nil || o.Final || o.State != smsq.StatePending {
		t.Fatalf("Outcome = %+v, %v; want pending", o, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if o, err := c.Wait(wctx, rc.TaskID); !errors.Is(err, context.DeadlineExceeded) || o.State != smsq.StatePending {
		t.Fatalf("Wait = %+v, %v; want pending at the deadline", o, err)
	}
}

// An outcome that lands after Wait read the state pending, before it
// blocks, wakes it through the subscription: the safety re-check is set
// far beyond the test's deadline, so only the announcement can.
func TestWaitSeesOutcomeLandingAfterItsCheck(t *testing.T) {
	t.Parallel()
	c, rdb := realClient(t, smsq.WithWaitRecheck(time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rc, err := c.Send(ctx, smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13800138001"})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	checks := 0
	smsq.SetWaitHook(c, func(id string) {
		checks++
		once.Do(func() {
			finish(t, rdb, id, tasks.Result{Outcome: tasks.OutcomeSent, Queue: "critical", RequestID: "req-1", FinishedAt: time.Now().UTC()})
		})
	})
	o, err := c.Wait(ctx, rc.TaskID)
	if err != nil {
		t.Fatalf("Wait: %v (checks %d)", err, checks)
	}
	if !o.Final || o.State != tasks.OutcomeSent || o.Event.RequestID != "req-1" {
		t.Fatalf("Wait returned %+v", o)
	}
	if checks != 1 {
		t.Errorf("%d checks found the task pending, want 1", checks)
	}
}

// Many waiters on one client share its one subscription, and each wakes for
// its own task only.
func TestWaitManyShareOneSubscription(t *testing.T) {
	t.Parallel()
	c, rdb := realClient(t, smsq.WithWaitRecheck(time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 20
	ids := make([]string, n)
	for i := range n {
		rc, err := c.Send(ctx, smsq.Request{Channel: "CHANNEL_LOGIN", Phone: fmt.Sprintf("1380013%04d", 100+i)})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = rc.TaskID
	}
	got := make(chan string, n)
	for _, id := range ids {
		go func() {
			o, err := c.Wait(ctx, id)
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Error(err)
			}
			got <- o.TaskID + "=" + o.State
		}()
	}
	// Every waiter subscribed before the outcomes land.
	waitRegistered(t, c, ids)
	for _, id := range ids[:n/2] {
		finish(t, rdb, id, tasks.Result{Outcome: tasks.OutcomeSent, Queue: "critical", FinishedAt: time.Now().UTC()})
	}
	for range n / 2 {
		s := <-got
		if !strings.HasSuffix(s, "=sent") {
			t.Errorf("waiter returned %s", s)
		}
	}
	select {
	case s := <-got:
		t.Fatalf("a waiter of an unfinished task returned: %s", s)
	case <-time.After(300 * time.Millisecond):
	}
	n2, err := rdb.PubSubNumSub(ctx, outcome.Channel(outcome.DefaultPrefix)).Result()
	if err != nil {
		t.Fatal(err)
	}
	if subs := n2[outcome.Channel(outcome.DefaultPrefix)]; subs != 1 {
		t.Errorf("%d subscriptions for %d waiters of one client, want 1", subs, n)
	}
	cancel()
	for range n / 2 {
		<-got
	}
}

// A wait that runs out returns the last state read, pending, with the
// context's error.
func TestWaitTimeoutReturnsPending(t *testing.T) {
	t.Parallel()
	c, _ := realClient(t)
	rc, err := c.Send(context.Background(), smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13800138002"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	o, err := c.Wait(ctx, rc.TaskID)
	if !errors.Is(err, context.DeadlineExceeded) || o.Final || o.State != smsq.StatePending || o.TaskID != rc.TaskID {
		t.Fatalf("Wait past its deadline: %+v, %v", o, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(context.Background(), rc.TaskID); err == nil {
		t.Fatal("Wait on a closed client: no error")
	}
}

// waitRegistered waits until every id has a Wait registered on a
// confirmed subscription.
func waitRegistered(t *testing.T, c *smsq.Client, ids []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, id := range ids {
		for smsq.Waiting(c, id) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no Wait registered for %s", id)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}
