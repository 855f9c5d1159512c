package faults

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
	"github.com/smsq/smsq/internal/redistest"
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

// TestMain removes the worker binary built by the first scenario.
func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// workerBinary builds cmd/worker once per test run, with the race detector
// when the suite runs with it.
func workerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		buildDir, err = os.MkdirTemp("", "smsq-faults-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(buildDir, "worker")
		args := []string{"build", "-o", buildPath}
		if raceEnabled {
			args = append(args, "-race")
		}
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

// slow skips scenarios that wait for asynq's lease recovery under -short.
func slow(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("slow scenario: waits for asynq lease recovery; run without -short")
	}
}

// config describes one scenario's environment.
type config struct {
	// Window is SMSQ_WINDOW; default 3s.
	Window time.Duration
	// FakeWindow is the fake GenAuth's one-send rule. Default 1ms, so the
	// fake never refuses and every send smsq lets through is visible.
	FakeWindow time.Duration
	// Redis options (AppendOnly for restarts).
	Redis redistest.Options
	// Env holds extra worker settings, NAME=value.
	Env []string
}

// env is one scenario's world: its own Redis, fake GenAuth and workers.
type env struct {
	t      *testing.T
	cfg    config
	redis  *redistest.Server
	rdb    *redis.Client
	fake   *genauthtest.Server
	insp   *asynq.Inspector
	client *smsq.Client
	raw    *asynq.Client
	hist   *history.Store
	dir    string

	mu       sync.Mutex
	workers  []*worker
	enqueued map[string]string // task ID -> queue
	phones   []string          // every number used, digits only, for the log check
}

func newEnv(t *testing.T, cfg config) *env {
	t.Helper()
	if cfg.Window == 0 {
		cfg.Window = 3 * time.Second
	}
	if cfg.FakeWindow == 0 {
		cfg.FakeWindow = time.Millisecond
	}
	bin := workerBinary(t)
	_ = bin
	e := &env{t: t, cfg: cfg, dir: t.TempDir(), enqueued: map[string]string{}}
	e.redis = redistest.Start(t, cfg.Redis)
	e.rdb = redis.NewClient(&redis.Options{Addr: e.redis.Addr(), MaxRetries: -1, DialTimeout: time.Second})
	e.fake = genauthtest.NewServer(genauthtest.Options{Window: cfg.FakeWindow})
	e.insp = asynq.NewInspectorFromRedisClient(e.rdb)
	c, err := smsq.NewClient(e.redis.URL())
	if err != nil {
		t.Fatalf("smsq.NewClient: %v", err)
	}
	e.client = c
	e.raw = asynq.NewClientFromRedisClient(e.rdb)
	if e.hist, err = history.New(history.Config{Client: e.rdb}); err != nil {
		t.Fatalf("history.New: %v", err)
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
	started time.Time
	done    chan struct{}
	err     error // exit status, once done is closed
}

// startWorker starts a worker process; extra settings override the
// scenario's.
func (e *env) startWorker(extra ...string) *worker {
	e.t.Helper()
	e.mu.Lock()
	name := "worker" + strconv.Itoa(len(e.workers)+1)
	e.mu.Unlock()
	settings := []string{
		"REDIS_URL=" + e.redis.URL(),
		"GENAUTH_APP_HOST=" + e.fake.URL(),
		"GENAUTH_APP_ID=" + e.fake.AppID(),
		"SMSQ_LOG_FORMAT=json",
		"SMSQ_LOG_LEVEL=info",
		"SMSQ_WINDOW=" + e.cfg.Window.String(),
		"SMSQ_POLL_INTERVAL=100ms",
		"SMSQ_SHUTDOWN_TIMEOUT=5s",
		"SMSQ_GENAUTH_TIMEOUT=5s",
		"SMSQ_CONCURRENCY=50",
		"SMSQ_HTTP_ADDR=off",
	}
	settings = append(settings, e.cfg.Env...)
	settings = append(settings, extra...)
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
	w := &worker{name: name, cmd: cmd, logPath: logPath, started: time.Now(), done: make(chan struct{})}
	go func() {
		w.err = cmd.Wait()
		f.Close()
		close(w.done)
	}()
	e.mu.Lock()
	e.workers = append(e.workers, w)
	e.mu.Unlock()
	e.waitLog(w, "worker started", 30*time.Second)
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

// alive reports whether the process is still running.
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

// term sends SIGTERM and waits up to limit for the worker to exit.
func (w *worker) term(t *testing.T, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(limit):
		t.Fatalf("%s still running %s after SIGTERM", w.name, limit)
	}
	return time.Since(start)
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
	Level     string `json:"level"`
	Message   string `json:"message"`
	Component string `json:"component"`
	TaskID    string `json:"task_id"`
	Outcome   string `json:"outcome"`
	Repeated  int    `json:"repeated"`
	Time      string `json:"time"`
	raw       string
}

// logs returns a worker's log lines; lines that are not JSON (a race
// report, a panic) are returned with only raw set.
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

// waitLog waits until a worker logged a line with message msg.
func (e *env) waitLog(w *worker, msg string, limit time.Duration) {
	e.t.Helper()
	waitFor(e.t, limit, func() (bool, string) {
		for _, l := range w.logs(e.t) {
			if l.Message == msg {
				return true, ""
			}
		}
		if !w.alive() {
			data, _ := os.ReadFile(w.logPath)
			e.t.Fatalf("%s exited (%v) before logging %q:\n%s", w.name, w.err, msg, data)
		}
		return false, fmt.Sprintf("%s has not logged %q", w.name, msg)
	})
}

func (e *env) dumpLogs() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, w := range e.workers {
		data, _ := os.ReadFile(w.logPath)
		if len(data) > 20000 {
			data = append([]byte("...\n"), data[len(data)-20000:]...)
		}
		e.t.Logf("--- %s log ---\n%s", w.name, data)
	}
}

// waitFor polls cond every 50 ms until it holds or limit passes.
func waitFor(t *testing.T, limit time.Duration, cond func() (bool, string)) {
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
		time.Sleep(50 * time.Millisecond)
	}
}

// phoneNumber returns the n-th test number in national form (+86 mobile).
func phoneNumber(n int) string { return fmt.Sprintf("1391%07d", n) }

// send enqueues through the producer API and returns the task ID.
func (e *env) send(channel, national string, opts ...smsq.Option) string {
	e.t.Helper()
	r, err := e.client.Send(context.Background(), smsq.Request{Channel: channel, Phone: national}, opts...)
	if err != nil {
		e.t.Fatalf("Send(%s): %v", channel, err)
	}
	e.track(r.TaskID, r.Queue, national)
	return r.TaskID
}

// sendRaw enqueues payload as a foreign producer would, with a raw asynq
// client and asynq's own defaults.
func (e *env) sendRaw(payload []byte, numbers ...string) string {
	e.t.Helper()
	info, err := e.raw.Enqueue(asynq.NewTask(tasks.TypeSendSMS, payload))
	if err != nil {
		e.t.Fatalf("raw enqueue: %v", err)
	}
	e.track(info.ID, info.Queue, numbers...)
	return info.ID
}

func (e *env) track(id, queue string, numbers ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.enqueued[id] = queue
	for _, n := range numbers {
		if d := digits(n); len(d) >= 7 {
			e.phones = append(e.phones, d)
		}
	}
}

func digits(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// taskState is what asynq holds about one task.
type taskState struct {
	ID      string
	Queue   string
	State   string
	Retried int
	LastErr string
	Result  tasks.Result
	HasRes  bool
}

// states reads every task of the scenario's queues.
func (e *env) states() (map[string]taskState, error) {
	out := map[string]taskState{}
	lists := []struct {
		state string
		list  func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error)
	}{
		{"completed", e.insp.ListCompletedTasks},
		{"archived", e.insp.ListArchivedTasks},
		{"pending", e.insp.ListPendingTasks},
		{"active", e.insp.ListActiveTasks},
		{"scheduled", e.insp.ListScheduledTasks},
		{"retry", e.insp.ListRetryTasks},
	}
	for _, q := range queues {
		for _, l := range lists {
			for page := 1; ; page++ {
				infos, err := l.list(q, asynq.PageSize(1000), asynq.Page(page))
				if errors.Is(err, asynq.ErrQueueNotFound) {
					break
				}
				if err != nil {
					return nil, err
				}
				for _, ti := range infos {
					s := taskState{ID: ti.ID, Queue: q, State: l.state, Retried: ti.Retried, LastErr: ti.LastErr}
					if len(ti.Result) > 0 {
						s.HasRes = json.Unmarshal(ti.Result, &s.Result) == nil
					}
					// A task moving between lists may be seen twice; the
					// final state wins.
					if prev, ok := out[ti.ID]; !ok || !isDone(prev.State) {
						out[ti.ID] = s
					}
				}
				if len(infos) < 1000 {
					break
				}
			}
		}
	}
	// asynq drops a completed task at once when it has no retention (a
	// raw producer's default); the history store still holds its outcome.
	e.mu.Lock()
	ids := make([]string, 0, len(e.enqueued))
	for id := range e.enqueued {
		if _, ok := out[id]; !ok {
			ids = append(ids, id)
		}
	}
	e.mu.Unlock()
	for _, id := range ids {
		h, ok, err := e.hist.Task(context.Background(), id)
		if err != nil {
			return nil, err
		}
		if !ok || !h.Final {
			continue
		}
		s := taskState{ID: id, State: "completed"}
		s.HasRes = json.Unmarshal(h.Result, &s.Result) == nil
		out[id] = s
	}
	return out, nil
}

func isDone(state string) bool { return state == "completed" || state == "archived" }

// waitDone waits until every enqueued task is completed or archived and
// returns the states.
func (e *env) waitDone(limit time.Duration) map[string]taskState {
	e.t.Helper()
	var last map[string]taskState
	waitFor(e.t, limit, func() (bool, string) {
		st, err := e.states()
		if err != nil {
			return false, "inspector: " + err.Error()
		}
		last = st
		e.mu.Lock()
		defer e.mu.Unlock()
		var open []string
		for id := range e.enqueued {
			if s, ok := st[id]; !ok || !isDone(s.State) {
				open = append(open, id+"="+s.State)
			}
		}
		if len(open) > 0 {
			sort.Strings(open)
			if len(open) > 10 {
				open = append(open[:10], "...")
			}
			return false, fmt.Sprintf("%d tasks not finished: %v", len(open), open)
		}
		return true, ""
	})
	return last
}

// waitFinal waits for one task to finish and returns its state.
func (e *env) waitFinal(id string, limit time.Duration) taskState {
	e.t.Helper()
	var s taskState
	waitFor(e.t, limit, func() (bool, string) {
		st, err := e.states()
		if err != nil {
			return false, "inspector: " + err.Error()
		}
		s = st[id]
		return isDone(s.State), fmt.Sprintf("task %s is %q", id, s.State)
	})
	return s
}

// outcomes counts final outcomes.
func outcomes(st map[string]taskState) map[string]int {
	n := map[string]int{}
	for _, s := range st {
		n[s.Result.Outcome]++
	}
	return n
}

// check runs the invariants every scenario must keep:
//
//	(a) no (phone, channel) pair got two sends inside the window;
//	(b) every enqueued task is completed or archived with a final outcome
//	    recorded in its result, and the outcomes add up;
//	(c) no worker log line holds a full phone number, and no worker
//	    panicked or raced.
func (e *env) check(st map[string]taskState) {
	e.t.Helper()
	e.checkSpacing(e.fake.Sent(), "sends")
	e.checkAccounting(st)
	e.checkLogs()
}

// pairKey names a (phone, channel) pair in the fake's records.
func pairKey(r genauthtest.Request) string {
	cc := r.PhoneCountryCode
	if cc == "" {
		cc = "+86"
	}
	return cc + " " + r.PhoneNumber + " " + r.Channel
}

// spacingSlack covers the gap between taking a reservation and the request
// reaching the fake, since the fake stamps arrival and not the send.
const spacingSlack = 50 * time.Millisecond

// checkSpacing fails when two of reqs for one pair are closer than the
// window.
func (e *env) checkSpacing(reqs []genauthtest.Request, what string) {
	e.t.Helper()
	byPair := map[string][]time.Time{}
	for _, r := range reqs {
		byPair[pairKey(r)] = append(byPair[pairKey(r)], r.Time)
	}
	for pair, times := range byPair {
		sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
		for i := 1; i < len(times); i++ {
			if gap := times[i].Sub(times[i-1]); gap < e.cfg.Window-spacingSlack {
				e.t.Errorf("invariant (a): %s %d and %d for %s are %s apart, window %s", what, i, i+1, maskPair(pair), gap, e.cfg.Window)
			}
		}
	}
}

func maskPair(p string) string {
	f := strings.Fields(p)
	if len(f) == 3 && len(f[1]) > 7 {
		f[1] = f[1][:3] + "****" + f[1][len(f[1])-4:]
	}
	return strings.Join(f, " ")
}

func (e *env) checkAccounting(st map[string]taskState) {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	counts := map[string]int{}
	for id := range e.enqueued {
		s, ok := st[id]
		switch {
		case !ok:
			e.t.Errorf("invariant (b): task %s is lost", id)
			continue
		case !isDone(s.State):
			e.t.Errorf("invariant (b): task %s is %s, not finished", id, s.State)
			continue
		case !s.HasRes:
			e.t.Errorf("invariant (b): task %s (%s) has no recorded result; last error %q", id, s.State, s.LastErr)
			continue
		case !s.Result.Final || !tasks.IsFinal(s.Result.Outcome):
			e.t.Errorf("invariant (b): task %s (%s) ends with non-final outcome %q", id, s.State, s.Result.Outcome)
		}
		counts[s.Result.Outcome]++
	}
	sum := 0
	for _, o := range tasks.FinalOutcomes {
		sum += counts[o]
	}
	if sum != len(e.enqueued) {
		e.t.Errorf("invariant (b): enqueued %d != sent+deduplicated+expired+failed+invalid %d (%v)", len(e.enqueued), sum, counts)
	}
}

func (e *env) checkLogs() {
	e.t.Helper()
	e.mu.Lock()
	ws := append([]*worker(nil), e.workers...)
	phones := append([]string(nil), e.phones...)
	e.mu.Unlock()
	for _, w := range ws {
		for i, l := range w.logs(e.t) {
			for _, p := range phones {
				if strings.Contains(l.raw, p) || (len(p) > 11 && strings.Contains(l.raw, p[len(p)-11:])) {
					e.t.Errorf("invariant (c): %s log line %d holds a full phone number: %s", w.name, i+1, strings.ReplaceAll(l.raw, p, "<PHONE>"))
				}
			}
			if strings.Contains(l.raw, "WARNING: DATA RACE") || strings.HasPrefix(l.raw, "panic:") || strings.Contains(l.raw, "goroutine ") && l.Level == "" {
				e.t.Errorf("%s log line %d: %s", w.name, i+1, l.raw)
			}
		}
	}
}

// callsByPair groups the fake's requests by pair, in arrival order.
func callsByPair(reqs []genauthtest.Request) map[string][]genauthtest.Request {
	out := map[string][]genauthtest.Request{}
	for _, r := range reqs {
		out[pairKey(r)] = append(out[pairKey(r)], r)
	}
	return out
}
