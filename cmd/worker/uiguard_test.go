package main

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/redistest"
)

// TestUIRefusesCrossSiteWrites runs a worker with a writable UI and posts
// asynqmon's "pause queue" as a page on another site would, with the
// operator's credentials cached by the browser: the queue must stay
// unpaused. The same request from a client that is not a browser pauses
// it, so the refusal is the check's, not a broken route.
func TestUIRefusesCrossSiteWrites(t *testing.T) {
	srv := redistest.Start(t)
	const user, pass = "ops", "correct horse"
	w, _ := startWorker(t, map[string]string{
		"REDIS_URL":          srv.URL(),
		"SMSQ_HTTP_ADDR":     "127.0.0.1:0",
		"SMSQ_UI_USER":       user,
		"SMSQ_UI_PASSWORD":   pass,
		"SMSQ_UI_WRITABLE":   "true",
		"SMSQ_POLL_INTERVAL": "50ms",
		"SMSQ_LOG_FORMAT":    "json",
	})
	// A queue exists once it has held a task.
	producer := smsq.NewClientFromRedis(srv.Client())
	if _, err := producer.Send(context.Background(), smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13800138000"}); err != nil {
		t.Fatal(err)
	}
	ins := asynq.NewInspectorFromRedisClient(srv.Client())
	pause := "http://" + w.web.Addr() + "/monitoring/api/queues/critical:pause"
	post := func(header map[string]string) *http.Response {
		t.Helper()
		req, err := http.NewRequest("POST", pause, strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(user, pass)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	paused := func() bool {
		t.Helper()
		info, err := ins.GetQueueInfo("critical")
		if err != nil {
			t.Fatal(err)
		}
		return info.Paused
	}

	resp := post(map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site",
		"Content-Type": "application/x-www-form-urlencoded"})
	if resp.StatusCode != http.StatusForbidden || paused() {
		t.Fatalf("cross-site POST pause = %d, paused %v; want 403 and the queue running", resp.StatusCode, paused())
	}
	if got := resp.Header.Get("X-Frame-Options"); got != "DENY" {
		t.Errorf("X-Frame-Options = %q, want DENY", got)
	}
	if resp := post(nil); resp.StatusCode/100 != 2 || !paused() {
		t.Fatalf("POST pause without browser headers = %d, paused %v; want it paused", resp.StatusCode, paused())
	}
}
