package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/outcome"
)

// fakeOutcomes answers from Func fields.
type fakeOutcomes struct {
	OutcomeFunc func(ctx context.Context, id string) (smsq.Outcome, error)
	WaitFunc    func(ctx context.Context, id string) (smsq.Outcome, error)
}

func (f *fakeOutcomes) Outcome(ctx context.Context, id string) (smsq.Outcome, error) {
	return f.OutcomeFunc(ctx, id)
}

func (f *fakeOutcomes) Wait(ctx context.Context, id string) (smsq.Outcome, error) {
	return f.WaitFunc(ctx, id)
}

func sentOutcome(id string) smsq.Outcome {
	return smsq.Outcome{TaskID: id, Final: true, State: "sent", Event: outcome.Event{
		V: outcome.Version, TaskID: id, Queue: "critical", Channel: "CHANNEL_LOGIN", Phone: "+86 138****8000",
		PhoneHash: "0123456789abcdef0123456789abcdef", Outcome: "sent", StatusCode: 200, RequestID: "req-1",
		Attempts: 1, EnqueuedAt: time.Now().Add(-time.Second).UTC(), FinishedAt: time.Now().UTC(), Sandbox: true,
	}}
}

func TestGetState(t *testing.T) {
	h := newHarness(t, nil)
	// A task just queued, through the real client: pending.
	resp, body := h.send(`{"channel":"CHANNEL_LOGIN","phoneNumber":"`+testPhone+`"}`, "Idempotency-Key", "get-1")
	wantStatus(t, resp, body, http.StatusAccepted)
	resp, body = h.do(http.MethodGet, "/v1/sms/get-1", billingSecret, "", "")
	wantStatus(t, resp, body, http.StatusOK)
	if m := decode[map[string]any](t, body); m["state"] != "pending" || m["final"] != false || m["taskId"] != "get-1" {
		t.Fatalf("state %s", body)
	}
	// Unknown: 404 naming the id.
	resp, body = h.do(http.MethodGet, "/v1/sms/nobody-knows", billingSecret, "", "")
	wantStatus(t, resp, body, http.StatusNotFound)
	if p := decode[Problem](t, body); p.Field != "id" {
		t.Errorf("problem %+v", p)
	}
	// A wait that ends first answers the last state, pending.
	start := time.Now()
	resp, body = h.do(http.MethodGet, "/v1/sms/get-1?wait=300ms", billingSecret, "", "")
	wantStatus(t, resp, body, http.StatusOK)
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("a 300ms wait answered after %s", d)
	}
	if !strings.Contains(string(body), `"state":"pending"`) {
		t.Errorf("after the wait: %s", body)
	}
	resp, body = h.do(http.MethodGet, "/v1/sms/get-1", "", "", "")
	wantStatus(t, resp, body, http.StatusUnauthorized)
	// A task ID holding a phone number is masked in the answer.
	resp, body = h.do(http.MethodGet, "/v1/sms/login-13900139000", billingSecret, "", "")
	wantStatus(t, resp, body, http.StatusNotFound)
}

func TestGetFinalOutcomeAndWait(t *testing.T) {
	released := make(chan struct{})
	fo := &fakeOutcomes{
		OutcomeFunc: func(_ context.Context, id string) (smsq.Outcome, error) {
			switch id {
			case "done":
				return sentOutcome(id), nil
			case "broken":
				return smsq.Outcome{}, errors.New("dial tcp: connection refused")
			}
			return smsq.Outcome{TaskID: id, State: smsq.StatePending, Last: "retrying"}, nil
		},
		WaitFunc: func(ctx context.Context, id string) (smsq.Outcome, error) {
			select {
			case <-released:
				return sentOutcome(id), nil
			case <-ctx.Done():
				return smsq.Outcome{TaskID: id, State: smsq.StatePending}, fmt.Errorf("wait: %w", ctx.Err())
			}
		},
	}
	h := newHarness(t, func(c *Config) { c.Outcomes = fo })
	resp, body := h.do(http.MethodGet, "/v1/sms/done", billingSecret, "", "")
	wantStatus(t, resp, body, http.StatusOK)
	m := decode[map[string]any](t, body)
	ev, _ := m["event"].(map[string]any)
	if m["final"] != true || m["state"] != "sent" || ev["requestId"] != "req-1" || ev["phone"] != "+86 138****8000" || ev["v"] != float64(1) {
		t.Fatalf("final outcome %s", body)
	}
	resp, body = h.do(http.MethodGet, "/v1/sms/broken", billingSecret, "", "")
	wantStatus(t, resp, body, http.StatusServiceUnavailable)

	// POST with ?wait=: the answer holds once the outcome is final.
	go func() { time.Sleep(200 * time.Millisecond); close(released) }()
	resp, body = h.do(http.MethodPost, "/v1/sms?wait=10s", billingSecret, "application/json", `{"channel":"CHANNEL_LOGIN","phoneNumber":"`+testPhone+`"}`)
	wantStatus(t, resp, body, http.StatusAccepted)
	rc := decode[receipt](t, body)
	if rc.Outcome == nil || !rc.Outcome.Final || rc.Outcome.State != "sent" || rc.Outcome.TaskID != rc.ID {
		t.Fatalf("receipt after wait: %s", body)
	}
	resp, body = h.do(http.MethodGet, "/v1/sms/later?wait=5s", billingSecret, "", "")
	wantStatus(t, resp, body, http.StatusOK)
	if !strings.Contains(string(body), `"state":"sent"`) {
		t.Errorf("GET after wait: %s", body)
	}
}

// Without an outcome reader, GET and ?wait= say so (501), and a refused
// wait queues nothing.
func TestNoOutcomes(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Outcomes = nil })
	resp, body := h.do(http.MethodGet, "/v1/sms/x", billingSecret, "", "")
	wantStatus(t, resp, body, http.StatusNotImplemented)
	resp, body = h.do(http.MethodPost, "/v1/sms?wait=1s", billingSecret, "application/json", `{"channel":"CHANNEL_LOGIN","phoneNumber":"`+testPhone+`"}`)
	wantStatus(t, resp, body, http.StatusNotImplemented)
	if n := h.tasks(); n != 0 {
		t.Fatalf("%d tasks", n)
	}
}
