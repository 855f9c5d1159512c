package tracing

import (
	"context"
	"net/http"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/smsq/smsq/internal/phone"
	"github.com/smsq/smsq/internal/tasks"
)

// Attribute keys of smsq's own, beside the messaging conventions'.
const (
	AttrChannel    = attribute.Key("smsq.channel")
	AttrOutcome    = attribute.Key("smsq.outcome")
	AttrFinal      = attribute.Key("smsq.final")
	AttrClass      = attribute.Key("smsq.class")
	AttrRule       = attribute.Key("smsq.rule")
	AttrAttempt    = attribute.Key("smsq.attempt")
	AttrRetry      = attribute.Key("smsq.retry")
	AttrRateWaitMS = attribute.Key("smsq.rate_wait_ms")
	AttrSandbox    = attribute.Key("smsq.sandbox")
)

// Producer starts the producer span of every enqueue and carries its
// context to the worker in the task's headers.
type Producer struct {
	tracer trace.Tracer
}

// NewProducer returns a Producer starting spans from tp; nil means the
// global tracer provider (otel.GetTracerProvider), so that a service that
// sets one up traces its enqueues without further wiring.
func NewProducer(tp trace.TracerProvider) *Producer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return &Producer{tracer: tp.Tracer(ScopeName)}
}

// Start begins the producer span of an enqueue of t into queue and writes
// the span's W3C trace context into t's headers (replacing any earlier
// one, for a task enqueued again). A task made without headers
// (asynq.NewTask rather than tasks.NewTask) carries none. End the span
// with End.
//
// With a no-op tracer provider and no span in ctx this costs a context and
// no header; with a span in ctx (the caller's request), the task carries
// that span's context.
func (p *Producer) Start(ctx context.Context, t *asynq.Task, queue, channel string) (context.Context, trace.Span) {
	// Attributes are set only on a recording span, so that a service
	// that does not trace pays for none of them. Producers validate queue
	// names (tasks.ValidateQueue), so the name holds no phone number.
	ctx, span := p.tracer.Start(ctx, sendName(queue), producerKind)
	if span.IsRecording() {
		span.SetAttributes(
			semconv.MessagingSystemKey.String(System),
			semconv.MessagingOperationTypeSend,
			semconv.MessagingOperationName("send"),
			semconv.MessagingDestinationName(phone.MaskID(queue)),
			AttrChannel.String(phone.MaskID(channel)),
		)
	}
	if h := t.Headers(); h != nil {
		if len(h) > 0 {
			delete(h, "traceparent")
			delete(h, "tracestate")
		}
		propagator.Inject(ctx, propagation.MapCarrier(h))
	}
	return ctx, span
}

var producerKind = trace.WithSpanKind(trace.SpanKindProducer)

// sendName is the producer span's name, "send" and the queue, without an
// allocation for the default queues.
func sendName(queue string) string {
	switch queue {
	case tasks.QueueCritical:
		return "send " + tasks.QueueCritical
	case tasks.QueueDefault:
		return "send " + tasks.QueueDefault
	case tasks.QueueLow:
		return "send " + tasks.QueueLow
	}
	return "send " + queue
}

// Incoming wraps an HTTP handler so that a request's W3C trace context
// (traceparent, tracestate) becomes its context's remote parent: a
// producer span started while serving it is a child of the caller's span.
// It starts no span of its own and records nothing of the request.
func Incoming(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("traceparent") != "" {
			r = r.WithContext(propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header)))
		}
		h.ServeHTTP(w, r)
	})
}

// End ends a producer span with the ID asynq gave the task, or the
// enqueue's error.
func End(span trace.Span, info *asynq.TaskInfo, err error) {
	if span.IsRecording() {
		switch {
		case err != nil:
			// smsq's enqueue errors name the idempotency key, never the
			// phone; masked all the same, as everywhere else.
			span.SetStatus(codes.Error, phone.MaskText(err.Error()))
		case info != nil:
			span.SetAttributes(semconv.MessagingMessageID(phone.MaskID(info.ID)))
		}
	}
	span.End()
}
