package tracing

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/smsq/smsq/internal/history"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestSetupIsOffUnlessAnExporterIsAskedFor(t *testing.T) {
	for name, getenv := range map[string]func(string) string{
		"nothing set":             env(),
		"service name only":       env("OTEL_SERVICE_NAME", "api"),
		"sampler only":            env("OTEL_TRACES_SAMPLER", "always_on"),
		"exporter none":           env("OTEL_TRACES_EXPORTER", "none", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
		"SDK disabled":            env("OTEL_SDK_DISABLED", "true", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
		"SDK disabled, any case":  env("OTEL_SDK_DISABLED", "TRUE", "OTEL_TRACES_EXPORTER", "otlp"),
		"metrics endpoint only":   env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://127.0.0.1:4318/v1/metrics"),
		"bad protocol but unused": env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
	} {
		p, err := Setup(context.Background(), Config{Getenv: getenv, ServiceName: "smsq-test"})
		if err != nil || p.Enabled() || p.String() != "off" {
			t.Errorf("%s: Setup = %v, %v (enabled %v), want off", name, p, err, p.Enabled())
		}
		if _, ok := p.TracerProvider().Tracer("x").Start(context.Background(), "s"); ok.IsRecording() {
			t.Errorf("%s: the provider records spans while tracing is off", name)
		}
	}
}

func TestSetupTurnsOnWithAnEndpoint(t *testing.T) {
	for name, tc := range map[string]struct {
		getenv func(string) string
		desc   string
	}{
		"endpoint":        {env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"), "otlp/http http://collector:4318/v1/traces"},
		"traces endpoint": {env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://user:secret@collector/traces"), "otlp/http https://collector/traces"},
		"exporter otlp":   {env("OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"), "otlp/http http://localhost:4318/v1/traces"},
		"traces protocol wins": {env("OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc",
			"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"), "otlp/http http://localhost:4318/v1/traces"},
		"ratio sampler": {env("OTEL_TRACES_EXPORTER", "otlp", "OTEL_TRACES_SAMPLER", "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG", "0.25"), "otlp/http http://localhost:4318/v1/traces"},
	} {
		p, err := Setup(context.Background(), Config{Getenv: tc.getenv, ServiceName: "smsq-test"})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !p.Enabled() || p.String() != tc.desc {
			t.Errorf("%s: enabled %v, %q; want on, %q", name, p.Enabled(), p.String(), tc.desc)
		}
		if err := p.Shutdown(context.Background()); err != nil {
			t.Errorf("%s: Shutdown: %v", name, err)
		}
	}
}

func TestSetupRefusesWhatItCannotDo(t *testing.T) {
	for name, tc := range map[string]struct {
		getenv func(string) string
		names  string
	}{
		"zipkin exporter": {env("OTEL_TRACES_EXPORTER", "zipkin"), "OTEL_TRACES_EXPORTER"},
		"two exporters":   {env("OTEL_TRACES_EXPORTER", "otlp,console"), "OTEL_TRACES_EXPORTER"},
		"grpc":            {env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), "OTEL_EXPORTER_OTLP_PROTOCOL"},
		"http/json":       {env("OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"), "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"},
		"sampler":         {env("OTEL_TRACES_EXPORTER", "otlp", "OTEL_TRACES_SAMPLER", "jaeger_remote"), "OTEL_TRACES_SAMPLER"},
		"sampler ratio":   {env("OTEL_TRACES_EXPORTER", "otlp", "OTEL_TRACES_SAMPLER", "traceidratio", "OTEL_TRACES_SAMPLER_ARG", "2"), "OTEL_TRACES_SAMPLER_ARG"},
	} {
		p, err := Setup(context.Background(), Config{Getenv: tc.getenv})
		if err == nil || !strings.Contains(err.Error(), tc.names) {
			t.Errorf("%s: Setup = %v, %v; want an error naming %s", name, p, err, tc.names)
		}
	}
}

func TestSamplerFromEnv(t *testing.T) {
	for in, want := range map[string]string{
		"":                         "ParentBased{root:AlwaysOnSampler",
		"always_off":               "AlwaysOffSampler",
		"Always_On":                "AlwaysOnSampler",
		"parentbased_always_off":   "ParentBased{root:AlwaysOffSampler",
		"traceidratio":             "TraceIDRatioBased{1}",
		"parentbased_traceidratio": "ParentBased{root:TraceIDRatioBased{0.5}",
	} {
		arg := ""
		if in == "parentbased_traceidratio" {
			arg = "0.5"
		}
		s, err := samplerFromEnv(env("OTEL_TRACES_SAMPLER", in, "OTEL_TRACES_SAMPLER_ARG", arg))
		if err != nil || !strings.HasPrefix(s.Description(), want) {
			t.Errorf("OTEL_TRACES_SAMPLER=%q: %v, %v; want %s", in, s.Description(), err, want)
		}
	}
}

// TestOutcomesLandOnTheirOwnAttemptOnly: the handler writes outcomes kept
// for want of Redis from whichever attempt runs next; they must not be
// put on that attempt's span.
func TestOutcomesLandOnTheirOwnAttemptOnly(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	_, span := tp.Tracer("t").Start(context.Background(), "process")
	a := &attemptSpan{taskID: "mine", span: span}
	ctx := context.WithValue(context.Background(), attemptKey{}, a)
	note(ctx, history.Entry{TaskID: "another", Outcome: "sent", Result: []byte(`{"outcome":"sent","class":"sent"}`)}, nil)
	event(ctx, "another", "reservation.release")
	if a.recorded {
		t.Fatal("another task's outcome counted as this attempt's")
	}
	note(ctx, history.Entry{TaskID: "mine", Outcome: "failed", Final: true, Result: []byte(`{"outcome":"failed","class":"permanent"}`)}, nil)
	span.End()
	s := rec.Ended()[0]
	got := map[attribute.Key]string{}
	for _, kv := range s.Attributes() {
		got[kv.Key] = kv.Value.Emit()
	}
	if got[AttrOutcome] != "failed" || got[AttrClass] != "permanent" || len(s.Events()) != 0 {
		t.Fatalf("attributes %v, events %v: want this task's failed outcome only", got, s.Events())
	}
}
