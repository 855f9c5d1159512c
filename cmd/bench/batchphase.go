package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/batch"
	"github.com/smsq/smsq/internal/redisconn"
	"github.com/smsq/smsq/internal/tasks"
)

// batchConcurrency is enqueue batch's --concurrency in the batch phase,
// and the number of goroutines of raw asynq's side.
const batchConcurrency = 16

// batchRounds is how many times each side runs; the best run counts, as
// in the processing phase.
const batchRounds = 2

// batchLine is one line of the batch phase's input.
type batchLine struct{ phone, key string }

// batchPhase compares enqueue batch, run as the command runs it (a CSV
// read by internal/batch, results written as JSON lines, an asynq client
// on a pool of --concurrency + 4 connections), with raw asynq
// Client.Enqueue from as many goroutines, each marshalling the payload a
// hand-written producer would, on the same Redis.
func (b *bench) batchPhase(ctx context.Context) (batchFigures, error) {
	n := b.p.Tasks
	f := batchFigures{Lines: n, Concurrency: batchConcurrency}
	lines := make([]batchLine, n)
	var csv bytes.Buffer
	csv.WriteString("channel,phone,idempotency_key\n")
	for i := range lines {
		lines[i] = batchLine{phone: b.phone(), key: "bench-batch-" + fmt.Sprint(i)}
		fmt.Fprintf(&csv, "%s,+86%s,%s\n", benchChannel, lines[i].phone, lines[i].key)
	}
	for range batchRounds {
		if err := b.reset(ctx); err != nil {
			return f, err
		}
		rate, peak, err := b.batchOnce(ctx, csv.Bytes(), n)
		if err != nil {
			return f, fmt.Errorf("enqueue batch: %w", err)
		}
		f.BatchPerSec, f.BatchPeakHeapMiB = max(f.BatchPerSec, rate), max(f.BatchPeakHeapMiB, mib(peak))
		if err := b.reset(ctx); err != nil {
			return f, err
		}
		rate, peak, err = b.rawEnqueueOnce(ctx, lines)
		if err != nil {
			return f, fmt.Errorf("raw asynq enqueue: %w", err)
		}
		f.RawPerSec, f.RawPeakHeapMiB = max(f.RawPerSec, rate), max(f.RawPeakHeapMiB, mib(peak))
	}
	f.Ratio = f.BatchPerSec / f.RawPerSec
	return f, b.reset(ctx)
}

// batchOnce runs enqueue batch's path over csv and returns lines per
// second and the peak heap growth.
func (b *bench) batchOnce(ctx context.Context, csv []byte, n int) (float64, int64, error) {
	rdb, err := redisconn.Open(b.redisURL, redisconn.Options{PoolSize: batchConcurrency + 4})
	if err != nil {
		return 0, 0, err
	}
	defer rdb.Close()
	var sum batch.Summary
	start := time.Now()
	peak, err := heapPeak(func() error {
		rd, err := batch.NewCSVReader(bufio.NewReaderSize(bytes.NewReader(csv), 64<<10))
		if err != nil {
			return err
		}
		w := bufio.NewWriterSize(io.Discard, 64<<10)
		sum, err = batch.Run(ctx, rd, batch.Config{
			Enqueuer:    smsq.NewClientFromRedis(rdb),
			Concurrency: batchConcurrency,
			Output: func(r batch.Result) error {
				line, err := json.Marshal(r)
				if err != nil {
					return err
				}
				_, err = w.Write(append(line, '\n'))
				return err
			},
		})
		if err != nil {
			return err
		}
		return w.Flush()
	})
	d := time.Since(start)
	if err != nil {
		return 0, 0, err
	}
	if sum.Enqueued != n {
		return 0, 0, fmt.Errorf("%d of %d lines enqueued: %s", sum.Enqueued, n, sum)
	}
	return float64(n) / d.Seconds(), peak, nil
}

// rawEnqueueOnce enqueues one task per line with raw asynq from
// batchConcurrency goroutines and returns tasks per second and the peak
// heap growth.
func (b *bench) rawEnqueueOnce(ctx context.Context, lines []batchLine) (float64, int64, error) {
	rdb, err := redisconn.Open(b.redisURL, redisconn.Options{PoolSize: batchConcurrency + 4})
	if err != nil {
		return 0, 0, err
	}
	defer rdb.Close()
	c := asynq.NewClientFromRedisClient(rdb)
	start := time.Now()
	peak, err := heapPeak(func() error {
		var wg sync.WaitGroup
		errs := make(chan error, batchConcurrency)
		for g := range batchConcurrency {
			wg.Go(func() {
				for i := g; i < len(lines); i += batchConcurrency {
					payload, err := json.Marshal(struct {
						Channel          string `json:"channel"`
						PhoneNumber      string `json:"phoneNumber"`
						PhoneCountryCode string `json:"phoneCountryCode"`
					}{benchChannel, lines[i].phone, "+86"})
					if err == nil {
						_, err = c.EnqueueContext(ctx, asynq.NewTask(tasks.TypeSendSMS, payload),
							asynq.Queue(benchQueue), asynq.TaskID(lines[i].key))
					}
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		return <-errs
	})
	d := time.Since(start)
	if err != nil {
		return 0, 0, err
	}
	return float64(len(lines)) / d.Seconds(), peak, nil
}

// heapPeak runs f and returns the most heap memory (objects, live or not
// yet swept) it held above what was live before, sampled every
// millisecond.
func heapPeak(f func() error) (int64, error) {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() int64 {
		metrics.Read(sample)
		return int64(sample[0].Value.Uint64())
	}
	base := read()
	stop := make(chan struct{})
	peak := make(chan int64)
	go func() {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		var top int64
		for {
			select {
			case <-t.C:
				top = max(top, read())
			case <-stop:
				peak <- max(top, read()) - base
				return
			}
		}
	}()
	err := f()
	close(stop)
	return <-peak, err
}
