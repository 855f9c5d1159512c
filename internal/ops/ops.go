// Package ops is the worker's HTTP surface for operators: Prometheus
// metrics, liveness and readiness probes, and the asynqmon web UI behind
// HTTP basic auth, with phone numbers masked in everything it shows.
//
// The package builds handlers and listeners; it never reads settings
// itself and knows nothing of GenAuth. Only the UI is behind credentials:
// /metrics, /healthz and /readyz stay open for probes and scrapers, so
// the listener belongs on a private network.
package ops

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

// DefaultUIPath is where the web UI is served (asynqmon's root path).
const DefaultUIPath = "/monitoring"

// ReadyTimeout bounds one readiness check.
const ReadyTimeout = time.Second

// Config configures the handler built by NewHandler.
type Config struct {
	// Metrics serves /metrics; nil leaves it out.
	Metrics http.Handler
	// Ready reports why the worker cannot take work, or nil when it can.
	// It runs under a context of ReadyTimeout. Required.
	Ready func(ctx context.Context) error
	// UI serves the web UI under DefaultUIPath; nil leaves it out.
	UI http.Handler
	// User and Password guard the UI with HTTP basic auth; both empty
	// serve it without credentials (only sensible on loopback).
	User, Password string
	// Registry, when set, gets smsq_ui_auth_failures_total and smsq_ready.
	Registry prometheus.Registerer
	// Log receives refused logins and the reasons for not being ready,
	// each at most once per interval. Nil discards them.
	Log *zerolog.Logger
	// Now is the throttles' clock; default time.Now.
	Now func() time.Time
}

// readyLogEvery is how often a reason for not being ready is logged while
// probes keep asking.
const readyLogEvery = 30 * time.Second

// NewHandler validates cfg and returns the handler for the listener.
func NewHandler(cfg Config) (http.Handler, error) {
	if cfg.Ready == nil {
		return nil, errors.New("ops: Config.Ready is required")
	}
	if (cfg.User == "") != (cfg.Password == "") {
		return nil, errors.New("ops: user and password must be set together")
	}

	log := zerolog.Nop()
	if cfg.Log != nil {
		log = *cfg.Log
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "smsq_ui_auth_failures_total",
		Help: "Web UI logins refused: refused (wrong user or password) or throttled (too many wrong ones, not checked).",
	}, []string{"result"})
	failures.WithLabelValues("refused")
	failures.WithLabelValues("throttled")
	// /readyz's answer as a metric, so that an alert sees it without a
	// prober: the same check, run at scrape time.
	ready := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "smsq_ready",
		Help: "1 when the worker is ready (/readyz answers 200: Redis answers and the task server runs), 0 otherwise; checked at scrape time.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
		defer cancel()
		if cfg.Ready(ctx) != nil {
			return 0
		}
		return 1
	})
	if cfg.Registry != nil {
		for _, c := range []prometheus.Collector{failures, ready} {
			if err := cfg.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("ops: register metrics: %w", err)
			}
		}
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		text(w, http.StatusOK, "ok")
	})
	// /readyz is open to anyone: its answer says only whether the worker
	// is ready, and the reason, which can name internal addresses, goes to
	// the log.
	readyLog := rate.NewLimiter(rate.Every(readyLogEvery), 1)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), ReadyTimeout)
		defer cancel()
		if err := cfg.Ready(ctx); err != nil {
			if readyLog.AllowN(now(), 1) {
				log.Warn().Err(err).Msg("not ready (reported to /readyz without the reason)")
			}
			text(w, http.StatusServiceUnavailable, "not ready")
			return
		}
		text(w, http.StatusOK, "ready")
	})
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	index := "smsq worker\n\n/healthz  liveness\n/readyz   readiness (Redis and the task server)\n"
	if cfg.Metrics != nil {
		index += "/metrics  Prometheus metrics\n"
	}
	if cfg.UI != nil {
		ui := cfg.UI
		if cfg.User != "" {
			ui = newBasicAuth(cfg.User, cfg.Password, "smsq", ui, now, failures, log)
		}
		mux.Handle(DefaultUIPath, ui)
		mux.Handle(DefaultUIPath+"/", ui)
		index += DefaultUIPath + "/  web UI (asynqmon)\n"
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		text(w, http.StatusOK, index)
	})
	// A page on another site may neither send the UI's writes with the
	// operator's cached credentials (pause a queue, run a task) nor show
	// the UI in a frame to trick a click. CrossOriginProtection refuses
	// unsafe methods that a browser marks as cross-origin (Sec-Fetch-Site,
	// else Origin against Host); clients that are not browsers send
	// neither and pass.
	return noFrames(http.NewCrossOriginProtection().Handler(mux)), nil
}

// noFrames tells browsers never to show an answer inside a frame.
func noFrames(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "frame-ancestors 'none'")
		next.ServeHTTP(w, r)
	})
}

func text(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintln(w, strings.TrimRight(body, "\n"))
}
