package genauth

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func newResponse(status int, header http.Header, body string) *http.Response {
	if header == nil {
		header = http.Header{}
	}
	return &http.Response{StatusCode: status, Header: header, Body: io.NopCloser(strings.NewReader(body))}
}

func TestCheckResponse(t *testing.T) {
	t.Parallel()
	now := func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) }
	tests := []struct {
		name     string
		status   int
		header   http.Header
		body     string
		wantResp *Response
		wantErr  *Error
	}{
		{
			name: "success", status: 200,
			body:     `{"statusCode":200,"message":"Operation successful","requestId":"r-1"}`,
			wantResp: &Response{HTTPStatus: 200, StatusCode: 200, Message: "Operation successful", RequestID: "r-1"},
		},
		{
			name: "business failure", status: 200,
			body:    `{"statusCode":422,"message":"too often","apiCode":42201,"requestId":"r-2"}`,
			wantErr: &Error{HTTPStatus: 200, StatusCode: 422, APICode: 42201, Message: "too often", RequestID: "r-2"},
		},
		{
			name: "codes as strings", status: 200,
			body:    `{"statusCode":"429","apiCode":"7"}`,
			wantErr: &Error{HTTPStatus: 200, StatusCode: 429, APICode: 7},
		},
		{
			name: "retry-after seconds", status: 200, header: http.Header{"Retry-After": {"7"}},
			body:    `{"statusCode":429}`,
			wantErr: &Error{HTTPStatus: 200, StatusCode: 429, RetryAfter: 7 * time.Second},
		},
		{
			name: "retry-after date", status: 429, header: http.Header{"Retry-After": {"Thu, 02 Jan 2025 03:05:05 GMT"}},
			body:    `Too Many Requests`,
			wantErr: &Error{HTTPStatus: 429, RetryAfter: time.Minute, Body: "Too Many Requests"},
		},
		{
			name: "gateway html", status: 502, header: http.Header{"X-Request-Id": {"gw-1"}},
			body:    "<html>\r\n<b>502</b></html>",
			wantErr: &Error{HTTPStatus: 502, RequestID: "gw-1", Body: "<html>\n<b>502</b></html>"},
		},
		{
			name: "gateway json without statusCode", status: 503,
			body:    `{"message":"no upstream"}`,
			wantErr: &Error{HTTPStatus: 503, Message: "no upstream", Body: `{"message":"no upstream"}`},
		},
		{
			name: "empty body", status: 200,
			body:    ``,
			wantErr: &Error{HTTPStatus: 200},
		},
		{
			name: "fractional code", status: 200,
			body:    `{"statusCode":200.5}`,
			wantErr: &Error{HTTPStatus: 200, Body: `{"statusCode":200.5}`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, err := checkResponse(newResponse(tt.status, tt.header, tt.body), now)
			if tt.wantResp != nil {
				if err != nil || *resp != *tt.wantResp {
					t.Fatalf("checkResponse = %+v, %v; want %+v, nil", resp, err, tt.wantResp)
				}
				return
			}
			var e *Error
			if resp != nil || !errors.As(err, &e) {
				t.Fatalf("checkResponse = %+v, %v; want nil, *Error", resp, err)
			}
			if *e != *tt.wantErr {
				t.Fatalf("checkResponse error = %#v, want %#v", e, tt.wantErr)
			}
		})
	}
}

func TestCheckResponseBodyCap(t *testing.T) {
	t.Parallel()
	// A success body padded past the cap must not be trusted as success.
	big := `{"statusCode":200,"message":"` + strings.Repeat("x", maxBodySize) + `"}`
	resp, err := checkResponse(newResponse(200, nil, big), time.Now)
	var e *Error
	if resp != nil || !errors.As(err, &e) {
		t.Fatalf("checkResponse(oversized) = %+v, %v; want *Error", resp, err)
	}
	if len(e.Body) > maxErrorBody {
		t.Fatalf("len(Body) = %d, want <= %d", len(e.Body), maxErrorBody)
	}
	if got := (Classifier{}).Classify(nil, err); got != ClassUnknown {
		t.Fatalf("Classify(oversized 200) = %v, want unknown", got)
	}
}

func TestClip(t *testing.T) {
	t.Parallel()
	s := clip([]byte(strings.Repeat("中", maxErrorBody)))
	if !utf8.ValidString(s) || len(s) > maxErrorBody || strings.ContainsRune(s, utf8.RuneError) {
		t.Fatalf("clip cut a rune or overran: len %d, valid %v", len(s), utf8.ValidString(s))
	}
	if got, want := clip([]byte("a\x00b\x1bc")), "abc"; got != want {
		t.Fatalf("clip(control chars) = %q, want %q", got, want)
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time { return now }
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"-5", 0},
		{" 30 ", 30 * time.Second},
		{"99999999999999999", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, clock); got != tt.want {
			t.Fatalf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestErrorString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{HTTPStatus: 200, StatusCode: 422, APICode: 42201, Message: "too often", RequestID: "r-1"},
			"genauth: send-sms: HTTP 200, statusCode 422, apiCode 42201: too often (requestId r-1)"},
		{&Error{HTTPStatus: 502, Body: "<html>"},
			"genauth: send-sms: HTTP 502, no JSON statusCode"},
		{&Error{HTTPStatus: 200, StatusCode: 429, RetryAfter: 3 * time.Second},
			"genauth: send-sms: HTTP 200, statusCode 429 (retry after 3s)"},
		{&Error{Err: errors.New("refused")},
			"genauth: send-sms: request not sent: refused"},
		{&Error{Err: errors.New("EOF"), RequestWritten: true},
			"genauth: send-sms: no answer after the request was sent, outcome unknown: EOF"},
		{&Error{HTTPStatus: 200, Err: errors.New("reset"), RequestWritten: true},
			"genauth: send-sms: HTTP 200: reading answer: reset"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Fatalf("Error() = %q, want %q", got, tt.want)
		}
	}
}
