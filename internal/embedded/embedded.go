// Package embedded runs an in-process Redis (miniredis) so that smsq works
// on a machine with no Redis at all. It is for trying smsq out and for fast
// tests, never for production: nothing survives the process.
package embedded

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// Redis is a running embedded Redis.
type Redis struct {
	m    *miniredis.Miniredis
	stop chan struct{}
	done chan struct{}
}

// Listening reports whether something accepts TCP connections on addr.
func Listening(ctx context.Context, addr string) bool {
	d := net.Dialer{Timeout: 300 * time.Millisecond}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// StartRedis starts an embedded Redis on addr. miniredis only expires keys
// when told time has passed, so a ticker moves its clock with the wall clock:
// reservations and retention then expire as they would on a real server.
func StartRedis(addr string) (*Redis, error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr(addr); err != nil {
		return nil, fmt.Errorf("start embedded Redis on %s: %w", addr, err)
	}
	r := &Redis{m: m, stop: make(chan struct{}), done: make(chan struct{})}
	go r.tick()
	return r, nil
}

func (r *Redis) tick() {
	defer close(r.done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-r.stop:
			return
		case now := <-t.C:
			r.m.FastForward(now.Sub(last))
			last = now
		}
	}
}

// Addr is the address the embedded Redis listens on.
func (r *Redis) Addr() string { return r.m.Addr() }

// Close stops the embedded Redis.
func (r *Redis) Close() {
	close(r.stop)
	<-r.done
	r.m.Close()
}
