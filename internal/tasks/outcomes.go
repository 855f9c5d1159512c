package tasks

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/outcome"
)

// Outcomes receives every final outcome: the outcome stream and its
// announcement (*outcome.Stream is one). An append is idempotent per task
// and collision identity, so a redelivery may append again.
type Outcomes interface {
	// AppendIn queues the append on p, to run in the journal's round
	// trip; its script may be missing from Redis's cache (after a
	// restart), when Append is tried instead.
	AppendIn(ctx context.Context, p redis.Pipeliner, e outcome.Event, collision string) *redis.Cmd
	Append(ctx context.Context, e outcome.Event, collision string) (string, error)
}

// appendAfter returns the journal write that queues the final outcome of
// the attempt behind its entry (nil when there is nothing to append), and
// the function that reads its result once the round trip ran: the error
// of an append that failed twice, the second time on its own.
func (h *Handler) appendAfter(ctx context.Context, a *attempt, e outcomeEntry) (after func(redis.Pipeliner), settle func(journalled bool) error) {
	if h.outcomes == nil || e.event == nil {
		return nil, func(bool) error { return nil }
	}
	var cmd *redis.Cmd
	after = func(p redis.Pipeliner) { cmd = h.outcomes.AppendIn(ctx, p, *e.event, e.collision) }
	settle = func(journalled bool) error {
		if !journalled {
			// Without the entry a redelivery runs the task again and
			// appends then; the seen set keeps that to one entry.
			return nil
		}
		if cmd != nil && cmd.Err() == nil {
			return nil
		}
		_, err := h.outcomes.Append(ctx, *e.event, e.collision)
		return err
	}
	return after, settle
}

// outcomeEntry is what the outcome stream gets of an attempt: the event of
// a final outcome (nil for the others) and the collision identity.
type outcomeEntry struct {
	event     *outcome.Event
	collision string
}

// reappend appends again the final outcome recorded for a redelivered
// task (its result), in case the worker that recorded it stopped before
// the append: the stream's seen set makes this a no-op when it did not.
func (h *Handler) reappend(ctx context.Context, a *attempt, recorded json.RawMessage, phoneHash, collision string) {
	if h.outcomes == nil || len(recorded) == 0 {
		return
	}
	var r Result
	if err := json.Unmarshal(recorded, &r); err != nil || !IsFinal(r.Outcome) {
		return
	}
	bctx, cancel := bookkeeping(ctx)
	defer cancel()
	if _, err := h.outcomes.Append(bctx, r.Event(a.id, phoneHash), collision); err != nil {
		h.limited(a.log.Warn().Err(err), "cannot append the recorded outcome to the outcome stream")
	}
}

// keepAppend hands an append Redis refused to the pending store, which
// makes it again until Redis takes it.
func (h *Handler) keepAppend(a *attempt, oe outcomeEntry) {
	if h.outcomes == nil || oe.event == nil {
		return
	}
	ev := *oe.event
	if h.pending.add(a.id, ev.Outcome, a.log, func(ctx context.Context) error {
		_, err := h.outcomes.Append(ctx, ev, oe.collision)
		return err
	}) == nil {
		h.limited(a.log.Error(), "cannot keep the outcome stream append: too many outcomes already waiting for Redis")
	}
}

// errAppend wraps a failed append of a recorded final outcome.
func errAppend(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("append outcome to the outcome stream: %w", err)
}
