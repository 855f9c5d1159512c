package webhook

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Delivery results, the values of the result label.
const (
	ResultDelivered = "delivered" // 2xx
	ResultRetry     = "retry"     // network error, timeout, 5xx or 429: tried again later
	ResultRejected  = "rejected"  // another 4xx, or a redirect not followed: ended
	ResultGone      = "gone"      // 410: ended, endpoint disabled
	ResultRefused   = "refused"   // internal address or redirect elsewhere: ended, never connected
	ResultDisabled  = "disabled"  // endpoint disabled before the attempt: ended, not sent
	ResultExhausted = "exhausted" // the last retry failed: ended
)

var results = []string{ResultDelivered, ResultRetry, ResultRejected, ResultGone, ResultRefused, ResultDisabled, ResultExhausted}

// Fan-out results, the values of the result label of the events counter.
const (
	EventQueued    = "queued"    // a delivery task queued for the endpoint
	EventDuplicate = "duplicate" // its task existed already (an entry read again)
	EventFiltered  = "filtered"  // outcome not in SMSQ_WEBHOOK_EVENTS
	EventInvalid   = "invalid"   // entry does not parse
)

// Metrics are the webhook metrics. A nil *Metrics records nothing.
type Metrics struct {
	deliveries *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	events     *prometheus.CounterVec
}

// MetricsConfig configures NewMetrics.
type MetricsConfig struct {
	// Registerer receives the collectors; required.
	Registerer prometheus.Registerer
	// Redis, Prefix and Endpoints, when Redis is set, export the queue
	// depth and how many endpoints are disabled, read at scrape time
	// (cached for CacheFor, default 5 s).
	Redis     redis.UniversalClient
	Prefix    string
	Endpoints []Endpoint
	CacheFor  time.Duration
}

// NewMetrics registers the webhook metrics, with zero series for every
// endpoint host and result.
func NewMetrics(cfg MetricsConfig) *Metrics {
	m := &Metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smsq_webhook_deliveries_total",
			Help: "Webhook delivery attempts, by endpoint host and result.",
		}, []string{"host", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "smsq_webhook_delivery_duration_seconds",
			Help:    "Duration of webhook delivery attempts that reached the endpoint or failed on the way, by endpoint host.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"host"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smsq_webhook_events_total",
			Help: "Outcome stream entries read for webhooks, by what became of them per endpoint.",
		}, []string{"result"}),
	}
	for _, ep := range cfg.Endpoints {
		for _, r := range results {
			m.deliveries.WithLabelValues(ep.Host, r)
		}
		m.duration.WithLabelValues(ep.Host)
	}
	for _, r := range []string{EventQueued, EventDuplicate, EventFiltered, EventInvalid} {
		m.events.WithLabelValues(r)
	}
	cfg.Registerer.MustRegister(m.deliveries, m.duration, m.events)
	if cfg.Redis != nil {
		cacheFor := cfg.CacheFor
		if cacheFor <= 0 {
			cacheFor = 5 * time.Second
		}
		ids := make([]string, len(cfg.Endpoints))
		for i, ep := range cfg.Endpoints {
			ids[i] = ep.ID
		}
		cfg.Registerer.MustRegister(&stateCollector{rdb: cfg.Redis, key: DisabledKey(cfg.Prefix), ids: ids, cacheFor: cacheFor})
	}
	return m
}

func (m *Metrics) delivery(host, result string, d time.Duration) {
	if m == nil {
		return
	}
	m.deliveries.WithLabelValues(host, result).Inc()
	if d > 0 {
		m.duration.WithLabelValues(host).Observe(d.Seconds())
	}
}

func (m *Metrics) event(result string) {
	if m != nil {
		m.events.WithLabelValues(result).Inc()
	}
}

var (
	queueDepthDesc = prometheus.NewDesc("smsq_webhook_queue_depth",
		"Webhook deliveries waiting or running in the "+Queue+" queue (pending, active, scheduled and retry).", nil, nil)
	disabledDesc = prometheus.NewDesc("smsq_webhook_endpoints_disabled",
		"Configured webhook endpoints disabled after answering 410 Gone.", nil, nil)
)

// stateCollector reads the queue depth and the disabled endpoints in one
// pipelined round trip per cache period.
type stateCollector struct {
	rdb      redis.UniversalClient
	key      string
	ids      []string
	cacheFor time.Duration

	mu      sync.Mutex
	readAt  time.Time
	metrics []prometheus.Metric
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueDepthDesc
	ch <- disabledDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if c.metrics == nil || time.Since(c.readAt) >= c.cacheFor {
		c.metrics = c.read()
		c.readAt = time.Now()
	}
	ms := c.metrics
	c.mu.Unlock()
	for _, m := range ms {
		ch <- m
	}
}

func (c *stateCollector) read() []prometheus.Metric {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	prefix := "asynq:{" + Queue + "}:"
	pipe := c.rdb.Pipeline()
	sizes := []*redis.IntCmd{pipe.LLen(ctx, prefix+"pending"), pipe.LLen(ctx, prefix+"active"),
		pipe.ZCard(ctx, prefix+"scheduled"), pipe.ZCard(ctx, prefix+"retry")}
	var disabled *redis.SliceCmd
	if len(c.ids) > 0 {
		disabled = pipe.HMGet(ctx, c.key, c.ids...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return []prometheus.Metric{prometheus.NewInvalidMetric(queueDepthDesc, err)}
	}
	var depth, off float64
	for _, s := range sizes {
		depth += float64(s.Val())
	}
	if disabled != nil {
		for _, v := range disabled.Val() {
			if v != nil {
				off++
			}
		}
	}
	return []prometheus.Metric{
		prometheus.MustNewConstMetric(queueDepthDesc, prometheus.GaugeValue, depth),
		prometheus.MustNewConstMetric(disabledDesc, prometheus.GaugeValue, off),
	}
}
