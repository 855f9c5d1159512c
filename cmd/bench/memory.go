package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	smsq "github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/tasks"
)

// memoryWindow is SMSQ_WINDOW in the memory phase: the shortest window
// the worker accepts, so that the reservations of the sent tasks expire a
// second after their send and what is left is what retention keeps.
const memoryWindow = time.Second

// memorySample bounds how many keys of each kind MEMORY USAGE reads.
const memorySample = 200

// capacityRates are the send rates of the capacity table; 100/s is
// GenAuth's documented ceiling.
var capacityRates = []float64{100, 1000, 10000}

// dataMemory reads INFO memory: used_memory without the client buffers
// (mem_clients_normal), which follow how many connections are open, not
// what is stored.
func dataMemory(ctx context.Context, b *bench) (int64, error) {
	info, err := b.rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, fmt.Errorf("INFO memory: %w", err)
	}
	used, err := strconv.ParseInt(infoField(info, "used_memory"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("INFO memory: used_memory: %w", err)
	}
	clients, _ := strconv.ParseInt(infoField(info, "mem_clients_normal"), 10, 64)
	return used - clients, nil
}

// reservationPrefix starts every reservation key (dedupe's own keys).
var reservationPrefix, _, _ = strings.Cut(dedupe.Key(dedupe.DefaultPrefix, "+8613800000000", benchChannel), "{")

// kindOf names the kind of a key: the key with its per-task or per-phone
// part replaced by "…" (an asynq task ID, or the hash tag of smsq's keys;
// asynq's hash tag is the queue name and stays).
func kindOf(key string) string {
	if rest, ok := strings.CutPrefix(key, "asynq:"); ok {
		if i := strings.Index(rest, ":t:"); i >= 0 {
			return "asynq:" + rest[:i+3] + "…"
		}
		return key
	}
	open, end := strings.IndexByte(key, '{'), strings.IndexByte(key, '}')
	if open >= 0 && end > open {
		return key[:open+1] + "…" + key[end:]
	}
	return key
}

// keyScan is what one pass over the keyspace found.
type keyScan struct {
	total int64
	kinds map[string]*keyKind
	// samples are some keys of each kind, for MEMORY USAGE.
	samples map[string][]string
}

// scanKeys counts every key by kind. SCAN also deletes the expired keys
// it meets, so reservations past their TTL are gone once it returns.
func (b *bench) scanKeys(ctx context.Context) (keyScan, error) {
	s := keyScan{kinds: map[string]*keyKind{}, samples: map[string][]string{}}
	var cursor uint64
	for {
		keys, next, err := b.rdb.Scan(ctx, cursor, "*", 1000).Result()
		if err != nil {
			return s, fmt.Errorf("SCAN: %w", err)
		}
		for _, k := range keys {
			kind := kindOf(k)
			kk := s.kinds[kind]
			if kk == nil {
				kk = &keyKind{Kind: kind}
				s.kinds[kind] = kk
			}
			kk.Keys++
			s.total++
			if len(s.samples[kind]) < memorySample {
				s.samples[kind] = append(s.samples[kind], k)
			}
		}
		if cursor = next; cursor == 0 {
			return s, nil
		}
	}
}

// memoryUsage reads MEMORY USAGE of key with SAMPLES 0 (every element of a
// large hash or sorted set); a key gone since (an expired reservation)
// counts 0.
func (b *bench) memoryUsage(ctx context.Context, key string) (int64, error) {
	v, err := b.rdb.MemoryUsage(ctx, key, 0).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("MEMORY USAGE: %w", err)
	}
	return v, nil
}

// measureKinds fills in each kind's bytes per task from MEMORY USAGE of
// its sampled keys, and returns the kinds, largest first.
func (b *bench) measureKinds(ctx context.Context, s keyScan, n int) ([]keyKind, error) {
	var out []keyKind
	for kind, kk := range s.kinds {
		var sum int64
		for _, k := range s.samples[kind] {
			v, err := b.memoryUsage(ctx, k)
			if err != nil {
				return nil, err
			}
			sum += v
		}
		mean := float64(sum) / float64(len(s.samples[kind]))
		kk.KeysPerTask = float64(kk.Keys) / float64(n)
		kk.BytesPerTask = mean * float64(kk.Keys) / float64(n)
		out = append(out, *kk)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].BytesPerTask > out[j].BytesPerTask })
	return out, nil
}

// memoryPhase measures the Redis memory a sent task keeps for the default
// retention: it enqueues -memory-tasks tasks, lets a worker process
// (reservation window memoryWindow, no rate limit) send them all, stops
// it, waits for the reservations to expire and reads the used memory
// against an empty database's.
func (b *bench) memoryPhase(ctx context.Context) (memoryFigures, error) {
	n := b.p.MemoryTasks
	f := memoryFigures{Tasks: n, Window: memoryWindow.String(), Retention: tasks.DefaultRetention.String()}
	bin, err := b.worker(ctx)
	if err != nil {
		return f, err
	}
	if err := b.reset(ctx); err != nil {
		return f, err
	}
	base, err := dataMemory(ctx, b)
	if err != nil {
		return f, err
	}
	baseKeys, err := b.rdb.DBSize(ctx).Result()
	if err != nil {
		return f, err
	}
	before, err := commandStats(ctx, b.rdb)
	if err != nil {
		return f, err
	}
	if _, err := enqueueAll(ctx, smsq.NewClientFromRedis(b.rdb), b.phones(n), b.p.EnqueueGoroutines); err != nil {
		return f, err
	}
	after, err := commandStats(ctx, b.rdb)
	if err != nil {
		return f, err
	}
	f.EnqueueCommandsPerTask = float64(commandDelta(before, after)) / float64(n)
	pending, err := dataMemory(ctx, b)
	if err != nil {
		return f, err
	}
	f.PendingBytesPerTask = float64(pending-base) / float64(n)

	env := []string{"SMSQ_CONCURRENCY=" + strconv.Itoa(b.p.Concurrency), "SMSQ_WINDOW=" + memoryWindow.String()}
	if lim := limiterSettings(ctx, bin); lim.available {
		env = append(env, lim.off)
	}
	w, err := startWorker(ctx, bin, b.redisURL, b.fake, env...)
	if err != nil {
		return f, err
	}
	defer w.stop()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	err = b.fake.WaitForCalls(wctx, n)
	cancel()
	if err != nil {
		return f, err
	}
	if err := b.waitIdle(ctx); err != nil {
		return f, err
	}
	// Stopped, the worker's own keys (servers, workers, leases) are gone
	// and only what the tasks left remains.
	w.stop()
	qi, err := asynq.NewInspectorFromRedisClient(b.rdb).GetQueueInfo(benchQueue)
	if err != nil {
		return f, err
	}
	if qi.Completed != n || len(b.fake.Sent()) != n {
		return f, fmt.Errorf("%d of %d tasks completed, %d sent", qi.Completed, n, len(b.fake.Sent()))
	}
	if err := sleep(ctx, memoryWindow+time.Second); err != nil {
		return f, err
	}
	scan, err := b.scanKeys(ctx)
	if err != nil {
		return f, err
	}
	retained, err := dataMemory(ctx, b)
	if err != nil {
		return f, err
	}
	if f.Keys, err = b.measureKinds(ctx, scan, n); err != nil {
		return f, err
	}
	// A reservation still there (its TTL restarted late) is measured and
	// left out, so that the figure is what retention alone keeps.
	var resvKeys int64
	var resvBytes float64
	for _, k := range f.Keys {
		if strings.HasPrefix(k.Kind, reservationPrefix) {
			resvKeys += k.Keys
			resvBytes += k.BytesPerTask * float64(n)
		}
	}
	f.ReservationsLeft = int(resvKeys)
	f.RetainedBytesPerTask = (float64(retained-base) - resvBytes) / float64(n)
	f.KeysPerTask = float64(scan.total-baseKeys-resvKeys) / float64(n)
	return f, b.reset(ctx)
}

// capacity derives the Redis memory and command rate of a steady send
// rate from the per-task figures: every sent task is retained for the
// default retention, and costs its enqueue's commands and its
// processing's.
func capacity(r *report) []capacityRow {
	perTask := r.Memory.EnqueueCommandsPerTask + r.Processing.SmsqCommandsPerTask
	var out []capacityRow
	for _, rate := range capacityRates {
		retained := rate * tasks.DefaultRetention.Seconds()
		out = append(out, capacityRow{
			SendsPerSec:         rate,
			RetainedTasks:       retained,
			RedisMemoryGB:       retained * r.Memory.RetainedBytesPerTask / 1e9,
			RedisCommandsPerSec: rate * perTask,
		})
	}
	return out
}
