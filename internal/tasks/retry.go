package tasks

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"
)

// Backoff bounds for transient failures: the first retry comes within a
// second or two because a user is waiting for the code.
const (
	backoffBase = time.Second
	backoffMax  = time.Minute
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
// jitter for plain failures: 0.5–1 s, 1–2 s, 2–4 s, ... capped at a minute.
func RetryDelay(n int, err error, _ *asynq.Task) time.Duration {
	var de *delayError
	if errors.As(err, &de) && de.delay > 0 {
		return de.delay
	}
	return Backoff(n)
}

// Backoff returns the jittered exponential delay before retry n+1.
func Backoff(n int) time.Duration {
	d := backoffMax
	if n < 16 {
		d = min(backoffBase<<n, backoffMax)
	}
	half := d / 2
	return half + rand.N(half+1)
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
