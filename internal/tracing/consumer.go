package tracing

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/phone"
	"github.com/smsq/smsq/internal/tasks"
)

// Consumer traces the worker's attempts. Its wrappers are installed only
// when tracing is on, so that a worker without it runs exactly as before.
type Consumer struct {
	tp     trace.TracerProvider
	tracer trace.Tracer
}

// NewConsumer returns a Consumer starting spans from tp.
func NewConsumer(tp trace.TracerProvider) *Consumer {
	return &Consumer{tp: tp, tracer: tp.Tracer(ScopeName)}
}

// attemptKey holds the *attemptSpan of the attempt a context belongs to.
type attemptKey struct{}

// attemptSpan is one attempt's consumer span and what the journal told it.
type attemptSpan struct {
	taskID   string
	span     trace.Span
	recorded bool
}

// current returns the attempt span of ctx when it is recording and belongs
// to taskID (or taskID is empty): the handler writes outcomes kept for want
// of Redis from other tasks' contexts, which must not land on their spans.
func current(ctx context.Context, taskID string) *attemptSpan {
	a, _ := ctx.Value(attemptKey{}).(*attemptSpan)
	if a == nil || !a.span.IsRecording() || (taskID != "" && a.taskID != taskID) {
		return nil
	}
	return a
}

// event adds an event to the attempt span of ctx, if it is taskID's.
func event(ctx context.Context, taskID, name string, attrs ...attribute.KeyValue) {
	if a := current(ctx, taskID); a != nil {
		a.span.AddEvent(name, trace.WithAttributes(attrs...))
	}
}

// Handler wraps next so that every attempt runs in a consumer span of its
// own, linked to the producer's span whose context the task's headers
// carry.
func (c *Consumer) Handler(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		queue, _ := asynq.GetQueueName(ctx)
		retried, _ := asynq.GetRetryCount(ctx)
		queue = phone.MaskID(queue)
		opts := []trace.SpanStartOption{
			trace.WithNewRoot(),
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(
				semconv.MessagingSystemKey.String(System),
				semconv.MessagingOperationTypeProcess,
				semconv.MessagingOperationName("process"),
				semconv.MessagingDestinationName(queue),
				semconv.MessagingMessageID(phone.MaskID(id)),
				AttrRetry.Int(retried),
			),
		}
		if sc := trace.SpanContextFromContext(propagator.Extract(context.Background(), propagation.MapCarrier(t.Headers()))); sc.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
		}
		ctx, span := c.tracer.Start(ctx, "process "+queue, opts...)
		a := &attemptSpan{taskID: id, span: span}
		err := next.ProcessTask(context.WithValue(ctx, attemptKey{}, a), t)
		if !a.recorded {
			// Redis refused the journal, or the task was a redelivery of
			// one already finished: no outcome of this attempt.
			span.SetAttributes(AttrOutcome.String("none"))
			if err != nil {
				span.SetStatus(codes.Error, "the attempt ended without recording an outcome")
			}
		}
		span.End()
		return err
	})
}

// Transport wraps rt so that every GenAuth call is a client HTTP span under
// the attempt's span.
func (c *Consumer) Transport(rt http.RoundTripper) http.RoundTripper {
	return otelhttp.NewTransport(rt,
		otelhttp.WithTracerProvider(c.tp),
		otelhttp.WithPropagators(propagator),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			return r.Method + " " + r.URL.Path
		}))
}

// Journal is a history.Store whose Begin and Record also tell the
// attempt's span the attempt number and the recorded outcome.
type Journal struct {
	*history.Store
}

// Begin is history.Store.Begin; the attempt number goes on the span.
func (j Journal) Begin(ctx context.Context, taskID string, id history.Identity, now time.Time) (history.Begun, error) {
	b, err := j.Store.Begin(ctx, taskID, id, now)
	if a := current(ctx, taskID); a != nil {
		switch {
		case err != nil:
			a.span.AddEvent("journal.begin failed")
		case b.Collision != nil:
			a.span.AddEvent("journal.begin", trace.WithAttributes(attribute.Bool("smsq.collision", true)))
		default:
			a.span.SetAttributes(AttrAttempt.Int(b.Attempt))
			a.span.AddEvent("journal.begin", trace.WithAttributes(
				attribute.Int("smsq.unknown_attempts", b.UnknownAttempts),
				attribute.Bool("smsq.interrupted", b.Interrupted)))
		}
	}
	return b, err
}

// Record is history.Store.Record; the outcome goes on the span.
func (j Journal) Record(ctx context.Context, phoneHash string, e history.Entry, unknownAttempt bool) error {
	err := j.Store.Record(ctx, phoneHash, e, unknownAttempt)
	note(ctx, e, err)
	return err
}

// RecordWith is history.Store.RecordWith; the outcome goes on the span.
func (j Journal) RecordWith(ctx context.Context, phoneHash string, e history.Entry, unknownAttempt bool, before, after func(redis.Pipeliner)) error {
	err := j.Store.RecordWith(ctx, phoneHash, e, unknownAttempt, before, after)
	note(ctx, e, err)
	return err
}

// spanResult is the part of tasks.Result a span shows: smsq's own words
// and GenAuth's codes, never the phone, reason or GenAuth's message.
type spanResult struct {
	Outcome    string `json:"outcome"`
	Final      bool   `json:"final"`
	Channel    string `json:"channel"`
	HTTPStatus int    `json:"httpStatus"`
	StatusCode int    `json:"statusCode"`
	APICode    int    `json:"apiCode"`
	RequestID  string `json:"requestId"`
	Class      string `json:"class"`
	Rule       string `json:"rule"`
	RateWaitMS int64  `json:"rateWaitMs"`
	RetryInMS  int64  `json:"retryInMs"`
	Sandbox    bool   `json:"sandbox"`
}

// note puts an attempt's recorded outcome on its span.
func note(ctx context.Context, e history.Entry, err error) {
	a := current(ctx, e.TaskID)
	if a == nil {
		return
	}
	if err != nil {
		// The handler keeps the outcome and writes it later; the span
		// still shows what the attempt decided.
		a.span.AddEvent("journal.record failed")
	}
	var r spanResult
	_ = json.Unmarshal(e.Result, &r)
	a.recorded = true
	attrs := []attribute.KeyValue{
		AttrOutcome.String(e.Outcome), AttrFinal.Bool(e.Final),
		// The handler masks and clips a channel that did not validate.
		AttrChannel.String(phone.MaskID(r.Channel)),
	}
	if r.Class != "" {
		attrs = append(attrs, AttrClass.String(r.Class), AttrRule.String(phone.MaskText(r.Rule)))
	}
	if r.HTTPStatus != 0 {
		attrs = append(attrs, attribute.Int("genauth.http_status", r.HTTPStatus))
	}
	if r.StatusCode != 0 {
		attrs = append(attrs, attribute.Int("genauth.status_code", r.StatusCode))
	}
	if r.APICode != 0 {
		attrs = append(attrs, attribute.Int("genauth.api_code", r.APICode))
	}
	if r.RequestID != "" {
		attrs = append(attrs, attribute.String("genauth.request_id", phone.MaskID(r.RequestID)))
	}
	if r.RateWaitMS > 0 {
		attrs = append(attrs, AttrRateWaitMS.Int64(r.RateWaitMS))
	}
	if r.RetryInMS > 0 {
		attrs = append(attrs, attribute.Int64("smsq.retry_in_ms", r.RetryInMS))
	}
	if r.Sandbox {
		attrs = append(attrs, AttrSandbox.Bool(true))
	}
	a.span.SetAttributes(attrs...)
	switch e.Outcome {
	case tasks.OutcomeFailed, tasks.OutcomeInvalid:
		a.span.SetStatus(codes.Error, e.Outcome)
	}
}

// Reservations is a dedupe.Store whose steps are events on the attempt's
// span.
type Reservations struct {
	*dedupe.Store
}

// Acquire is dedupe.Store.Acquire, as a "reservation.acquire" event.
func (r Reservations) Acquire(ctx context.Context, e164, channel, owner string) (dedupe.Acquired, dedupe.Reservation, error) {
	acq, resv, err := r.Store.Acquire(ctx, e164, channel, owner)
	if a := current(ctx, owner); a != nil {
		got := "error"
		switch {
		case err == nil && acq == dedupe.AcquiredReentered:
			got = "reentered"
		case err == nil:
			got = "new"
		case resv.Owner != "":
			got = "held"
		}
		attrs := []attribute.KeyValue{attribute.String("smsq.reservation", got)}
		if resv.State != "" {
			attrs = append(attrs, attribute.String("smsq.reservation.state", string(resv.State)),
				attribute.Int64("smsq.reservation.ttl_ms", resv.TTL.Milliseconds()))
		}
		a.span.AddEvent("reservation.acquire", trace.WithAttributes(attrs...))
	}
	return acq, resv, err
}

// MarkSent is dedupe.Store.MarkSent, as a "reservation.mark_sent" event.
func (r Reservations) MarkSent(ctx context.Context, e164, channel, owner string) error {
	err := r.Store.MarkSent(ctx, e164, channel, owner)
	event(ctx, owner, "reservation.mark_sent", attribute.Bool("smsq.ok", err == nil))
	return err
}

// MarkSentIn is dedupe.Store.MarkSentIn, as a "reservation.mark_sent" event.
func (r Reservations) MarkSentIn(ctx context.Context, pipe redis.Pipeliner, e164, channel, owner string) func() error {
	event(ctx, owner, "reservation.mark_sent")
	return r.Store.MarkSentIn(ctx, pipe, e164, channel, owner)
}

// MarkUnknown is dedupe.Store.MarkUnknown, as a "reservation.mark_unknown"
// event.
func (r Reservations) MarkUnknown(ctx context.Context, e164, channel, owner string) error {
	err := r.Store.MarkUnknown(ctx, e164, channel, owner)
	event(ctx, owner, "reservation.mark_unknown", attribute.Bool("smsq.ok", err == nil))
	return err
}

// Release is dedupe.Store.Release, as a "reservation.release" event.
func (r Reservations) Release(ctx context.Context, e164, channel, owner string) (bool, error) {
	ok, err := r.Store.Release(ctx, e164, channel, owner)
	event(ctx, owner, "reservation.release", attribute.Bool("smsq.released", ok))
	return ok, err
}

// RateLimiter wraps a tasks.RateLimiter so that every ask for a send token
// is a "rate_limit" event with the wait it was told.
func RateLimiter(l tasks.RateLimiter) tasks.RateLimiter { return rateLimiter{l} }

type rateLimiter struct{ tasks.RateLimiter }

func (l rateLimiter) Allow(ctx context.Context, channel string) (time.Duration, error) {
	wait, err := l.RateLimiter.Allow(ctx, channel)
	event(ctx, "", "rate_limit", attribute.Int64("smsq.rate_limit.wait_ms", wait.Milliseconds()), attribute.Bool("smsq.ok", err == nil))
	return wait, err
}
