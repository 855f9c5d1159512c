// Package metrics exposes the worker's Prometheus metrics: asynq's queue
// metrics, the Go runtime and process, and smsq's own counters fed from
// every attempt's tasks.Result.
//
// Metrics live in their own registry, never the global one, so that tests
// and several workers in one process do not collide. Label values come only
// from fixed sets (channel, outcome, class); anything else is counted as
// "other". A phone number, masked or not, is never a label value.
package metrics

import (
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/tasks"
)

// Other is the label value for anything outside a label's fixed set.
const Other = "other"

// Config configures Metrics.
type Config struct {
	// Inspector and Redis, when both set, export asynq's queue metrics
	// (sizes by state, latency, processed and failed totals) for Queues,
	// and the queues with waiting tasks that no live worker serves.
	Inspector *asynq.Inspector
	Redis     redis.UniversalClient
	// Queues are the queues this worker serves. Only they get asynq's
	// per-queue metrics: any producer can make queue names, and a scrape
	// must not grow with them.
	Queues []string
	// QueueCacheFor is how long one read of the queue metrics serves
	// scrapes; default DefaultQueueCacheFor.
	QueueCacheFor time.Duration
}

// Metrics holds the registry and smsq's own metrics. It implements
// tasks.Observer and is safe for concurrent use.
type Metrics struct {
	reg           *prometheus.Registry
	attempts      *prometheus.CounterVec
	finished      *prometheus.CounterVec
	genauth       *prometheus.HistogramVec
	conflicts     *prometheus.CounterVec
	unknown       *prometheus.CounterVec
	enqueueToSend *prometheus.HistogramVec
	rateWait      *prometheus.HistogramVec
}

var _ tasks.Observer = (*Metrics)(nil)

// outcomes are every outcome an attempt can record.
var outcomes = append(append([]string(nil), tasks.FinalOutcomes...),
	tasks.OutcomeRetrying, tasks.OutcomeThrottled, tasks.OutcomeDeferred, tasks.OutcomeUnknown)

// classes are genauth's class names.
var classes = []string{
	genauth.ClassSent.String(), genauth.ClassRetry.String(), genauth.ClassThrottle.String(),
	genauth.ClassDuplicate.String(), genauth.ClassPermanent.String(), genauth.ClassUnknown.String(),
}

// New registers every collector in a new registry.
func New(cfg Config) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smsq_attempts_total",
			Help: "Attempts of genauth:send_sms tasks, by channel, outcome and whether the outcome ended the task.",
		}, []string{"channel", "outcome", "final"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smsq_tasks_finished_total",
			Help: "Tasks ended, by channel and final outcome.",
		}, []string{"channel", "outcome"}),
		genauth: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "smsq_genauth_request_duration_seconds",
			Help:    "Duration of GenAuth send-sms calls, by the class of the answer.",
			Buckets: []float64{.025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20},
		}, []string{"class"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smsq_reservation_conflicts_total",
			Help: "Attempts that found the (phone, channel) reservation held by another task (deduplicated or deferred).",
		}, []string{"channel"}),
		unknown: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smsq_unknown_outcomes_total",
			Help: "Attempts after which the SMS may have been sent without an answer saying so.",
		}, []string{"channel"}),
		enqueueToSend: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "smsq_enqueue_to_send_seconds",
			Help:    "Time from enqueue to GenAuth accepting the send, for tasks ending as sent.",
			Buckets: []float64{.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}, []string{"channel"}),
		rateWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "smsq_rate_limit_wait_seconds",
			Help:    "Time attempts waited for smsq's rate limit toward GenAuth, for attempts that had to wait.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"channel"}),
	}
	// Zero series for every valid combination, so that dashboards and
	// rate() see a 0 before the first event rather than no data.
	for _, ch := range genauth.Channels() {
		c := string(ch)
		for _, o := range outcomes {
			m.attempts.WithLabelValues(c, o, strconv.FormatBool(tasks.IsFinal(o)))
			if tasks.IsFinal(o) {
				m.finished.WithLabelValues(c, o)
			}
		}
		m.conflicts.WithLabelValues(c)
		m.unknown.WithLabelValues(c)
		m.enqueueToSend.WithLabelValues(c)
		m.rateWait.WithLabelValues(c)
	}
	for _, c := range classes {
		m.genauth.WithLabelValues(c)
	}
	m.reg.MustRegister(m.attempts, m.finished, m.genauth, m.conflicts, m.unknown, m.enqueueToSend, m.rateWait,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if cfg.Inspector != nil && cfg.Redis != nil {
		cacheFor := cfg.QueueCacheFor
		if cacheFor <= 0 {
			cacheFor = DefaultQueueCacheFor
		}
		queues := slices.Clone(cfg.Queues)
		slices.Sort(queues)
		m.reg.MustRegister(&queueCollector{ins: cfg.Inspector, rdb: cfg.Redis, queues: queues, cacheFor: cacheFor, now: time.Now})
	}
	return m
}

// Observe records one attempt's result.
func (m *Metrics) Observe(r tasks.Result) {
	ch := Channel(r.Channel)
	outcome := Outcome(r.Outcome)
	m.attempts.WithLabelValues(ch, outcome, strconv.FormatBool(r.Final)).Inc()
	if r.Final {
		m.finished.WithLabelValues(ch, outcome).Inc()
	}
	// Class is set only when this attempt called GenAuth.
	if r.Class != "" {
		m.genauth.WithLabelValues(Class(r.Class)).Observe(float64(r.GenAuthMS) / 1000)
	}
	if (r.Outcome == tasks.OutcomeDeduplicated || r.Outcome == tasks.OutcomeDeferred) && r.Holder != "genauth" {
		m.conflicts.WithLabelValues(ch).Inc()
	}
	if r.RateWaitMS > 0 {
		m.rateWait.WithLabelValues(ch).Observe(float64(r.RateWaitMS) / 1000)
	}
	if r.Outcome == tasks.OutcomeUnknown || r.Class == genauth.ClassUnknown.String() {
		m.unknown.WithLabelValues(ch).Inc()
	}
	if r.Final && r.Outcome == tasks.OutcomeSent && !r.EnqueuedAt.IsZero() && !r.FinishedAt.IsZero() {
		d := r.FinishedAt.Sub(r.EnqueuedAt).Seconds()
		if d < 0 {
			// Clocks of producer and worker disagree.
			d = 0
		}
		m.enqueueToSend.WithLabelValues(ch).Observe(d)
	}
}

// Registry returns the registry, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition format. A
// collector that fails (Redis down for the queue metrics) does not hide
// the others.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, Registry: m.reg})
}

// Channel returns c when it is one of GenAuth's channels, else Other.
func Channel(c string) string {
	if genauth.Channel(c).Valid() {
		return c
	}
	return Other
}

// Outcome returns o when it is a known outcome, else Other.
func Outcome(o string) string { return oneOf(o, outcomes) }

// Class returns c when it is a GenAuth class name, else Other.
func Class(c string) string { return oneOf(c, classes) }

func oneOf(v string, set []string) string {
	for _, s := range set {
		if v == s {
			return v
		}
	}
	return Other
}
