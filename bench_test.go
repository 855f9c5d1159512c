package smsq_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/redistest"
)

// BenchmarkSend queues codes into a real redis-server, half with an
// idempotency key (claim, then enqueue) and half without. With no
// OpenTelemetry set up, as here, it measures what tracing costs when off.
func BenchmarkSend(b *testing.B) {
	srv := redistest.Start(b)
	rdb := srv.Client()
	c := smsq.NewClientFromRedis(rdb)
	ctx := context.Background()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		var opts []smsq.Option
		if i%2 == 0 {
			opts = append(opts, smsq.WithIdempotencyKey(fmt.Sprintf("bench-%d", i)))
		}
		if _, err := c.Send(ctx, smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "+8613800138000"}, opts...); err != nil {
			b.Fatal(err)
		}
	}
}
