package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/ratelimit"
	"github.com/smsq/smsq/internal/redistest"
)

// Test keys: billing given in clear, web by its SHA-256.
const (
	billingSecret = "billing-secret-0123456789abcdef"
	webSecret     = "web-secret-fedcba9876543210"
	testPhone     = "+8613800138000"
)

func testKeys(t testing.TB) Keys {
	t.Helper()
	sum := sha256.Sum256([]byte(webSecret))
	k, err := ParseKeys("billing:" + billingSecret + ",web:sha256:" + hex.EncodeToString(sum[:]))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// harness is an API server on a real Redis, reached through a client
// whose every answer is checked against the OpenAPI document.
type harness struct {
	t      testing.TB
	api    *Server
	srv    *httptest.Server
	rdb    *redis.Client
	client *http.Client
	sc     *smsq.Client
	logs   *syncBuffer
	reg    *prometheus.Registry
	redis  *redistest.Server
}

func newHarness(t testing.TB, mod func(*Config)) *harness {
	t.Helper()
	rs := redistest.Start(t)
	rdb := rs.Client()
	return newHarnessOn(t, rs, rdb, mod)
}

func newHarnessOn(t testing.TB, rs *redistest.Server, rdb *redis.Client, mod func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, rdb: rdb, logs: &syncBuffer{}, reg: prometheus.NewRegistry(), redis: rs}
	h.sc = smsq.NewClientFromRedis(rdb)
	log := zerolog.New(h.logs)
	t.Cleanup(func() { h.sc.Close() })
	cfg := Config{Enqueuer: h.sc, Outcomes: h.sc, Redis: rdb, Keys: testKeys(t), Log: &log, Registerer: h.reg}
	if mod != nil {
		mod(&cfg)
	}
	api, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.api = api
	h.srv = httptest.NewServer(api)
	t.Cleanup(h.srv.Close)
	h.client = &http.Client{Transport: &contractTransport{t: t, forbidden: []string{
		"13800138000", "13900139000", billingSecret, webSecret,
	}}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("API log:\n%s", h.logs.String())
		}
	})
	return h
}

// do sends a request; hdr holds header name, value pairs.
func (h *harness) do(method, path, secret, contentType, body string, hdr ...string) (*http.Response, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, data
}

// send posts a JSON body to /v1/sms with the billing key.
func (h *harness) send(body string, hdr ...string) (*http.Response, []byte) {
	h.t.Helper()
	return h.do(http.MethodPost, "/v1/sms", billingSecret, "application/json", body, hdr...)
}

// tasks counts the tasks in Redis, in every queue.
func (h *harness) tasks() int {
	h.t.Helper()
	keys, err := h.rdb.Keys(context.Background(), "asynq:{*}:t:*").Result()
	if err != nil {
		h.t.Fatal(err)
	}
	return len(keys)
}

func decode[T any](t testing.TB, data []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return v
}

func wantStatus(t testing.TB, resp *http.Response, body []byte, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, want, body)
	}
}

func mustRate(t testing.TB, s string) ratelimit.Limit {
	t.Helper()
	l, err := ratelimit.ParseRate(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
