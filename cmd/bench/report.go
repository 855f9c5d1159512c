package main

import (
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/smsq/smsq/internal/guard/guardsim"
)

// report is everything the bench measured. Every number in it is positive
// when the measurement ran; the limiter's are zero when no limiter exists.
type report struct {
	Machine    machine           `json:"machine"`
	Params     params            `json:"params"`
	Enqueue    enqueueFigures    `json:"enqueue"`
	Processing processingFigures `json:"processing"`
	Worker     workerFigures     `json:"worker"`
	Pickup     pickupFigures     `json:"pickup"`
	Limiter    limiterFigures    `json:"limiter"`
	Memory     memoryFigures     `json:"memory"`
	Capacity   []capacityRow     `json:"capacity"`
	Batch      batchFigures      `json:"batch"`
	API        apiFigures        `json:"api"`
	PollSweep  []pollPoint       `json:"pollSweep,omitempty"`
	// Guard holds the abuse guard simulation, per profile.
	Guard []guardsim.Report `json:"guard,omitempty"`
	// Targets holds every figure that has a target, beside it.
	Targets []goal `json:"targets"`
}

type machine struct {
	CPUs   int    `json:"cpus"`
	GOOS   string `json:"goos"`
	GOARCH string `json:"goarch"`
	Go     string `json:"go"`
	Redis  string `json:"redis"`
}

// enqueueFigures: smsq.Client.Send, tasks per second.
type enqueueFigures struct {
	Sequential float64 `json:"sequentialPerSec"`
	Parallel   float64 `json:"parallelPerSec"`
	Goroutines int     `json:"goroutines"`
}

// processingFigures: one in-process worker, zero-latency GenAuth, with
// three handlers under the same asynq servers: raw asynq's no-op, the
// hand-written sender and smsq's.
type processingFigures struct {
	FetchLoops              int     `json:"fetchLoops"`
	Smsq                    float64 `json:"smsqPerSec"`
	RawAsynq                float64 `json:"rawAsynqPerSec"`
	Sender                  float64 `json:"senderPerSec"`
	Ratio                   float64 `json:"ratio"`
	SmsqOverSender          float64 `json:"smsqOverSender"`
	SmsqCommandsPerTask     float64 `json:"smsqCommandsPerTask"`
	RawCommandsPerTask      float64 `json:"rawAsynqCommandsPerTask"`
	SenderCommandsPerTask   float64 `json:"senderCommandsPerTask"`
	SmsqRoundTripsPerTask   float64 `json:"smsqRoundTripsPerTask"`
	RawRoundTripsPerTask    float64 `json:"rawAsynqRoundTripsPerTask"`
	SenderRoundTripsPerTask float64 `json:"senderRoundTripsPerTask"`
	SmsqRedisCores          float64 `json:"smsqRedisCores,omitempty"`
	RawRedisCores           float64 `json:"rawAsynqRedisCores,omitempty"`
	SenderRedisCores        float64 `json:"senderRedisCores,omitempty"`
	SmsqProcessCores        float64 `json:"smsqProcessCores"`
	RawProcessCores         float64 `json:"rawAsynqProcessCores"`
	SenderProcessCores      float64 `json:"senderProcessCores"`
}

// workerFigures: one worker process with a slow GenAuth.
type workerFigures struct {
	GenAuthLatencyMS float64 `json:"genauthLatencyMs"`
	Concurrency      int     `json:"concurrency"`
	TasksPerSec      float64 `json:"tasksPerSec"`
	RSSMiB           float64 `json:"rssMiB"`
	PeakRSSMiB       float64 `json:"peakRssMiB"`
	WorkerCores      float64 `json:"workerCores"`
	RedisCores       float64 `json:"redisCores,omitempty"`
}

// pickupFigures: time from Send to the GenAuth call, worker defaults.
type pickupFigures struct {
	PollInterval         string  `json:"pollInterval"`
	IdleSamples          int     `json:"idleSamples"`
	IdleP50MS            float64 `json:"idleP50Ms"`
	IdleP99MS            float64 `json:"idleP99Ms"`
	IdleCommandsPerSec   float64 `json:"idleRedisCommandsPerSec"`
	IdleFetchLoops       int     `json:"idleFetchLoops"`
	IdleCommandsPerLoop  float64 `json:"idleRedisCommandsPerSecPerFetchLoop"`
	LoadRate             float64 `json:"loadRatePerSec"`
	LoadGenAuthLatencyMS float64 `json:"loadGenauthLatencyMs"`
	LoadSamples          int     `json:"loadSamples"`
	LoadP50MS            float64 `json:"loadP50Ms"`
	LoadP99MS            float64 `json:"loadP99Ms"`
	// Send then Wait on an idle worker, one task at a time (a login page):
	// the whole time, and the part after GenAuth received the call.
	WaitSamples    int     `json:"waitSamples"`
	SendWaitP50MS  float64 `json:"sendWaitP50Ms"`
	SendWaitP99MS  float64 `json:"sendWaitP99Ms"`
	AfterCallP50MS float64 `json:"waitAfterCallP50Ms"`
	AfterCallP99MS float64 `json:"waitAfterCallP99Ms"`
}

// limiterFigures: GenAuth calls of several workers sharing one limit.
type limiterFigures struct {
	Available     bool    `json:"available"`
	Note          string  `json:"note,omitempty"`
	Workers       int     `json:"workers"`
	Limit         float64 `json:"limitPerSec,omitempty"`
	MaxPerSecond  float64 `json:"maxCallsInAnySecond,omitempty"`
	MeanPerSecond float64 `json:"meanCallsPerSec,omitempty"`
	MaxOfLimitPct float64 `json:"maxOfLimitPct,omitempty"`
	Bound         float64 `json:"boundPerSec,omitempty"`
}

// memoryFigures: Redis memory a sent task keeps, measured with INFO memory
// (used_memory without client buffers) against an empty database, once
// the tasks' reservations expired.
type memoryFigures struct {
	Tasks                  int     `json:"tasks"`
	Window                 string  `json:"reservationWindow"`
	Retention              string  `json:"retention"`
	PendingBytesPerTask    float64 `json:"pendingBytesPerTask"`
	RetainedBytesPerTask   float64 `json:"retainedBytesPerTask"`
	KeysPerTask            float64 `json:"keysPerTask"`
	ReservationsLeft       int     `json:"reservationsLeft,omitempty"`
	EnqueueCommandsPerTask float64 `json:"enqueueCommandsPerTask"`
	// Keys breaks the retained keys down by kind, largest first.
	Keys []keyKind `json:"keys"`
}

// keyKind: the retained keys of one kind (a key name with its per-task
// part elided) and their MEMORY USAGE, per sent task.
type keyKind struct {
	Kind         string  `json:"kind"`
	Keys         int64   `json:"keys"`
	KeysPerTask  float64 `json:"keysPerTask"`
	BytesPerTask float64 `json:"bytesPerTask"`
}

// capacityRow: what a steady send rate costs Redis with the default
// retention, derived from the measured per-task figures.
type capacityRow struct {
	SendsPerSec         float64 `json:"sendsPerSec"`
	RetainedTasks       float64 `json:"retainedTasks"`
	RedisMemoryGB       float64 `json:"redisMemoryGB"`
	RedisCommandsPerSec float64 `json:"redisCommandsPerSec"`
}

// apiFigures: POST /v1/sms on one process against smsq.Client.Send, same
// Redis, same number of goroutines; latencies of one call, in ms.
type apiFigures struct {
	Requests   int     `json:"requests"`
	Goroutines int     `json:"goroutines"`
	APIPerSec  float64 `json:"apiPerSec"`
	APIP50Ms   float64 `json:"apiP50Ms"`
	APIP99Ms   float64 `json:"apiP99Ms"`
	SendPerSec float64 `json:"sendPerSec"`
	SendP50Ms  float64 `json:"sendP50Ms"`
	SendP99Ms  float64 `json:"sendP99Ms"`
	Ratio      float64 `json:"ratio"`
}

// batchFigures: enqueue batch against raw asynq Enqueue, same Redis, same
// run; peak memory is the Go heap's growth during the run.
type batchFigures struct {
	Lines            int     `json:"lines"`
	Concurrency      int     `json:"concurrency"`
	BatchPerSec      float64 `json:"batchPerSec"`
	RawPerSec        float64 `json:"rawAsynqPerSec"`
	Ratio            float64 `json:"ratio"`
	BatchPeakHeapMiB float64 `json:"batchPeakHeapMiB"`
	RawPeakHeapMiB   float64 `json:"rawAsynqPeakHeapMiB"`
}

// goal is a figure beside its target.
type goal struct {
	// Figure is the figure's path in the JSON report.
	Figure string  `json:"figure"`
	Value  float64 `json:"value"`
	Target string  `json:"target"`
	Met    bool    `json:"met"`
	// FloorMet says, for a target with a floor below it, whether the
	// figure reaches the floor.
	FloorMet *bool `json:"floorMet,omitempty"`
}

// atLeast and atMost make a goal; unit (with its leading space) follows
// the wanted value in the target's text.
func atLeast(figure string, v, want float64, unit string) goal {
	return goal{Figure: figure, Value: v, Target: ">= " + trimFloat(want) + unit, Met: v >= want}
}

func atMost(figure string, v, want float64, unit string) goal {
	return goal{Figure: figure, Value: v, Target: "<= " + trimFloat(want) + unit, Met: v <= want}
}

// withFloor adds a floor below an at-least target.
func (g goal) withFloor(floor float64) goal {
	ok := g.Value >= floor
	g.FloorMet = &ok
	g.Target += " (floor " + trimFloat(floor) + ")"
	return g
}

func trimFloat(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// judge sets r.Targets from the figures.
func judge(r *report) {
	p, pk := r.Processing, r.Pickup
	r.Targets = []goal{
		atLeast("processing.ratio", p.Ratio, 0.5, ""),
		atLeast("processing.smsqOverSender", p.SmsqOverSender, 0.8, "").withFloor(0.65),
		atMost("processing.smsqCommandsPerTask", p.SmsqCommandsPerTask, 24, " commands"),
		atMost("processing.smsqRoundTripsPerTask", p.SmsqRoundTripsPerTask, 4, " round trips"),
		atLeast("worker.tasksPerSec", r.Worker.TasksPerSec, 1500, " tasks/s"),
		atMost("pickup.idleP99Ms", pk.IdleP99MS, 100, " ms"),
		atMost("pickup.idleRedisCommandsPerSecPerFetchLoop", pk.IdleCommandsPerLoop, 100, " commands/s"),
		atMost("memory.retainedBytesPerTask", r.Memory.RetainedBytesPerTask, 1200, " bytes"),
		atLeast("batch.ratio", r.Batch.Ratio, 0.8, ""),
		atLeast("api.ratio", r.API.Ratio, 0.5, ""),
	}
	if l := r.Limiter; l.Available {
		r.Targets = append(r.Targets, atMost("limiter.maxCallsInAnySecond", l.MaxPerSecond, l.Bound, " calls"))
	}
	for _, g := range r.Guard {
		r.Targets = append(r.Targets,
			atMost("guard."+g.Profile+".attackSentShare", g.AttackShare(), 0.05, ""),
			atMost("guard."+g.Profile+".ordinaryBlockedShare", g.OrdinaryBlockedShare(), 0.005, ""))
	}
}

// target is the table's TARGET cell of a figure: its target and whether
// it is met.
func (r *report) target(figure string) string {
	for _, g := range r.Targets {
		if g.Figure != figure {
			continue
		}
		s := g.Target + ": met"
		if !g.Met {
			s = g.Target + ": NOT MET"
			if g.FloorMet != nil && *g.FloorMet {
				s += " (floor met)"
			}
		}
		return s
	}
	return ""
}

// pollPoint: an idle worker at one SMSQ_POLL_INTERVAL.
type pollPoint struct {
	Interval           string  `json:"interval"`
	Samples            int     `json:"samples"`
	P50MS              float64 `json:"p50Ms"`
	P99MS              float64 `json:"p99Ms"`
	MaxMS              float64 `json:"maxMs"`
	IdleCommandsPerSec float64 `json:"idleRedisCommandsPerSec"`
}

func printTable(w io.Writer, r *report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(name, value, target string) { fmt.Fprintf(tw, "%s\t%s\t%s\n", name, value, target) }
	fmt.Fprintf(w, "smsq bench: %d CPUs, %s/%s, %s, Redis %s; %d tasks per phase, concurrency %d\n\n",
		r.Machine.CPUs, r.Machine.GOOS, r.Machine.GOARCH, r.Machine.Go, r.Machine.Redis, r.Params.Tasks, r.Params.Concurrency)
	row("MEASURE", "VALUE", "TARGET")
	row("enqueue, sequential Send", fmt.Sprintf("%.0f tasks/s", r.Enqueue.Sequential), "")
	row(fmt.Sprintf("enqueue, %d goroutines", r.Enqueue.Goroutines), fmt.Sprintf("%.0f tasks/s", r.Enqueue.Parallel), "")
	p := r.Processing
	row(fmt.Sprintf("processing, %d fetch loops (the worker's layout)", p.FetchLoops), "same asynq servers, only the handler differs", "")
	row("processing, raw asynq no-op handler", fmt.Sprintf("%.0f tasks/s", p.RawAsynq), "")
	row("processing, hand-written sender, 0 ms GenAuth", fmt.Sprintf("%.0f tasks/s", p.Sender), "")
	row("processing, smsq handler, 0 ms GenAuth", fmt.Sprintf("%.0f tasks/s", p.Smsq), "")
	row("  smsq / raw asynq", fmt.Sprintf("%.2f", p.Ratio), r.target("processing.ratio"))
	row("  smsq / hand-written sender", fmt.Sprintf("%.2f", p.SmsqOverSender), r.target("processing.smsqOverSender"))
	row("  Redis commands per task (server)", fmt.Sprintf("smsq %.1f, sender %.1f, raw %.1f", p.SmsqCommandsPerTask, p.SenderCommandsPerTask, p.RawCommandsPerTask), "smsq "+r.target("processing.smsqCommandsPerTask"))
	row("  Redis round trips per task (client)", fmt.Sprintf("smsq %.1f, sender %.1f, raw %.1f", p.SmsqRoundTripsPerTask, p.SenderRoundTripsPerTask, p.RawRoundTripsPerTask), "smsq "+r.target("processing.smsqRoundTripsPerTask"))
	row("  CPU cores used: redis-server, bench process", fmt.Sprintf("smsq %.2f + %.2f, sender %.2f + %.2f, raw %.2f + %.2f",
		p.SmsqRedisCores, p.SmsqProcessCores, p.SenderRedisCores, p.SenderProcessCores, p.RawRedisCores, p.RawProcessCores), "")
	wk := r.Worker
	row(fmt.Sprintf("worker process, %.0f ms GenAuth, concurrency %d, no rate limit", wk.GenAuthLatencyMS, wk.Concurrency), fmt.Sprintf("%.0f tasks/s", wk.TasksPerSec), r.target("worker.tasksPerSec"))
	row("  worker RSS after / peak", fmt.Sprintf("%.0f / %.0f MiB", wk.RSSMiB, wk.PeakRSSMiB), "")
	row("  CPU cores used: redis-server, worker", fmt.Sprintf("%.2f + %.2f", wk.RedisCores, wk.WorkerCores), "")
	pk := r.Pickup
	row(fmt.Sprintf("pickup latency, idle (poll %s, %d tasks)", pk.PollInterval, pk.IdleSamples), fmt.Sprintf("p50 %.0f ms, p99 %.0f ms", pk.IdleP50MS, pk.IdleP99MS), "p99 "+r.target("pickup.idleP99Ms"))
	row(fmt.Sprintf("pickup latency, %.0f tasks/s, %.0f ms GenAuth", pk.LoadRate, pk.LoadGenAuthLatencyMS), fmt.Sprintf("p50 %.0f ms, p99 %.0f ms", pk.LoadP50MS, pk.LoadP99MS), "")
	row(fmt.Sprintf("Send + Wait, idle worker (%d tasks)", pk.WaitSamples), fmt.Sprintf("p50 %.1f ms, p99 %.1f ms; after the GenAuth call p50 %.1f ms, p99 %.1f ms", pk.SendWaitP50MS, pk.SendWaitP99MS, pk.AfterCallP50MS, pk.AfterCallP99MS), "")
	row(fmt.Sprintf("idle worker Redis load, %d fetch loops", pk.IdleFetchLoops), fmt.Sprintf("%.0f commands/s, %.0f per fetch loop", pk.IdleCommandsPerSec, pk.IdleCommandsPerLoop), "per loop "+r.target("pickup.idleRedisCommandsPerSecPerFetchLoop"))
	l := r.Limiter
	if l.Available {
		row(fmt.Sprintf("limiter, %d workers, SMSQ_RATE_LIMIT=%.0f (bound: rate + burst)", l.Workers, l.Limit),
			fmt.Sprintf("max %.0f calls in any 1 s (%.0f%% of limit), mean %.1f/s", l.MaxPerSecond, l.MaxOfLimitPct, l.MeanPerSecond),
			r.target("limiter.maxCallsInAnySecond"))
	} else {
		row(fmt.Sprintf("limiter, %d workers", l.Workers), l.Note, "")
	}
	m := r.Memory
	row(fmt.Sprintf("Redis memory per sent task, %s retention (%d tasks)", m.Retention, m.Tasks), fmt.Sprintf("%.0f bytes retained, %.0f while pending", m.RetainedBytesPerTask, m.PendingBytesPerTask), r.target("memory.retainedBytesPerTask"))
	row("  Redis keys per retained task", fmt.Sprintf("%.2f", m.KeysPerTask), "")
	row("  Redis commands per enqueue", fmt.Sprintf("%.1f", m.EnqueueCommandsPerTask), "")
	bf := r.Batch
	row(fmt.Sprintf("enqueue batch, --concurrency %d, %d lines", bf.Concurrency, bf.Lines), fmt.Sprintf("%.0f lines/s, peak heap +%.1f MiB", bf.BatchPerSec, bf.BatchPeakHeapMiB), "")
	row(fmt.Sprintf("raw asynq Enqueue, %d goroutines", bf.Concurrency), fmt.Sprintf("%.0f tasks/s, peak heap +%.1f MiB", bf.RawPerSec, bf.RawPeakHeapMiB), "")
	row("  enqueue batch / raw asynq", fmt.Sprintf("%.2f", bf.Ratio), r.target("batch.ratio"))
	af := r.API
	row(fmt.Sprintf("HTTP API POST /v1/sms, %d clients, %d requests", af.Goroutines, af.Requests), fmt.Sprintf("%.0f requests/s, p50 %.2f ms, p99 %.2f ms", af.APIPerSec, af.APIP50Ms, af.APIP99Ms), "")
	row(fmt.Sprintf("smsq.Client.Send, %d goroutines", af.Goroutines), fmt.Sprintf("%.0f tasks/s, p50 %.2f ms, p99 %.2f ms", af.SendPerSec, af.SendP50Ms, af.SendP99Ms), "")
	row("  POST /v1/sms / Send", fmt.Sprintf("%.2f", af.Ratio), r.target("api.ratio"))
	for _, g := range r.Guard {
		row(fmt.Sprintf("abuse guard, %s: attack requests reaching GenAuth", g.Profile), fmt.Sprintf("%d of %d (%.2f %%), %d before the breakers tripped", g.AttackSent, g.Attack, 100*g.AttackShare(), g.AttackBeforeTrip), r.target("guard."+g.Profile+".attackSentShare"))
		row(fmt.Sprintf("  %s: ordinary requests blocked", g.Profile), fmt.Sprintf("%d of %d (%.3f %%)", g.OrdinaryBlocked, g.Ordinary, 100*g.OrdinaryBlockedShare()), r.target("guard."+g.Profile+".ordinaryBlockedShare"))
		row(fmt.Sprintf("  %s: victim's codes", g.Profile), fmt.Sprintf("%d of %d requests (%s simulated in %s)", g.VictimSent, g.Victim, fmtHours(g), g.Elapsed.Round(time.Second)), "")
	}
	tw.Flush()

	fmt.Fprintf(w, "\nRedis memory: used_memory less client buffers, empty database against %d sent tasks once their\n", m.Tasks)
	fmt.Fprintf(w, "reservations expired (worker with SMSQ_WINDOW=%s, stopped; %d reservations left, measured and left out).\n", m.Window, m.ReservationsLeft)
	fmt.Fprintln(w, "Retained keys by kind (MEMORY USAGE, per sent task):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kind\tkeys/task\tbytes/task\t")
	for _, k := range m.Keys {
		fmt.Fprintf(tw, "%s\t%.2f\t%.0f\t\n", k.Kind, k.KeysPerTask, k.BytesPerTask)
	}
	tw.Flush()

	fmt.Fprintf(w, "\ncapacity with the default %s retention, from the figures above (commands: %.1f per enqueue + %.1f per\n", m.Retention, m.EnqueueCommandsPerTask, p.SmsqCommandsPerTask)
	fmt.Fprintln(w, "processed task; idle fetch loops add their own; asynq's janitor deletes expired tasks in batches):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "sends/s\tretained tasks\tRedis memory\tRedis commands/s\t")
	for _, c := range r.Capacity {
		fmt.Fprintf(tw, "%.0f\t%.0f\t%.1f GB\t%.0f\t\n", c.SendsPerSec, c.RetainedTasks, c.RedisMemoryGB, c.RedisCommandsPerSec)
	}
	tw.Flush()

	if len(r.PollSweep) > 0 {
		fmt.Fprintln(w, "\nidle worker by SMSQ_POLL_INTERVAL:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "interval\tsamples\tp50 ms\tp99 ms\tmax ms\tRedis commands/s\t")
		for _, pt := range r.PollSweep {
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.0f\t%.1f\t\n", pt.Interval, pt.Samples, pt.P50MS, pt.P99MS, pt.MaxMS, pt.IdleCommandsPerSec)
		}
		tw.Flush()
	}

	met := 0
	for _, g := range r.Targets {
		if g.Met {
			met++
		}
	}
	fmt.Fprintf(w, "\ntargets met: %d of %d\n", met, len(r.Targets))
}

// flagDefault reads a flag's default from Go flag usage text.
func flagDefault(usage, name string) (string, bool) {
	lines := strings.Split(usage, "\n")
	head := regexp.MustCompile(`^\s+-` + regexp.QuoteMeta(name) + `(\s|$)`)
	for i, line := range lines {
		if !head.MatchString(line) {
			continue
		}
		for j := i; j < len(lines) && (j == i || !strings.HasPrefix(strings.TrimSpace(lines[j]), "-")); j++ {
			if m := defaultRE.FindStringSubmatch(lines[j]); m != nil {
				return m[1], true
			}
		}
		return "", true
	}
	return "", false
}

var defaultRE = regexp.MustCompile(`\(default "?([^")]*)"?\)`)

// fmtHours names the simulated time of a guard run.
func fmtHours(g guardsim.Report) string { return strconv.Itoa(int(g.Simulated.Hours())) + " h" }
