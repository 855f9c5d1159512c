package smsq_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/redistest"
)

// An idempotency key names one task across every queue: asynq's task IDs
// are unique per queue only, and the queue follows the channel, so the
// same key with another channel or another queue is refused too.
func TestSendRefusesAKeyInUseInAnyQueue(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	c := smsq.NewClientFromRedis(rdb)
	ins := asynq.NewInspectorFromRedisClient(rdb)
	ctx := context.Background()
	if _, err := c.Send(ctx, smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13700000001"}, smsq.WithIdempotencyKey("user-7")); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		req  smsq.Request
		opts []smsq.Option
	}{
		{smsq.Request{Channel: "CHANNEL_REGISTER", Phone: "13700000002"}, nil},
		{smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13700000003"}, []smsq.Option{smsq.WithQueue("low")}},
		{smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13700000001"}, []smsq.Option{smsq.WithQueue("default")}},
	} {
		_, err := c.Send(ctx, tt.req, append(tt.opts, smsq.WithIdempotencyKey("user-7"))...)
		if !errors.Is(err, smsq.ErrDuplicate) || !strings.Contains(err.Error(), "queue critical") {
			t.Errorf("Send(%s) with a key in use = %v, want ErrDuplicate naming queue critical", tt.req.Channel, err)
		}
	}
	for _, q := range []string{"default", "low"} {
		if _, err := ins.GetTaskInfo(q, "user-7"); !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound) {
			t.Errorf("a task user-7 was queued in %s: %v", q, err)
		}
	}
}

// failAsynq fails asynq's next enqueue, as a Redis lost between the claim
// and the enqueue would.
type failAsynq struct{ armed atomic.Bool }

func (f *failAsynq) DialHook(next redis.DialHook) redis.DialHook { return next }
func (f *failAsynq) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (f *failAsynq) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		for _, a := range cmd.Args() {
			if s, ok := a.(string); ok && strings.HasPrefix(s, "asynq:{") && f.armed.CompareAndSwap(true, false) {
				cmd.SetErr(errors.New("connection reset by peer"))
				return cmd.Err()
			}
		}
		return next(ctx, cmd)
	}
}

// A key whose enqueue failed is given back, so that the caller's retry with
// the same key queues the task instead of being told it is a duplicate; a
// key refused by asynq itself (a raw producer's task in the same queue)
// leaves nothing behind either.
func TestSendReleasesTheKeyWhenTheEnqueueFails(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	hook := &failAsynq{}
	rdb.AddHook(hook)
	c := smsq.NewClientFromRedis(rdb)
	ctx := context.Background()
	req := smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13700000001"}
	hook.armed.Store(true)
	if _, err := c.Send(ctx, req, smsq.WithIdempotencyKey("k-fail")); err == nil || errors.Is(err, smsq.ErrDuplicate) {
		t.Fatalf("Send with the enqueue failing = %v, want a plain error", err)
	}
	if _, err := c.Send(ctx, req, smsq.WithIdempotencyKey("k-fail")); err != nil {
		t.Fatalf("retry after a failed enqueue: %v", err)
	}

	raw := asynq.NewClientFromRedisClient(rdb)
	if _, err := raw.Enqueue(asynq.NewTask(smsq.TaskType, []byte(`{}`), asynq.TaskID("k-raw"), asynq.Queue("critical"))); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(ctx, req, smsq.WithIdempotencyKey("k-raw")); !errors.Is(err, smsq.ErrDuplicate) {
		t.Fatalf("Send of a raw task's ID in its queue = %v, want ErrDuplicate", err)
	}
	if n := rdb.Exists(ctx, history.TaskKey(history.DefaultPrefix, "k-raw")).Val(); n != 0 {
		t.Fatalf("the refused Send left its claim behind")
	}
}

// redisLost fails, once armed, asynq's next command and every command
// after it until cleared: Redis lost between a producer's claim and its
// enqueue, so that the claim cannot be given back either.
type redisLost struct{ armed, down atomic.Bool }

func (f *redisLost) DialHook(next redis.DialHook) redis.DialHook { return next }
func (f *redisLost) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if f.down.Load() {
			for _, c := range cmds {
				c.SetErr(errors.New("connection reset by peer"))
			}
			return cmds[0].Err()
		}
		return next(ctx, cmds)
	}
}
func (f *redisLost) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		for _, a := range cmd.Args() {
			if s, ok := a.(string); ok && strings.HasPrefix(s, "asynq:{") && f.armed.CompareAndSwap(true, false) {
				f.down.Store(true)
			}
		}
		if f.down.Load() {
			cmd.SetErr(errors.New("connection reset by peer"))
			return cmd.Err()
		}
		return next(ctx, cmd)
	}
}

// tasksNamed counts the tasks of this ID in smsq's queues.
func tasksNamed(t *testing.T, rdb redis.UniversalClient, id string) int {
	t.Helper()
	ins := asynq.NewInspectorFromRedisClient(rdb)
	n := 0
	for _, q := range []string{"critical", "default", "low"} {
		if _, err := ins.GetTaskInfo(q, id); err == nil {
			n++
		} else if !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound) {
			t.Fatal(err)
		}
	}
	return n
}

// A claim left behind by a producer that lost Redis after claiming (its
// enqueue and its give-back both failed) does not turn the retry into a
// lost code: once the claim is older than the grace, with no task queued
// under it and no worker having begun it, the retry takes it over and
// queues exactly one task; before the grace it is still a duplicate.
// The producer whose enqueue failed retries at once, as the README advises
// (a Redis failover can keep the claim and lose the task): its own claim
// is taken back without waiting out the grace, and a retry that finds the
// task queued is still a duplicate.
func TestSendRetryTakesBackItsOwnClaim(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	lost := &redisLost{}
	rdb.AddHook(lost)
	c := smsq.NewClientFromRedis(rdb, smsq.WithClaimGrace(time.Hour))
	ctx := context.Background()
	req := smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13700000002"}
	lost.armed.Store(true)
	if _, err := c.Send(ctx, req, smsq.WithIdempotencyKey("k-own")); err == nil || errors.Is(err, smsq.ErrDuplicate) {
		t.Fatalf("Send with Redis lost after the claim = %v, want a plain error", err)
	}
	lost.down.Store(false)
	if n := rdb.Exists(ctx, history.TaskKey(history.DefaultPrefix, "k-own")).Val(); n != 1 {
		t.Fatal("no claim was left behind: the test does not reach the gap")
	}
	rc, err := c.Send(ctx, req, smsq.WithIdempotencyKey("k-own"))
	if err != nil {
		t.Fatalf("the same producer's retry within the grace: %v, want its task queued", err)
	}
	if n := tasksNamed(t, rdb, "k-own"); n != 1 || rc.Queue != "critical" {
		t.Fatalf("%d tasks k-own queued (receipt queue %s), want exactly 1 in critical", n, rc.Queue)
	}
	if _, err := c.Send(ctx, req, smsq.WithIdempotencyKey("k-own")); !errors.Is(err, smsq.ErrDuplicate) {
		t.Fatalf("retry of a queued task = %v, want ErrDuplicate", err)
	}
	if n := tasksNamed(t, rdb, "k-own"); n != 1 {
		t.Fatalf("%d tasks k-own, want 1", n)
	}
}

func TestSendTakesOverAClaimLeftWithoutATask(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	lost := &redisLost{}
	rdb.AddHook(lost)
	const grace = 300 * time.Millisecond
	c := smsq.NewClientFromRedis(rdb, smsq.WithClaimGrace(grace))
	ctx := context.Background()
	req := smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13700000001"}
	lost.armed.Store(true)
	_, err := c.Send(ctx, req, smsq.WithIdempotencyKey("k-lost"))
	if err == nil || errors.Is(err, smsq.ErrDuplicate) || !strings.Contains(err.Error(), "stays claimed") {
		t.Fatalf("Send with Redis lost after the claim = %v, want a plain error saying the key stays claimed", err)
	}
	lost.down.Store(false)
	if n := rdb.Exists(ctx, history.TaskKey(history.DefaultPrefix, "k-lost")).Val(); n != 1 {
		t.Fatal("no claim was left behind: the test does not reach the gap")
	}
	// Another producer cannot tell the claim from one still in flight.
	other := smsq.NewClientFromRedis(rdb, smsq.WithClaimGrace(grace))
	if _, err := other.Send(ctx, req, smsq.WithIdempotencyKey("k-lost")); !errors.Is(err, smsq.ErrDuplicate) {
		t.Fatalf("another producer's Send within the grace = %v, want ErrDuplicate", err)
	}
	time.Sleep(grace + 100*time.Millisecond)
	// Another channel's queue too: the key is the task, whatever the queue.
	rc, err := other.Send(ctx, smsq.Request{Channel: "CHANNEL_REGISTER", Phone: "13700000001"}, smsq.WithIdempotencyKey("k-lost"))
	if err != nil {
		t.Fatalf("another producer's Send after the grace: %v", err)
	}
	if n := tasksNamed(t, rdb, "k-lost"); n != 1 || rc.Queue != "default" {
		t.Fatalf("%d tasks k-lost queued (receipt queue %s), want exactly 1 in default", n, rc.Queue)
	}
	// Now queued: a later retry is a duplicate, however old the claim.
	time.Sleep(grace + 100*time.Millisecond)
	if _, err := c.Send(ctx, req, smsq.WithIdempotencyKey("k-lost")); !errors.Is(err, smsq.ErrDuplicate) || !strings.Contains(err.Error(), "queue default") {
		t.Fatalf("retry of a queued task = %v, want ErrDuplicate naming queue default", err)
	}
	if n := tasksNamed(t, rdb, "k-lost"); n != 1 {
		t.Fatalf("%d tasks k-lost, want 1", n)
	}
}

// stallAsynq holds asynq's enqueue of a task until released: a producer
// still between its claim and its enqueue.
type stallAsynq struct {
	armed   atomic.Bool
	stalled chan struct{}
	resume  chan struct{}
}

func (f *stallAsynq) DialHook(next redis.DialHook) redis.DialHook { return next }
func (f *stallAsynq) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (f *stallAsynq) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		for _, a := range cmd.Args() {
			if s, ok := a.(string); ok && strings.HasPrefix(s, "asynq:{") && strings.Contains(s, ":t:") && f.armed.CompareAndSwap(true, false) {
				close(f.stalled)
				<-f.resume
			}
		}
		return next(ctx, cmd)
	}
}

// A producer whose enqueue is in flight is not raced: within the grace a
// retry with its key is a duplicate even though asynq has no task yet.
func TestSendDoesNotTakeOverAClaimInFlight(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	stall := &stallAsynq{stalled: make(chan struct{}), resume: make(chan struct{})}
	stall.armed.Store(true)
	rdb.AddHook(stall)
	c := smsq.NewClientFromRedis(rdb)
	ctx := context.Background()
	req := smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13700000001"}
	first := make(chan error, 1)
	go func() {
		_, err := c.Send(ctx, req, smsq.WithIdempotencyKey("k-flight"))
		first <- err
	}()
	<-stall.stalled
	_, err := c.Send(ctx, smsq.Request{Channel: "CHANNEL_REGISTER", Phone: "13700000001"}, smsq.WithIdempotencyKey("k-flight"))
	close(stall.resume)
	if !errors.Is(err, smsq.ErrDuplicate) {
		t.Fatalf("retry while the first enqueue is in flight = %v, want ErrDuplicate", err)
	}
	if err := <-first; err != nil {
		t.Fatalf("first Send: %v", err)
	}
	if n := tasksNamed(t, rdb, "k-flight"); n != 1 {
		t.Fatalf("%d tasks k-flight, want 1", n)
	}
}

// A claim is never taken over when its task is queued, nor when a worker
// began it (even if asynq no longer has the task), however old it is.
func TestSendNeverTakesOverAQueuedOrBegunTask(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	const grace = 200 * time.Millisecond
	c := smsq.NewClientFromRedis(rdb, smsq.WithClaimGrace(grace))
	ctx := context.Background()
	req := smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13700000001"}
	for _, key := range []string{"k-queued", "k-begun"} {
		if _, err := c.Send(ctx, req, smsq.WithIdempotencyKey(key)); err != nil {
			t.Fatal(err)
		}
	}
	// A worker began k-begun, and its task is gone from asynq (done, not
	// retained).
	ti, err := asynq.NewInspectorFromRedisClient(rdb).GetTaskInfo("critical", "k-begun")
	if err != nil {
		t.Fatal(err)
	}
	journal, _ := history.New(history.Config{Client: rdb})
	if _, err := journal.Begin(ctx, "k-begun", history.IdentityOf(ti.Queue, ti.Payload), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := asynq.NewInspectorFromRedisClient(rdb).DeleteTask(ti.Queue, "k-begun"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(grace + 100*time.Millisecond)
	for key, want := range map[string]int{"k-queued": 1, "k-begun": 0} {
		for _, ch := range []string{"CHANNEL_LOGIN", "CHANNEL_REGISTER"} {
			if _, err := c.Send(ctx, smsq.Request{Channel: ch, Phone: "13700000001"}, smsq.WithIdempotencyKey(key)); !errors.Is(err, smsq.ErrDuplicate) {
				t.Errorf("Send(%s) of %s after the grace = %v, want ErrDuplicate", ch, key, err)
			}
		}
		if n := tasksNamed(t, rdb, key); n != want {
			t.Errorf("%d tasks %s, want %d", n, key, want)
		}
	}
}
