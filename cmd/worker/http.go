package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/smsq/smsq/internal/config"
	"github.com/smsq/smsq/internal/metrics"
	"github.com/smsq/smsq/internal/ops"
	"github.com/smsq/smsq/internal/redisconn"
)

// defaultHTTPAddr is the worker's HTTP listener unless SMSQ_HTTP_ADDR says
// otherwise; when it is taken (another worker on the machine) the worker
// listens on a free loopback port instead.
const defaultHTTPAddr = "127.0.0.1:8080"

// defaultHTTPMaxConns is SMSQ_HTTP_MAX_CONNS's default: probes, a scraper
// and a few browsers need a few dozen connections at most.
const defaultHTTPMaxConns = 128

// bindHTTPSettings declares the settings of the HTTP listener and the UI.
func bindHTTPSettings(set *config.Set, s *settings) {
	set.String(&s.HTTPAddr, "http-addr", "SMSQ_HTTP_ADDR", defaultHTTPAddr, "HTTP listener for /metrics, /healthz, /readyz and the web UI; off disables it. Keep it on a private network: only the UI needs credentials")
	set.Int(&s.HTTPMaxConns, "http-max-conns", "SMSQ_HTTP_MAX_CONNS", defaultHTTPMaxConns, "most connections the HTTP listener holds at once (lowered to fit RLIMIT_NOFILE beside the send path's sockets); at the cap a new one replaces the longest-idle")
	set.String(&s.UI, "ui", "SMSQ_UI", "on", "web UI (asynqmon) under /monitoring: on or off")
	set.Bool(&s.UIWritable, "ui-writable", "SMSQ_UI_WRITABLE", false, "let the web UI delete, run, archive and cancel tasks and pause queues (read-only by default)")
	set.String(&s.UIUser, "ui-user", "SMSQ_UI_USER", "", "web UI basic-auth user (required, with the password, when SMSQ_HTTP_ADDR is not loopback)")
	set.Secret(&s.UIPassword, "ui-password", "SMSQ_UI_PASSWORD", "", "web UI basic-auth password")
}

// httpSurface is the worker's HTTP listener: metrics, probes and the web
// UI. Its methods are safe on a nil surface (SMSQ_HTTP_ADDR=off).
type httpSurface struct {
	ln      net.Listener
	srv     *http.Server
	ui      *ops.UI
	log     zerolog.Logger
	running atomic.Bool // the asynq server is processing tasks
	served  chan error
}

// listenHTTP validates the HTTP settings and opens the listener, before
// anything else starts, so that a bad address fails start-up at once.
func listenHTTP(set *config.Set, s *settings, log zerolog.Logger) (*httpSurface, error) {
	if s.HTTPAddr == "off" {
		return nil, nil
	}
	if _, _, err := net.SplitHostPort(s.HTTPAddr); err != nil {
		return nil, fmt.Errorf("SMSQ_HTTP_ADDR %q: want host:port or off: %w", s.HTTPAddr, err)
	}
	if s.HTTPMaxConns < 1 {
		return nil, fmt.Errorf("SMSQ_HTTP_MAX_CONNS %d: must be at least 1", s.HTTPMaxConns)
	}
	switch s.UI {
	case "on", "off":
	default:
		return nil, fmt.Errorf("SMSQ_UI %q: want on or off", s.UI)
	}
	if (s.UIUser == "") != (s.UIPassword == "") {
		return nil, errors.New("SMSQ_UI_USER and SMSQ_UI_PASSWORD must be set together")
	}
	if s.UI == "on" && s.UIUser == "" && !ops.IsLoopback(s.HTTPAddr) {
		return nil, fmt.Errorf("SMSQ_HTTP_ADDR %s is not a loopback address: the web UI needs SMSQ_UI_USER and SMSQ_UI_PASSWORD there (or SMSQ_UI=off)", s.HTTPAddr)
	}
	ln, fellBack, err := ops.Listen(s.HTTPAddr, !set.IsSet("http-addr"))
	if err != nil {
		return nil, fmt.Errorf("SMSQ_HTTP_ADDR %s: %w", s.HTTPAddr, err)
	}
	if fellBack {
		log.Warn().Str("wanted", s.HTTPAddr).Str("http_addr", ln.Addr().String()).
			Msg("default HTTP address is taken (another worker?); listening on a free port instead")
	}
	return &httpSurface{ln: ln, log: log}, nil
}

// perClientConns is how many of the listener's connections one client
// may hold: an eighth, so that a single client cannot keep the probes out.
func perClientConns(conns int) int { return max(4, conns/8) }

// serve starts answering requests. The probes and /metrics need rdb and m;
// the UI opens its own connections from the Redis URL. The listener holds
// at most SMSQ_HTTP_MAX_CONNS connections, fewer when fileLimit (0:
// unknown) leaves less beside the sendPath files set aside for the send
// path (see sendPathFiles); at the cap a new connection replaces the one
// waiting longest (ops.CapConns).
func (h *httpSurface) serve(s *settings, rdb redis.UniversalClient, m *metrics.Metrics, fileLimit uint64, sendPath int) error {
	if h == nil {
		return nil
	}
	conns, short := httpConnCap(s.HTTPMaxConns, fileLimit, sendPath)
	switch {
	case short:
		h.log.Warn().Uint64("open_files_limit", fileLimit).Int("send_path_files", sendPath).Int("http_max_conns", conns).
			Msg("RLIMIT_NOFILE is too low for SMSQ_CONCURRENCY: raise it (ulimit -n, systemd LimitNOFILE=, docker --ulimit nofile=) or lower SMSQ_CONCURRENCY")
	case conns < s.HTTPMaxConns:
		h.log.Warn().Uint64("open_files_limit", fileLimit).Int("send_path_files", sendPath).Int("http_max_conns", conns).
			Msg("SMSQ_HTTP_MAX_CONNS lowered to leave the send path its files under RLIMIT_NOFILE")
	}
	httpLog := h.log.With().Str("component", "http").Logger()
	cfg := ops.Config{
		Metrics: m.Handler(),
		Ready:   h.ready(rdb),
		User:    s.UIUser, Password: s.UIPassword,
		Registry: m.Registry(), Log: &httpLog,
	}
	if s.UI == "on" {
		ui, err := ops.NewUI(ops.UIConfig{Redis: redisURLOpt(s.RedisURL), Writable: s.UIWritable})
		if err != nil {
			return err
		}
		h.ui, cfg.UI = ui, ui
	}
	handler, err := ops.NewHandler(cfg)
	if err != nil {
		return err
	}
	h.srv = ops.NewServer(handler, httpLog)
	h.served = make(chan error, 1)
	ln, connState := ops.CapConns(ops.LimitPerClient(h.ln, perClientConns(conns)), conns)
	h.srv.ConnState = connState
	go func() { h.served <- h.srv.Serve(ln) }()
	ev := h.log.Info().Str("http_addr", h.Addr()).Int("http_max_conns", conns).
		Int("http_max_conns_per_client", perClientConns(conns)).Bool("ui", h.ui != nil)
	if h.ui != nil {
		ev.Str("ui_url", "http://"+h.Addr()+ops.DefaultUIPath+"/").Bool("ui_writable", s.UIWritable).Bool("ui_auth", s.UIUser != "")
	}
	ev.Msg("HTTP listening")
	return nil
}

// ready is the readiness check: Redis answers and tasks are being processed.
func (h *httpSurface) ready(rdb redis.UniversalClient) func(context.Context) error {
	return func(ctx context.Context) error {
		if !h.running.Load() {
			return errors.New("task server not running")
		}
		if err := rdb.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		return nil
	}
}

// setRunning tells readiness whether the asynq server processes tasks.
func (h *httpSurface) setRunning(v bool) {
	if h != nil {
		h.running.Store(v)
	}
}

// Addr is the bound address, or "" when the listener is off.
func (h *httpSurface) Addr() string {
	if h == nil {
		return ""
	}
	return h.ln.Addr().String()
}

// Close stops the listener, letting requests in progress finish for a few
// seconds, and closes the UI's connections.
func (h *httpSurface) Close() {
	if h == nil {
		return
	}
	if h.srv == nil {
		h.ln.Close()
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.srv.Shutdown(ctx); err != nil {
			h.log.Warn().Err(err).Msg("HTTP shutdown")
		}
		if err := <-h.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Warn().Err(err).Msg("HTTP server")
		}
	}
	if h.ui != nil {
		h.ui.Close()
	}
}

// redisURLOpt lets asynqmon open its connections from the worker's Redis
// URL, with every form redisconn accepts (sentinel, cluster). The URL was
// already checked when the worker connected.
type redisURLOpt string

// MakeRedisClient implements asynq.RedisConnOpt.
func (u redisURLOpt) MakeRedisClient() any {
	c, err := redisconn.Open(string(u), redisconn.Options{PoolSize: uiRedisPool})
	if err != nil {
		return nil
	}
	return c
}
