package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smsq/smsq/internal/redistest"
)

// TestQuickRun runs the whole bench at smoke-test sizes against a private
// Redis and checks that every figure is there and positive. It checks no
// thresholds: figures depend on the machine.
func TestQuickRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs worker processes")
	}
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	args := []string{
		"-quick", "-json", "-redis-url", srv.URL(),
		"-tasks", "100", "-concurrency", "20", "-fetchers", "2", "-idle-samples", "3",
		"-idle-window", "200ms", "-load-duration", "500ms", "-limiter-duration", "1s",
		"-poll-sweep", "100ms", "-memory-tasks", "100",
		// test/guard runs the guard simulation itself.
		"-guard-sim", "off",
	}
	if err := run(ctx, args, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	var got map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout.String())
	}
	for _, path := range []string{
		"enqueue.sequentialPerSec", "enqueue.parallelPerSec",
		"processing.smsqPerSec", "processing.rawAsynqPerSec", "processing.ratio", "processing.fetchLoops",
		"processing.smsqCommandsPerTask", "processing.rawAsynqCommandsPerTask",
		"processing.smsqRoundTripsPerTask", "processing.rawAsynqRoundTripsPerTask",
		"processing.senderPerSec", "processing.smsqOverSender",
		"processing.senderCommandsPerTask", "processing.senderRoundTripsPerTask",
		"worker.tasksPerSec", "worker.rssMiB", "worker.peakRssMiB",
		"pickup.idleP50Ms", "pickup.idleP99Ms", "pickup.idleRedisCommandsPerSec",
		"pickup.loadP50Ms", "pickup.loadP99Ms",
		"pickup.sendWaitP50Ms", "pickup.sendWaitP99Ms", "pickup.waitAfterCallP50Ms", "pickup.waitAfterCallP99Ms",
		"pickup.idleFetchLoops", "pickup.idleRedisCommandsPerSecPerFetchLoop",
		"limiter.workers",
		"memory.tasks", "memory.pendingBytesPerTask", "memory.retainedBytesPerTask",
		"memory.keysPerTask", "memory.enqueueCommandsPerTask",
		"batch.lines", "batch.batchPerSec", "batch.rawAsynqPerSec", "batch.ratio",
		"batch.batchPeakHeapMiB", "batch.rawAsynqPeakHeapMiB",
	} {
		if _, ok := lookup(got, path); !ok {
			t.Errorf("%s missing from the JSON", path)
		}
	}
	// The bench builds this tree's worker, which has a limiter: a worker
	// whose -h the bench cannot read would show as "no limiter" here.
	if lim, _ := lookup(got, "limiter.available"); lim != true {
		t.Errorf("limiter.available = %v, want true for this tree's worker", lim)
	}
	for _, path := range []string{"limiter.limitPerSec", "limiter.maxCallsInAnySecond"} {
		if _, ok := lookup(got, path); !ok {
			t.Errorf("%s missing", path)
		}
	}
	sweep, _ := lookup(got, "pollSweep")
	if s, ok := sweep.([]any); !ok || len(s) != 1 {
		t.Errorf("pollSweep = %v, want one point", sweep)
	}
	checkMemory(t, got)
	checkTargets(t, got)
	checkPositive(t, "", got)
}

// checkMemory checks the memory phase's figures against each other: every
// retained task keeps at least its asynq task, the breakdown by kind adds
// up to the keys counted, and the capacity table follows from the
// per-task figures.
func checkMemory(t *testing.T, got map[string]any) {
	t.Helper()
	perTask, _ := lookup(got, "memory.keysPerTask")
	if v, _ := perTask.(float64); v < 1 {
		t.Errorf("memory.keysPerTask = %v, want at least 1 (the asynq task)", perTask)
	}
	kinds, _ := lookup(got, "memory.keys")
	tasks, _ := lookup(got, "memory.tasks")
	var keys float64
	list, _ := kinds.([]any)
	for _, k := range list {
		v, _ := lookup(k, "keys")
		f, _ := v.(float64)
		keys += f
	}
	// The breakdown also holds the per-queue keys an empty database has.
	if v, _ := perTask.(float64); len(list) == 0 || keys < math.Round(v*tasks.(float64)) {
		t.Errorf("memory.keys = %v: %v keys by kind, want at least memory.keysPerTask %v x %v tasks", kinds, keys, perTask, tasks)
	}
	bytes, _ := lookup(got, "memory.retainedBytesPerTask")
	cmds, _ := lookup(got, "processing.smsqCommandsPerTask")
	enq, _ := lookup(got, "memory.enqueueCommandsPerTask")
	capacity, _ := lookup(got, "capacity")
	rows, _ := capacity.([]any)
	if len(rows) != 3 {
		t.Fatalf("capacity = %v, want rows for 100, 1000 and 10000 sends/s", capacity)
	}
	for i, rate := range []float64{100, 1000, 10000} {
		gotRate, _ := lookup(rows[i], "sendsPerSec")
		mem, _ := lookup(rows[i], "redisMemoryGB")
		cps, _ := lookup(rows[i], "redisCommandsPerSec")
		wantMem := rate * 86400 * bytes.(float64) / 1e9
		wantCPS := rate * (cmds.(float64) + enq.(float64))
		if gotRate != rate || !near(mem.(float64), wantMem) || !near(cps.(float64), wantCPS) {
			t.Errorf("capacity[%d] = %v, want %v sends/s, %v GB, %v commands/s", i, rows[i], rate, wantMem, wantCPS)
		}
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b)) }

// checkTargets checks that every target names a figure of the report,
// with its value, and says whether it is met.
func checkTargets(t *testing.T, got map[string]any) {
	t.Helper()
	targets, _ := lookup(got, "targets")
	list, _ := targets.([]any)
	if len(list) < 10 {
		t.Fatalf("targets = %v, want one per figure with a target", targets)
	}
	for _, g := range list {
		figure, _ := lookup(g, "figure")
		value, _ := lookup(g, "value")
		met, ok := lookup(g, "met")
		if _, isBool := met.(bool); !ok || !isBool {
			t.Errorf("target %v: no met/not met", g)
		}
		name, _ := figure.(string)
		if v, ok := lookup(got, name); !ok || v != value {
			t.Errorf("target %v: figure %q is %v in the report", g, name, v)
		}
	}
}

// lookup follows a dotted path through decoded JSON objects.
func lookup(v any, path string) (any, bool) {
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// checkPositive fails for any number that is not positive and any empty
// string, except in a limiter section that reports no limiter.
func checkPositive(t *testing.T, path string, v any) {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		if avail, ok := x["available"]; ok && avail == false {
			return
		}
		for k, e := range x {
			checkPositive(t, strings.TrimPrefix(path+"."+k, "."), e)
		}
	case []any:
		for i, e := range x {
			checkPositive(t, path+"["+strconv.Itoa(i)+"]", e)
		}
	case float64:
		if x <= 0 {
			t.Errorf("%s = %v, want a positive figure", path, x)
		}
	case string:
		if x == "" {
			t.Errorf("%s is empty", path)
		}
	}
}
