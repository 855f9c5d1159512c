package tasks

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/outcome"
	"github.com/smsq/smsq/internal/redistest"
)

// commandCalls reads INFO commandstats: calls per command, the commands
// scripts run included, the INFO calls left out.
func commandCalls(t *testing.T, c *redis.Client) map[string]int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "cmdstat_"), ":")
		if !ok || name == "info" {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				out[name], _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	return out
}

// A sent task costs the handler 23 Redis commands, counted by Redis
// itself (the commands inside its scripts included): 4 to open the
// attempt, 5 to take the reservation, 10 for the journal entry, the
// phone index and the sent mark, 4 for the outcome stream's append (the
// script, the seen set, XADD and PUBLISH). The result written onto the asynq task
// (one HSET, not made here: the task has no ResultWriter outside asynq)
// makes 20; asynq's own fetch and completion come on top. The count is
// exact on a private redis-server, so that any command added to the send
// path shows here.
func TestSentTaskRedisCommands(t *testing.T) {
	t.Parallel()
	rc := redistest.Start(t).Client()
	resv, err := dedupe.New(dedupe.Config{Client: rc})
	if err != nil {
		t.Fatal(err)
	}
	hist, err := history.New(history.Config{Client: rc})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := outcome.New(outcome.Config{Client: rc})
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(HandlerConfig{Sender: &fakeSender{}, Reservations: resv, Journal: hist, JournalOnAsynqRedis: true, Outcomes: stream})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	run := func(id, national string) {
		t.Helper()
		task, _, err := NewTask(Payload{Channel: "CHANNEL_LOGIN", PhoneNumber: national, PhoneCountryCode: "+86"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := h.processTask(ctx, task, taskMeta{id: id, queue: QueueCritical, maxRetry: 5}); err != nil {
			t.Fatalf("task %s: %v", id, err)
		}
	}
	sent := func(id string) {
		t.Helper()
		if e, ok, err := hist.Task(ctx, id); err != nil || !ok || e.Outcome != OutcomeSent {
			t.Fatalf("task %s: entry %+v, %v, %v; want sent", id, e, ok, err)
		}
	}
	// The first task loads the scripts (a NOSCRIPT and a SCRIPT LOAD each).
	run("warm-up", "13800138001")
	sent("warm-up")
	before := commandCalls(t, rc)
	run("counted", "13800138002")
	after := commandCalls(t, rc)
	sent("counted")
	var n int64
	var used []string
	for _, name := range slices.Sorted(maps.Keys(after)) {
		if d := after[name] - before[name]; d > 0 {
			n += d
			used = append(used, fmt.Sprintf("%s %d", name, d))
		}
	}
	if n != 23 {
		t.Fatalf("a sent task ran %d Redis commands (%s), want 23", n, strings.Join(used, ", "))
	}
	if n, err := rc.XLen(ctx, outcome.StreamKey(outcome.DefaultPrefix)).Result(); err != nil || n != 2 {
		t.Fatalf("outcome stream holds %d entries (%v), want 2", n, err)
	}
	t.Logf("a sent task: %d commands: %s", n, strings.Join(used, ", "))
}
