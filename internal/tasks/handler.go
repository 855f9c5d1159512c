package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/guard"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/logging"
	"github.com/smsq/smsq/internal/phone"
)

// Sender sends one SMS through GenAuth, one attempt per call.
type Sender interface {
	SendSMS(ctx context.Context, req genauth.SendSMSRequest) (*genauth.Response, error)
}

// Reserver holds the (phone, channel) reservations.
type Reserver interface {
	Acquire(ctx context.Context, e164, channel, owner string) (dedupe.Acquired, dedupe.Reservation, error)
	MarkSent(ctx context.Context, e164, channel, owner string) error
	MarkUnknown(ctx context.Context, e164, channel, owner string) error
	Release(ctx context.Context, e164, channel, owner string) (bool, error)
	Window() time.Duration
	// PhoneHash names the phone in keys; the journal indexes the phone
	// under the same name, so that both follow one hash key.
	PhoneHash(e164 string) string
}

// Journal keeps each task's state across attempts.
type Journal interface {
	// Begin opens an attempt of the task id names; a task whose ID names
	// another task gets Begun.Collision.
	Begin(ctx context.Context, taskID string, id history.Identity, now time.Time) (history.Begun, error)
	Record(ctx context.Context, phoneHash string, e history.Entry, unknownAttempt bool) error
}

// taskReader is the optional part of a Journal that reads a task's latest
// recorded entry back.
type taskReader interface {
	Task(ctx context.Context, taskID string) (history.Entry, bool, error)
}

// restoreResult writes the journal's last result for a finished task onto
// the asynq task, so that the Inspector and the UI show it even when the
// original write was lost, and appends its outcome to the outcome stream
// again, in case the worker that recorded it stopped before the append.
func (h *Handler) restoreResult(ctx context.Context, a *attempt) {
	tr, ok := h.journal.(taskReader)
	w := a.task.ResultWriter()
	if !ok || w == nil && h.outcomes == nil {
		return
	}
	e, found, err := tr.Task(ctx, a.id)
	if err != nil || !found || len(e.Result) == 0 {
		return
	}
	h.reappend(ctx, a, e.Result, e.PhoneHash, "")
	if w == nil {
		return
	}
	if _, err := w.Write(e.Result); err != nil {
		h.limited(a.log.Warn().Err(err), "cannot restore the recorded result")
	}
}

// sentMarker and withRecorder are the optional parts of a Reserver and a
// Journal that let the handler send the reservation's sent mark and the
// journal entry in one round trip, when both use the same Redis.
type sentMarker interface {
	MarkSentIn(ctx context.Context, pipe redis.Pipeliner, e164, channel, owner string) func() error
	Client() redis.Cmdable
}

type withRecorder interface {
	RecordWith(ctx context.Context, phoneHash string, e history.Entry, unknownAttempt bool, before, after func(redis.Pipeliner)) error
	Client() redis.Cmdable
}

// Observer is told the result of every attempt (metrics).
type Observer interface {
	Observe(r Result)
}

// RateLimiter hands out send tokens under smsq's own rate limit toward
// GenAuth, shared by every worker.
type RateLimiter interface {
	// Allow takes a token for one send on channel. It returns 0 when the
	// send may go now, or how long to wait before asking again.
	Allow(ctx context.Context, channel string) (time.Duration, error)
}

// DefaultRateMaxWait is how long an attempt waits for a send token by
// default before it gives way and runs again later.
const DefaultRateMaxWait = time.Second

// HandlerConfig configures a Handler.
type HandlerConfig struct {
	Sender       Sender   // required
	Reservations Reserver // required
	Journal      Journal  // required
	// Classifier maps GenAuth answers to classes; the zero value uses the
	// defaults.
	Classifier genauth.Classifier
	// OnHeld is the default held-reservation policy: OnHeldDedupe (default)
	// or OnHeldDefer.
	OnHeld string
	// SendBy is the default deadline after enqueue (or after the first
	// attempt, for payloads without enqueuedAt); default DefaultSendBy.
	SendBy time.Duration
	// Logger receives one line per attempt; default: none.
	Logger *zerolog.Logger
	// Observer, when set, is told every attempt's result.
	Observer Observer
	// RateLimiter, when set, must hand out a token before every GenAuth
	// call; nil means no limit.
	RateLimiter RateLimiter
	// RateMaxWait is the longest an attempt waits for a token, holding its
	// reservation and a worker slot; when the wait is longer the attempt
	// ends as throttled and runs again once the token is due. Default
	// DefaultRateMaxWait.
	RateMaxWait time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Sandbox says that Sender is the built-in fake GenAuth: every result
	// and attempt line is marked so that no one takes its "sent" for a
	// real SMS.
	Sandbox bool
	// JournalOnAsynqRedis says that the Journal uses the Redis the asynq
	// server uses: the task's result is then written onto the asynq task in
	// the journal's round trip (history.ResultKey) rather than through
	// asynq's ResultWriter, one round trip less per attempt.
	JournalOnAsynqRedis bool
	// Guard, when set, is asked before every reservation (see guard.go).
	Guard Guard
	// Outcomes, when set, gets every final outcome, in the round trip
	// that records it where the journal can carry it (see outcomes.go).
	Outcomes Outcomes
}

// Handler processes genauth:send_sms tasks.
type Handler struct {
	sender     Sender
	resv       Reserver
	journal    Journal
	classifier genauth.Classifier
	onHeld     string
	sendBy     time.Duration
	log        zerolog.Logger
	observer   Observer
	now        func() time.Time
	sandbox    bool

	limiter     RateLimiter
	rateMaxWait time.Duration
	guard       Guard
	outcomes    Outcomes
	// recorder is set when other writes can ride with the journal entry:
	// the sent mark when marker is set too (see sentMarker), the task's
	// result when resultWithJournal is (JournalOnAsynqRedis).
	marker            sentMarker
	recorder          withRecorder
	resultWithJournal bool
	// sleep waits for a send token; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error
	// pending keeps definite outcomes Redis refused (see pending.go).
	pending *pendingStore
	// repeats rate-limits the "cannot ..." lines of a Redis outage, which
	// every task in flight would otherwise log.
	repeats *logging.Repeats
}

// outageLogEvery is how often one kind of Redis failure is logged while it
// lasts, as for asynq's own messages.
const outageLogEvery = 30 * time.Second

// limited logs ev with msg unless the same message was logged in the last
// outageLogEvery; the next one logged carries the count held back.
func (h *Handler) limited(ev *zerolog.Event, msg string) {
	ok, n := h.repeats.Allow(msg)
	if !ok {
		ev.Discard()
		return
	}
	if n > 0 {
		ev = ev.Int("repeated", n)
	}
	ev.Msg(msg)
}

var _ asynq.Handler = (*Handler)(nil)

// NewHandler validates cfg and returns a Handler.
func NewHandler(cfg HandlerConfig) (*Handler, error) {
	if cfg.Sender == nil {
		return nil, errors.New("tasks: HandlerConfig.Sender is required")
	}
	if cfg.Reservations == nil {
		return nil, errors.New("tasks: HandlerConfig.Reservations is required")
	}
	if cfg.Journal == nil {
		return nil, errors.New("tasks: HandlerConfig.Journal is required")
	}
	switch cfg.OnHeld {
	case "":
		cfg.OnHeld = OnHeldDedupe
	case OnHeldDedupe, OnHeldDefer:
	default:
		return nil, fmt.Errorf("tasks: OnHeld %q: must be %q or %q", cfg.OnHeld, OnHeldDedupe, OnHeldDefer)
	}
	if cfg.SendBy == 0 {
		cfg.SendBy = DefaultSendBy
	}
	if cfg.SendBy < 0 {
		return nil, fmt.Errorf("tasks: SendBy %s: must be positive", cfg.SendBy)
	}
	log := zerolog.Nop()
	if cfg.Logger != nil {
		log = *cfg.Logger
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RateMaxWait == 0 {
		cfg.RateMaxWait = DefaultRateMaxWait
	}
	if cfg.RateMaxWait < 0 {
		return nil, fmt.Errorf("tasks: RateMaxWait %s: must be positive", cfg.RateMaxWait)
	}
	h := &Handler{
		sender: cfg.Sender, resv: cfg.Reservations, journal: cfg.Journal,
		classifier: cfg.Classifier, onHeld: cfg.OnHeld, sendBy: cfg.SendBy,
		log: log, observer: cfg.Observer, now: cfg.Now, sandbox: cfg.Sandbox,
		limiter: cfg.RateLimiter, rateMaxWait: cfg.RateMaxWait, sleep: sleepCtx, guard: cfg.Guard, outcomes: cfg.Outcomes,
		pending: &pendingStore{every: pendingEvery, now: cfg.Now},
		repeats: &logging.Repeats{Every: outageLogEvery},
	}
	m, ok1 := cfg.Reservations.(sentMarker)
	r, ok2 := cfg.Journal.(withRecorder)
	if ok2 {
		h.recorder, h.resultWithJournal = r, cfg.JournalOnAsynqRedis
	}
	if ok1 && ok2 && m.Client() == r.Client() {
		h.marker = m
	}
	return h, nil
}

// bookkeepingTimeout bounds the Redis writes made after the task's own
// context may have ended (shutdown, task timeout): the outcome of a call
// that was made must still be recorded.
const bookkeepingTimeout = 5 * time.Second

// attempt carries one run of the handler.
type attempt struct {
	task      *asynq.Task
	id        string
	start     time.Time
	lastTry   bool // asynq archives this task whatever error it returns
	log       zerolog.Logger
	res       Result
	phoneHash string
	v         Validated
	deadline  time.Time
	begun     history.Begun
	// ident is what the journal knows this task by; collided is set when
	// its ID already names another task, whose record is not this one's.
	ident    history.Identity
	collided bool
	// unknownCall is set when this attempt's own call may have sent the
	// SMS, the only case the journal counts as an unknown attempt.
	unknownCall bool
	// markSent asks record to mark the reservation sent: GenAuth accepted
	// the call, or holds a live code for the pair.
	markSent bool
	// keptFor is how long asynq keeps the task's result (HeaderRetention).
	keptFor time.Duration
	// ticket is what the abuse guard counted for this attempt.
	ticket guard.Ticket
}

// ProcessTask runs one attempt: validate, check the deadline, reserve the
// (phone, channel) pair, call GenAuth, classify the answer, record it.
func (h *Handler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var m taskMeta
	m.id, _ = asynq.GetTaskID(ctx)
	m.retried, _ = asynq.GetRetryCount(ctx)
	m.maxRetry, _ = asynq.GetMaxRetry(ctx)
	m.queue, _ = asynq.GetQueueName(ctx)
	return h.processTask(ctx, t, m)
}

// taskMeta is what asynq puts in a task's context. asynq offers no way to
// build such a context outside its server, so tests call processTask.
type taskMeta struct {
	id       string
	retried  int
	maxRetry int
	queue    string
}

func (h *Handler) processTask(ctx context.Context, t *asynq.Task, m taskMeta) error {
	a := &attempt{task: t, start: h.now(), id: m.id, ident: history.IdentityOf(m.queue, t.Payload()), keptFor: resultKeptFor(t)}
	a.res.Queue = m.queue
	a.res.Retried = m.retried
	a.lastTry = m.retried >= m.maxRetry
	// A raw producer may have put a phone number into the task ID or the
	// queue name (smsq's producers refuse both): logs show them masked.
	a.log = h.log.With().Str("task_id", phone.MaskID(a.id)).Str("queue", phone.MaskID(a.res.Queue)).Int("retry", m.retried).Logger()
	if a.id == "" {
		// Only a caller outside asynq gets here; without an ID there is no
		// reservation owner, so refuse rather than risk a double send.
		return fmt.Errorf("tasks: no task ID in context: %w", asynq.SkipRetry)
	}

	p, err := Decode(t.Payload())
	if err == nil {
		a.v, err = p.Validate()
	}
	if t.Type() != TypeSendSMS {
		// The handler takes every task (asynq's ServeMux would match
		// genauth:send_sms_v2 by prefix, and retry a type it has no
		// handler for): only the exact type is this contract.
		err = fmt.Errorf("%w: task type %q is not %s", ErrInvalidPayload, phone.MaskText(clip(t.Type(), 60)), TypeSendSMS)
	}
	a.res.IdempotencyKey = phone.MaskID(clip(p.IdempotencyKey, MaxIdempotencyKeyLen))
	if err != nil {
		// Masked: a producer that swapped the fields put the number here.
		a.res.Channel = clip(phone.Mask(p.Channel), 40)
		a.res.Phone = phone.Mask(p.PhoneNumber)
		// Journalled under its own identity like any task, so that an
		// invalid task reusing another task's ID never overwrites its record.
		if done, err := h.begin(ctx, a); done {
			return err
		}
		return h.final(ctx, a, OutcomeInvalid, err.Error(), fmt.Errorf("%w: %w", err, asynq.SkipRetry))
	}
	a.res.Channel = string(a.v.Channel)
	a.res.Phone = a.v.Phone.Masked()
	a.res.SendBy = a.v.SendBy
	a.res.EnqueuedAt = a.v.EnqueuedAt
	a.phoneHash = h.resv.PhoneHash(a.v.Phone.E164)
	a.log = a.log.With().Str("channel", a.res.Channel).Str("phone", a.res.Phone).Logger()

	if h.pending.size() > 0 {
		// Outcomes this worker keeps for want of Redis go first, so that
		// a redelivery of their task reads them instead of stale state.
		bctx, cancel := bookkeeping(ctx)
		h.pending.flush(bctx)
		cancel()
		if h.pending.holds(a.id) {
			err := errors.New("the outcome of an earlier attempt of this task is not recorded yet")
			h.limited(a.log.Warn().Err(err), "cannot open attempt; will retry")
			return h.bail(ctx, a, err)
		}
	}
	if done, err := h.begin(ctx, a); done {
		return err
	}

	a.deadline = a.v.SendBy
	if a.deadline.IsZero() {
		base := a.v.EnqueuedAt
		if base.IsZero() {
			base = a.begun.FirstSeen
		}
		a.deadline = base.Add(h.sendBy)
	}
	a.res.SendBy = a.deadline
	if !a.start.Before(a.deadline) {
		return h.final(ctx, a, OutcomeExpired, "send-by deadline passed before the SMS could be sent", nil)
	}

	if done, err := h.admit(ctx, a); done {
		return err
	}
	e164, ch := a.v.Phone.E164, string(a.v.Channel)
	acq, resv, err := h.resv.Acquire(ctx, e164, ch, a.id)
	switch {
	case errors.Is(err, dedupe.ErrHeld):
		return h.held(ctx, a, resv.Owner, resv.TTL)
	case err != nil:
		h.limited(a.log.Warn().Err(err), "cannot take reservation; will retry")
		return h.bail(ctx, a, err)
	}
	if acq == dedupe.AcquiredReentered {
		if resv.State == dedupe.StateSent {
			return h.final(ctx, a, OutcomeSent, "sent by an earlier attempt of this task", nil)
		}
		// An earlier attempt of this task took the reservation and did not
		// finish: its call may be in flight or its answer lost.
		counted := resv.State == dedupe.StateReserved
		if counted {
			h.markUnknown(ctx, a)
			resv.TTL = h.resv.Window()
		}
		// A worker stopped past its shutdown timeout can mark the
		// reservation unknown and die before its journal entry: count the
		// earlier call here when the journal knows of none, so that a later
		// 422 is read as its confirmation.
		counted = counted || a.begun.UnknownAttempts == 0
		return h.unknown(ctx, a, resv.TTL, counted, "an earlier attempt of this task ended without an answer")
	}
	if err := ctx.Err(); err != nil {
		h.release(ctx, a)
		return h.bail(ctx, a, err)
	}
	if done, err := h.rateLimit(ctx, a); done {
		return err
	}

	callStart := h.now()
	resp, callErr := h.sender.SendSMS(ctx, genauth.SendSMSRequest{
		Channel:          a.v.Channel,
		PhoneNumber:      a.v.Phone.National,
		PhoneCountryCode: a.v.Phone.CountryCode,
		ClientIP:         a.v.ClientIP,
		Lang:             a.v.Lang,
	})
	a.res.GenAuthMS = h.now().Sub(callStart).Milliseconds()
	var gerr *genauth.Error
	switch {
	case resp != nil:
		a.res.HTTPStatus, a.res.StatusCode, a.res.APICode = resp.HTTPStatus, resp.StatusCode, resp.APICode
		a.res.Message, a.res.RequestID = clip(phone.MaskText(resp.Message), 200), phone.MaskID(resp.RequestID)
	case errors.As(callErr, &gerr):
		a.res.HTTPStatus, a.res.StatusCode, a.res.APICode = gerr.HTTPStatus, gerr.StatusCode, gerr.APICode
		a.res.Message, a.res.RequestID = clip(phone.MaskText(gerr.Message), 200), phone.MaskID(gerr.RequestID)
	}
	class, rule := h.classifier.ClassifyRule(resp, callErr)
	a.res.Class, a.res.Rule = class.String(), rule
	if a.res.RequestID != "" {
		a.log = a.log.With().Str("genauth_request_id", a.res.RequestID).Logger()
	}

	switch class {
	case genauth.ClassSent:
		a.markSent = true
		return h.final(ctx, a, OutcomeSent, "", nil)
	case genauth.ClassDuplicate:
		// GenAuth holds a live code for this pair: keep our reservation for
		// the full window so that other tasks see it too.
		a.markSent = true
		if a.begun.UnknownAttempts > 0 || a.begun.Interrupted {
			return h.final(ctx, a, OutcomeSent, "GenAuth's one-minute rule confirms that an earlier attempt was sent", nil)
		}
		return h.held(ctx, a, "genauth", h.resv.Window())
	case genauth.ClassThrottle:
		h.release(ctx, a)
		delay := DefaultThrottleDelay
		if gerr != nil && gerr.RetryAfter > 0 {
			delay = gerr.RetryAfter
		}
		return h.again(ctx, a, OutcomeThrottled, "GenAuth throttled the call", jitter(delay), false, callErr)
	case genauth.ClassRetry:
		h.release(ctx, a)
		return h.again(ctx, a, OutcomeRetrying, "transient failure, nothing sent", 0, true, callErr)
	case genauth.ClassUnknown:
		h.markUnknown(ctx, a)
		return h.unknown(ctx, a, h.resv.Window(), true, errText(callErr))
	default: // genauth.ClassPermanent
		h.release(ctx, a)
		return h.final(ctx, a, OutcomeFailed, errText(callErr), fmt.Errorf("%w: %w", callErr, asynq.SkipRetry))
	}
}

// begin opens the attempt in the journal. done reports that the attempt
// ended there, with err for ProcessTask to return: the journal is
// unreachable, the task already finished (a redelivery), or its ID already
// names a different task.
func (h *Handler) begin(ctx context.Context, a *attempt) (done bool, err error) {
	a.begun, err = h.journal.Begin(ctx, a.id, a.ident, a.start)
	if err != nil {
		h.limited(a.log.Warn().Err(err), "cannot open attempt; will retry")
		return true, h.bail(ctx, a, err)
	}
	if c := a.begun.Collision; c != nil {
		return true, h.collision(ctx, a, c)
	}
	a.res.Attempt = a.begun.Attempt
	a.res.FirstAttemptAt = a.begun.FirstSeen
	a.res.UnknownAttempts = a.begun.UnknownAttempts
	if IsFinal(a.begun.Outcome) {
		// A redelivery (crash, shutdown requeue, a Redis failover that lost
		// the result write) of a task that finished: copy the recorded
		// result onto the task again rather than run it.
		h.restoreResult(ctx, a)
		a.log.Info().Str("outcome", a.begun.Outcome).Msg("task already finished; redelivery ignored")
		if a.begun.Outcome == OutcomeFailed || a.begun.Outcome == OutcomeInvalid {
			// It was archived; keep it there rather than complete it.
			return true, fmt.Errorf("task already finished as %s: %w", a.begun.Outcome, asynq.SkipRetry)
		}
		return true, nil
	}
	return false, nil
}

// collision ends a task whose ID already names a different task (another
// queue, or another payload: a raw producer reusing a TaskID, or a key
// reused after the claim expired). It is never run as that task nor given
// its result: it is archived once as invalid with its own entry, which a
// redelivery of it finds again.
func (h *Handler) collision(ctx context.Context, a *attempt, c *history.Collision) error {
	const why = "task ID already names another task"
	if len(c.Recorded) > 0 {
		h.reappend(ctx, a, c.Recorded, a.phoneHash, a.ident.Hash)
		if w := a.task.ResultWriter(); w != nil {
			if _, err := w.Write(c.Recorded); err != nil {
				h.limited(a.log.Warn().Err(err), "cannot restore the recorded result")
			}
		}
		a.log.Info().Str("holder_queue", phone.MaskID(c.Queue)).Msg("task already finished (" + why + "); redelivery ignored")
		return fmt.Errorf("%s (queue %s): %w", why, c.Queue, asynq.SkipRetry)
	}
	a.collided = true
	a.res.Attempt = 1
	reason := fmt.Sprintf("%s (queue %s, a different payload or queue): this task was not run; give every task its own ID", why, c.Queue)
	return h.final(ctx, a, OutcomeInvalid, reason, fmt.Errorf("%s (queue %s): %w", why, c.Queue, asynq.SkipRetry))
}

// maxRateTries bounds the asks for a token in one attempt. RateMaxWait
// ends the waiting first in practice; this only stops a limiter that keeps
// answering tiny waits from spinning.
const maxRateTries = 100

// rateLimit takes a send token before the GenAuth call. A short wait
// happens here, holding the reservation; a longer one gives the
// reservation back and ends the attempt as throttled, to run again when
// the token is due, without counting as a failure. done reports that the
// attempt ended, with err for ProcessTask to return.
func (h *Handler) rateLimit(ctx context.Context, a *attempt) (done bool, err error) {
	if h.limiter == nil {
		return false, nil
	}
	begin := h.now()
	for try := 1; ; try++ {
		wait, err := h.limiter.Allow(ctx, string(a.v.Channel))
		now := h.now()
		waited := now.Sub(begin)
		a.res.RateWaitMS = waited.Milliseconds()
		switch {
		case err != nil && ctx.Err() != nil:
			h.release(ctx, a)
			return true, h.bail(ctx, a, ctx.Err())
		case err != nil:
			h.release(ctx, a)
			return true, h.again(ctx, a, OutcomeRetrying, "smsq rate limiter unavailable, nothing sent", 0, true, err)
		case wait <= 0:
			return false, nil
		}
		if waited+wait <= h.rateMaxWait && try < maxRateTries && now.Add(wait).Before(a.deadline) {
			// A little jitter, so that the workers refused together do not
			// all come back at the same instant.
			if err := h.sleep(ctx, wait+rand.N(wait/10+time.Millisecond)); err != nil {
				h.release(ctx, a)
				return true, h.bail(ctx, a, err)
			}
			continue
		}
		h.release(ctx, a)
		delay := jitter(wait)
		if !now.Add(delay).Before(a.deadline) {
			return true, h.final(ctx, a, OutcomeExpired, "smsq rate limit toward GenAuth: no send slot before the send-by deadline", nil)
		}
		return true, h.again(ctx, a, OutcomeThrottled, "smsq rate limit toward GenAuth reached; runs again when a send slot is free", delay, false, nil)
	}
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// held handles a reservation held by another task (or by GenAuth's own
// minute rule) according to the task's policy.
func (h *Handler) held(ctx context.Context, a *attempt, holder string, ttl time.Duration) error {
	a.res.Holder = holder
	a.res.ReservedForMS = ttl.Milliseconds()
	policy := a.v.OnHeld
	if policy == "" {
		policy = h.onHeld
	}
	if policy == OnHeldDedupe {
		return h.final(ctx, a, OutcomeDeduplicated, "a code sent to this phone on this channel inside the window is still valid", nil)
	}
	delay := jitter(ttl)
	if !a.start.Add(delay).Before(a.deadline) {
		return h.final(ctx, a, OutcomeExpired, "reservation held past the send-by deadline", nil)
	}
	return h.again(ctx, a, OutcomeDeferred, "reservation held; runs again when it expires", delay, false, errors.New("reservation held by "+holder))
}

// unknown handles an attempt whose call may have sent the SMS: no new call
// before the window ends, and none at all past the deadline.
func (h *Handler) unknown(ctx context.Context, a *attempt, wait time.Duration, counted bool, reason string) error {
	if counted {
		a.res.UnknownAttempts++
	}
	a.unknownCall = counted
	delay := jitter(wait)
	if !a.start.Add(delay).Before(a.deadline) {
		return h.record(ctx, a, OutcomeExpired, true, "outcome of the last call unknown (the SMS may have been sent); deadline passes before the window ends: "+reason, counted, nil)
	}
	return h.again(ctx, a, OutcomeUnknown, "the SMS may have been sent; no new call before the window ends", delay, false, errors.New(reason))
}

// again ends an attempt that will be retried. On the last try asynq
// archives whatever the handler returns, so the task is recorded as failed.
func (h *Handler) again(ctx context.Context, a *attempt, outcome, reason string, delay time.Duration, failure bool, cause error) error {
	if cause == nil {
		cause = errors.New(reason)
	}
	text := reason
	if c := errText(cause); c != reason {
		text += ": " + c
	}
	if a.lastTry {
		return h.final(ctx, a, OutcomeFailed, "retries exhausted; last attempt "+outcome+": "+text, cause)
	}
	a.res.RetryInMS = delay.Milliseconds()
	err := cause
	if delay > 0 || !failure {
		err = &delayError{err: cause, delay: delay, failure: failure}
	}
	return h.record(ctx, a, outcome, false, text, a.unknownCall, err)
}

// bail ends an attempt on an error outside GenAuth's answer (Redis, an
// ended context). asynq retries it, except on the last try, where it
// archives the task whatever is returned: record that as failed first, so
// that no task ends without an outcome.
func (h *Handler) bail(ctx context.Context, a *attempt, err error) error {
	h.settleGuard(ctx, a)
	if a.lastTry {
		return h.final(ctx, a, OutcomeFailed, "retries exhausted; last attempt: "+errText(err), err)
	}
	return err
}

// final records a final outcome and returns ret (nil for outcomes that
// complete the task).
func (h *Handler) final(ctx context.Context, a *attempt, outcome, reason string, ret error) error {
	return h.record(ctx, a, outcome, true, reason, false, ret)
}

func (h *Handler) record(ctx context.Context, a *attempt, outcome string, final bool, reason string, unknownAttempt bool, ret error) error {
	h.settleGuard(ctx, a)
	end := h.now()
	r := &a.res
	// Reasons quote GenAuth and producers, who may echo the number.
	r.Outcome, r.Final, r.Reason = outcome, final, clip(phone.MaskText(reason), 500)
	r.Sandbox = h.sandbox
	r.FinishedAt = end.UTC()
	r.DurationMS = end.Sub(a.start).Milliseconds()
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	bctx, cancel := bookkeeping(ctx)
	defer cancel()
	// Every attempt is journalled; only an invalid payload (always final)
	// has no phone to index it by.
	e := history.Entry{TaskID: a.id, Outcome: outcome, Final: final, UpdatedAt: end, Result: data, ResultKeptFor: a.keptFor}
	if a.collided {
		e.Collision = a.ident.Hash
	}
	oe := outcomeEntry{collision: e.Collision}
	if final && h.outcomes != nil {
		ev := r.Event(a.id, a.phoneHash)
		oe.event = &ev
	}
	jerr, markErr, resErr, appErr := h.writeRecord(bctx, a, e, oe, unknownAttempt)
	if markErr != nil {
		h.limited(a.log.Warn().Err(markErr), "cannot mark reservation sent")
	}
	var recErr error
	if resErr != nil {
		recErr = fmt.Errorf("write task result: %w", resErr)
	}
	if jerr != nil && (a.markSent || final && a.res.Class != "") {
		// GenAuth gave a definite answer: keep it until Redis takes it
		// rather than let the task run again on stale state (see
		// pending.go). The kept write carries the result too.
		var resErr error
		jerr = h.keep(ctx, a, e, oe, unknownAttempt, jerr, &resErr)
		if jerr == nil {
			recErr = nil
			if resErr != nil && ctx.Err() == nil {
				if _, err := a.task.ResultWriter().Write(data); err != nil {
					recErr = fmt.Errorf("write task result: %w", err)
				}
			}
		}
	}
	if recErr == nil {
		recErr = jerr
	}
	if recErr == nil && appErr != nil {
		recErr = errAppend(appErr)
		if a.lastTry || ret != nil {
			// asynq ends the task (completed on its last try, archived
			// with ret) whatever is returned, and no redelivery will
			// append: keep the append until Redis takes it. Otherwise the
			// error below makes asynq run the task again, which appends.
			h.keepAppend(a, oe)
		}
	}
	if h.observer != nil {
		h.observer.Observe(*r)
	}

	ev := event(a, outcome)
	ev.Str("outcome", outcome).Bool("final", final).Int("attempt", r.Attempt).
		Dur("duration", end.Sub(a.start))
	if r.StatusCode != 0 || r.HTTPStatus != 0 {
		ev.Int("status_code", r.StatusCode).Int("http_status", r.HTTPStatus).Str("class", r.Class).Str("rule", r.Rule)
	}
	if r.APICode != 0 {
		ev.Int("api_code", r.APICode)
	}
	if outcome == OutcomeBlocked {
		ev.Str("rule", r.Rule).Time("lifts_at", r.LiftsAt)
	}
	if r.Holder != "" {
		ev.Str("holder", phone.MaskID(r.Holder))
	}
	if r.RetryInMS > 0 {
		ev.Int64("retry_in_ms", r.RetryInMS)
	}
	if r.RateWaitMS > 0 {
		ev.Int64("rate_wait_ms", r.RateWaitMS)
	}
	if reason != "" {
		ev.Str("reason", r.Reason)
	}
	if r.Sandbox {
		ev.Bool("sandbox", true)
	}
	ev.Msg("send_sms attempt")

	if recErr != nil {
		h.limited(a.log.Error().Err(recErr).Str("outcome", outcome), "cannot record outcome")
		if final && ret == nil && !a.lastTry {
			// Retrying records the outcome later: the reservation state and
			// the journal make the rerun safe. On the last try asynq would
			// archive the task instead, so it completes with what was written.
			return recErr
		}
	}
	return ret
}

// event picks the level: Error for a final failure, Warn for a failure
// that will be retried, Info for everything else.
func event(a *attempt, outcome string) *zerolog.Event {
	switch outcome {
	case OutcomeFailed, OutcomeInvalid:
		return a.log.Error()
	case OutcomeRetrying, OutcomeUnknown:
		return a.log.Warn()
	default:
		return a.log.Info()
	}
}

// writeRecord writes an attempt's journal entry, its result onto the
// asynq task and, when the attempt asks for it, the reservation's sent
// mark: in one round trip when they share a Redis (the result and the mark
// ahead of the entry, so that a replica that has the entry has them too).
// jerr is the journal's error, markErr the mark's, resErr the result's.
//
// A final outcome goes to the outcome stream behind the entry; appErr is
// the append's error (the entry was written without it).
func (h *Handler) writeRecord(ctx context.Context, a *attempt, e history.Entry, oe outcomeEntry, unknownAttempt bool) (jerr, markErr, resErr, appErr error) {
	w := a.task.ResultWriter()
	if h.recorder == nil || !h.resultWithJournal || w == nil {
		// asynq's ResultWriter, over its own connection, while the
		// journal is written: one round trip of waiting, two requests.
		var written chan error
		if w != nil {
			written = make(chan error, 1)
			go func() {
				_, err := w.Write(e.Result)
				written <- err
			}()
		}
		// Written apart, the result may be lost alone: the journal keeps
		// its own copy.
		e.ResultKeptFor = 0
		jerr, markErr, appErr = h.writeJournal(ctx, a, e, oe, unknownAttempt, nil)
		if written != nil {
			resErr = <-written
		}
		return jerr, markErr, resErr, appErr
	}
	var res *redis.IntCmd
	jerr, markErr, appErr = h.writeJournal(ctx, a, e, oe, unknownAttempt, func(p redis.Pipeliner) {
		res = p.HSet(ctx, history.ResultKey(a.res.Queue, a.id), "result", []byte(e.Result))
	})
	if res == nil {
		// The journal wrote nothing of ours (an entry it keeps apart, or
		// an error before the round trip).
		_, resErr = w.Write(e.Result)
		return jerr, markErr, resErr, appErr
	}
	if resErr = res.Err(); resErr != nil && jerr == nil && e.ResultKeptFor > 0 {
		// The journal took the entry without its result, which is then
		// nowhere: copy it into the journal after all, for a redelivery to
		// restore (the attempt is not counted again).
		e.ResultKeptFor = 0
		jerr = h.journal.Record(ctx, a.phoneHash, e, false)
	}
	return jerr, markErr, resErr, appErr
}

// writeJournal writes the journal entry, with the writes result queues
// (when not nil) and the sent mark (when the attempt asks for it) ahead of
// it in the same round trip where the journal can carry them.
func (h *Handler) writeJournal(ctx context.Context, a *attempt, e history.Entry, oe outcomeEntry, unknownAttempt bool, result func(redis.Pipeliner)) (jerr, markErr, appErr error) {
	after, settle := h.appendAfter(ctx, a, oe)
	if h.recorder == nil {
		if a.markSent {
			markErr = h.resv.MarkSent(ctx, a.v.Phone.E164, string(a.v.Channel), a.id)
		}
		jerr = h.journal.Record(ctx, a.phoneHash, e, unknownAttempt)
		return jerr, markErr, settle(jerr == nil)
	}
	var mark func() error
	jerr = h.recorder.RecordWith(ctx, a.phoneHash, e, unknownAttempt, func(p redis.Pipeliner) {
		if result != nil {
			result(p)
		}
		if a.markSent && h.marker != nil {
			mark = h.marker.MarkSentIn(ctx, p, a.v.Phone.E164, string(a.v.Channel), a.id)
		}
	}, after)
	switch {
	case mark != nil:
		markErr = mark()
	case a.markSent:
		markErr = h.resv.MarkSent(ctx, a.v.Phone.E164, string(a.v.Channel), a.id)
	}
	return jerr, markErr, settle(jerr == nil)
}

// keep holds a definite outcome that Redis refused (first error cause) in
// the pending store and waits until it is written or the task's context
// ends; it returns nil once written. The sent mark is written again with
// it; a reservation that expired meanwhile needs no mark.
//
// Once written, *resultErr is the error of the task result's write (the
// journal then holds the result).
func (h *Handler) keep(ctx context.Context, a *attempt, e history.Entry, oe outcomeEntry, unknownAttempt bool, cause error, resultErr *error) error {
	w := h.pending.add(a.id, e.Outcome, a.log, func(ctx context.Context) error {
		jerr, markErr, resErr, appErr := h.writeRecord(ctx, a, e, oe, unknownAttempt)
		if jerr == nil && appErr != nil {
			// The entry is written and the task completes with it: keep
			// the append on its own until Redis takes it.
			h.limited(a.log.Warn().Err(appErr), "cannot append outcome to the outcome stream; keeping it")
			h.keepAppend(a, oe)
		}
		if jerr == nil {
			*resultErr = resErr
		}
		if jerr == nil && markErr != nil && !errors.Is(markErr, dedupe.ErrNotOwner) {
			// The journal, which tells a redelivery the task is done, is
			// written; the mark is only for other tasks of the pair, and
			// the reservation outlasts GenAuth's own window anyway.
			h.limited(a.log.Warn().Err(markErr), "cannot mark reservation sent")
		}
		return jerr
	})
	if w == nil {
		return fmt.Errorf("%w (too many outcomes already waiting for Redis)", cause)
	}
	h.limited(a.log.Warn().Err(cause).Str("outcome", e.Outcome),
		"cannot record outcome; keeping it and writing it as soon as Redis takes writes")
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("outcome %s kept in this worker, not yet recorded: %w", e.Outcome, cause)
	}
}

func (h *Handler) release(ctx context.Context, a *attempt) {
	bctx, cancel := bookkeeping(ctx)
	defer cancel()
	if _, err := h.resv.Release(bctx, a.v.Phone.E164, string(a.v.Channel), a.id); err != nil {
		h.limited(a.log.Warn().Err(err), "cannot release reservation; it expires by itself")
	}
}

// bookkeeping returns a context for Redis writes that must happen even when
// the task's context has ended (shutdown, task timeout).
func bookkeeping(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
}

func (h *Handler) markUnknown(ctx context.Context, a *attempt) {
	bctx, cancel := bookkeeping(ctx)
	defer cancel()
	if err := h.resv.MarkUnknown(bctx, a.v.Phone.E164, string(a.v.Channel), a.id); err != nil {
		h.limited(a.log.Warn().Err(err), "cannot mark reservation unknown")
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// clip bounds strings copied from untrusted input into results and logs.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
