// Package tracing carries OpenTelemetry traces through smsq's queue.
//
// A producer (smsq.Client, and so the enqueue command, its batch mode and
// the HTTP API) starts a producer span for every enqueue and writes its W3C
// trace context into the asynq task's headers. The worker starts a consumer
// span for every attempt, linked to that context rather than parented by
// it (the attempt may run long after the request that queued it, and a
// task may run many times), with OpenTelemetry's messaging attributes, the
// channel, the outcome and GenAuth's answer class. The GenAuth call is a
// client HTTP span under it; reservation, rate-limit and journal steps are
// events on it.
//
// No span, event or link carries a phone number, the payload or the end
// user's IP: task IDs and queue names a raw producer may have built from a
// number are masked (phone.MaskID), and the rest are smsq's own words.
//
// Tracing is configured only by OpenTelemetry's standard environment
// variables and is off when none of them asks for an exporter (Setup).
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope of smsq's spans.
const ScopeName = "github.com/smsq/smsq"

// System is the messaging.system attribute of smsq's spans.
const System = "asynq"

// propagator writes and reads the W3C traceparent and tracestate headers.
// It is fixed rather than the global one: a producer and a worker must
// agree on the format whatever their processes configured.
var propagator = propagation.TraceContext{}

// Config configures Setup.
type Config struct {
	// Getenv reads the environment; required.
	Getenv func(string) string
	// ServiceName is service.name when neither OTEL_SERVICE_NAME nor
	// OTEL_RESOURCE_ATTRIBUTES names one, e.g. "smsq-worker".
	ServiceName string
}

// Provider is the process's tracer provider: the SDK's with an OTLP/HTTP
// exporter when the environment asks for one, a no-op one otherwise.
type Provider struct {
	sdk  *sdktrace.TracerProvider
	desc string
}

// Setup reads OpenTelemetry's environment variables and returns the
// tracer provider they describe. Tracing is on when OTEL_TRACES_EXPORTER
// is "otlp", or is unset while OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set; OTEL_SDK_DISABLED=true or
// OTEL_TRACES_EXPORTER=none turn it off. smsq exports OTLP over HTTP with
// protobuf only: another OTEL_TRACES_EXPORTER or OTEL_EXPORTER_OTLP_PROTOCOL
// is an error naming the variable, as is an unknown OTEL_TRACES_SAMPLER.
//
// The sampler comes from OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG
// (default parentbased_always_on). The exporter and the resource read the
// rest of the OTEL_EXPORTER_OTLP_* and OTEL_RESOURCE_ATTRIBUTES variables
// from the process environment, as the OpenTelemetry SDK does.
func Setup(ctx context.Context, cfg Config) (*Provider, error) {
	if cfg.Getenv == nil {
		return nil, errors.New("tracing: Config.Getenv is required")
	}
	on, err := enabled(cfg.Getenv)
	if err != nil || !on {
		return &Provider{desc: "off"}, err
	}
	sampler, err := samplerFromEnv(cfg.Getenv)
	if err != nil {
		return nil, err
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(cfg.ServiceName)),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		// A malformed OTEL_RESOURCE_ATTRIBUTES still leaves a usable
		// resource; say so rather than refuse to start.
		if res == nil {
			return nil, fmt.Errorf("tracing: OTEL_RESOURCE_ATTRIBUTES: %w", err)
		}
		otel.Handle(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithSampler(sampler), sdktrace.WithResource(res))
	return &Provider{sdk: tp, desc: "otlp/http " + endpoint(cfg.Getenv)}, nil
}

// Enabled reports whether spans are exported.
func (p *Provider) Enabled() bool { return p != nil && p.sdk != nil }

// TracerProvider is the provider to start spans from: a no-op one when
// tracing is off.
func (p *Provider) TracerProvider() trace.TracerProvider {
	if !p.Enabled() {
		return noop.NewTracerProvider()
	}
	return p.sdk
}

// String describes the exporter for the start-up log line: "off" or
// "otlp/http" and the endpoint.
func (p *Provider) String() string {
	if p == nil {
		return "off"
	}
	return p.desc
}

// Shutdown exports the spans still buffered and stops the exporter.
func (p *Provider) Shutdown(ctx context.Context) error {
	if !p.Enabled() {
		return nil
	}
	return p.sdk.Shutdown(ctx)
}

// enabled decides from the environment whether traces are exported.
func enabled(getenv func(string) string) (bool, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false, nil
	}
	switch exp := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exp {
	case "none":
		return false, nil
	case "otlp":
	case "":
		if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
			return false, nil
		}
	default:
		return false, fmt.Errorf("tracing: OTEL_TRACES_EXPORTER %q: smsq exports otlp (or none)", exp)
	}
	// The traces-specific variable wins over the general one, as in the
	// exporter.
	name := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	p := strings.TrimSpace(getenv(name))
	if p == "" {
		name = "OTEL_EXPORTER_OTLP_PROTOCOL"
		p = strings.TrimSpace(getenv(name))
	}
	if p != "" && p != "http/protobuf" {
		return false, fmt.Errorf("tracing: %s %q: smsq exports OTLP over http/protobuf only", name, p)
	}
	return true, nil
}

// endpoint is where spans go, as the exporter reads it, without any
// credentials in the URL (for the log line).
func endpoint(getenv func(string) string) string {
	e := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	switch g := getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); {
	case e != "":
	case g != "":
		e = strings.TrimSuffix(g, "/") + "/v1/traces"
	default:
		e = "http://localhost:4318/v1/traces"
	}
	u, err := url.Parse(e)
	if err != nil {
		return "(unparsable endpoint)"
	}
	u.User = nil
	return u.String()
}

// samplerFromEnv builds the sampler OTEL_TRACES_SAMPLER names, with the
// ratio in OTEL_TRACES_SAMPLER_ARG for the traceidratio samplers (default
// 1). Unset means parentbased_always_on, the SDK's default.
func samplerFromEnv(getenv func(string) string) (sdktrace.Sampler, error) {
	name := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER")))
	arg := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG"))
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("tracing: OTEL_TRACES_SAMPLER_ARG %q: a ratio between 0 and 1", arg)
		}
		return r, nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio":
		r, err := ratio()
		return sdktrace.TraceIDRatioBased(r), err
	case "parentbased_traceidratio":
		r, err := ratio()
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), err
	default:
		return nil, fmt.Errorf("tracing: OTEL_TRACES_SAMPLER %q: use always_on, always_off, traceidratio or their parentbased_ forms", name)
	}
}
