package tasks

import (
	"context"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestFetchLoops(t *testing.T) {
	for _, tc := range []struct{ concurrency, want int }{
		{1, 1}, {100, 1}, {101, 2}, {200, 2}, {250, 3}, {0, 1},
	} {
		if got := FetchLoops(tc.concurrency); got != tc.want {
			t.Errorf("FetchLoops(%d) = %d, want %d", tc.concurrency, got, tc.want)
		}
	}
}

func TestSplitConcurrency(t *testing.T) {
	for _, tc := range []struct {
		concurrency, loops int
		want               []int
	}{
		{200, 2, []int{100, 100}},
		{250, 3, []int{84, 83, 83}},
		{5, 5, []int{1, 1, 1, 1, 1}},
		{7, 1, []int{7}},
	} {
		got := SplitConcurrency(tc.concurrency, tc.loops)
		if !slices.Equal(got, tc.want) {
			t.Errorf("SplitConcurrency(%d, %d) = %v, want %v", tc.concurrency, tc.loops, got, tc.want)
		}
	}
}

func TestIsDequeue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dequeue := redis.NewCmd(ctx, "evalsha", "0123abcd", 4, "asynq:{critical}:pending", "asynq:{critical}:paused",
		"asynq:{critical}:active", "asynq:{critical}:lease", 1700000000, "asynq:{critical}:t:")
	if !IsDequeue(dequeue) {
		t.Fatal("asynq's dequeue script not recognised")
	}
	for _, cmd := range []*redis.Cmd{
		redis.NewCmd(ctx, "evalsha", "0123abcd", 1, "smsq:resv:{x}:CHANNEL_LOGIN", "task-1"),
		redis.NewCmd(ctx, "evalsha", "0123abcd", 4, "asynq:{critical}:t:1", "asynq:{critical}:active", "asynq:{critical}:lease", "asynq:{critical}:retry"),
		redis.NewCmd(ctx, "lpush", "asynq:{critical}:pending", "x"),
	} {
		if IsDequeue(cmd) {
			t.Errorf("%v taken for a dequeue", cmd.Args())
		}
	}
}
