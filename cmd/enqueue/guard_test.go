package main

import (
	"strings"
	"testing"

	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/guard"
	"github.com/smsq/smsq/internal/tasks"
)

// TestGuardCommands drives a worker's handler with an abuse guard of 2
// codes per phone an hour: why names the rule that blocked, enqueue guard
// lists the block masked, lifts it and exempts a number, and enqueue
// verified turns the breaker on for its channel.
func TestGuardCommands(t *testing.T) {
	p := startGuardedPipeline(t, dedupe.Hasher{}, &guard.Settings{Phone: "2/h", Modes: "enforce"})
	url := p.redis.URL()
	const number = "+8613800138000"
	p.send(t, "g-1", "CHANNEL_LOGIN", number)
	p.send(t, "g-2", "CHANNEL_REGISTER", number)
	blocked := p.send(t, "g-3", "CHANNEL_RESET_PASSWORD", number)
	var res tasks.Result
	decodeJSON(t, string(blocked.Result), &res)
	if res.Outcome != tasks.OutcomeBlocked || res.Rule != guard.RulePhone || res.LiftsAt.IsZero() {
		t.Fatalf("third code: %s; want blocked by the phone rule", blocked.Result)
	}

	noLeak := func(t *testing.T, out string) {
		t.Helper()
		if strings.Contains(out, "13800138000") || strings.Contains(out, "0013") {
			t.Fatalf("output holds the number:\n%s", out)
		}
	}
	r := runCmd(t, url, "", "why", "--phone", number)
	if r.code != 0 || !strings.Contains(r.stdout, "guard: blocked by the phone rule, until ") || !strings.Contains(r.stdout, "blocked (final)  task g-3") {
		t.Fatalf("why: exit %d %v\n%s", r.code, r.err, r.stdout)
	}
	r = runCmd(t, url, "", "guard")
	if r.code != 0 || !strings.Contains(strings.Join(strings.Fields(r.stdout), " "), "blocks: phone +86 138****8000 2 of 2/h until ") {
		t.Fatalf("guard: exit %d %v\n%s%s", r.code, r.err, r.stdout, r.stderr)
	}
	noLeak(t, r.stdout)
	r = runCmd(t, url, "", "guard", "lift", "--phone", number)
	if r.code != 0 || !strings.Contains(r.stdout, "lifted the phone rule's counts") {
		t.Fatalf("lift: exit %d %v\n%s", r.code, r.err, r.stdout)
	}
	noLeak(t, r.stdout)
	decodeJSON(t, string(p.send(t, "g-4", "CHANNEL_RESET_PASSWORD", number).Result), &res)
	if res.Outcome != tasks.OutcomeSent {
		t.Fatalf("after lift: %+v", res)
	}
	if r = runCmd(t, url, "", "guard", "exempt", "--phone", number); r.code != 0 {
		t.Fatalf("exempt: exit %d %v", r.code, r.err)
	}
	for _, ch := range []string{"CHANNEL_BIND_PHONE", "CHANNEL_UNBIND_PHONE", "CHANNEL_COMPLETE_PHONE"} {
		decodeJSON(t, string(p.send(t, "g-"+ch, ch, number).Result), &res)
		if res.Outcome != tasks.OutcomeSent {
			t.Fatalf("exempt number on %s: %+v", ch, res)
		}
	}
	r = runCmd(t, url, "", "guard", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"label": "+86 138****8000"`) {
		t.Fatalf("guard --json: %v\n%s", r.err, r.stdout)
	}
	noLeak(t, r.stdout)
	if r = runCmd(t, url, "", "verified", "--phone", number, "--channel", "CHANNEL_LOGIN"); r.code != 0 {
		t.Fatalf("verified: exit %d %v", r.code, r.err)
	}
	r = runCmd(t, url, "", "guard")
	if !strings.Contains(r.stdout, "channels reporting verified codes: CHANNEL_LOGIN") {
		t.Fatalf("guard after verified:\n%s", r.stdout)
	}
	// Bad input is a usage error, with nothing changed.
	for _, args := range [][]string{
		{"guard", "lift"},
		{"guard", "lift", "--phone", number, "--budget"},
		{"guard", "exempt", "--ip", "1.2.3.4"},
		{"guard", "frobnicate"},
		{"verified", "--phone", number},
		{"verified", "--phone", "12", "--channel", "CHANNEL_LOGIN"},
		{"verified", "--phone", number, "--channel", "CHANNEL_NOPE"},
	} {
		if r := runCmd(t, url, "", args...); r.code != exitUsage {
			t.Errorf("%q: exit %d (%v), want %d", args, r.code, r.err, exitUsage)
		}
	}
}
