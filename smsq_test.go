package smsq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/tasks"
)

func newClient(t *testing.T) (*smsq.Client, *asynq.Inspector) {
	t.Helper()
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return smsq.NewClientFromRedis(rdb), asynq.NewInspectorFromRedisClient(rdb)
}

func TestSendQueuesANormalisedTask(t *testing.T) {
	t.Parallel()
	c, ins := newClient(t)
	rc, err := c.Send(context.Background(), smsq.Request{Channel: "CHANNEL_VERIFY_MFA", Phone: "138 0013-8000", ClientIP: "203.0.113.7"},
		smsq.WithIdempotencyKey("mfa-42"), smsq.WithSendWithin(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if rc.TaskID != "mfa-42" || rc.Queue != "critical" || rc.Phone != "+86 138****8000" {
		t.Fatalf("receipt %+v", rc)
	}
	if d := rc.SendBy.Sub(rc.EnqueuedAt); d != 2*time.Minute {
		t.Fatalf("send-by is %s after enqueue, want 2m", d)
	}
	info, err := ins.GetTaskInfo("critical", "mfa-42")
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(info.Payload, &p); err != nil {
		t.Fatal(err)
	}
	if p["channel"] != "CHANNEL_VERIFY_MFA" || p["phoneNumber"] != "13800138000" || p["phoneCountryCode"] != "+86" || p["clientIp"] != "203.0.113.7" {
		t.Fatalf("payload %s", info.Payload)
	}
	if info.Type != smsq.TaskType || info.MaxRetry != tasks.DefaultMaxRetry || info.Retention != 24*time.Hour {
		t.Fatalf("task info %+v", info)
	}

	_, err = c.Send(context.Background(), smsq.Request{Channel: "CHANNEL_VERIFY_MFA", Phone: "13800138000"}, smsq.WithIdempotencyKey("mfa-42"))
	if !errors.Is(err, smsq.ErrDuplicate) {
		t.Fatalf("second Send with the same key: %v, want ErrDuplicate", err)
	}
}

func TestSendOptions(t *testing.T) {
	t.Parallel()
	c, ins := newClient(t)
	rc, err := c.Send(context.Background(), smsq.Request{Channel: "CHANNEL_REGISTER", Phone: "+447911123456"},
		smsq.WithQueue(smsq.QueueLow), smsq.WithDelay(time.Minute), smsq.WithDeferWhenHeld())
	if err != nil {
		t.Fatal(err)
	}
	info, err := ins.GetTaskInfo("low", rc.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != asynq.TaskStateScheduled {
		t.Fatalf("state %v, want scheduled", info.State)
	}
	if !strings.Contains(string(info.Payload), `"onHeld":"defer"`) {
		t.Fatalf("payload %s lacks the defer policy", info.Payload)
	}
	if got := rc.SendBy.Sub(rc.EnqueuedAt); got != 6*time.Minute {
		t.Fatalf("send-by %s after enqueue, want delay + 5m", got)
	}
}

func TestSendRejectsBadInputBeforeRedis(t *testing.T) {
	t.Parallel()
	c, ins := newClient(t)
	tests := []struct {
		req  smsq.Request
		opts []smsq.Option
		want string
	}{
		{smsq.Request{Channel: "CHANNEL_NOPE", Phone: "13800138000"}, nil, "channel"},
		{smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "12345"}, nil, "phoneNumber"},
		{smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "+86 10 6552 9988"}, nil, "not a mobile"},
		{smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13800138000", Lang: "xx"}, nil, "lang"},
		{smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13800138000", ClientIP: "nowhere"}, nil, "clientIp"},
		{smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13800138000", ClientIP: "fe80::1%1.2.3.4, 6.6.6.6"}, nil, "zone"},
		{smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13800138000", ClientIP: "fe80::1%\r\nX-Evil: 1"}, nil, "clientIp"},
		{smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13800138000"}, []smsq.Option{smsq.WithIdempotencyKey("has space")}, "idempotencyKey"},
		{smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13800138000"}, []smsq.Option{smsq.WithSendBy(time.Now().Add(-time.Minute))}, "sendBy"},
		// Phone numbers in task IDs and queue names end up in Redis key
		// names, where nothing can mask them.
		{smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13800138000"}, []smsq.Option{smsq.WithIdempotencyKey("login_13800138008_1")}, "idempotencyKey: the key holds a phone number"},
		{smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13800138000"}, []smsq.Option{smsq.WithQueue("13800138040")}, "queue: the name holds a phone number"},
		{smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13800138000"}, []smsq.Option{smsq.WithQueue("a}b")}, "queue:"},
	}
	for _, tt := range tests {
		_, err := c.Send(context.Background(), tt.req, tt.opts...)
		if !errors.Is(err, smsq.ErrInvalidRequest) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Send(%+v): %v, want ErrInvalidRequest naming %s", tt.req, err, tt.want)
		}
	}
	qs, _ := ins.Queues()
	if len(qs) != 0 {
		t.Fatalf("queues %v exist: something was enqueued", qs)
	}
}

func TestNewClientRedisDown(t *testing.T) {
	t.Parallel()
	c, err := smsq.NewClient("redis://127.0.0.1:1/0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := c.Send(ctx, smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13800138000"}); err == nil {
		t.Fatal("Send with Redis down succeeded")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("Send took %s to fail", time.Since(start))
	}
}

func Example() {
	// A backend service queues a login code; a worker delivers it.
	m, _ := miniredis.Run() // in production: smsq.NewClient(os.Getenv("REDIS_URL"))
	defer m.Close()
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	c := smsq.NewClientFromRedis(rdb)

	rc, err := c.Send(context.Background(),
		smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "+86 138 0013 8000", ClientIP: "203.0.113.7"},
		smsq.WithIdempotencyKey("login-7f3a"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rc.TaskID, rc.Queue, rc.Phone)

	_, err = c.Send(context.Background(), smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "12"})
	fmt.Println(errors.Is(err, smsq.ErrInvalidRequest))
	// Output:
	// login-7f3a critical +86 138****8000
	// true
}

func TestWithOnHeld(t *testing.T) {
	t.Parallel()
	c, ins := newClient(t)
	rc, err := c.Send(context.Background(), smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13800138000"}, smsq.WithOnHeld("dedupe"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := ins.GetTaskInfo(rc.Queue, rc.TaskID)
	if err != nil {
		t.Fatalf("GetTaskInfo: %v", err)
	}
	if !strings.Contains(string(info.Payload), `"onHeld":"dedupe"`) {
		t.Fatalf("payload %s: want onHeld dedupe", info.Payload)
	}
	_, err = c.Send(context.Background(), smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13800138000"}, smsq.WithOnHeld("later"))
	if !errors.Is(err, smsq.ErrInvalidRequest) || !strings.Contains(err.Error(), "onHeld") {
		t.Fatalf("WithOnHeld(\"later\"): %v, want ErrInvalidRequest naming onHeld", err)
	}
}
