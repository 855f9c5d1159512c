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
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/guard"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/redisconn"
	"github.com/smsq/smsq/internal/tasks"
	"github.com/smsq/smsq/internal/tracing"
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
	source string
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

// WithSource names the producer in the task's record (payload field
// source), e.g. "api:billing" for the HTTP API's key named billing.
func WithSource(name string) Option { return func(o *options) { o.source = name } }

// Client queues requests. It is safe for concurrent use.
type Client struct {
	c    *asynq.Client
	rdb  redis.UniversalClient
	keys *history.Store // idempotency keys are claimed in the workers' journal
	own  bool
	now  func() time.Time
	// served are the queues workers serve; Send refuses others.
	served []string
	// claimGrace is how old an unbegun claim must be before a producer
	// may take it over (see Enqueue).
	claimGrace time.Duration
	// mine holds claims of this client whose enqueue failed (keepClaim).
	mineMu sync.Mutex
	mine   map[string]history.Claim
	// hub is the outcome subscription Wait opens on first use.
	hubMu   sync.Mutex
	hub     *hub
	closed  bool
	recheck time.Duration
	// waitHook, when set, runs each time Wait found the task pending and
	// before it blocks (tests).
	waitHook func(id string)
	// producer starts each enqueue's span (see Enqueue).
	producer *tracing.Producer
	// hasher and abuse serve Check and Verified (guard.go).
	hasher  dedupe.Hasher
	hashErr error
	abuseMu sync.Mutex
	abuse   *guard.Guard
	abuseAt time.Time
}

// DefaultClaimGrace is how long a producer has between claiming a key and
// enqueueing its task before another producer with the same key may take
// an unbegun claim over whose task is not in asynq.
const DefaultClaimGrace = 10 * time.Second

// WithClaimGrace sets how old a claim without a queued task must be before
// a producer with the same idempotency key takes it over (default
// DefaultClaimGrace). It must exceed the longest a producer may take
// between its claim and its enqueue.
func WithClaimGrace(d time.Duration) ClientOption { return func(c *Client) { c.claimGrace = d } }

// WithTracerProvider makes the client start its producer spans from tp
// instead of OpenTelemetry's global tracer provider.
func WithTracerProvider(tp trace.TracerProvider) ClientOption {
	return func(c *Client) { c.producer = tracing.NewProducer(tp) }
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
	c := &Client{c: asynq.NewClientFromRedisClient(rdb), rdb: rdb, keys: keys, now: time.Now, served: DefaultServedQueues(), claimGrace: DefaultClaimGrace, recheck: DefaultWaitRecheck,
		producer: tracing.NewProducer(nil)}
	for _, opt := range opts {
		opt(c)
	}
	return c
}

// Close ends the waits in progress and closes the outcome subscription,
// and releases the connection if NewClient opened it.
func (c *Client) Close() error {
	c.hubMu.Lock()
	h := c.hub
	c.hub, c.closed = nil, true
	c.hubMu.Unlock()
	var err error
	if h != nil {
		err = h.close()
	}
	if c.own {
		err = errors.Join(err, c.rdb.Close())
	}
	return err
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
		ClientIP: req.ClientIP, Lang: req.Lang, IdempotencyKey: o.key, OnHeld: o.onHeld, Source: o.source,
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
//
// A claim whose give-back failed too (Redis lost between the claim and the
// enqueue) would refuse every retry of a task never queued, so a claim no
// worker began, older than the claim grace and without a task in asynq's
// claimed queue is taken over (compare-and-set on the claim's token). A
// first enqueue costs no round trip for this.
//
// Every enqueue is a producer span (OpenTelemetry, from the client's
// tracer provider) whose W3C trace context the task carries in its
// headers; the worker's span for each attempt links to it.
func (c *Client) Enqueue(ctx context.Context, t *asynq.Task, v tasks.Validated) (info *asynq.TaskInfo, err error) {
	ctx, span := c.producer.Start(ctx, t, v.Queue, string(v.Channel))
	defer func() { tracing.End(span, info, err) }()
	return c.claimAndEnqueue(ctx, t, v)
}

// claimAndEnqueue is Enqueue without its span.
func (c *Client) claimAndEnqueue(ctx context.Context, t *asynq.Task, v tasks.Validated) (*asynq.TaskInfo, error) {
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
	// A retry claims under the token of this client's earlier claim of the
	// key whose fate it does not know, so that it can tell that claim as
	// its own however many attempts failed in between.
	prev := c.ownedClaim(key)
	claim, err := c.keys.ClaimAs(ctx, key, id, ttl, prev)
	var held *history.Held
	if errors.As(err, &held) && (held.Unbegun(c.claimGrace) || (!held.Begun && held.Queue != "" && held.Of(prev))) {
		claim, err = c.takeOver(ctx, held, id, ttl, prev)
	}
	if err != nil {
		if errors.Is(err, history.ErrClaimed) {
			return nil, fmt.Errorf("%w: %q %s", ErrDuplicate, key, strings.TrimPrefix(err.Error(), history.ErrClaimed.Error()+" "))
		}
		if claim.TaskID != "" {
			c.keepClaim(key, claim)
		}
		return nil, fmt.Errorf("smsq: enqueue: %w", err)
	}
	info, err := c.enqueue(ctx, t, key)
	if err != nil {
		// Even when ctx has ended: a claim left behind would refuse the
		// caller's retry of a task that was never queued.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if rerr := c.keys.Release(rctx, claim); rerr != nil {
			err = fmt.Errorf("%w; the key stays claimed for %s: %v", err, c.claimGrace, rerr)
		}
		// The enqueue may have gone through, or the claim outlived a
		// failover that lost the task: this client's retry checks asynq
		// and takes its own claim back at once.
		c.keepClaim(key, claim)
		return info, err
	}
	c.forgetClaim(key)
	return info, nil
}

// maxOwnClaims bounds the claims a client remembers from enqueues that
// failed; past it they are forgotten, and a retry waits out the claim
// grace as another producer's would.
const maxOwnClaims = 10000

// keepClaim remembers a claim whose enqueue failed, or whose own answer
// was lost, so that this client's retry knows it as its own (see Enqueue).
func (c *Client) keepClaim(key string, cl history.Claim) {
	c.mineMu.Lock()
	defer c.mineMu.Unlock()
	if c.mine == nil || len(c.mine) >= maxOwnClaims {
		c.mine = make(map[string]history.Claim)
	}
	c.mine[key] = cl
}

func (c *Client) forgetClaim(key string) {
	c.mineMu.Lock()
	defer c.mineMu.Unlock()
	delete(c.mine, key)
}

// ownedClaim is the claim keepClaim kept for key, or none.
func (c *Client) ownedClaim(key string) history.Claim {
	c.mineMu.Lock()
	defer c.mineMu.Unlock()
	return c.mine[key]
}

// takeOver replaces the unbegun claim held when asynq has no task of that
// ID in the claimed queue; otherwise the task was queued and held stands.
// asynq's task key lives in its queue's Cluster slot, not in the claim's,
// so the check is a command of its own before the compare-and-set.
func (c *Client) takeOver(ctx context.Context, held *history.Held, id history.Identity, ttl time.Duration, prev history.Claim) (history.Claim, error) {
	n, err := c.rdb.Exists(ctx, asynqTaskKey(held.Queue, held.TaskID)).Result()
	if err != nil {
		return history.Claim{}, err
	}
	if n != 0 {
		return history.Claim{}, held
	}
	return c.keys.TakeOverAs(ctx, held, id, ttl, prev)
}

// asynqTaskKey is the hash asynq keeps a task in, in any state, until it is
// deleted (asynq's base.TaskKey, internal to asynq).
func asynqTaskKey(queue, id string) string { return "asynq:{" + queue + "}:t:" + id }

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
