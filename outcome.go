package smsq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/outcome"
	"github.com/smsq/smsq/internal/phone"
	"github.com/smsq/smsq/internal/tasks"
)

// Event is a final outcome as the worker recorded it: the fields of an
// outcome stream entry (schema v1, see README). The phone is masked.
type Event = outcome.Event

// StatePending is Outcome.State while a task has no final outcome.
const StatePending = "pending"

// ErrNoSuchTask: no task of this ID is queued or remembered (never
// queued, or its record expired after SMSQ_RETENTION).
var ErrNoSuchTask = errors.New("smsq: no such task")

// Outcome is what is known of a task.
type Outcome struct {
	TaskID string
	// Final reports that the task ended; State is then its outcome (sent,
	// deduplicated, expired, failed, invalid, blocked), else StatePending.
	Final bool
	State string
	// Last is the outcome of the latest attempt of a pending task
	// ("retrying", "throttled", "deferred", "unknown"), "" before the first.
	Last string
	// Event holds the recorded fields of a final outcome.
	Event Event
	// RetryIn is, for a deduplicated task and one deferred behind a held
	// reservation (or blocked), how long from now until a code can be sent
	// to the pair again; 0 when it can be now.
	RetryIn time.Duration
}

// MarshalJSON writes the outcome as the CLI and the HTTP API show it.
func (o Outcome) MarshalJSON() ([]byte, error) {
	type out struct {
		TaskID    string `json:"taskId"`
		Final     bool   `json:"final"`
		State     string `json:"state"`
		Last      string `json:"last,omitempty"`
		RetryInMS int64  `json:"retryInMs,omitempty"`
		Event     *Event `json:"event,omitempty"`
	}
	v := out{TaskID: o.TaskID, Final: o.Final, State: o.State, Last: o.Last, RetryInMS: o.RetryIn.Milliseconds()}
	if o.Final {
		v.Event = &o.Event
	}
	return json.Marshal(v)
}

// Outcome returns the current state of task id: pending, or its final
// outcome with the fields the worker recorded. An ID no worker has begun
// is pending while its task is queued in a served queue; the error wraps
// ErrNoSuchTask when neither the journal nor asynq knows the ID.
func (c *Client) Outcome(ctx context.Context, id string) (Outcome, error) {
	o := Outcome{TaskID: id, State: StatePending}
	if c.keys == nil {
		return o, errors.New("smsq: outcome: no Redis client")
	}
	if id == "" {
		return o, fmt.Errorf("%w: empty task ID", ErrNoSuchTask)
	}
	e, ok, err := c.keys.Task(ctx, id)
	if err == nil && !ok {
		// Not begun yet, or unknown: asynq tells. A task that finished and
		// left asynq between the two reads is in the journal by then.
		var queued bool
		queued, err = c.queued(ctx, id)
		if err == nil && !queued {
			e, ok, err = c.keys.Task(ctx, id)
			if err == nil && !ok {
				return o, fmt.Errorf("%w: %q is not queued and has no record (never queued, or expired)", ErrNoSuchTask, phone.MaskID(id))
			}
		}
	}
	if err != nil {
		return o, fmt.Errorf("smsq: outcome of %q: %w", phone.MaskID(id), err)
	}
	if !ok {
		return o, nil
	}
	var r tasks.Result
	if len(e.Result) > 0 {
		if err := json.Unmarshal(e.Result, &r); err != nil {
			return o, fmt.Errorf("smsq: outcome of %q: recorded result: %w", phone.MaskID(id), err)
		}
	}
	if ms := r.RetryIn(); ms > 0 && !r.FinishedAt.IsZero() {
		o.RetryIn = max(0, time.Duration(ms)*time.Millisecond-c.now().Sub(r.FinishedAt))
	}
	if !e.Final {
		o.Last = e.Outcome
		return o, nil
	}
	o.Final, o.State = true, e.Outcome
	if r.Outcome == "" {
		r.Outcome = e.Outcome
	}
	if r.FinishedAt.IsZero() {
		r.FinishedAt = e.UpdatedAt.UTC()
	}
	o.Event = r.Event(id, e.PhoneHash)
	return o, nil
}

// queued reports whether asynq holds a task of this ID: in a served
// queue first, then in any other queue Redis knows (a task queued with
// AllowUnservedQueue for a worker yet to serve it), one round trip more
// only when the served queues lack it.
func (c *Client) queued(ctx context.Context, id string) (bool, error) {
	in := func(queues []string) (bool, error) {
		if len(queues) == 0 {
			return false, nil
		}
		p := c.rdb.Pipeline()
		cmds := make([]*redis.IntCmd, 0, len(queues))
		for _, q := range queues {
			cmds = append(cmds, p.Exists(ctx, asynqTaskKey(q, id)))
		}
		if _, err := p.Exec(ctx); err != nil {
			return false, err
		}
		for _, cmd := range cmds {
			if cmd.Val() > 0 {
				return true, nil
			}
		}
		return false, nil
	}
	if ok, err := in(c.served); ok || err != nil {
		return ok, err
	}
	known, err := c.rdb.SMembers(ctx, "asynq:queues").Result()
	if err != nil {
		return false, err
	}
	known = slices.DeleteFunc(known, func(q string) bool { return slices.Contains(c.served, q) })
	return in(known)
}

// DefaultWaitRecheck is how often Wait reads the task's state again while
// it waits, against an announcement lost while the subscription
// reconnected.
const DefaultWaitRecheck = 5 * time.Second

// WithWaitRecheck sets how often Wait reads the state again without an
// announcement (default DefaultWaitRecheck).
func WithWaitRecheck(d time.Duration) ClientOption {
	return func(c *Client) {
		if d > 0 {
			c.recheck = d
		}
	}
}

// Wait blocks until task id has a final outcome, and returns it, or until
// ctx ends: then it returns the last state read with an error wrapping
// ctx's. The client holds one Pub/Sub subscription, opened by the first
// Wait, on which workers announce every final outcome; Wait registers
// before it reads the state, so an outcome recorded after the read is
// announced to it. Errors reading the state are retried every recheck
// interval; an unknown ID ends the wait with ErrNoSuchTask.
func (c *Client) Wait(ctx context.Context, id string) (Outcome, error) {
	h, err := c.waitHub()
	if err != nil {
		return Outcome{TaskID: id, State: StatePending}, err
	}
	w := h.add(phone.MaskID(id))
	defer h.remove(w)
	tick := time.NewTicker(c.recheck)
	defer tick.Stop()
	select {
	case <-h.ready:
	case <-tick.C:
		// Not subscribed yet (Redis unreachable?): read anyway.
	case <-ctx.Done():
		return Outcome{TaskID: id, State: StatePending}, fmt.Errorf("smsq: wait for %q: %w", phone.MaskID(id), ctx.Err())
	}
	var last Outcome
	var lastErr error
	for {
		o, err := c.Outcome(ctx, id)
		switch {
		case err == nil && o.Final:
			return o, nil
		case errors.Is(err, ErrNoSuchTask):
			return o, err
		case err == nil:
			last, lastErr = o, nil
		default:
			if last.TaskID == "" {
				last = o
			}
			lastErr = err
		}
		if c.waitHook != nil {
			c.waitHook(id)
		}
		select {
		case <-w.wake:
		case <-tick.C:
		case <-h.done:
			return last, errors.New("smsq: wait: client closed")
		case <-ctx.Done():
			if lastErr != nil {
				return last, fmt.Errorf("smsq: wait for %q: %w (last read: %v)", phone.MaskID(id), ctx.Err(), lastErr)
			}
			return last, fmt.Errorf("smsq: wait for %q: %w", phone.MaskID(id), ctx.Err())
		}
	}
}

// waitHub returns the client's subscription, opening it on first use.
func (c *Client) waitHub() (*hub, error) {
	c.hubMu.Lock()
	defer c.hubMu.Unlock()
	if c.closed {
		return nil, errors.New("smsq: wait: client closed")
	}
	if c.hub == nil {
		if c.rdb == nil {
			return nil, errors.New("smsq: wait: no Redis client")
		}
		c.hub = startHub(c.rdb, outcome.Channel(outcome.DefaultPrefix))
	}
	return c.hub, nil
}

// hub is a client's one subscription to the outcome channel: it hands
// every announced task ID to the waiters of that task.
type hub struct {
	sub   *redis.PubSub
	ready chan struct{} // closed at the first subscription confirmed
	done  chan struct{} // closed by close

	mu      sync.Mutex
	waiters map[string]map[*waiter]struct{}
}

type waiter struct {
	id   string
	wake chan struct{} // buffered: an announcement is never lost to a busy waiter
}

func startHub(rdb redis.UniversalClient, channel string) *hub {
	h := &hub{
		sub:     rdb.Subscribe(context.Background(), channel),
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
		waiters: make(map[string]map[*waiter]struct{}),
	}
	go h.run()
	return h
}

// hubPing is how long the subscription may stay silent before it is
// pinged: a dead connection is found and reopened within about this.
const hubPing = 15 * time.Second

func (h *hub) run() {
	subscribed := false
	backoff := 50 * time.Millisecond
	for {
		msg, err := h.sub.ReceiveTimeout(context.Background(), hubPing)
		select {
		case <-h.done:
			return
		default:
		}
		var ne net.Error
		switch {
		case err != nil && errors.As(err, &ne) && ne.Timeout():
			// Silence: the ping's answer (or its error, which reconnects
			// the subscription) comes through Receive.
			_ = h.sub.Ping(context.Background())
		case err != nil:
			// Connection lost: go-redis reconnects and subscribes again on
			// the next Receive. Announcements may be lost meanwhile, so
			// every waiter reads its state again once resubscribed.
			if errors.Is(err, redis.ErrClosed) {
				return
			}
			select {
			case <-time.After(backoff):
			case <-h.done:
				return
			}
			backoff = min(2*backoff, 2*time.Second)
		default:
			backoff = 50 * time.Millisecond
			switch m := msg.(type) {
			case *redis.Subscription:
				if !subscribed {
					subscribed = true
					close(h.ready)
				} else {
					h.wakeAll()
				}
			case *redis.Message:
				h.wakeID(m.Payload)
			}
		}
	}
}

func (h *hub) add(id string) *waiter {
	w := &waiter{id: id, wake: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.waiters[id]
	if set == nil {
		set = make(map[*waiter]struct{})
		h.waiters[id] = set
	}
	set[w] = struct{}{}
	return w
}

func (h *hub) remove(w *waiter) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if set := h.waiters[w.id]; set != nil {
		delete(set, w)
		if len(set) == 0 {
			delete(h.waiters, w.id)
		}
	}
}

func (h *hub) wakeID(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.waiters[id] {
		w.signal()
	}
}

func (h *hub) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, set := range h.waiters {
		for w := range set {
			w.signal()
		}
	}
}

func (w *waiter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (h *hub) close() error {
	close(h.done)
	return h.sub.Close()
}
