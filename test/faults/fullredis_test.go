package faults

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/tasks"
)

// commandsPerSecond samples Redis's own count of the commands it
// processed (refused ones included) over d, less the sampling itself.
func commandsPerSecond(t *testing.T, rdb *redis.Client, d time.Duration) float64 {
	t.Helper()
	count := func() int64 {
		info, err := rdb.Info(context.Background(), "stats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(l, "total_commands_processed:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		t.Fatal("INFO stats has no total_commands_processed")
		return 0
	}
	before := count()
	time.Sleep(d) // the sampling period, not a wait for a condition
	return float64(count()-before-1) / d.Seconds()
}

// TestFullRedisIdle fills Redis (maxmemory reached, noeviction: every
// write and every script refused) under an idle worker with two fetch
// loops. The worker must back off as for an outage rather than retry its
// dequeue at once, and serve again when Redis has room.
func TestFullRedisIdle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, config{})
	w := e.startWorker("SMSQ_CONCURRENCY=200")
	time.Sleep(time.Second) // let start-up traffic pass
	idle := commandsPerSecond(t, e.rdb, 3*time.Second)
	if err := e.rdb.ConfigSet(context.Background(), "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // let the backoff reach its cap
	full := commandsPerSecond(t, e.rdb, 5*time.Second)
	if err := e.rdb.ConfigSet(context.Background(), "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	const bound = 100
	if full > bound {
		t.Errorf("idle worker against a full Redis: %.0f commands/s, want at most %d (idle with room: %.0f/s)", full, bound, idle)
	}
	if !w.Alive() {
		t.Fatalf("worker exited: %v", w.Err())
	}
	id := e.send("CHANNEL_LOGIN", phoneNumber(8500))
	back := time.Now()
	if s := e.waitFinal(id, 20*time.Second); s.Result.Outcome != tasks.OutcomeSent {
		t.Errorf("task after Redis had room again: outcome %q, want sent", s.Result.Outcome)
	}
	e.check(e.waitDone(10 * time.Second))
	t.Logf("idle worker, 2 fetch loops: %.0f commands/s with room, %.0f/s with Redis full (maxmemory, noeviction); a task sent %s after Redis had room again",
		idle, full, time.Since(back).Round(10*time.Millisecond))
}
