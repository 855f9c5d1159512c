package webhook

import (
	"context"
	"testing"
	"time"
)

// BenchmarkDelivery measures webhook delivery on one worker's parts (the
// fan-out and a delivery server of concurrency 20, as
// SMSQ_WEBHOOK_CONCURRENCY's default) from the outcome stream to a local
// receiver answering 204: b.N events appended, timed until the receiver
// has them all.
//
//	go test -run '^$' -bench BenchmarkDelivery -benchtime 2000x ./internal/webhook
func BenchmarkDelivery(b *testing.B) {
	rcv := newReceiver(b, nil)
	r := startRig(b, rigConfig{endpoints: rcv.URL + "/hook", guard: Guard{AllowPrivate: true}})
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	go func() {
		for i := range b.N {
			if _, err := r.stream.Append(ctx, event("bench-"+itoa(i), "sent"), ""); err != nil {
				b.Error(err)
				return
			}
		}
	}()
	waitFor(b, 10*time.Minute, func() (bool, string) {
		n := len(rcv.deliveries())
		return n >= b.N, itoa(n) + " of " + itoa(b.N) + " delivered"
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "deliveries/s")
}
