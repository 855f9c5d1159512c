package webhook

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/smsq/smsq/internal/outcome"
	"github.com/smsq/smsq/internal/phone"
)

// Group is the consumer group webhooks read the outcome stream with.
const Group = "smsq-webhooks"

// Fan-out defaults.
const (
	// DefaultClaimIdle is how long an entry stays unacknowledged before
	// another worker takes it over: far beyond the few milliseconds one
	// entry takes, so that only a dead or stuck worker's entries move.
	DefaultClaimIdle = time.Minute
	// DefaultRetention keeps a finished delivery task, and so its task
	// ID, long enough that an entry read again after a crash (within
	// DefaultClaimIdle and a restart) finds it and queues nothing.
	DefaultRetention = 15 * time.Minute
	defaultBatch     = 100
	defaultBlock     = 2 * time.Second
	// consumerIdle is how long a consumer of the group with nothing
	// pending may stay idle before a starting worker deletes it.
	consumerIdle = time.Hour
)

// Enqueuer queues tasks; *asynq.Client is one.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// FanoutConfig configures a Fanout.
type FanoutConfig struct {
	// Client reads the stream; Enqueuer queues the deliveries. Required.
	Client   redis.UniversalClient
	Enqueuer Enqueuer
	// Prefix of the stream key (outcome.StreamKey); default "smsq".
	Prefix    string
	Endpoints []Endpoint
	Filter    Filter
	// Schedule's length is each delivery's MaxRetry; default
	// DefaultSchedule.
	Schedule Schedule
	// Timeout is one attempt's timeout; the task's is a little longer.
	// Default DefaultTimeout.
	Timeout time.Duration
	// ClaimIdle: see DefaultClaimIdle. Retention: see DefaultRetention.
	ClaimIdle time.Duration
	Retention time.Duration
	// Consumer names this reader in the group; default host, process ID
	// and a random suffix.
	Consumer string
	Metrics  *Metrics
	Logger   *zerolog.Logger
}

// Fanout turns outcome stream entries into delivery tasks.
type Fanout struct {
	c         redis.UniversalClient
	enq       Enqueuer
	stream    string
	consumer  string
	endpoints []Endpoint
	filter    Filter
	maxRetry  int
	timeout   time.Duration
	claimIdle time.Duration
	retention time.Duration
	metrics   *Metrics
	log       zerolog.Logger
	// block is how long a read waits for new entries.
	block time.Duration
}

// NewFanout returns a Fanout for cfg.
func NewFanout(cfg FanoutConfig) (*Fanout, error) {
	if cfg.Client == nil || cfg.Enqueuer == nil {
		return nil, errors.New("webhook: Client and Enqueuer are required")
	}
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("webhook: no endpoint")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = outcome.DefaultPrefix
	}
	if cfg.Schedule == nil {
		cfg.Schedule = DefaultSchedule
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.ClaimIdle <= 0 {
		cfg.ClaimIdle = DefaultClaimIdle
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.Consumer == "" {
		cfg.Consumer = consumerName()
	}
	f := &Fanout{c: cfg.Client, enq: cfg.Enqueuer, stream: outcome.StreamKey(cfg.Prefix), consumer: cfg.Consumer,
		endpoints: cfg.Endpoints, filter: cfg.Filter, maxRetry: len(cfg.Schedule), timeout: cfg.Timeout,
		claimIdle: cfg.ClaimIdle, retention: cfg.Retention, metrics: cfg.Metrics, log: zerolog.Nop(), block: defaultBlock}
	if cfg.Logger != nil {
		f.log = *cfg.Logger
	}
	f.log = f.log.With().Str("component", "webhooks").Str("consumer", f.consumer).Logger()
	return f, nil
}

func consumerName() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	host = strings.Map(func(r rune) rune {
		if r <= ' ' || r > '~' {
			return '_'
		}
		return r
	}, phone.MaskID(host))
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b)
}

// Consumer is this reader's name in the group.
func (f *Fanout) Consumer() string { return f.consumer }

// Init creates the consumer group at the stream's end when there is none:
// webhooks deliver the outcomes that finish from the first start with
// webhooks on. It also deletes consumers long idle with nothing pending,
// left by stopped workers.
func (f *Fanout) Init(ctx context.Context) error {
	err := f.c.XGroupCreateMkStream(ctx, f.stream, Group, "$").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create consumer group %s on %s: %w", Group, f.stream, err)
	}
	cs, err := f.c.XInfoConsumers(ctx, f.stream, Group).Result()
	if err != nil {
		return fmt.Errorf("list consumers of %s: %w", Group, err)
	}
	for _, c := range cs {
		if c.Pending == 0 && c.Idle > consumerIdle {
			_ = f.c.XGroupDelConsumer(ctx, f.stream, Group, c.Name).Err()
		}
	}
	return nil
}

// Run reads and fans out entries until ctx ends: first this consumer's
// own pending entries, then new ones, and every ClaimIdle/2 the entries
// other consumers left pending for longer than ClaimIdle. A failure (Redis
// down) leaves the entry pending and is retried after a pause that grows
// to 5 s; it is logged once per 30 s.
func (f *Fanout) Run(ctx context.Context) {
	pause := 100 * time.Millisecond
	own := true // this consumer's pending entries first
	nextClaim := time.Now()
	var lastLog time.Time
	fail := func(err error) {
		if time.Since(lastLog) >= 30*time.Second {
			f.log.Warn().Err(err).Msg("webhook fan-out failed; the entries stay pending and are read again")
			lastLog = time.Now()
		}
		own = true
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
	for ctx.Err() == nil {
		if time.Now().After(nextClaim) {
			if err := f.claim(ctx); err != nil {
				if ctx.Err() == nil {
					fail(err)
				}
				continue
			}
			nextClaim = time.Now().Add(f.claimIdle / 2)
		}
		id := ">"
		block := f.block
		if own {
			id, block = "0", -1
		}
		res, err := f.c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: Group, Consumer: f.consumer,
			Streams: []string{f.stream, id}, Count: defaultBatch, Block: block}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if ctx.Err() == nil {
				if strings.HasPrefix(err.Error(), "NOGROUP") {
					// The stream was deleted (FLUSHALL, a new Redis).
					err = errors.Join(err, f.Init(ctx))
				}
				fail(err)
			}
			continue
		}
		var msgs []redis.XMessage
		for _, s := range res {
			msgs = append(msgs, s.Messages...)
		}
		if own && len(msgs) == 0 {
			own = false
			continue
		}
		if err := f.process(ctx, msgs); err != nil {
			if ctx.Err() == nil {
				fail(err)
			}
			continue
		}
		pause = 100 * time.Millisecond
	}
}

// claim takes over, page by page, the entries pending for longer than
// ClaimIdle (those of a dead worker) and fans them out.
func (f *Fanout) claim(ctx context.Context) error {
	start := "0-0"
	for {
		msgs, next, err := f.c.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: f.stream, Group: Group,
			MinIdle: f.claimIdle, Start: start, Count: defaultBatch, Consumer: f.consumer}).Result()
		if err != nil {
			if strings.HasPrefix(err.Error(), "NOGROUP") {
				return errors.Join(err, f.Init(ctx))
			}
			return fmt.Errorf("claim pending entries: %w", err)
		}
		if len(msgs) > 0 {
			f.log.Info().Int("entries", len(msgs)).Msg("took over outcome entries left pending by another worker")
			if err := f.process(ctx, msgs); err != nil {
				return err
			}
		}
		if next == "0-0" || next == "" {
			return nil
		}
		start = next
	}
}

// process fans out msgs and acknowledges them together. It stops at the
// first entry it cannot queue; the entries before it are acknowledged.
func (f *Fanout) process(ctx context.Context, msgs []redis.XMessage) error {
	done := make([]string, 0, len(msgs))
	var ferr error
	for _, m := range msgs {
		if err := f.fanout(ctx, m); err != nil {
			ferr = err
			break
		}
		done = append(done, m.ID)
	}
	if len(done) > 0 {
		if err := f.c.XAck(ctx, f.stream, Group, done...).Err(); err != nil {
			return errors.Join(ferr, fmt.Errorf("acknowledge entries: %w", err))
		}
	}
	return ferr
}

// fanout queues one entry's deliveries. An entry that is gone (trimmed
// while pending) or does not parse has nothing to deliver and is done.
func (f *Fanout) fanout(ctx context.Context, m redis.XMessage) error {
	if len(m.Values) == 0 {
		return nil
	}
	e, err := outcome.Parse(m.Values)
	if err == nil && e.Kind != "" {
		// Not a task's outcome (a budget warning): no sms.* webhook.
		f.metrics.event(EventFiltered)
		return nil
	}
	if err == nil {
		var msg Message
		if msg, err = NewMessage(e); err == nil {
			if !f.filter.Match(e.Outcome) {
				f.metrics.event(EventFiltered)
				return nil
			}
			return f.enqueue(ctx, e, msg)
		}
	}
	f.metrics.event(EventInvalid)
	f.log.Error().Str("entry", m.ID).Str("error", phone.MaskText(err.Error())).Msg("outcome entry not delivered as a webhook: it does not parse or holds a phone number")
	return nil
}

func (f *Fanout) enqueue(ctx context.Context, e outcome.Event, msg Message) error {
	for _, ep := range f.endpoints {
		data, err := json.Marshal(payload{Endpoint: ep.ID, TaskID: phone.MaskID(e.TaskID), Message: msg})
		if err != nil {
			return err
		}
		t := asynq.NewTask(TypeDeliver, data, asynq.TaskID(TaskID(ep, msg.ID)), asynq.Queue(Queue),
			asynq.MaxRetry(f.maxRetry), asynq.Timeout(f.timeout+5*time.Second), asynq.Retention(f.retention))
		_, err = f.enq.EnqueueContext(ctx, t)
		switch {
		case errors.Is(err, asynq.ErrTaskIDConflict):
			f.metrics.event(EventDuplicate)
		case err != nil:
			return fmt.Errorf("queue webhook delivery: %w", err)
		default:
			f.metrics.event(EventQueued)
		}
	}
	return nil
}

// TaskID is the ID of the delivery task of message id to ep: the same for
// every read of the entry, so that a second read queues nothing.
func TaskID(ep Endpoint, id string) string { return "webhook:" + ep.ID + ":" + id }
