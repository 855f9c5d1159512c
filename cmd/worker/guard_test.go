package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/outcome"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/tasks"
)

// A worker whose budget is nearly spent puts the warning on the outcome
// stream once, and the send past the budget ends blocked, with the rule
// and when it lifts, in Wait and on the stream.
func TestBudgetWarningAndBlockOnTheStream(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	startWorker(t, quietEnv(srv.URL(), map[string]string{"SMSQ_BUDGET": "5/d", "SMSQ_GUARD_MODE": "enforce", "SMSQ_LIMIT_IP": "off"}))
	c := smsq.NewClientFromRedis(srv.Client())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var last smsq.Outcome
	for i := range 6 {
		rc, err := c.Send(ctx, smsq.Request{Channel: "CHANNEL_LOGIN", Phone: fmt.Sprintf("+86139%08d", i*7919)})
		if err != nil {
			t.Fatal(err)
		}
		if last, err = c.Wait(ctx, rc.TaskID); err != nil {
			t.Fatal(err)
		}
		if want := tasks.OutcomeSent; i < 5 && last.State != want {
			t.Fatalf("send %d: %s (%s), want %s", i+1, last.State, last.Event.Reason, want)
		}
	}
	if last.State != tasks.OutcomeBlocked || last.Event.Rule != "budget" || last.RetryIn <= 0 {
		t.Fatalf("send 6: %+v; want blocked by the budget, with the time it lifts", last)
	}
	var warnings, blocked []outcome.Event
	collect := func() bool {
		warnings, blocked = nil, nil
		msgs, err := srv.Client().XRange(ctx, outcome.StreamKey(outcome.DefaultPrefix), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			e, err := outcome.Parse(m.Values)
			if err != nil {
				t.Fatalf("entry %s: %v", m.ID, err)
			}
			switch {
			case e.Kind == outcome.KindBudgetWarning:
				warnings = append(warnings, e)
			case e.Outcome == tasks.OutcomeBlocked:
				blocked = append(blocked, e)
			}
		}
		return len(warnings) > 0 && len(blocked) > 0
	}
	deadline := time.Now().Add(10 * time.Second)
	for !collect() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if len(warnings) != 1 || warnings[0].Budget != "5/d" || warnings[0].Used < 4 || warnings[0].WindowEndsAt.Before(time.Now()) || warnings[0].TaskID != "" {
		t.Fatalf("budget warnings %+v; want one for 5/d", warnings)
	}
	if len(blocked) != 1 || blocked[0].Rule != "budget" || blocked[0].RetryInMS <= 0 {
		t.Fatalf("blocked entries %+v; want one, rule budget", blocked)
	}
}
