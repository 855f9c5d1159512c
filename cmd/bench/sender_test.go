package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	smsq "github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/tasks"
)

// TestSenderSendsAndChecksStatusCode holds the yardstick to what a
// hand-written sender must do: its request passes GenAuth's validation
// and sends the code, and every answer but statusCode 200 is an error.
func TestSenderSendsAndChecksStatusCode(t *testing.T) {
	fake, err := genauthtest.Listen("127.0.0.1:0", genauthtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	s := newSender(fake, 4)
	defer s.close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	task := func(phone string) *asynq.Task {
		t.Helper()
		tk, _, err := smsq.Prepare(smsq.Request{Channel: benchChannel, Phone: phone, CountryCode: "+86"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}

	if err := s.ProcessTask(ctx, task("13800000001")); err != nil {
		t.Fatalf("first send: %v", err)
	}
	if sent := fake.Sent(); len(sent) != 1 || sent[0].PhoneNumber != "13800000001" || sent[0].Channel != benchChannel {
		t.Fatalf("fake sent %+v, want the one code", sent)
	}
	// GenAuth's one-minute rule answers 422 in the body of an HTTP 200.
	if err := s.ProcessTask(ctx, task("13800000001")); err == nil || !strings.Contains(err.Error(), "statusCode 422") {
		t.Errorf("second send in the minute: %v, want the statusCode 422 error", err)
	}
	fake.Inject(genauthtest.Fault{Kind: genauthtest.FaultBodyStatus, StatusCode: 500})
	if err := s.ProcessTask(ctx, task("13800000002")); err == nil || !strings.Contains(err.Error(), "statusCode 500") {
		t.Errorf("send answered statusCode 500: %v, want an error", err)
	}
	fake.Inject(genauthtest.Fault{Kind: genauthtest.FaultMalformed})
	if err := s.ProcessTask(ctx, task("13800000003")); err == nil {
		t.Error("send answered with broken JSON: no error")
	}
	if err := s.ProcessTask(ctx, asynq.NewTask(tasks.TypeSendSMS, []byte("{"))); !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("undecodable payload: %v, want SkipRetry", err)
	}
	if n := len(fake.Sent()); n != 1 {
		t.Errorf("fake sent %d codes, want 1", n)
	}
}

func TestKindOf(t *testing.T) {
	for key, want := range map[string]string{
		"asynq:{critical}:t:0b6c9e5e-5b1d-4c39-9a7e-7d1f0e2f6a11": "asynq:{critical}:t:…",
		"asynq:{critical}:completed":                              "asynq:{critical}:completed",
		"asynq:queues":                                            "asynq:queues",
		"smsq:task:{bench-1}":                                     "smsq:task:{…}",
		"smsq:resv:{0123abcd}:CHANNEL_LOGIN":                      "smsq:resv:{…}:CHANNEL_LOGIN",
		"plain":                                                   "plain",
	} {
		if got := kindOf(key); got != want {
			t.Errorf("kindOf(%q) = %q, want %q", key, got, want)
		}
	}
	// The memory phase tells reservations from retained keys by prefix.
	resv := kindOf(dedupe.Key(dedupe.DefaultPrefix, "+8613800000001", "CHANNEL_REGISTER"))
	if reservationPrefix == "" || !strings.HasPrefix(resv, reservationPrefix) {
		t.Errorf("reservationPrefix %q does not start the reservation kind %q", reservationPrefix, resv)
	}
	for _, retained := range []string{history.TaskKey(dedupe.DefaultPrefix, "id"), history.PhoneKey(dedupe.DefaultPrefix, "hash")} {
		if strings.HasPrefix(kindOf(retained), reservationPrefix) {
			t.Errorf("reservationPrefix %q starts the retained key %q", reservationPrefix, retained)
		}
	}
}
