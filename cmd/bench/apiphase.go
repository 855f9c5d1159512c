package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/api"
	"github.com/smsq/smsq/internal/redisconn"
)

// apiGoroutines is how many clients send at once in the API phase, on
// each side.
const apiGoroutines = 16

// apiRounds: the best of this many runs counts, as in the batch phase.
const apiRounds = 2

// apiPhase compares POST /v1/sms, served by internal/api on a loopback
// listener in this process (as the worker serves it: its own Redis pool,
// keep-alive clients, no rate limit), with smsq.Client.Send called
// directly from as many goroutines, on the same Redis.
func (b *bench) apiPhase(ctx context.Context) (apiFigures, error) {
	n := b.p.Tasks
	f := apiFigures{Requests: n, Goroutines: apiGoroutines}
	for range apiRounds {
		if err := b.reset(ctx); err != nil {
			return f, err
		}
		rate, lat, err := b.apiOnce(ctx, n)
		if err != nil {
			return f, fmt.Errorf("POST /v1/sms: %w", err)
		}
		if rate > f.APIPerSec {
			f.APIPerSec, f.APIP50Ms, f.APIP99Ms = rate, pct(lat, 50), pct(lat, 99)
		}
		if err := b.reset(ctx); err != nil {
			return f, err
		}
		rate, lat, err = b.sendOnce(ctx, n)
		if err != nil {
			return f, fmt.Errorf("Send: %w", err)
		}
		if rate > f.SendPerSec {
			f.SendPerSec, f.SendP50Ms, f.SendP99Ms = rate, pct(lat, 50), pct(lat, 99)
		}
	}
	f.Ratio = f.APIPerSec / f.SendPerSec
	return f, b.reset(ctx)
}

// pct is the p-th percentile of lat, in milliseconds.
func pct(lat []time.Duration, p int) float64 {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	i := min(len(lat)-1, len(lat)*p/100)
	return float64(lat[i].Microseconds()) / 1000
}

// each runs do(i) for i in [0, n) from apiGoroutines goroutines and
// returns the rate and every call's latency.
func each(n int, do func(i int) error) (float64, []time.Duration, error) {
	lat := make([]time.Duration, n)
	errs := make(chan error, apiGoroutines)
	var wg sync.WaitGroup
	start := time.Now()
	for g := range apiGoroutines {
		wg.Go(func() {
			for i := g; i < n; i += apiGoroutines {
				t0 := time.Now()
				if err := do(i); err != nil {
					errs <- err
					return
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, nil, err
	}
	return float64(n) / d.Seconds(), lat, nil
}

func (b *bench) apiOnce(ctx context.Context, n int) (float64, []time.Duration, error) {
	rdb, err := redisconn.Open(b.redisURL, redisconn.Options{PoolSize: 64})
	if err != nil {
		return 0, nil, err
	}
	defer rdb.Close()
	const secret = "bench-secret-0123456789abcdef"
	keys, err := api.ParseKeys("bench:" + secret)
	if err != nil {
		return 0, nil, err
	}
	client := smsq.NewClientFromRedis(rdb, smsq.WithServedQueues(benchQueue))
	defer client.Close()
	h, err := api.New(api.Config{Enqueuer: client, Outcomes: client, Redis: rdb, Keys: keys, Served: []string{benchQueue}})
	if err != nil {
		return 0, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, nil, err
	}
	srv := api.NewHTTPServer(h, zerolog.Nop())
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/v1/sms"
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: apiGoroutines, MaxConnsPerHost: apiGoroutines}}
	defer hc.CloseIdleConnections()
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = fmt.Appendf(nil, `{"channel":%q,"phoneNumber":"+86%s","queue":%q}`, benchChannel, b.phone(), benchQueue)
	}
	return each(n, func(i int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(bodies[i]))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+secret)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("status %d: %s", resp.StatusCode, body)
		}
		return nil
	})
}

func (b *bench) sendOnce(ctx context.Context, n int) (float64, []time.Duration, error) {
	rdb, err := redisconn.Open(b.redisURL, redisconn.Options{PoolSize: 64})
	if err != nil {
		return 0, nil, err
	}
	defer rdb.Close()
	client := smsq.NewClientFromRedis(rdb, smsq.WithServedQueues(benchQueue))
	defer client.Close()
	phones := make([]string, n)
	for i := range phones {
		phones[i] = "+86" + b.phone()
	}
	return each(n, func(i int) error {
		_, err := client.Send(ctx, smsq.Request{Channel: benchChannel, Phone: phones[i]}, smsq.WithQueue(benchQueue))
		return err
	})
}
