package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/smsq/smsq/internal/config"
	"github.com/smsq/smsq/internal/outcome"
	"github.com/smsq/smsq/internal/redisconn"
	"github.com/smsq/smsq/internal/webhook"
)

// webhookSettings are the settings of webhook delivery.
type webhookSettings struct {
	URL          string
	Secret       string
	Events       string
	AllowPrivate bool
	Concurrency  int
}

const maxWebhookConcurrency = 200

func bindWebhookSettings(set *config.Set, s *webhookSettings) {
	set.String(&s.URL, "webhook-url", "SMSQ_WEBHOOK_URL", "", "endpoints every final outcome is posted to as a signed Standard Webhooks event, comma-separated; empty: no webhooks")
	set.Secret(&s.Secret, "webhook-secret", "SMSQ_WEBHOOK_SECRET", "", "signing secrets, whsec_ followed by base64 of 24 to 64 random bytes; during a rotation the old and the new, space-separated (each delivery carries one signature per secret); required with SMSQ_WEBHOOK_URL")
	set.String(&s.Events, "webhook-events", "SMSQ_WEBHOOK_EVENTS", webhook.AllEvents, "outcomes delivered, comma-separated ("+strings.Join(webhook.Outcomes(), ", ")+"), or all")
	set.Bool(&s.AllowPrivate, "webhook-allow-private", "SMSQ_WEBHOOK_ALLOW_PRIVATE", false, "allow endpoints on loopback, private, link-local, CGNAT and other internal addresses (refused by default at start-up, on every connection and redirect)")
	set.Int(&s.Concurrency, "webhook-concurrency", "SMSQ_WEBHOOK_CONCURRENCY", 20, fmt.Sprintf("webhook deliveries made at once by this worker, at most %d", maxWebhookConcurrency))
}

// webhooks is the worker's webhook delivery: nil when SMSQ_WEBHOOK_URL is
// empty.
type webhooks struct {
	endpoints   []webhook.Endpoint
	secrets     []webhook.Secret
	filter      webhook.Filter
	guard       webhook.Guard
	concurrency int

	rdb    redis.UniversalClient
	client *asynq.Client
	srv    *asynq.Server
	cancel context.CancelFunc
	done   chan struct{}
}

// parseWebhooks validates the webhook settings. Errors name the setting
// and show URLs as scheme and host only and secrets by their place.
func parseWebhooks(ctx context.Context, s *webhookSettings, queues map[string]int, log zerolog.Logger) (*webhooks, error) {
	filter, err := webhook.ParseFilter(s.Events)
	if err != nil {
		return nil, fmt.Errorf("SMSQ_WEBHOOK_EVENTS: %w", err)
	}
	if _, ok := queues[webhook.Queue]; ok {
		return nil, fmt.Errorf("SMSQ_QUEUES: %s is the webhook delivery queue, served on its own when SMSQ_WEBHOOK_URL is set", webhook.Queue)
	}
	if s.Concurrency < 1 || s.Concurrency > maxWebhookConcurrency {
		return nil, fmt.Errorf("SMSQ_WEBHOOK_CONCURRENCY %d: must be between 1 and %d", s.Concurrency, maxWebhookConcurrency)
	}
	if strings.TrimSpace(s.URL) == "" {
		if strings.TrimSpace(s.Secret) != "" {
			return nil, errors.New("SMSQ_WEBHOOK_SECRET is set but SMSQ_WEBHOOK_URL is not")
		}
		return nil, nil
	}
	eps, err := webhook.ParseEndpoints(s.URL)
	if err != nil {
		return nil, fmt.Errorf("SMSQ_WEBHOOK_URL: %w", err)
	}
	secrets, err := webhook.ParseSecrets(s.Secret)
	if err != nil {
		return nil, fmt.Errorf("SMSQ_WEBHOOK_SECRET: %w", err)
	}
	guard := webhook.Guard{AllowPrivate: s.AllowPrivate}
	for i, ep := range eps {
		warn, err := guard.CheckURL(ctx, ep.URL, nil)
		if err != nil {
			return nil, fmt.Errorf("SMSQ_WEBHOOK_URL: URL %d (%s): %w; set SMSQ_WEBHOOK_ALLOW_PRIVATE=true to deliver to internal addresses", i+1, ep, err)
		}
		if warn != nil {
			log.Warn().Str("endpoint", ep.String()).Err(warn).Msg("webhook endpoint does not resolve")
		}
	}
	return &webhooks{endpoints: eps, secrets: secrets, filter: filter, guard: guard, concurrency: s.Concurrency}, nil
}

// queues returns the queues the metrics report for webhooks.
func (h *webhooks) queues() []string {
	if h == nil {
		return nil
	}
	return []string{webhook.Queue}
}

// start connects a Redis pool of its own (a blocking stream read and the
// deliveries must not wait behind the send path), re-enables endpoints a
// 410 disabled, and starts the fan-out and the delivery server.
func (h *webhooks) start(redisURL string, reg prometheus.Registerer, alog asynq.Logger, s *settings, log zerolog.Logger) error {
	if h == nil {
		return nil
	}
	rdb, err := redisconn.Open(redisURL, redisconn.Options{PoolSize: h.concurrency + 10, MaxIdle: maxIdle(h.concurrency)})
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	h.rdb = rdb
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	wlog := log.With().Str("component", "webhooks").Logger()
	disabled := webhook.NewDisabled(rdb, outcome.DefaultPrefix)
	was, err := disabled.Enable(ctx, h.endpoints)
	if err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	for _, ep := range h.endpoints {
		if n, ok := was[ep.ID]; ok {
			wlog.Warn().Str("endpoint", ep.String()).Str("endpoint_id", ep.ID).Time("disabled_at", n.At).Int("status", n.Status).
				Msg("webhook endpoint re-enabled at start-up")
		}
	}
	m := webhook.NewMetrics(webhook.MetricsConfig{Registerer: reg, Redis: rdb, Prefix: outcome.DefaultPrefix, Endpoints: h.endpoints})
	h.client = asynq.NewClientFromRedisClient(rdb)
	fan, err := webhook.NewFanout(webhook.FanoutConfig{Client: rdb, Enqueuer: h.client, Endpoints: h.endpoints,
		Filter: h.filter, Metrics: m, Logger: &wlog})
	if err != nil {
		return err
	}
	if err := fan.Init(ctx); err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	d, err := webhook.NewDeliverer(webhook.DelivererConfig{Endpoints: h.endpoints, Secrets: h.secrets, Disabled: disabled,
		Client: webhook.NewHTTPClient(h.guard, webhook.DefaultTimeout), Metrics: m, Logger: &wlog})
	if err != nil {
		return err
	}
	h.srv = asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: h.concurrency, Queues: map[string]int{webhook.Queue: 1},
		RetryDelayFunc: webhook.DefaultSchedule.Delay, Logger: alog, LogLevel: asynq.WarnLevel,
		TaskCheckInterval: s.PollInterval, DelayedTaskCheckInterval: time.Second, ShutdownTimeout: s.ShutdownTimeout,
	})
	if err := h.srv.Start(d); err != nil {
		return fmt.Errorf("start webhook delivery: %w", err)
	}
	h.done = make(chan struct{})
	go func() { defer close(h.done); fan.Run(ctx) }()
	hosts := make([]string, len(h.endpoints))
	for i, ep := range h.endpoints {
		hosts[i] = ep.String()
	}
	wlog.Info().Strs("endpoints", hosts).Int("secrets", len(h.secrets)).Str("events", h.filter.String()).
		Bool("allow_private", h.guard.AllowPrivate).Int("concurrency", h.concurrency).Str("consumer", fan.Consumer()).
		Msg("webhooks on")
	return nil
}

// stop ends the fan-out, lets running deliveries finish (up to
// SMSQ_SHUTDOWN_TIMEOUT) and closes the pool. It is safe on a webhooks
// that did not start, or did only in part.
func (h *webhooks) stop() {
	if h == nil {
		return
	}
	if h.cancel != nil {
		h.cancel()
	}
	if h.done != nil {
		<-h.done
	}
	if h.srv != nil {
		h.srv.Shutdown()
	}
	if h.client != nil {
		_ = h.client.Close()
	}
	if h.rdb != nil {
		_ = h.rdb.Close()
	}
}
