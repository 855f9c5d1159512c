package main

import (
	"strings"
	"testing"
	"time"

	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/workertest"
)

// waitOutcome is the JSON object enqueue --wait --json prints.
type waitOutcome struct {
	TaskID    string `json:"taskId"`
	Final     bool   `json:"final"`
	State     string `json:"state"`
	Last      string `json:"last"`
	RetryInMS int64  `json:"retryInMs"`
	Event     *struct {
		Outcome    string `json:"outcome"`
		Phone      string `json:"phone"`
		RequestID  string `json:"requestId"`
		StatusCode int    `json:"statusCode"`
		Reason     string `json:"reason"`
	} `json:"event"`
}

// enqueue --wait prints the final outcome a worker process recorded and
// exits with its class: 0 when a code is live for the pair (sent, or
// deduplicated behind one), 4 when none was sent, 5 while still pending at
// --wait-timeout; bad --wait flags are usage errors, checked before Redis.
func TestSingleWait(t *testing.T) {
	srv := redistest.Start(t)
	url := srv.URL()
	fake := genauthtest.NewServer(genauthtest.Options{})
	t.Cleanup(fake.Close)
	g := workertest.NewGroup(t, workertest.Binary(t, false))
	t.Cleanup(func() {
		g.Stop()
		if t.Failed() {
			g.DumpLogs(t, 20000)
		}
	})
	g.Start(t, workertest.Env(url, fake, time.Minute))
	// The worker's queues are served once it registered.
	workertest.WaitFor(t, 20*time.Second, func() (bool, string) {
		s, err := liveServed(srv.Client())
		return err == nil && strings.Contains(s.source, "live"), s.source
	})
	const ph = "+8613700000041"
	base := []string{"--channel", "CHANNEL_LOGIN", "--phone", ph, "--wait", "--wait-timeout", "20s"}

	r := runCmd(t, url, "", append(base, "--json", "--idempotency-key", "w-sent")...)
	var o waitOutcome
	if r.code != exitOK {
		t.Fatalf("sent: exit %d: %v\n%s", r.code, r.err, r.stderr)
	}
	decodeJSON(t, strings.TrimSpace(r.stdout), &o)
	if o.TaskID != "w-sent" || !o.Final || o.State != "sent" || o.Event == nil || o.Event.RequestID == "" || o.Event.StatusCode != 200 || o.Event.Phone != "+86 137****0041" {
		t.Fatalf("sent: %s", r.stdout)
	}
	if strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("--json printed more than one line: %q", r.stdout)
	}

	// The same pair inside the window: deduplicated, a live code, with
	// the time until a new one.
	r = runCmd(t, url, "", append(base, "--json", "--idempotency-key", "w-dup")...)
	if r.code != exitOK {
		t.Fatalf("deduplicated: exit %d: %v\n%s", r.code, r.err, r.stderr)
	}
	o = waitOutcome{}
	decodeJSON(t, strings.TrimSpace(r.stdout), &o)
	if o.State != "deduplicated" || o.RetryInMS <= 0 || o.RetryInMS > 60_000 {
		t.Fatalf("deduplicated: %s", r.stdout)
	}

	// Without --json: the task ID on stdout, the outcome on stderr.
	r = runCmd(t, url, "", append(base, "--idempotency-key", "w-text")...)
	if r.code != exitOK || strings.TrimSpace(r.stdout) != "w-text" || !strings.Contains(r.stderr, "deduplicated") || !strings.Contains(r.stderr, "a new code for this phone and channel in") {
		t.Fatalf("text: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// GenAuth refuses for good: no code, status 4, GenAuth's words.
	fake.Inject(genauthtest.Fault{Kind: genauthtest.FaultBodyStatus, StatusCode: 400})
	r = runCmd(t, url, "", "--channel", "CHANNEL_REGISTER", "--phone", ph, "--wait", "--json", "--idempotency-key", "w-failed")
	o = waitOutcome{}
	decodeJSON(t, strings.TrimSpace(r.stdout), &o)
	if r.code != exitNotDelivered || o.State != "failed" || o.Event == nil || o.Event.StatusCode != 400 || !strings.Contains(errText(r.err), "no code sent: failed") {
		t.Fatalf("failed: exit %d, %v, %s", r.code, r.err, r.stdout)
	}

	// No worker serves the queue: still pending when the wait ends.
	r = runCmd(t, url, "", "--channel", "CHANNEL_LOGIN", "--phone", "+8613700000042", "--queue", "nobody", "--allow-unserved-queue",
		"--wait", "--wait-timeout", "1s", "--idempotency-key", "w-pending")
	if r.code != exitPending || strings.TrimSpace(r.stdout) != "w-pending" || !strings.Contains(errText(r.err), "no final outcome yet") {
		t.Fatalf("pending: exit %d, stdout %q: %v", r.code, r.stdout, r.err)
	}

	// The worker process appended each final outcome to the stream once;
	// the pending task has none.
	r = runCmd(t, url, "", "outcomes")
	seen := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var e struct {
			TaskID  string `json:"taskId"`
			Outcome string `json:"outcome"`
		}
		decodeJSON(t, l, &e)
		if _, dup := seen[e.TaskID]; dup {
			t.Errorf("task %s appended twice", e.TaskID)
		}
		seen[e.TaskID] = e.Outcome
	}
	want := map[string]string{"w-sent": "sent", "w-dup": "deduplicated", "w-text": "deduplicated", "w-failed": "failed"}
	if len(seen) != len(want) {
		t.Errorf("stream %v, want %v", seen, want)
	}
	for id, o := range want {
		if seen[id] != o {
			t.Errorf("stream: task %s %q, want %q", id, seen[id], o)
		}
	}

	for _, args := range [][]string{
		{"--channel", "CHANNEL_LOGIN", "--phone", ph, "--json"},
		{"--channel", "CHANNEL_LOGIN", "--phone", ph, "--wait", "--wait-timeout", "0s"},
	} {
		if r := runCmd(t, closedURL(t), "", args...); r.code != exitUsage {
			t.Errorf("%q: exit %d (%v), want %d before connecting", args, r.code, r.err, exitUsage)
		}
	}
	for _, s := range []string{r.stdout, r.stderr} {
		if strings.Contains(s, "13700000041") || strings.Contains(s, "13700000042") {
			t.Errorf("output shows a full number: %s", s)
		}
	}
}
