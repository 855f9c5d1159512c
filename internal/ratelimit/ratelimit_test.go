package ratelimit

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/redistest"
)

// perHour limits never refill during a test, so token counts are exact.
func perHour(burst int) Limit { return Limit{Rate: 1, Period: time.Hour, Burst: burst} }

func newLimiter(t *testing.T, c redis.UniversalClient, cfg Config) *Limiter {
	t.Helper()
	cfg.Client = c
	l, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

// allow calls Allow and reports whether the send may go.
func allow(t *testing.T, l *Limiter, channel string) bool {
	t.Helper()
	wait, err := l.Allow(context.Background(), channel)
	if err != nil {
		t.Fatalf("Allow(%s): %v", channel, err)
	}
	if wait < 0 {
		t.Fatalf("Allow(%s) wait = %v, want >= 0", channel, wait)
	}
	return wait == 0
}

func TestNewConfig(t *testing.T) {
	t.Parallel()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	tests := []struct {
		name    string
		cfg     Config
		mention string
	}{
		{"no client", Config{Global: perHour(1)}, "Client"},
		{"bad global", Config{Client: c, Global: Limit{Rate: 5, Period: time.Second}}, "Config.Global: burst 0"},
		{"bad channel", Config{Client: c, Channels: map[string]Limit{"CHANNEL_LOGIN": {Rate: -1, Period: time.Second, Burst: 1}}}, "Config.Channels[CHANNEL_LOGIN]: rate -1"},
		{"empty channel", Config{Client: c, Channels: map[string]Limit{"": perHour(1)}}, "empty channel name"},
	}
	for _, tt := range tests {
		_, err := New(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.mention) {
			t.Fatalf("%s: New error = %v, want one containing %q", tt.name, err, tt.mention)
		}
	}
}

func TestNoLimitNeverAsksRedis(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1: any Redis call would fail.
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer c.Close()
	l := newLimiter(t, c, Config{Channels: map[string]Limit{"CHANNEL_REGISTER": {}}})
	if l.Enabled() {
		t.Fatal("Enabled() = true with no limit")
	}
	if !allow(t, l, "CHANNEL_LOGIN") {
		t.Fatal("Allow refused with no limit")
	}
	l = newLimiter(t, c, Config{Global: perHour(1)})
	if _, err := l.Allow(context.Background(), "CHANNEL_LOGIN"); err == nil || !strings.Contains(err.Error(), GlobalKey(DefaultPrefix)) {
		t.Fatalf("Allow with Redis down: error = %v, want one naming the key", err)
	}
}

func TestKeysLiveUnderThePrefix(t *testing.T) {
	t.Parallel()
	c := redistest.Start(t).Client()
	ctx := context.Background()
	l := newLimiter(t, c, Config{Global: perHour(5), Channels: map[string]Limit{"CHANNEL_LOGIN": perHour(5)}})
	if !allow(t, l, "CHANNEL_LOGIN") {
		t.Fatal("first send refused")
	}
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{GlobalKey(DefaultPrefix): true, ChannelKey(DefaultPrefix, "CHANNEL_LOGIN"): true}
	if len(keys) != len(want) || !want[keys[0]] || !want[keys[1]] {
		t.Fatalf("keys = %q, want %v", keys, want)
	}
	for _, k := range keys {
		if ttl := c.TTL(ctx, k).Val(); ttl <= 0 {
			t.Fatalf("TTL(%s) = %v, want the key to expire", k, ttl)
		}
	}
}

func TestBurstThenWait(t *testing.T) {
	t.Parallel()
	c := redistest.Start(t).Client()
	// 10/s: one token every 100 ms.
	l := newLimiter(t, c, Config{Global: Limit{Rate: 10, Period: time.Second, Burst: 3}})
	for i := range 3 {
		if !allow(t, l, "CHANNEL_LOGIN") {
			t.Fatalf("send %d of the burst refused", i+1)
		}
	}
	wait, err := l.Allow(context.Background(), "CHANNEL_LOGIN")
	if err != nil {
		t.Fatal(err)
	}
	if wait <= 0 || wait > 100*time.Millisecond {
		t.Fatalf("wait after the burst = %v, want within (0, 100ms]", wait)
	}
}

// TestChannelRefusalSpendsNoGlobalToken: sends refused by their channel's
// limit leave the global tokens to the other channels.
func TestChannelRefusalSpendsNoGlobalToken(t *testing.T) {
	t.Parallel()
	c := redistest.Start(t).Client()
	l := newLimiter(t, c, Config{Global: perHour(3), Channels: map[string]Limit{"CHANNEL_LOGIN": perHour(1)}})
	if !allow(t, l, "CHANNEL_LOGIN") {
		t.Fatal("first login send refused")
	}
	for range 5 {
		if allow(t, l, "CHANNEL_LOGIN") {
			t.Fatal("login send allowed past its channel limit")
		}
	}
	for i := range 2 {
		if !allow(t, l, "CHANNEL_REGISTER") {
			t.Fatalf("register send %d refused: refused login sends spent global tokens", i+1)
		}
	}
	if allow(t, l, "CHANNEL_REGISTER") {
		t.Fatal("register send allowed past the global limit")
	}
}

// TestGlobalRefusalRefundsChannelToken: a send its channel allows but the
// global limit refuses hands the channel token back.
func TestGlobalRefusalRefundsChannelToken(t *testing.T) {
	t.Parallel()
	c := redistest.Start(t).Client()
	l := newLimiter(t, c, Config{Global: perHour(1), Channels: map[string]Limit{"CHANNEL_LOGIN": perHour(2)}})
	if !allow(t, l, "CHANNEL_REGISTER") {
		t.Fatal("register send refused")
	}
	for range 4 {
		if allow(t, l, "CHANNEL_LOGIN") {
			t.Fatal("login send allowed past the global limit")
		}
	}
	// Lift the global limit: the channel must still hold both its tokens.
	l = newLimiter(t, c, Config{Channels: map[string]Limit{"CHANNEL_LOGIN": perHour(2)}})
	for i := range 2 {
		if !allow(t, l, "CHANNEL_LOGIN") {
			t.Fatalf("login send %d refused: refusals by the global limit kept channel tokens", i+1)
		}
	}
	if allow(t, l, "CHANNEL_LOGIN") {
		t.Fatal("login send allowed past its channel limit")
	}
}

// TestHammer: goroutines asking as fast as they can never get more than
// the burst plus the rate over the time they ran.
func TestHammer(t *testing.T) {
	t.Parallel()
	const (
		rate, burst = 50, 5
		workers     = 8
		run         = 3 * time.Second
	)
	c := redistest.Start(t).Client()
	l := newLimiter(t, c, Config{Global: Limit{Rate: rate, Period: time.Second, Burst: burst}})
	var allowed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(run)
	for range workers {
		wg.Go(func() {
			for time.Now().Before(end) {
				wait, err := l.Allow(context.Background(), "CHANNEL_LOGIN")
				if err != nil {
					t.Errorf("Allow: %v", err)
					return
				}
				if wait == 0 {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	got := allowed.Load()
	limit := int64(burst + rate*elapsed.Seconds())
	t.Logf("%d workers, %v: %d sends allowed, bound %d (burst %d + %d/s)", workers, elapsed.Round(time.Millisecond), got, limit, burst, rate)
	if got > limit {
		t.Fatalf("allowed %d sends in %v, want at most %d", got, elapsed, limit)
	}
	if got <= burst {
		t.Fatalf("allowed %d sends in %v, want more than the burst", got, elapsed)
	}
}
