// Package smsq is the producer side of smsq: backend services call Send to
// queue an SMS verification code, and never think about duplicates. A
// worker (cmd/worker) delivers it through GenAuth, at most once per phone
// and channel inside GenAuth's one-minute window.
//
// Send validates and normalises the request before anything reaches Redis,
// so a bad phone number or channel is an error here and not a failed task
// later.
package smsq

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/redisconn"
	"github.com/smsq/smsq/internal/tasks"
)

// TaskType is the asynq task type smsq workers process.
const TaskType = tasks.TypeSendSMS

// Queues a task can go to.
const (
	QueueCritical = tasks.QueueCritical
	QueueDefault  = tasks.QueueDefault
	QueueLow      = tasks.QueueLow
)

// Errors returned by Send; test with errors.Is.
var (
	// ErrInvalidRequest: the request has a bad field; the message names it.
	ErrInvalidRequest = tasks.ErrInvalidPayload
	// ErrDuplicate: a task with the same idempotency key is still retained.
	ErrDuplicate = errors.New("smsq: a task with this idempotency key already exists")
)

// Request is one SMS verification code to send.
type Request struct {
	// Channel is one of GenAuth's eleven channels, e.g. "CHANNEL_LOGIN".
	Channel string
	// Phone is E.164 ("+8613800138000") or national with ordinary
	// formatting ("138 0013 8000") together with CountryCode.
	Phone string
	// CountryCode is the calling code for a national Phone, "+86" by default.
	CountryCode string
	// ClientIP is the end user's IP, forwarded to GenAuth as x-real-ip.
	ClientIP string
	// Lang is the SMS language: zh-CN, en-US, ja-JP or zh-TW.
	Lang string
}

// Receipt describes a queued task.
type Receipt struct {
	TaskID     string
	Queue      string
	Channel    string
	Phone      string // masked, e.g. "+86 138****8000"
	EnqueuedAt time.Time
	SendBy     time.Time
}

type options struct {
	key    string
	queue  string
	delay  time.Duration
	sendBy time.Time
	ttl    time.Duration
	onHeld string
	// anyQueue skips the served-queue check (AllowUnservedQueue).
	anyQueue bool
}

// Option changes how a request is queued.
type Option func(*options)

// WithIdempotencyKey makes the key the task ID: a second Send with the same
// key returns ErrDuplicate while the first task is retained.
func WithIdempotencyKey(key string) Option { return func(o *options) { o.key = key } }

// WithQueue overrides the queue chosen by channel (critical for login and
// MFA verification, default otherwise). Send refuses a queue outside the
// client's served queues (WithServedQueues, AllowUnservedQueue).
func WithQueue(q string) Option { return func(o *options) { o.queue = q } }

// WithDelay sends no earlier than d from now.
func WithDelay(d time.Duration) Option { return func(o *options) { o.delay = d } }

// WithSendBy sets the deadline after which the SMS is not sent at all.
func WithSendBy(t time.Time) Option { return func(o *options) { o.sendBy = t } }

// WithSendWithin sets the deadline relative to now (default 5 minutes).
func WithSendWithin(d time.Duration) Option { return func(o *options) { o.ttl = d } }

// WithDeferWhenHeld makes the task wait for an earlier code's window to end
// and then send, instead of completing as deduplicated.
func WithDeferWhenHeld() Option { return WithOnHeld(tasks.OnHeldDefer) }

// WithOnHeld sets the held-reservation policy by name: "dedupe" or
// "defer"; anything else makes Send fail with ErrInvalidRequest. Without
// it the worker's default (SMSQ_ON_HELD) applies.
func WithOnHeld(policy string) Option { return func(o *options) { o.onHeld = policy } }

// Client queues requests. It is safe for concurrent use.
type Client struct {
	c    *asynq.Client
	rdb  redis.UniversalClient
	keys *history.Store // idempotency keys are claimed in the workers' journal
	own  bool
	now  func() time.Time
	// served are the queues workers serve; Send refuses others.
	served []string
}

// NewClient connects to the Redis at redisURL (see README for URL forms).
func NewClient(redisURL string, opts ...ClientOption) (*Client, error) {
	rdb, err := redisconn.Open(redisURL, redisconn.Options{DialTimeout: 2 * time.Second})
	if err != nil {
		return nil, err
	}
	c := NewClientFromRedis(rdb, opts...)
	c.own = true
	return c, nil
}

// NewClientFromRedis uses an existing go-redis client, which the caller
// keeps and closes.
func NewClientFromRedis(rdb redis.UniversalClient, opts ...ClientOption) *Client {
	// The worker's defaults; New fails only without a client, and then
	// Enqueue says so.
	keys, _ := history.New(history.Config{Client: rdb})
	c := &Client{c: asynq.NewClientFromRedisClient(rdb), rdb: rdb, keys: keys, now: time.Now, served: DefaultServedQueues()}
	for _, opt := range opts {
		opt(c)
	}
	return c
}

// Close releases the connection if NewClient opened it.
func (c *Client) Close() error {
	if c.own {
		return c.rdb.Close()
	}
	return nil
}

// Prepare validates req and returns the task Send would enqueue, without
// touching Redis (batch dry runs use it).
func Prepare(req Request, now time.Time, opts ...Option) (*asynq.Task, tasks.Validated, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	// Payload times carry milliseconds; keep the deadline arithmetic exact.
	now = now.UTC().Truncate(time.Millisecond)
	p := tasks.Payload{
		Channel: req.Channel, PhoneNumber: req.Phone, PhoneCountryCode: req.CountryCode,
		ClientIP: req.ClientIP, Lang: req.Lang, IdempotencyKey: o.key, OnHeld: o.onHeld,
	}
	switch {
	case !o.sendBy.IsZero():
		p.SendBy = o.sendBy.UTC()
	case o.ttl > 0:
		p.SendBy = now.Add(o.delay + o.ttl).UTC()
	case o.delay > 0:
		p.SendBy = now.Add(o.delay + tasks.DefaultSendBy).UTC()
	}
	if o.delay < 0 || o.ttl < 0 {
		return nil, tasks.Validated{}, fmt.Errorf("%w: delay and send-within must not be negative", ErrInvalidRequest)
	}
	var extra []asynq.Option
	if o.queue != "" {
		extra = append(extra, asynq.Queue(o.queue))
	}
	if o.delay > 0 {
		extra = append(extra, asynq.ProcessIn(o.delay))
	}
	t, v, err := tasks.NewTask(p, now, extra...)
	if err != nil {
		return nil, v, err
	}
	if !v.SendBy.After(now.Add(o.delay)) {
		return nil, v, fmt.Errorf("%w: sendBy %s is not after the time the task becomes due", ErrInvalidRequest, v.SendBy.Format(time.RFC3339))
	}
	return t, v, nil
}

// Send validates req and queues it. The returned error wraps
// ErrInvalidRequest for bad input (with ErrUnservedQueue for a queue no
// worker serves) and ErrDuplicate for a reused idempotency key.
func (c *Client) Send(ctx context.Context, req Request, opts ...Option) (Receipt, error) {
	t, v, err := Prepare(req, c.now(), opts...)
	if err != nil {
		return Receipt{}, err
	}
	if err := c.checkServed(v, opts); err != nil {
		return Receipt{}, err
	}
	info, err := c.Enqueue(ctx, t, v)
	if err != nil {
		return Receipt{}, err
	}
	return Receipt{
		TaskID: info.ID, Queue: info.Queue, Channel: string(v.Channel), Phone: v.Phone.Masked(),
		EnqueuedAt: v.EnqueuedAt, SendBy: v.SendBy,
	}, nil
}

// claimSlack is added to a claim's lifetime beyond the task's send-by
// deadline: asynq keeps a finished task for tasks.DefaultRetention, and the
// worker's journal keeps the claimed record SMSQ_RETENTION after the task's
// last attempt.
const claimSlack = tasks.DefaultRetention

// Enqueue queues a task Prepare returned (Send is Prepare then Enqueue).
// asynq's task IDs are unique per queue only, so a task with an
// idempotency key first claims the key in Redis for every queue (the
// worker's journal record of that ID, holding the task's identity); the
// claim is given back if the enqueue fails. The error wraps ErrDuplicate
// when the key is in use, in any queue.
func (c *Client) Enqueue(ctx context.Context, t *asynq.Task, v tasks.Validated) (*asynq.TaskInfo, error) {
	key := v.IdempotencyKey
	if key == "" {
		// asynq gives the task a random ID: nothing to claim.
		return c.enqueue(ctx, t, key)
	}
	if c.keys == nil {
		return nil, errors.New("smsq: enqueue: no Redis client")
	}
	id := history.IdentityOf(v.Queue, t.Payload())
	ttl := v.SendBy.Sub(c.now()) + claimSlack
	if err := c.keys.Claim(ctx, key, id, ttl); err != nil {
		if errors.Is(err, history.ErrClaimed) {
			return nil, fmt.Errorf("%w: %q (%s)", ErrDuplicate, key, strings.TrimPrefix(err.Error(), history.ErrClaimed.Error()+" "))
		}
		return nil, fmt.Errorf("smsq: enqueue: %w", err)
	}
	info, err := c.enqueue(ctx, t, key)
	if err != nil {
		// Even when ctx has ended: a claim left behind would refuse the
		// caller's retry of a task that was never queued.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if rerr := c.keys.Release(rctx, key, id); rerr != nil {
			err = fmt.Errorf("%w; the key stays claimed: %v", err, rerr)
		}
	}
	return info, err
}

// enqueue is asynq's Enqueue with its errors in smsq's terms.
func (c *Client) enqueue(ctx context.Context, t *asynq.Task, key string) (*asynq.TaskInfo, error) {
	info, err := c.c.EnqueueContext(ctx, t)
	switch {
	case errors.Is(err, asynq.ErrTaskIDConflict), errors.Is(err, asynq.ErrDuplicateTask):
		return nil, fmt.Errorf("%w: %q", ErrDuplicate, key)
	case err != nil:
		return nil, fmt.Errorf("smsq: enqueue: %w", err)
	}
	return info, nil
}
