package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/redistest"
)

func redisCommands(t *testing.T, rdb *redis.Client) int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range regexp.MustCompile(`calls=(\d+)`).FindAllStringSubmatch(info, -1) {
		c, _ := strconv.Atoi(m[1])
		n += c
	}
	return n
}

// TestQueueStatsBounded: with thousands of queue names, the UI's
// queue_stats answer (asynqmon reads 90 days of every queue and buffers
// it) covers a bounded set of queues, served ones first, and parallel
// calls share one Redis read.
func TestQueueStatsBounded(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	pipe := rdb.Pipeline()
	for i := range 3000 {
		pipe.SAdd(ctx, "asynq:queues", fmt.Sprintf("a%04d", i)) // sort before the served queue
	}
	pipe.SAdd(ctx, "asynq:queues", "critical")
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	asrv := asynq.NewServerFromRedisClient(rdb, asynq.Config{Queues: map[string]int{"critical": 1}, LogLevel: asynq.FatalLevel})
	if err := asrv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })); err != nil {
		t.Fatal(err)
	}
	defer asrv.Shutdown()
	ins := asynq.NewInspectorFromRedisClient(rdb)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if ss, _ := ins.Servers(); len(ss) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("asynq server never showed up")
		}
	}
	ui, err := NewUI(UIConfig{Redis: asynq.RedisClientOpt{Addr: srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer ui.Close()
	get := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		ui.ServeHTTP(rec, httptest.NewRequest("GET", DefaultUIPath+"/api/queue_stats", nil))
		return rec
	}

	before := redisCommands(t, rdb)
	rec := get()
	one := redisCommands(t, rdb) - before - 1
	var ans struct {
		Stats map[string][]map[string]any `json:"stats"`
	}
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &ans) != nil {
		t.Fatalf("status %d: %.200s", rec.Code, rec.Body.String())
	}
	t.Logf("queue_stats with 3,001 queue names: %d bytes, %d Redis commands", rec.Body.Len(), one)
	if len(ans.Stats) != statsQueues || len(ans.Stats["critical"]) != statsDays {
		t.Fatalf("answer covers %d queues (critical: %d days); want %d with the served queue critical first", len(ans.Stats), len(ans.Stats["critical"]), statsQueues)
	}
	if one > statsQueues*(2*statsDays+2)+100 {
		t.Fatalf("one call made %d Redis commands", one)
	}

	before = redisCommands(t, rdb)
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { get() })
	}
	wg.Wait()
	if got := redisCommands(t, rdb) - before - 1; got > 50 {
		t.Fatalf("10 calls within the cache time made %d Redis commands; want them served from the one read", got)
	}
}

// TestRecorderBounded: an API answer too large to buffer and mask is
// refused rather than held in memory.
func TestRecorderBounded(t *testing.T) {
	t.Parallel()
	rec := &recorder{header: map[string][]string{}, code: 200}
	chunk := make([]byte, 1<<20)
	for range maxAPIAnswer>>20 + 1 {
		rec.Write(chunk)
	}
	if !rec.over || rec.body.Len() > maxAPIAnswer {
		t.Fatalf("recorder holds %d bytes (over=%v); want at most %d", rec.body.Len(), rec.over, maxAPIAnswer)
	}
}
