package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/guard"
	"github.com/smsq/smsq/internal/guard/guardsim"
	"github.com/smsq/smsq/internal/redisconn"
	"github.com/smsq/smsq/internal/tasks"
)

// defaultPoll is the worker's default SMSQ_POLL_INTERVAL, used by the
// in-process server; the worker processes run with their own default.
const defaultPoll = 100 * time.Millisecond

// params are the bench's flags.
type params struct {
	RedisURL          string        `json:"-"`
	Tasks             int           `json:"tasks"`
	Concurrency       int           `json:"concurrency"`
	Fetchers          int           `json:"fetchers"`
	EnqueueGoroutines int           `json:"enqueueGoroutines"`
	IdleSamples       int           `json:"idleSamples"`
	IdleCostWindow    time.Duration `json:"-"`
	LoadDuration      time.Duration `json:"-"`
	SlowLatency       time.Duration `json:"-"`
	RateLimit         int           `json:"rateLimit"`
	LimiterWorkers    int           `json:"limiterWorkers"`
	LimiterDuration   time.Duration `json:"-"`
	MemoryTasks       int           `json:"memoryTasks"`
	PollSweep         string        `json:"pollSweep,omitempty"`
	Quick             bool          `json:"quick"`
	JSON              bool          `json:"-"`
	CPUProfile        string        `json:"-"`
	WorkerBin         string        `json:"-"`
	GuardSim          string        `json:"guardSim"`
}

func parseParams(args []string, stderr io.Writer) (params, error) {
	var p params
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&p.RedisURL, "redis-url", "", "Redis to measure against (its database must be empty: it is flushed between phases); default: a private redis-server, else REDIS_URL")
	fs.IntVar(&p.Tasks, "tasks", 10000, "tasks per throughput phase")
	fs.IntVar(&p.Concurrency, "concurrency", 200, "worker concurrency in every processing phase")
	fs.IntVar(&p.Fetchers, "fetchers", 0, "fetch loops (asynq servers) of the in-process raw asynq and smsq servers; 0 means the worker's default for -concurrency")
	fs.IntVar(&p.EnqueueGoroutines, "enqueue-goroutines", 16, "goroutines of the parallel enqueue phase")
	fs.IntVar(&p.IdleSamples, "idle-samples", 100, "tasks sent one at a time for the idle pickup latency")
	fs.DurationVar(&p.IdleCostWindow, "idle-window", 5*time.Second, "how long Redis commands of an idle worker are counted")
	fs.DurationVar(&p.LoadDuration, "load-duration", 3*time.Second, "how long tasks are sent at half the measured throughput for the latency under load")
	fs.DurationVar(&p.SlowLatency, "genauth-latency", 100*time.Millisecond, "fake GenAuth latency of the per-process throughput phase")
	fs.IntVar(&p.RateLimit, "rate-limit", 100, "SMSQ_RATE_LIMIT (calls per second, all workers together) of the limiter phase")
	fs.IntVar(&p.LimiterWorkers, "limiter-workers", 3, "worker processes of the limiter phase")
	fs.DurationVar(&p.LimiterDuration, "limiter-duration", 5*time.Second, "how long the limiter phase runs at full backlog")
	fs.IntVar(&p.MemoryTasks, "memory-tasks", 20000, "tasks sent and retained for the Redis memory per task")
	fs.StringVar(&p.PollSweep, "poll-sweep", "", "comma-separated poll intervals (e.g. 1s,250ms,100ms,50ms) to measure idle pickup latency and Redis cost at")
	fs.BoolVar(&p.Quick, "quick", false, "small sizes for a smoke run")
	fs.BoolVar(&p.JSON, "json", false, "print JSON instead of a table")
	fs.StringVar(&p.CPUProfile, "cpuprofile", "", "write a CPU profile of the zero-latency smsq phase to this file")
	fs.StringVar(&p.WorkerBin, "worker-bin", "", "cmd/worker binary to run; default: go build it")
	fs.StringVar(&p.GuardSim, "guard-sim", "long", "abuse guard traffic simulation: long (100,000 users, 24 simulated hours), ci (the CI test's 10,000 users, 6 hours) or off")
	if err := fs.Parse(args); err != nil {
		return p, err
	}
	if fs.NArg() > 0 {
		return p, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if p.Quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := func(name string, apply func()) {
			if !set[name] {
				apply()
			}
		}
		quick("tasks", func() { p.Tasks = 300 })
		quick("concurrency", func() { p.Concurrency = 50 })
		quick("enqueue-goroutines", func() { p.EnqueueGoroutines = 4 })
		quick("idle-samples", func() { p.IdleSamples = 5 })
		quick("idle-window", func() { p.IdleCostWindow = time.Second })
		quick("load-duration", func() { p.LoadDuration = time.Second })
		quick("limiter-duration", func() { p.LimiterDuration = 2 * time.Second })
		quick("rate-limit", func() { p.RateLimit = 50 })
		quick("memory-tasks", func() { p.MemoryTasks = 200 })
		quick("guard-sim", func() { p.GuardSim = "ci" })
	}
	switch p.GuardSim {
	case "long", "ci", "off":
	default:
		return p, fmt.Errorf("-guard-sim %q: want long, ci or off", p.GuardSim)
	}
	switch {
	case p.Tasks < 10:
		return p, fmt.Errorf("-tasks %d: must be at least 10", p.Tasks)
	case p.Concurrency < 1:
		return p, fmt.Errorf("-concurrency %d: must be at least 1", p.Concurrency)
	case p.Fetchers < 0 || p.Fetchers > p.Concurrency:
		return p, fmt.Errorf("-fetchers %d: must be between 1 and -concurrency (%d), or 0 for the worker's default", p.Fetchers, p.Concurrency)
	case p.EnqueueGoroutines < 1:
		return p, fmt.Errorf("-enqueue-goroutines %d: must be at least 1", p.EnqueueGoroutines)
	case p.IdleSamples < 1:
		return p, fmt.Errorf("-idle-samples %d: must be at least 1", p.IdleSamples)
	case p.IdleCostWindow < 100*time.Millisecond:
		return p, fmt.Errorf("-idle-window %s: must be at least 100ms", p.IdleCostWindow)
	case p.LoadDuration < 100*time.Millisecond:
		return p, fmt.Errorf("-load-duration %s: must be at least 100ms", p.LoadDuration)
	case p.SlowLatency <= 0:
		return p, fmt.Errorf("-genauth-latency %s: must be positive", p.SlowLatency)
	case p.RateLimit < 1:
		return p, fmt.Errorf("-rate-limit %d: must be at least 1", p.RateLimit)
	case p.LimiterWorkers < 1:
		return p, fmt.Errorf("-limiter-workers %d: must be at least 1", p.LimiterWorkers)
	case p.LimiterDuration < time.Second:
		return p, fmt.Errorf("-limiter-duration %s: must be at least 1s", p.LimiterDuration)
	case p.MemoryTasks < 10:
		return p, fmt.Errorf("-memory-tasks %d: must be at least 10", p.MemoryTasks)
	}
	if p.Fetchers == 0 {
		p.Fetchers = tasks.FetchLoops(p.Concurrency)
	}
	if _, err := parseSweep(p.PollSweep); err != nil {
		return p, fmt.Errorf("-poll-sweep: %w", err)
	}
	return p, nil
}

func parseSweep(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		d, err := time.ParseDuration(item)
		if err != nil || d < 10*time.Millisecond {
			return nil, fmt.Errorf("%q: want a duration of at least 10ms", item)
		}
		out = append(out, d)
	}
	return out, nil
}

// run measures everything and writes the report to stdout; progress goes to
// stderr.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	p, err := parseParams(args, stderr)
	if err != nil {
		return err
	}
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", a...) }

	redisURL := p.RedisURL
	if redisURL == "" {
		if bin, err := exec.LookPath("redis-server"); err == nil {
			srv, err := startRedis(bin)
			if err != nil {
				return err
			}
			defer srv.stop()
			redisURL = srv.url()
			progress("private redis-server on %s", srv.addr())
		} else if redisURL = getenv("REDIS_URL"); redisURL == "" {
			return errors.New("no redis-server on PATH and no -redis-url or REDIS_URL")
		}
	}
	rdb, err := redisconn.Open(redisURL, redisconn.Options{PoolSize: p.Concurrency + 40})
	if err != nil {
		return err
	}
	defer rdb.Close()
	if err := redisconn.Ping(ctx, rdb, redisURL, 5*time.Second); err != nil {
		return err
	}
	if n, err := rdb.DBSize(ctx).Result(); err != nil {
		return fmt.Errorf("DBSIZE: %w", err)
	} else if n != 0 {
		return fmt.Errorf("Redis at %s holds %d keys: the bench flushes its database, so give it an empty one", redisconn.Redact(redisURL), n)
	}

	fake, err := genauthtest.Listen("127.0.0.1:0", genauthtest.Options{})
	if err != nil {
		return fmt.Errorf("start fake GenAuth: %w", err)
	}
	defer fake.Close()

	b := &bench{p: p, rdb: rdb, redisURL: redisURL, fake: fake, progress: progress}
	r, err := b.all(ctx)
	if err != nil {
		return err
	}
	if p.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	printTable(stdout, r)
	return nil
}

// bench holds what every phase shares.
type bench struct {
	p         params
	rdb       redis.UniversalClient
	redisURL  string
	fake      *genauthtest.Server
	progress  func(string, ...any)
	phoneSeq  int
	workerBin string
	tmp       string
	redisPID  int // 0 when redis-server's CPU cannot be read
}

// phone returns a valid Chinese mobile number no earlier call returned, so
// that nothing is deduplicated.
func (b *bench) phone() string {
	b.phoneSeq++
	return fmt.Sprintf("138%08d", b.phoneSeq)
}

// reset empties Redis and the fake between phases.
func (b *bench) reset(ctx context.Context) error {
	b.fake.Reset()
	b.fake.SetLatency(0)
	if err := b.rdb.FlushDB(ctx).Err(); err != nil {
		return fmt.Errorf("FLUSHDB: %w", err)
	}
	return nil
}

// worker returns the cmd/worker binary, building it on first use.
func (b *bench) worker(ctx context.Context) (string, error) {
	if b.workerBin != "" {
		return b.workerBin, nil
	}
	if b.p.WorkerBin != "" {
		b.workerBin = b.p.WorkerBin
		return b.workerBin, nil
	}
	b.progress("building cmd/worker")
	bin, err := buildWorker(ctx, b.tmp)
	if err != nil {
		return "", err
	}
	b.workerBin = bin
	return bin, nil
}

func (b *bench) all(ctx context.Context) (*report, error) {
	tmp, err := os.MkdirTemp("", "smsq-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	b.tmp = tmp

	r := &report{Params: b.p}
	r.Machine = machine{CPUs: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, Go: runtime.Version()}
	if info, err := b.rdb.Info(ctx, "server").Result(); err == nil {
		r.Machine.Redis = infoField(info, "redis_version")
		// A local server's CPU use is readable from /proc; the pid Redis
		// reports is only ours to read when that process is a
		// redis-server (not so for a Redis in a container or elsewhere).
		if pid, err := strconv.Atoi(infoField(info, "process_id")); err == nil && isRedisServer(pid) {
			if _, err := cpuSeconds(pid); err == nil {
				b.redisPID = pid
			}
		}
	}

	b.progress("enqueue throughput")
	if r.Enqueue, err = b.enqueuePhase(ctx); err != nil {
		return nil, err
	}
	b.progress("processing throughput, zero-latency GenAuth, concurrency %d, %d tasks", b.p.Concurrency, b.p.Tasks)
	if r.Processing, err = b.processingPhase(ctx); err != nil {
		return nil, err
	}
	b.progress("worker process: idle cost, pickup latency, %s GenAuth throughput, memory", b.p.SlowLatency)
	if r.Worker, r.Pickup, err = b.workerPhase(ctx); err != nil {
		return nil, err
	}
	if sweep, _ := parseSweep(b.p.PollSweep); len(sweep) > 0 {
		for _, d := range sweep {
			b.progress("poll interval %s: idle cost and pickup latency", d)
			pt, err := b.pollPoint(ctx, d)
			if err != nil {
				return nil, err
			}
			r.PollSweep = append(r.PollSweep, pt)
		}
	}
	b.progress("limiter accuracy with %d worker processes", b.p.LimiterWorkers)
	if r.Limiter, err = b.limiterPhase(ctx); err != nil {
		return nil, err
	}
	b.progress("Redis memory per retained task, %d tasks", b.p.MemoryTasks)
	if r.Memory, err = b.memoryPhase(ctx); err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	r.Capacity = capacity(r)
	b.progress("enqueue batch against raw asynq Enqueue, %d lines", b.p.Tasks)
	if r.Batch, err = b.batchPhase(ctx); err != nil {
		return nil, fmt.Errorf("batch: %w", err)
	}
	b.progress("HTTP API POST /v1/sms against smsq.Client.Send, %d requests", b.p.Tasks)
	if r.API, err = b.apiPhase(ctx); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	if b.p.GuardSim != "off" {
		sim := guardsim.Long
		if b.p.GuardSim == "ci" {
			sim = guardsim.CI
		}
		for _, pr := range []struct {
			name string
			s    guard.Settings
		}{{"defaults", guardsim.Defaults}, {"strict", guardsim.Strict}} {
			b.progress("abuse guard simulation, %s, %d users, %d attack requests", pr.name, sim.Users, sim.AttackRequests)
			if err := b.reset(ctx); err != nil {
				return nil, err
			}
			g, err := guardsim.Run(ctx, b.rdb, pr.name, pr.s, sim)
			if err != nil {
				return nil, fmt.Errorf("guard simulation: %w", err)
			}
			r.Guard = append(r.Guard, g)
		}
	}
	judge(r)
	return r, nil
}

// profile runs f under the CPU profiler when -cpuprofile is set.
func (b *bench) profile(f func() error) error {
	if b.p.CPUProfile == "" {
		return f()
	}
	out, err := os.Create(b.p.CPUProfile)
	if err != nil {
		return err
	}
	defer out.Close()
	if err := pprof.StartCPUProfile(out); err != nil {
		return err
	}
	err = f()
	pprof.StopCPUProfile()
	return err
}

// isRedisServer reports whether the local process pid is a redis-server.
func isRedisServer(pid int) bool {
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return err == nil && strings.HasPrefix(strings.TrimSpace(string(comm)), "redis-server")
}

// infoField returns a field of an INFO reply.
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}
