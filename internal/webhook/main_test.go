package webhook

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/smsq/smsq/internal/outcome"
	"github.com/smsq/smsq/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// testSecret returns a whsec_ secret made of n bytes of b.
func testSecret(b byte, n int) string {
	key := make([]byte, n)
	for i := range key {
		key[i] = b + byte(i)
	}
	return secretPrefix + base64.StdEncoding.EncodeToString(key)
}

func mustSecrets(t testing.TB, s string) []Secret {
	t.Helper()
	out, err := ParseSecrets(s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustEndpoints(t testing.TB, s string) []Endpoint {
	t.Helper()
	out, err := ParseEndpoints(s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// delivery is one request a receiver saw.
type delivery struct {
	ID, Timestamp, Signature, ContentType, UserAgent string
	Body                                             []byte
	At                                               time.Time
}

// receiver is an HTTP endpoint that answers each request with the status
// answer picks (by the count of requests so far, from 1) and keeps every
// request.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	got    []delivery
	answer func(n int, d delivery) int
}

func newReceiver(t testing.TB, answer func(n int, d delivery) int) *receiver {
	t.Helper()
	r := &receiver{answer: answer}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		d := delivery{ID: req.Header.Get("webhook-id"), Timestamp: req.Header.Get("webhook-timestamp"),
			Signature: req.Header.Get("webhook-signature"), ContentType: req.Header.Get("Content-Type"),
			UserAgent: req.Header.Get("User-Agent"), Body: body, At: time.Now()}
		r.mu.Lock()
		r.got = append(r.got, d)
		n := len(r.got)
		r.mu.Unlock()
		status := http.StatusNoContent
		if r.answer != nil {
			status = r.answer(n, d)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

// rig is a Redis, an outcome stream, a fan-out and a delivery server in
// this process, as a worker runs them.
type rig struct {
	rdb      *redis.Client
	stream   *outcome.Stream
	fanout   *Fanout
	disabled *Disabled
	ins      *asynq.Inspector
	reg      *prometheus.Registry
}

type rigConfig struct {
	endpoints string
	secrets   string
	filter    Filter
	schedule  Schedule
	guard     Guard
	logs      io.Writer
}

func startRig(t testing.TB, cfg rigConfig) *rig {
	t.Helper()
	rdb := redistest.Start(t).Client()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := outcome.New(outcome.Config{Client: rdb})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.secrets == "" {
		cfg.secrets = testSecret(1, 32)
	}
	if cfg.schedule == nil {
		cfg.schedule = Schedule{time.Second, time.Second, time.Second}
	}
	eps := mustEndpoints(t, cfg.endpoints)
	reg := prometheus.NewRegistry()
	m := NewMetrics(MetricsConfig{Registerer: reg, Redis: rdb, Prefix: outcome.DefaultPrefix, Endpoints: eps, CacheFor: time.Millisecond})
	client := asynq.NewClientFromRedisClient(rdb)
	log := zerolog.Nop()
	if cfg.logs != nil {
		log = zerolog.New(cfg.logs)
	}
	f, err := NewFanout(FanoutConfig{Client: rdb, Enqueuer: client, Endpoints: eps, Filter: cfg.filter, Schedule: cfg.schedule, Metrics: m, Timeout: 2 * time.Second, Logger: &log})
	if err != nil {
		t.Fatal(err)
	}
	f.block = 100 * time.Millisecond
	if err := f.Init(ctx); err != nil {
		t.Fatal(err)
	}
	disabled := NewDisabled(rdb, outcome.DefaultPrefix)
	d, err := NewDeliverer(DelivererConfig{Endpoints: eps, Secrets: mustSecrets(t, cfg.secrets), Disabled: disabled,
		Client: NewHTTPClient(cfg.guard, 2*time.Second), Metrics: m, Logger: &log})
	if err != nil {
		t.Fatal(err)
	}
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 20, Queues: map[string]int{Queue: 1}, RetryDelayFunc: cfg.schedule.Delay,
		TaskCheckInterval: 20 * time.Millisecond, DelayedTaskCheckInterval: 100 * time.Millisecond,
		LogLevel: asynq.FatalLevel, ShutdownTimeout: 2 * time.Second,
	})
	if err := srv.Start(d); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Shutdown()
		_ = client.Close()
	})
	return &rig{rdb: rdb, stream: stream, fanout: f, disabled: disabled, ins: asynq.NewInspectorFromRedisClient(rdb), reg: reg}
}

// event is a sample outcome of task id.
func event(id, outcomeName string) outcome.Event {
	return outcome.Event{V: outcome.Version, TaskID: id, Queue: "critical", Channel: "CHANNEL_LOGIN",
		Phone: "+86 138****8000", PhoneHash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Outcome: outcomeName, StatusCode: 200, RequestID: "req-" + id, Attempts: 1,
		EnqueuedAt: time.UnixMilli(1_764_000_000_000).UTC(), FinishedAt: time.UnixMilli(1_764_000_000_250).UTC()}
}

func (r *rig) append(t testing.TB, e outcome.Event) {
	t.Helper()
	if _, err := r.stream.Append(context.Background(), e, ""); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or limit passes.
func waitFor(t testing.TB, limit time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s: %s", limit, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// counter reads a counter of the rig's registry.
func (r *rig) counter(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
		}
	}
	return -1
}

// envelopeOf decodes a delivered body.
func envelopeOf(t testing.TB, body []byte) (typ, ts string, data map[string]any) {
	t.Helper()
	var e struct {
		Type      string         `json:"type"`
		Timestamp string         `json:"timestamp"`
		Data      map[string]any `json:"data"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	return e.Type, e.Timestamp, e.Data
}

func itoa(n int) string { return strconv.Itoa(n) }
