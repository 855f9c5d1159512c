package ops

import (
	"errors"
	stdlog "log"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/smsq/smsq/internal/phone"
)

// FallbackAddr is where Listen goes when the default address is taken.
const FallbackAddr = "127.0.0.1:0"

// Listen opens a TCP listener on addr. When addr is in use and fallback is
// true (the address was a default, not the operator's choice), it listens
// on FallbackAddr instead, so that several workers on one machine start
// without clashing; fellBack reports that it did.
func Listen(addr string, fallback bool) (ln net.Listener, fellBack bool, err error) {
	ln, err = net.Listen("tcp", addr)
	if err == nil || !fallback || !errors.Is(err, syscall.EADDRINUSE) {
		return ln, false, err
	}
	ln, err = net.Listen("tcp", FallbackAddr)
	return ln, err == nil, err
}

// Timeouts of the server NewServer builds. Its clients are probes, a
// scraper and a few operators: none needs a connection idle for long or a
// request that takes minutes, and a client that opens connections and
// leaves them must not keep them.
const (
	// ReadHeaderTimeout bounds the wait for a request's headers, from the
	// connection's start or its first byte after an idle spell.
	ReadHeaderTimeout = 10 * time.Second
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout = 30 * time.Second
	// WriteTimeout bounds a request's handling and answer: a /metrics
	// scrape or a UI page over a large queue takes seconds, not minutes.
	WriteTimeout = time.Minute
	// IdleTimeout closes a keep-alive connection left idle this long.
	IdleTimeout = 30 * time.Second
)

// NewServer returns the server for handler, with the timeouts above.
// Timeouts end slow and idle connections; they do not bound how many are
// open at once, which is what CapConns on the listener does.
// What net/http cannot hand to the handler (an accept error while the
// process is out of files, a handler's panic) goes to log as warnings.
func NewServer(handler http.Handler, log zerolog.Logger) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		ErrorLog:          stdlog.New(serverLog{log}, "", 0),
	}
}

// serverLog turns net/http's ErrorLog lines into JSON warnings, so that
// they are neither plain text among the JSON lines on stderr nor a way
// around phone masking (a panic value can quote a request).
type serverLog struct{ log zerolog.Logger }

func (l serverLog) Write(p []byte) (int, error) {
	l.log.Warn().Msg(phone.MaskText(strings.TrimRight(string(p), "\n")))
	return len(p), nil
}

// IsLoopback reports whether addr (host:port) listens only on the
// loopback interface. An empty host means every interface.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// LimitPerClient closes at once each connection from a client (an IPv4
// address or an IPv6 /64) that already holds n open ones, so that one
// client cannot take every connection a capped listener allows and keep
// the probes out. Put it under CapConns: a connection it
// closes never counts against the cap, and holds a file only for the
// moment it takes to close.
func LimitPerClient(ln net.Listener, n int) net.Listener {
	return &perClientListener{Listener: ln, max: n, open: make(map[netip.Prefix]int)}
}

type perClientListener struct {
	net.Listener
	max  int
	mu   sync.Mutex
	open map[netip.Prefix]int
}

func (l *perClientListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := clientPrefix(c.RemoteAddr().String())
		l.mu.Lock()
		if l.open[key] >= l.max {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.open[key]++
		l.mu.Unlock()
		return &clientConn{Conn: c, l: l, key: key}, nil
	}
}

// clientConn gives its client's place back when closed, once.
type clientConn struct {
	net.Conn
	l    *perClientListener
	key  netip.Prefix
	once sync.Once
}

func (c *clientConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		defer c.l.mu.Unlock()
		if c.l.open[c.key]--; c.l.open[c.key] <= 0 {
			delete(c.l.open, c.key)
		}
	})
	return err
}
