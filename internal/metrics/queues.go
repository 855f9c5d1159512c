package metrics

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// DefaultQueueCacheFor is how long one read of the queue metrics serves
// scrapes: parallel and repeated scrapes share one Redis read.
const DefaultQueueCacheFor = 5 * time.Second

// MaxUnservedChecked bounds how many queues without a live server one read
// looks into: any producer can make queue names, and the scrape must not
// grow with them.
const MaxUnservedChecked = 100

// Descriptors: asynq's own queue metrics (the names of asynq's
// x/metrics collector, so that dashboards keep working), for the served
// queues only, and smsq's figures about queues nobody serves.
var (
	tasksQueuedDesc  = prometheus.NewDesc("asynq_tasks_enqueued_total", "Number of tasks enqueued; broken down by queue and state.", []string{"queue", "state"}, nil)
	queueSizeDesc    = prometheus.NewDesc("asynq_queue_size", "Number of tasks in a queue", []string{"queue"}, nil)
	queueLatencyDesc = prometheus.NewDesc("asynq_queue_latency_seconds", "Number of seconds the oldest pending task is waiting in pending state to be processed.", []string{"queue"}, nil)
	queueMemDesc     = prometheus.NewDesc("asynq_queue_memory_usage_approx_bytes", "Number of memory used by a given queue (approximated number by sampling).", []string{"queue"}, nil)
	processedDesc    = prometheus.NewDesc("asynq_tasks_processed_total", "Number of tasks processed (both succeeded and failed); broken down by queue", []string{"queue"}, nil)
	failedDesc       = prometheus.NewDesc("asynq_tasks_failed_total", "Number of tasks failed; broken down by queue", []string{"queue"}, nil)
	pausedDesc       = prometheus.NewDesc("asynq_queue_paused_total", "Number of queues paused", []string{"queue"}, nil)

	knownQueuesDesc     = prometheus.NewDesc("smsq_queues_known", "Queue names Redis knows (asynq:queues), served or not.", nil, nil)
	unservedDesc        = prometheus.NewDesc("smsq_unserved_queues", "Queues with tasks waiting (pending, scheduled or retry) that no live worker serves: their tasks never get an outcome. Alert when above 0.", nil, nil)
	unservedTasksDesc   = prometheus.NewDesc("smsq_unserved_queue_tasks", "Tasks waiting in queues that no live worker serves.", nil, nil)
	unservedUncheckDesc = prometheus.NewDesc("smsq_unserved_queues_unchecked", "Queues without a live server not looked into by this read (more than MaxUnservedChecked).", nil, nil)
)

// queueCollector reports asynq's queue metrics for the queues this worker
// serves, and how many queues hold tasks that no live worker serves.
// A read is cached for cacheFor; concurrent scrapes wait for one read.
type queueCollector struct {
	ins      *asynq.Inspector
	rdb      redis.UniversalClient
	queues   []string
	cacheFor time.Duration
	now      func() time.Time

	mu      sync.Mutex
	readAt  time.Time
	metrics []prometheus.Metric
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{tasksQueuedDesc, queueSizeDesc, queueLatencyDesc, queueMemDesc, processedDesc,
		failedDesc, pausedDesc, knownQueuesDesc, unservedDesc, unservedTasksDesc, unservedUncheckDesc} {
		ch <- d
	}
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if c.metrics == nil || c.now().Sub(c.readAt) >= c.cacheFor {
		c.metrics = c.read()
		c.readAt = c.now()
	}
	ms := c.metrics
	c.mu.Unlock()
	for _, m := range ms {
		ch <- m
	}
}

// read reads every metric from Redis once. A failed part is left out (the
// scrape still shows the rest) and reported as an invalid metric.
func (c *queueCollector) read() []prometheus.Metric {
	var out []prometheus.Metric
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		out = append(out, prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...))
	}
	for _, q := range c.queues {
		info, err := c.ins.GetQueueInfo(q)
		if errors.Is(err, asynq.ErrQueueNotFound) {
			continue // no task was ever queued there
		}
		if err != nil {
			out = append(out, prometheus.NewInvalidMetric(queueSizeDesc, err))
			continue
		}
		for state, n := range map[string]int{"active": info.Active, "pending": info.Pending, "scheduled": info.Scheduled,
			"retry": info.Retry, "archived": info.Archived, "completed": info.Completed} {
			gauge(tasksQueuedDesc, float64(n), q, state)
		}
		gauge(queueSizeDesc, float64(info.Size), q)
		gauge(queueLatencyDesc, info.Latency.Seconds(), q)
		gauge(queueMemDesc, float64(info.MemoryUsage), q)
		out = append(out, prometheus.MustNewConstMetric(processedDesc, prometheus.CounterValue, float64(info.ProcessedTotal), q))
		out = append(out, prometheus.MustNewConstMetric(failedDesc, prometheus.CounterValue, float64(info.FailedTotal), q))
		paused := 0.0
		if info.Paused {
			paused = 1
		}
		gauge(pausedDesc, paused, q)
	}
	known, queues, tasks, unchecked, err := c.unserved()
	if err != nil {
		return append(out, prometheus.NewInvalidMetric(unservedDesc, err))
	}
	gauge(knownQueuesDesc, float64(known))
	gauge(unservedDesc, float64(queues))
	gauge(unservedTasksDesc, float64(tasks))
	gauge(unservedUncheckDesc, float64(unchecked))
	return out
}

// unserved counts the queues with waiting tasks that no live asynq server
// serves, looking into at most MaxUnservedChecked of them (in name order)
// with one pipelined round trip.
func (c *queueCollector) unserved() (known, queues, tasks, unchecked int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	names, err := c.rdb.SMembers(ctx, "asynq:queues").Result()
	if err != nil {
		return 0, 0, 0, 0, err
	}
	srvs, err := c.ins.Servers()
	if err != nil {
		return 0, 0, 0, 0, err
	}
	served := map[string]bool{}
	for _, s := range srvs {
		for q := range s.Queues {
			served[q] = true
		}
	}
	known = len(names)
	names = slices.DeleteFunc(names, func(q string) bool { return served[q] })
	slices.Sort(names)
	if len(names) > MaxUnservedChecked {
		unchecked = len(names) - MaxUnservedChecked
		names = names[:MaxUnservedChecked]
	}
	pipe := c.rdb.Pipeline()
	sizes := make([][3]*redis.IntCmd, len(names))
	for i, q := range names {
		prefix := "asynq:{" + q + "}:"
		sizes[i] = [3]*redis.IntCmd{pipe.LLen(ctx, prefix+"pending"), pipe.ZCard(ctx, prefix+"scheduled"), pipe.ZCard(ctx, prefix+"retry")}
	}
	if len(names) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, 0, 0, 0, err
		}
	}
	for _, s := range sizes {
		n := int(s[0].Val() + s[1].Val() + s[2].Val())
		if n > 0 {
			queues++
			tasks += n
		}
	}
	return known, queues, tasks, unchecked, nil
}
