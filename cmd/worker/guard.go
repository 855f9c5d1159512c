package main

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/guard"
	"github.com/smsq/smsq/internal/outcome"
	"github.com/smsq/smsq/internal/phone"
	"github.com/smsq/smsq/internal/tasks"
)

// newGuard builds the abuse guard from the settings and publishes them for
// Client.Check and enqueue guard; nil when every rule is off.
func newGuard(ctx context.Context, s *settings, rdb redis.UniversalClient, store *dedupe.Store, stream *outcome.Stream, log zerolog.Logger) (*guard.Guard, error) {
	cfg, err := s.Guard.Config(func(v string) (string, error) {
		n, err := phone.Parse(v, "")
		return n.E164, err
	})
	if err != nil {
		return nil, err
	}
	if cfg.AllOff() {
		log.Warn().Msg("ABUSE GUARD OFF: SMSQ_GUARD_MODE=off; nothing limits codes per phone, IP, range, country or budget")
		return nil, nil
	}
	g, err := guard.New(cfg, guard.Deps{Client: rdb, Hasher: store})
	if err != nil {
		return nil, err
	}
	glog := log.With().Str("component", "guard").Logger()
	g.OnBudgetWarning(func(w guard.BudgetWarning) {
		glog.Warn().Str("rule", guard.RuleBudget).Str("window", w.Limit.String()).Int("used", w.Used).
			Time("window_ends", w.Ends).Msgf("SMS budget %d%% used: sends stop when it is spent", int(guard.WarnAt*100))
		// On the outcome stream too, for its consumers; off the send path.
		e := outcome.Event{V: outcome.Version, Kind: outcome.KindBudgetWarning, Budget: w.Limit.String(), Used: int64(w.Used),
			WindowEndsAt: w.Ends, FinishedAt: time.Now().UTC()}
		go func() {
			wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := stream.Warn(wctx, e); err != nil {
				glog.Warn().Err(err).Msg("cannot append the budget warning to the outcome stream")
			}
		}()
	})
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	differs, err := g.Publish(pctx)
	if err != nil {
		return nil, fmt.Errorf("abuse guard: %w", err)
	}
	if differs {
		glog.Warn().Msg("another worker on this Redis published other abuse guard settings: each worker enforces its own; give every worker the same")
	}
	glog.Info().Str("settings", g.Describe()).Msg("abuse guard on")
	return g, nil
}

// guardOrNil keeps a nil *guard.Guard from becoming a non-nil interface.
func guardOrNil(g *guard.Guard) tasks.Guard {
	if g == nil {
		return nil
	}
	return g
}
