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
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
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
}

// NewHandler validates cfg and returns the handler for the listener.
func NewHandler(cfg Config) (http.Handler, error) {
	if cfg.Ready == nil {
		return nil, errors.New("ops: Config.Ready is required")
	}
	if (cfg.User == "") != (cfg.Password == "") {
		return nil, errors.New("ops: user and password must be set together")
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		text(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), ReadyTimeout)
		defer cancel()
		if err := cfg.Ready(ctx); err != nil {
			text(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
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
			ui = BasicAuth(cfg.User, cfg.Password, "smsq", ui)
		}
		mux.Handle(DefaultUIPath, ui)
		mux.Handle(DefaultUIPath+"/", ui)
		index += DefaultUIPath + "/  web UI (asynqmon)\n"
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		text(w, http.StatusOK, index)
	})
	return mux, nil
}

func text(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintln(w, strings.TrimRight(body, "\n"))
}

// BasicAuth serves next only to requests carrying user and password. The
// comparison takes the same time whatever the input, so that timing does
// not reveal how much of a guess was right.
func BasicAuth(user, password, realm string, next http.Handler) http.Handler {
	wantUser := sha256.Sum256([]byte(user))
	wantPass := sha256.Sum256([]byte(password))
	challenge := fmt.Sprintf("Basic realm=%q, charset=\"UTF-8\"", realm)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		gotUser := sha256.Sum256([]byte(u))
		gotPass := sha256.Sum256([]byte(p))
		match := subtle.ConstantTimeCompare(gotUser[:], wantUser[:]) & subtle.ConstantTimeCompare(gotPass[:], wantPass[:])
		if !ok || match != 1 {
			w.Header().Set("WWW-Authenticate", challenge)
			text(w, http.StatusUnauthorized, "unauthorized")
			return
		}
		next.ServeHTTP(w, r)
	})
}
