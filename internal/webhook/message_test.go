package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/outcome"
	"github.com/smsq/smsq/internal/phone"
)

// The example of the Standard Webhooks reference libraries' own tests.
func TestSignKnownVector(t *testing.T) {
	t.Parallel()
	s := mustSecrets(t, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	got := Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`), s)
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	two := append(s, mustSecrets(t, testSecret(7, 32))...)
	sigs := strings.Fields(Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`), two))
	if len(sigs) != 2 || sigs[0] != got || sigs[1] == got {
		t.Fatalf("rotation: %q", sigs)
	}
}

func TestMessageShape(t *testing.T) {
	t.Parallel()
	e := event("order-1", "sent")
	m, err := NewMessage(e)
	if err != nil {
		t.Fatal(err)
	}
	typ, ts, data := envelopeOf(t, m.Body)
	if typ != "sms.sent" || m.Type != typ || ts != "2025-11-24T16:00:00.25Z" {
		t.Fatalf("type %q timestamp %q", typ, ts)
	}
	if data["taskId"] != "order-1" || data["outcome"] != "sent" || data["phone"] != "+86 138****8000" || data["v"] != 1.0 {
		t.Fatalf("data %v", data)
	}
	var back outcome.Event
	raw, _ := json.Marshal(data)
	if err := json.Unmarshal(raw, &back); err != nil || back != e {
		t.Fatalf("data does not read back as the event:\n got %+v\nwant %+v (%v)", back, e, err)
	}
	m2, _ := NewMessage(e)
	other, _ := NewMessage(event("order-1", "failed"))
	if m.ID != m2.ID || m.ID == other.ID || !strings.HasPrefix(m.ID, "msg_") {
		t.Fatalf("IDs %s %s %s", m.ID, m2.ID, other.ID)
	}
	if _, err := NewMessage(event("x", "Sent\nX")); err == nil {
		t.Fatal("an outcome that is not a name made a type")
	}
	for _, n := range []int64{13800138000, 8613800138000} {
		e := event("x", "sent")
		e.RetryInMS = n
		if _, err := NewMessage(e); err == nil {
			t.Errorf("retryInMs %d: a phone number in a number was sent", n)
		}
	}
}

// A careless writer's entry with a full number in every text field, in
// ASCII, full-width and Arabic-Indic digits, with separators: the body
// never holds it, and nor does the webhook-id.
func TestBodyHoldsNoPhone(t *testing.T) {
	t.Parallel()
	forms := []string{
		"+8613800138000", "13800138000", "138-0013-8000", "138 0013 8000", "(138) 0013.8000",
		"１３８００１３８０００", "+８６ １３８ ００１３ ８０００", "١٣٨٠٠١٣٨٠٠٠", "१३८००१३८०००",
	}
	for _, p := range forms {
		e := outcome.Event{V: 1, TaskID: "login_" + p + "_1", Key: p, Queue: "q" + p, Channel: p,
			Phone: p, PhoneHash: p, Outcome: "failed", Reason: "GenAuth: bad phone " + p + " (" + p + ")",
			Rule: "override " + p, RequestID: p + "-req", Attempts: 3, FinishedAt: time.Now()}
		m, err := NewMessage(e)
		if err != nil {
			t.Fatal(err)
		}
		for _, text := range []string{string(m.Body), m.ID} {
			if d := phone.Digits(text); strings.Contains(d, "13800138000") || phone.Holds(text) {
				t.Errorf("%q: body holds the number:\n%s", p, text)
			}
		}
		// Decoded too: JSON escapes could hide digits from a byte scan.
		var v map[string]any
		if err := json.Unmarshal(m.Body, &v); err != nil {
			t.Fatal(err)
		}
		flat, _ := json.Marshal(v)
		if strings.Contains(phone.Digits(string(flat)), "13800138000") {
			t.Errorf("%q: decoded body holds the number", p)
		}
	}
}

// syncWriter is a log sink safe for concurrent writes.
type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// Log lines of deliveries, failed ones and entries that do not parse hold
// no phone number, whatever the entry carries; nor do the delivery tasks
// kept in Redis.
func TestLogsAndTasksHoldNoPhone(t *testing.T) {
	t.Parallel()
	logs := &syncWriter{}
	rcv := newReceiver(t, func(n int, _ delivery) int {
		if n%2 == 0 {
			return http.StatusBadRequest
		}
		return http.StatusOK
	})
	r := startRig(t, rigConfig{endpoints: rcv.URL, guard: Guard{AllowPrivate: true}, logs: logs})
	ctx := context.Background()
	for i, p := range []string{"13800138000", "１３８００１３８０００", "१३८००१३८०००", "138-0013-8000"} {
		e := event("login_"+p+"_"+itoa(i), "failed")
		e.Key, e.Reason, e.RequestID = p, "bad "+p, p
		r.append(t, e)
	}
	// Entries that do not parse, or carry a number where no mask can
	// go, quoting the number.
	for _, attempts := range []string{"two 13800138000", "+8613800138000"} {
		if err := r.rdb.XAdd(ctx, &redis.XAddArgs{Stream: outcome.StreamKey("smsq"), Values: []any{"v", "1", "taskId", "13800138000", "outcome", "sent", "attempts", attempts}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, func() (bool, string) {
		return strings.Count(logs.String(), "webhook delivered")+strings.Count(logs.String(), "webhook not delivered") == 4 &&
			strings.Count(logs.String(), "does not parse") == 2, "log lines missing:\n" + logs.String()
	})
	if strings.Contains(phone.Digits(logs.String()), "13800138000") {
		t.Fatalf("logs hold the number:\n%s", phone.Digits(logs.String()))
	}
	var dump strings.Builder
	keys, _ := r.rdb.Keys(ctx, "asynq:{"+Queue+"}:*").Result()
	for _, k := range keys {
		dump.WriteString(k + "\n")
		if typ, _ := r.rdb.Type(ctx, k).Result(); typ == "hash" {
			for f, v := range r.rdb.HGetAll(ctx, k).Val() {
				dump.WriteString(f + "=" + v + "\n")
			}
		}
	}
	if len(keys) < 4 || strings.Contains(phone.Digits(dump.String()), "13800138000") {
		t.Fatalf("%d keys; delivery tasks hold the number:\n%s", len(keys), dump.String())
	}
}
