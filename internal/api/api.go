package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/batch"
	"github.com/smsq/smsq/internal/phone"
	"github.com/smsq/smsq/internal/ratelimit"
)

// Defaults and bounds.
const (
	// DefaultTimeout bounds a request's work (not counting ?wait=).
	DefaultTimeout = 10 * time.Second
	// MaxBodyBytes is the largest body of POST /v1/sms and
	// /v1/verifications: a task payload is at most 4 KiB.
	MaxBodyBytes = 16 << 10
	// MaxLineBytes is the longest batch line; a longer one is reported
	// invalid and skipped without being held in memory.
	MaxLineBytes = 16 << 10
	// MaxWait is the longest ?wait= a request may ask for.
	MaxWait = 30 * time.Second
	// BatchIdleTimeout is how long a batch may send nothing (or read
	// nothing of the answer) before it is ended.
	BatchIdleTimeout = 30 * time.Second
	// DefaultMaxBatches is how many batches one server runs at once.
	DefaultMaxBatches = 8
	// RateLimitPrefix starts the Redis key of each API key's limiter:
	// smsq:api:rate:<key name>.
	RateLimitPrefix = "smsq:api:rate:"
)

// Route names label metrics and logs.
const (
	routeSend          = "POST /v1/sms"
	routeGet           = "GET /v1/sms/{id}"
	routeBatch         = "POST /v1/sms/batch"
	routeVerifications = "POST /v1/verifications"
	routeOpenAPI       = "GET /v1/openapi.json"
	routeOther         = "other"
)

// Config configures a Server.
type Config struct {
	// Enqueuer queues tasks; *smsq.Client is one. Required.
	Enqueuer batch.Enqueuer
	// Redis keeps idempotency records and the rate limiters. Required.
	Redis redis.UniversalClient
	// Keys are the accepted API keys; at least one.
	Keys Keys
	// RateLimit is each API key's request rate, shared by every server on
	// one Redis; the zero Limit means none.
	RateLimit ratelimit.Limit
	// Served are the queues workers serve: a task for another queue is
	// refused, as smsq.Client.Send refuses it. Default
	// smsq.DefaultServedQueues.
	Served []string
	// Timeout bounds each request's work; default DefaultTimeout.
	Timeout time.Duration
	// MaxBatches bounds the batches in progress; default DefaultMaxBatches.
	MaxBatches int
	// Outcomes reads tasks' states and waits for their outcomes; nil
	// answers GET /v1/sms/{id} and ?wait= with 501.
	Outcomes Outcomes
	// Verifier takes conversion reports; nil answers
	// POST /v1/verifications with 501.
	Verifier Verifier
	// Log gets one line per request; default none.
	Log *zerolog.Logger
	// Registerer gets the API's metrics; default none.
	Registerer prometheus.Registerer
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Verifier takes the abuse guard's conversion reports: a code sent to
// phone (E.164) on channel was used.
type Verifier interface {
	Verified(ctx context.Context, phone, channel string) error
}

// Server is the HTTP API. It is an http.Handler.
type Server struct {
	cfg     Config
	log     zerolog.Logger
	mux     *http.ServeMux
	idem    idemStore
	limiter *ratelimit.Limiter
	batches atomic.Int64
	m       *apiMetrics
}

var _ http.Handler = (*Server)(nil)

// New validates cfg and returns the API.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Enqueuer == nil:
		return nil, errors.New("api: Config.Enqueuer is required")
	case cfg.Redis == nil:
		return nil, errors.New("api: Config.Redis is required")
	case cfg.Keys.Len() == 0:
		return nil, errors.New("api: no API keys")
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("api: Config.Timeout %s: must be positive", cfg.Timeout)
	}
	if err := cfg.RateLimit.Validate(); err != nil {
		return nil, fmt.Errorf("api: Config.RateLimit: %w", err)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxBatches <= 0 {
		cfg.MaxBatches = DefaultMaxBatches
	}
	if cfg.Served == nil {
		cfg.Served = smsq.DefaultServedQueues()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := zerolog.Nop()
	if cfg.Log != nil {
		log = *cfg.Log
	}
	limiter, err := ratelimit.New(ratelimit.Config{Client: cfg.Redis, Prefix: RateLimitPrefix})
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer, cfg.Keys.Names())
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, mux: http.NewServeMux(), idem: idemStore{cfg.Redis}, limiter: limiter, m: m}
	s.route("/v1/sms", routeSend, http.MethodPost, true, s.postSMS)
	s.route("/v1/sms/batch", routeBatch, http.MethodPost, true, s.postBatch)
	s.route("/v1/sms/{id}", routeGet, http.MethodGet, true, s.getSMS)
	s.route("/v1/verifications", routeVerifications, http.MethodPost, true, s.postVerification)
	s.route("/v1/openapi.json", routeOpenAPI, http.MethodGet, false, s.getOpenAPI)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		rw := s.begin(w, r, routeOther)
		defer rw.end()
		writeProblem(rw, problem(kindNotFound, "", "no resource at "+phone.MaskText(r.URL.Path)+"; see /v1/openapi.json"))
	})
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// handlerFunc serves one authenticated route; key is the caller's key name.
type handlerFunc func(w *response, r *http.Request)

// route registers one resource: the method check, authentication and the
// per-key rate limit come before h.
func (s *Server) route(path, name, method string, auth bool, h handlerFunc) {
	s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		rw := s.begin(w, r, name)
		defer rw.end()
		if name != routeBatch {
			// The server sets no timeouts of its own (a batch runs as long
			// as its lines come): bound the body's arrival and the answer.
			rc := http.NewResponseController(w)
			now := time.Now()
			_ = rc.SetReadDeadline(now.Add(s.cfg.Timeout))
			_ = rc.SetWriteDeadline(now.Add(s.cfg.Timeout + MaxWait + 5*time.Second))
		}
		if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			rw.Header().Set("Allow", method)
			writeProblem(rw, problem(kindMethod, "", fmt.Sprintf("%s takes %s", path, method)))
			return
		}
		if auth {
			name, ok := s.authenticate(r)
			if !ok {
				writeProblem(rw, problem(kindUnauthorized, "Authorization", "Authorization: want Bearer and an API key of this server"))
				return
			}
			rw.key = name
			if !s.allow(rw, r) {
				return
			}
		}
		h(rw, r)
	})
}

// authenticate reads the bearer key.
func (s *Server) authenticate(r *http.Request) (string, bool) {
	scheme, secret, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return s.cfg.Keys.Lookup(strings.TrimSpace(secret))
}

// allow applies the key's rate limit; false when it answered.
func (s *Server) allow(w *response, r *http.Request) bool {
	if s.cfg.RateLimit.IsZero() {
		return true
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	wait, err := s.limiter.AllowKey(ctx, w.key, s.cfg.RateLimit)
	switch {
	case err != nil:
		s.log.Warn().Err(err).Str("key", w.key).Msg("api: rate limit unavailable")
		p := problem(kindUnavailable, "", "the rate limiter in Redis did not answer; nothing was queued")
		p.RetryAfter = 1
		writeProblem(w, p)
		return false
	case wait > 0:
		p := problem(kindRateLimited, "", fmt.Sprintf("API key %s is limited to %s", w.key, s.cfg.RateLimit))
		p.RetryAfter = retrySeconds(wait)
		writeProblem(w, p)
		return false
	}
	return true
}

// response records what a handler answered, for the request's log line
// and metrics.
type response struct {
	http.ResponseWriter
	s      *Server
	r      *http.Request
	route  string
	key    string
	status int
	start  time.Time
	taskID string
	lines  int
}

func (s *Server) begin(w http.ResponseWriter, r *http.Request, route string) *response {
	return &response{ResponseWriter: w, s: s, r: r, route: route, start: time.Now()}
}

func (w *response) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *response) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *response) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// end logs and counts the request.
func (w *response) end() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	d := time.Since(w.start)
	w.s.m.observe(w.key, w.route, w.status, d)
	ev := w.s.log.Info()
	if w.status >= 500 {
		ev = w.s.log.Warn()
	}
	ev = ev.Str("component", "api").Str("route", w.route).Int("status", w.status).
		Float64("duration", float64(d.Microseconds())/1000)
	if w.key != "" {
		ev = ev.Str("key", w.key)
	}
	if w.taskID != "" {
		ev = ev.Str("task_id", phone.MaskID(w.taskID))
	}
	if w.route == routeBatch {
		ev = ev.Int("lines", w.lines)
	}
	ev.Msg("api request")
}

// mediaType is the request's content type without parameters, lowered.
func mediaType(r *http.Request) string {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return ""
	}
	return mt
}

// requireJSON answers 415 unless the body is application/json.
func requireJSON(w *response, r *http.Request) bool {
	if mediaType(r) == "application/json" {
		return true
	}
	writeProblem(w, problem(kindMediaType, "Content-Type", "Content-Type: want application/json"))
	return false
}

// readBody reads a body of at most MaxBodyBytes; false when it answered.
func readBody(w *response, r *http.Request) ([]byte, bool) {
	if r.ContentLength > MaxBodyBytes {
		writeProblem(w, problem(kindTooLarge, "", fmt.Sprintf("body: %d bytes, at most %d", r.ContentLength, MaxBodyBytes)))
		return nil, false
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeProblem(w, problem(kindTooLarge, "", fmt.Sprintf("body: more than %d bytes", MaxBodyBytes)))
		} else {
			writeProblem(w, problem(kindHeaderOrBodyRead, "", "body: "+err.Error()))
		}
		return nil, false
	}
	return data, true
}

// getOpenAPI serves the OpenAPI document.
func (s *Server) getOpenAPI(w *response, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.WriteHeader(http.StatusOK)
	w.Write(OpenAPI())
}
