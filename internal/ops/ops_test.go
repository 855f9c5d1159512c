package ops

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/smsq/smsq/internal/phone"
)

func TestMaskPayload(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     []string // substrings of the output
	}{
		{"national with country code", `{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000","phoneCountryCode":"+86"}`,
			[]string{`"phoneNumber":"+86 138****8000"`, `"channel":"CHANNEL_LOGIN"`}},
		{"e164", `{"channel":"CHANNEL_LOGIN","phoneNumber":"+8613800138000"}`, []string{`"phoneNumber":"+86 138****8000"`}},
		{"formatted", `{"phoneNumber":"138 0013-8000"}`, []string{`"phoneNumber":"+86 138****8000"`}},
		{"invalid number still masked", `{"phoneNumber":"99912345678"}`, []string{`"phoneNumber":"999****5678"`}},
		{"number as JSON number", `{"phoneNumber":13800138000}`, []string{`"phoneNumber":"138****8000"`}},
		{"swapped fields", `{"channel":"13800138000","phoneNumber":"CHANNEL_LOGIN"}`, []string{`"channel":"138****8000"`}},
		{"timestamps stay readable", `{"phoneNumber":"13800138000","enqueuedAt":"2025-01-02T03:04:05.123456789Z"}`,
			[]string{`"enqueuedAt":"2025-01-02T03:04:05.123456789Z"`}},
		{"not JSON", `phone=13800138000`, []string{`phone=138****8000`}},
		{"not UTF-8", "\xff13800138000", []string{`138****8000`}},
		{"two JSON values", `{} "13800138000"`, []string{`138****8000`}},
		{"key in capitals", `{"CHANNEL":"CHANNEL_LOGIN","PHONENUMBER":"13800138000","PhoneCountryCode":"+86"}`, []string{`"PHONENUMBER":"+86 138****8000"`}},
		{"full-width digits", `{"phoneNumber":"１３８００１３８０００"}`, []string{`"phoneNumber":"+86 138****8000"`}},
		{"Arabic-Indic digits under another key", `{"phonenumber":"x","note":"١٣٨٠٠١٣٨٠٠٠"}`, []string{`"note":"١٣٨****٨٠٠٠"`}},
		{"slashes", `{"PhoneNumber":"138/0013/8000"}`, []string{`"PhoneNumber":"+86 138****8000"`}},
		{"phone in an ID", `{"idempotencyKey":"login_13800138000_1","requestId":"80662045-af6a-419f-b0a2-17213814b4c5"}`,
			[]string{`"idempotencyKey":"login_138****8000_1"`, `"requestId":"80662045-af6a-419f-b0a2-17213814b4c5"`}},
	}
	for _, tt := range tests {
		got := MaskPayload([]byte(tt.in))
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: MaskPayload(%q) = %q, want it to contain %q", tt.name, tt.in, got, w)
			}
		}
		if d := phone.Digits(got); strings.Contains(d, "13800138000") || strings.Contains(d, "99912345678") {
			t.Errorf("%s: MaskPayload(%q) = %q shows a full number", tt.name, tt.in, got)
		}
	}
}

func TestMaskResult(t *testing.T) {
	t.Parallel()
	in := `{"outcome":"failed","final":true,"phone":"+86 138****8000","message":"phone 13800138000 is blocked",` +
		`"retryInMs":3600000,"finishedAt":"2025-01-02T03:04:05.123456789Z","requestId":"req-1"}`
	got := MaskResult([]byte(in))
	for _, w := range []string{`"phone":"+86 138****8000"`, `phone 138****8000 is blocked`, `"retryInMs":3600000`,
		`"finishedAt":"2025-01-02T03:04:05.123456789Z"`, `"requestId":"req-1"`} {
		if !strings.Contains(got, w) {
			t.Errorf("MaskResult = %q, want it to contain %q", got, w)
		}
	}
	if strings.Contains(got, "13800138000") {
		t.Errorf("MaskResult = %q shows the full number", got)
	}
}

func TestMaskText(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"13800138000", "138****8000"},
		{"+86 138 0013 8000", "+86 1** **** 8000"},
		{"call (415) 555-2671 now", "call (41*) ***-**71 now"},
		{"attempt 3 of 25, HTTP 503", "attempt 3 of 25, HTTP 503"},
		{"order 123456", "order 123456"},
		{"1234567", "*****67"},
		{"2b668c2f-cdea-41d9-8bb8-599647fc4ddc", "2b668c2f-cdea-41d9-8bb8-599647fc4ddc"},
		{"phone13800138000", "phone138****8000"},
		{"id 12345678-ab", "id 12345678-ab"}, // hex ID, not a number
		{"id 13800138000-ab", "id 138****8000-ab"},
		{"tel:+8613800138000;", "tel:+861******8000;"},
		{strings.Repeat("1", 80), strings.Repeat("*", 80)},
	}
	for _, tt := range tests {
		if got := MaskText(tt.in); got != tt.want {
			t.Errorf("MaskText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestMaskAPI(t *testing.T) {
	t.Parallel()
	in := `{"tasks":[{"id":"1234567890","error_message":"genauth: HTTP 400: 13800138000 rejected","payload":"x"}]}`
	got := string(maskAPI([]byte(in)))
	if !strings.Contains(got, `138****8000 rejected`) || !strings.Contains(got, `"id":"1234567890"`) {
		t.Fatalf("maskAPI = %s: want the error masked and the task ID intact", got)
	}
	if got := string(maskAPI([]byte("task 13800138000 not found\n"))); strings.Contains(got, "13800138000") {
		t.Fatalf("maskAPI(text) = %q shows the number", got)
	}
}

// TestMaskAPIIDs: IDs and queue names stay readable and searchable unless
// a raw producer hid a phone number in them, in any digit form.
func TestMaskAPIIDs(t *testing.T) {
	t.Parallel()
	in := `{"tasks":[` +
		`{"id":"78a1c91f-fedc-4d2b-b07d-46c281234534","queue":"critical","error_message":"holder ea47a577-d8bb-4312-3405-0123456789ab"},` +
		`{"id":"login_13800138008_1","queue":"13800138040","group":"g-１３８００１３８０２０"},` +
		`{"id":"order-12345678","queue":"q-٠٠٨٦١٣٨٠٠١٣٨٠٣٢"}],` +
		`"pending_ids":["reg-138/0013/8021"],"queue_priorities":{"13800138041":3,"default":1},"retry_tasks_by_queue":{"13800138042":{"size":1}}}`
	got := string(maskAPI([]byte(in)))
	for _, want := range []string{
		`"id":"78a1c91f-fedc-4d2b-b07d-46c281234534"`, `ea47a577-d8bb-4312-3405-0123456789ab`, `"queue":"critical"`,
		`"id":"order-12345678"`, `"id":"login_138****8008_1"`, `"queue":"138****8040"`, `"default":1`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("maskAPI = %s\nwant it to contain %s", got, want)
		}
	}
	for _, n := range []string{"13800138008", "13800138040", "13800138020", "13800138032", "13800138021", "13800138041", "13800138042"} {
		if strings.Contains(phone.Digits(got), n) {
			t.Errorf("maskAPI = %s shows %s", got, n)
		}
	}
}

func TestHandler(t *testing.T) {
	t.Parallel()
	var readyErr error
	ui := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ui " + r.URL.Path)) })
	h, err := NewHandler(Config{
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("metrics")) }),
		Ready:   func(context.Context) error { return readyErr },
		UI:      ui, User: "ops", Password: "s3cret pass",
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, user, pass string
		ready            error
		code             int
		body             string
	}{
		{path: "/healthz", code: 200, body: "ok"},
		{path: "/readyz", code: 200, body: "ready"},
		{path: "/readyz", ready: errors.New("redis: connection refused"), code: 503, body: "not ready"},
		{path: "/metrics", code: 200, body: "metrics"},
		{path: "/monitoring", code: 401},
		{path: "/monitoring/queues", code: 401},
		{path: "/monitoring/queues", user: "ops", pass: "wrong", code: 401},
		{path: "/monitoring/queues", user: "other", pass: "s3cret pass", code: 401},
		{path: "/monitoring/queues", user: "ops", pass: "s3cret pass", code: 200, body: "ui /monitoring/queues"},
		{path: "/", code: 200, body: "/monitoring/"},
		{path: "/nothing", code: 404},
	}
	for _, tt := range tests {
		readyErr = tt.ready
		req := httptest.NewRequest("GET", tt.path, nil)
		if tt.user != "" {
			req.SetBasicAuth(tt.user, tt.pass)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.code || !strings.Contains(rec.Body.String(), tt.body) {
			t.Errorf("GET %s as %q = %d %q, want %d containing %q", tt.path, tt.user, rec.Code, rec.Body.String(), tt.code, tt.body)
		}
		if rec.Code == 401 && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("GET %s: 401 without a Basic challenge", tt.path)
		}
	}
}

func TestNewHandlerRefuses(t *testing.T) {
	t.Parallel()
	ready := func(context.Context) error { return nil }
	for _, cfg := range []Config{
		{},
		{Ready: ready, User: "ops"},
		{Ready: ready, Password: "p"},
	} {
		if _, err := NewHandler(cfg); err == nil {
			t.Errorf("NewHandler(%+v) = nil error", cfg)
		}
	}
}

func TestListenFallback(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()

	if _, _, err := Listen(addr, false); err == nil {
		t.Fatalf("Listen(%s, false) on a taken port: nil error", addr)
	}
	ln, fellBack, err := Listen(addr, true)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if !fellBack || ln.Addr().String() == addr || !IsLoopback(ln.Addr().String()) {
		t.Fatalf("Listen(%s, true) = %s, fellBack %v: want another loopback port", addr, ln.Addr(), fellBack)
	}
}

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:8080", true},
		{"[::1]:8080", true},
		{"localhost:8080", true},
		{"127.1.2.3:0", true},
		{":8080", false},
		{"0.0.0.0:8080", false},
		{"10.0.0.5:8080", false},
		{"example.com:8080", false},
		{"nonsense", false},
	}
	for _, tt := range tests {
		if got := IsLoopback(tt.addr); got != tt.want {
			t.Errorf("IsLoopback(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}
