package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/smsq/smsq/internal/history"
)

// A sandbox "sent" must never read as a real one in why's answer.
func TestWhyMarksSandboxSends(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, sandbox := range []bool{false, true} {
		result, _ := json.Marshal(map[string]any{"outcome": "sent", "final": true, "channel": "CHANNEL_LOGIN", "sandbox": sandbox})
		v := newTaskView(history.Entry{TaskID: "t-1", Outcome: "sent", Final: true, UpdatedAt: now, Result: result})
		var b strings.Builder
		v.text(&b, now, "")
		if got := strings.Contains(b.String(), "sent (final, SANDBOX: no SMS sent)"); got != sandbox {
			t.Errorf("sandbox %v: why says %q", sandbox, b.String())
		}
		js, _ := json.Marshal(v)
		if got := strings.Contains(string(js), `"sandbox":true`); got != sandbox {
			t.Errorf("sandbox %v: why --json says %s", sandbox, js)
		}
	}
}
