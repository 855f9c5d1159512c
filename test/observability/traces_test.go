package observability

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/phone"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/workertest"
)

// span is one received span with its process's service name.
type span struct {
	service string
	*tracepb.Span
}

func (s span) attr(key string) string { return attrValue(s.Attributes, key) }

func attrValue(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.Key == key {
			switch v := kv.Value.Value.(type) {
			case *commonpb.AnyValue_StringValue:
				return v.StringValue
			case *commonpb.AnyValue_IntValue:
				return fmt.Sprint(v.IntValue)
			case *commonpb.AnyValue_BoolValue:
				return fmt.Sprint(v.BoolValue)
			default:
				return kv.Value.String()
			}
		}
	}
	return ""
}

// receiver is an OTLP/HTTP trace receiver: it decodes every export
// request as a collector would and keeps the spans.
type receiver struct {
	mu    sync.Mutex
	spans []span
	bad   []string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err == nil && r.Header.Get("Content-Encoding") == "gzip" {
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(bytes.NewReader(body)); err == nil {
			body, err = io.ReadAll(zr)
		}
	}
	var req coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &req)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if err != nil || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		rc.bad = append(rc.bad, fmt.Sprintf("%s %s %s: %v", r.Method, r.URL.Path, r.Header.Get("Content-Type"), err))
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	for _, rs := range req.ResourceSpans {
		svc := attrValue(rs.GetResource().GetAttributes(), "service.name")
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				rc.spans = append(rc.spans, span{svc, s})
			}
		}
	}
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (rc *receiver) all() ([]span, []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]span(nil), rc.spans...), append([]string(nil), rc.bad...)
}

// TestTracesAcrossProcesses queues codes through each producer path, Send
// in this process, the enqueue command and enqueue batch, and has two
// worker processes run them, every process exporting OTLP/HTTP to a
// receiver in the test: every task's consumer span links to the producer
// span that queued it, and has the GenAuth call under it.
func TestTracesAcrossProcesses(t *testing.T) {
	rdb := redistest.Start(t)
	fake := genauthtest.NewServer(genauthtest.Options{})
	t.Cleanup(fake.Close)
	recv := &receiver{}
	otlp := httptest.NewServer(recv)
	t.Cleanup(otlp.Close)
	dir := t.TempDir()

	otelEnv := func(service string) []string {
		return []string{
			"OTEL_EXPORTER_OTLP_ENDPOINT=" + otlp.URL,
			"OTEL_SERVICE_NAME=" + service,
			"OTEL_BSP_SCHEDULE_DELAY=100",
		}
	}
	bin := workertest.Binary(t, false)
	var workers []*workertest.Process
	apiAddr := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	for _, name := range []string{"worker-a", "worker-b"} {
		env := append(workertest.Env(rdb.URL(), fake, time.Minute), otelEnv(name)...)
		if name == "worker-a" {
			// worker-a also serves the HTTP API, a producer path of its own.
			env = append(env, "SMSQ_API_ADDR="+apiAddr, "SMSQ_API_KEYS=backend:test-secret-0123456789")
		}
		workers = append(workers, workertest.Start(t, name, bin, filepath.Join(dir, name+".log"), env))
	}
	t.Cleanup(func() { workertest.Stop(workers...) })
	for _, w := range workers {
		w.WaitLog(t, "worker started", 60*time.Second)
	}
	defer func() {
		if t.Failed() {
			workertest.DumpLogs(t, 4000, workers...)
		}
	}()

	// Send, in this process, under a request span of the caller's.
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(otlp.URL+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName("api"))))
	client := smsq.NewClientFromRedis(rdb.Client(), smsq.WithTracerProvider(tp))
	ctx, req := tp.Tracer("api").Start(context.Background(), "POST /login")
	rc, err := client.Send(ctx, smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "+8613800138000", ClientIP: "203.0.113.7"})
	req.End()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{rc.TaskID: "api"}

	// The HTTP API, called by a service whose request span is its parent.
	ctx, call := tp.Tracer("api").Start(context.Background(), "POST /register")
	body := strings.NewReader(`{"channel":"CHANNEL_REGISTER","phoneNumber":"+8613800138005"}`)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+apiAddr+"/v1/sms", body)
	if err != nil {
		t.Fatal(err)
	}
	hreq.Header.Set("Authorization", "Bearer test-secret-0123456789")
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Idempotency-Key", "via-api")
	hreq.Header.Set("traceparent", fmt.Sprintf("00-%s-%s-01", call.SpanContext().TraceID(), call.SpanContext().SpanID()))
	resp, err := http.DefaultClient.Do(hreq)
	call.End()
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var queued struct{ ID string }
	if err := json.Unmarshal(answer, &queued); resp.StatusCode/100 != 2 || err != nil || queued.ID == "" {
		t.Fatalf("POST /v1/sms: %s %s", resp.Status, answer)
	}
	viaAPI := queued.ID
	want[viaAPI] = "worker-a"
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	// The enqueue command, once for one code and once for a batch.
	enq := workertest.Command(t, "./cmd/enqueue", false)
	run := func(service string, args ...string) string {
		t.Helper()
		cmd := exec.Command(enq, args...)
		cmd.Env = append(workertest.BaseEnv(), append(otelEnv(service), "REDIS_URL="+rdb.URL())...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("enqueue %v: %v\n%s", args, err, stderr.String())
		}
		return string(out)
	}
	id := strings.TrimSpace(run("enqueue-one", "--channel", "CHANNEL_REGISTER", "--phone", "+8613800138001"))
	want[id] = "enqueue-one"
	csv := filepath.Join(dir, "batch.csv")
	if err := os.WriteFile(csv, []byte("channel,phone,idempotency_key\nCHANNEL_LOGIN,+8613800138002,b-1\nCHANNEL_REGISTER,+8613800138003,b-2\nCHANNEL_RESET_PASSWORD,+8613800138004,b-3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run("enqueue-batch", "batch", csv)
	for _, k := range []string{"b-1", "b-2", "b-3"} {
		want[k] = "enqueue-batch"
	}

	// Every task's consumer span and GenAuth call arrive.
	var spans []span
	workertest.WaitFor(t, 60*time.Second, func() (bool, string) {
		var bad []string
		spans, bad = recv.all()
		if len(bad) > 0 {
			t.Fatalf("the receiver refused exports: %v", bad)
		}
		done := map[string]bool{}
		for _, s := range spans {
			if s.Kind == tracepb.Span_SPAN_KIND_CONSUMER && s.attr("smsq.outcome") == "sent" {
				done[s.attr("messaging.message.id")] = true
			}
		}
		for id := range want {
			if !done[id] {
				return false, fmt.Sprintf("no sent consumer span for task %s yet (%d spans)", id, len(spans))
			}
		}
		return true, ""
	})
	// The batcher exports the HTTP span and its parent together; give a
	// late export a moment.
	time.Sleep(300 * time.Millisecond)
	spans, _ = recv.all()

	byID := map[string]span{} // span ID -> span
	for _, s := range spans {
		byID[hex.EncodeToString(s.SpanId)] = s
	}
	workersSeen := map[string]bool{}
	for id, service := range want {
		var prod *span
		for _, s := range spans {
			if s.Kind == tracepb.Span_SPAN_KIND_PRODUCER && s.attr("messaging.message.id") == id {
				prod = &s
			}
		}
		if prod == nil || prod.service != service {
			t.Errorf("task %s: producer span %v, want one from %s", id, prod, service)
			continue
		}
		if prod.attr("messaging.system") != "asynq" || prod.attr("messaging.operation.type") != "send" {
			t.Errorf("task %s: producer attributes %v", id, prod.Attributes)
		}
		if service == "api" && hex.EncodeToString(prod.ParentSpanId) != req.SpanContext().SpanID().String() {
			t.Errorf("task %s: producer span under %x, want the caller's request span", id, prod.ParentSpanId)
		}
		if id == viaAPI && (hex.EncodeToString(prod.ParentSpanId) != call.SpanContext().SpanID().String() || hex.EncodeToString(prod.TraceId) != call.SpanContext().TraceID().String()) {
			t.Errorf("task %s: producer span %x under %x, want the API caller's span %s in its trace", id, prod.TraceId, prod.ParentSpanId, call.SpanContext().SpanID())
		}
		var cons []span
		for _, s := range spans {
			if s.Kind == tracepb.Span_SPAN_KIND_CONSUMER && s.attr("messaging.message.id") == id {
				cons = append(cons, s)
			}
		}
		for _, c := range cons {
			workersSeen[c.service] = true
			if !strings.HasPrefix(c.service, "worker-") || len(c.ParentSpanId) != 0 {
				t.Errorf("task %s: consumer span from %q with parent %x, want a root span from a worker", id, c.service, c.ParentSpanId)
			}
			if len(c.Links) != 1 || !bytes.Equal(c.Links[0].TraceId, prod.TraceId) || !bytes.Equal(c.Links[0].SpanId, prod.SpanId) {
				t.Errorf("task %s: consumer links %v, want the producer span %x/%x", id, c.Links, prod.TraceId, prod.SpanId)
			}
			if c.attr("messaging.destination.name") != prod.attr("messaging.destination.name") || c.attr("smsq.channel") == "" {
				t.Errorf("task %s: consumer attributes %v", id, c.Attributes)
			}
			var call bool
			for _, s := range spans {
				if s.Kind == tracepb.Span_SPAN_KIND_CLIENT && bytes.Equal(s.ParentSpanId, c.SpanId) && s.attr("http.response.status_code") == "200" {
					call = true
				}
			}
			if !call {
				t.Errorf("task %s: no GenAuth client span under the consumer span", id)
			}
		}
	}
	// No process put a phone number, the client IP or the payload into
	// any span.
	for _, s := range spans {
		texts := []string{s.Name, s.GetStatus().GetMessage()}
		for _, kv := range s.Attributes {
			texts = append(texts, kv.Value.String())
		}
		for _, e := range s.Events {
			texts = append(texts, e.Name)
			for _, kv := range e.Attributes {
				texts = append(texts, kv.Value.String())
			}
		}
		for _, x := range texts {
			if strings.Contains(x, "1380013800") || strings.Contains(x, "203.0.113.7") || phone.Holds(x) {
				t.Errorf("span %q from %s carries %q", s.Name, s.service, x)
			}
		}
	}
	seen := make([]string, 0, len(workersSeen))
	for w := range workersSeen {
		seen = append(seen, w)
	}
	sort.Strings(seen)
	t.Logf("%d spans; consumer spans from %v", len(spans), seen)
}
