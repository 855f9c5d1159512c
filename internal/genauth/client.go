package genauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Defaults filled in by New.
const (
	// DefaultTimeout is the time one call may take, the value GenAuth's own
	// SDKs use.
	DefaultTimeout = 10 * time.Second
	// DefaultUserAgent is sent when Config.UserAgent is empty.
	DefaultUserAgent = "smsq"
	// PrefixGenAuth is the header prefix of the GenAuth-branded Node and
	// Python SDKs.
	PrefixGenAuth = "x-genauth-"
	// PrefixAuthing is the header prefix of the Go and Java SDKs and the
	// Authing-branded Node and Python SDKs.
	PrefixAuthing = "x-authing-"
)

// sendSMSPath is the API path, appended to Config.AppHost.
const sendSMSPath = "/api/v3/send-sms"

// ErrInvalidRequest is wrapped by the error SendSMS returns, without making
// any call, when a SendSMSRequest cannot be put on the wire as it is (an
// unknown channel, a lang outside Langs, an unparsable client IP, a header
// value with control characters). Such a request would fail the same way
// every time, so Classify calls it permanent.
var ErrInvalidRequest = errors.New("genauth: invalid request")

// Config configures a Client. The zero value of each optional field selects
// its default.
type Config struct {
	// AppHost is the application's authentication address: scheme and host,
	// optionally a port, such as https://example.genauth.ai. It has no path
	// or query. http is allowed for tests and private deployments.
	AppHost string
	// AppID identifies the application; it is sent in the <prefix>app-id
	// header. Required.
	AppID string
	// HeaderPrefix is PrefixGenAuth or PrefixAuthing to send the app id and
	// language under that prefix only. Empty (the default) sends both under
	// each: which names a host reads is not documented, GenAuth's own SDKs
	// use both (the Go SDK x-authing-, the GenAuth Node SDK x-genauth-), and
	// a private deployment or custom domain may read either.
	HeaderPrefix string
	// Lang is the default language of GenAuth's messages and SMS template,
	// one of Langs. Empty leaves the choice to GenAuth.
	Lang string
	// Timeout bounds each call, including reading the answer. Zero means
	// DefaultTimeout; negative is an error.
	Timeout time.Duration
	// HTTPClient makes the calls. When nil, the Client uses its own, with a
	// transport sized for many concurrent calls to one host. A client given
	// here is used as is; it should not follow redirects.
	HTTPClient *http.Client
	// WrapTransport, when set, wraps the HTTP client's transport (tracing
	// installs its client spans there). The client is copied, not changed.
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// UserAgent is sent as the User-Agent header. Empty means
	// DefaultUserAgent.
	UserAgent string
}

// withDefaults returns a copy of cfg with every unset optional field filled
// in. It is the only place defaults are decided.
func (cfg Config) withDefaults() Config {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = newHTTPClient()
	}
	if cfg.WrapTransport != nil {
		hc := *cfg.HTTPClient
		rt := hc.Transport
		if rt == nil {
			rt = http.DefaultTransport
		}
		hc.Transport = cfg.WrapTransport(rt)
		cfg.HTTPClient = &hc
		cfg.WrapTransport = nil
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	return cfg
}

// newHTTPClient returns the default HTTP client. It has its own transport so
// that its connection pool is not shared with, or starved by, the rest of
// the process: with many workers sending at once to one host, the standard
// library's default of two idle connections per host would make most calls
// open a new TLS connection.
func newHTTPClient() *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          512,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   5 * time.Second,
			ExpectContinueTimeout: 1 * time.Second,
		},
		// A redirected POST would be a second attempt the caller did not
		// ask for; the redirect answer itself is reported instead.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// parseAppHost checks s and returns it normalised to scheme://host[:port].
func parseAppHost(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("genauth: AppHost %q: %v", s, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("genauth: AppHost %q: must be an http or https URL", s)
	case u.Host == "" || u.Hostname() == "":
		return "", fmt.Errorf("genauth: AppHost %q: has no host", s)
	case u.User != nil:
		return "", fmt.Errorf("genauth: AppHost %q: must not carry credentials", s)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.ForceQuery, u.Fragment != "":
		return "", fmt.Errorf("genauth: AppHost %q: must be scheme and host only, without path, query or fragment", s)
	}
	u.Host = strings.ToLower(u.Host)
	u.Path = ""
	return u.Scheme + "://" + u.Host, nil
}

// validHeaderValue reports whether s can be sent as an HTTP header value
// unchanged: printable ASCII and spaces only, so it can neither break the
// request nor be altered on the way.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > '~' {
			return false
		}
	}
	return true
}

// Client sends SMS verification codes through GenAuth. It is safe for
// concurrent use.
type Client struct {
	appHost   string
	endpoint  string
	appID     string
	prefixes  []string
	lang      string
	timeout   time.Duration
	http      *http.Client
	userAgent string
	now       func() time.Time // for Retry-After dates
}

// New validates cfg and returns a Client. Every error names the setting at
// fault.
func New(cfg Config) (*Client, error) {
	appHost, err := parseAppHost(cfg.AppHost)
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	switch {
	case cfg.AppID == "":
		return nil, errors.New("genauth: AppID: required")
	case strings.TrimSpace(cfg.AppID) != cfg.AppID || !validHeaderValue(cfg.AppID):
		return nil, fmt.Errorf("genauth: AppID %q: must be printable ASCII without surrounding spaces", cfg.AppID)
	case cfg.HeaderPrefix != "" && cfg.HeaderPrefix != PrefixGenAuth && cfg.HeaderPrefix != PrefixAuthing:
		return nil, fmt.Errorf("genauth: HeaderPrefix %q: must be %q, %q, or empty for both", cfg.HeaderPrefix, PrefixGenAuth, PrefixAuthing)
	case cfg.Lang != "" && !ValidLang(cfg.Lang):
		return nil, fmt.Errorf("genauth: Lang %q: must be one of %s", cfg.Lang, strings.Join(Langs, ", "))
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("genauth: Timeout %v: must not be negative", cfg.Timeout)
	case !validHeaderValue(cfg.UserAgent):
		return nil, fmt.Errorf("genauth: UserAgent %q: must be printable ASCII", cfg.UserAgent)
	}
	return &Client{
		appHost:   appHost,
		endpoint:  appHost + sendSMSPath,
		appID:     cfg.AppID,
		prefixes:  headerPrefixes(cfg.HeaderPrefix),
		lang:      cfg.Lang,
		timeout:   cfg.Timeout,
		http:      cfg.HTTPClient,
		userAgent: cfg.UserAgent,
		now:       time.Now,
	}, nil
}

// AppHost returns the normalised authentication address the client calls,
// scheme://host[:port].
func (c *Client) AppHost() string { return c.appHost }

// headerPrefixes returns the prefixes the app id and language go under:
// the one chosen, or both.
func headerPrefixes(chosen string) []string {
	if chosen != "" {
		return []string{chosen}
	}
	return []string{PrefixAuthing, PrefixGenAuth}
}

// HeaderPrefixes returns the prefixes the client sends the app id and
// language under.
func (c *Client) HeaderPrefixes() []string { return append([]string(nil), c.prefixes...) }

// SendSMSRequest is one verification code to send.
type SendSMSRequest struct {
	// Channel is the purpose of the code; required.
	Channel Channel
	// PhoneNumber is the national number, digits only, without country
	// code.
	PhoneNumber string
	// PhoneCountryCode is the country calling code in "+86" form. Empty
	// leaves it out, which GenAuth reads as mainland China.
	PhoneCountryCode string
	// ClientIP is the end user's IP address, sent as x-real-ip so that
	// GenAuth's per-IP limits count the user rather than this service.
	ClientIP string
	// Lang overrides Config.Lang for this call.
	Lang string
	// AccessToken is a logged-in user's token, sent raw as the
	// authorization header when set. It never appears in errors.
	AccessToken string
}

// String describes r for logs without its token and with the phone number
// masked.
func (r SendSMSRequest) String() string {
	s := fmt.Sprintf("channel=%s phone=%s%s", r.Channel, r.PhoneCountryCode, maskPhone(r.PhoneNumber))
	if r.AccessToken != "" {
		s += " authorization=set"
	}
	return s
}

// maskPhone keeps the first three and last two digits of a number, enough
// for an operator to tell numbers apart without holding a usable one.
func maskPhone(p string) string {
	if len(p) <= 5 {
		return strings.Repeat("*", len(p))
	}
	return p[:3] + strings.Repeat("*", len(p)-5) + p[len(p)-2:]
}

// Response is GenAuth's answer to a successful send.
type Response struct {
	// HTTPStatus is the HTTP status code, normally 200.
	HTTPStatus int
	// StatusCode is the body's statusCode, 200 on success.
	StatusCode int
	// APICode is the body's apiCode, normally absent (0) on success.
	APICode int
	// Message is the body's localised message.
	Message string
	// RequestID is GenAuth's id for the call, to quote to its support.
	RequestID string
}

// sendSMSBody is the JSON request body.
type sendSMSBody struct {
	Channel          Channel `json:"channel"`
	PhoneNumber      string  `json:"phoneNumber"`
	PhoneCountryCode string  `json:"phoneCountryCode,omitempty"`
}

// newRequest checks req for what can be known locally to be unsendable and
// builds the HTTP request. Phone numbers are left to GenAuth to judge,
// because its rules for them are its own and change with its providers.
func (c *Client) newRequest(ctx context.Context, req SendSMSRequest) (*http.Request, error) {
	if !req.Channel.Valid() {
		return nil, fmt.Errorf("%w: channel %q is not one of the known channels", ErrInvalidRequest, req.Channel)
	}
	lang := c.lang
	if req.Lang != "" {
		if !ValidLang(req.Lang) {
			return nil, fmt.Errorf("%w: lang %q: must be one of %s", ErrInvalidRequest, req.Lang, strings.Join(Langs, ", "))
		}
		lang = req.Lang
	}
	if req.ClientIP != "" {
		if err := CheckClientIP(req.ClientIP); err != nil {
			// Not quoted: it failed the check, so it may hold anything.
			return nil, fmt.Errorf("%w: client IP: %v", ErrInvalidRequest, err)
		}
	}
	if !validHeaderValue(req.AccessToken) {
		// The token itself must not be quoted here.
		return nil, fmt.Errorf("%w: access token contains characters not allowed in a header", ErrInvalidRequest)
	}
	body, err := json.Marshal(sendSMSBody{
		Channel:          req.Channel,
		PhoneNumber:      req.PhoneNumber,
		PhoneCountryCode: req.PhoneCountryCode,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRequest, err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRequest, err)
	}
	h := hr.Header
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json")
	h.Set("User-Agent", c.userAgent)
	for _, p := range c.prefixes {
		h.Set(p+"app-id", c.appID)
		if lang != "" {
			h.Set(p+"lang", lang)
		}
	}
	if req.ClientIP != "" {
		h.Set("x-real-ip", req.ClientIP)
	}
	if req.AccessToken != "" {
		h.Set("authorization", req.AccessToken)
	}
	return hr, nil
}

// SendSMS asks GenAuth to send a verification code. It makes exactly one
// attempt. It returns a Response only when the body's statusCode is 200;
// every other outcome, including transport failures, is an *Error, except a
// request that cannot be sent as it is, which wraps ErrInvalidRequest.
func (c *Client) SendSMS(ctx context.Context, req SendSMSRequest) (*Response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	// Whether the request left this process decides between "nothing was
	// sent, retry" and "the SMS may have gone out" when no answer comes.
	// Any write the transport reports, finished or failed part way, counts
	// (see below).
	var wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteHeaders: func() { wrote.Store(true) },
		WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) },
	})

	hr, err := c.newRequest(ctx, req)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		// Anything but "nothing written" counts as written: the transport
		// reports completion from its own goroutine and may do so after Do
		// has returned, and once bytes are on the wire the server may have
		// the whole request, even when the write is reported as failed
		// (over HTTP/2 the end of the stream can be a frame of its own).
		// A dial error as the last word overrides it (see dialFailed).
		return nil, &Error{Err: err, RequestWritten: wrote.Load() && !dialFailed(err)}
	}
	defer resp.Body.Close()
	out, err := checkResponse(resp, c.now)
	if err != nil {
		if e, ok := errors.AsType[*Error](err); ok {
			e.Message = redact(e.Message, req.PhoneNumber, req.AccessToken)
			e.Body = redact(e.Body, req.PhoneNumber, req.AccessToken)
		}
		return nil, err
	}
	return out, nil
}

// redact removes the phone number and token from text GenAuth or a proxy
// wrote, which may echo the request back, before it reaches logs.
func redact(s, phone, token string) string {
	if len(phone) >= 5 {
		s = strings.ReplaceAll(s, phone, maskPhone(phone))
	}
	if len(token) >= 4 {
		s = strings.ReplaceAll(s, token, "[token]")
	}
	return s
}

// CheckClientIP accepts the end user's address as sent in x-real-ip: a
// plain IPv4 or IPv6 address. netip.ParseAddr also accepts an IPv6 zone
// ("fe80::1%eth0") holding any byte, so "fe80::1%1.2.3.4, 6.6.6.6" would
// forge the header's value and a zone holding CR/LF would fail in net/http
// on every attempt; a zone means nothing to GenAuth, so it is refused, and
// so is any byte that is not printable ASCII. The error does not quote s.
func CheckClientIP(s string) error {
	a, err := netip.ParseAddr(s)
	if err == nil && a.Zone() != "" {
		return errors.New("has an IPv6 zone (%...), which is not an address GenAuth can use")
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return fmt.Errorf("holds a control, space or non-ASCII byte at offset %d", i)
		}
	}
	if err != nil {
		return errors.New("is not an IP address")
	}
	return nil
}
