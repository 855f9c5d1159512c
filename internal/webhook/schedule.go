package webhook

import (
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"
)

// Schedule is the delay before each retry of a delivery: entry n is the
// wait after attempt n+1 fails. Its length is the number of retries.
type Schedule []time.Duration

// DefaultSchedule is the Standard Webhooks specification's suggestion:
// eight attempts over about 28 hours.
var DefaultSchedule = Schedule{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// Delay is the asynq RetryDelayFunc of the delivery server: entry n of the
// schedule (the last one beyond it), 10% either way, so that deliveries
// failed together do not come back together, plus a second because asynq
// keeps retry times in whole seconds, truncated: without it a retry could
// come up to a second early.
func (s Schedule) Delay(n int, _ error, _ *asynq.Task) time.Duration {
	if len(s) == 0 {
		return time.Second
	}
	d := s[min(max(n, 0), len(s)-1)]
	return d - d/10 + rand.N(d/5+1) + time.Second
}
