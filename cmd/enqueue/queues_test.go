package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/smsq/smsq/internal/redistest"
)

// startServer runs an asynq server (a worker's fetch loop) on srv serving
// queues, and waits until it announces itself.
func startServer(t *testing.T, srv *redistest.Server, queues map[string]int) {
	t.Helper()
	s := asynq.NewServerFromRedisClient(srv.Client(), asynq.Config{Queues: queues, LogLevel: asynq.FatalLevel})
	if err := s.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	ins := asynq.NewInspectorFromRedisClient(srv.Client())
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if ss, err := ins.Servers(); err == nil && len(ss) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the asynq server never showed up in Servers()")
		}
	}
}

// TestSingleRefusesUnservedQueues: a task for a queue no live worker
// serves is refused (exit 2) with the served queues named, before
// anything is queued; --allow-unserved-queue queues it anyway.
func TestSingleRefusesUnservedQueues(t *testing.T) {
	srv := redistest.Start(t)
	login := []string{"--channel", "CHANNEL_LOGIN", "--phone", "+8613800138000"}

	// No worker yet: the default queues are assumed, and said so.
	r := runCmd(t, srv.URL(), "", append(login, "--queue", "Critical")...)
	if r.code != 2 || !strings.Contains(errText(r.err), `queue "Critical": no worker serves this queue`) ||
		!strings.Contains(errText(r.err), `did you mean "critical"?`) || !strings.Contains(errText(r.err), "no worker is running") ||
		!strings.Contains(errText(r.err), "--allow-unserved-queue") {
		t.Fatalf("exit %d, error %v; want 2 naming the queue, the default queues and the override", r.code, r.err)
	}
	if n := queued(t, srv); n != 0 {
		t.Fatalf("%d tasks queued, want none", n)
	}

	// A worker serving only bulk: critical (the login channel's) is refused.
	startServer(t, srv, map[string]int{"bulk": 1})
	for _, args := range [][]string{login, append(login, "--queue", "low")} {
		r = runCmd(t, srv.URL(), "", args...)
		if r.code != 2 || !strings.Contains(errText(r.err), "live asynq servers serve bulk") {
			t.Fatalf("%v: exit %d, error %v; want 2 naming the served queue bulk", args, r.code, r.err)
		}
	}
	if n := queued(t, srv); n != 0 {
		t.Fatalf("%d tasks queued, want none", n)
	}
	r = runCmd(t, srv.URL(), "", append(login, "--queue", "bulk", "--idempotency-key", "served-1")...)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "served-1" {
		t.Fatalf("--queue bulk: exit %d, %v", r.code, r.err)
	}
	r = runCmd(t, srv.URL(), "", append(login, "--queue", "later", "--allow-unserved-queue", "--idempotency-key", "ahead-1")...)
	if r.code != 0 {
		t.Fatalf("--allow-unserved-queue: exit %d, %v", r.code, r.err)
	}
	if _, err := asynq.NewInspectorFromRedisClient(srv.Client()).GetTaskInfo("later", "ahead-1"); err != nil {
		t.Fatalf("task ahead-1 not queued in later: %v", err)
	}
}

func TestBatchRefusesUnservedQueues(t *testing.T) {
	srv := redistest.Start(t)
	startServer(t, srv, map[string]int{"bulk": 1, "critical": 2})
	in := writeFile(t, "codes.csv", "channel,phone,queue,idempotency_key\n"+
		"CHANNEL_LOGIN,+8613800138000,,b-1\n"+
		"CHANNEL_REGISTER,+8613800138000,,b-2\n"+
		"CHANNEL_REGISTER,+8613800138000,bulk,b-3\n")
	r := runCmd(t, srv.URL(), "", "batch", in)
	want := `{"line":2,"status":"enqueued","taskId":"b-1","queue":"critical"}
{"line":3,"status":"invalid","taskId":"b-2","queue":"default","reason":"queue \"default\": no worker serves this queue (served: bulk, critical)"}
{"line":4,"status":"enqueued","taskId":"b-3","queue":"bulk"}
`
	if r.code != 1 || r.stdout != want {
		t.Fatalf("exit %d (%v), results:\n%s\nwant 1 and:\n%s", r.code, r.err, r.stdout, want)
	}
	r = runCmd(t, srv.URL(), "", "batch", "--allow-unserved-queue", in)
	if r.code != 0 || !strings.Contains(r.stdout, `"taskId":"b-2","queue":"default"`) {
		t.Fatalf("--allow-unserved-queue: exit %d (%v), results:\n%s", r.code, r.err, r.stdout)
	}
}
