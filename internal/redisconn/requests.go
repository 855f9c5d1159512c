package redisconn

import (
	"context"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Requests is a go-redis hook that counts the requests a client sends to
// Redis: one per command, one per pipeline. Add it with AddHook.
type Requests struct{ n atomic.Int64 }

var _ redis.Hook = (*Requests)(nil)

// Load returns the count so far.
func (r *Requests) Load() int64 { return r.n.Load() }

// DialHook leaves dialing alone.
func (r *Requests) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook counts a command.
func (r *Requests) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook counts a pipeline.
func (r *Requests) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmds)
	}
}
