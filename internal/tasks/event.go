package tasks

import (
	"github.com/smsq/smsq/internal/outcome"
	"github.com/smsq/smsq/internal/phone"
)

// Event returns the outcome stream event of a final result of task
// taskID, whose phone the journal indexes by phoneHash. IDs and keys are
// masked as in logs: a raw producer may have put a phone number in them.
func (r Result) Event(taskID, phoneHash string) outcome.Event {
	e := outcome.Event{
		V: outcome.Version, TaskID: phone.MaskID(taskID), Key: phone.MaskID(r.IdempotencyKey),
		Queue: phone.MaskID(r.Queue), Channel: r.Channel, Phone: r.Phone, PhoneHash: phoneHash,
		Outcome: r.Outcome, Reason: r.Reason, StatusCode: r.StatusCode, APICode: r.APICode,
		RequestID: r.RequestID, Attempts: r.Attempt, RetryInMS: r.RetryIn(),
		EnqueuedAt: r.EnqueuedAt, FinishedAt: r.FinishedAt, Sandbox: r.Sandbox,
	}
	if r.Outcome == OutcomeBlocked {
		e.Rule = r.Rule
	}
	return e
}

// RetryIn is, for a result that found the pair's reservation held
// (deduplicated, deferred) or was refused for a while (blocked), how long
// after FinishedAt a code can be sent to the pair again, in ms; 0 otherwise.
func (r Result) RetryIn() int64 {
	switch {
	case r.ReservedForMS > 0:
		return r.ReservedForMS
	case r.Outcome == OutcomeBlocked:
		return r.RetryInMS
	}
	return 0
}
