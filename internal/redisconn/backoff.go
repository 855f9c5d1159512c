package redisconn

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Backoff is a go-redis hook that slows down a loop that would otherwise
// retry a failing command at once: after each failure of a command Match
// selects, the caller sleeps, Min at first and twice as long after each
// further failure, up to Max; a success starts over. asynq's fetch loop is
// such a loop: on a dequeue error it asks again immediately, so a Redis at
// maxmemory with noeviction, which refuses the dequeue script at once, got
// thousands of requests per second from an idle worker. Add it with
// AddHook.
type Backoff struct {
	// Match selects the commands to back off on.
	Match func(cmd redis.Cmder) bool
	Min   time.Duration
	Max   time.Duration
	// Sleep waits; default time.Sleep (tests replace it).
	Sleep func(time.Duration)

	mu    sync.Mutex
	delay time.Duration
}

var _ redis.Hook = (*Backoff)(nil)

// DialHook leaves dialing alone.
func (b *Backoff) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook sleeps after a matching command failed.
func (b *Backoff) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if b.Match == nil || !b.Match(cmd) {
			return err
		}
		// redis.Nil is an answer (nothing to dequeue), not a failure.
		if err == nil || errors.Is(err, redis.Nil) {
			b.mu.Lock()
			b.delay = 0
			b.mu.Unlock()
			return err
		}
		b.mu.Lock()
		b.delay = min(max(2*b.delay, b.Min), b.Max)
		d := b.delay
		b.mu.Unlock()
		// Jitter, so that loops sharing the hook do not wake together.
		d = d/2 + rand.N(d/2+1)
		if b.Sleep != nil {
			b.Sleep(d)
		} else {
			time.Sleep(d)
		}
		return err
	}
}

// ProcessPipelineHook leaves pipelines alone: no loop retries them at once.
func (b *Backoff) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
