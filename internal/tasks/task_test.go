package tasks

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// NewTask tells the worker the retention asynq keeps the task for, the
// last Retention option winning as in asynq; the worker reads it back, and
// reads nothing from a header that is not a count of seconds.
func TestNewTaskTellsRetention(t *testing.T) {
	p := Payload{Channel: "CHANNEL_LOGIN", PhoneNumber: "138 0013 8000"}
	for _, c := range []struct {
		opts []asynq.Option
		want time.Duration
	}{
		{nil, DefaultRetention},
		{[]asynq.Option{asynq.Retention(time.Hour)}, time.Hour},
		{[]asynq.Option{asynq.Retention(time.Hour), asynq.Retention(0)}, 0},
		{[]asynq.Option{asynq.Retention(1500 * time.Millisecond)}, time.Second},
	} {
		task, _, err := NewTask(p, time.Now(), c.opts...)
		if err != nil {
			t.Fatal(err)
		}
		if got := resultKeptFor(task); got != c.want {
			t.Errorf("%v: retention read back %s (header %q), want %s", c.opts, got, task.Headers()[HeaderRetention], c.want)
		}
	}
	for _, h := range []string{"", "x", "-5", "0", "1e3", "99999999999999999999"} {
		task := asynq.NewTaskWithHeaders(TypeSendSMS, nil, map[string]string{HeaderRetention: h})
		if got := resultKeptFor(task); got != 0 {
			t.Errorf("header %q read as %s, want 0", h, got)
		}
	}
}

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
