package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/smsq/smsq/internal/phone"
)

// ProblemTypePrefix starts every problem type URI: the type is a name,
// not a page (RFC 9457 allows URIs that do not resolve).
const ProblemTypePrefix = "urn:smsq:problem:"

// Problem is an RFC 9457 problem document. Field, an extension member,
// names the request field at fault when there is one; Detail names it too.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Field  string `json:"field,omitempty"`
	// RetryAfter mirrors the Retry-After header, in seconds.
	RetryAfter int `json:"retryAfter,omitempty"`
}

// Problem kinds: their type's last part, title and status.
type kind struct {
	slug   string
	title  string
	status int
}

var (
	kindUnauthorized     = kind{"unauthorized", "Missing or unknown API key", http.StatusUnauthorized}
	kindInvalid          = kind{"invalid-request", "The request has an invalid field", http.StatusBadRequest}
	kindNotFound         = kind{"not-found", "No such resource", http.StatusNotFound}
	kindMethod           = kind{"method-not-allowed", "Method not allowed on this resource", http.StatusMethodNotAllowed}
	kindKeyInUse         = kind{"idempotency-key-in-use", "The idempotency key is in use", http.StatusConflict}
	kindKeyReused        = kind{"idempotency-key-reused", "The idempotency key was used with another request", http.StatusUnprocessableEntity}
	kindTooLarge         = kind{"body-too-large", "The request body is too large", http.StatusRequestEntityTooLarge}
	kindMediaType        = kind{"unsupported-media-type", "Unsupported content type", http.StatusUnsupportedMediaType}
	kindRateLimited      = kind{"rate-limited", "Too many requests for this API key", http.StatusTooManyRequests}
	kindNotImplemented   = kind{"not-implemented", "Not available on this server", http.StatusNotImplemented}
	kindUnavailable      = kind{"unavailable", "The queue is unavailable; retry with the same idempotency key", http.StatusServiceUnavailable}
	kindTimeout          = kind{"timeout", "The request timed out; retry with the same idempotency key", http.StatusServiceUnavailable}
	kindBusy             = kind{"busy", "Too many batches in progress on this server", http.StatusServiceUnavailable}
	kindHeaderOrBodyRead = kind{"bad-body", "The request body could not be read", http.StatusBadRequest}
)

// allKinds lists every kind, for the test that the document has them all.
var allKinds = []kind{
	kindUnauthorized, kindInvalid, kindNotFound, kindMethod, kindKeyInUse, kindKeyReused, kindTooLarge,
	kindMediaType, kindRateLimited, kindNotImplemented, kindUnavailable, kindTimeout, kindBusy, kindHeaderOrBodyRead,
}

// problem builds the document of k. detail is masked: no answer carries a
// phone number in full.
func problem(k kind, field, detail string) Problem {
	return Problem{Type: ProblemTypePrefix + k.slug, Title: k.title, Status: k.status, Detail: phone.MaskText(detail), Field: field}
}

// writeProblem answers with p, adding Retry-After when it has one.
func writeProblem(w http.ResponseWriter, p Problem) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	if p.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(p.RetryAfter))
	}
	if p.Status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="smsq"`)
	}
	w.WriteHeader(p.Status)
	data, _ := json.Marshal(p)
	w.Write(append(data, '\n'))
}

// retrySeconds rounds a wait up to whole seconds, at least 1, for
// Retry-After.
func retrySeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// requestFields are the names a detail may start with, for Problem.Field.
var requestFields = []string{
	"channel", "phoneNumber", "phoneCountryCode", "clientIp", "lang", "onHeld", "sendBy",
	"queue", "delay", "sendWithin", "idempotencyKey", "source",
}

// fieldOf is the request field a validation message is about: the known
// name it starts with, or "".
func fieldOf(msg string) string {
	for _, f := range requestFields {
		if rest, ok := strings.CutPrefix(msg, f); ok && (rest == "" || rest[0] == ':' || rest[0] == ' ') {
			return f
		}
	}
	return ""
}
