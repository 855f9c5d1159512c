package smsq

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/smsq/smsq/internal/tasks"
)

// ErrUnservedQueue: the task would go to a queue no worker serves, where it
// would wait forever without an outcome. It comes wrapped together with
// ErrInvalidRequest.
var ErrUnservedQueue = errors.New("no worker serves this queue")

// DefaultServedQueues are the queues a worker serves with its default
// SMSQ_QUEUES: critical, default and low.
func DefaultServedQueues() []string {
	return []string{QueueCritical, QueueDefault, QueueLow}
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithServedQueues names the queues the workers serve (their SMSQ_QUEUES);
// Send refuses a task for any other queue with ErrUnservedQueue. The
// default is DefaultServedQueues. Set it when the workers are configured
// with other queues.
func WithServedQueues(queues ...string) ClientOption {
	return func(c *Client) { c.served = slices.Clone(queues) }
}

// AllowUnservedQueue lets Send queue the task in a queue outside the served
// set, for a worker that will serve it but is not configured yet. The
// queue name is still validated.
func AllowUnservedQueue() Option { return func(o *options) { o.anyQueue = true } }

// CheckServed returns nil when queue is one of served, and otherwise an
// error wrapping ErrInvalidRequest and ErrUnservedQueue that names the
// served queues (and the one meant, when only the case differs). Every
// producer checks the task's queue with it.
func CheckServed(queue string, served []string) error {
	if slices.Contains(served, queue) {
		return nil
	}
	hint := ""
	for _, s := range served {
		if strings.EqualFold(s, queue) {
			hint = fmt.Sprintf("; queue names are case-sensitive: did you mean %q?", s)
			break
		}
	}
	list := "none"
	if len(served) > 0 {
		list = strings.Join(served, ", ")
	}
	return fmt.Errorf("%w: queue %q: %w (served: %s)%s", ErrInvalidRequest, queue, ErrUnservedQueue, list, hint)
}

// checkServed applies the client's served queues to a prepared task.
func (c *Client) checkServed(v tasks.Validated, opts []Option) error {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.anyQueue {
		return nil
	}
	return CheckServed(queueOf(o, v), c.served)
}

// queueOf is the queue a task goes to: the one asked for, or the
// channel's.
func queueOf(o options, v tasks.Validated) string {
	if o.queue != "" {
		return o.queue
	}
	return tasks.QueueFor(v.Channel)
}
