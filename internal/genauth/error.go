package genauth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// maxBodySize caps how much of an answer is read. A send-sms answer is a few
// hundred bytes; anything larger is not GenAuth's and is not worth holding.
const maxBodySize = 64 << 10

// maxErrorBody is how much of a non-JSON body Error.Body keeps, enough to
// recognise a proxy's error page.
const maxErrorBody = 256

// Error is every failed send-sms call: a business failure reported in the
// body, an answer that is not GenAuth's JSON, or no usable answer at all.
type Error struct {
	// HTTPStatus is the HTTP status code, 0 when no response arrived.
	HTTPStatus int
	// StatusCode is the body's statusCode, 0 when the body was not JSON or
	// had none.
	StatusCode int
	// APICode is the body's apiCode, GenAuth's finer-grained error code,
	// 0 when absent.
	APICode int
	// Message is the body's message, localised by GenAuth.
	Message string
	// RequestID is GenAuth's id for the call, to quote to its support.
	RequestID string
	// RetryAfter is the wait asked for by a Retry-After header, 0 if none.
	RetryAfter time.Duration
	// Body holds the start of a body that was not usable JSON, for
	// operators to see what answered instead of GenAuth.
	Body string
	// Err is the transport or read error when no usable response arrived.
	Err error
	// RequestWritten is set for transport errors when the request had been
	// written before the failure: GenAuth may have processed it and sent
	// the SMS.
	RequestWritten bool
}

// Error describes the failure with its statuses and ids. It never includes
// the phone number or the access token.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("genauth: send-sms: ")
	if e.Err != nil {
		switch {
		case e.HTTPStatus != 0:
			fmt.Fprintf(&b, "HTTP %d: reading answer: %v", e.HTTPStatus, e.Err)
		case e.RequestWritten:
			fmt.Fprintf(&b, "no answer after the request was sent, outcome unknown: %v", e.Err)
		default:
			fmt.Fprintf(&b, "request not sent: %v", e.Err)
		}
		return b.String()
	}
	fmt.Fprintf(&b, "HTTP %d", e.HTTPStatus)
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, ", statusCode %d", e.StatusCode)
	} else {
		b.WriteString(", no JSON statusCode")
	}
	if e.APICode != 0 {
		fmt.Fprintf(&b, ", apiCode %d", e.APICode)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " (requestId %s)", e.RequestID)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %v)", e.RetryAfter)
	}
	return b.String()
}

// Unwrap returns the transport error, if any, so errors.Is can find
// context.DeadlineExceeded and the like.
func (e *Error) Unwrap() error { return e.Err }

// flexInt decodes a JSON number or a numeric string, because gateways in
// front of GenAuth are not guaranteed to type codes the way it does.
type flexInt int

func (f *flexInt) UnmarshalJSON(b []byte) error {
	b = bytes.Trim(b, `"`)
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	n, err := strconv.ParseFloat(string(b), 64)
	if err != nil || n != math.Trunc(n) || math.Abs(n) > math.MaxInt32 {
		return fmt.Errorf("not an integer code: %s", b)
	}
	*f = flexInt(n)
	return nil
}

// apiBody is GenAuth's answer body. There is no data field on send-sms.
type apiBody struct {
	StatusCode flexInt `json:"statusCode"`
	Message    string  `json:"message"`
	APICode    flexInt `json:"apiCode"`
	RequestID  string  `json:"requestId"`
}

// checkResponse turns an HTTP response into a Response when its body says
// statusCode 200, and into an *Error otherwise. It is the one place answers
// are judged. It reads at most maxBodySize bytes; the caller closes the
// body.
func checkResponse(r *http.Response, now func() time.Time) (*Response, error) {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBodySize+1))
	if err != nil {
		// The status line arrived, so the request was certainly written.
		return nil, &Error{HTTPStatus: r.StatusCode, Err: err, RequestWritten: true,
			RetryAfter: parseRetryAfter(r.Header.Get("Retry-After"), now)}
	}
	e := &Error{
		HTTPStatus: r.StatusCode,
		RetryAfter: parseRetryAfter(r.Header.Get("Retry-After"), now),
		RequestID:  r.Header.Get("X-Request-Id"),
	}
	var body apiBody
	switch {
	case len(data) > maxBodySize:
		e.Message = fmt.Sprintf("answer larger than %d bytes", maxBodySize)
		e.Body = clip(data)
		return nil, e
	case json.Unmarshal(data, &body) != nil:
		e.Body = clip(data)
		return nil, e
	}
	if body.RequestID != "" {
		e.RequestID = body.RequestID
	}
	if body.StatusCode == http.StatusOK {
		return &Response{
			HTTPStatus: r.StatusCode,
			StatusCode: int(body.StatusCode),
			APICode:    int(body.APICode),
			Message:    body.Message,
			RequestID:  e.RequestID,
		}, nil
	}
	if body.StatusCode == 0 {
		// JSON, but not GenAuth's shape: most likely a gateway's own error.
		e.Body = clip(data)
	}
	e.StatusCode = int(body.StatusCode)
	e.APICode = int(body.APICode)
	e.Message = body.Message
	return nil, e
}

// clip returns the start of b as valid, printable UTF-8 for Error.Body.
func clip(b []byte) string {
	if len(b) > maxErrorBody {
		b = b[:maxErrorBody]
		// Drop a rune cut in half rather than show a replacement char.
		for len(b) > 0 && !utf8.Valid(b) && len(b) > maxErrorBody-utf8.UTFMax {
			b = b[:len(b)-1]
		}
	}
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	return strings.Map(func(r rune) rune {
		if r < ' ' && r != '\n' && r != '\t' {
			return -1
		}
		return r
	}, s)
}

// parseRetryAfter reads a Retry-After header, either delay-seconds or an
// HTTP date. Anything unparsable, negative or in the past is 0.
func parseRetryAfter(v string, now func() time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 || secs > int64(math.MaxInt64/time.Second) {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now()); d > 0 {
			return d
		}
	}
	return 0
}
