package tracing_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/logging"
	"github.com/smsq/smsq/internal/phone"
	"github.com/smsq/smsq/internal/tasks"
	"github.com/smsq/smsq/internal/tracing"
)

// rig is a worker wired as cmd/worker wires it with tracing on, under a
// real asynq.Server, every span going to rec.
type rig struct {
	rec    *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	rdb    *redis.Client
	fake   *genauthtest.Server
	client *smsq.Client
	insp   *asynq.Inspector
}

// slowOnce makes the first ask for a send token wait 20 ms.
type slowOnce struct {
	mu   sync.Mutex
	done bool
}

func (l *slowOnce) Allow(context.Context, string) (time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.done = true
		return 20 * time.Millisecond, nil
	}
	return 0, nil
}

// queues served by the rig: the defaults and one a raw producer named
// after a phone number.
var rigQueues = map[string]int{"critical": 6, "default": 3, "low": 1, "otp-13800138000": 1}

func startRig(t *testing.T) *rig {
	t.Helper()
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	c := tracing.NewConsumer(tp)

	fake := genauthtest.NewServer(genauthtest.Options{})
	t.Cleanup(fake.Close)
	sender, err := genauth.New(genauth.Config{AppHost: fake.URL(), AppID: fake.AppID(), WrapTransport: c.Transport})
	if err != nil {
		t.Fatal(err)
	}
	store, err := dedupe.New(dedupe.Config{Client: rdb})
	if err != nil {
		t.Fatal(err)
	}
	journal, err := history.New(history.Config{Client: rdb})
	if err != nil {
		t.Fatal(err)
	}
	h, err := tasks.NewHandler(tasks.HandlerConfig{
		Sender: sender, Reservations: tracing.Reservations{Store: store}, Journal: tracing.Journal{Store: journal},
		RateLimiter: tracing.RateLimiter(&slowOnce{}),
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := tasks.ServerConfig(2, 20*time.Millisecond, &logging.Asynq{Log: zerolog.Nop()})
	cfg.Queues, cfg.LogLevel = rigQueues, asynq.FatalLevel
	srv := asynq.NewServerFromRedisClient(rdb, cfg)
	if err := srv.Start(c.Handler(h)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	client := smsq.NewClientFromRedis(rdb, smsq.WithTracerProvider(tp))
	return &rig{rec: rec, tp: tp, rdb: rdb, fake: fake, client: client, insp: insp}
}

// waitSpans waits until n consumer spans have ended.
func (r *rig) waitSpans(t *testing.T, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		spans := r.rec.Ended()
		if len(byKind(spans, trace.SpanKindConsumer)) >= n {
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d spans ended, want %d consumer spans among them: %v", len(spans), n, names(spans))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func byKind(spans []sdktrace.ReadOnlySpan, k trace.SpanKind) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.SpanKind() == k {
			out = append(out, s)
		}
	}
	return out
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.SpanKind().String()+" "+s.Name())
	}
	return out
}

func attrs(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func wantAttrs(t *testing.T, what string, got map[string]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s = %q, want %q (all: %v)", what, k, got[k], v, got)
		}
	}
}

func TestConsumerSpanLinksToProducerSpan(t *testing.T) {
	r := startRig(t)
	// The caller's own request span: the producer span is its child.
	ctx, req := r.tp.Tracer("app").Start(context.Background(), "POST /login")
	rc, err := r.client.Send(ctx, smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "+8613800138000", ClientIP: "203.0.113.7"}, smsq.WithIdempotencyKey("login-1"))
	req.End()
	if err != nil {
		t.Fatal(err)
	}
	spans := r.waitSpans(t, 1)

	prods := byKind(spans, trace.SpanKindProducer)
	if len(prods) != 1 {
		t.Fatalf("producer spans %v, want one", names(spans))
	}
	prod := prods[0]
	if prod.Name() != "send critical" || prod.Parent().SpanID() != req.SpanContext().SpanID() {
		t.Fatalf("producer span %q under %s, want \"send critical\" under the request span %s", prod.Name(), prod.Parent().SpanID(), req.SpanContext().SpanID())
	}
	wantAttrs(t, "producer", attrs(prod.Attributes()), map[string]string{
		"messaging.system": "asynq", "messaging.operation.type": "send", "messaging.destination.name": "critical",
		"messaging.message.id": rc.TaskID, "smsq.channel": "CHANNEL_LOGIN",
	})

	cons := byKind(spans, trace.SpanKindConsumer)[0]
	if cons.Name() != "process critical" {
		t.Errorf("consumer span %q, want \"process critical\"", cons.Name())
	}
	if cons.Parent().IsValid() || cons.SpanContext().TraceID() == prod.SpanContext().TraceID() {
		t.Errorf("consumer span has parent %v in trace %s: want a root of its own trace", cons.Parent(), cons.SpanContext().TraceID())
	}
	links := cons.Links()
	if len(links) != 1 || !links[0].SpanContext.Equal(prod.SpanContext().WithRemote(true)) {
		t.Fatalf("consumer links %v, want the producer span %v", links, prod.SpanContext())
	}
	wantAttrs(t, "consumer", attrs(cons.Attributes()), map[string]string{
		"messaging.system": "asynq", "messaging.operation.type": "process", "messaging.destination.name": "critical",
		"messaging.message.id": rc.TaskID, "smsq.channel": "CHANNEL_LOGIN", "smsq.outcome": "sent", "smsq.final": "true",
		"smsq.class": "sent", "smsq.attempt": "1", "smsq.retry": "0", "genauth.status_code": "200",
	})
	var events []string
	for _, e := range cons.Events() {
		events = append(events, e.Name)
	}
	for _, want := range []string{"journal.begin", "reservation.acquire", "rate_limit", "reservation.mark_sent"} {
		if !strings.Contains(strings.Join(events, ","), want) {
			t.Errorf("consumer events %v lack %s", events, want)
		}
	}
	if n := strings.Count(strings.Join(events, ","), "rate_limit"); n != 2 {
		t.Errorf("consumer events %v: %d rate_limit, want 2 (one wait, then the token)", events, n)
	}

	clients := byKind(spans, trace.SpanKindClient)
	if len(clients) != 1 {
		t.Fatalf("client spans %v, want the GenAuth call", names(spans))
	}
	call := clients[0]
	if call.Parent().SpanID() != cons.SpanContext().SpanID() || call.Name() != "POST "+genauthtest.Path {
		t.Errorf("GenAuth span %q under %s, want POST %s under the consumer span", call.Name(), call.Parent().SpanID(), genauthtest.Path)
	}
	wantAttrs(t, "GenAuth call", attrs(call.Attributes()), map[string]string{"http.response.status_code": "200", "http.request.method": "POST"})
	// The call carries the attempt's trace context onward.
	got := r.fake.Requests()
	if len(got) != 1 || !strings.Contains(got[0].Header.Get("traceparent"), cons.SpanContext().TraceID().String()) {
		t.Errorf("GenAuth request traceparent %q, want the consumer's trace %s", got[0].Header.Get("traceparent"), cons.SpanContext().TraceID())
	}
}

func TestEveryAttemptIsASpanWithItsOutcome(t *testing.T) {
	r := startRig(t)
	// Two tasks for one pair: the second is deduplicated, and a failed
	// GenAuth call makes a third retry once.
	for i, ch := range []string{"CHANNEL_LOGIN", "CHANNEL_LOGIN"} {
		if _, err := r.client.Send(context.Background(), smsq.Request{Channel: ch, Phone: "+8613800138000"}, smsq.WithIdempotencyKey(fmt.Sprint("k", i))); err != nil {
			t.Fatal(err)
		}
		r.waitSpans(t, i+1)
	}
	r.fake.Inject(genauthtest.Fault{Kind: genauthtest.FaultBodyStatus, StatusCode: 500})
	if _, err := r.client.Send(context.Background(), smsq.Request{Channel: "CHANNEL_REGISTER", Phone: "+8613800138000"}); err != nil {
		t.Fatal(err)
	}
	spans := r.waitSpans(t, 4)
	var outcomes []string
	for _, s := range byKind(spans, trace.SpanKindConsumer) {
		a := attrs(s.Attributes())
		outcomes = append(outcomes, a["smsq.outcome"]+"/"+a["smsq.class"]+"/"+a["smsq.attempt"])
		if len(s.Links()) != 1 {
			t.Errorf("consumer span without its producer link: %v", a)
		}
	}
	want := "sent/sent/1,deduplicated//1,retrying/retry/1,sent/sent/2"
	if strings.Join(outcomes, ",") != want {
		t.Fatalf("attempts %v, want %s", outcomes, want)
	}
}

// TestSpansCarryNoPhoneNumber sends what a careless producer sends: a raw
// task whose ID and queue hold the phone number, one whose channel field
// holds it, and a normal one, and reads every name, attribute, event,
// link and status of every span for the number, the client IP and the
// payload.
func TestSpansCarryNoPhoneNumber(t *testing.T) {
	r := startRig(t)
	const national, ip = "13800138000", "203.0.113.7"
	if _, err := r.client.Send(context.Background(), smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "+86" + national, ClientIP: ip}, smsq.WithIdempotencyKey("k-1")); err != nil {
		t.Fatal(err)
	}
	raw := asynq.NewClientFromRedisClient(r.rdb)
	payload := fmt.Sprintf(`{"channel":"CHANNEL_REGISTER","phoneNumber":"%s","phoneCountryCode":"+86","clientIp":"%s"}`, national, ip)
	if _, err := raw.Enqueue(asynq.NewTask(tasks.TypeSendSMS, []byte(payload)), asynq.TaskID("otp-+86"+national), asynq.Queue("otp-"+national)); err != nil {
		t.Fatal(err)
	}
	swapped := fmt.Sprintf(`{"channel":"+86%s","phoneNumber":"CHANNEL_LOGIN"}`, national)
	if _, err := raw.Enqueue(asynq.NewTask(tasks.TypeSendSMS, []byte(swapped)), asynq.TaskID("swapped-"+national)); err != nil {
		t.Fatal(err)
	}
	// The fake refuses this one with a message quoting the number.
	r.fake.Inject(genauthtest.Fault{Kind: genauthtest.FaultBodyStatus, StatusCode: 400})
	if _, err := r.client.Send(context.Background(), smsq.Request{Channel: "CHANNEL_RESET_PASSWORD", Phone: national}); err != nil {
		t.Fatal(err)
	}
	spans := r.waitSpans(t, 4)
	r.tp.ForceFlush(context.Background())
	spans = r.rec.Ended()

	leaks := func(where, s string) {
		t.Helper()
		switch {
		case strings.Contains(s, national), strings.Contains(s, ip), strings.Contains(s, "phoneNumber"), phone.Holds(s):
			t.Errorf("%s: %q carries the phone number, the client IP or the payload", where, s)
		}
	}
	seen := map[string]bool{}
	for _, s := range spans {
		leaks("span name", s.Name())
		check := func(where string, kvs []attribute.KeyValue) {
			for _, kv := range kvs {
				seen[string(kv.Key)] = true
				leaks(where+" "+string(kv.Key), kv.Value.Emit())
			}
		}
		check(s.Name()+" attribute", s.Attributes())
		for _, e := range s.Events() {
			leaks(s.Name()+" event", e.Name)
			check(s.Name()+" event "+e.Name, e.Attributes)
		}
		for _, l := range s.Links() {
			check(s.Name()+" link", l.Attributes)
		}
		leaks(s.Name()+" status", s.Status().Description)
		check("resource", s.Resource().Attributes())
	}
	// The test saw what it had to see: the masked ID, queue and the
	// invalid task's outcome.
	var failed, invalid, masked bool
	for _, s := range byKind(spans, trace.SpanKindConsumer) {
		a := attrs(s.Attributes())
		switch a["smsq.outcome"] {
		case tasks.OutcomeInvalid:
			invalid = s.Status().Code == codes.Error
		case tasks.OutcomeFailed:
			failed = s.Status().Code == codes.Error && a["smsq.class"] == "permanent"
		}
		if strings.HasPrefix(a["messaging.destination.name"], "otp-") && a["messaging.message.id"] != "" {
			masked = true
		}
	}
	if !failed || !invalid || !masked || !seen["smsq.outcome"] || !seen["http.response.status_code"] {
		t.Fatalf("spans do not show the tasks (failed %v, invalid %v, masked raw task %v, attributes %v): %v", failed, invalid, masked, seen, names(spans))
	}
}

// TestProducerCarriesNoContextWithoutOne: with no tracer provider set up
// and no span in the caller's context, the task carries no trace header;
// with the caller's span (and still no provider), it carries that span's
// context, so that a service tracing elsewhere is linked all the same.
func TestProducerCarriesNoContextWithoutOne(t *testing.T) {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	c := smsq.NewClientFromRedis(rdb)
	insp := asynq.NewInspectorFromRedisClient(rdb)

	headers := func(ctx context.Context, key string) map[string]string {
		t.Helper()
		task, v, err := smsq.Prepare(smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "+8613800138000"}, time.Now(), smsq.WithIdempotencyKey(key))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Enqueue(ctx, task, v); err != nil {
			t.Fatal(err)
		}
		info, err := insp.GetTaskInfo("critical", key)
		if err != nil {
			t.Fatal(err)
		}
		return info.Headers
	}
	if h := headers(context.Background(), "plain"); h["traceparent"] != "" || h["tracestate"] != "" {
		t.Fatalf("headers %v without any tracing, want no trace context", h)
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, span := tp.Tracer("app").Start(context.Background(), "request")
	defer span.End()
	h := headers(ctx, "in-request")
	if want := span.SpanContext().TraceID().String(); !strings.Contains(h["traceparent"], want) {
		t.Fatalf("headers %v, want the caller's trace %s", h, want)
	}
}

// TestProducerReplacesAnEarlierContext: a task enqueued again (a retry of
// a failed enqueue) carries the context of its latest enqueue only.
func TestProducerReplacesAnEarlierContext(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	p := tracing.NewProducer(tp)
	task, _, err := smsq.Prepare(smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "+8613800138000"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	task.Headers()["tracestate"] = "stale=1"
	_, first := p.Start(context.Background(), task, "critical", "CHANNEL_LOGIN")
	tracing.End(first, nil, fmt.Errorf("redis down"))
	_, second := p.Start(context.Background(), task, "critical", "CHANNEL_LOGIN")
	tracing.End(second, &asynq.TaskInfo{ID: "x"}, nil)
	h := task.Headers()
	if !strings.Contains(h["traceparent"], second.SpanContext().SpanID().String()) || h["tracestate"] != "" {
		t.Fatalf("headers %v, want the second span %s only", h, second.SpanContext().SpanID())
	}
	spans := rec.Ended()
	if len(spans) != 2 || spans[0].Status().Code != codes.Error || spans[1].Status().Code == codes.Error {
		t.Fatalf("spans %v: want the failed enqueue's span marked as an error, the second not", names(spans))
	}
}
