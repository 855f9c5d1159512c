package genauth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	body := func(code int) error { return &Error{HTTPStatus: 200, StatusCode: code} }
	gateway := func(status int) error { return &Error{HTTPStatus: status, Body: "<html>"} }
	tests := []struct {
		name string
		c    Classifier
		resp *Response
		err  error
		want Class
	}{
		{"success", Classifier{}, &Response{HTTPStatus: 200, StatusCode: 200}, nil, ClassSent},
		{"nil nil", Classifier{}, nil, nil, ClassUnknown},
		{"body 400", Classifier{}, nil, body(400), ClassPermanent},
		{"body 401", Classifier{}, nil, body(401), ClassPermanent},
		{"body 402", Classifier{}, nil, body(402), ClassPermanent},
		{"body 403", Classifier{}, nil, body(403), ClassPermanent},
		{"body 404", Classifier{}, nil, body(404), ClassPermanent},
		{"body 422", Classifier{}, nil, body(422), ClassDuplicate},
		{"body 429", Classifier{}, nil, body(429), ClassThrottle},
		{"body 500", Classifier{}, nil, body(500), ClassRetry},
		{"body 502", Classifier{}, nil, body(502), ClassRetry},
		{"body 503", Classifier{}, nil, body(503), ClassRetry},
		{"body 601", Classifier{}, nil, body(601), ClassRetry},
		{"body 602", Classifier{}, nil, body(602), ClassRetry},
		{"body 700", Classifier{}, nil, body(700), ClassRetry},
		{"body 409", Classifier{}, nil, body(409), ClassPermanent},
		{"body 300", Classifier{}, nil, body(300), ClassPermanent},
		{"body 500 on HTTP 500", Classifier{}, nil, &Error{HTTPStatus: 500, StatusCode: 500}, ClassRetry},
		{"gateway 429", Classifier{}, nil, gateway(429), ClassThrottle},
		{"gateway 408", Classifier{}, nil, gateway(408), ClassRetry},
		{"gateway 500", Classifier{}, nil, gateway(500), ClassRetry},
		{"gateway 502", Classifier{}, nil, gateway(502), ClassUnknown},
		{"gateway 503", Classifier{}, nil, gateway(503), ClassRetry},
		{"gateway 504", Classifier{}, nil, gateway(504), ClassUnknown},
		{"gateway 404", Classifier{}, nil, gateway(404), ClassPermanent},
		{"gateway 413", Classifier{}, nil, gateway(413), ClassPermanent},
		{"redirect 302", Classifier{}, nil, gateway(302), ClassPermanent},
		{"HTTP 200 unparsable", Classifier{}, nil, gateway(200), ClassUnknown},
		{"HTTP 204 unparsable", Classifier{}, nil, gateway(204), ClassUnknown},
		{"dial error", Classifier{}, nil, &Error{Err: errors.New("connection refused")}, ClassRetry},
		{"reset after write", Classifier{}, nil, &Error{Err: errors.New("EOF"), RequestWritten: true}, ClassUnknown},
		{"deadline after write", Classifier{}, nil, &Error{Err: context.DeadlineExceeded, RequestWritten: true}, ClassUnknown},
		{"read error", Classifier{}, nil, &Error{HTTPStatus: 200, Err: errors.New("reset"), RequestWritten: true}, ClassUnknown},
		{"wrapped Error", Classifier{}, nil, fmt.Errorf("send: %w", body(422)), ClassDuplicate},
		{"canceled before send", Classifier{}, nil, context.Canceled, ClassRetry},
		{"invalid request", Classifier{}, nil, fmt.Errorf("%w: lang", ErrInvalidRequest), ClassPermanent},

		{"override statusCode", Classifier{StatusCodes: map[int]Class{402: ClassRetry}}, nil, body(402), ClassRetry},
		{"override HTTP status", Classifier{StatusCodes: map[int]Class{504: ClassRetry}}, nil, gateway(504), ClassRetry},
		{"override apiCode", Classifier{APICodes: map[int]Class{12004: ClassPermanent}}, nil,
			&Error{HTTPStatus: 200, StatusCode: 500, APICode: 12004}, ClassPermanent},
		{"apiCode wins over statusCode", Classifier{
			StatusCodes: map[int]Class{500: ClassUnknown},
			APICodes:    map[int]Class{12004: ClassThrottle},
		}, nil, &Error{HTTPStatus: 200, StatusCode: 500, APICode: 12004}, ClassThrottle},
		{"statusCode override when apiCode not listed", Classifier{
			StatusCodes: map[int]Class{500: ClassUnknown},
			APICodes:    map[int]Class{1: ClassThrottle},
		}, nil, &Error{HTTPStatus: 200, StatusCode: 500, APICode: 12004}, ClassUnknown},
		{"overrides never touch transport errors", Classifier{StatusCodes: map[int]Class{0: ClassPermanent}}, nil,
			&Error{Err: errors.New("refused")}, ClassRetry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.c.Classify(tt.resp, tt.err); got != tt.want {
				t.Fatalf("Classify(%+v, %v) = %v, want %v", tt.resp, tt.err, got, tt.want)
			}
		})
	}
}

// TestClassifyRule checks that the rule named is the one that decided, in
// the overrides' own form, so that an operator can read from a result
// which override to write.
func TestClassifyRule(t *testing.T) {
	t.Parallel()
	over, err := ParseOverrides("statusCode:429=duplicate,apiCode:40001=duplicate,statusCode:504=retry")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		c    Classifier
		resp *Response
		err  error
		want string
	}{
		{"success", Classifier{}, &Response{HTTPStatus: 200, StatusCode: 200}, nil, "default statusCode:200=sent"},
		{"nil nil", Classifier{}, nil, nil, "default no-answer=unknown"},
		{"422", Classifier{}, nil, &Error{HTTPStatus: 200, StatusCode: 422, APICode: 42201}, "default statusCode:422=duplicate"},
		{"429", Classifier{}, nil, &Error{HTTPStatus: 200, StatusCode: 429}, "default statusCode:429=throttle"},
		{"429 overridden", over, nil, &Error{HTTPStatus: 200, StatusCode: 429}, "override statusCode:429=duplicate"},
		{"400 apiCode", Classifier{}, nil, &Error{HTTPStatus: 200, StatusCode: 400, APICode: 40001}, "default statusCode:400=permanent"},
		{"400 apiCode overridden", over, nil, &Error{HTTPStatus: 200, StatusCode: 400, APICode: 40001}, "override apiCode:40001=duplicate"},
		{"gateway 504", Classifier{}, nil, &Error{HTTPStatus: 504}, "default httpStatus:504=unknown"},
		{"gateway 504 overridden", over, nil, &Error{HTTPStatus: 504}, "override statusCode:504=retry"},
		{"written", Classifier{}, nil, &Error{Err: errors.New("EOF"), RequestWritten: true}, "default transport:written=unknown"},
		{"not written", over, nil, &Error{Err: errors.New("refused")}, "default transport:not-written=retry"},
		{"invalid", Classifier{}, nil, fmt.Errorf("%w: lang", ErrInvalidRequest), "default invalid-request=permanent"},
		{"no call", Classifier{}, nil, context.Canceled, "default no-call=retry"},
	}
	for _, tt := range tests {
		class, rule := tt.c.ClassifyRule(tt.resp, tt.err)
		if rule != tt.want {
			t.Errorf("%s: rule %q, want %q", tt.name, rule, tt.want)
		}
		if !strings.HasSuffix(rule, "="+class.String()) || class != tt.c.Classify(tt.resp, tt.err) {
			t.Errorf("%s: rule %q does not name class %v, or Classify disagrees", tt.name, rule, class)
		}
	}
}

func TestClassString(t *testing.T) {
	t.Parallel()
	for c := ClassSent; c <= ClassUnknown; c++ {
		got, err := ParseClass(strings.ToUpper(c.String()))
		if err != nil || got != c {
			t.Fatalf("ParseClass(%q) = %v, %v; want %v", c.String(), got, err, c)
		}
	}
	if got, want := Class(42).String(), "Class(42)"; got != want {
		t.Fatalf("Class(42).String() = %q, want %q", got, want)
	}
	if _, err := ParseClass("later"); err == nil || !strings.Contains(err.Error(), `"later"`) {
		t.Fatalf("ParseClass(later) error = %v, want one naming the input", err)
	}
}

func TestParseOverrides(t *testing.T) {
	t.Parallel()
	got, err := ParseOverrides(" statusCode:402=retry, apiCode:12004=permanent ,StatusCode:504=Unknown")
	if err != nil {
		t.Fatalf("ParseOverrides: %v", err)
	}
	if got.StatusCodes[402] != ClassRetry || got.StatusCodes[504] != ClassUnknown || len(got.StatusCodes) != 2 {
		t.Fatalf("StatusCodes = %v, want 402=retry 504=unknown", got.StatusCodes)
	}
	if got.APICodes[12004] != ClassPermanent || len(got.APICodes) != 1 {
		t.Fatalf("APICodes = %v, want 12004=permanent", got.APICodes)
	}
	if z, err := ParseOverrides("  "); err != nil || z.StatusCodes != nil || z.APICodes != nil {
		t.Fatalf("ParseOverrides(blank) = %+v, %v; want zero Classifier", z, err)
	}

	bad := []struct{ in, item string }{
		{"statusCode:402", "statusCode:402"},
		{"statusCode402=retry", "statusCode402=retry"},
		{"statusCode:abc=retry", "statusCode:abc=retry"},
		{"statusCode:-1=retry", "statusCode:-1=retry"},
		{"statusCode:402=later", "statusCode:402=later"},
		{"httpCode:402=retry", "httpCode:402=retry"},
		{"statusCode:402=sent", "statusCode:402=sent"},
		{"statusCode:200=retry", "statusCode:200=retry"},
		{"apiCode:1=retry,apiCode:1=permanent", "apiCode:1=permanent"},
		{"statusCode:402=retry,", ""},
	}
	for _, tt := range bad {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			_, err := ParseOverrides(tt.in)
			if err == nil {
				t.Fatalf("ParseOverrides(%q) = nil error, want one", tt.in)
			}
			if want := fmt.Sprintf("%q", tt.item); !strings.Contains(err.Error(), want) {
				t.Fatalf("ParseOverrides(%q) error = %q, want it to name %s", tt.in, err, want)
			}
		})
	}
}

func BenchmarkClassify(b *testing.B) {
	c, err := ParseOverrides("statusCode:402=retry,apiCode:12004=permanent")
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		resp *Response
		err  error
	}{
		{"sent", &Response{HTTPStatus: 200, StatusCode: 200}, nil},
		{"duplicate", nil, &Error{HTTPStatus: 200, StatusCode: 422, APICode: 42201}},
		{"override", nil, &Error{HTTPStatus: 200, StatusCode: 500, APICode: 12004}},
		{"gateway", nil, &Error{HTTPStatus: 502}},
		{"transport", nil, &Error{Err: context.DeadlineExceeded, RequestWritten: true}},
		{"wrapped", nil, fmt.Errorf("task: %w", &Error{HTTPStatus: 200, StatusCode: 429})},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = c.Classify(bc.resp, bc.err)
			}
		})
	}
}
