package redisconn

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestBackoffSleepsAfterFailuresAndStartsOver(t *testing.T) {
	t.Parallel()
	var slept []time.Duration
	b := &Backoff{
		Match: func(cmd redis.Cmder) bool { return cmd.Name() == "evalsha" },
		Min:   100 * time.Millisecond, Max: 400 * time.Millisecond,
		Sleep: func(d time.Duration) { slept = append(slept, d) },
	}
	oom := errors.New("OOM command not allowed when used memory > 'maxmemory'")
	results := []error{oom, oom, oom, oom, redis.Nil, oom}
	i := 0
	process := b.ProcessHook(func(context.Context, redis.Cmder) error { err := results[i]; i++; return err })
	for range results {
		_ = process(context.Background(), redis.NewCmd(context.Background(), "evalsha", "x", 0))
	}
	// Caps 100, 200, 400, 400 ms, none after the answer, then 100 again;
	// each sleep is between half its cap and the cap.
	caps := []time.Duration{100, 200, 400, 400, 100}
	if len(slept) != len(caps) {
		t.Fatalf("slept %v, want %d sleeps", slept, len(caps))
	}
	for j, c := range caps {
		c *= time.Millisecond
		if slept[j] < c/2 || slept[j] > c {
			t.Fatalf("sleep %d = %s, want within [%s, %s] (all: %v)", j, slept[j], c/2, c, slept)
		}
	}
	// Commands it does not match never wait.
	other := b.ProcessHook(func(context.Context, redis.Cmder) error { return oom })
	_ = other(context.Background(), redis.NewCmd(context.Background(), "set", "k", "v"))
	if len(slept) != len(caps) {
		t.Fatalf("an unmatched command slept")
	}
}
