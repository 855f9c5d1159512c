package tasks

import (
	"context"
	"time"

	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/guard"
)

// Guard is the abuse guard (internal/guard). Admit checks a send against
// its rules and counts it, before the reservation; Refund gives the count
// back when the attempt did not reach GenAuth, so that only real sends
// count.
type Guard interface {
	Admit(ctx context.Context, req guard.Request) (guard.Decision, error)
	Refund(ctx context.Context, t guard.Ticket) error
}

// admit asks the guard before the reservation. A blocked send ends the task
// as blocked: no reservation taken, no call, not retried. done reports that
// the attempt ended, with err for ProcessTask to return.
func (h *Handler) admit(ctx context.Context, a *attempt) (done bool, err error) {
	if h.guard == nil {
		return false, nil
	}
	d, err := h.guard.Admit(ctx, guard.Request{Phone: a.v.Phone, ClientIP: a.v.ClientIP, Channel: string(a.v.Channel)})
	if err != nil {
		h.limited(a.log.Warn().Err(err), "cannot ask the abuse guard; will retry")
		return true, h.bail(ctx, a, err)
	}
	for _, r := range d.Monitored {
		a.log.Warn().Str("rule", r).Str("mode", string(guard.Monitor)).Msg("abuse guard would block this send (monitor mode)")
	}
	for _, w := range d.Warnings {
		a.log.Warn().Str("rule", guard.RuleBudget).Str("window", w.Limit.String()).Int("used", w.Used).
			Time("window_ends", w.Ends).Msgf("SMS budget %d%% used", int(guard.WarnAt*100))
	}
	if d.Allowed {
		a.ticket = d.Ticket
		return false, nil
	}
	if owner, ttl, ok := h.heldElsewhere(ctx, a); ok {
		// A burst of tasks for one pair counts each in flight until the
		// reservation dedupes and refunds it; a task the guard refuses
		// meanwhile would have been deduplicated anyway: say so, rather
		// than block it for the rest of the window.
		return true, h.held(ctx, a, owner, ttl)
	}
	a.res.Rule = d.Rule
	reason := "blocked by the abuse guard's " + d.Rule + " rule"
	if !d.LiftsAt.IsZero() {
		a.res.LiftsAt = d.LiftsAt
		a.res.RetryInMS = max(1, d.LiftsAt.Sub(h.now()).Milliseconds())
		// The time is in liftsAt: free text masks digit runs like dates.
		reason += " until liftsAt"
	} else {
		reason += " (lifts only when the settings change)"
	}
	return true, h.final(ctx, a, OutcomeBlocked, reason+"; nothing sent", nil)
}

// settleGuard gives back the guard's count of an attempt unless its own
// call may have sent the SMS. It runs once per attempt, whichever way the
// attempt ends.
func (h *Handler) settleGuard(ctx context.Context, a *attempt) {
	t := a.ticket
	a.ticket = guard.Ticket{}
	if t.IsZero() || a.res.Class == genauth.ClassSent.String() || a.res.Class == genauth.ClassUnknown.String() {
		return
	}
	if err := h.guard.Refund(ctx, t); err != nil {
		// The send stays counted: a limit errs toward blocking early.
		h.limited(a.log.Warn().Err(err), "cannot give back the abuse guard's count")
	}
}

// reservationReader is the optional part of a Reserver that reads a
// pair's reservation without taking it.
type reservationReader interface {
	Get(ctx context.Context, e164, channel string) (dedupe.Reservation, bool, error)
}

// heldElsewhere reports whether another task holds the attempt's pair.
func (h *Handler) heldElsewhere(ctx context.Context, a *attempt) (owner string, ttl time.Duration, ok bool) {
	rr, isReader := h.resv.(reservationReader)
	if !isReader {
		return "", 0, false
	}
	r, held, err := rr.Get(ctx, a.v.Phone.E164, string(a.v.Channel))
	if err != nil || !held || r.Owner == a.id {
		return "", 0, false
	}
	return r.Owner, r.TTL, true
}
