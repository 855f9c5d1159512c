package ops

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// CapConns bounds the connections open through ln to n without ever
// turning a new one away: when n are open, the one that has waited longest
// without a request in progress (idle between keep-alive requests, or
// opened and silent) is closed to make room, or, when every one is busy,
// the one busy longest. A capped listener that blocks Accept instead
// (netutil.LimitListener) lets clients that merely keep their connections
// alive hold every place, so that a liveness probe waits in the kernel's
// queue until it fails and the supervisor restarts the worker. Here a
// probe's connection is the newest, and lives far shorter than the ones
// an attacker keeps.
//
// The returned func must be the server's ConnState hook; it tells CapConns
// which connections are busy.
func CapConns(ln net.Listener, n int) (net.Listener, func(net.Conn, http.ConnState)) {
	l := &capListener{Listener: ln, max: n, open: make(map[*capConn]struct{}), now: time.Now}
	return l, l.connState
}

type capListener struct {
	net.Listener
	max  int
	now  func() time.Time
	mu   sync.Mutex
	open map[*capConn]struct{}
}

// capConn is one open connection and what it is doing. busy and since are
// guarded by the listener's mu.
type capConn struct {
	net.Conn
	l     *capListener
	busy  bool
	since time.Time
	once  sync.Once
}

func (l *capListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &capConn{Conn: c, l: l}
	var victim *capConn
	l.mu.Lock()
	cc.since = l.now()
	if len(l.open) >= l.max {
		victim = l.oldest()
		delete(l.open, victim)
	}
	l.open[cc] = struct{}{}
	l.mu.Unlock()
	if victim != nil {
		victim.Close()
	}
	return cc, nil
}

// oldest picks the connection to close: the longest waiting of those with
// no request in progress, else the longest busy. l.mu is held.
func (l *capListener) oldest() *capConn {
	var idle, busy *capConn
	for c := range l.open {
		switch {
		case !c.busy && (idle == nil || c.since.Before(idle.since)):
			idle = c
		case c.busy && (busy == nil || c.since.Before(busy.since)):
			busy = c
		}
	}
	if idle != nil {
		return idle
	}
	return busy
}

func (l *capListener) connState(c net.Conn, s http.ConnState) {
	cc, ok := c.(*capConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch s {
	case http.StateActive:
		cc.busy, cc.since = true, l.now()
	case http.StateIdle:
		cc.busy, cc.since = false, l.now()
	case http.StateHijacked, http.StateClosed:
		delete(l.open, cc)
	}
}

func (c *capConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.open, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
