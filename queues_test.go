package smsq_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq"
)

// TestSendRefusesUnservedQueues: a task for a queue no worker serves would
// wait forever without an outcome, so Send refuses it and nothing reaches
// Redis.
func TestSendRefusesUnservedQueues(t *testing.T) {
	t.Parallel()
	c, ins := newClient(t)
	req := smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13800138000"}
	for _, tc := range []struct{ queue, mention string }{
		{"unserved", `queue "unserved": no worker serves this queue (served: critical, default, low)`},
		{"Critical", `did you mean "critical"?`},
		{"critcal", "no worker serves this queue"},
	} {
		_, err := c.Send(context.Background(), req, smsq.WithQueue(tc.queue))
		if !errors.Is(err, smsq.ErrUnservedQueue) || !errors.Is(err, smsq.ErrInvalidRequest) || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("Send to queue %q: %v; want ErrUnservedQueue and ErrInvalidRequest mentioning %q", tc.queue, err, tc.mention)
		}
	}
	if qs, _ := ins.Queues(); len(qs) != 0 {
		t.Fatalf("queues %v exist: a refused task was enqueued", qs)
	}

	// The override queues ahead of a worker that will serve the queue.
	rc, err := c.Send(context.Background(), req, smsq.WithQueue("bulk"), smsq.AllowUnservedQueue())
	if err != nil || rc.Queue != "bulk" {
		t.Fatalf("Send with AllowUnservedQueue: %+v, %v", rc, err)
	}
	// The override does not skip name validation.
	if _, err := c.Send(context.Background(), req, smsq.WithQueue("a}b"), smsq.AllowUnservedQueue()); !errors.Is(err, smsq.ErrInvalidRequest) {
		t.Fatalf("Send to an invalid queue name with the override: %v", err)
	}
}

// TestWithServedQueues: with workers on other queues, the channel's own
// queue is refused too, and the configured ones are accepted.
func TestWithServedQueues(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	c := smsq.NewClientFromRedis(rdb, smsq.WithServedQueues("otp", "bulk"))
	req := smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13800138000"}
	if _, err := c.Send(context.Background(), req); !errors.Is(err, smsq.ErrUnservedQueue) || !strings.Contains(err.Error(), `queue "critical"`) {
		t.Fatalf("Send to the channel's queue critical, served otp and bulk: %v", err)
	}
	rc, err := c.Send(context.Background(), req, smsq.WithQueue("otp"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := asynq.NewInspectorFromRedisClient(rdb).GetTaskInfo("otp", rc.TaskID); err != nil {
		t.Fatalf("task not in queue otp: %v", err)
	}
}
