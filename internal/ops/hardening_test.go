package ops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

const (
	testUser = "ops"
	testPass = "s3cret pass"
)

// syncBuffer is a log sink safe for concurrent handlers.
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

// fakeClock is a settable clock for the throttles.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// hardenedHandler builds the handler with a UI that records the requests
// it was given, a registry, a log buffer and a fake clock.
type hardenedHandler struct {
	h     http.Handler
	reg   *prometheus.Registry
	logs  *syncBuffer
	clock *fakeClock
	mu    sync.Mutex
	uiGot []string // method and path of every request the UI served
}

func newHardened(t *testing.T, ready func(context.Context) error) *hardenedHandler {
	t.Helper()
	hh := &hardenedHandler{reg: prometheus.NewRegistry(), logs: &syncBuffer{},
		clock: &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}
	if ready == nil {
		ready = func(context.Context) error { return nil }
	}
	log := zerolog.New(hh.logs)
	h, err := NewHandler(Config{
		Ready: ready,
		UI: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hh.mu.Lock()
			hh.uiGot = append(hh.uiGot, r.Method+" "+r.URL.Path)
			hh.mu.Unlock()
			w.Write([]byte("ui"))
		}),
		User: testUser, Password: testPass,
		Registry: hh.reg, Log: &log, Now: hh.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	hh.h = h
	return hh
}

func (hh *hardenedHandler) do(method, path, remote, user, pass string, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(""))
	req.RemoteAddr = remote
	if user != "" || pass != "" {
		req.SetBasicAuth(user, pass)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	hh.h.ServeHTTP(rec, req)
	return rec
}

func (hh *hardenedHandler) uiRequests() []string {
	hh.mu.Lock()
	defer hh.mu.Unlock()
	return append([]string(nil), hh.uiGot...)
}

// TestCrossSiteWritesRefused: a page on another site that posts a form to
// the UI (pausing a queue, running a scheduled task) with the operator's
// cached credentials must not reach the UI; the UI's own pages, and
// clients that are not browsers, still can.
func TestCrossSiteWritesRefused(t *testing.T) {
	t.Parallel()
	hh := newHardened(t, nil)
	pause := "/monitoring/api/queues/critical:pause"
	run := "/monitoring/api/queues/default/scheduled_tasks/t1:run"
	refused := []struct {
		name   string
		method string
		path   string
		header map[string]string
	}{
		{"form POST from another site", "POST", pause, map[string]string{
			"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site", "Content-Type": "application/x-www-form-urlencoded"}},
		{"POST from a sibling subdomain", "POST", run, map[string]string{
			"Origin": "https://evil.internal.example", "Sec-Fetch-Site": "same-site"}},
		{"older browser: Origin only", "POST", pause, map[string]string{"Origin": "https://evil.example"}},
		{"DELETE from another site", "DELETE", "/monitoring/api/queues/default/archived_tasks/t1", map[string]string{
			"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}},
	}
	for _, tt := range refused {
		rec := hh.do(tt.method, tt.path, "192.0.2.10:4000", testUser, testPass, tt.header)
		if rec.Code != http.StatusForbidden {
			t.Errorf("%s: %s %s = %d, want 403", tt.name, tt.method, tt.path, rec.Code)
		}
	}
	if got := hh.uiRequests(); len(got) != 0 {
		t.Fatalf("cross-site requests reached the UI: %v", got)
	}

	allowed := []struct {
		name   string
		method string
		header map[string]string
	}{
		{"the UI's own page", "POST", map[string]string{"Origin": "http://example.com", "Sec-Fetch-Site": "same-origin"}},
		{"curl (no browser headers)", "POST", nil},
		{"a cross-site GET (reads change nothing)", "GET", map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}},
	}
	for _, tt := range allowed {
		// httptest's requests are for host example.com.
		rec := hh.do(tt.method, pause, "192.0.2.10:4000", testUser, testPass, tt.header)
		if rec.Code != http.StatusOK {
			t.Errorf("%s: %s = %d, want 200", tt.name, tt.method, rec.Code)
		}
	}
	if got := hh.uiRequests(); len(got) != len(allowed) {
		t.Fatalf("UI served %v, want the %d allowed requests", got, len(allowed))
	}
}

// TestFramesRefused: every answer tells browsers not to show it in a
// frame, so that another site cannot overlay the UI's buttons.
func TestFramesRefused(t *testing.T) {
	t.Parallel()
	hh := newHardened(t, nil)
	for _, c := range []struct{ path, user, pass string }{
		{"/monitoring/", testUser, testPass},
		{"/monitoring/api/queues", testUser, testPass},
		{"/monitoring/", "", ""},
		{"/healthz", "", ""},
		{"/", "", ""},
	} {
		rec := hh.do("GET", c.path, "192.0.2.10:4000", c.user, c.pass, nil)
		if got := rec.Header().Get("X-Frame-Options"); got != "DENY" {
			t.Errorf("GET %s (%d): X-Frame-Options = %q, want DENY", c.path, rec.Code, got)
		}
		if got := rec.Header().Get("Content-Security-Policy"); !strings.Contains(got, "frame-ancestors 'none'") {
			t.Errorf("GET %s (%d): Content-Security-Policy = %q, want frame-ancestors 'none'", c.path, rec.Code, got)
		}
	}
}

// TestPasswordGuessingThrottled: 2,000 wrong guesses from one client may
// not all be checked. Past a short burst they are refused with 429 without
// being checked (so the right password is refused too while it lasts),
// every one is counted, the log says so a bounded number of times and never
// holds a password tried, and the client's budget comes back with time.
func TestPasswordGuessingThrottled(t *testing.T) {
	t.Parallel()
	hh := newHardened(t, nil)
	const guesses = 2000
	const client = "198.51.100.7:5555"
	codes := map[int]int{}
	for i := range guesses {
		rec := hh.do("GET", "/monitoring/", client, testUser, fmt.Sprintf("guess-%04d", i), nil)
		codes[rec.Code]++
	}
	if codes[http.StatusUnauthorized] > ClientFailureBurst {
		t.Errorf("%d of %d wrong guesses from one client were checked (401), want at most %d: %v",
			codes[http.StatusUnauthorized], guesses, ClientFailureBurst, codes)
	}
	if codes[http.StatusTooManyRequests] < guesses-ClientFailureBurst {
		t.Errorf("codes = %v, want the rest refused with 429", codes)
	}
	rec := hh.do("GET", "/monitoring/", client, testUser, testPass, nil)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Errorf("right password while throttled = %d (Retry-After %q), want 429 with Retry-After: a check now would tell a guesser when it is right",
			rec.Code, rec.Header().Get("Retry-After"))
	}
	// Another client is not held up by this one's guesses.
	if rec := hh.do("GET", "/monitoring/", "203.0.113.9:1", testUser, testPass, nil); rec.Code != http.StatusOK {
		t.Errorf("another client with the right password = %d, want 200", rec.Code)
	}

	got := authFailures(t, hh.reg, "refused") + authFailures(t, hh.reg, "throttled")
	if got != guesses+1 {
		t.Errorf("smsq_ui_auth_failures_total = %v, want %d (every wrong guess and the throttled right one)", got, guesses+1)
	}
	logs := hh.logs.String()
	lines := strings.Count(logs, "\n")
	if lines == 0 || lines > 5 {
		t.Errorf("%d log lines for %d refused logins, want a few (rate-limited):\n%s", lines, guesses, logs)
	}
	if !strings.Contains(logs, "198.51.100.7") {
		t.Errorf("log does not name the client:\n%s", logs)
	}
	if strings.Contains(logs, "guess-") || strings.Contains(logs, testPass) {
		t.Errorf("log holds a password tried:\n%s", logs)
	}

	// The budget refills: one more check every ClientFailureEvery.
	hh.clock.Advance(ClientFailureEvery + time.Millisecond)
	if rec := hh.do("GET", "/monitoring/", client, testUser, testPass, nil); rec.Code != http.StatusOK {
		t.Errorf("right password after %v = %d, want 200", ClientFailureEvery, rec.Code)
	}
	// And a later summary line counts what was suppressed.
	hh.clock.Advance(time.Minute)
	hh.do("GET", "/monitoring/", client, testUser, "again", nil)
	if logs := hh.logs.String(); !strings.Contains(logs, `"failures":`) {
		t.Errorf("no summary with the count of failures:\n%s", logs)
	}
}

// TestPasswordGuessingThrottledGlobally: guesses spread over many clients
// (an IPv6 prefix, a botnet) are bounded by a budget shared by all.
func TestPasswordGuessingThrottledGlobally(t *testing.T) {
	t.Parallel()
	hh := newHardened(t, nil)
	checked := 0
	for i := range 2000 {
		remote := fmt.Sprintf("10.%d.%d.%d:1000", i/65536, i/256%256, i%256)
		if rec := hh.do("GET", "/monitoring/", remote, testUser, "wrong", nil); rec.Code == http.StatusUnauthorized {
			checked++
		}
	}
	if checked > GlobalFailureBurst {
		t.Errorf("%d wrong guesses from 2,000 clients were checked, want at most %d", checked, GlobalFailureBurst)
	}
	// One IPv6 /64 is one client: its addresses are free to take.
	v6checked := 0
	for i := range 100 {
		remote := fmt.Sprintf("[2001:db8:1:2::%x]:443", i+1)
		if rec := hh.do("GET", "/monitoring/", remote, testUser, "wrong", nil); rec.Code == http.StatusUnauthorized {
			v6checked++
		}
	}
	if v6checked > ClientFailureBurst {
		t.Errorf("%d wrong guesses from one IPv6 /64 were checked, want at most %d", v6checked, ClientFailureBurst)
	}
}

// TestGuessBudgetIgnoresForwardedHeaders: the headers that name a client
// are the client's to write, so a guesser that puts a new address in them
// at every request still spends one budget, its connection's.
func TestGuessBudgetIgnoresForwardedHeaders(t *testing.T) {
	t.Parallel()
	hh := newHardened(t, nil)
	checked := 0
	for i := range 200 {
		spoof := fmt.Sprintf("10.9.%d.%d", i/256, i%256)
		header := map[string]string{"X-Forwarded-For": spoof, "X-Real-Ip": spoof, "Forwarded": "for=" + spoof,
			"True-Client-Ip": spoof, "Cf-Connecting-Ip": spoof}
		if rec := hh.do("GET", "/monitoring/", "198.51.100.20:4000", testUser, "wrong", header); rec.Code == http.StatusUnauthorized {
			checked++
		}
	}
	if checked > ClientFailureBurst {
		t.Errorf("%d wrong guesses with forged client headers were checked, want at most %d", checked, ClientFailureBurst)
	}
}

// TestSharedBudgetLocksEveryoneOut holds the price of the shared budget
// that the README states: a guesser with a few addresses that sends one
// wrong password a second keeps every client, the operator with the right
// password too, at 429.
func TestSharedBudgetLocksEveryoneOut(t *testing.T) {
	t.Parallel()
	hh := newHardened(t, nil)
	guesser := func(i int) string { return fmt.Sprintf("[2001:db8:%x::1]:1000", i%8) }
	for i := range GlobalFailureBurst {
		hh.do("GET", "/monitoring/", guesser(i), testUser, "wrong", nil)
	}
	for i := range 120 {
		hh.clock.Advance(GlobalFailureEvery)
		hh.do("GET", "/monitoring/", guesser(i), testUser, "wrong", nil)
		if rec := hh.do("GET", "/monitoring/", "192.0.2.50:1", testUser, testPass, nil); rec.Code != http.StatusTooManyRequests {
			t.Fatalf("second %d: operator with the right password = %d, want 429 while the guesser keeps the shared budget empty", i+1, rec.Code)
		}
	}
	hh.clock.Advance(GlobalFailureEvery)
	if rec := hh.do("GET", "/monitoring/", "192.0.2.50:1", testUser, testPass, nil); rec.Code != http.StatusOK {
		t.Fatalf("operator once the guesser stops = %d, want 200", rec.Code)
	}
}

// TestRequestsWithoutCredentialsCostNothing: a browser's first request
// carries no credentials; it is challenged, not counted as a guess.
func TestRequestsWithoutCredentialsCostNothing(t *testing.T) {
	t.Parallel()
	hh := newHardened(t, nil)
	for range 100 {
		if rec := hh.do("GET", "/monitoring/", "192.0.2.1:1", "", "", nil); rec.Code != http.StatusUnauthorized {
			t.Fatalf("no credentials = %d, want 401", rec.Code)
		}
	}
	if rec := hh.do("GET", "/monitoring/", "192.0.2.1:1", testUser, testPass, nil); rec.Code != http.StatusOK {
		t.Fatalf("right password after 100 unauthenticated requests = %d, want 200", rec.Code)
	}
	if got := authFailures(t, hh.reg, "refused"); got != 0 {
		t.Fatalf("refused logins = %v, want 0", got)
	}
}

// TestReadyzHidesDetails: anyone can ask /readyz, so its answer says only
// whether the worker is ready; the reason, which names internal addresses,
// goes to the log.
func TestReadyzHidesDetails(t *testing.T) {
	t.Parallel()
	reason := errors.New("redis: dial tcp 10.20.30.40:6379: connect: connection refused")
	hh := newHardened(t, func(context.Context) error { return reason })
	for range 3 {
		rec := hh.do("GET", "/readyz", "192.0.2.10:4000", "", "", nil)
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("/readyz = %d, want 503", rec.Code)
		}
		if body := rec.Body.String(); strings.Contains(body, "10.20.30.40") || strings.Contains(body, "6379") || strings.Contains(body, "redis") {
			t.Fatalf("/readyz answers %q: the reason is for the log, not for anyone who asks", body)
		}
	}
	logs := hh.logs.String()
	if !strings.Contains(logs, "10.20.30.40:6379") {
		t.Fatalf("the reason is not logged:\n%s", logs)
	}
	if n := strings.Count(logs, "not ready"); n != 1 {
		t.Fatalf("%d log lines for 3 probes in a row, want 1 (rate-limited):\n%s", n, logs)
	}
}

// authFailures returns the count of refused logins with the given result.
func authFailures(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "smsq_ui_auth_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no smsq_ui_auth_failures_total{result=%q} in the registry", result)
	return 0
}

// TestLimitPerClient: one client may hold only so many connections; past
// that its new ones are closed at once, another client's are served, and a
// closed connection gives its place back.
func TestLimitPerClient(t *testing.T) {
	t.Parallel()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := LimitPerClient(inner, 2)
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	addr := inner.Addr().String()
	dialFrom := func(src string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	closedByServer := func(c net.Conn) bool {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
	}
	waitAccepted := func(n int) []net.Conn {
		t.Helper()
		var got []net.Conn
		for range n {
			select {
			case c := <-accepted:
				got = append(got, c)
			case <-time.After(2 * time.Second):
				t.Fatalf("accepted %d connections, want %d", len(got), n)
			}
		}
		return got
	}

	a1, a2 := dialFrom("127.0.0.1"), dialFrom("127.0.0.1")
	held := waitAccepted(2)
	a3 := dialFrom("127.0.0.1")
	if !closedByServer(a3) {
		t.Fatal("a third connection from one client was kept, want it closed at once")
	}
	if closedByServer(a1) || closedByServer(a2) {
		t.Fatal("the client's first two connections were closed")
	}
	dialFrom("127.0.0.2")
	waitAccepted(1)
	held[0].Close()
	dialFrom("127.0.0.1")
	waitAccepted(1)
}

// A refused login's log line names the path it asked for, masked: a UI
// path can hold a task ID or a queue name with a phone number in it.
func TestRefusedLoginLogMasksThePath(t *testing.T) {
	t.Parallel()
	hh := newHardened(t, nil)
	rec := hh.do("GET", "/monitoring/api/queues/default/tasks/login_13800138000_1", "198.51.100.8:5555", testUser, "wrong", nil)
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("wrong password = %d, want 401", rec.Code)
	}
	logs := hh.logs.String()
	if !strings.Contains(logs, "/monitoring/api/queues/default/tasks/") {
		t.Fatalf("log does not name the path:\n%s", logs)
	}
	if strings.Contains(logs, "13800138000") {
		t.Fatalf("log holds a full phone number:\n%s", logs)
	}
}

// TestReadyMetricFollowsTheCheck: smsq_ready is /readyz's answer, checked
// at each scrape, so that an alert sees a worker that cannot take work.
func TestReadyMetricFollowsTheCheck(t *testing.T) {
	var down atomic.Bool
	hh := newHardened(t, func(context.Context) error {
		if down.Load() {
			return errors.New("redis: connection refused")
		}
		return nil
	})
	ready := func() float64 {
		t.Helper()
		fams, err := hh.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() == "smsq_ready" {
				return f.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no smsq_ready")
		return -1
	}
	if got := ready(); got != 1 {
		t.Fatalf("smsq_ready = %v while ready, want 1", got)
	}
	down.Store(true)
	if got, code := ready(), hh.do("GET", "/readyz", "192.0.2.1:1", "", "", nil).Code; got != 0 || code != http.StatusServiceUnavailable {
		t.Fatalf("smsq_ready = %v and /readyz %d while Redis is down, want 0 and 503", got, code)
	}
	down.Store(false)
	if got := ready(); got != 1 {
		t.Fatalf("smsq_ready = %v once ready again, want 1", got)
	}
}
