package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/tasks"
)

// commands returns how many commands Redis has run (INFO commandstats),
// not counting the INFO that asks.
func commands(t *testing.T, rdb *redis.Client) int {
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

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

// TestQueueMetricsBoundedByQueueNames: with thousands of queue names in
// Redis (any producer can make them), a scrape reports asynq's metrics for
// the served queues only, its size and Redis commands do not grow with the
// names, parallel scrapes share one read, and the unserved-queue figures
// count the queues whose tasks nobody will take.
func TestQueueMetricsBoundedByQueueNames(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	served := []string{tasks.QueueCritical, tasks.QueueDefault, tasks.QueueLow}
	if _, err := asynq.NewClientFromRedisClient(rdb).Enqueue(asynq.NewTask(tasks.TypeSendSMS, []byte(`{}`), asynq.Queue("default"), asynq.ProcessIn(time.Hour))); err != nil {
		t.Fatal(err)
	}
	const names = 3000
	pipe := rdb.Pipeline()
	for i := range names {
		pipe.SAdd(ctx, "asynq:queues", fmt.Sprintf("q%04d", i))
	}
	// Waiting tasks in two queues among the first MaxUnservedChecked, and
	// in one past them.
	pipe.LPush(ctx, "asynq:{q0001}:pending", "t1")
	pipe.ZAdd(ctx, "asynq:{q0002}:retry", redis.Z{Score: 1, Member: "t2"}, redis.Z{Score: 2, Member: "t3"})
	pipe.LPush(ctx, "asynq:{q2999}:pending", "t4")
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	asrv := asynq.NewServerFromRedisClient(rdb, asynq.Config{Queues: tasks.DefaultQueues(), LogLevel: asynq.FatalLevel})
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

	newMetrics := func() *Metrics {
		return New(Config{Inspector: ins, Redis: rdb, Queues: served, QueueCacheFor: time.Minute})
	}
	before := commands(t, rdb)
	body := scrape(t, newMetrics())
	perScrape := commands(t, rdb) - before - 1
	t.Logf("one scrape with %d queue names: %d bytes, %d Redis commands", names, len(body), perScrape)
	if len(body) > 64<<10 || perScrape > 600 {
		t.Fatalf("scrape is %d bytes and %d Redis commands; want at most 64 KiB and 600 whatever the queue names", len(body), perScrape)
	}
	if strings.Contains(body, `queue="q0`) {
		t.Fatal("asynq metrics carry unserved queue names as labels")
	}
	for _, want := range []string{`asynq_queue_size{queue="default"} 1`, "smsq_unserved_queues 2", "smsq_unserved_queue_tasks 3",
		"smsq_queues_known 3001", fmt.Sprintf("smsq_unserved_queues_unchecked %d", names-MaxUnservedChecked)} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("scrape lacks %q", want)
		}
	}

	// Twenty parallel scrapes read Redis once, as one scrape does.
	m := newMetrics()
	before = commands(t, rdb)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { scrape(t, m) })
	}
	wg.Wait()
	if got := commands(t, rdb) - before - 1; got > perScrape+perScrape/4 {
		t.Fatalf("20 parallel scrapes made %d Redis commands; one makes %d", got, perScrape)
	}
}
