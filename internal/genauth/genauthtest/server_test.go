package genauthtest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// call is one raw request to the fake.
type call struct {
	method  string
	path    string
	ctype   string
	header  map[string]string
	body    string
	noAppID bool
}

// reply is what the fake answered.
type reply struct {
	HTTPStatus int
	StatusCode int    `json:"statusCode"`
	Message    string `json:"message"`
	APICode    int    `json:"apiCode"`
	RequestID  string `json:"requestId"`
	RetryAfter string
}

func newTestServer(t *testing.T, opts Options) *Server {
	t.Helper()
	s := NewServer(opts)
	t.Cleanup(s.Close)
	return s
}

// do makes the call and fails the test on a transport error. It must run
// on the test's goroutine; other goroutines use send.
func do(t *testing.T, s *Server, c call) reply {
	t.Helper()
	r, err := send(s, c)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	return r
}

func send(s *Server, c call) (reply, error) {
	if c.method == "" {
		c.method = http.MethodPost
	}
	if c.path == "" {
		c.path = Path
	}
	if c.ctype == "" {
		c.ctype = "application/json"
	}
	req, err := http.NewRequest(c.method, s.URL()+c.path, strings.NewReader(c.body))
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("Content-Type", c.ctype)
	if !c.noAppID {
		req.Header.Set("x-genauth-app-id", s.AppID())
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r reply
	if err := json.Unmarshal(b, &r); err != nil {
		r.Message = string(b)
	}
	r.HTTPStatus = resp.StatusCode
	r.RetryAfter = resp.Header.Get("Retry-After")
	return r, nil
}

func body(channel, phone, cc string) string {
	m := map[string]string{"channel": channel, "phoneNumber": phone}
	if cc != "" {
		m["phoneCountryCode"] = cc
	}
	b, _ := json.Marshal(m)
	return string(b)
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestValidation(t *testing.T) {
	t.Parallel()
	ok := body("CHANNEL_LOGIN", "13800138000", "")
	tests := []struct {
		name       string
		c          call
		wantHTTP   int
		wantStatus int
	}{
		{"valid", call{body: ok}, 200, 200},
		{"valid with country code and lang", call{body: body("CHANNEL_LOGIN", "5551234", "+1"), header: map[string]string{"x-genauth-lang": "en-US"}}, 200, 200},
		{"content type with charset", call{body: ok, ctype: "application/json; charset=utf-8"}, 200, 200},
		{"GET", call{method: http.MethodGet}, 405, 405},
		{"wrong path", call{path: "/api/v3/send-email", body: ok}, 404, 404},
		{"form content type", call{body: ok, ctype: "application/x-www-form-urlencoded"}, 200, 400},
		{"missing app id", call{body: ok, noAppID: true}, 200, 404},
		{"wrong app id", call{body: ok, header: map[string]string{"x-genauth-app-id": "other"}}, 200, 404},
		{"x-authing- prefix", call{body: ok, noAppID: true, header: map[string]string{"x-authing-app-id": DefaultAppID}}, 200, 200},
		{"both prefixes", call{body: ok, header: map[string]string{"x-authing-app-id": DefaultAppID, "x-authing-lang": "en-US", "x-genauth-lang": "en-US"}}, 200, 200},
		{"prefixes disagree", call{body: ok, header: map[string]string{"x-authing-app-id": "other"}}, 200, 404},
		{"bad x-authing- lang", call{body: ok, header: map[string]string{"x-authing-lang": "fr-FR"}}, 200, 400},
		{"bad lang", call{body: ok, header: map[string]string{"x-genauth-lang": "fr-FR"}}, 200, 400},
		{"not json", call{body: "channel=CHANNEL_LOGIN"}, 200, 400},
		{"unknown field", call{body: `{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000","code":"1"}`}, 200, 400},
		{"trailing data", call{body: ok + ok}, 200, 400},
		{"number phone", call{body: `{"channel":"CHANNEL_LOGIN","phoneNumber":13800138000}`}, 200, 400},
		{"no channel", call{body: `{"phoneNumber":"13800138000"}`}, 200, 400},
		{"bad channel", call{body: body("CHANNEL_LOGOUT", "13800138000", "")}, 200, 400},
		{"lower-case channel", call{body: body("channel_login", "13800138000", "")}, 200, 400},
		{"no phone", call{body: `{"channel":"CHANNEL_LOGIN"}`}, 200, 400},
		{"plus phone", call{body: body("CHANNEL_LOGIN", "+8613800138000", "")}, 200, 400},
		{"short phone", call{body: body("CHANNEL_LOGIN", "1234", "")}, 200, 400},
		{"long phone", call{body: body("CHANNEL_LOGIN", "1234567890123456", "")}, 200, 400},
		{"phone with dash", call{body: body("CHANNEL_LOGIN", "138-0013-8000", "")}, 200, 400},
		{"country code without plus", call{body: body("CHANNEL_LOGIN", "13800138000", "86")}, 200, 400},
		{"country code zero", call{body: body("CHANNEL_LOGIN", "13800138000", "+0")}, 200, 400},
		{"country code too long", call{body: body("CHANNEL_LOGIN", "13800138000", "+12345")}, 200, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newTestServer(t, Options{})
			r := do(t, s, tt.c)
			if r.HTTPStatus != tt.wantHTTP || r.StatusCode != tt.wantStatus {
				t.Fatalf("answer HTTP %d statusCode %d (%q), want HTTP %d statusCode %d",
					r.HTTPStatus, r.StatusCode, r.Message, tt.wantHTTP, tt.wantStatus)
			}
			if !uuidRE.MatchString(r.RequestID) || r.Message == "" {
				t.Fatalf("answer = %+v, want a message and a UUID request id", r)
			}
			reqs := s.Requests()
			if len(reqs) != 1 || reqs[0].Answer != tt.wantStatus || reqs[0].Sent != (tt.wantStatus == 200) {
				t.Fatalf("Requests() = %+v, want one answered %d", reqs, tt.wantStatus)
			}
		})
	}
}

// officialHeaderSets are the headers GenAuth's official SDKs put on a
// send-sms call, read from their public source: a fake that refused one
// would make smsq's tests pass against a GenAuth no SDK talks to.
var officialHeaderSets = []struct {
	name   string
	prefix string // the prefix of its app-id header
	header map[string]string
}{
	{"Go SDK v3.0.19 (fasthttp)", "x-authing-", map[string]string{
		"Content-Type":          "application/json;charset=UTF-8",
		"User-Agent":            "fasthttp",
		"x-authing-sdk-version": "authing-golang-sdk:3.0.0",
		"x-authing-app-id":      DefaultAppID,
	}},
	{"Java SDK v3 (OkHttp)", "x-authing-", map[string]string{
		"Content-Type":           "application/json; charset=utf-8",
		"User-Agent":             "okhttp/4.9.3",
		"x-authing-request-from": "sdk",
		"x-authing-sdk-version":  "java:3.0.0",
		"x-authing-app-id":       DefaultAppID,
	}},
	{"Authing Python SDK (requests)", "x-authing-", map[string]string{
		"Content-Type":           "application/json",
		"User-Agent":             "python-requests/2.31.0",
		"x-authing-sdk-version":  "python:5.0.0",
		"x-authing-request-from": "sdk",
		"x-authing-app-id":       DefaultAppID,
		"x-authing-lang":         "en-US",
	}},
	{"GenAuth Node SDK (axios)", "x-genauth-", map[string]string{
		"Content-Type":           "application/json",
		"Accept":                 "application/json, text/plain, */*",
		"User-Agent":             "axios/1.6.8",
		"x-genauth-app-id":       DefaultAppID,
		"x-genauth-request-from": "sdk",
	}},
	{"GenAuth Python SDK (requests)", "x-genauth-", map[string]string{
		"Content-Type":           "application/json",
		"User-Agent":             "python-requests/2.31.0",
		"x-genauth-sdk-version":  "python:1.0.0",
		"x-genauth-request-from": "sdk",
		"x-genauth-app-id":       DefaultAppID,
		"x-genauth-lang":         "zh-CN",
	}},
}

// TestOfficialSDKHeaders replays each official SDK's header set against
// the fake: each is a send. A fake set to one prefix (a host that reads
// only that one) still refuses the other.
func TestOfficialSDKHeaders(t *testing.T) {
	t.Parallel()
	ok := body("CHANNEL_LOGIN", "13800138000", "+86")
	for _, hs := range officialHeaderSets {
		t.Run(hs.name, func(t *testing.T) {
			t.Parallel()
			s := newTestServer(t, Options{})
			r := do(t, s, call{body: ok, noAppID: true, ctype: hs.header["Content-Type"], header: hs.header})
			if r.HTTPStatus != 200 || r.StatusCode != 200 {
				t.Fatalf("answer HTTP %d statusCode %d (%s), want a send", r.HTTPStatus, r.StatusCode, r.Message)
			}
			if got := s.Sent(); len(got) != 1 || got[0].AppID != DefaultAppID {
				t.Fatalf("Sent() = %+v, want one send for app %s", got, DefaultAppID)
			}
			other := PrefixAuthing
			if hs.prefix == PrefixAuthing {
				other = PrefixGenAuth
			}
			strict := newTestServer(t, Options{HeaderPrefix: other})
			if r := do(t, strict, call{body: ok, noAppID: true, ctype: hs.header["Content-Type"], header: hs.header}); r.StatusCode != 404 {
				t.Fatalf("on a fake reading only %sapp-id: statusCode %d, want 404", other, r.StatusCode)
			}
		})
	}
}

func TestHeaderPrefixOption(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Options{AppID: "a1", HeaderPrefix: "x-authing-"})
	ok := body("CHANNEL_LOGIN", "13800138000", "")
	if r := do(t, s, call{body: ok}); r.StatusCode != 404 {
		t.Fatalf("x-genauth-app-id on an x-authing- fake: statusCode %d, want 404", r.StatusCode)
	}
	r := do(t, s, call{body: ok, noAppID: true, header: map[string]string{"x-authing-app-id": "a1", "x-authing-lang": "zh-TW"}})
	if r.StatusCode != 200 {
		t.Fatalf("x-authing-app-id: statusCode %d (%s), want 200", r.StatusCode, r.Message)
	}
	if got := s.Requests()[1].Lang; got != "zh-TW" {
		t.Fatalf("recorded Lang = %q, want zh-TW", got)
	}
}

// clock is a settable clock for the one-minute rule.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestOneMinuteRule(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newTestServer(t, Options{Now: clk.Now})
	send := func(channel, phone, cc string) int {
		t.Helper()
		return do(t, s, call{body: body(channel, phone, cc)}).StatusCode
	}
	steps := []struct {
		name    string
		advance time.Duration
		channel string
		phone   string
		cc      string
		want    int
	}{
		{"first", 0, "CHANNEL_LOGIN", "13800138000", "", 200},
		{"again at once", 0, "CHANNEL_LOGIN", "13800138000", "", 422},
		{"explicit +86 is the same number", 0, "CHANNEL_LOGIN", "13800138000", "+86", 422},
		{"other channel", 0, "CHANNEL_REGISTER", "13800138000", "", 200},
		{"other country", 0, "CHANNEL_LOGIN", "13800138000", "+852", 200},
		{"other phone", 0, "CHANNEL_LOGIN", "13800138001", "", 200},
		{"59s later", 59 * time.Second, "CHANNEL_LOGIN", "13800138000", "", 422},
		{"60s later", time.Second, "CHANNEL_LOGIN", "13800138000", "", 200},
		{"window restarts at the send", 30 * time.Second, "CHANNEL_LOGIN", "13800138000", "", 422},
	}
	for _, st := range steps {
		clk.Advance(st.advance)
		if got := send(st.channel, st.phone, st.cc); got != st.want {
			t.Fatalf("%s: statusCode %d, want %d", st.name, got, st.want)
		}
	}
	r := do(t, s, call{body: body("CHANNEL_LOGIN", "13800138000", "")})
	if r.APICode != APICodeTooFrequent || !strings.Contains(strings.ToLower(r.Message), "too frequently") {
		t.Fatalf("422 answer = %+v, want apiCode %d and a too-frequently message", r, APICodeTooFrequent)
	}
	if got, want := s.CallsFor("", "13800138000", "CHANNEL_LOGIN"), 7; got != want {
		t.Fatalf("CallsFor(+86 login) = %d, want %d", got, want)
	}
	if got, want := len(s.Sent()), 5; got != want {
		t.Fatalf("len(Sent()) = %d, want %d", got, want)
	}

	s.Reset()
	if s.Calls() != 0 || send("CHANNEL_LOGIN", "13800138000", "") != 200 {
		t.Fatalf("after Reset: calls %d, want 0 and a fresh window", s.Calls())
	}
}

func TestFaultQueue(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Options{})
	s.Inject(Fault{Kind: FaultBodyStatus, StatusCode: 601, Count: 2})
	s.Inject(Fault{Kind: FaultHTTPStatus, StatusCode: 503, RetryAfter: 1200 * time.Millisecond})
	s.Inject(Fault{Kind: FaultBodyStatus, StatusCode: 429, RetryAfter: 3 * time.Second})
	s.Inject(Fault{Kind: FaultLatency, Latency: time.Millisecond})
	want := []struct {
		http, status int
		retryAfter   string
		fault        string
	}{
		{200, 601, "", "body-status"},
		{200, 601, "", "body-status"},
		{503, 0, "2", "http-status"},
		{200, 429, "3", "body-status"},
		{200, 200, "", "latency"},
		{200, 422, "", ""},
	}
	for i, w := range want {
		r := do(t, s, call{body: body("CHANNEL_LOGIN", "13800138000", "")})
		if r.HTTPStatus != w.http || r.StatusCode != w.status || r.RetryAfter != w.retryAfter {
			t.Fatalf("call %d: HTTP %d statusCode %d Retry-After %q, want %d %d %q",
				i, r.HTTPStatus, r.StatusCode, r.RetryAfter, w.http, w.status, w.retryAfter)
		}
		if got := s.Requests()[i].Fault; got != w.fault {
			t.Fatalf("call %d: recorded fault %q, want %q", i, got, w.fault)
		}
	}
	if r := do(t, s, call{body: body("CHANNEL_LOGIN", "13800138000", "")}); r.HTTPStatus != 200 {
		t.Fatalf("gateway answer HTTP %d, want 200", r.HTTPStatus)
	}

	s.Inject(Fault{Kind: FaultBodyStatus, StatusCode: 500, Count: -1})
	s.Inject(Fault{Kind: FaultBodyStatus, StatusCode: 602}) // never reached while the -1 fault lasts
	for i := range 5 {
		if r := do(t, s, call{body: body("CHANNEL_LOGIN", "13900139000", "")}); r.StatusCode != 500 {
			t.Fatalf("unlimited fault, call %d: statusCode %d, want 500", i, r.StatusCode)
		}
	}
	s.ClearFaults()
	if r := do(t, s, call{body: body("CHANNEL_LOGIN", "13900139000", "")}); r.StatusCode != 200 {
		t.Fatalf("after ClearFaults: statusCode %d, want 200", r.StatusCode)
	}
}

func TestFaultDropAndMalformed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		fault    Fault
		wantSent bool
		answer   int
	}{
		{"drop", Fault{Kind: FaultDrop}, false, 0},
		{"drop after send", Fault{Kind: FaultDrop, SendBeforeFailing: true}, true, 0},
		{"malformed", Fault{Kind: FaultMalformed}, false, 200},
		{"malformed after send", Fault{Kind: FaultMalformed, SendBeforeFailing: true}, true, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newTestServer(t, Options{})
			s.Inject(tt.fault)
			req, _ := http.NewRequest(http.MethodPost, s.URL()+Path, strings.NewReader(body("CHANNEL_LOGIN", "13800138000", "")))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("x-genauth-app-id", s.AppID())
			resp, err := http.DefaultClient.Do(req)
			if tt.fault.Kind == FaultDrop {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("dropped call answered HTTP %d, want a transport error", resp.StatusCode)
				}
			} else {
				if err != nil {
					t.Fatalf("malformed call: %v", err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if json.Valid(b) {
					t.Fatalf("malformed body %q is valid JSON", b)
				}
			}
			r := s.Requests()[0]
			if r.Sent != tt.wantSent || r.Answer != tt.answer || len(s.Sent()) != map[bool]int{true: 1}[tt.wantSent] {
				t.Fatalf("recorded %+v, want Sent %v Answer %d", r, tt.wantSent, tt.answer)
			}
			// The window counts only real sends.
			want := 200
			if tt.wantSent {
				want = 422
			}
			if got := do(t, s, call{body: body("CHANNEL_LOGIN", "13800138000", "")}).StatusCode; got != want {
				t.Fatalf("next send: statusCode %d, want %d", got, want)
			}
		})
	}
}

func TestHoldRelease(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Options{})
	s.Hold()
	done := make(chan reply, 2)
	for _, phone := range []string{"13800138000", "13800138001"} {
		go func() {
			r, err := send(s, call{body: body("CHANNEL_LOGIN", phone, "")})
			if err != nil {
				r.Message = err.Error()
			}
			done <- r
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.WaitForCalls(ctx, 2); err != nil {
		t.Fatalf("WaitForCalls: %v", err)
	}
	select {
	case r := <-done:
		t.Fatalf("held call answered %+v", r)
	default:
	}
	if n := len(s.Sent()); n != 0 {
		t.Fatalf("%d sends while held, want 0", n)
	}
	s.Release()
	for range 2 {
		select {
		case r := <-done:
			if r.StatusCode != 200 {
				t.Fatalf("released call: statusCode %d (%s), want 200", r.StatusCode, r.Message)
			}
		case <-ctx.Done():
			t.Fatal("released calls did not finish")
		}
	}
	if r := do(t, s, call{body: body("CHANNEL_LOGIN", "13800138002", "")}); r.StatusCode != 200 {
		t.Fatalf("after Release: statusCode %d, want 200", r.StatusCode)
	}
}

func TestHoldClientGoesAway(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Options{})
	s.Hold()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+Path, strings.NewReader(body("CHANNEL_LOGIN", "13800138000", "")))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("x-genauth-app-id", s.AppID())
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if err := s.WaitForCalls(wctx, 1); err != nil {
		t.Fatalf("WaitForCalls: %v", err)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client error = %v, want context.Canceled", err)
	}
	// The server notices the closed connection on its own time.
	for s.InFlight() != 0 {
		select {
		case <-wctx.Done():
			t.Fatal("server never noticed the client went away")
		case <-time.After(time.Millisecond):
		}
	}
	s.Release()
	if r := s.Requests()[0]; r.Sent || r.Answer != 0 {
		t.Fatalf("abandoned held call recorded %+v, want unanswered and not sent", r)
	}
}

func TestCloseReleasesHeld(t *testing.T) {
	t.Parallel()
	s := NewServer(Options{Latency: time.Hour})
	errc := make(chan error, 1)
	go func() {
		resp, err := http.Post(s.URL()+Path, "application/json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.WaitForCalls(ctx, 1); err != nil {
		t.Fatalf("WaitForCalls: %v", err)
	}
	s.Close()
	select {
	case <-errc:
	case <-ctx.Done():
		t.Fatal("Close left the slow call running")
	}
}

func TestWaitForCallsDeadline(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.WaitForCalls(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitForCalls = %v, want DeadlineExceeded", err)
	}
}

func TestListenAndHandler(t *testing.T) {
	t.Parallel()
	s, err := Listen("127.0.0.1:0", Options{AppID: "sb"})
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") || s.AppID() != "sb" || s.Handler() == nil {
		t.Fatalf("URL %q AppID %q", s.URL(), s.AppID())
	}
	if r := do(t, s, call{body: body("CHANNEL_DELETE_ACCOUNT", "13800138000", "")}); r.StatusCode != 200 {
		t.Fatalf("statusCode %d, want 200", r.StatusCode)
	}
	if _, err := Listen(strings.TrimPrefix(s.URL(), "http://"), Options{}); err == nil {
		t.Fatal("Listen on a taken address succeeded")
	}
}

func TestConcurrentRace(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Options{})
	s.Inject(Fault{Kind: FaultBodyStatus, StatusCode: 500, Count: 10})
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 40 {
		wg.Go(func() {
			if _, err := send(s, call{body: body("CHANNEL_LOGIN", "13800138000", "")}); err != nil {
				errs <- err
			}
		})
		wg.Go(func() { _ = s.Requests(); _ = s.Sent(); s.SetLatency(0) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("call: %v", err)
	}
	answers := map[int]int{}
	for _, r := range s.Requests() {
		answers[r.Answer]++
	}
	if answers[500] != 10 || answers[200] != 1 || answers[422] != 29 {
		t.Fatalf("answers = %v, want 10×500, 1×200, 29×422", answers)
	}
}

// TestTooFrequentShapes checks each shape of the one-minute rule's
// refusal: the second send inside the window is refused as configured,
// with no Retry-After, and sends nothing.
func TestTooFrequentShapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		shape       TooFrequent
		wantStatus  int
		wantAPICode int
	}{
		{TooFrequent422, 422, APICodeTooFrequent},
		{TooFrequent429, 429, 0},
		{TooFrequent400, 400, APICodeTooFrequent400},
	}
	ok := body("CHANNEL_LOGIN", "13800138000", "")
	for _, tt := range tests {
		s := newTestServer(t, Options{TooFrequent: tt.shape})
		if r := do(t, s, call{body: ok}); r.StatusCode != 200 {
			t.Fatalf("shape %d: first send statusCode %d, want 200", tt.shape, r.StatusCode)
		}
		r := do(t, s, call{body: ok})
		if r.HTTPStatus != 200 || r.StatusCode != tt.wantStatus || r.APICode != tt.wantAPICode || r.RetryAfter != "" || !uuidRE.MatchString(r.RequestID) {
			t.Fatalf("shape %d: second send = %+v, want statusCode %d apiCode %d without Retry-After", tt.shape, r, tt.wantStatus, tt.wantAPICode)
		}
		if n := len(s.Sent()); n != 1 {
			t.Fatalf("shape %d: %d sends, want 1", tt.shape, n)
		}
	}
}
