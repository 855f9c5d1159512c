package ops

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// capServer serves 200 on every path through CapConns(n).
func capServer(t *testing.T, n int) (addr string, l *capListener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	capped, state := CapConns(ln, n)
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		ConnState:         state,
		ReadHeaderTimeout: time.Minute,
	}
	go srv.Serve(capped)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), capped.(*capListener)
}

func (l *capListener) counts() (open, busy int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.open {
		if c.busy {
			busy++
		}
	}
	return len(l.open), busy
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// probe is a liveness probe: a fresh connection, a short timeout.
func probe(t *testing.T, addr string) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("probe with every place held: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("probe: HTTP %d", resp.StatusCode)
	}
}

// Clients that keep their connections alive between requests hold every
// place a capped listener has: the probe must still get through.
func TestCapConnsProbeGetsPastIdleHolders(t *testing.T) {
	t.Parallel()
	const n = 4
	addr, l := capServer(t, n)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	waitFor(t, "4 idle connections", func() bool { open, busy := l.counts(); return open == n && busy == 0 })
	for range 3 {
		probe(t, addr)
	}
	if open, _ := l.counts(); open > n {
		t.Fatalf("%d connections open, cap %d", open, n)
	}
}

// Clients that start a request and never finish it (slow headers) hold
// every place too: the probe still gets through.
func TestCapConnsProbeGetsPastSlowRequests(t *testing.T) {
	t.Parallel()
	const n = 4
	addr, l := capServer(t, n)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	// net/http marks a connection active only once its headers are in.
	waitFor(t, "4 open connections", func() bool { open, _ := l.counts(); return open == n })
	probe(t, addr)
	if open, _ := l.counts(); open > n {
		t.Fatalf("%d connections open, cap %d", open, n)
	}
}

// The connection closed to make room is the one waiting longest, not the
// newest.
func TestCapConnsClosesTheOldestIdle(t *testing.T) {
	t.Parallel()
	addr, l := capServer(t, 2)
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	first := dial()
	waitFor(t, "the first connection", func() bool { open, _ := l.counts(); return open == 1 })
	second := dial()
	waitFor(t, "the second connection", func() bool { open, _ := l.counts(); return open == 2 })
	dial()
	waitFor(t, "a place made", func() bool { open, _ := l.counts(); return open == 2 })
	first.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := first.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("the oldest connection is still open (read: %v)", err)
	}
	second.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := second.Read(make([]byte, 1)); !isTimeout(err) {
		t.Fatalf("the second connection was closed (read: %v), want the oldest only", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
