package tracing

import (
	"context"
	"testing"

	"github.com/hibiken/asynq"
)

// BenchmarkProducerOff is the producer's span and header work with no
// tracer provider set up, as in a service that does not trace.
func BenchmarkProducerOff(b *testing.B) {
	p := NewProducer(nil)
	t := asynq.NewTaskWithHeaders("genauth:send_sms", nil, map[string]string{})
	ctx := context.Background()
	info := &asynq.TaskInfo{ID: "x"}
	b.ReportAllocs()
	for b.Loop() {
		_, span := p.Start(ctx, t, "critical", "CHANNEL_LOGIN")
		End(span, info, nil)
	}
}
