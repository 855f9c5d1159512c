package api

import (
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// apiMetrics are the API's Prometheus metrics. Labels come from fixed
// lists: the configured key names ("none" before authentication), the
// routes and the status codes.
type apiMetrics struct {
	keys     []string
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	lines    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, keys []string) (*apiMetrics, error) {
	m := &apiMetrics{
		keys: keys,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smsq_api_requests_total",
			Help: "HTTP API requests by API key name (none: not authenticated), route and status code.",
		}, []string{"key", "route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "smsq_api_request_duration_seconds",
			Help:    "HTTP API request duration by route (with ?wait=, the wait included).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
		lines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smsq_api_batch_lines_total",
			Help: "Lines of POST /v1/sms/batch by API key name and line status.",
		}, []string{"key", "status"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.duration, m.lines} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *apiMetrics) key(name string) string {
	if name == "" || !slices.Contains(m.keys, name) {
		return "none"
	}
	return name
}

func (m *apiMetrics) observe(key, route string, status int, d time.Duration) {
	m.requests.WithLabelValues(m.key(key), route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

func (m *apiMetrics) line(key, status string) {
	m.lines.WithLabelValues(m.key(key), status).Inc()
}
