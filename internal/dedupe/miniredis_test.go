package dedupe_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/dedupe"
)

// TestMiniredis checks that the scripts also run on miniredis, which
// serves fast unit tests and the embedded mode elsewhere. It proves
// nothing about TTLs passing in real time; the real-Redis tests do.
func TestMiniredis(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	s, err := dedupe.New(dedupe.Config{Client: c})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx := context.Background()
	if got, r, err := s.Acquire(ctx, phone, channel, "task-1"); err != nil || got != dedupe.AcquiredNew || r.TTL != time.Minute {
		t.Fatalf("Acquire = %v, %+v, %v; want new with TTL 1m", got, r, err)
	}
	if _, _, err := s.Acquire(ctx, phone, channel, "task-2"); !errors.Is(err, dedupe.ErrHeld) {
		t.Fatalf("Acquire by another owner: error = %v, want ErrHeld", err)
	}
	if err := s.MarkSent(ctx, phone, channel, "task-1"); err != nil {
		t.Fatalf("MarkSent: %v", err)
	}
	if r, ok, err := s.Get(ctx, phone, channel); err != nil || !ok || r.State != dedupe.StateSent {
		t.Fatalf("Get = %+v, %v, %v; want state sent", r, ok, err)
	}
	m.FastForward(time.Minute)
	if got, _, err := s.Acquire(ctx, phone, channel, "task-2"); err != nil || got != dedupe.AcquiredNew {
		t.Fatalf("Acquire after the window = %v, %v; want new", got, err)
	}
	if ok, err := s.Release(ctx, phone, channel, "task-2"); err != nil || !ok {
		t.Fatalf("Release = %v, %v", ok, err)
	}
}
