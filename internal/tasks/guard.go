package tasks

import (
	"context"

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
