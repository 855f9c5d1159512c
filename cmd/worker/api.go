package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/api"
	"github.com/smsq/smsq/internal/config"
	"github.com/smsq/smsq/internal/metrics"
	"github.com/smsq/smsq/internal/ratelimit"
	"github.com/smsq/smsq/internal/redisconn"
	"github.com/smsq/smsq/internal/tracing"
)

// Worker modes (SMSQ_MODE).
const (
	// modeWorker processes tasks, and serves the HTTP API too when
	// SMSQ_API_ADDR is set.
	modeWorker = "worker"
	// modeAPI serves the HTTP API only, for deployments that scale the
	// API and the task processing apart.
	modeAPI = "api"
)

// apiRedisPool is the HTTP API's own Redis pool: its requests never wait
// behind the send path's for a connection, nor the other way round.
const apiRedisPool = 64

// bindAPISettings declares the HTTP API's settings.
func bindAPISettings(set *config.Set, s *settings) {
	set.String(&s.Mode, "mode", "SMSQ_MODE", modeWorker, "worker (process tasks; serve the HTTP API too when SMSQ_API_ADDR is set) or api (serve the HTTP API only, process no task)")
	set.String(&s.APIAddr, "api-addr", "SMSQ_API_ADDR", "", "HTTP API listener (host:port), separate from SMSQ_HTTP_ADDR; empty: no API")
	set.Secret(&s.APIKeys, "api-keys", "SMSQ_API_KEYS", "", "HTTP API keys, comma-separated name:secret or name:sha256:<hex of the secret>; the name appears in logs, metrics and the task's record")
	set.String(&s.APITLSCert, "api-tls-cert", "SMSQ_API_TLS_CERT", "", "PEM certificate file: the API serves HTTPS when it and SMSQ_API_TLS_KEY are set")
	set.String(&s.APITLSKey, "api-tls-key", "SMSQ_API_TLS_KEY", "", "PEM private key file of SMSQ_API_TLS_CERT")
	set.String(&s.APIRateLimit, "api-rate-limit", "SMSQ_API_RATE_LIMIT", "100/s", "requests per API key, shared by every worker on one Redis: 100, 100/s, 6000/m, or off")
	set.Duration(&s.APITimeout, "api-timeout", "SMSQ_API_TIMEOUT", api.DefaultTimeout, "longest an API request may work (Redis included), not counting its ?wait=")
}

// apiSettings are the HTTP API's settings, part of settings.
type apiSettings struct {
	Mode         string
	APIAddr      string
	APIKeys      string
	APITLSCert   string
	APITLSKey    string
	APIRateLimit string
	APITimeout   time.Duration
}

// runAPIOnly is SMSQ_MODE=api: the HTTP API and the operator listener,
// no task processing (no GenAuth client, no asynq server).
func runAPIOnly(ctx context.Context, s *settings, queues map[string]int, rdb redis.UniversalClient, w *worker, fileLimit uint64, h *hooks) error {
	obs := metrics.New(metrics.Config{Inspector: asynq.NewInspectorFromRedisClient(rdb), Redis: rdb, Queues: slices.Collect(maps.Keys(queues))})
	if err := w.api.serve(s, queues, obs.Registry()); err != nil {
		return err
	}
	if err := w.web.serve(s, rdb, obs, fileLimit, apiRedisPool); err != nil {
		return err
	}
	// Ready means the API can queue: Redis answers.
	w.web.setRunning(true)
	w.log.Info().Str("redis", redisconn.Redact(s.RedisURL)).Str("mode", modeAPI).Str("queues", config.FormatWeights(queues)).
		Msg("worker started: HTTP API only, no task is processed here")
	if h != nil && h.ready != nil {
		h.ready(w)
	}
	<-ctx.Done()
	w.web.setRunning(false)
	w.log.Info().Msg("worker stopped")
	return nil
}

// apiSurface is the HTTP API's listener. Its methods are safe on a nil
// surface (no SMSQ_API_ADDR).
type apiSurface struct {
	ln    net.Listener
	tls   bool
	keys  api.Keys
	limit ratelimit.Limit
	srv   *http.Server
	log   zerolog.Logger
	close []func() error
	done  chan error
	// tracer, when set, makes every enqueue a producer span, a child of
	// the caller's span when the request carries a traceparent.
	tracer trace.TracerProvider
}

// listenAPI validates the API settings and opens its listener, before
// anything else starts.
func listenAPI(s *settings, log zerolog.Logger) (*apiSurface, error) {
	switch s.Mode {
	case modeWorker, modeAPI:
	default:
		return nil, fmt.Errorf("SMSQ_MODE %q: want %s or %s", s.Mode, modeWorker, modeAPI)
	}
	if s.APIAddr == "" {
		if s.Mode == modeAPI {
			return nil, errors.New("SMSQ_MODE=api serves the HTTP API only, and needs SMSQ_API_ADDR")
		}
		if s.APIKeys != "" {
			log.Warn().Msg("SMSQ_API_KEYS is set but SMSQ_API_ADDR is not: no HTTP API")
		}
		return nil, nil
	}
	if _, _, err := net.SplitHostPort(s.APIAddr); err != nil {
		return nil, fmt.Errorf("SMSQ_API_ADDR %q: want host:port: %w", s.APIAddr, err)
	}
	keys, err := api.ParseKeys(s.APIKeys)
	if err != nil {
		return nil, fmt.Errorf("SMSQ_API_KEYS: %w", err)
	}
	if keys.Len() == 0 {
		return nil, errors.New("SMSQ_API_ADDR is set but SMSQ_API_KEYS (or SMSQ_API_KEYS_FILE) gives no key")
	}
	limit, err := ratelimit.ParseRate(s.APIRateLimit)
	if err != nil {
		return nil, fmt.Errorf("SMSQ_API_RATE_LIMIT: %w", err)
	}
	if s.APITimeout <= 0 {
		return nil, fmt.Errorf("SMSQ_API_TIMEOUT %s: must be positive", s.APITimeout)
	}
	var tlsCfg *tls.Config
	switch {
	case (s.APITLSCert == "") != (s.APITLSKey == ""):
		return nil, errors.New("SMSQ_API_TLS_CERT and SMSQ_API_TLS_KEY must be set together")
	case s.APITLSCert != "":
		cert, err := tls.LoadX509KeyPair(s.APITLSCert, s.APITLSKey)
		if err != nil {
			return nil, fmt.Errorf("SMSQ_API_TLS_CERT/SMSQ_API_TLS_KEY: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", s.APIAddr)
	if err != nil {
		return nil, fmt.Errorf("SMSQ_API_ADDR %s: %w", s.APIAddr, err)
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	return &apiSurface{ln: ln, tls: tlsCfg != nil, keys: keys, limit: limit, log: log}, nil
}

// serve starts answering API requests, with a Redis pool of its own;
// reg gets the API's metrics.
func (a *apiSurface) serve(s *settings, queues map[string]int, reg prometheus.Registerer) error {
	if a == nil {
		return nil
	}
	rdb, err := redisconn.Open(s.RedisURL, redisconn.Options{PoolSize: apiRedisPool, MaxIdle: 10})
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	a.close = append(a.close, rdb.Close)
	served := slices.Sorted(maps.Keys(queues))
	// The workers' phone hash key names phones in the abuse guard's keys,
	// for POST /v1/verifications.
	opts := []smsq.ClientOption{smsq.WithServedQueues(served...), smsq.WithPhoneHashKey([]byte(s.PhoneHashKey))}
	if a.tracer != nil {
		opts = append(opts, smsq.WithTracerProvider(a.tracer))
	}
	client := smsq.NewClientFromRedis(rdb, opts...)
	// Closed before its Redis: it ends the outcome subscription of ?wait=.
	a.close = append([]func() error{client.Close}, a.close...)
	log := a.log.With().Str("component", "api").Logger()
	h, err := api.New(api.Config{
		Enqueuer: client, Outcomes: client, Verifier: client, Redis: rdb, Keys: a.keys, RateLimit: a.limit, Served: served,
		Timeout: s.APITimeout, Log: &log, Registerer: reg,
	})
	if err != nil {
		return err
	}
	var handler http.Handler = h
	if a.tracer != nil {
		handler = tracing.Incoming(h)
	}
	a.srv = api.NewHTTPServer(handler, log)
	a.done = make(chan error, 1)
	go func() { a.done <- a.srv.Serve(a.ln) }()
	a.log.Info().Str("api_addr", a.Addr()).Bool("tls", a.tls).Str("api_keys", strings.Join(a.keys.Names(), ",")).
		Str("api_rate_limit", a.limit.String()).Msg("HTTP API listening")
	return nil
}

// Addr is the bound address, or "" without an API.
func (a *apiSurface) Addr() string {
	if a == nil {
		return ""
	}
	return a.ln.Addr().String()
}

// Close stops the API, letting requests in progress finish for a few
// seconds.
func (a *apiSurface) Close() {
	if a == nil {
		return
	}
	if a.srv == nil {
		a.ln.Close()
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.srv.Shutdown(ctx); err != nil {
			a.log.Warn().Err(err).Msg("HTTP API shutdown")
		}
		if err := <-a.done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Warn().Err(err).Msg("HTTP API server")
		}
	}
	for _, f := range a.close {
		_ = f()
	}
}
