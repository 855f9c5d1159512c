package faults

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"
)

// connectedClients is Redis's count of open client connections.
func (e *env) connectedClients() int {
	e.t.Helper()
	info, err := e.rdb.Info(context.Background(), "clients").Result()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, "connected_clients:"); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	e.t.Fatal("INFO clients has no connected_clients")
	return 0
}

// TestIdleConnectionsAfterBurst runs a burst that uses the worker's whole
// concurrency, then lets it idle: it must close the connections the burst
// opened beyond its idle limit (a tenth of the concurrency per pool, at
// least 10) rather than keep every pool connection open.
func TestIdleConnectionsAfterBurst(t *testing.T) {
	t.Parallel()
	e := newEnv(t, config{})
	e.startWorker("SMSQ_CONCURRENCY=100")
	time.Sleep(time.Second) // start-up connections settle
	before := e.connectedClients()
	// Fill the worker's concurrency with held calls, then answer them all
	// at once: their records hit Redis together, on as many connections.
	e.fake.Hold()
	for i := range 200 {
		e.send("CHANNEL_REGISTER", phoneNumber(8600+i))
	}
	waitCalls(t, e, 100)
	e.fake.Release()
	peak := 0
	waitFor(t, 60*time.Second, func() (bool, string) {
		peak = max(peak, e.connectedClients())
		st, err := e.states()
		if err != nil {
			return false, err.Error()
		}
		if n := outcomes(st)["sent"]; n < 200 {
			return false, strconv.Itoa(n) + " of 200 sent"
		}
		return true, ""
	})
	e.check(e.waitDone(10 * time.Second))
	time.Sleep(2 * time.Second) // idle
	after := e.connectedClients()
	// Two pools of 10 idle each, the UI's 4, asynq's own, and this test's.
	const bound = 40
	if after > bound {
		t.Errorf("%d Redis connections open after the burst (peak %d, %d before it), want at most %d", after, peak, before, bound)
	}
	t.Logf("connections: %d idle before the burst, peak %d during 200 tasks at concurrency 100, %d idle after it", before, peak, after)
}
