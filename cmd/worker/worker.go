package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/smsq/smsq/internal/config"
	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/embedded"
	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/guard"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/logging"
	"github.com/smsq/smsq/internal/metrics"
	"github.com/smsq/smsq/internal/outcome"
	"github.com/smsq/smsq/internal/ratelimit"
	"github.com/smsq/smsq/internal/redisconn"
	"github.com/smsq/smsq/internal/tasks"
	"github.com/smsq/smsq/internal/tracing"
)

// defaultRedisURL is where the worker looks for Redis, and where it starts
// the embedded one when nothing listens there and REDIS_URL is unset.
const (
	defaultRedisURL  = "redis://127.0.0.1:6379/0"
	embeddedRedisAdr = "127.0.0.1:6379"
)

// Bounds of the worker's size. GenAuth takes 100 SMS/s; 1,000 calls in
// flight cover 10 s calls at that rate, and more is a misconfiguration
// that costs Redis (each fetch loop polls it ~100 times a second idle).
const (
	maxConcurrency = 1000
	maxFetchers    = 10
)

// maxIdle is the idle connections each of the worker's two Redis pools
// keeps: a tenth of the concurrency (at least 10), so that after a burst
// an idle worker closes the rest instead of holding the whole pool open.
func maxIdle(concurrency int) int { return max(10, concurrency/10) }

// dequeueBackoffMax is the longest a fetch loop waits after failed
// dequeues in a row (Redis down, or full and refusing the dequeue script).
const dequeueBackoffMax = 2 * time.Second

// pendingFlushTimeout bounds the last try, at shutdown, to write outcomes
// the handler kept while Redis refused them.
const pendingFlushTimeout = 5 * time.Second

// settings is the worker's configuration.
type settings struct {
	RedisURL        string
	AppHost         string
	AppID           string
	HeaderPrefix    string
	Lang            string
	GenAuthTimeout  time.Duration
	Concurrency     int
	Queues          string
	StrictPriority  bool
	Retention       time.Duration
	Window          time.Duration
	PhoneHashKey    string
	OnHeld          string
	SendBy          time.Duration
	Classify        string
	ShutdownTimeout time.Duration
	Fetchers        int
	PollInterval    time.Duration
	LogLevel        string
	LogFormat       string
	HTTPAddr        string
	HTTPMaxConns    int
	UI              string
	UIWritable      bool
	UIUser          string
	UIPassword      string

	// Rate limit toward GenAuth, shared by every worker (see rateLimits).
	RateLimit           string
	RateBurst           int
	RateLimitPerChannel string
	RateMaxWait         time.Duration

	// OutcomeStreamMaxLen bounds the outcome stream: a count, or "off".
	OutcomeStreamMaxLen string

	Webhooks webhookSettings
	apiSettings
	// Abuse guard (internal/guard).
	Guard guard.Settings
}

// bindSettings declares every worker setting; the README table is made
// from the same list.
func bindSettings(set *config.Set, s *settings) {
	set.Secret(&s.RedisURL, "redis-url", "REDIS_URL", defaultRedisURL, "Redis URL: redis://, rediss://, redis-sentinel://, redis-cluster://; user, password and db in the URL")
	set.String(&s.AppHost, "genauth-app-host", "GENAUTH_APP_HOST", "", "GenAuth application address, e.g. https://example.genauth.ai; empty runs the sandbox (no real SMS)")
	set.String(&s.AppID, "genauth-app-id", "GENAUTH_APP_ID", "", "GenAuth application ID (required with GENAUTH_APP_HOST)")
	set.String(&s.HeaderPrefix, "genauth-header-prefix", "SMSQ_GENAUTH_HEADER_PREFIX", "", "send the app id and language only under x-genauth- or x-authing-; empty sends them under both, as GenAuth's SDKs between them do")
	set.String(&s.Lang, "genauth-lang", "SMSQ_GENAUTH_LANG", "", "default SMS language: zh-CN, en-US, ja-JP or zh-TW")
	set.Duration(&s.GenAuthTimeout, "genauth-timeout", "SMSQ_GENAUTH_TIMEOUT", 10*time.Second, "timeout of one GenAuth call")
	set.Int(&s.Concurrency, "concurrency", "SMSQ_CONCURRENCY", 100, "tasks processed at once by this worker (the work waits on the network, so well above the CPU count); at most 1000: run more workers for more")
	set.String(&s.Queues, "queues", "SMSQ_QUEUES", config.FormatWeights(tasks.DefaultQueues()), "queues served, with weights")
	set.Bool(&s.StrictPriority, "strict-priority", "SMSQ_STRICT_PRIORITY", false, "serve a lower queue only when the higher ones are empty")
	set.Duration(&s.Retention, "retention", "SMSQ_RETENTION", history.DefaultRetention, "how long each task's history is kept for the why command")
	set.Duration(&s.Window, "window", "SMSQ_WINDOW", dedupe.DefaultWindow, "reservation window per (phone, channel); GenAuth's own rule is one minute")
	set.Secret(&s.PhoneHashKey, "phone-hash-key", "SMSQ_PHONE_HASH_KEY", "", fmt.Sprintf("secret of at least %d bytes that keys the phone hash in reservation and history key names (HMAC-SHA256); every worker and enqueue why on one Redis must share it; empty: unkeyed SHA-256", dedupe.MinHashKeyLen))
	set.String(&s.OnHeld, "on-held", "SMSQ_ON_HELD", tasks.OnHeldDedupe, "default when another task holds the reservation: dedupe (complete as deduplicated) or defer (run again when it expires)")
	set.Duration(&s.SendBy, "send-by", "SMSQ_SEND_BY", tasks.DefaultSendBy, "default send-by deadline after enqueue; later tasks end as expired")
	set.String(&s.Classify, "classify", "SMSQ_CLASSIFY", "", "overrides of GenAuth answer classes, e.g. statusCode:402=retry,apiCode:12004=permanent")
	set.String(&s.RateLimit, "rate-limit", "SMSQ_RATE_LIMIT", ratelimit.DefaultRate, "most GenAuth calls by all workers together, kept in Redis: 100, 100/s, 6000/m, or off; GenAuth documents 100/s for SMS")
	set.Int(&s.RateBurst, "rate-burst", "SMSQ_RATE_BURST", 0, "calls allowed at once above the steady rate of SMSQ_RATE_LIMIT; 0 means a tenth of a second's worth (10 at 100/s)")
	set.String(&s.RateLimitPerChannel, "rate-limit-per-channel", "SMSQ_RATE_LIMIT_PER_CHANNEL", "", "extra limits per channel under SMSQ_RATE_LIMIT, e.g. CHANNEL_LOGIN=50,CHANNEL_REGISTER=1200/m; a call must pass both")
	set.Duration(&s.RateMaxWait, "rate-max-wait", "SMSQ_RATE_MAX_WAIT", tasks.DefaultRateMaxWait, "longest a task waits for the rate limit; a longer wait ends the attempt as throttled and it runs again when its turn comes")
	set.Int(&s.Fetchers, "fetchers", "SMSQ_FETCHERS", 0, fmt.Sprintf("task fetch loops in this worker, sharing SMSQ_CONCURRENCY; each takes one task per Redis round trip; 0 means one per %d of concurrency; at most %d", tasks.FetchLoopShare, maxFetchers))
	set.Duration(&s.ShutdownTimeout, "shutdown-timeout", "SMSQ_SHUTDOWN_TIMEOUT", 15*time.Second, "how long running tasks may finish after SIGTERM")
	set.Duration(&s.PollInterval, "poll-interval", "SMSQ_POLL_INTERVAL", 100*time.Millisecond, "how often an idle worker checks for new tasks: a new task waits up to 1.5 times this; each check costs a few Redis commands")
	set.String(&s.LogLevel, "log-level", "SMSQ_LOG_LEVEL", "info", "debug, info, warn or error")
	set.String(&s.LogFormat, "log-format", "SMSQ_LOG_FORMAT", "auto", "json, console, or auto (console on a terminal)")
	set.String(&s.OutcomeStreamMaxLen, "outcome-stream-maxlen", "SMSQ_OUTCOME_STREAM_MAXLEN", strconv.Itoa(outcome.DefaultMaxLen), "entries kept in the outcome stream smsq:{outcomes}, trimmed approximately; off keeps none (Wait still works; webhooks need the stream)")
	bindWebhookSettings(set, &s.Webhooks)
	bindGuardSettings(set, &s.Guard)
	bindHTTPSettings(set, s)
	bindAPISettings(set, s)
}

// bindGuardSettings declares the abuse guard's settings.
func bindGuardSettings(set *config.Set, g *guard.Settings) {
	set.String(&g.Phone, "limit-phone", "SMSQ_LIMIT_PHONE", guard.DefaultPhone, "abuse guard: most codes sent to one phone, all channels together, per window: N/m, N/h, N/d or N/mo, comma-separated, or off")
	set.String(&g.IP, "limit-ip", "SMSQ_LIMIT_IP", guard.DefaultIP, "abuse guard: most codes sent for one end-user IP (the task's clientIp; IPv6 by /64), as SMSQ_LIMIT_PHONE")
	set.String(&g.Prefix, "limit-prefix", "SMSQ_LIMIT_PREFIX", guard.DefaultRange, "abuse guard: most codes sent to one number range (the E.164 number without its last 4 digits), as SMSQ_LIMIT_PHONE")
	set.String(&g.Countries, "countries", "SMSQ_COUNTRIES", guard.DefaultCountries, "abuse guard: calling codes sent to, each with an optional daily cap (+86,+852=500/d); * stands for every other code, with its own cap per code")
	set.String(&g.Budget, "budget", "SMSQ_BUDGET", guard.DefaultBudget, "abuse guard: most codes sent in all, per window (50000/d,1000000/mo), or off; warns at 80 %, blocks at 100 %")
	set.String(&g.Conversion, "guard-conversion", "SMSQ_GUARD_CONVERSION", guard.DefaultConversion, "abuse guard: conversion breaker per range and country, for channels the producer reports verified codes on (Client.Verified), or off")
	set.String(&g.Modes, "guard-mode", "SMSQ_GUARD_MODE", guard.DefaultModes, "abuse guard: enforce, monitor (count and report, never block) or off, then per-rule overrides: enforce,prefix=monitor,ip=off")
	set.String(&g.Exempt, "guard-exempt", "SMSQ_GUARD_EXEMPT", "", "abuse guard: comma-separated numbers (test phones) that skip every rule")
}

// shutdown stops every fetch loop at once, so that together they take no
// longer than SMSQ_SHUTDOWN_TIMEOUT.
func (w *worker) shutdown() {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.hooks.stop()
	}()
	for _, srv := range w.srvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			srv.Shutdown()
		}()
	}
	wg.Wait()
}

// hooks let tests see inside a running worker.
type hooks struct {
	ready func(w *worker)
}

// worker holds the running parts.
type worker struct {
	log     zerolog.Logger
	sandbox *genauthtest.Server
	srvs    []*asynq.Server
	web     *httpSurface // nil with SMSQ_HTTP_ADDR=off
	hooks   *webhooks    // nil without SMSQ_WEBHOOK_URL
	api     *apiSurface  // nil without SMSQ_API_ADDR
}

// run starts the worker and blocks until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, h *hooks) error {
	var s settings
	set := config.NewSet("worker", getenv, stderr)
	bindSettings(set, &s)
	if err := set.Parse(args); err != nil {
		return err
	}
	log, err := logging.New(stderr, s.LogLevel, s.LogFormat)
	if err != nil {
		return fmt.Errorf("SMSQ_LOG_LEVEL/SMSQ_LOG_FORMAT: %w", err)
	}
	queues, err := config.ParseWeights(s.Queues)
	if err != nil {
		return fmt.Errorf("SMSQ_QUEUES: %w", err)
	}
	if s.Concurrency < 1 || s.Concurrency > maxConcurrency {
		return fmt.Errorf("SMSQ_CONCURRENCY %d: must be between 1 and %d (run more workers for more)", s.Concurrency, maxConcurrency)
	}
	if s.ShutdownTimeout <= 0 {
		return fmt.Errorf("SMSQ_SHUTDOWN_TIMEOUT %s: must be positive", s.ShutdownTimeout)
	}
	if s.PollInterval < 10*time.Millisecond {
		return fmt.Errorf("SMSQ_POLL_INTERVAL %s: must be at least 10ms", s.PollInterval)
	}
	classifier, err := genauth.ParseOverrides(s.Classify)
	if err != nil {
		return fmt.Errorf("SMSQ_CLASSIFY: %w", err)
	}
	hasher, err := dedupe.NewHasher([]byte(s.PhoneHashKey))
	if err != nil {
		return fmt.Errorf("SMSQ_PHONE_HASH_KEY: %w", err)
	}
	globalRate, channelRates, err := rateLimits(&s)
	if err != nil {
		return err
	}
	streamMaxLen, err := parseStreamMaxLen(s.OutcomeStreamMaxLen)
	if err != nil {
		return err
	}
	hooks, err := parseWebhooks(ctx, &s.Webhooks, queues, log)
	if err != nil {
		return err
	}
	if hooks != nil && streamMaxLen < 0 {
		return errors.New("SMSQ_WEBHOOK_URL is set but SMSQ_OUTCOME_STREAM_MAXLEN is off: webhooks are sent from the outcome stream")
	}
	fileLimit, err := raiseFileLimit()
	if err != nil {
		log.Warn().Err(err).Msg("cannot read RLIMIT_NOFILE; the HTTP listener gets SMSQ_HTTP_MAX_CONNS as set")
	}
	web, err := listenHTTP(set, &s, log)
	if err != nil {
		return err
	}
	defer web.Close()
	apiSrv, err := listenAPI(&s, log)
	if err != nil {
		return err
	}
	defer apiSrv.Close()

	// Traces, when OpenTelemetry's variables ask for them.
	tp, err := tracing.Setup(ctx, tracing.Config{Getenv: getenv, ServiceName: "smsq-worker"})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			log.Warn().Err(err).Msg("cannot export the last spans")
		}
	}()
	var tracer *tracing.Consumer // nil: tracing off, nothing wrapped
	if tp.Enabled() {
		tracer = tracing.NewConsumer(tp.TracerProvider())
		if apiSrv != nil {
			apiSrv.tracer = tp.TracerProvider()
		}
	}

	// Redis: the configured one, or the embedded one on a fresh machine.
	embeddedRedis := false
	if !set.IsSet("redis-url") && !embedded.Listening(ctx, embeddedRedisAdr) {
		er, err := embedded.StartRedis(embeddedRedisAdr)
		if err != nil {
			return err
		}
		defer er.Close()
		embeddedRedis = true
		log.Warn().Str("addr", er.Addr()).Msg("EMBEDDED REDIS: no REDIS_URL and nothing on 127.0.0.1:6379; tasks live in this process only")
	}
	rdb, err := redisconn.Open(s.RedisURL, redisconn.Options{PoolSize: mainPoolSize(s.Concurrency), MaxIdle: maxIdle(s.Concurrency)})
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	defer rdb.Close()
	if err := redisconn.Ping(ctx, rdb, s.RedisURL, 5*time.Second); err != nil {
		return err
	}
	checkRedisSettings(ctx, rdb, log)
	if s.Mode == modeAPI {
		return runAPIOnly(ctx, &s, queues, rdb, &worker{log: log, web: web, api: apiSrv}, fileLimit, h)
	}

	// GenAuth: the configured tenant, or the sandbox.
	w := &worker{log: log, web: web, hooks: hooks, api: apiSrv}
	gcfg := genauth.Config{AppHost: s.AppHost, AppID: s.AppID, HeaderPrefix: s.HeaderPrefix, Lang: s.Lang, Timeout: s.GenAuthTimeout}
	if s.AppHost == "" {
		if s.AppID != "" {
			return errors.New("GENAUTH_APP_ID is set but GENAUTH_APP_HOST is not")
		}
		fake, err := genauthtest.Listen("127.0.0.1:0", genauthtest.Options{Window: time.Minute})
		if err != nil {
			return fmt.Errorf("start sandbox GenAuth: %w", err)
		}
		defer fake.Close()
		w.sandbox = fake
		gcfg.AppHost, gcfg.AppID = fake.URL(), fake.AppID()
		log.Warn().Str("genauth", fake.URL()).Msg("SANDBOX: GENAUTH_APP_HOST is not set; calls go to a built-in fake GenAuth and NO REAL SMS IS SENT")
	} else if s.AppID == "" {
		return errors.New("GENAUTH_APP_ID is required with GENAUTH_APP_HOST")
	}
	if tracer != nil {
		gcfg.WrapTransport = tracer.Transport
	}
	client, err := genauth.New(gcfg)
	if err != nil {
		// genauth names its Config fields; the operator knows the variables.
		return fmt.Errorf("GENAUTH_APP_HOST/SMSQ_GENAUTH_HEADER_PREFIX/SMSQ_GENAUTH_LANG/SMSQ_GENAUTH_TIMEOUT: %w", err)
	}

	// A new reservation also covers the wait for the rate limit and the
	// call itself, so that it outlasts GenAuth's window even when the
	// sent mark after the call is lost.
	grace := (s.GenAuthTimeout + s.RateMaxWait + time.Second).Truncate(time.Millisecond)
	store, err := dedupe.New(dedupe.Config{Client: rdb, Window: s.Window, Grace: grace, Hasher: hasher})
	if err != nil {
		return fmt.Errorf("SMSQ_WINDOW: %w", err)
	}
	journal, err := history.New(history.Config{Client: rdb, Retention: s.Retention})
	if err != nil {
		return fmt.Errorf("SMSQ_RETENTION: %w", err)
	}
	obs := metrics.New(metrics.Config{Inspector: asynq.NewInspectorFromRedisClient(rdb), Redis: rdb, Queues: append(slices.Collect(maps.Keys(queues)), hooks.queues()...)})
	if err := apiSrv.serve(&s, queues, obs.Registry()); err != nil {
		return err
	}
	limiter, err := ratelimit.New(ratelimit.Config{Client: rdb, Global: globalRate, Channels: channelRates})
	if err != nil {
		return fmt.Errorf("SMSQ_RATE_LIMIT: %w", err)
	}
	var rateLimiter tasks.RateLimiter // a nil *Limiter in it would not read as nil
	if limiter.Enabled() {
		rateLimiter = limiter
	}
	var reservations tasks.Reserver = store
	var journalled tasks.Journal = journal
	if tracer != nil {
		reservations, journalled = tracing.Reservations{Store: store}, tracing.Journal{Store: journal}
		if rateLimiter != nil {
			rateLimiter = tracing.RateLimiter(rateLimiter)
		}
	}
	outcomes, err := outcome.New(outcome.Config{Client: rdb, MaxLen: streamMaxLen})
	if err != nil {
		return err
	}
	if err := outcomes.Load(ctx); err != nil {
		// Not fatal: the first append loads it.
		log.Warn().Err(err).Msg("cannot load the outcome stream script")
	}
	abuse, err := newGuard(ctx, &s, rdb, store, outcomes, log)
	if err != nil {
		return err
	}
	if abuse != nil {
		obs.Registry().MustRegister(abuse.Collector())
	}
	handlerLog := log.With().Str("component", "handler").Logger()
	handler, err := tasks.NewHandler(tasks.HandlerConfig{
		RateLimiter: rateLimiter, RateMaxWait: s.RateMaxWait,
		Sender: client, Reservations: reservations, Journal: journalled, Classifier: classifier,
		OnHeld: s.OnHeld, SendBy: s.SendBy, Logger: &handlerLog, Observer: obs,
		Sandbox: w.sandbox != nil, JournalOnAsynqRedis: true, // both from SMSQ's one Redis URL
		Guard: guardOrNil(abuse), Outcomes: outcomes,
	})
	if err != nil {
		return fmt.Errorf("SMSQ_ON_HELD/SMSQ_SEND_BY: %w", err)
	}

	// asynq gets a connection pool of its own: its fetch loop takes one
	// task per round trip, and must never queue behind the handlers' Redis
	// traffic for a connection. Several fetch loops (asynq servers sharing
	// the handler) keep high concurrency fed: one loop tops out at one task
	// per round trip.
	fetchers := s.Fetchers
	if fetchers == 0 {
		fetchers = tasks.FetchLoops(s.Concurrency)
	}
	if fetchers < 1 || fetchers > min(s.Concurrency, maxFetchers) {
		return fmt.Errorf("SMSQ_FETCHERS %d: must be between 1 and SMSQ_CONCURRENCY (%d) and at most %d, or 0 for one per %d of concurrency", s.Fetchers, s.Concurrency, maxFetchers, tasks.FetchLoopShare)
	}
	// Handlers use it too (result writes, completion), hence its size.
	qrdb, err := redisconn.Open(s.RedisURL, redisconn.Options{PoolSize: queuePoolSize(s.Concurrency, fetchers), MaxIdle: maxIdle(s.Concurrency)})
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	defer qrdb.Close()
	// asynq's fetch loop asks again at once when a dequeue fails: back off
	// as for an outage, or a full Redis refusing the script is hammered.
	qrdb.AddHook(&redisconn.Backoff{Match: tasks.IsDequeue, Min: s.PollInterval, Max: dequeueBackoffMax})
	alog := &logging.Asynq{Log: log, Every: 30 * time.Second}
	for _, share := range tasks.SplitConcurrency(s.Concurrency, fetchers) {
		cfg := tasks.ServerConfig(share, s.PollInterval, alog)
		cfg.Queues, cfg.StrictPriority, cfg.ShutdownTimeout = queues, s.StrictPriority, s.ShutdownTimeout
		cfg.HealthCheckFunc = func(err error) {
			if err != nil {
				alog.Error("Redis health check failed: ", err)
			}
		}
		w.srvs = append(w.srvs, asynq.NewServerFromRedisClient(qrdb, cfg))
	}
	sendPath := sendPathFiles(s.Concurrency, fetchers, embeddedRedis, w.sandbox != nil)
	if err := web.serve(&s, rdb, obs, fileLimit, sendPath); err != nil {
		return err
	}
	var served asynq.Handler = handler
	if tracer != nil {
		served = tracer.Handler(handler)
	}
	for _, srv := range w.srvs {
		// The handler itself, not a ServeMux: a mux matches task types by
		// prefix and retries types it has no handler for, where the
		// handler archives every other type once with a recorded reason.
		if err := srv.Start(served); err != nil {
			w.shutdown()
			return fmt.Errorf("start asynq server: %w", err)
		}
	}
	if err := hooks.start(s.RedisURL, obs.Registry(), alog, &s, log); err != nil {
		w.shutdown()
		return err
	}
	web.setRunning(true)
	log.Info().Str("redis", redisconn.Redact(s.RedisURL)).Str("genauth", client.AppHost()).
		Int("concurrency", s.Concurrency).Int("fetchers", len(w.srvs)).Str("queues", config.FormatWeights(queues)).
		Str("rate_limit", limiter.String()).Str("phone_hash", phoneHashName(hasher)).
		Uint64("open_files_limit", fileLimit).Str("tracing", tp.String()).
		Msg("worker started")
	if h != nil && h.ready != nil {
		h.ready(w)
	}
	<-ctx.Done()
	log.Info().Msg("shutting down: waiting for running tasks")
	web.setRunning(false)
	w.shutdown()
	// Outcomes kept for want of Redis get a last chance; each one still
	// unwritten is logged.
	fctx, cancel := context.WithTimeout(context.Background(), pendingFlushTimeout)
	handler.FlushPending(fctx)
	cancel()
	log.Info().Msg("worker stopped")
	return nil
}

// phoneHashName says in the start-up line which phone hash is in use (never
// the key), so that an operator can see that every worker has one.
func phoneHashName(h dedupe.Hasher) string {
	if h.Keyed() {
		return "hmac-sha256"
	}
	return "sha256"
}

// rateLimits reads the rate-limit settings. Every worker sharing a Redis
// must be given the same ones: each check uses the limits of the worker
// that makes it.
func rateLimits(s *settings) (ratelimit.Limit, map[string]ratelimit.Limit, error) {
	global, err := ratelimit.ParseRate(s.RateLimit)
	if err != nil {
		return ratelimit.Limit{}, nil, fmt.Errorf("SMSQ_RATE_LIMIT: %w", err)
	}
	switch {
	case s.RateBurst < 0:
		return ratelimit.Limit{}, nil, fmt.Errorf("SMSQ_RATE_BURST %d: must be 0 (a tenth of a second's worth) or more", s.RateBurst)
	case s.RateBurst > 0 && global.IsZero():
		return ratelimit.Limit{}, nil, errors.New("SMSQ_RATE_BURST is set but SMSQ_RATE_LIMIT is off")
	case !global.IsZero():
		global = global.WithBurst(s.RateBurst)
	}
	if s.RateMaxWait <= 0 {
		return ratelimit.Limit{}, nil, fmt.Errorf("SMSQ_RATE_MAX_WAIT %s: must be positive", s.RateMaxWait)
	}
	// The limiter keys channels by their wire name, as the handler asks.
	channels, err := ratelimit.ParseChannelLimits(s.RateLimitPerChannel, func(name string) (string, error) {
		ch, err := genauth.ParseChannel(name)
		return string(ch), err
	})
	if err != nil {
		return ratelimit.Limit{}, nil, fmt.Errorf("SMSQ_RATE_LIMIT_PER_CHANNEL: %w", err)
	}
	return global, channels, nil
}

// parseStreamMaxLen reads SMSQ_OUTCOME_STREAM_MAXLEN: a positive count, or
// off (-1: no stream entries, announcements only).
func parseStreamMaxLen(v string) (int64, error) {
	if strings.EqualFold(strings.TrimSpace(v), "off") {
		return -1, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("SMSQ_OUTCOME_STREAM_MAXLEN %q: must be a positive number of entries or off", v)
	}
	return n, nil
}
