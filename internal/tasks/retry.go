package tasks

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"
)

// Backoff bounds for transient failures: the first retry comes within a
// second because a user is waiting for the code; the cap keeps retrying
// through an outage of GenAuth at least every 30 s, so that a task comes
// through soon after it ends, for as long as its send-by deadline allows
// (see DefaultMaxRetry).
const (
	backoffBase = time.Second
	backoffMax  = 30 * time.Second
	// DefaultThrottleDelay is used when GenAuth throttles without Retry-After.
	DefaultThrottleDelay = 2 * time.Second
)

// delayError asks for the task to run again after a set delay. failure
// tells asynq whether the attempt counts against MaxRetry: throttles,
// deferrals and waits for the reservation window do not.
type delayError struct {
	err     error
	delay   time.Duration
	failure bool
}

func (e *delayError) Error() string { return e.err.Error() }
func (e *delayError) Unwrap() error { return e.err }

// RetryDelay is the worker's asynq RetryDelayFunc: the delay a handler
// asked for (Retry-After, reservation expiry), or exponential backoff with
// jitter for plain failures: 0.5–1 s, 1–2 s, 2–4 s, ... then 15–30 s.
func RetryDelay(n int, err error, _ *asynq.Task) time.Duration {
	var de *delayError
	if errors.As(err, &de) && de.delay > 0 {
		return de.delay
	}
	return Backoff(n)
}

// Backoff returns the jittered exponential delay before retry n+1: between
// BackoffFloor(n) and twice that.
func Backoff(n int) time.Duration {
	half := BackoffFloor(n)
	return half + rand.N(half+1)
}

// BackoffFloor is the shortest delay Backoff(n) chooses: half of
// min(1 s << n, 30 s).
func BackoffFloor(n int) time.Duration {
	d := backoffMax
	if n < 16 {
		d = min(backoffBase<<n, backoffMax)
	}
	return d / 2
}

// IsFailure is the worker's asynq IsFailure func: throttles and deferrals
// are not failures, so they neither spend a retry nor count as failed in
// the queue statistics.
func IsFailure(err error) bool {
	var de *delayError
	if errors.As(err, &de) {
		return de.failure
	}
	return true
}

// scheduleSlack is added to every delay a task asks for: asynq stores retry
// times in whole seconds, truncated, so without it a task could come back
// up to a second before a Retry-After or a reservation's expiry.
const scheduleSlack = time.Second

// jitter adds the slack and up to a tenth of d, so that tasks waiting on
// the same moment do not wake together.
func jitter(d time.Duration) time.Duration {
	return d + scheduleSlack + rand.N(d/10+1)
}
