// Package genauthtest is a fake GenAuth send-sms API for tests, benchmarks
// and the worker's sandbox mode.
//
// The fake answers like the real API: business outcomes are HTTP 200 with a
// statusCode in the JSON body, every answer carries a UUID-like requestId,
// requests are validated as GenAuth validates them, and a second send to the
// same phone on the same channel within the window is refused with 422. It
// records every request, and faults can be queued to reproduce what the real
// service and the network in front of it do on a bad day: slow answers, 5xx
// and provider errors, throttling, gateway pages, broken JSON, dropped
// connections and answers lost after the SMS went out.
//
// It never sends an SMS.
package genauthtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Path is the one path the fake serves.
const Path = "/api/v3/send-sms"

// Options configure a Server. Zero values select the defaults.
type Options struct {
	// AppID is the only app id accepted; default "sandbox-app".
	AppID string
	// HeaderPrefix, when set to PrefixGenAuth or PrefixAuthing, makes the
	// fake read the app-id and lang headers under that prefix only, as a
	// host that knows one brand would. Empty reads both, as GenAuth's
	// official SDKs between them send both (see Request.AppID).
	HeaderPrefix string
	// Window is the one-send-per-minute rule's window; default 60s.
	Window time.Duration
	// TooFrequent is how the fake answers a second send inside the
	// window. GenAuth does not document the answer; the default is 422.
	TooFrequent TooFrequent
	// Now is the clock of the window and of Request.Time; default
	// time.Now. Latency and faults always use real time.
	Now func() time.Time
	// Latency is added to every call.
	Latency time.Duration
}

// TooFrequent is a shape the one-minute rule's refusal can take.
type TooFrequent int

// The shapes of the one-minute rule's refusal, each an HTTP 200 with the
// body statusCode named and a requestId.
const (
	// TooFrequent422 answers statusCode 422 with apiCode
	// APICodeTooFrequent: GenAuth's InvalidOperationError, the shape smsq
	// assumes by default.
	TooFrequent422 TooFrequent = iota
	// TooFrequent429 answers statusCode 429 without Retry-After, as a
	// generic ThrottleError would.
	TooFrequent429
	// TooFrequent400 answers statusCode 400 with apiCode
	// APICodeTooFrequent400, as an invalid-argument refusal would.
	TooFrequent400
)

// Defaults applied by NewServer and Listen.
const (
	DefaultAppID  = "sandbox-app"
	DefaultWindow = 60 * time.Second
)

// The two header prefixes of GenAuth's official SDKs: the Go and Java SDKs
// and the Authing-branded Node and Python ones send x-authing-, the
// GenAuth-branded Node and Python ones x-genauth-.
const (
	PrefixGenAuth = "x-genauth-"
	PrefixAuthing = "x-authing-"
)

func (o Options) withDefaults() Options {
	if o.AppID == "" {
		o.AppID = DefaultAppID
	}
	if o.Window == 0 {
		o.Window = DefaultWindow
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Request is one request the fake received.
type Request struct {
	// Time is when it arrived, by Options.Now.
	Time time.Time
	// Method and Path are the HTTP method and URL path.
	Method, Path string
	// Channel, PhoneNumber and PhoneCountryCode are the body fields as
	// sent (empty when the body did not parse).
	Channel, PhoneNumber, PhoneCountryCode string
	// AppID and Lang are the app-id and lang headers under the prefixes
	// the fake reads (the first non-empty one, x-genauth- before
	// x-authing-).
	AppID, Lang string
	// Header is every header of the request as received.
	Header http.Header
	// RealIP is the x-real-ip header.
	RealIP string
	// HasAuthorization reports whether an authorization header came.
	HasAuthorization bool
	// Answer is the body statusCode answered, or the HTTP status when the
	// answer was not GenAuth's JSON; 0 while unanswered or when the
	// connection was dropped.
	Answer int
	// Sent reports whether the fake counted an SMS as sent for this
	// request, including when a fault then lost the answer.
	Sent bool
	// Fault names the fault applied, "" if none.
	Fault string
}

type phoneKey struct{ countryCode, phone, channel string }

// Server is a running fake. It is safe for concurrent use.
type Server struct {
	opts    Options
	handler http.Handler
	srv     *http.Server
	url     string
	done    chan struct{} // closed by Close: every waiting handler returns
	closeMu sync.Once
	wg      sync.WaitGroup // handlers in flight

	mu       sync.Mutex
	closed   bool
	inFlight int
	latency  time.Duration
	requests []*Request
	lastSent map[phoneKey]time.Time
	faults   []Fault       // queue; faults[0].Count is what remains of it
	held     chan struct{} // non-nil while held; closed by Release
	changed  chan struct{} // closed and replaced when a request arrives
}

func newServer(opts Options) *Server {
	opts = opts.withDefaults()
	s := &Server{
		opts:     opts,
		done:     make(chan struct{}),
		latency:  opts.Latency,
		lastSent: make(map[phoneKey]time.Time),
		changed:  make(chan struct{}),
	}
	s.handler = http.HandlerFunc(s.serveHTTP)
	return s
}

// NewServer starts a fake on a free loopback port. The caller must Close
// it. It panics if no port can be had, as httptest.NewServer does, because
// tests have no better answer to that.
func NewServer(opts Options) *Server {
	s, err := Listen("127.0.0.1:0", opts)
	if err != nil {
		panic("genauthtest: " + err.Error())
	}
	return s
}

// Listen starts a fake on addr, such as "127.0.0.1:8089". The caller must
// Close it.
func Listen(addr string, opts Options) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := newServer(opts)
	s.url = "http://" + l.Addr().String()
	s.srv = &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(l) //nolint:errcheck // Serve returns ErrServerClosed after Close.
	return s, nil
}

// URL returns the base URL to use as the client's AppHost.
func (s *Server) URL() string { return s.url }

// AppID returns the app id the fake accepts.
func (s *Server) AppID() string { return s.opts.AppID }

// Handler returns the fake's handler, to mount in another server.
func (s *Server) Handler() http.Handler { return s.handler }

// Close stops the server, releases held requests and waits for every
// handler to return.
func (s *Server) Close() {
	s.closeMu.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.done)
		if s.srv != nil {
			s.srv.Close()
		}
	})
	s.wg.Wait()
}

// Requests returns a copy of every request received, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	for i, r := range s.requests {
		out[i] = *r
	}
	return out
}

// Sent returns the requests that made the fake count an SMS as sent: those
// answered statusCode 200 and those whose answer a fault lost after the
// send.
func (s *Server) Sent() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Request
	for _, r := range s.requests {
		if r.Sent {
			out = append(out, *r)
		}
	}
	return out
}

// Calls returns how many requests were received.
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// CallsFor returns how many requests were received for one phone number on
// one channel. An empty countryCode means +86, as GenAuth reads it.
func (s *Server) CallsFor(countryCode, phone, channel string) int {
	want := phoneKey{normCountry(countryCode), phone, channel}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.requests {
		if (phoneKey{normCountry(r.PhoneCountryCode), r.PhoneNumber, r.Channel}) == want {
			n++
		}
	}
	return n
}

func normCountry(cc string) string {
	if cc == "" {
		return "+86"
	}
	return cc
}

// InFlight returns how many requests are being handled now: received but
// not yet answered, dropped or abandoned by their client. With Hold, it
// tells when a caller that went away has been noticed.
func (s *Server) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight
}

// Reset forgets every request, every send (so the one-minute rule starts
// afresh) and every queued fault. Latency and Hold are kept.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
	s.lastSent = make(map[phoneKey]time.Time)
	s.faults = nil
}

// SetLatency changes the delay added to every call from now on.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	s.latency = d
	s.mu.Unlock()
}

// Inject queues f. Faults apply in order, each to the next f.Count
// requests: Count 0 means 1, and -1 means every request until ClearFaults.
func (s *Server) Inject(f Fault) {
	if f.Count == 0 {
		f.Count = 1
	}
	s.mu.Lock()
	s.faults = append(s.faults, f)
	s.mu.Unlock()
}

// ClearFaults drops every queued fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	s.faults = nil
	s.mu.Unlock()
}

// Hold makes requests that arrive from now on wait, recorded as received
// but unanswered, until Release, Close, or their client going away. It
// keeps calls in flight while a test interrupts the caller.
func (s *Server) Hold() {
	s.mu.Lock()
	if s.held == nil {
		s.held = make(chan struct{})
	}
	s.mu.Unlock()
}

// Release lets held requests proceed and stops holding new ones.
func (s *Server) Release() {
	s.mu.Lock()
	if s.held != nil {
		close(s.held)
		s.held = nil
	}
	s.mu.Unlock()
}

// WaitForCalls waits until at least n requests were received, or ctx ends.
func (s *Server) WaitForCalls(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		got, ch := len(s.requests), s.changed
		s.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("genauthtest: received %d of %d requests: %w", got, n, ctx.Err())
		}
	}
}

// newRequestID returns a random id shaped like GenAuth's, a version 4 UUID.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
