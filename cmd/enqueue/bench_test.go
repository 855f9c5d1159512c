package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/smsq/smsq/internal/redistest"
)

// writeBenchCSV writes n valid lines, each with its own idempotency key
// and phone, spread over the channels of both queues.
func writeBenchCSV(tb testing.TB, n int) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "bench.csv")
	f, err := os.Create(p)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "channel,phone,idempotency_key")
	channels := []string{"CHANNEL_LOGIN", "CHANNEL_REGISTER", "CHANNEL_RESET_PASSWORD"}
	for i := range n {
		fmt.Fprintf(w, "%s,+86138%08d,bench-%d\n", channels[i%len(channels)], i, i)
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return p
}

// benchLines is the input size: 20,000 lines unless SMSQ_BENCH_LINES says
// otherwise (the README's figures use 1,000,000).
func benchLines(b *testing.B) int {
	n := 20000
	if s := os.Getenv("SMSQ_BENCH_LINES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			b.Fatalf("SMSQ_BENCH_LINES=%q: want a positive whole number", s)
		}
		n = v
	}
	return n
}

// BenchmarkBatch enqueues a generated CSV into a real redis-server, as
// enqueue batch does from the command line. Each iteration uses fresh
// keys (FLUSHALL), so every line is enqueued, never a duplicate.
func BenchmarkBatch(b *testing.B) {
	n := benchLines(b)
	in := writeBenchCSV(b, n)
	srv := redistest.Start(b)
	rdb := srv.Client()
	getenv := func(k string) string {
		if k == "REDIS_URL" {
			return srv.URL()
		}
		return ""
	}
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		if err := rdb.FlushAll(context.Background()).Err(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		var stderr strings.Builder
		if err := run(context.Background(), []string{"batch", in}, getenv, nil, io.Discard, &stderr); err != nil {
			b.Fatalf("batch: %v\n%s", err, stderr.String())
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkBatchDryRun validates the same input without Redis.
func BenchmarkBatchDryRun(b *testing.B) {
	n := benchLines(b)
	in := writeBenchCSV(b, n)
	for b.Loop() {
		var stderr strings.Builder
		if err := run(context.Background(), []string{"batch", "--dry-run", in}, nil, nil, io.Discard, &stderr); err != nil {
			b.Fatalf("batch: %v\n%s", err, stderr.String())
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}
