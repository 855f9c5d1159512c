package genauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/genauth/genauthtest"
)

const (
	testPhone = "13800138000"
	testToken = "tok-very-secret-123"
)

// newFake starts a fake server closed at the end of the test.
func newFake(t *testing.T, opts genauthtest.Options) *genauthtest.Server {
	t.Helper()
	s := genauthtest.NewServer(opts)
	t.Cleanup(s.Close)
	return s
}

// newClient returns a client for srv, with cfg's other settings.
func newClient(t *testing.T, srv *genauthtest.Server, cfg genauth.Config) *genauth.Client {
	t.Helper()
	if cfg.AppHost == "" {
		cfg.AppHost = srv.URL()
	}
	if cfg.AppID == "" {
		cfg.AppID = srv.AppID()
	}
	c, err := genauth.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func login(phone string) genauth.SendSMSRequest {
	return genauth.SendSMSRequest{Channel: genauth.ChannelLogin, PhoneNumber: phone}
}

// asError returns err as an *Error or fails the test.
func asError(t *testing.T, err error) *genauth.Error {
	t.Helper()
	var e *genauth.Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v (%T), want *genauth.Error", err, err)
	}
	return e
}

// capture is an httptest handler that records the last request and answers
// success.
type capture struct {
	mu     sync.Mutex
	method string
	path   string
	header http.Header
	body   []byte
}

func (c *capture) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	c.method, c.path, c.header, c.body = r.Method, r.URL.Path, r.Header.Clone(), b
	c.mu.Unlock()
	io.WriteString(w, `{"statusCode":200,"message":"Operation successful","requestId":"934108e5-9fbf-4d24-8da1-c330328abd6c"}`)
}

// dialTo returns an HTTP client that connects every host name to addr, so a
// test can use a real-looking AppHost against a local server.
func dialTo(addr string) *http.Client {
	d := &net.Dialer{Timeout: time.Second}
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}}
}

func TestSendSMSRequestShape(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		appHost    string
		prefix     string
		cfgLang    string
		req        genauth.SendSMSRequest
		wantPrefix []string
		wantLang   string
		wantBody   string
	}{
		{
			name: "genauth host, minimal", appHost: "http://example.genauth.ai",
			req:        genauth.SendSMSRequest{Channel: genauth.ChannelLogin, PhoneNumber: testPhone},
			wantPrefix: []string{"x-authing-", "x-genauth-"},
			wantBody:   `{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000"}`,
		},
		{
			name: "authing.cn host, everything set", appHost: "http://Example.Authing.CN", cfgLang: "zh-CN",
			req: genauth.SendSMSRequest{Channel: genauth.ChannelBindMFA, PhoneNumber: "5551234", PhoneCountryCode: "+1",
				ClientIP: "203.0.113.9", Lang: "en-US", AccessToken: testToken},
			wantPrefix: []string{"x-authing-", "x-genauth-"}, wantLang: "en-US",
			wantBody: `{"channel":"CHANNEL_BIND_MFA","phoneNumber":"5551234","phoneCountryCode":"+1"}`,
		},
		{
			name: "authing.co host, config lang", appHost: "http://tenant.authing.co:8080", cfgLang: "ja-JP",
			req:        genauth.SendSMSRequest{Channel: genauth.ChannelRegister, PhoneNumber: testPhone},
			wantPrefix: []string{"x-authing-", "x-genauth-"}, wantLang: "ja-JP",
			wantBody: `{"channel":"CHANNEL_REGISTER","phoneNumber":"13800138000"}`,
		},
		{
			name: "custom domain, config lang", appHost: "http://login.example.com", cfgLang: "zh-TW",
			req:        genauth.SendSMSRequest{Channel: genauth.ChannelLogin, PhoneNumber: testPhone},
			wantPrefix: []string{"x-authing-", "x-genauth-"}, wantLang: "zh-TW",
			wantBody: `{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000"}`,
		},
		{
			name: "explicit x-genauth- prefix", appHost: "http://example.authing.cn", prefix: "x-genauth-", cfgLang: "en-US",
			req:        genauth.SendSMSRequest{Channel: genauth.ChannelLogin, PhoneNumber: testPhone},
			wantPrefix: []string{"x-genauth-"}, wantLang: "en-US",
			wantBody: `{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000"}`,
		},
		{
			name: "explicit x-authing- prefix", appHost: "http://example.genauth.ai", prefix: "x-authing-",
			req:        genauth.SendSMSRequest{Channel: genauth.ChannelLogin, PhoneNumber: testPhone},
			wantPrefix: []string{"x-authing-"},
			wantBody:   `{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var cap capture
			ts := httptest.NewServer(&cap)
			t.Cleanup(ts.Close)
			c, err := genauth.New(genauth.Config{
				AppHost: tt.appHost, AppID: "app-1", HeaderPrefix: tt.prefix, Lang: tt.cfgLang,
				HTTPClient: dialTo(ts.Listener.Addr().String()),
			})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			resp, err := c.SendSMS(context.Background(), tt.req)
			if err != nil {
				t.Fatalf("SendSMS: %v", err)
			}
			if resp.StatusCode != 200 || resp.RequestID != "934108e5-9fbf-4d24-8da1-c330328abd6c" {
				t.Fatalf("SendSMS = %+v, want statusCode 200 with the request id", resp)
			}
			if cap.method != http.MethodPost || cap.path != "/api/v3/send-sms" {
				t.Fatalf("got %s %s, want POST /api/v3/send-sms", cap.method, cap.path)
			}
			if string(cap.body) != tt.wantBody {
				t.Fatalf("body = %s, want %s", cap.body, tt.wantBody)
			}
			h := cap.header
			wantHeaders := map[string]string{
				"Content-Type":  "application/json",
				"User-Agent":    "smsq",
				"X-Real-Ip":     tt.req.ClientIP,
				"Authorization": tt.req.AccessToken,
			}
			for _, p := range []string{"x-authing-", "x-genauth-"} {
				wantHeaders[p+"app-id"], wantHeaders[p+"lang"] = "", ""
				if slices.Contains(tt.wantPrefix, p) {
					wantHeaders[p+"app-id"], wantHeaders[p+"lang"] = "app-1", tt.wantLang
				}
			}
			for k, want := range wantHeaders {
				if got := h.Values(k); (want == "") != (len(got) == 0) || len(got) > 1 || (want != "" && got[0] != want) {
					t.Fatalf("header %s = %q, want %q", k, got, want)
				}
			}
			if _, ok := h["Authorization"]; ok != (tt.req.AccessToken != "") {
				t.Fatalf("authorization header present = %v, want %v", ok, tt.req.AccessToken != "")
			}
		})
	}
}

// TestDefaultHeadersEveryHost sends with the default configuration to fakes
// that read only one prefix each (hosts that know one brand) and to one that
// reads both: each sends, with the app id and language it was given.
func TestDefaultHeadersEveryHost(t *testing.T) {
	t.Parallel()
	for _, prefix := range []string{"", genauthtest.PrefixGenAuth, genauthtest.PrefixAuthing} {
		srv := newFake(t, genauthtest.Options{HeaderPrefix: prefix})
		c := newClient(t, srv, genauth.Config{Lang: "en-US"})
		if _, err := c.SendSMS(context.Background(), login(testPhone)); err != nil {
			t.Fatalf("fake reading %q: SendSMS: %v", prefix, err)
		}
		if got := srv.Sent(); len(got) != 1 || got[0].Lang != "en-US" {
			t.Fatalf("fake reading %q: sent %+v, want one send in en-US", prefix, got)
		}
		other := genauthtest.PrefixAuthing
		if prefix == other {
			other = genauthtest.PrefixGenAuth
		}
		if prefix == "" {
			continue
		}
		only := newClient(t, srv, genauth.Config{HeaderPrefix: other})
		var e *genauth.Error
		if _, err := only.SendSMS(context.Background(), login("13800138001")); !errors.As(err, &e) || e.StatusCode != 404 {
			t.Fatalf("client sending only %s to a fake reading %s: %v, want statusCode 404", other, prefix, err)
		}
	}
}

func TestSendSMSSuccessAgainstFake(t *testing.T) {
	t.Parallel()
	srv := newFake(t, genauthtest.Options{})
	c := newClient(t, srv, genauth.Config{Lang: "zh-CN"})
	resp, err := c.SendSMS(context.Background(), genauth.SendSMSRequest{
		Channel: genauth.ChannelLogin, PhoneNumber: testPhone, PhoneCountryCode: "+86",
		ClientIP: "2001:db8::1", AccessToken: testToken,
	})
	if err != nil {
		t.Fatalf("SendSMS: %v", err)
	}
	if got := (genauth.Classifier{}).Classify(resp, err); got != genauth.ClassSent {
		t.Fatalf("Classify = %v, want sent", got)
	}
	if len(resp.RequestID) != 36 || resp.HTTPStatus != 200 || resp.Message == "" {
		t.Fatalf("response = %+v, want HTTP 200, a message and a UUID request id", resp)
	}
	reqs := srv.Sent()
	if len(reqs) != 1 {
		t.Fatalf("fake sent %d, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Channel != "CHANNEL_LOGIN" || r.PhoneNumber != testPhone || r.PhoneCountryCode != "+86" ||
		r.Lang != "zh-CN" || r.RealIP != "2001:db8::1" || !r.HasAuthorization || r.AppID != srv.AppID() {
		t.Fatalf("fake received %+v", r)
	}
}

func TestSendSMSFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		opts       genauthtest.Options // AppID of the fake
		appID      string              // client's app id, default the fake's
		fault      *genauthtest.Fault
		req        genauth.SendSMSRequest
		first      bool // send the same request once before, successfully
		want       genauth.Error
		wantClass  genauth.Class
		wantBody   bool // Body must hold the start of the answer
		wantSentAt int  // how many sends the fake counts after the call
	}{
		{
			name: "400 invalid phone", req: login("12ab"),
			want: genauth.Error{HTTPStatus: 200, StatusCode: 400}, wantClass: genauth.ClassPermanent,
		},
		{
			name: "404 unknown app", appID: "other-app", req: login(testPhone),
			want: genauth.Error{HTTPStatus: 200, StatusCode: 404}, wantClass: genauth.ClassPermanent,
		},
		{
			name: "401 unauthorised", req: login(testPhone),
			fault: &genauthtest.Fault{Kind: genauthtest.FaultBodyStatus, StatusCode: 401},
			want:  genauth.Error{HTTPStatus: 200, StatusCode: 401}, wantClass: genauth.ClassPermanent,
		},
		{
			name: "402 quota", req: login(testPhone),
			fault: &genauthtest.Fault{Kind: genauthtest.FaultBodyStatus, StatusCode: 402, APICode: 12004},
			want:  genauth.Error{HTTPStatus: 200, StatusCode: 402, APICode: 12004}, wantClass: genauth.ClassPermanent,
		},
		{
			name: "403 forbidden", req: login(testPhone),
			fault: &genauthtest.Fault{Kind: genauthtest.FaultBodyStatus, StatusCode: 403},
			want:  genauth.Error{HTTPStatus: 200, StatusCode: 403}, wantClass: genauth.ClassPermanent,
		},
		{
			name: "422 one-minute rule", req: login(testPhone), first: true,
			want:      genauth.Error{HTTPStatus: 200, StatusCode: 422, APICode: genauthtest.APICodeTooFrequent},
			wantClass: genauth.ClassDuplicate, wantSentAt: 1,
		},
		{
			name: "429 with Retry-After", req: login(testPhone),
			fault: &genauthtest.Fault{Kind: genauthtest.FaultBodyStatus, StatusCode: 429, RetryAfter: 1500 * time.Millisecond},
			want:  genauth.Error{HTTPStatus: 200, StatusCode: 429, RetryAfter: 2 * time.Second}, wantClass: genauth.ClassThrottle,
		},
		{
			name: "500", req: login(testPhone),
			fault: &genauthtest.Fault{Kind: genauthtest.FaultBodyStatus, StatusCode: 500},
			want:  genauth.Error{HTTPStatus: 200, StatusCode: 500}, wantClass: genauth.ClassRetry,
		},
		{
			name: "601 provider failed", req: login(testPhone),
			fault: &genauthtest.Fault{Kind: genauthtest.FaultBodyStatus, StatusCode: 601},
			want:  genauth.Error{HTTPStatus: 200, StatusCode: 601}, wantClass: genauth.ClassRetry,
		},
		{
			name: "602 provider error", req: login(testPhone),
			fault: &genauthtest.Fault{Kind: genauthtest.FaultBodyStatus, StatusCode: 602},
			want:  genauth.Error{HTTPStatus: 200, StatusCode: 602}, wantClass: genauth.ClassRetry,
		},
		{
			name: "gateway 502", req: login(testPhone),
			fault: &genauthtest.Fault{Kind: genauthtest.FaultHTTPStatus, StatusCode: 502},
			want:  genauth.Error{HTTPStatus: 502}, wantClass: genauth.ClassUnknown, wantBody: true,
		},
		{
			name: "gateway 503 with Retry-After", req: login(testPhone),
			fault: &genauthtest.Fault{Kind: genauthtest.FaultHTTPStatus, StatusCode: 503, RetryAfter: 5 * time.Second},
			want:  genauth.Error{HTTPStatus: 503, RetryAfter: 5 * time.Second}, wantClass: genauth.ClassRetry, wantBody: true,
		},
		{
			name: "gateway 504", req: login(testPhone),
			fault: &genauthtest.Fault{Kind: genauthtest.FaultHTTPStatus, StatusCode: 504},
			want:  genauth.Error{HTTPStatus: 504}, wantClass: genauth.ClassUnknown, wantBody: true,
		},
		{
			name: "gateway 429", req: login(testPhone),
			fault: &genauthtest.Fault{Kind: genauthtest.FaultHTTPStatus, StatusCode: 429, RetryAfter: time.Second},
			want:  genauth.Error{HTTPStatus: 429, RetryAfter: time.Second}, wantClass: genauth.ClassThrottle, wantBody: true,
		},
		{
			name: "malformed JSON", req: login(testPhone),
			fault: &genauthtest.Fault{Kind: genauthtest.FaultMalformed},
			want:  genauth.Error{HTTPStatus: 200}, wantClass: genauth.ClassUnknown, wantBody: true,
		},
		{
			name: "malformed JSON after send", req: login(testPhone),
			fault: &genauthtest.Fault{Kind: genauthtest.FaultMalformed, SendBeforeFailing: true},
			want:  genauth.Error{HTTPStatus: 200}, wantClass: genauth.ClassUnknown, wantBody: true, wantSentAt: 1,
		},
		{
			name: "dropped connection", req: login(testPhone),
			fault: &genauthtest.Fault{Kind: genauthtest.FaultDrop},
			want:  genauth.Error{RequestWritten: true}, wantClass: genauth.ClassUnknown,
		},
		{
			name: "dropped connection after send", req: login(testPhone),
			fault: &genauthtest.Fault{Kind: genauthtest.FaultDrop, SendBeforeFailing: true},
			want:  genauth.Error{RequestWritten: true}, wantClass: genauth.ClassUnknown, wantSentAt: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newFake(t, tt.opts)
			c := newClient(t, srv, genauth.Config{AppID: tt.appID})
			ctx := context.Background()
			if tt.first {
				if _, err := c.SendSMS(ctx, tt.req); err != nil {
					t.Fatalf("first SendSMS: %v", err)
				}
			}
			if tt.fault != nil {
				srv.Inject(*tt.fault)
			}
			tt.req.AccessToken = testToken
			resp, err := c.SendSMS(ctx, tt.req)
			if resp != nil {
				t.Fatalf("SendSMS response = %+v, want nil", resp)
			}
			e := asError(t, err)
			got := genauth.Error{HTTPStatus: e.HTTPStatus, StatusCode: e.StatusCode, APICode: e.APICode,
				RetryAfter: e.RetryAfter, RequestWritten: e.RequestWritten}
			if got != tt.want {
				t.Fatalf("error fields = %+v, want %+v (error: %v)", got, tt.want, e)
			}
			if e.StatusCode != 0 && (e.Message == "" || len(e.RequestID) != 36) {
				t.Fatalf("error = %+v, want GenAuth's message and request id", e)
			}
			if (e.Body != "") != tt.wantBody {
				t.Fatalf("Body = %q, want set: %v", e.Body, tt.wantBody)
			}
			if (e.Err != nil) != tt.want.RequestWritten {
				t.Fatalf("Err = %v, want a transport error: %v", e.Err, tt.want.RequestWritten)
			}
			if cl := (genauth.Classifier{}).Classify(resp, err); cl != tt.wantClass {
				t.Fatalf("Classify = %v, want %v (error: %v)", cl, tt.wantClass, err)
			}
			if msg := err.Error(); strings.Contains(msg, testToken) || strings.Contains(msg, testPhone) {
				t.Fatalf("Error() = %q, leaks the token or phone", msg)
			}
			if n := len(srv.Sent()); n != tt.wantSentAt {
				t.Fatalf("fake counts %d sends, want %d", n, tt.wantSentAt)
			}
		})
	}
}

func TestSendSMSTimeoutAfterSend(t *testing.T) {
	t.Parallel()
	srv := newFake(t, genauthtest.Options{})
	srv.Inject(genauthtest.Fault{Kind: genauthtest.FaultTimeout, Latency: 10 * time.Second})
	c := newClient(t, srv, genauth.Config{Timeout: 200 * time.Millisecond})
	_, err := c.SendSMS(context.Background(), login(testPhone))
	e := asError(t, err)
	if !e.RequestWritten || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v (written %v), want a deadline after the request was written", err, e.RequestWritten)
	}
	if got := (genauth.Classifier{}).Classify(nil, err); got != genauth.ClassUnknown {
		t.Fatalf("Classify = %v, want unknown", got)
	}
	if n := len(srv.Sent()); n != 1 {
		t.Fatalf("fake counts %d sends, want 1", n)
	}
	// A timeout is reported as what it is, never as an answer GenAuth did
	// not give (an SDK's made-up statusCode 504 reads as "nothing sent").
	if e.StatusCode != 0 || e.HTTPStatus != 0 {
		t.Fatalf("timeout reported with statusCode %d, HTTP %d; want neither", e.StatusCode, e.HTTPStatus)
	}
}

// TestSendSMSDroppedConnectionOneRequest drops the connection after GenAuth
// sent, on a kept-alive connection of an earlier call: the case where an
// HTTP library re-sends a request that "failed" on a reused connection,
// which here would be a second SMS. The client makes one request per call.
func TestSendSMSDroppedConnectionOneRequest(t *testing.T) {
	t.Parallel()
	srv := newFake(t, genauthtest.Options{})
	c := newClient(t, srv, genauth.Config{})
	ctx := context.Background()
	if _, err := c.SendSMS(ctx, login("13800138001")); err != nil {
		t.Fatalf("warm-up SendSMS: %v", err)
	}
	for _, sendFirst := range []bool{false, true} {
		before := srv.Calls()
		srv.Inject(genauthtest.Fault{Kind: genauthtest.FaultDrop, SendBeforeFailing: sendFirst})
		phone := "1380013800" + map[bool]string{false: "2", true: "3"}[sendFirst]
		_, err := c.SendSMS(ctx, login(phone))
		if got := (genauth.Classifier{}).Classify(nil, err); got != genauth.ClassUnknown {
			t.Fatalf("dropped connection (sent %v): Classify(%v) = %v, want unknown", sendFirst, err, got)
		}
		if n := srv.Calls() - before; n != 1 {
			t.Fatalf("dropped connection (sent %v): %d requests for one call, want 1", sendFirst, n)
		}
	}
}

func TestSendSMSCallerDeadlineWhileHeld(t *testing.T) {
	t.Parallel()
	srv := newFake(t, genauthtest.Options{})
	srv.Hold()
	c := newClient(t, srv, genauth.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.SendSMS(ctx, login(testPhone))
	if got := (genauth.Classifier{}).Classify(nil, err); got != genauth.ClassUnknown {
		t.Fatalf("Classify(%v) = %v, want unknown", err, got)
	}
	if n := srv.Calls(); n != 1 {
		t.Fatalf("fake received %d calls, want 1", n)
	}
}

func TestSendSMSClosedPort(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := genauth.New(genauth.Config{AppHost: "http://" + addr, AppID: "app"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	_, err = c.SendSMS(context.Background(), login(testPhone))
	e := asError(t, err)
	if e.RequestWritten || e.Err == nil || e.HTTPStatus != 0 {
		t.Fatalf("error = %+v, want a transport error with nothing written", e)
	}
	if got := (genauth.Classifier{}).Classify(nil, err); got != genauth.ClassRetry {
		t.Fatalf("Classify = %v, want retry", got)
	}
}

func TestSendSMSCanceledBeforeSend(t *testing.T) {
	t.Parallel()
	srv := newFake(t, genauthtest.Options{})
	c := newClient(t, srv, genauth.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.SendSMS(ctx, login(testPhone))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
	if got := (genauth.Classifier{}).Classify(nil, err); got != genauth.ClassRetry {
		t.Fatalf("Classify = %v, want retry", got)
	}
	if n := srv.Calls(); n != 0 {
		t.Fatalf("fake received %d calls, want 0", n)
	}
}

func TestSendSMSBodyCap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
	}{
		{"huge html", strings.Repeat("<p>", 1<<20)},
		{"huge success json", `{"statusCode":200,"message":"` + strings.Repeat("x", 1<<20) + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, tt.body)
			}))
			t.Cleanup(ts.Close)
			c, err := genauth.New(genauth.Config{AppHost: ts.URL, AppID: "app"})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			_, err = c.SendSMS(context.Background(), login(testPhone))
			e := asError(t, err)
			if len(e.Body) == 0 || len(e.Body) > 256 {
				t.Fatalf("len(Body) = %d, want 1..256", len(e.Body))
			}
			if got := (genauth.Classifier{}).Classify(nil, err); got != genauth.ClassUnknown {
				t.Fatalf("Classify = %v, want unknown", got)
			}
		})
	}
}

func TestSendSMSRedactsEcho(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b struct{ PhoneNumber string }
		json.NewDecoder(r.Body).Decode(&b)
		json.NewEncoder(w).Encode(map[string]any{
			"statusCode": 400,
			"message":    "bad phone " + b.PhoneNumber + " for token " + r.Header.Get("Authorization"),
		})
	}))
	t.Cleanup(ts.Close)
	c, err := genauth.New(genauth.Config{AppHost: ts.URL, AppID: "app"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	req := login(testPhone)
	req.AccessToken = testToken
	_, err = c.SendSMS(context.Background(), req)
	e := asError(t, err)
	for _, s := range []string{err.Error(), e.Message, e.Body} {
		if strings.Contains(s, testPhone) || strings.Contains(s, testToken) {
			t.Fatalf("error text %q leaks the phone or token", s)
		}
	}
}

func TestSendSMSInvalidRequest(t *testing.T) {
	t.Parallel()
	srv := newFake(t, genauthtest.Options{})
	c := newClient(t, srv, genauth.Config{})
	tests := []struct {
		name string
		req  genauth.SendSMSRequest
	}{
		{"unknown channel", genauth.SendSMSRequest{Channel: "CHANNEL_NOPE", PhoneNumber: testPhone}},
		{"bad lang", genauth.SendSMSRequest{Channel: genauth.ChannelLogin, PhoneNumber: testPhone, Lang: "fr"}},
		{"bad client ip", genauth.SendSMSRequest{Channel: genauth.ChannelLogin, PhoneNumber: testPhone, ClientIP: "1.2.3.4\r\nX: y"}},
		{"client ip zone with CR/LF", genauth.SendSMSRequest{Channel: genauth.ChannelLogin, PhoneNumber: testPhone, ClientIP: "fe80::1%\r\nX: y"}},
		{"client ip zone forging the header", genauth.SendSMSRequest{Channel: genauth.ChannelLogin, PhoneNumber: testPhone, ClientIP: "fe80::1%1.2.3.4, 6.6.6.6"}},
		{"token with newline", genauth.SendSMSRequest{Channel: genauth.ChannelLogin, PhoneNumber: testPhone, AccessToken: testToken + "\n"}},
	}
	for _, tt := range tests {
		_, err := c.SendSMS(context.Background(), tt.req)
		if !errors.Is(err, genauth.ErrInvalidRequest) {
			t.Fatalf("%s: error = %v, want ErrInvalidRequest", tt.name, err)
		}
		if strings.Contains(err.Error(), testToken) {
			t.Fatalf("%s: error %q leaks the token", tt.name, err)
		}
		if got := (genauth.Classifier{}).Classify(nil, err); got != genauth.ClassPermanent {
			t.Fatalf("%s: Classify = %v, want permanent", tt.name, got)
		}
	}
	if n := srv.Calls(); n != 0 {
		t.Fatalf("fake received %d calls, want 0", n)
	}
}

func TestNewValidation(t *testing.T) {
	t.Parallel()
	ok := genauth.Config{AppHost: "https://example.genauth.ai", AppID: "app"}
	tests := []struct {
		name    string
		edit    func(*genauth.Config)
		setting string
	}{
		{"no host", func(c *genauth.Config) { c.AppHost = "" }, "AppHost"},
		{"ftp", func(c *genauth.Config) { c.AppHost = "ftp://x" }, `AppHost "ftp://x": must be an http or https URL`},
		{"no scheme", func(c *genauth.Config) { c.AppHost = "example.genauth.ai" }, "AppHost"},
		{"path", func(c *genauth.Config) { c.AppHost = "https://example.genauth.ai/api" }, "AppHost"},
		{"query", func(c *genauth.Config) { c.AppHost = "https://example.genauth.ai?x=1" }, "AppHost"},
		{"user", func(c *genauth.Config) { c.AppHost = "https://u:p@example.genauth.ai" }, "AppHost"},
		{"no app id", func(c *genauth.Config) { c.AppID = "" }, "AppID"},
		{"app id spaces", func(c *genauth.Config) { c.AppID = " app" }, "AppID"},
		{"prefix", func(c *genauth.Config) { c.HeaderPrefix = "x-foo-" }, "HeaderPrefix"},
		{"lang", func(c *genauth.Config) { c.Lang = "fr-FR" }, "Lang"},
		{"timeout", func(c *genauth.Config) { c.Timeout = -time.Second }, "Timeout"},
		{"user agent", func(c *genauth.Config) { c.UserAgent = "a\nb" }, "UserAgent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := ok
			tt.edit(&cfg)
			_, err := genauth.New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.setting) {
				t.Fatalf("New error = %v, want it to name %s", err, tt.setting)
			}
		})
	}

	c, err := genauth.New(genauth.Config{AppHost: "HTTPS://Example.GenAuth.ai:8443/", AppID: "app"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if got, want := c.AppHost(), "https://example.genauth.ai:8443"; got != want {
		t.Fatalf("AppHost() = %q, want %q", got, want)
	}
	if got, want := c.HeaderPrefixes(), []string{"x-authing-", "x-genauth-"}; !slices.Equal(got, want) {
		t.Fatalf("HeaderPrefixes() = %q, want %q", got, want)
	}
}

// TestSendSMSConcurrent checks that one client serves many goroutines at
// once and that the fake's one-minute rule holds under concurrency.
func TestSendSMSConcurrent(t *testing.T) {
	t.Parallel()
	srv := newFake(t, genauthtest.Options{})
	c := newClient(t, srv, genauth.Config{})
	const n = 50
	classes := make([]genauth.Class, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := c.SendSMS(context.Background(), login(testPhone))
			classes[i] = genauth.Classifier{}.Classify(resp, err)
		})
	}
	wg.Wait()
	count := map[genauth.Class]int{}
	for _, cl := range classes {
		count[cl]++
	}
	if count[genauth.ClassSent] != 1 || count[genauth.ClassDuplicate] != n-1 {
		t.Fatalf("classes = %v, want 1 sent and %d duplicate", count, n-1)
	}
}
