package genauthtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"time"
)

// APICodeTooFrequent is the apiCode the fake puts on its 422 answer to a
// second send within the window. GenAuth publishes no apiCode values; this
// one is the fake's own.
const APICodeTooFrequent = 42201

// APICodeTooFrequent400 is the apiCode of the fake's 400 answer to a second
// send within the window under TooFrequent400; the fake's own, too.
const APICodeTooFrequent400 = 40001

var (
	channels = map[string]bool{
		"CHANNEL_LOGIN": true, "CHANNEL_REGISTER": true, "CHANNEL_RESET_PASSWORD": true,
		"CHANNEL_BIND_PHONE": true, "CHANNEL_UNBIND_PHONE": true, "CHANNEL_BIND_MFA": true,
		"CHANNEL_VERIFY_MFA": true, "CHANNEL_UNBIND_MFA": true, "CHANNEL_COMPLETE_PHONE": true,
		"CHANNEL_IDENTITY_VERIFICATION": true, "CHANNEL_DELETE_ACCOUNT": true,
	}
	langs         = map[string]bool{"zh-CN": true, "en-US": true, "ja-JP": true, "zh-TW": true}
	phoneRE       = regexp.MustCompile(`^[0-9]{5,15}$`)
	countryCodeRE = regexp.MustCompile(`^\+[1-9][0-9]{0,3}$`)
)

// maxRequestBody caps what the fake reads of a request body.
const maxRequestBody = 64 << 10

// messages are the fake's answer texts by statusCode, in the style of
// GenAuth's English ones.
var messages = map[int]string{
	200: "Operation successful",
	400: "Invalid argument",
	401: "Unauthorized",
	402: "Payment required: SMS quota exhausted",
	403: "Forbidden",
	404: "App not found",
	422: "Sent too frequently, try again later",
	429: "Too many requests",
	500: "Internal server error",
	502: "Bad gateway",
	503: "Service unavailable",
	601: "SMS provider failed",
	602: "SMS provider returned an error",
}

func message(code int) string {
	if m, ok := messages[code]; ok {
		return m
	}
	return "Error " + strconv.Itoa(code)
}

// answer is what the fake decided to reply.
type answer struct {
	httpStatus int
	statusCode int
	apiCode    int
	message    string
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "server closed", http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1)
	s.inFlight++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
		s.wg.Done()
	}()

	body, _ := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
	rec := &Request{
		Time:   s.opts.Now(),
		Method: r.Method,
		Path:   r.URL.Path,
		AppID:  s.header(r, "app-id"),
		Lang:   s.header(r, "lang"),
		RealIP: r.Header.Get("X-Real-Ip"),
		Header: r.Header.Clone(),
	}
	_, rec.HasAuthorization = r.Header["Authorization"]
	var fields struct{ Channel, PhoneNumber, PhoneCountryCode string }
	_ = json.Unmarshal(body, &fields) // best effort, for the record only
	rec.Channel, rec.PhoneNumber, rec.PhoneCountryCode = fields.Channel, fields.PhoneNumber, fields.PhoneCountryCode

	s.mu.Lock()
	s.requests = append(s.requests, rec)
	close(s.changed)
	s.changed = make(chan struct{})
	f, faulty := s.nextFault()
	if faulty {
		rec.Fault = f.Kind.String()
	}
	delay, held := s.latency, s.held
	s.mu.Unlock()

	ctx := r.Context()
	if faulty && f.Kind == FaultLatency {
		delay += f.Latency
	}
	if !s.wait(ctx, delay) {
		return
	}
	if held != nil {
		select {
		case <-held:
		case <-ctx.Done():
			return
		case <-s.done:
			return
		}
	}

	if faulty {
		switch f.Kind {
		case FaultHTTPStatus:
			status := f.StatusCode
			if status == 0 {
				status = http.StatusBadGateway
			}
			s.setAnswer(rec, status)
			writeGateway(w, status, f.RetryAfter)
			return
		case FaultBodyStatus:
			code := f.StatusCode
			if code == 0 {
				code = http.StatusInternalServerError
			}
			s.setAnswer(rec, code)
			writeJSON(w, answer{http.StatusOK, code, f.APICode, message(code)}, f.RetryAfter)
			return
		case FaultDrop, FaultMalformed:
			if !f.SendBeforeFailing {
				s.fail(w, rec, f.Kind)
				return
			}
		}
	}

	a := s.process(r, body, rec)
	if faulty {
		switch f.Kind {
		case FaultDrop, FaultMalformed:
			s.fail(w, rec, f.Kind)
			return
		case FaultTimeout:
			if !s.wait(ctx, f.Latency) {
				return
			}
		}
	}
	s.setAnswer(rec, a.statusCode)
	writeJSON(w, a, 0)
}

// process validates a request as GenAuth does and applies the one-minute
// rule, recording a send in rec.
func (s *Server) process(r *http.Request, body []byte, rec *Request) answer {
	bad := func(msg string) answer {
		return answer{http.StatusOK, 400, 0, messages[400] + ": " + msg}
	}
	switch {
	case r.Method != http.MethodPost:
		return answer{http.StatusMethodNotAllowed, 405, 0, "Method not allowed"}
	case r.URL.Path != Path:
		return answer{http.StatusNotFound, 404, 0, "Cannot " + r.Method + " " + r.URL.Path}
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return bad("Content-Type must be application/json")
	}
	// Every app-id header read must name this app, and every lang header
	// read be a language: under both prefixes, neither may say otherwise.
	for _, id := range s.headerValues(r, "app-id") {
		if id != s.opts.AppID {
			return answer{http.StatusOK, 404, 0, messages[404]}
		}
	}
	if rec.AppID == "" {
		return answer{http.StatusOK, 404, 0, messages[404]}
	}
	for _, l := range s.headerValues(r, "lang") {
		if !langs[l] {
			return bad("unsupported lang")
		}
	}
	var req struct {
		Channel          *string `json:"channel"`
		PhoneNumber      *string `json:"phoneNumber"`
		PhoneCountryCode *string `json:"phoneCountryCode"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return bad("body is not a valid send-sms request: " + err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return bad("unexpected data after the JSON body")
	}
	switch {
	case req.Channel == nil || *req.Channel == "":
		return bad("channel is required")
	case !channels[*req.Channel]:
		return bad("unknown channel")
	case req.PhoneNumber == nil || *req.PhoneNumber == "":
		return bad("phoneNumber is required")
	case !phoneRE.MatchString(*req.PhoneNumber):
		return bad("phoneNumber must be 5 to 15 digits without country code")
	case req.PhoneCountryCode != nil && *req.PhoneCountryCode != "" && !countryCodeRE.MatchString(*req.PhoneCountryCode):
		return bad("phoneCountryCode must look like +86")
	}
	cc := ""
	if req.PhoneCountryCode != nil {
		cc = *req.PhoneCountryCode
	}
	key := phoneKey{normCountry(cc), *req.PhoneNumber, *req.Channel}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	if last, ok := s.lastSent[key]; ok && now.Sub(last) < s.opts.Window {
		return s.opts.TooFrequent.answer()
	}
	s.lastSent[key] = now
	rec.Sent = true
	return answer{http.StatusOK, 200, 0, messages[200]}
}

// prefixes returns the header prefixes the fake reads, in order.
func (s *Server) prefixes() []string {
	if s.opts.HeaderPrefix != "" {
		return []string{s.opts.HeaderPrefix}
	}
	return []string{PrefixGenAuth, PrefixAuthing}
}

// header returns the first non-empty value of name under the prefixes the
// fake reads.
func (s *Server) header(r *http.Request, name string) string {
	if v := s.headerValues(r, name); len(v) > 0 {
		return v[0]
	}
	return ""
}

// headerValues returns the non-empty values of name under the prefixes the
// fake reads. An empty header counts as absent, as an SDK with no language
// configured may send one.
func (s *Server) headerValues(r *http.Request, name string) []string {
	var out []string
	for _, p := range s.prefixes() {
		for _, v := range r.Header.Values(p + name) {
			if v != "" {
				out = append(out, v)
			}
		}
	}
	return out
}

// answer is the refusal of a second send inside the window, in the shape.
func (t TooFrequent) answer() answer {
	switch t {
	case TooFrequent429:
		return answer{http.StatusOK, 429, 0, messages[429]}
	case TooFrequent400:
		return answer{http.StatusOK, 400, APICodeTooFrequent400, messages[400] + ": sent too frequently, try again later"}
	default:
		return answer{http.StatusOK, 422, APICodeTooFrequent, messages[422]}
	}
}

// fail answers with the malformed body or drops the connection.
func (s *Server) fail(w http.ResponseWriter, rec *Request, kind FaultKind) {
	if kind == FaultMalformed {
		s.setAnswer(rec, http.StatusOK)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, `{"statusCode":200,"message":"Operation succ`)
		return
	}
	// Answer stays 0: nothing was answered.
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler) // the server resets the stream instead
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	conn.Close()
}

func (s *Server) setAnswer(rec *Request, code int) {
	s.mu.Lock()
	rec.Answer = code
	s.mu.Unlock()
}

// wait sleeps d, reporting false if the client went away or the server
// closed first.
func (s *Server) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.done:
		return false
	}
}

func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	if d > 0 {
		secs := (d + time.Second - 1) / time.Second
		w.Header().Set("Retry-After", strconv.FormatInt(int64(secs), 10))
	}
}

func writeJSON(w http.ResponseWriter, a answer, retryAfter time.Duration) {
	body := struct {
		StatusCode int    `json:"statusCode"`
		Message    string `json:"message"`
		APICode    int    `json:"apiCode,omitempty"`
		RequestID  string `json:"requestId"`
	}{a.statusCode, a.message, a.apiCode, newRequestID()}
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	setRetryAfter(w, retryAfter)
	w.WriteHeader(a.httpStatus)
	w.Write(b)
}

// writeGateway answers like a reverse proxy that could not reach GenAuth.
func writeGateway(w http.ResponseWriter, status int, retryAfter time.Duration) {
	text := strconv.Itoa(status) + " " + http.StatusText(status)
	w.Header().Set("Content-Type", "text/html")
	setRetryAfter(w, retryAfter)
	w.WriteHeader(status)
	fmt.Fprintf(w, "<html>\r\n<head><title>%s</title></head>\r\n<body>\r\n<center><h1>%s</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n", text, text)
}
