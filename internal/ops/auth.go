package ops

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/smsq/smsq/internal/phone"
)

// Budgets for wrong passwords. Each wrong one costs a token from its
// client's bucket and from one shared by all clients; while either is
// empty, requests with credentials are answered 429 without being checked,
// so that guessing faster teaches nothing (not even that a guess was
// right). An operator who mistypes a few times is not held up; a guesser
// gets ClientFailureBurst tries, then one per ClientFailureEvery, and all
// guessers together GlobalFailureBurst, then one per GlobalFailureEvery.
const (
	ClientFailureBurst = 10
	ClientFailureEvery = 6 * time.Second
	GlobalFailureBurst = 60
	GlobalFailureEvery = time.Second
)

// maxAuthClients bounds the per-client buckets kept. Past it they are all
// dropped: the shared bucket still holds a guesser with many addresses.
const maxAuthClients = 10000

// authLogEvery is how often refused logins are logged: the first at once,
// then one line per interval with the count of the others.
const authLogEvery = 30 * time.Second

// basicAuth guards a handler with HTTP basic auth and throttles wrong
// guesses. It is safe for concurrent use.
type basicAuth struct {
	wantUser, wantPass [32]byte
	challenge          string
	next               http.Handler
	now                func() time.Time
	failures           *prometheus.CounterVec
	log                zerolog.Logger

	mu      sync.Mutex
	clients map[netip.Prefix]*rate.Limiter
	global  *rate.Limiter

	logLimit *rate.Limiter
	held     atomic.Int64 // refused logins not logged since the last line
}

func newBasicAuth(user, password, realm string, next http.Handler, now func() time.Time, failures *prometheus.CounterVec, log zerolog.Logger) *basicAuth {
	return &basicAuth{
		wantUser:  sha256.Sum256([]byte(user)),
		wantPass:  sha256.Sum256([]byte(password)),
		challenge: fmt.Sprintf("Basic realm=%q, charset=\"UTF-8\"", realm),
		next:      next,
		now:       now,
		failures:  failures,
		log:       log,
		clients:   make(map[netip.Prefix]*rate.Limiter),
		global:    rate.NewLimiter(rate.Every(GlobalFailureEvery), GlobalFailureBurst),
		logLimit:  rate.NewLimiter(rate.Every(authLogEvery), 1),
	}
}

// ServeHTTP serves next only to requests carrying the user and password.
// The comparison takes the same time whatever the input, so that timing
// does not reveal how much of a guess was right. A request without
// credentials (a browser's first) is challenged and costs nothing.
func (a *basicAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u, p, ok := r.BasicAuth()
	if !ok {
		a.refuse(w)
		return
	}
	now := a.now()
	client := clientPrefix(r.RemoteAddr)
	if wait := a.throttled(client, now); wait > 0 {
		a.failed(r, client, "throttled", now)
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		text(w, http.StatusTooManyRequests, "too many failed logins; try again later")
		return
	}
	gotUser := sha256.Sum256([]byte(u))
	gotPass := sha256.Sum256([]byte(p))
	if subtle.ConstantTimeCompare(gotUser[:], a.wantUser[:])&subtle.ConstantTimeCompare(gotPass[:], a.wantPass[:]) != 1 {
		a.spend(client, now)
		a.failed(r, client, "refused", now)
		a.refuse(w)
		return
	}
	a.next.ServeHTTP(w, r)
}

func (a *basicAuth) refuse(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", a.challenge)
	text(w, http.StatusUnauthorized, "unauthorized")
}

// throttled returns how long the client must wait before a login is
// checked again, 0 when it may be now.
func (a *basicAuth) throttled(client netip.Prefix, now time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	wait := tokenWait(a.global, now)
	if lim := a.clients[client]; lim != nil {
		wait = max(wait, tokenWait(lim, now))
	}
	return wait
}

// tokenWait is how long until lim has a whole token.
func tokenWait(lim *rate.Limiter, now time.Time) time.Duration {
	missing := 1 - lim.TokensAt(now)
	if missing <= 0 {
		return 0
	}
	return time.Duration(missing / float64(lim.Limit()) * float64(time.Second))
}

// spend takes a wrong password's token from the client's bucket and the
// shared one.
func (a *basicAuth) spend(client netip.Prefix, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	lim := a.clients[client]
	if lim == nil {
		if len(a.clients) >= maxAuthClients {
			clear(a.clients)
		}
		lim = rate.NewLimiter(rate.Every(ClientFailureEvery), ClientFailureBurst)
		a.clients[client] = lim
	}
	lim.AllowN(now, 1)
	a.global.AllowN(now, 1)
}

// failed counts a refused login and logs it, at most once per
// authLogEvery with the count of those not logged. Neither the password
// nor the user name tried is logged: either may be a password typed in
// the wrong field.
func (a *basicAuth) failed(r *http.Request, client netip.Prefix, result string, now time.Time) {
	a.failures.WithLabelValues(result).Inc()
	if !a.logLimit.AllowN(now, 1) {
		a.held.Add(1)
		return
	}
	a.log.Warn().Str("client", client.String()).Str("remote_addr", r.RemoteAddr).Str("path", phone.MaskText(r.URL.Path)).
		Str("result", result).Int64("failures", a.held.Swap(0)+1).
		Msg("web UI login refused")
}

// clientPrefix is whom a request's budget belongs to: its IPv4 address, or
// its IPv6 /64, since one host is usually given a whole /64 to pick from.
// Behind a reverse proxy every request shares the proxy's address, and so
// one budget; the shared bucket applies either way.
func clientPrefix(remoteAddr string) netip.Prefix {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{}
	}
	ip = ip.Unmap().WithZone("")
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}
