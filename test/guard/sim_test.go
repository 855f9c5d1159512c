// Package guard_test proves the abuse guard against traffic: a seeded
// simulation of ordinary users, an SMS pumping attack and a victim's
// flood, and a limit held across three worker processes.
package guard_test

import (
	"context"
	"os"
	"testing"

	"github.com/smsq/smsq/internal/guard"
	"github.com/smsq/smsq/internal/guard/guardsim"
	"github.com/smsq/smsq/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// TestSimulation runs guardsim.CI with the defaults and the strict
// profile: at most 5 % of the attack's requests reach GenAuth, at most
// 0.5 % of ordinary requests are blocked, and the victim gets a handful.
func TestSimulation(t *testing.T) {
	t.Parallel()
	for _, pr := range []struct {
		name      string
		settings  guard.Settings
		maxVictim int
	}{{"defaults", guardsim.Defaults, 10}, {"strict", guardsim.Strict, 5}} {
		t.Run(pr.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			c := srv.Client()
			defer c.Close()
			rep, err := guardsim.Run(context.Background(), c, pr.name, pr.settings, guardsim.CI)
			if err != nil {
				t.Fatal(err)
			}
			t.Log(rep)
			if rep.Attack != guardsim.CI.AttackRequests || rep.Victim != guardsim.CI.VictimRequests || rep.Ordinary < guardsim.CI.Users {
				t.Fatalf("traffic lost: %v", rep)
			}
			if got := rep.AttackShare(); got > 0.05 {
				t.Errorf("%.2f %% of attack requests reached GenAuth, want at most 5 %%", 100*got)
			}
			if got := rep.OrdinaryBlockedShare(); got > 0.005 {
				t.Errorf("%.3f %% of ordinary requests blocked, want at most 0.5 %%", 100*got)
			}
			if rep.VictimSent > pr.maxVictim {
				t.Errorf("victim got %d codes, want at most %d", rep.VictimSent, pr.maxVictim)
			}
		})
	}
}
