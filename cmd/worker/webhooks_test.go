package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/outcome"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/tasks"
	"github.com/smsq/smsq/internal/webhook"
)

func whsec(b byte) string {
	key := make([]byte, 32)
	for i := range key {
		key[i] = b ^ byte(i*7)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

// Each bad webhook setting stops start-up with an error naming it, which
// never quotes a secret, a URL's path or query.
func TestWebhookSettingsErrors(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	secret := whsec(1)
	ok := map[string]string{"SMSQ_WEBHOOK_URL": "https://8.8.8.8/hook?token=tok3n", "SMSQ_WEBHOOK_SECRET": secret}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range ok {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return quietEnv(srv.URL(), m)
	}
	tests := []struct {
		vars map[string]string
		want string
	}{
		{with("SMSQ_WEBHOOK_SECRET", ""), "SMSQ_WEBHOOK_SECRET: no secret"},
		{with("SMSQ_WEBHOOK_SECRET", strings.TrimPrefix(secret, "whsec_")), "SMSQ_WEBHOOK_SECRET: secret 1: must start with whsec_"},
		{with("SMSQ_WEBHOOK_SECRET", secret+" whsec_c2hvcnQ="), "SMSQ_WEBHOOK_SECRET: secret 2: decodes to 5 bytes"},
		{with("SMSQ_WEBHOOK_URL", "", "SMSQ_WEBHOOK_SECRET", secret), "SMSQ_WEBHOOK_SECRET is set but SMSQ_WEBHOOK_URL is not"},
		{with("SMSQ_WEBHOOK_URL", "ftp://8.8.8.8/tok3n"), "SMSQ_WEBHOOK_URL: URL 1 (ftp://8.8.8.8): scheme must be http or https"},
		{with("SMSQ_WEBHOOK_URL", "https://8.8.8.8/a,http://127.0.0.1:9/tok3n"), "SMSQ_WEBHOOK_URL: URL 2 (http://127.0.0.1:9): address refused: 127.0.0.1 is a loopback address"},
		{with("SMSQ_WEBHOOK_URL", "http://localhost:9/tok3n"), "SMSQ_WEBHOOK_URL: URL 1 (http://localhost:9): address refused"},
		{with("SMSQ_WEBHOOK_URL", "http://[::ffff:169.254.169.254]/tok3n"), "link-local"},
		{with("SMSQ_WEBHOOK_URL", "http://100.64.0.9/tok3n"), "carrier-grade NAT"},
		{with("SMSQ_WEBHOOK_EVENTS", "sent,retrying"), `SMSQ_WEBHOOK_EVENTS: "retrying" is not a final outcome`},
		{with("SMSQ_WEBHOOK_ALLOW_PRIVATE", "maybe"), "SMSQ_WEBHOOK_ALLOW_PRIVATE"},
		{with("SMSQ_WEBHOOK_CONCURRENCY", "0"), "SMSQ_WEBHOOK_CONCURRENCY 0: must be between 1 and 200"},
		{with("SMSQ_QUEUES", "critical=1,smsq-webhooks=1"), "SMSQ_QUEUES: smsq-webhooks is the webhook delivery queue"},
		{with("SMSQ_OUTCOME_STREAM_MAXLEN", "off"), "SMSQ_WEBHOOK_URL is set but SMSQ_OUTCOME_STREAM_MAXLEN is off"},
		{with("SMSQ_OUTCOME_STREAM_MAXLEN", "0"), `SMSQ_OUTCOME_STREAM_MAXLEN "0": must be a positive number of entries or off`},
		{with("SMSQ_OUTCOME_STREAM_MAXLEN", "1e5"), `SMSQ_OUTCOME_STREAM_MAXLEN "1e5"`},
	}
	for _, tc := range tests {
		err := runToError(t, nil, tc.vars)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want it to contain %q", tc.vars, err, tc.want)
			continue
		}
		for _, secretPart := range []string{"tok3n", strings.TrimPrefix(secret, "whsec_")[:12]} {
			if strings.Contains(err.Error(), secretPart) {
				t.Errorf("error shows a secret part: %v", err)
			}
		}
	}
	if err := tasks.ValidateQueue(webhook.Queue); err != nil {
		t.Fatalf("the webhook queue's name: %v", err)
	}
}

// A task sent through a worker with webhooks on ends in one outcome that
// reaches its producer three ways: Client.Wait, one stream entry and one
// signed delivery to the endpoint, and the webhook metrics show it.
func TestWebhookEndToEnd(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	var mu sync.Mutex
	var got []*http.Request
	var bodies [][]byte
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, bodies = append(got, r), append(bodies, b)
		mu.Unlock()
	}))
	defer rcv.Close()
	_, logs := startWorker(t, quietEnv(srv.URL(), map[string]string{
		"SMSQ_WEBHOOK_URL": rcv.URL + "/in", "SMSQ_WEBHOOK_SECRET": whsec(2), "SMSQ_WEBHOOK_ALLOW_PRIVATE": "true",
		"SMSQ_LOG_FORMAT": "json",
	}))
	producer := smsq.NewClientFromRedis(srv.Client())
	defer producer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rc, err := producer.Send(ctx, smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "+86 138-0013-8000"}, smsq.WithIdempotencyKey("hook-1"))
	if err != nil {
		t.Fatal(err)
	}
	o, err := producer.Wait(ctx, rc.TaskID)
	if err != nil || !o.Final || o.State != tasks.OutcomeSent || o.Event.RequestID == "" || o.Event.Phone != "+86 138****8000" {
		t.Fatalf("Wait = %+v, %v; want sent with GenAuth's requestId", o, err)
	}
	msgs, err := srv.Client().XRange(ctx, outcome.StreamKey(outcome.DefaultPrefix), "-", "+").Result()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("stream entries %v, %v; want one", msgs, err)
	}
	if e, err := outcome.Parse(msgs[0].Values); err != nil || e.TaskID != rc.TaskID || e.Outcome != "sent" || e.RequestID != o.Event.RequestID {
		t.Fatalf("stream entry %+v, %v; want the task's sent outcome", e, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 1 && strings.Contains(logs.String(), `"message":"webhook delivered"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries\n%s", n, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	r, body := got[0], bodies[0]
	mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/in" || !strings.HasPrefix(r.Header.Get("webhook-signature"), "v1,") || r.Header.Get("webhook-id") != webhook.MessageID(rc.TaskID, "sent") {
		t.Fatalf("request %s %s %v", r.Method, r.URL, r.Header)
	}
	var msg struct {
		Type string        `json:"type"`
		Data outcome.Event `json:"data"`
	}
	if err := json.Unmarshal(body, &msg); err != nil || msg.Type != "sms.sent" || msg.Data.TaskID != rc.TaskID || msg.Data.RequestID != o.Event.RequestID {
		t.Fatalf("body %s (%v); want sms.sent of the task", body, err)
	}
	if strings.Contains(string(body), "13800138000") {
		t.Fatalf("body holds the phone number: %s", body)
	}
	for _, want := range []string{`"message":"webhooks on"`, `"message":"webhook delivered"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s", want)
		}
	}
	if strings.Contains(logs.String(), rcv.URL+"/in") {
		t.Error("logs show the endpoint's URL with its path")
	}
}
