package tasks

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/genauth"
)

// Queues served by default, with their weights: interactive channels go to
// critical, batch work to low.
const (
	QueueCritical = "critical"
	QueueDefault  = "default"
	QueueLow      = "low"
)

// DefaultQueues is the worker's default queue configuration.
func DefaultQueues() map[string]int {
	return map[string]int{QueueCritical: 6, QueueDefault: 3, QueueLow: 1}
}

// Defaults for task options. The send-by deadline, not MaxRetry, bounds a
// task's retries: DefaultMaxRetry (asynq's own default too, so that raw
// producers' tasks behave alike) is enough for transient failures to be
// retried until DefaultSendBy has passed, whatever the jitter (the
// shortest delays BackoffFloor allows add up to more). Timeout stays above
// the GenAuth client's 10 s so that the client, not asynq, decides a slow
// call's outcome.
const (
	DefaultMaxRetry  = 25
	DefaultTimeout   = 30 * time.Second
	DefaultRetention = 24 * time.Hour
	DefaultSendBy    = 5 * time.Minute
)

// QueueFor returns the queue for a channel: a user is waiting at a login or
// MFA prompt, so those channels go to critical.
func QueueFor(ch genauth.Channel) string {
	switch ch {
	case genauth.ChannelLogin, genauth.ChannelVerifyMFA:
		return QueueCritical
	default:
		return QueueDefault
	}
}

// NewTask validates p and returns the task to enqueue with options suited
// to OTP work. The payload is stored normalised (national number plus
// country code), EnqueuedAt is stamped with now, and SendBy defaults to
// now + DefaultSendBy. Extra options (asynq.Queue, asynq.ProcessIn, ...)
// override the defaults.
//
// NewTask is the producers' constructor, so it also refuses what only a
// producer can still change: an idempotency key or a queue name (given as
// asynq.Queue) that holds a phone number or, for a queue, is not a valid
// name (ValidateQueue). The worker accepts such tasks from raw producers.
func NewTask(p Payload, now time.Time, opts ...asynq.Option) (*asynq.Task, Validated, error) {
	v, err := p.Validate()
	if err != nil {
		return nil, v, err
	}
	var errs []string
	if err := CheckProducerKey(v.IdempotencyKey); err != nil {
		errs = append(errs, err.Error())
	}
	v.Queue = QueueFor(v.Channel)
	for _, o := range opts {
		if q, ok := o.Value().(string); ok && o.Type() == asynq.QueueOpt {
			if err := ValidateQueue(q); err != nil {
				errs = append(errs, err.Error())
			}
			v.Queue = q // the last one wins, as in asynq
		}
	}
	if len(errs) > 0 {
		return nil, v, fmt.Errorf("%w: %s", ErrInvalidPayload, strings.Join(errs, "; "))
	}
	if v.EnqueuedAt.IsZero() {
		v.EnqueuedAt = now.UTC().Truncate(time.Millisecond)
	}
	if v.SendBy.IsZero() {
		v.SendBy = v.EnqueuedAt.Add(DefaultSendBy)
	}
	data, err := v.Encode()
	if err != nil {
		return nil, v, err
	}
	base := []asynq.Option{
		asynq.MaxRetry(DefaultMaxRetry),
		asynq.Timeout(DefaultTimeout),
		asynq.Retention(DefaultRetention),
		asynq.Queue(QueueFor(v.Channel)),
	}
	if v.IdempotencyKey != "" {
		base = append(base, asynq.TaskID(v.IdempotencyKey))
	}
	all := append(base, opts...)
	retention := DefaultRetention
	for _, o := range all {
		if d, ok := o.Value().(time.Duration); ok && o.Type() == asynq.RetentionOpt {
			retention = d // the last one wins, as in asynq
		}
	}
	// Headers also carry the producer's trace context (see
	// smsq.Client.Enqueue).
	headers := map[string]string{HeaderRetention: strconv.FormatInt(int64(retention/time.Second), 10)}
	return asynq.NewTaskWithHeaders(TypeSendSMS, data, headers, all...), v, nil
}

// HeaderRetention is the task header in which NewTask tells the worker the
// task's asynq retention, in seconds: asynq keeps the result on the task
// that long after it finishes, and the worker's journal then keeps only
// the outcome (history.Entry.ResultKeptFor). A task without it (a raw
// producer's) has its result copied into the journal.
const HeaderRetention = "smsq-retention"

// resultKeptFor reads HeaderRetention; zero when absent or not a count of
// seconds.
func resultKeptFor(t *asynq.Task) time.Duration {
	n, err := strconv.ParseInt(t.Headers()[HeaderRetention], 10, 64)
	if err != nil || n <= 0 || n > int64(math.MaxInt64/time.Second) {
		return 0
	}
	return time.Duration(n) * time.Second
}

// FetchLoopShare is the concurrency one asynq fetch loop feeds by default.
// A loop takes one task per Redis round trip; measured with 100 ms GenAuth
// calls, one loop keeps about 120 tasks in flight.
const FetchLoopShare = 100

// FetchLoops is the default number of fetch loops (asynq servers sharing one
// handler) for a worker of the given concurrency: one per FetchLoopShare.
func FetchLoops(concurrency int) int {
	return max(1, (concurrency+FetchLoopShare-1)/FetchLoopShare)
}

// SplitConcurrency shares concurrency among loops fetch loops as evenly as
// it goes. loops must be between 1 and concurrency.
func SplitConcurrency(concurrency, loops int) []int {
	out := make([]int, loops)
	for i := range out {
		out[i] = concurrency / loops
		if i < concurrency%loops {
			out[i]++
		}
	}
	return out
}

// ServerConfig is the asynq server configuration of one fetch loop of a
// worker, as cmd/worker runs it: concurrency handlers, the default queues,
// smsq's retry delays and failure test, new tasks looked for every poll and
// scheduled ones every second. Callers set the rest (queues, shutdown
// timeout, health check) from their own settings.
func ServerConfig(concurrency int, poll time.Duration, log asynq.Logger) asynq.Config {
	return asynq.Config{
		Concurrency:              concurrency,
		Queues:                   DefaultQueues(),
		RetryDelayFunc:           RetryDelay,
		IsFailure:                IsFailure,
		Logger:                   log,
		LogLevel:                 asynq.WarnLevel,
		TaskCheckInterval:        poll,
		DelayedTaskCheckInterval: time.Second,
	}
}

// IsDequeue reports whether cmd is asynq's dequeue script (EVALSHA or EVAL
// over a queue's pending, paused, active and lease keys), the command its
// fetch loop retries at once when it fails (see redisconn.Backoff).
func IsDequeue(cmd redis.Cmder) bool {
	args := cmd.Args()
	if len(args) < 5 || (cmd.Name() != "evalsha" && cmd.Name() != "eval") {
		return false
	}
	k1, _ := args[3].(string)
	k2, _ := args[4].(string)
	return fmt.Sprint(args[2]) == "4" && strings.HasPrefix(k1, "asynq:{") && strings.HasSuffix(k1, "}:pending") && strings.HasSuffix(k2, "}:paused")
}
