package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrRefused is the error of a connection or redirect to an address the
// Guard refuses.
var ErrRefused = errors.New("address refused")

// internalPrefixes are ranges that are not public unicast beyond what
// netip.Addr's predicates name: CGNAT shared space, "this network",
// reserved and broadcast IPv4, and the IPv4/IPv6 translation prefixes
// whose embedded IPv4 address is checked on its own.
var (
	cgnat       = netip.MustParsePrefix("100.64.0.0/10")
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	reserved4   = netip.MustParsePrefix("240.0.0.0/4")
	nat64       = netip.MustParsePrefix("64:ff9b::/96")
)

// Refusal returns why a connection to ip is refused when private targets
// are not allowed ("loopback", "private", ...), or "" for a public address.
// IPv4-mapped and NAT64 forms are judged by the IPv4 address they carry.
func Refusal(ip netip.Addr) string {
	if !ip.IsValid() {
		return "invalid"
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() && nat64.Contains(ip) {
		b := ip.As16()
		ip = netip.AddrFrom4([4]byte(b[12:]))
	}
	switch {
	case ip.IsUnspecified() || ip.Is4() && thisNetwork.Contains(ip):
		return "unspecified"
	case ip.IsLoopback():
		return "loopback"
	case ip.IsPrivate():
		return "private"
	case ip.IsLinkLocalUnicast():
		return "link-local"
	case ip.IsMulticast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast():
		return "multicast"
	case ip.Is4() && cgnat.Contains(ip):
		return "carrier-grade NAT"
	case ip.Is4() && reserved4.Contains(ip):
		return "reserved"
	}
	return ""
}

// Guard applies the private-address rule. With AllowPrivate every address
// is allowed (tests, private networks).
type Guard struct {
	AllowPrivate bool
}

// check refuses ip unless allowed.
func (g Guard) check(ip netip.Addr) error {
	if g.AllowPrivate {
		return nil
	}
	if why := Refusal(ip); why != "" {
		return fmt.Errorf("%w: %s is a %s address", ErrRefused, ip.Unmap(), why)
	}
	return nil
}

// control is the net.Dialer Control hook: it sees the address actually
// dialled, after DNS resolution, so that a name that resolves to an
// internal address (DNS rebinding included) is refused at connect time.
func (g Guard) control(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: dialled %q, not an IP address", ErrRefused, host)
	}
	return g.check(ip)
}

// CheckURL checks an endpoint at start-up: an IP literal is judged at
// once; a name is resolved and every address it has is judged. A name
// that does not resolve now is not an error (DNS may come back); the
// connect-time check still applies, and the lookup error is returned as
// warn.
func (g Guard) CheckURL(ctx context.Context, u *url.URL, r *net.Resolver) (warn, err error) {
	if g.AllowPrivate {
		return nil, nil
	}
	host := u.Hostname()
	if ip, perr := netip.ParseAddr(host); perr == nil {
		return nil, g.check(ip)
	}
	if h := strings.ToLower(strings.TrimSuffix(host, ".")); h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return nil, fmt.Errorf("%w: %s is a loopback name", ErrRefused, host)
	}
	if r == nil {
		r = net.DefaultResolver
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, lerr := r.LookupNetIP(ctx, "ip", host)
	if lerr != nil {
		return fmt.Errorf("cannot resolve %s now (%v); its addresses are checked on every connection", host, lerr), nil
	}
	for _, a := range addrs {
		if err := g.check(a); err != nil {
			return nil, fmt.Errorf("%s resolves to %w", host, err)
		}
	}
	return nil, nil
}

// Redirect limits.
const maxRedirects = 3

// ErrRedirect is the error of a redirect the client does not follow: to
// another host, from https to http, or too many.
var ErrRedirect = errors.New("redirect refused")

// checkRedirect follows a redirect only to the same host (and port) and
// scheme, and only for 307 and 308, which repeat the POST with its body:
// after 301, 302 and 303 a client would send a GET without the event, so
// their answer is returned as it is. An IP literal is judged by the guard
// here; a name is judged when the connection is made.
func (g Guard) checkRedirect(req *http.Request, via []*http.Request) error {
	if req.Response != nil {
		if c := req.Response.StatusCode; c != http.StatusTemporaryRedirect && c != http.StatusPermanentRedirect {
			return http.ErrUseLastResponse
		}
	}
	first := via[0].URL
	switch {
	case len(via) > maxRedirects:
		return fmt.Errorf("%w: more than %d redirects", ErrRedirect, maxRedirects)
	case !sameHost(first, req.URL):
		return fmt.Errorf("%w: to another host (%s)", ErrRedirect, safeHost(req.URL))
	case first.Scheme != req.URL.Scheme:
		return fmt.Errorf("%w: from %s to %s", ErrRedirect, first.Scheme, req.URL.Scheme)
	}
	if ip, err := netip.ParseAddr(req.URL.Hostname()); err == nil {
		return g.check(ip)
	}
	return nil
}

// sameHost compares host and port, with the scheme's default port filled
// in.
func sameHost(a, b *url.URL) bool {
	return strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}

func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}

// safeHost is a host for error messages: an attacker-chosen redirect
// target is shown only as far as its host, and not beyond 100 bytes.
func safeHost(u *url.URL) string {
	h := u.Host
	if len(h) > 100 {
		h = h[:100] + "..."
	}
	return h
}

// NewHTTPClient returns the client deliveries use: timeout bounds each
// attempt (connect, TLS, answer); connections go through the guard; no
// proxy from the environment is used, as a proxy would make the guard see
// the proxy's address rather than the endpoint's.
func NewHTTPClient(g Guard, timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: g.control}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
	}
	return &http.Client{Transport: tr, Timeout: timeout, CheckRedirect: g.checkRedirect}
}
