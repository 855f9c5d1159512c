package ha

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/redisconn"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/workertest"
)

// TestMain reports the tests skipped for want of redis-server and removes
// the worker binary built by the first test.
func TestMain(m *testing.M) {
	workertest.SilenceRedis()
	code := redistest.Main(m)
	workertest.Cleanup()
	os.Exit(code)
}

// raceWorker is off: the worker is built without the race detector even
// when the suite runs with it. This suite is about Redis failures under
// load, and six race-instrumented workers on two cores turn a two-minute
// run into a ten-minute one. The faults suite runs the race-instrumented
// worker.
const raceWorker = false

// worker is one running worker process.
type worker = workertest.Process

// taskState is what asynq holds about one task.
type taskState = workertest.Task

var (
	isDone   = workertest.IsDone
	pairKey  = workertest.PairKey
	maskPair = workertest.MaskPair
)

// long skips the runs that wait for asynq's lease recovery under -short.
func long(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("long HA run (about two minutes): waits for asynq to recover a killed worker's tasks; run without -short")
	}
}

// env is one run's world: a Redis deployment, the fake GenAuth, workers.
type env struct {
	t       *testing.T
	url     string // REDIS_URL of the deployment
	window  time.Duration
	rdb     redis.UniversalClient
	insp    *asynq.Inspector
	hist    *history.Store
	fake    *genauthtest.Server
	client  *smsq.Client
	workers *workertest.Group
}

func newEnv(t *testing.T, url string, window time.Duration) *env {
	t.Helper()
	workers := workertest.NewGroup(t, workertest.Binary(t, raceWorker))
	rdb, err := redisconn.Open(url, redisconn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	hist, err := history.New(history.Config{Client: rdb})
	if err != nil {
		t.Fatal(err)
	}
	client, err := smsq.NewClient(url)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{
		t: t, url: url, window: window, rdb: rdb, hist: hist, client: client, workers: workers,
		insp: asynq.NewInspectorFromRedisClient(rdb),
		// The fake's own one-minute rule is off (1 ms) so that every send
		// smsq lets through is recorded as sent and checked.
		fake: genauthtest.NewServer(genauthtest.Options{Window: time.Millisecond}),
	}
	t.Cleanup(func() {
		e.workers.Stop()
		e.fake.Close()
		e.client.Close()
		e.rdb.Close()
		if t.Failed() {
			e.workers.DumpLogs(t, 3000)
		}
	})
	return e
}

// startWorker starts a worker process and waits until it serves.
func (e *env) startWorker() *worker {
	e.t.Helper()
	settings := append(workertest.Env(e.url, e.fake, e.window), "SMSQ_RATE_LIMIT=off")
	return e.workers.Start(e.t, settings)
}

// waitFor polls cond every 100 ms until it holds or limit passes.
func waitFor(t *testing.T, limit time.Duration, cond func() (bool, string)) {
	t.Helper()
	workertest.WaitEvery(t, limit, 100*time.Millisecond, cond)
}

// waitEvery polls cond every interval until it holds or limit passes.
var waitEvery = workertest.WaitEvery

// states reads every task of the served queues through asynq's Inspector.
func (e *env) states() (map[string]taskState, error) {
	return workertest.States(context.Background(), e.insp, nil)
}

// progress counts finished tasks (completed or archived) and unfinished
// ones (pending, active, scheduled or retrying) from the queue statistics,
// which is much cheaper than listing them.
func (e *env) progress() (done, open int, err error) {
	qs, err := e.insp.Queues()
	if err != nil {
		return 0, 0, err
	}
	for _, q := range qs {
		info, err := e.insp.GetQueueInfo(q)
		if err != nil {
			return 0, 0, err
		}
		done += info.Completed + info.Archived
		open += info.Pending + info.Active + info.Scheduled + info.Retry
	}
	return done, open, nil
}

// checkLogs fails on a full phone number, a panic or a data race in any
// worker's log. numbers are national numbers, digits only.
func (e *env) checkLogs(numbers []string) {
	e.t.Helper()
	ws := e.workers.List()
	for _, w := range ws {
		lines := w.Logs(e.t)
		for _, l := range workertest.PhoneLeaks(lines, numbers) {
			e.t.Errorf("%s log line %d holds a full phone number: %s", w.Name, l.Line, l.Redacted)
		}
		for i, l := range lines {
			if l.Crash() {
				e.t.Errorf("%s log line %d: %s", w.Name, i+1, l.Raw)
			}
		}
	}
}

// historyOutcome reads a task's final outcome from the history store.
func (e *env) historyOutcome(ctx context.Context, id string) (string, bool, error) {
	entry, ok, err := e.hist.Task(ctx, id)
	if err != nil || !ok || !entry.Final {
		return "", false, err
	}
	return entry.Outcome, true, nil
}
