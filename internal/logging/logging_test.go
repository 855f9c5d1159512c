package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"log"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestNew(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	l, err := New(&b, "warn", "json")
	if err != nil {
		t.Fatal(err)
	}
	l.Info().Msg("hidden")
	l.Warn().Msg("shown")
	if strings.Contains(b.String(), "hidden") || !strings.Contains(b.String(), `"message":"shown"`) {
		t.Fatalf("log = %q", b.String())
	}
	for _, bad := range [][2]string{{"loud", "json"}, {"info", "xml"}} {
		if _, err := New(&b, bad[0], bad[1]); err == nil {
			t.Errorf("New(%q, %q) = nil error", bad[0], bad[1])
		}
	}
}

func TestAsynqRepeatsLoggedOncePerInterval(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	a := &Asynq{Log: zerolog.New(&b), Every: 200 * time.Millisecond}
	for i := 0; i < 50; i++ {
		a.Error("Dequeue error: dial tcp: connection refused")
	}
	a.Warn("something else")
	if n := strings.Count(b.String(), "Dequeue error"); n != 1 {
		t.Fatalf("repeated message logged %d times in one interval, want 1:\n%s", n, b.String())
	}
	// After the interval the next occurrence is logged with the count of
	// those suppressed.
	time.Sleep(250 * time.Millisecond)
	a.Error("Dequeue error: dial tcp: connection refused")
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	last := lines[len(lines)-1]
	if !strings.Contains(last, `"repeated":49`) {
		t.Fatalf("last line %s, want the 49 suppressed repeats counted", last)
	}
}

func TestRedisAdapterIsRateLimited(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	r := Redis{A: &Asynq{Log: zerolog.New(&b), Every: time.Minute, Component: "go-redis"}}
	for i := 0; i < 20; i++ {
		r.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: %s", 5, "connection refused")
	}
	if n := strings.Count(b.String(), "failed to dial"); n != 1 {
		t.Fatalf("logged %d times, want once:\n%s", n, b.String())
	}
	if !strings.Contains(b.String(), `"level":"warn"`) {
		t.Fatalf("want a warning: %s", b.String())
	}
	if strings.Count(b.String(), `"component"`) != 1 || !strings.Contains(b.String(), `"component":"go-redis"`) {
		t.Fatalf("want one component, go-redis: %s", b.String())
	}
}

func TestStdLogLinesBecomeRateLimitedWarnings(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	l := log.New(Std{A: &Asynq{Log: zerolog.New(&b), Every: time.Minute, Component: "metrics"}}, "", 0)
	for range 5 {
		l.Printf("Failed to collect metrics data: %v", "dial tcp: connection refused")
	}
	out := b.String()
	if n := strings.Count(out, "Failed to collect metrics data"); n != 1 {
		t.Fatalf("logged %d times, want once:\n%s", n, out)
	}
	var line map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &line); err != nil {
		t.Fatalf("not one JSON line: %v\n%s", err, out)
	}
	if line["level"] != "warn" || line["component"] != "metrics" {
		t.Fatalf("line %v: want a warning from metrics", line)
	}
}

// TestRepeatsIgnoreTaskIDs: asynq reports an outage once per task in
// flight ("Could not move task id=..."); those are one message.
func TestRepeatsIgnoreTaskIDs(t *testing.T) {
	t.Parallel()
	r := &Repeats{Every: time.Minute}
	msgs := []string{
		`Could not move task id=6b1f0c1e-7c2a-4d47-9a41-1f2b3c4d5e6f from "asynq:{critical}:active" to "asynq:{critical}:retry"; Will retry syncing`,
		`Could not move task id=batch-17 from "asynq:{critical}:active" to "asynq:{critical}:retry"; Will retry syncing`,
		`Failed to extend lease for tasks [a b c]: dial tcp: connection refused`,
		`Failed to extend lease for tasks [d]: dial tcp: connection refused`,
	}
	passed := 0
	for _, m := range msgs {
		if ok, _ := r.Allow(m); ok {
			passed++
		}
	}
	if passed != 2 {
		t.Fatalf("%d of 4 lines passed, want 2 (one per message, IDs aside)", passed)
	}
	if ok, _ := r.Allow("Dequeue error: OOM"); !ok {
		t.Fatal("a different message was held back")
	}
}
