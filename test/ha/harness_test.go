package ha

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/redisconn"
	"github.com/smsq/smsq/internal/tasks"
)

// queues are the queues the worker serves by default.
var queues = []string{tasks.QueueCritical, tasks.QueueDefault, tasks.QueueLow}

var (
	buildOnce sync.Once
	buildDir  string
	buildPath string
	buildErr  error
)

// TestMain removes the worker binary built by the first test.
func TestMain(m *testing.M) {
	// go-redis logs every failed dial of a failover to the standard logger;
	// the runs report what matters themselves.
	redis.SetLogger(quietLogger{})
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// workerBinary builds cmd/worker once per test run. It is built without
// the race detector even when the suite runs with it: this suite is about
// Redis failures under load, and six race-instrumented workers on two
// cores turn a two-minute run into a ten-minute one. The faults suite runs
// the race-instrumented worker.
func workerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		buildDir, err = os.MkdirTemp("", "smsq-ha-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(buildDir, "worker")
		args := []string{"build", "-o", buildPath}
		cmd := exec.Command("go", append(args, "./cmd/worker")...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/worker: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err == nil {
		if gomod := strings.TrimSpace(string(out)); gomod != "" && gomod != os.DevNull {
			return filepath.Dir(gomod), nil
		}
	}
	return filepath.Abs(filepath.Join("..", ".."))
}

// long skips the runs that wait for asynq's lease recovery under -short.
func long(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("long HA run (about two minutes): waits for asynq to recover a killed worker's tasks; run without -short")
	}
}

// env is one run's world: a Redis deployment, the fake GenAuth, workers.
type env struct {
	t      *testing.T
	url    string // REDIS_URL of the deployment
	window time.Duration
	rdb    redis.UniversalClient
	insp   *asynq.Inspector
	hist   *history.Store
	fake   *genauthtest.Server
	client *smsq.Client
	dir    string

	mu      sync.Mutex
	workers []*worker
}

func newEnv(t *testing.T, url string, window time.Duration) *env {
	t.Helper()
	bin := workerBinary(t)
	_ = bin
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
		t: t, url: url, window: window, rdb: rdb, hist: hist, client: client, dir: t.TempDir(),
		insp: asynq.NewInspectorFromRedisClient(rdb),
		// The fake's own one-minute rule is off (1 ms) so that every send
		// smsq lets through is recorded as sent and checked.
		fake: genauthtest.NewServer(genauthtest.Options{Window: time.Millisecond}),
	}
	t.Cleanup(func() {
		e.stopWorkers()
		e.fake.Close()
		e.client.Close()
		e.rdb.Close()
		if t.Failed() {
			e.dumpLogs()
		}
	})
	return e
}

// worker is one running worker process.
type worker struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // exit status, once done is closed
}

// startWorker starts a worker process and waits until it serves.
func (e *env) startWorker() *worker {
	e.t.Helper()
	e.mu.Lock()
	name := "worker" + strconv.Itoa(len(e.workers)+1)
	e.mu.Unlock()
	settings := []string{
		"REDIS_URL=" + e.url,
		"GENAUTH_APP_HOST=" + e.fake.URL(),
		"GENAUTH_APP_ID=" + e.fake.AppID(),
		"SMSQ_LOG_FORMAT=json",
		"SMSQ_LOG_LEVEL=info",
		"SMSQ_WINDOW=" + e.window.String(),
		"SMSQ_POLL_INTERVAL=100ms",
		"SMSQ_SHUTDOWN_TIMEOUT=5s",
		"SMSQ_GENAUTH_TIMEOUT=5s",
		"SMSQ_CONCURRENCY=50",
		"SMSQ_HTTP_ADDR=off",
		"SMSQ_RATE_LIMIT=off",
	}
	logPath := filepath.Join(e.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(workerBinary(e.t))
	cmd.Env = append(baseEnv(), settings...)
	cmd.Stdout = f
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		f.Close()
		e.t.Fatalf("start worker: %v", err)
	}
	w := &worker{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		w.err = cmd.Wait()
		f.Close()
		close(w.done)
	}()
	e.mu.Lock()
	e.workers = append(e.workers, w)
	e.mu.Unlock()
	waitFor(e.t, 30*time.Second, func() (bool, string) {
		for _, l := range w.logs(e.t) {
			if l.Message == "worker started" {
				return true, ""
			}
		}
		if !w.alive() {
			data, _ := os.ReadFile(w.logPath)
			e.t.Fatalf("%s exited (%v) before it started:\n%s", w.name, w.err, data)
		}
		return false, w.name + " has not started"
	})
	return w
}

// baseEnv is the test's environment without any smsq setting, so that a
// developer's own configuration cannot leak into the workers.
func baseEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "SMSQ_") || strings.HasPrefix(name, "GENAUTH_") || name == "REDIS_URL" {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func (w *worker) alive() bool {
	select {
	case <-w.done:
		return false
	default:
		return true
	}
}

// kill9 kills the worker as a crash would and waits for it to be gone.
func (w *worker) kill9(t *testing.T) {
	t.Helper()
	_ = w.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-w.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not die after SIGKILL", w.name)
	}
}

func (e *env) stopWorkers() {
	e.mu.Lock()
	ws := append([]*worker(nil), e.workers...)
	e.mu.Unlock()
	for _, w := range ws {
		if w.alive() {
			_ = w.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, w := range ws {
		select {
		case <-w.done:
		case <-time.After(15 * time.Second):
			_ = w.cmd.Process.Signal(syscall.SIGKILL)
			<-w.done
		}
	}
}

// logLine is one JSON log line of a worker.
type logLine struct {
	Level   string `json:"level"`
	Message string `json:"message"`
	raw     string
}

func (w *worker) logs(t *testing.T) []logLine {
	t.Helper()
	data, err := os.ReadFile(w.logPath)
	if err != nil {
		t.Fatalf("read %s log: %v", w.name, err)
	}
	var out []logLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l logLine
		_ = json.Unmarshal(sc.Bytes(), &l)
		l.raw = sc.Text()
		out = append(out, l)
	}
	return out
}

func (e *env) dumpLogs() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, w := range e.workers {
		data, _ := os.ReadFile(w.logPath)
		if len(data) > 3000 {
			data = append([]byte("...\n"), data[len(data)-3000:]...)
		}
		e.t.Logf("--- %s log (tail) ---\n%s", w.name, data)
	}
}

// waitFor polls cond every 100 ms until it holds or limit passes.
func waitFor(t *testing.T, limit time.Duration, cond func() (bool, string)) {
	t.Helper()
	waitEvery(t, limit, 100*time.Millisecond, cond)
}

// waitEvery polls cond every interval until it holds or limit passes.
func waitEvery(t *testing.T, limit, interval time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s: %s", limit, why)
		}
		time.Sleep(interval)
	}
}

// taskState is what asynq holds about one task.
type taskState struct {
	State   string
	LastErr string
	Result  tasks.Result
	HasRes  bool
}

func isDone(state string) bool { return state == "completed" || state == "archived" }

// states reads every task of the served queues through asynq's Inspector.
func (e *env) states() (map[string]taskState, error) {
	out := map[string]taskState{}
	lists := []struct {
		state string
		list  func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error)
	}{
		{"pending", e.insp.ListPendingTasks},
		{"active", e.insp.ListActiveTasks},
		{"scheduled", e.insp.ListScheduledTasks},
		{"retry", e.insp.ListRetryTasks},
		{"archived", e.insp.ListArchivedTasks},
		{"completed", e.insp.ListCompletedTasks},
	}
	for _, q := range queues {
		for _, l := range lists {
			for page := 1; ; page++ {
				infos, err := l.list(q, asynq.PageSize(2000), asynq.Page(page))
				if errors.Is(err, asynq.ErrQueueNotFound) {
					break
				}
				if err != nil {
					return nil, fmt.Errorf("%s %s: %w", q, l.state, err)
				}
				for _, ti := range infos {
					s := taskState{State: l.state, LastErr: ti.LastErr}
					if len(ti.Result) > 0 {
						s.HasRes = json.Unmarshal(ti.Result, &s.Result) == nil
					}
					// A task moving between lists may be seen twice; the
					// finished state wins.
					if prev, ok := out[ti.ID]; !ok || !isDone(prev.State) {
						out[ti.ID] = s
					}
				}
				if len(infos) < 2000 {
					break
				}
			}
		}
	}
	return out, nil
}

// doneCount counts finished tasks from the queue statistics, which is much
// cheaper than listing them.
func (e *env) doneCount() (int, error) {
	qs, err := e.insp.Queues()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, q := range qs {
		info, err := e.insp.GetQueueInfo(q)
		if err != nil {
			return 0, err
		}
		n += info.Completed + info.Archived
	}
	return n, nil
}

// pairKey names a (phone, channel) pair in the fake's records.
func pairKey(r genauthtest.Request) string {
	cc := r.PhoneCountryCode
	if cc == "" {
		cc = "+86"
	}
	return cc + " " + r.PhoneNumber + " " + r.Channel
}

func maskPair(p string) string {
	f := strings.Fields(p)
	if len(f) == 3 && len(f[1]) > 7 {
		f[1] = f[1][:3] + "****" + f[1][len(f[1])-4:]
	}
	return strings.Join(f, " ")
}

// spacingSlack covers the gap between taking a reservation and the request
// reaching the fake, since the fake stamps arrival and not the send.
const spacingSlack = 50 * time.Millisecond

// closeSend is two sends to one pair closer than the window.
type closeSend struct {
	pair          string
	first, second time.Time
}

// closeSends lists the pairs whose sends are closer than the window.
func closeSends(reqs []genauthtest.Request, window time.Duration) []closeSend {
	byPair := map[string][]time.Time{}
	for _, r := range reqs {
		byPair[pairKey(r)] = append(byPair[pairKey(r)], r.Time)
	}
	var out []closeSend
	for pair, times := range byPair {
		sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
		for i := 1; i < len(times); i++ {
			if times[i].Sub(times[i-1]) < window-spacingSlack {
				out = append(out, closeSend{pair: pair, first: times[i-1], second: times[i]})
			}
		}
	}
	return out
}

// checkLogs fails on a full phone number, a panic or a data race in any
// worker's log. numbers are national numbers, digits only.
func (e *env) checkLogs(numbers []string) {
	e.t.Helper()
	known := make(map[string]bool, len(numbers))
	for _, n := range numbers {
		known[n] = true
	}
	e.mu.Lock()
	ws := append([]*worker(nil), e.workers...)
	e.mu.Unlock()
	for _, w := range ws {
		for i, l := range w.logs(e.t) {
			for _, run := range digitRuns(l.raw, 11) {
				for n := range known {
					if strings.Contains(run, n) {
						e.t.Errorf("%s log line %d holds a full phone number: %s", w.name, i+1, strings.ReplaceAll(l.raw, n, "<PHONE>"))
						break
					}
				}
			}
			if strings.Contains(l.raw, "WARNING: DATA RACE") || strings.HasPrefix(l.raw, "panic:") {
				e.t.Errorf("%s log line %d: %s", w.name, i+1, l.raw)
			}
		}
	}
}

// digitRuns returns the runs of at least min digits in s.
func digitRuns(s string, min int) []string {
	var out []string
	start := -1
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] >= '0' && s[i] <= '9' {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 && i-start >= min {
			out = append(out, s[start:i])
		}
		start = -1
	}
	return out
}

// countLogs counts the worker log lines whose message contains sub.
func (e *env) countLogs(sub string) int {
	e.mu.Lock()
	ws := append([]*worker(nil), e.workers...)
	e.mu.Unlock()
	n := 0
	for _, w := range ws {
		for _, l := range w.logs(e.t) {
			if strings.Contains(l.raw, sub) {
				n++
			}
		}
	}
	return n
}

// historyOutcome reads a task's final outcome from the history store.
func (e *env) historyOutcome(ctx context.Context, id string) (string, bool, error) {
	entry, ok, err := e.hist.Task(ctx, id)
	if err != nil || !ok || !entry.Final {
		return "", false, err
	}
	return entry.Outcome, true, nil
}
