package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/tasks"
)

// syncBuffer is a bytes.Buffer safe for the worker's concurrent log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env turns a map into a getenv function.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// startWorker runs the worker in-process until the test ends.
func startWorker(t *testing.T, vars map[string]string) (*worker, *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	ready := make(chan *worker, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, nil, env(vars), logs, logs, &hooks{ready: func(w *worker) { ready <- w }})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("worker did not stop")
		}
	})
	select {
	case w := <-ready:
		return w, logs
	case err := <-done:
		t.Fatalf("worker exited: %v\n%s", err, logs)
	case <-time.After(20 * time.Second):
		t.Fatalf("worker did not start\n%s", logs)
	}
	return nil, nil
}

// waitFinal waits until the task is completed or archived and returns its
// recorded result.
func waitFinal(t *testing.T, ins *asynq.Inspector, queue, id string) (*asynq.TaskInfo, tasks.Result) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := ins.GetTaskInfo(queue, id)
		if err == nil && (info.State == asynq.TaskStateCompleted || info.State == asynq.TaskStateArchived) {
			var r tasks.Result
			if err := json.Unmarshal(info.Result, &r); err != nil {
				t.Fatalf("task %s result %q: %v", id, info.Result, err)
			}
			return info, r
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s in %s did not finish: %+v, %v", id, queue, info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEndToEnd(t *testing.T) {
	srv := redistest.Start(t)
	fake := genauthtest.NewServer(genauthtest.Options{})
	t.Cleanup(fake.Close)
	_, logs := startWorker(t, map[string]string{
		"REDIS_URL":          srv.URL(),
		"GENAUTH_APP_HOST":   fake.URL(),
		"GENAUTH_APP_ID":     fake.AppID(),
		"SMSQ_POLL_INTERVAL": "50ms",
		"SMSQ_LOG_FORMAT":    "json",
		"SMSQ_HTTP_ADDR":     "off",
		"SMSQ_FETCHERS":      "2",
	})
	rdb := srv.Client()
	ins := asynq.NewInspectorFromRedisClient(rdb)

	// One task through the producer package (the enqueue command's path).
	producer := smsq.NewClientFromRedis(rdb)
	rc, err := producer.Send(context.Background(), smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "+86 138-0013-8000"})
	if err != nil {
		t.Fatal(err)
	}
	if rc.Queue != "critical" {
		t.Errorf("login task queue = %q, want critical", rc.Queue)
	}

	// One through a raw asynq client with only GenAuth's three fields.
	raw := asynq.NewClientFromRedisClient(rdb)
	info, err := raw.Enqueue(asynq.NewTask("genauth:send_sms",
		[]byte(`{"channel":"CHANNEL_REGISTER","phoneNumber":"13900139000","phoneCountryCode":"+86"}`)),
		asynq.Queue("low"), asynq.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}

	_, r1 := waitFinal(t, ins, rc.Queue, rc.TaskID)
	_, r2 := waitFinal(t, ins, "low", info.ID)
	for _, r := range []tasks.Result{r1, r2} {
		if r.Outcome != tasks.OutcomeSent || !r.Final || r.StatusCode != 200 || r.RequestID == "" || r.Attempt != 1 || r.Sandbox {
			t.Errorf("result = %+v, want a final sent with GenAuth's statusCode and requestId, not sandbox", r)
		}
	}
	if r1.Phone != "+86 138****8000" || r2.Phone != "+86 139****9000" {
		t.Errorf("masked phones = %q, %q", r1.Phone, r2.Phone)
	}

	got := fake.Requests()
	if len(got) != 2 {
		t.Fatalf("GenAuth got %d calls, want 2: %+v", len(got), got)
	}
	want := map[string]string{"CHANNEL_LOGIN": "13800138000", "CHANNEL_REGISTER": "13900139000"}
	for _, req := range got {
		if want[req.Channel] != req.PhoneNumber || req.PhoneCountryCode != "+86" || req.AppID != fake.AppID() || req.Answer != 200 {
			t.Errorf("GenAuth request %+v: want phone %s, +86, app id %s", req, want[req.Channel], fake.AppID())
		}
	}

	// Ten duplicates of one pair inside the window: one call, nine deduplicated.
	var ids []string
	for i := 0; i < 10; i++ {
		rc, err := producer.Send(context.Background(), smsq.Request{Channel: "CHANNEL_RESET_PASSWORD", Phone: "13700137000"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rc.TaskID)
	}
	outcomes := map[string]int{}
	var holder string
	for _, id := range ids {
		_, r := waitFinal(t, ins, "default", id)
		outcomes[r.Outcome]++
		if r.Outcome == tasks.OutcomeSent {
			holder = id
		}
	}
	if outcomes[tasks.OutcomeSent] != 1 || outcomes[tasks.OutcomeDeduplicated] != 9 {
		t.Fatalf("outcomes = %v, want 1 sent and 9 deduplicated", outcomes)
	}
	for _, id := range ids {
		if _, r := waitFinal(t, ins, "default", id); r.Outcome == tasks.OutcomeDeduplicated && r.Holder != holder {
			t.Errorf("deduplicated task %s names holder %q, want %q", id, r.Holder, holder)
		}
	}
	if n := fake.CallsFor("+86", "13700137000", "CHANNEL_RESET_PASSWORD"); n != 1 {
		t.Errorf("GenAuth calls for the duplicated pair = %d, want 1", n)
	}

	for _, full := range []string{"13800138000", "13900139000", "13700137000"} {
		if strings.Contains(logs.String(), full) {
			t.Fatalf("a full phone number %s appears in the worker log", full)
		}
	}
}

func TestEndToEndPermanentFailureIsArchivedOnce(t *testing.T) {
	srv := redistest.Start(t)
	fake := genauthtest.NewServer(genauthtest.Options{})
	t.Cleanup(fake.Close)
	startWorker(t, map[string]string{
		"REDIS_URL": srv.URL(), "GENAUTH_APP_HOST": fake.URL(), "GENAUTH_APP_ID": "wrong-app",
		"SMSQ_POLL_INTERVAL": "50ms", "SMSQ_HTTP_ADDR": "off",
	})
	rdb := srv.Client()
	rc, err := smsq.NewClientFromRedis(rdb).Send(context.Background(), smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13800138000"})
	if err != nil {
		t.Fatal(err)
	}
	info, r := waitFinal(t, asynq.NewInspectorFromRedisClient(rdb), rc.Queue, rc.TaskID)
	if info.State != asynq.TaskStateArchived || info.Retried != 0 {
		t.Errorf("state %v retried %d, want archived after one attempt", info.State, info.Retried)
	}
	if r.Outcome != tasks.OutcomeFailed || r.StatusCode != 404 {
		t.Errorf("result %+v, want failed with GenAuth statusCode 404", r)
	}
	if fake.Calls() != 1 {
		t.Errorf("GenAuth calls = %d, want 1", fake.Calls())
	}
}

// The worker serves exactly genauth:send_sms: a longer type with the same
// prefix, and any other type, is archived once as invalid, never sent.
func TestEndToEndOtherTaskTypesAreArchivedOnce(t *testing.T) {
	srv := redistest.Start(t)
	fake := genauthtest.NewServer(genauthtest.Options{})
	t.Cleanup(fake.Close)
	startWorker(t, map[string]string{
		"REDIS_URL": srv.URL(), "GENAUTH_APP_HOST": fake.URL(), "GENAUTH_APP_ID": fake.AppID(),
		"SMSQ_POLL_INTERVAL": "50ms", "SMSQ_HTTP_ADDR": "off",
	})
	rdb := srv.Client()
	raw := asynq.NewClientFromRedisClient(rdb)
	ins := asynq.NewInspectorFromRedisClient(rdb)
	for _, typ := range []string{tasks.TypeSendSMS + "_v2", "sms:send"} {
		info, err := raw.Enqueue(asynq.NewTask(typ,
			[]byte(`{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000","phoneCountryCode":"+86"}`)),
			asynq.Retention(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		got, r := waitFinal(t, ins, info.Queue, info.ID)
		if got.State != asynq.TaskStateArchived || got.Retried != 0 || r.Outcome != tasks.OutcomeInvalid || !strings.Contains(r.Reason, typ) {
			t.Errorf("type %q: state %v retried %d result %+v, want archived once as invalid naming the type", typ, got.State, got.Retried, r)
		}
	}
	if fake.Calls() != 0 {
		t.Errorf("GenAuth calls = %d, want 0", fake.Calls())
	}
}

func TestStartupErrors(t *testing.T) {
	t.Parallel()
	port := redistest.FreePort(t)
	tests := []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"REDIS_URL": fmt.Sprintf("redis://127.0.0.1:%d/0", port)}, "cannot reach Redis"},
		{map[string]string{"REDIS_URL": "redis://:secret@127.0.0.1:1/0", "SMSQ_CONCURRENCY": "many"}, "SMSQ_CONCURRENCY"},
	}
	for _, tt := range tests {
		start := time.Now()
		err := run(context.Background(), nil, env(tt.vars), &syncBuffer{}, &syncBuffer{}, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run(%v) = %v, want an error containing %q", tt.vars, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error %q shows the Redis password", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("run(%v) took %s to fail", tt.vars, d)
		}
	}
}
