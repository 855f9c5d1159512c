package tasks

import "time"

// Outcomes recorded on tasks. Final outcomes end a task; the others describe
// an attempt after which the task runs again.
const (
	// OutcomeSent: GenAuth accepted the send (body statusCode 200), or
	// answered 422 to the retry of an attempt whose answer was lost.
	OutcomeSent = "sent"
	// OutcomeDeduplicated: another task (or another system) sent a code to
	// this phone on this channel inside the window; that code is still valid.
	OutcomeDeduplicated = "deduplicated"
	// OutcomeExpired: the send-by deadline passed before a send was possible.
	OutcomeExpired = "expired"
	// OutcomeFailed: GenAuth refused for good (bad argument, auth, quota) or
	// retries ran out.
	OutcomeFailed = "failed"
	// OutcomeInvalid: the payload does not parse or holds invalid fields.
	OutcomeInvalid = "invalid"
	// OutcomeBlocked: the abuse guard refused the send (Result.Rule names
	// the rule, LiftsAt when it lifts); nothing was sent and no reservation
	// taken. Not retried: the producer decides whether to ask again.
	OutcomeBlocked = "blocked"

	// OutcomeRetrying: a transient failure; nothing was sent; retried with backoff.
	OutcomeRetrying = "retrying"
	// OutcomeThrottled: GenAuth asked to slow down, or smsq's own rate limit
	// toward GenAuth had no send slot soon enough; retried after the delay
	// without counting as a failure.
	OutcomeThrottled = "throttled"
	// OutcomeDeferred: the reservation is held; the task runs again when it
	// expires.
	OutcomeDeferred = "deferred"
	// OutcomeUnknown: the call may have sent the SMS (timeout or dropped
	// connection after the request left); retried only after the window.
	OutcomeUnknown = "unknown"
)

// FinalOutcomes lists the outcomes that end a task.
var FinalOutcomes = []string{OutcomeSent, OutcomeDeduplicated, OutcomeExpired, OutcomeFailed, OutcomeInvalid, OutcomeBlocked}

// IsFinal reports whether outcome ends a task.
func IsFinal(outcome string) bool {
	for _, o := range FinalOutcomes {
		if o == outcome {
			return true
		}
	}
	return false
}

// Delivered reports whether a final outcome leaves a valid code on the
// phone: sent, or deduplicated (a code sent moments ago is still valid).
// enqueue report and enqueue --wait exit 0 on these alone.
func Delivered(outcome string) bool {
	return outcome == OutcomeSent || outcome == OutcomeDeduplicated
}

// Result is the JSON written on the task (asynq ResultWriter, visible in
// asynqmon and through asynq's Inspector) and into the history store after
// every attempt. The phone is always masked.
type Result struct {
	Outcome string `json:"outcome"`
	Final   bool   `json:"final"`
	Reason  string `json:"reason,omitempty"`

	Channel string `json:"channel,omitempty"`
	Phone   string `json:"phone,omitempty"`
	Queue   string `json:"queue,omitempty"`
	// IdempotencyKey is the producer's key, when it gave one (masked as
	// task IDs are in logs).
	IdempotencyKey string `json:"idempotencyKey,omitempty"`

	// GenAuth's answer to the last call, when there was one.
	HTTPStatus int    `json:"httpStatus,omitempty"`
	StatusCode int    `json:"statusCode,omitempty"`
	APICode    int    `json:"apiCode,omitempty"`
	Message    string `json:"message,omitempty"`
	RequestID  string `json:"requestId,omitempty"`
	Class      string `json:"class,omitempty"`
	// Rule names the classification rule that gave Class, such as
	// "default statusCode:422=duplicate" or "override apiCode:40001=
	// duplicate" (see genauth.Classifier.ClassifyRule); for a blocked
	// outcome, which made no call, the abuse guard's rule that blocked
	// ("phone", "ip", "prefix", "country", "budget", "conversion").
	Rule string `json:"rule,omitempty"`
	// LiftsAt is when the guard's block of a blocked outcome lifts; unset
	// when it does not lift by itself (a country the settings refuse).
	LiftsAt time.Time `json:"liftsAt,omitzero"`

	// Holder is the task holding the reservation, for deduplicated and
	// deferred outcomes ("genauth" when GenAuth's own minute rule refused).
	Holder        string `json:"holder,omitempty"`
	ReservedForMS int64  `json:"reservedForMs,omitempty"`

	Attempt         int       `json:"attempt"`
	Retried         int       `json:"retried"`
	UnknownAttempts int       `json:"unknownAttempts,omitempty"`
	RetryInMS       int64     `json:"retryInMs,omitempty"`
	SendBy          time.Time `json:"sendBy,omitzero"`
	EnqueuedAt      time.Time `json:"enqueuedAt,omitzero"`
	FirstAttemptAt  time.Time `json:"firstAttemptAt,omitzero"`
	FinishedAt      time.Time `json:"finishedAt"`
	DurationMS      int64     `json:"durationMs"`
	GenAuthMS       int64     `json:"genauthMs,omitempty"`
	// RateWaitMS is the time the attempt waited for smsq's rate limit.
	RateWaitMS int64 `json:"rateWaitMs,omitempty"`
	// Sandbox: the worker sent to its built-in fake GenAuth; no SMS went
	// out, whatever the outcome says.
	Sandbox bool `json:"sandbox,omitempty"`
}
