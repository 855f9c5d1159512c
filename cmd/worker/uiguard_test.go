package main

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
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

// TestUIWritesFromItsOwnPageInABrowser: the refusal of cross-site writes
// must leave the UI's own writes working in a real browser. A page served
// from the UI's origin (a front server that hands every other path to the
// worker, Host kept, as a reverse proxy does) pauses a queue with fetch, as
// asynqmon's buttons do. A form on a page of another origin (another port
// of the same host) posting to the same address is turned away by the
// cross-origin check itself, before the password is asked for.
func TestUIWritesFromItsOwnPageInABrowser(t *testing.T) {
	browser := chromium(t)
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
	producer := smsq.NewClientFromRedis(srv.Client())
	if _, err := producer.Send(context.Background(), smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13800138000"}); err != nil {
		t.Fatal(err)
	}
	ins := asynq.NewInspectorFromRedisClient(srv.Client())
	paused := func(q string) bool {
		t.Helper()
		info, err := ins.GetQueueInfo(q)
		if err != nil {
			t.Fatal(err)
		}
		return info.Paused
	}
	// page posts to target with the operator's credentials and shows the
	// answer's status in the DOM.
	page := func(target string) string {
		auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
		return `<!doctype html><html><body>waiting<script>
fetch(` + strconv.Quote(target) + `, {method: "POST", headers: {"Authorization": "Basic ` + auth + `"}})
  .then(r => { document.body.textContent = "status:" + r.status; })
  .catch(e => { document.body.textContent = "error:" + e; });
</script></body></html>`
	}
	worker, err := url.Parse("http://" + w.web.Addr())
	if err != nil {
		t.Fatal(err)
	}
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(worker)
		r.Out.Host = r.In.Host
	}}
	front := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/probe.html" {
			io.WriteString(rw, page("/monitoring/api/queues/critical:pause"))
			return
		}
		proxy.ServeHTTP(rw, r)
	}))
	defer front.Close()
	// A form post is a simple request: no preflight stops it in the
	// browser, so only the worker's check can.
	other := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		io.WriteString(rw, `<!doctype html><html><body><form method="POST" action="`+front.URL+
			`/monitoring/api/queues/critical:pause"></form><script>document.forms[0].submit()</script></body></html>`)
	}))
	defer other.Close()

	if dom := runChromium(t, browser, "--dump-dom", other.URL+"/probe.html"); !strings.Contains(dom, "cross-origin request detected") || paused("critical") {
		t.Fatalf("a form of another origin was not refused as cross-origin (paused %v):\n%s", paused("critical"), dom)
	}
	if dom := runChromium(t, browser, "--dump-dom", front.URL+"/probe.html"); !strings.Contains(dom, "status:204") || !paused("critical") {
		t.Fatalf("the UI's own page could not pause the queue (paused %v):\n%s", paused("critical"), dom)
	}
}
