package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/logging"
	"github.com/smsq/smsq/internal/outcome"
	"github.com/smsq/smsq/internal/tasks"
)

// serverConfig is the asynq configuration of one of cmd/worker's fetch
// loops, so that the in-process measurements run the worker's servers.
func serverConfig(concurrency int, poll time.Duration) asynq.Config {
	cfg := tasks.ServerConfig(concurrency, poll, &logging.Asynq{Log: zerolog.Nop(), Every: 30 * time.Second})
	cfg.ShutdownTimeout = 15 * time.Second
	return cfg
}

// smsqHandler wires the send handler with the parts the zero-latency phase
// compares against a no-op: GenAuth client, reservations, history, and one
// JSON log line per attempt (into io.Discard, so that building it is
// counted), and the outcome stream's append. Unlike cmd/worker it has no rate limiter (the phase measures
// with the limit lifted) and no metrics observer.
func smsqHandler(rdb redis.UniversalClient, fake *genauthtest.Server) (asynq.Handler, error) {
	client, err := genauth.New(genauth.Config{AppHost: fake.URL(), AppID: fake.AppID()})
	if err != nil {
		return nil, err
	}
	store, err := dedupe.New(dedupe.Config{Client: rdb})
	if err != nil {
		return nil, err
	}
	journal, err := history.New(history.Config{Client: rdb})
	if err != nil {
		return nil, err
	}
	stream, err := outcome.New(outcome.Config{Client: rdb})
	if err != nil {
		return nil, err
	}
	log := zerolog.New(io.Discard).Level(zerolog.InfoLevel).With().Timestamp().Str("component", "handler").Logger()
	return tasks.NewHandler(tasks.HandlerConfig{Sender: client, Reservations: store, Journal: journal, Logger: &log, JournalOnAsynqRedis: true, Outcomes: stream})
}

// span records when the first task started and the last one ended.
type span struct {
	done  atomic.Int64
	mu    sync.Mutex
	first time.Time
	last  time.Time
	all   chan struct{}
	want  int64
}

func newSpan(want int) *span { return &span{want: int64(want), all: make(chan struct{})} }

// wrap counts h's tasks.
func (s *span) wrap(h asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		start := time.Now()
		s.mu.Lock()
		if s.first.IsZero() || start.Before(s.first) {
			s.first = start
		}
		s.mu.Unlock()
		err := h.ProcessTask(ctx, t)
		end := time.Now()
		s.mu.Lock()
		if end.After(s.last) {
			s.last = end
		}
		s.mu.Unlock()
		if s.done.Add(1) == s.want {
			close(s.all)
		}
		return err
	})
}

// rate is tasks per second over the span.
func (s *span) rate() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.last.Sub(s.first).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(s.done.Load()) / d
}

// workerProc is a cmd/worker process started by the bench.
type workerProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// buildWorker builds cmd/worker into dir.
func buildWorker(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "worker")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/smsq/smsq/cmd/worker")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build cmd/worker: %w: %s", err, strings.TrimSpace(string(b)))
	}
	return out, nil
}

// startWorker runs the worker binary against redisURL and the fake, with
// extra environment, and waits until it has started.
func startWorker(ctx context.Context, bin, redisURL string, fake *genauthtest.Server, env ...string) (*workerProc, error) {
	cmd := exec.Command(bin)
	cmd.Env = append(workerEnv(),
		"REDIS_URL="+redisURL,
		"GENAUTH_APP_HOST="+fake.URL(),
		"GENAUTH_APP_ID="+fake.AppID(),
		"SMSQ_LOG_FORMAT=json",
		"SMSQ_LOG_LEVEL=info",
		"SMSQ_HTTP_ADDR=off", // several workers run at once
		// The phases send to sequential numbers, which the abuse guard's
		// range rule would block; the guard's own phase turns it on.
		"SMSQ_GUARD_MODE=off",
	)
	cmd.Env = append(cmd.Env, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	w := &workerProc{cmd: cmd, done: make(chan struct{})}
	ready := make(chan struct{})
	var tail tailBuffer
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		seen := false
		for sc.Scan() {
			line := sc.Text()
			if !seen {
				tail.add(line)
				if strings.Contains(line, `"worker started"`) {
					seen = true
					close(ready)
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() { w.err = cmd.Wait(); close(w.done) }()
	select {
	case <-ready:
		return w, nil
	case <-w.done:
		return nil, fmt.Errorf("worker exited before starting: %v: %s", w.err, tail.String())
	case <-time.After(30 * time.Second):
		w.stop()
		return nil, errors.New("worker did not start within 30s: " + tail.String())
	case <-ctx.Done():
		w.stop()
		return nil, ctx.Err()
	}
}

// stop asks the worker to shut down and waits for it.
func (w *workerProc) stop() {
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(20 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.done
	}
}

// memory reads the worker's resident set size now and at its peak, in
// bytes, from /proc.
func (w *workerProc) memory() (rss, hwm int64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(w.cmd.Process.Pid) + "/status")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch name {
		case "VmRSS":
			rss = n << 10
		case "VmHWM":
			hwm = n << 10
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, errors.New("no VmRSS/VmHWM in /proc status")
	}
	// The kernel raises VmHWM lazily (when memory is unmapped), so it can
	// lag behind the current VmRSS.
	return rss, max(hwm, rss), nil
}

// workerEnv is the bench's environment without the worker's own settings,
// so that every worker starts from its defaults plus what the bench sets.
func workerEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "SMSQ_") || strings.HasPrefix(name, "GENAUTH_") || strings.HasPrefix(name, "REDIS_URL") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// tailBuffer keeps the first lines of a worker's log for error messages.
type tailBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (t *tailBuffer) add(s string) {
	t.mu.Lock()
	if len(t.lines) < 20 {
		t.lines = append(t.lines, s)
	}
	t.mu.Unlock()
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

// cpuSeconds reads the CPU time (user + system) a process has used so far.
func cpuSeconds(pid int) (float64, error) {
	if pid == os.Getpid() {
		// The bench itself: getrusage counts in microseconds, where /proc
		// counts in 10 ms ticks, too coarse for a short phase.
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0, err
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds(), nil
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields after it are fixed.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / clockTicks, nil
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuMeter measures how many cores a process used between start and stop.
type cpuMeter struct {
	pid   int
	cpu   float64
	start time.Time
}

func startCPU(pid int) *cpuMeter {
	if pid <= 0 {
		return nil
	}
	c, err := cpuSeconds(pid)
	if err != nil {
		return nil
	}
	return &cpuMeter{pid: pid, cpu: c, start: time.Now()}
}

// cores returns the CPU used per second of wall time since start, or 0
// when the process cannot be read.
func (m *cpuMeter) cores() float64 {
	if m == nil {
		return 0
	}
	c, err := cpuSeconds(m.pid)
	if err != nil {
		return 0
	}
	return (c - m.cpu) / time.Since(m.start).Seconds()
}
