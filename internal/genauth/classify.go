package genauth

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// Class is what a send-sms outcome means for the caller's next step.
type Class int

// The classes, from best to worst understood.
const (
	// ClassSent: GenAuth accepted the request and sent the SMS.
	ClassSent Class = iota
	// ClassRetry: a definite failure before anything was sent, likely to
	// pass later. Retrying cannot send a second code.
	ClassRetry
	// ClassThrottle: GenAuth asked to slow down (429). Nothing was sent;
	// wait for Error.RetryAfter and try again. Not a failure of the task.
	ClassThrottle
	// ClassDuplicate: GenAuth already sent to this phone on this channel
	// within its one-minute window (422), so the user has a code.
	ClassDuplicate
	// ClassPermanent: the request will never succeed as it is (bad number,
	// wrong app id, quota exhausted, a proxy rejecting it).
	ClassPermanent
	// ClassUnknown: the request may have been processed and the SMS may
	// have gone out, but no usable answer arrived. A blind retry could send
	// a second, different code.
	ClassUnknown
)

var classNames = [...]string{
	ClassSent:      "sent",
	ClassRetry:     "retry",
	ClassThrottle:  "throttle",
	ClassDuplicate: "duplicate",
	ClassPermanent: "permanent",
	ClassUnknown:   "unknown",
}

// String returns the class's lower-case name, as ParseClass reads it.
func (c Class) String() string {
	if c >= 0 && int(c) < len(classNames) {
		return classNames[c]
	}
	return "Class(" + strconv.Itoa(int(c)) + ")"
}

// ParseClass returns the class named s (case and surrounding spaces
// ignored).
func ParseClass(s string) (Class, error) {
	name := strings.ToLower(strings.TrimSpace(s))
	for i, n := range classNames {
		if n == name {
			return Class(i), nil
		}
	}
	return 0, fmt.Errorf("genauth: unknown class %q: want one of %s", s, strings.Join(classNames[:], ", "))
}

// Classifier sorts send-sms outcomes into classes. Its maps let operators
// change the meaning of codes GenAuth does not document, without a new
// release; the zero value applies the defaults only.
type Classifier struct {
	// StatusCodes overrides the class of a body statusCode or, when the
	// body carried none, of the HTTP status.
	StatusCodes map[int]Class
	// APICodes overrides the class of a body apiCode. It wins over
	// StatusCodes, since an apiCode is the more precise of the two.
	APICodes map[int]Class
}

// ParseOverrides reads a Classifier from a comma-separated list such as
// "statusCode:402=retry,apiCode:12004=permanent". An empty string gives the
// zero Classifier. Overriding to "sent", or overriding statusCode 200, is
// refused: only GenAuth's own success may count as a delivered code.
func ParseOverrides(s string) (Classifier, error) {
	var c Classifier
	if strings.TrimSpace(s) == "" {
		return c, nil
	}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		bad := func(why string) (Classifier, error) {
			return Classifier{}, fmt.Errorf("genauth: classifier override %q: %s", item, why)
		}
		key, value, ok := strings.Cut(item, "=")
		if !ok {
			return bad(`want kind:code=class, such as "statusCode:402=retry"`)
		}
		kind, codeStr, ok := strings.Cut(strings.TrimSpace(key), ":")
		if !ok {
			return bad(`want kind:code=class, such as "statusCode:402=retry"`)
		}
		code, err := strconv.Atoi(strings.TrimSpace(codeStr))
		if err != nil || code <= 0 {
			return bad("code must be a positive integer")
		}
		class, err := ParseClass(value)
		if err != nil {
			return bad(err.Error())
		}
		if class == ClassSent {
			return bad("a failure cannot be reclassified as sent")
		}
		var m *map[int]Class
		switch strings.ToLower(strings.TrimSpace(kind)) {
		case "statuscode":
			if code == http.StatusOK {
				return bad("statusCode 200 is success and cannot be overridden")
			}
			m = &c.StatusCodes
		case "apicode":
			m = &c.APICodes
		default:
			return bad(`kind must be "statusCode" or "apiCode"`)
		}
		if *m == nil {
			*m = make(map[int]Class)
		}
		if _, dup := (*m)[code]; dup {
			return bad("code given twice")
		}
		(*m)[code] = class
	}
	return c, nil
}

// Classify returns the class of a SendSMS result. Overrides apply to
// answers GenAuth or a gateway gave, never to transport failures or to
// success, whose meaning does not depend on GenAuth's codes.
func (c Classifier) Classify(resp *Response, err error) Class {
	class, _ := c.ClassifyRule(resp, err)
	return class
}

// ClassifyRule is Classify that also names the rule that decided, so that
// a result can say why an answer meant what it did: "default " or
// "override " (a ParseOverrides entry), then the rule in the overrides'
// own kind:code=class form where it has one ("default statusCode:422=
// duplicate", "override apiCode:40001=duplicate"; "httpStatus:" for a
// gateway's answer without a body statusCode, which a statusCode override
// also matches), or the kind of failure without an answer ("default
// transport:written=unknown").
func (c Classifier) ClassifyRule(resp *Response, err error) (Class, string) {
	if err == nil {
		if resp == nil {
			// Not a SendSMS result; refuse to claim anything was sent.
			return ClassUnknown, "default no-answer=unknown"
		}
		if resp.StatusCode == http.StatusOK {
			return ClassSent, "default statusCode:200=sent"
		}
		return c.classifyCodes(resp.HTTPStatus, resp.StatusCode, resp.APICode)
	}
	e, ok := errors.AsType[*Error](err)
	if !ok {
		if errors.Is(err, ErrInvalidRequest) {
			return ClassPermanent, "default invalid-request=permanent"
		}
		// Failed before any call was made, e.g. the context was canceled
		// while waiting for a connection.
		return ClassRetry, "default no-call=retry"
	}
	if e.Err != nil {
		if e.RequestWritten {
			return ClassUnknown, "default transport:written=unknown"
		}
		return ClassRetry, "default transport:not-written=retry"
	}
	return c.classifyCodes(e.HTTPStatus, e.StatusCode, e.APICode)
}

// rule names a code rule for ClassifyRule.
func rule(source, kind string, code int, class Class) string {
	return source + " " + kind + ":" + strconv.Itoa(code) + "=" + class.String()
}

// classifyCodes classifies an answer by its codes: the body's apiCode and
// statusCode when it had them, else the HTTP status.
func (c Classifier) classifyCodes(httpStatus, statusCode, apiCode int) (Class, string) {
	if apiCode != 0 {
		if class, ok := c.APICodes[apiCode]; ok {
			return class, rule("override", "apiCode", apiCode, class)
		}
	}
	if statusCode == 0 {
		if class, ok := c.StatusCodes[httpStatus]; ok {
			return class, rule("override", "statusCode", httpStatus, class)
		}
		class := classifyHTTPStatus(httpStatus)
		return class, rule("default", "httpStatus", httpStatus, class)
	}
	if class, ok := c.StatusCodes[statusCode]; ok {
		return class, rule("override", "statusCode", statusCode, class)
	}
	class := classifyStatusCode(statusCode)
	return class, rule("default", "statusCode", statusCode, class)
}

// classifyStatusCode is the default meaning of a body statusCode.
func classifyStatusCode(code int) Class {
	switch {
	case code == 422:
		// Assumed to be GenAuth's answer to a second send within the
		// minute (the first code is still valid): GenAuth documents 422
		// only as a generic business-rule refusal and publishes no apiCode
		// for the rule. A tenant that answers the rule otherwise (429, or
		// 400 with an apiCode) is served by an override; see the README.
		return ClassDuplicate
	case code == http.StatusTooManyRequests:
		return ClassThrottle
	case code >= 500:
		// 500-503 are GenAuth's own failures, 601 and 602 its SMS
		// provider's; GenAuth reports them when the SMS did not go out.
		return ClassRetry
	default:
		// 400-404 and anything undocumented: the request as built is
		// refused, and repeating it would be refused again.
		return ClassPermanent
	}
}

// classifyHTTPStatus is the default meaning of an answer without a
// GenAuth statusCode, usually a gateway's or proxy's.
func classifyHTTPStatus(status int) Class {
	switch {
	case status == http.StatusTooManyRequests:
		return ClassThrottle
	case status == http.StatusRequestTimeout:
		// The server gave up waiting for the request, so it never ran.
		return ClassRetry
	case status == http.StatusGatewayTimeout, status == http.StatusBadGateway:
		// The gateway stopped waiting for GenAuth, or lost its connection
		// to it, possibly after GenAuth had the request: the SMS may have
		// been sent.
		return ClassUnknown
	case status >= 500:
		return ClassRetry
	case status >= 200 && status < 300:
		// GenAuth handled the call but its answer is unreadable.
		return ClassUnknown
	default:
		// Other 4xx, and 3xx (the client does not follow redirects): the
		// request is refused before reaching GenAuth.
		return ClassPermanent
	}
}

// dialFailed reports whether a transport error is a failure to open the
// connection: a refused or unreachable address, a failed look-up, or this
// process or machine out of files, buffers or ports (EMFILE, ENFILE,
// ENOBUFS, EADDRNOTAVAIL). None of the request left then, even when the
// transport reported a write before: it moves a POST to a new connection
// only when nothing of it was written on the old one (HTTP/2: when the
// server refused the stream unprocessed). Such a local failure is a retry,
// never a possible send and never a permanent failure.
func dialFailed(err error) bool {
	op, ok := errors.AsType[*net.OpError](err)
	return ok && op.Op == "dial"
}
