package webhook

import (
	"testing"
	"time"
)

func TestScheduleDelay(t *testing.T) {
	t.Parallel()
	for n, d := range DefaultSchedule {
		for range 200 {
			got := DefaultSchedule.Delay(n, nil, nil)
			if lo, hi := d-d/10+time.Second, d+d/10+time.Second; got < lo || got > hi {
				t.Fatalf("Delay(%d) = %s, want %s..%s", n, got, lo, hi)
			}
		}
	}
	if got := DefaultSchedule.Delay(99, nil, nil); got < 9*time.Hour {
		t.Fatalf("beyond the schedule: %s", got)
	}
	if len(DefaultSchedule) != 7 || DefaultSchedule[0] != 5*time.Second || DefaultSchedule[6] != 10*time.Hour {
		t.Fatalf("DefaultSchedule %v", DefaultSchedule)
	}
}
