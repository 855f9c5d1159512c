package smsq_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

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
