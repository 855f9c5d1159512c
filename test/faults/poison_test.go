package faults

import (
	"strings"
	"testing"
	"time"

	"github.com/smsq/smsq/internal/tasks"
)

// TestPoisonTasks enqueues broken payloads with a raw asynq client (asynq's
// own defaults: 25 retries): each must be archived on its first attempt
// with a reason, never retried, and the worker must keep serving.
func TestPoisonTasks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, config{})
	w := e.startWorker()

	big := `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + phoneNumber(9) + `","lang":"` + strings.Repeat("x", tasks.MaxPayloadSize) + `"}`
	cases := []struct {
		name    string
		payload string
		numbers []string
		reason  string // part of the recorded reason
	}{
		{"not JSON", `hello`, nil, "not a JSON object"},
		{"empty", ``, nil, "empty"},
		{"JSON array", `[1,2]`, nil, "not a JSON object"},
		{"unknown channel", `{"channel":"CHANNEL_NOPE","phoneNumber":"` + phoneNumber(1) + `"}`, []string{phoneNumber(1)}, "channel"},
		{"invalid phone", `{"channel":"CHANNEL_LOGIN","phoneNumber":"12345"}`, nil, "phoneNumber"},
		{"invalid long phone", `{"channel":"CHANNEL_LOGIN","phoneNumber":"+86 100 0000 0002"}`, []string{"10000000002"}, "phoneNumber"},
		{"swapped fields", `{"channel":"` + phoneNumber(3) + `","phoneNumber":"CHANNEL_LOGIN"}`, []string{phoneNumber(3)}, "channel"},
		{"too large", big, []string{phoneNumber(9)}, "bytes"},
		{"bad onHeld", `{"channel":"CHANNEL_LOGIN","phoneNumber":"` + phoneNumber(4) + `","onHeld":"maybe"}`, []string{phoneNumber(4)}, "onHeld"},
	}
	ids := map[string]string{}
	for _, c := range cases {
		ids[c.name] = e.sendRaw([]byte(c.payload), c.numbers...)
	}
	// A raw three-field payload is the complete contract and must be sent.
	good := e.sendRaw([]byte(`{"channel":"CHANNEL_LOGIN","phoneNumber":"`+phoneNumber(5)+`","phoneCountryCode":"+86"}`), phoneNumber(5))

	st := e.waitDone(30 * time.Second)
	for _, c := range cases {
		s := st[ids[c.name]]
		if s.State != "archived" || s.Retried != 0 || s.Result.Outcome != tasks.OutcomeInvalid {
			t.Errorf("%s: state %s, retried %d, outcome %q; want archived, 0, invalid", c.name, s.State, s.Retried, s.Result.Outcome)
		}
		if !strings.Contains(s.Result.Reason, c.reason) {
			t.Errorf("%s: reason %q does not mention %q", c.name, s.Result.Reason, c.reason)
		}
		if s.LastErr == "" {
			t.Errorf("%s: archived without a last error", c.name)
		}
	}
	if s := st[good]; s.Result.Outcome != tasks.OutcomeSent {
		t.Errorf("raw three-field payload: outcome %q, want sent (%s)", s.Result.Outcome, s.Result.Reason)
	}

	// Still healthy: a new task after the poison is sent.
	after := e.send("CHANNEL_REGISTER", phoneNumber(6))
	if s := e.waitFinal(after, 20*time.Second); s.Result.Outcome != tasks.OutcomeSent {
		t.Errorf("task after poison: outcome %q, want sent", s.Result.Outcome)
	}
	if !w.Alive() {
		t.Fatalf("worker exited: %v", w.Err())
	}
	if got := e.fake.Calls(); got != 2 {
		t.Errorf("GenAuth calls %d, want 2 (the two valid tasks only)", got)
	}
	// Each poison task ran once: one attempt line per task.
	attempts := map[string]int{}
	for _, l := range w.Logs(t) {
		if l.Message == "send_sms attempt" {
			attempts[l.TaskID]++
		}
	}
	for _, c := range cases {
		if n := attempts[ids[c.name]]; n != 1 {
			t.Errorf("%s: %d attempts logged, want 1", c.name, n)
		}
	}
	e.check(e.waitDone(10 * time.Second))
	t.Logf("poison: %d tasks archived on first attempt; GenAuth calls %d", len(cases), e.fake.Calls())
}
