package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/guard"
	"github.com/smsq/smsq/internal/tasks"
)

func TestSendQueuesATask(t *testing.T) {
	h := newHarness(t, nil)
	resp, body := h.send(`{"channel":"CHANNEL_LOGIN","phoneNumber":"138 0013 8000","clientIp":"203.0.113.7","lang":"en-US","sendWithin":"2m","futureField":{"x":1}}`)
	wantStatus(t, resp, body, http.StatusAccepted)
	rc := decode[receipt](t, body)
	if rc.Status != "queued" || rc.Queue != "critical" || rc.Phone != "+86 138****8000" || rc.ID == "" {
		t.Fatalf("receipt %+v", rc)
	}
	if d := time.Until(rc.SendBy); d < time.Minute || d > 2*time.Minute+time.Second {
		t.Errorf("sendBy %s is %s away, want about 2m", rc.SendBy, d)
	}
	info, err := asynq.NewInspectorFromRedisClient(h.rdb).GetTaskInfo("critical", rc.ID)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tasks.Decode(info.Payload)
	if err != nil {
		t.Fatal(err)
	}
	// The key's name, never its secret, is in the task's record.
	if p.Source != "api:billing" || p.PhoneNumber != "13800138000" || p.ClientIP != "203.0.113.7" || p.Lang != "en-US" {
		t.Errorf("payload %+v", p)
	}
	if strings.Contains(string(info.Payload), billingSecret) {
		t.Errorf("payload holds the secret")
	}
	if h.tasks() != 1 {
		t.Errorf("%d tasks, want 1", h.tasks())
	}
	// The request is logged and counted under the key's name.
	logs := h.logs.String()
	if !strings.Contains(logs, `"key":"billing"`) || strings.Contains(logs, billingSecret) || strings.Contains(logs, "13800138000") {
		t.Errorf("log:\n%s", logs)
	}
	if n := testutil.ToFloat64(h.api.m.requests.WithLabelValues("billing", routeSend, "202")); n != 1 {
		t.Errorf("smsq_api_requests_total{billing,202} = %v", n)
	}
}

func TestAuthentication(t *testing.T) {
	h := newHarness(t, nil)
	body := `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `"}`
	for name, hdr := range map[string][]string{
		"no header":        nil,
		"wrong secret":     {"Authorization", "Bearer " + billingSecret + "x"},
		"prefix of secret": {"Authorization", "Bearer " + billingSecret[:len(billingSecret)-1]},
		"basic scheme":     {"Authorization", "Basic " + billingSecret},
		"no scheme":        {"Authorization", billingSecret},
		"empty bearer":     {"Authorization", "Bearer "},
		"the key's name":   {"Authorization", "Bearer billing"},
		"the key's hash":   {"Authorization", "Bearer " + sha256Hex(webSecret)},
	} {
		resp, data := h.do(http.MethodPost, "/v1/sms", "", "application/json", body, hdr...)
		wantStatus(t, resp, data, http.StatusUnauthorized)
		if resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: no WWW-Authenticate", name)
		}
	}
	if n := h.tasks(); n != 0 {
		t.Fatalf("%d tasks queued by refused requests", n)
	}
	if n := testutil.ToFloat64(h.api.m.requests.WithLabelValues("none", routeSend, "401")); n != 8 {
		t.Errorf("401s counted %v, want 8", n)
	}
	// Both forms of key work; the scheme is case-insensitive.
	resp, data := h.do(http.MethodPost, "/v1/sms", "", "application/json", body, "Authorization", "bearer "+webSecret)
	wantStatus(t, resp, data, http.StatusAccepted)
	// The document is open.
	resp, data = h.do(http.MethodGet, "/v1/openapi.json", "", "", "")
	wantStatus(t, resp, data, http.StatusOK)
	if !json.Valid(data) || !strings.Contains(string(data), `"openapi": "3.1.0"`) {
		t.Errorf("openapi.json: %.200s", data)
	}
}

func sha256Hex(s string) string {
	k, _ := parseKey("x:" + s)
	return fmt.Sprintf("%x", k.hash)
}

func TestParseKeys(t *testing.T) {
	good := "a:0123456789abcdef, b.c-d:sha256:" + strings.Repeat("ab", 32) + "\n# comment\n\ne_f:fedcba9876543210\n"
	k, err := ParseKeys(good)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(k.Names(), ","); got != "a,b.c-d,e_f" {
		t.Errorf("names %s", got)
	}
	if name, ok := k.Lookup("0123456789abcdef"); !ok || name != "a" {
		t.Errorf("lookup a: %q %v", name, ok)
	}
	for _, bad := range []string{
		"nocolon", ":0123456789abcdef", "a:short", "a:sha256:abcd", "a:sha256:" + strings.Repeat("zz", 32),
		"a:0123456789abcdef,a:0123456789abcdeg", "bad name:0123456789abcdef", "13800138000:0123456789abcdef",
		"a:0123456789abcdef\x7f",
	} {
		_, err := ParseKeys(bad)
		if err == nil {
			t.Errorf("%q: accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), "0123456789abcdef") || strings.Contains(err.Error(), "13800138000") {
			t.Errorf("%q: the error quotes a secret or phone: %v", bad, err)
		}
	}
}

func TestBadInput(t *testing.T) {
	h := newHarness(t, nil)
	cases := []struct {
		name, ctype, body string
		hdr               []string
		path              string
		status            int
		field             string
	}{
		{"bad channel", "application/json", `{"channel":"CHANNEL_NOPE","phoneNumber":"` + testPhone + `"}`, nil, "", 400, "channel"},
		{"bad phone", "application/json", `{"channel":"CHANNEL_LOGIN","phoneNumber":"+86 139 0013 900"}`, nil, "", 400, "phoneNumber"},
		{"phone as a number", "application/json", `{"channel":"CHANNEL_LOGIN","phoneNumber":13800138000}`, nil, "", 400, "phoneNumber"},
		{"not an object", "application/json", `["CHANNEL_LOGIN"]`, nil, "", 400, ""},
		{"not JSON", "application/json", `{"channel":`, nil, "", 400, ""},
		{"empty body", "application/json", ``, nil, "", 400, ""},
		{"trailing data", "application/json", `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `"} {}`, nil, "", 400, ""},
		{"bad lang", "application/json", `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `","lang":"xx"}`, nil, "", 400, "lang"},
		{"bad clientIp", "application/json", `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `","clientIp":"13900139000"}`, nil, "", 400, "clientIp"},
		{"bad onHeld", "application/json", `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `","onHeld":"wait"}`, nil, "", 400, "onHeld"},
		{"bad delay", "application/json", `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `","delay":"soon"}`, nil, "", 400, "delay"},
		{"negative delay", "application/json", `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `","delay":"-1s"}`, nil, "", 400, "delay"},
		{"bad sendBy", "application/json", `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `","sendBy":"tomorrow"}`, nil, "", 400, "sendBy"},
		{"past sendBy", "application/json", `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `","sendBy":"2020-01-01T00:00:00Z"}`, nil, "", 400, "sendBy"},
		{"sendBy and sendWithin", "application/json", `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `","sendBy":"2099-01-01T00:00:00Z","sendWithin":"1m"}`, nil, "", 400, "sendWithin"},
		{"unserved queue", "application/json", `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `","queue":"Critical"}`, nil, "", 400, "queue"},
		{"phone in queue", "application/json", `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `","queue":"q13900139000"}`, nil, "", 400, "queue"},
		{"key in body", "application/json", `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `","idempotencyKey":"k1"}`, nil, "", 400, "idempotencyKey"},
		{"phone in key", "application/json", `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `"}`, []string{"Idempotency-Key", "login-13900139000"}, "", 400, "Idempotency-Key"},
		{"space in key", "application/json", `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `"}`, []string{"Idempotency-Key", `"a b"`}, "", 400, "Idempotency-Key"},
		{"two keys", "application/json", `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `"}`, []string{"Idempotency-Key", "a", "Idempotency-Key", "b"}, "", 400, "Idempotency-Key"},
		{"bad wait", "application/json", `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `"}`, nil, "/v1/sms?wait=1h", 400, "wait"},
		{"text/plain", "text/plain", `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `"}`, nil, "", 415, "Content-Type"},
		{"no content type", "", `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `"}`, nil, "", 415, "Content-Type"},
		{"too large", "application/json", `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `","x":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, nil, "", 413, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := c.path
			if path == "" {
				path = "/v1/sms"
			}
			resp, body := h.do(http.MethodPost, path, billingSecret, c.ctype, c.body, c.hdr...)
			wantStatus(t, resp, body, c.status)
			p := decode[Problem](t, body)
			if p.Field != c.field {
				t.Errorf("field %q, want %q: %s", p.Field, c.field, p.Detail)
			}
			if c.field != "" && !strings.HasPrefix(p.Detail, c.field) {
				t.Errorf("detail %q does not start with the field %s", p.Detail, c.field)
			}
		})
	}
	if n := h.tasks(); n != 0 {
		t.Fatalf("%d tasks queued by refused requests", n)
	}
	// Nothing was claimed either: the keys are free for a good request.
	resp, body := h.send(`{"channel":"CHANNEL_LOGIN","phoneNumber":"`+testPhone+`"}`, "Idempotency-Key", "k1")
	wantStatus(t, resp, body, http.StatusAccepted)
}

func TestRoutesAndMethods(t *testing.T) {
	h := newHarness(t, nil)
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/v1/sms", 405},
		{http.MethodDelete, "/v1/sms/abc", 405},
		{http.MethodGet, "/v1/sms/batch", 405},
		{http.MethodPost, "/v1/openapi.json", 405},
		{http.MethodGet, "/v2/sms", 404},
		{http.MethodGet, "/", 404},
	} {
		resp, body := h.do(c.method, c.path, billingSecret, "", "")
		wantStatus(t, resp, body, c.status)
	}
}

func TestIdempotencyKey(t *testing.T) {
	h := newHarness(t, nil)
	body := `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `"}`
	resp, first := h.send(body, "Idempotency-Key", `"login-7f3a"`)
	wantStatus(t, resp, first, http.StatusAccepted)
	rc := decode[receipt](t, first)
	if rc.ID != "login-7f3a" {
		t.Fatalf("id %q, want the key", rc.ID)
	}
	// Same key, same request (other spacing, field order, unknown fields,
	// bare key): the first answer again, nothing new queued.
	resp, again := h.send(`{ "phoneNumber": "`+testPhone+`", "channel": "CHANNEL_LOGIN", "trace": "abc" }`, "Idempotency-Key", "login-7f3a")
	wantStatus(t, resp, again, http.StatusAccepted)
	if string(again) != string(first) || resp.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay %s (replayed %q), want %s", again, resp.Header.Get("Idempotent-Replayed"), first)
	}
	// Same key, another request: 422.
	resp, data := h.send(`{"channel":"CHANNEL_REGISTER","phoneNumber":"`+testPhone+`"}`, "Idempotency-Key", "login-7f3a")
	wantStatus(t, resp, data, http.StatusUnprocessableEntity)
	if p := decode[Problem](t, data); p.Field != "Idempotency-Key" {
		t.Errorf("problem %+v", p)
	}
	// Same key, same body, another API key: another request.
	resp, data = h.do(http.MethodPost, "/v1/sms", webSecret, "application/json", body, "Idempotency-Key", "login-7f3a")
	wantStatus(t, resp, data, http.StatusUnprocessableEntity)
	// Same key in another queue: still the same key.
	resp, data = h.send(`{"channel":"CHANNEL_LOGIN","phoneNumber":"`+testPhone+`","queue":"low"}`, "Idempotency-Key", "login-7f3a")
	wantStatus(t, resp, data, http.StatusUnprocessableEntity)
	if n := h.tasks(); n != 1 {
		t.Fatalf("%d tasks, want 1", n)
	}
	// A key that smsq.Client.Send used first, in another queue: in use.
	if _, err := h.sc.Send(context.Background(), smsq.Request{Channel: "CHANNEL_REGISTER", Phone: testPhone}, smsq.WithIdempotencyKey("go-1")); err != nil {
		t.Fatal(err)
	}
	resp, data = h.send(body, "Idempotency-Key", "go-1")
	wantStatus(t, resp, data, http.StatusConflict)
	if n := h.tasks(); n != 2 {
		t.Fatalf("%d tasks, want 2", n)
	}
	// And the other way round: Send refuses a key the API used.
	if _, err := h.sc.Send(context.Background(), smsq.Request{Channel: "CHANNEL_REGISTER", Phone: testPhone}, smsq.WithIdempotencyKey("login-7f3a"), smsq.WithQueue("low")); !errorsIsDuplicate(err) {
		t.Fatalf("Send with the API's key: %v", err)
	}
}

func errorsIsDuplicate(err error) bool {
	return err != nil && strings.Contains(err.Error(), smsq.ErrDuplicate.Error())
}

// Many clients racing with one key and one request queue one task, and
// every one of them that is told 202 gets the same answer.
func TestIdempotencyKeyRace(t *testing.T) {
	h := newHarness(t, nil)
	body := `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `"}`
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		answers = map[string]int{}
		codes   = map[int]int{}
	)
	for range 20 {
		wg.Go(func() {
			resp, data := h.send(body, "Idempotency-Key", "race-1")
			mu.Lock()
			defer mu.Unlock()
			codes[resp.StatusCode]++
			if resp.StatusCode == http.StatusAccepted {
				answers[string(data)]++
			}
		})
	}
	wg.Wait()
	if codes[202]+codes[409] != 20 || codes[202] == 0 || len(answers) != 1 {
		t.Fatalf("codes %v, distinct 202 answers %d", codes, len(answers))
	}
	if n := h.tasks(); n != 1 {
		t.Fatalf("%d tasks, want 1", n)
	}
}

// A request whose enqueue fails gives its key back: the retry queues.
func TestIdempotencyKeyAfterRedisFailure(t *testing.T) {
	h := newHarness(t, nil)
	body := `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `"}`
	h.api.cfg.Enqueuer = failingEnqueuer{}
	resp, data := h.send(body, "Idempotency-Key", "retry-1")
	wantStatus(t, resp, data, http.StatusServiceUnavailable)
	if resp.Header.Get("Retry-After") == "" {
		t.Errorf("no Retry-After")
	}
	h.api.cfg.Enqueuer = h.sc
	resp, data = h.send(body, "Idempotency-Key", "retry-1")
	wantStatus(t, resp, data, http.StatusAccepted)
}

type failingEnqueuer struct{}

func (failingEnqueuer) Enqueue(context.Context, *asynq.Task, tasks.Validated) (*asynq.TaskInfo, error) {
	return nil, fmt.Errorf("smsq: enqueue: dial tcp: connection refused")
}

func TestRateLimitPerKeyAcrossServers(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RateLimit = mustRate(t, "3/m") })
	// A second server on the same Redis shares the limit.
	h2 := newHarnessOn(t, h.redis, h.rdb, func(c *Config) { c.RateLimit = mustRate(t, "3/m") })
	body := `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `"}`
	statuses := []int{}
	for i := range 4 {
		hh := h
		if i%2 == 1 {
			hh = h2
		}
		resp, _ := hh.send(body)
		statuses = append(statuses, resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			t.Errorf("429 without Retry-After")
		}
	}
	// 3/m has a burst of 1: the first passes, the rest wait 20 s each.
	if statuses[0] != 202 || statuses[1] != 429 || statuses[2] != 429 || statuses[3] != 429 {
		t.Fatalf("statuses %v", statuses)
	}
	// Another key has its own budget.
	resp, data := h.do(http.MethodPost, "/v1/sms", webSecret, "application/json", body)
	wantStatus(t, resp, data, http.StatusAccepted)
	if n := h.tasks(); n != 2 {
		t.Fatalf("%d tasks, want 2", n)
	}
	if n, _ := h.rdb.Exists(context.Background(), RateLimitPrefix+"billing").Result(); n != 1 {
		t.Errorf("no limiter key %sbilling", RateLimitPrefix)
	}
}

func TestVerificationsNotImplemented(t *testing.T) {
	h := newHarness(t, nil)
	resp, data := h.do(http.MethodPost, "/v1/verifications", billingSecret, "application/json", `{"phoneNumber":"`+testPhone+`","channel":"CHANNEL_LOGIN"}`)
	wantStatus(t, resp, data, http.StatusNotImplemented)
}

// A verification report reaches the abuse guard (its channel joins the
// channels the conversion breaker judges); bad input names the field and
// records nothing; the answer never holds the number.
func TestVerifications(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Verifier = nil })
	h = newHarnessOn(t, h.redis, h.rdb, func(c *Config) { c.Verifier = h.sc })
	ctx := context.Background()
	channels := guard.ChannelsKey(guard.DefaultPrefix)
	for _, tc := range []struct{ body, field string }{
		{`{"channel":"CHANNEL_LOGIN"}`, "phoneNumber"},
		{`{"phoneNumber":"` + testPhone + `"}`, "channel"},
		{`{"phoneNumber":"12","channel":"CHANNEL_LOGIN"}`, "phoneNumber"},
		{`{"phoneNumber":"` + testPhone + `","channel":"CHANNEL_NOPE"}`, "channel"},
		{`{"phoneNumber":13800138000,"channel":"CHANNEL_LOGIN"}`, "phoneNumber"},
		{`[]`, ""},
		{`{"phoneNumber":`, ""},
	} {
		resp, data := h.do(http.MethodPost, "/v1/verifications", billingSecret, "application/json", tc.body)
		wantStatus(t, resp, data, http.StatusBadRequest)
		if p := decode[map[string]any](t, data); tc.field != "" && p["field"] != tc.field {
			t.Errorf("%s: problem %s, want field %s", tc.body, data, tc.field)
		}
		if strings.Contains(string(data), "13800138000") {
			t.Errorf("%s: answer shows the number: %s", tc.body, data)
		}
	}
	if n, _ := h.rdb.Exists(ctx, channels).Result(); n != 0 {
		t.Fatal("a refused report reached the guard")
	}
	resp, data := h.do(http.MethodPost, "/v1/verifications", billingSecret, "application/json", `{"phoneNumber":"138 0013 8000","phoneCountryCode":"+86","channel":"CHANNEL_LOGIN"}`)
	wantStatus(t, resp, data, http.StatusAccepted)
	got := decode[map[string]any](t, data)
	if got["phone"] != "+86 138****8000" || got["channel"] != "CHANNEL_LOGIN" || got["status"] != "recorded" {
		t.Fatalf("receipt %s", data)
	}
	if v, err := h.rdb.HExists(ctx, channels, "CHANNEL_LOGIN").Result(); err != nil || !v {
		t.Fatalf("guard channels: %v, %v; want CHANNEL_LOGIN reported", v, err)
	}
	// No key: 401, as for every route.
	resp, data = h.do(http.MethodPost, "/v1/verifications", "", "application/json", `{"phoneNumber":"`+testPhone+`","channel":"CHANNEL_LOGIN"}`)
	wantStatus(t, resp, data, http.StatusUnauthorized)
}

// A client that sends its headers and then trickles (or withholds) the
// body is cut off after the request timeout, and queues nothing.
func TestSlowBodyTimesOut(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Timeout = 300 * time.Millisecond })
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/sms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"channel\":", billingSecret)
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	data, _ := io.ReadAll(conn)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the connection was held %s", d)
	}
	if strings.Contains(string(data), " 202 ") {
		t.Fatalf("answered %s", data)
	}
	if n := h.tasks(); n != 0 {
		t.Fatalf("%d tasks", n)
	}
}
