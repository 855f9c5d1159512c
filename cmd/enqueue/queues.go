package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq"
)

// servedQueues are the queues a task may go to, and where that list came
// from, for messages.
type servedQueues struct {
	names  []string
	source string
}

// liveServed asks Redis which queues the live asynq servers (workers'
// fetch loops, which announce themselves every few seconds) serve. With
// none running, a task can only wait for a worker yet to start, and the
// queues of a worker with the default SMSQ_QUEUES are assumed.
func liveServed(rdb redis.UniversalClient) (servedQueues, error) {
	srvs, err := asynq.NewInspectorFromRedisClient(rdb).Servers()
	if err != nil {
		return servedQueues{}, fmt.Errorf("list the live workers: %w", err)
	}
	var names []string
	for _, s := range srvs {
		for q := range s.Queues {
			if !slices.Contains(names, q) {
				names = append(names, q)
			}
		}
	}
	if len(names) == 0 {
		return servedQueues{names: smsq.DefaultServedQueues(), source: "no worker is running, so the default SMSQ_QUEUES (critical, default, low) were assumed"}, nil
	}
	slices.Sort(names)
	return servedQueues{names: names, source: fmt.Sprintf("the %d live asynq servers serve %s", len(srvs), strings.Join(names, ", "))}, nil
}

// unservedError explains a refused queue: which queues are served, and
// how to queue ahead of a worker anyway.
func (s servedQueues) unservedError(err error) error {
	if !errors.Is(err, smsq.ErrUnservedQueue) {
		return err
	}
	return usageError{fmt.Errorf("%w; %s; --allow-unserved-queue queues it for a worker yet to serve it", err, s.source)}
}

// asynq's key layout (internal/base in asynq): the set of every queue
// name, and one hash per task.
const asynqQueuesKey = "asynq:queues"

func asynqTaskKey(queue, id string) string { return "asynq:{" + queue + "}:t:" + id }

// queuesHolding returns the queues other than skip that hold a task with
// this ID: a task can be in any queue (a raw producer's, or one no worker
// serves), and why must find it without being told where. One pipelined
// EXISTS per known queue, in batches.
func queuesHolding(ctx context.Context, rdb redis.UniversalClient, id string, skip []string) ([]string, error) {
	names, err := rdb.SMembers(ctx, asynqQueuesKey).Result()
	if err != nil {
		return nil, fmt.Errorf("list the queues: %w", err)
	}
	names = slices.DeleteFunc(names, func(q string) bool { return slices.Contains(skip, q) })
	slices.Sort(names)
	var out []string
	for chunk := range slices.Chunk(names, 500) {
		pipe := rdb.Pipeline()
		cmds := make([]*redis.IntCmd, len(chunk))
		for i, q := range chunk {
			cmds[i] = pipe.Exists(ctx, asynqTaskKey(q, id))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("look for the task in every queue: %w", err)
		}
		for i, c := range cmds {
			if c.Val() > 0 {
				out = append(out, chunk[i])
			}
		}
	}
	return out, nil
}
