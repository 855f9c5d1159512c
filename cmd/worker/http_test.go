package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/config"
	"github.com/smsq/smsq/internal/redistest"
)

// get fetches url, with basic auth when user is set, and returns the status
// and body.
func get(t *testing.T, url, user, pass string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// TestHTTPSurface runs the whole worker with its HTTP listener, sends one
// task through the sandbox and checks every endpoint, then the web UI in a
// real browser.
func TestHTTPSurface(t *testing.T) {
	srv := redistest.Start(t)
	const user, pass = "ops", "correct horse"
	w, logs := startWorker(t, map[string]string{
		"REDIS_URL":          srv.URL(),
		"SMSQ_HTTP_ADDR":     "127.0.0.1:0",
		"SMSQ_UI_USER":       user,
		"SMSQ_UI_PASSWORD":   pass,
		"SMSQ_POLL_INTERVAL": "50ms",
		"SMSQ_LOG_FORMAT":    "json",
	})
	addr := w.web.Addr()
	if addr == "" || !strings.Contains(logs.String(), `"http_addr":"`+addr+`"`) {
		t.Fatalf("HTTP address %q not logged:\n%s", addr, logs)
	}
	base := "http://" + addr

	producer, err := smsq.NewClient(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	rc, err := producer.Send(context.Background(), smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "13800138000"})
	if err != nil {
		t.Fatal(err)
	}
	// No GENAUTH_APP_HOST: the sandbox, which every result and attempt
	// line must say, so that its "sent" is never taken for a real SMS.
	if _, r := waitFinal(t, asynq.NewInspectorFromRedisClient(srv.Client()), rc.Queue, rc.TaskID); !r.Sandbox {
		t.Errorf("sandbox result = %+v, want sandbox marked", r)
	}
	if !strings.Contains(logs.String(), `"sandbox":true`) {
		t.Errorf("sandbox attempt line not marked:\n%s", logs)
	}

	tests := []struct {
		path, user string
		code       int
		want       []string
	}{
		{path: "/healthz", code: 200, want: []string{"ok"}},
		{path: "/readyz", code: 200, want: []string{"ready"}},
		{path: "/metrics", code: 200, want: []string{
			`smsq_attempts_total{channel="CHANNEL_LOGIN",final="true",outcome="sent"} 1`,
			`smsq_tasks_finished_total{channel="CHANNEL_LOGIN",outcome="sent"} 1`,
			`smsq_genauth_request_duration_seconds_count{class="sent"} 1`,
			`smsq_enqueue_to_send_seconds_count{channel="CHANNEL_LOGIN"} 1`,
			`asynq_tasks_processed_total{queue="critical"} 1`,
			`go_goroutines `,
		}},
		{path: "/monitoring/", code: 401},
		{path: "/monitoring/api/queues", code: 401},
		{path: "/monitoring/", user: user, code: 200, want: []string{"<html"}},
		{path: "/monitoring/api/queues/critical/completed_tasks", user: user, code: 200,
			want: []string{rc.TaskID, `138****8000`}},
	}
	for _, tt := range tests {
		code, body := get(t, base+tt.path, tt.user, pass)
		if code != tt.code {
			t.Errorf("GET %s as %q = %d, want %d\n%.500s", tt.path, tt.user, code, tt.code, body)
		}
		for _, w := range tt.want {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s: body lacks %q\n%.2000s", tt.path, w, body)
			}
		}
		if strings.Contains(body, "13800138000") {
			t.Errorf("GET %s shows the full phone number", tt.path)
		}
	}
	// Read-only by default: the UI cannot delete tasks.
	req, _ := http.NewRequest("DELETE", base+"/monitoring/api/queues/critical/completed_tasks/"+rc.TaskID, nil)
	req.SetBasicAuth(user, pass)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("DELETE through a read-only UI = %d, want 405", resp.StatusCode)
	}

	t.Run("browser", func(t *testing.T) {
		browser := chromium(t)
		page := "http://" + user + ":" + strings.ReplaceAll(pass, " ", "%20") + "@" + addr +
			"/monitoring/queues/critical?status=completed"
		dom := runChromium(t, browser, "--dump-dom", page)
		if !strings.Contains(dom, rc.TaskID[:8]) || !strings.Contains(dom, "138****8000") {
			t.Fatalf("the completed-task page lacks the task %s or the masked phone:\n%.3000s", rc.TaskID, dom)
		}
		if strings.Contains(dom, "13800138000") {
			t.Fatal("the completed-task page shows the full phone number")
		}
		if os.Getenv("SMSQ_UPDATE_SCREENSHOT") == "1" {
			out, err := filepath.Abs(filepath.Join("..", "..", "docs", "asynqmon-completed.png"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				t.Fatal(err)
			}
			runChromium(t, browser, "--screenshot="+out, "--window-size=1600,960", "--hide-scrollbars", page)
			if fi, err := os.Stat(out); err != nil || fi.Size() == 0 {
				t.Fatalf("screenshot %s not written: %v", out, err)
			}
		}
	})

	if strings.Contains(logs.String(), "13800138000") {
		t.Fatal("the full phone number appears in the worker log")
	}
}

// chromium returns the browser binary, or skips (fails under CI=true) when
// there is none.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	redistest.SkipMissing(t, "chromium", "apt-get install chromium")
	return ""
}

// runChromium runs headless Chromium once and returns its standard output.
func runChromium(t *testing.T, browser string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=10000",
	}
	cmd := exec.CommandContext(ctx, browser, append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}

// parseSettings binds and parses the worker's settings from vars.
func parseSettings(t *testing.T, vars map[string]string) (*config.Set, *settings) {
	t.Helper()
	var s settings
	set := config.NewSet("worker", env(vars), io.Discard)
	bindSettings(set, &s)
	if err := set.Parse(nil); err != nil {
		t.Fatal(err)
	}
	return set, &s
}

func TestListenHTTPSettings(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	tests := []struct {
		name    string
		vars    map[string]string
		wantErr string // substring; "" means it must listen
	}{
		{name: "off", vars: map[string]string{"SMSQ_HTTP_ADDR": "off"}},
		{name: "loopback without credentials", vars: map[string]string{"SMSQ_HTTP_ADDR": "127.0.0.1:0"}},
		{name: "all interfaces without credentials",
			vars:    map[string]string{"SMSQ_HTTP_ADDR": ":0"},
			wantErr: "SMSQ_UI_PASSWORD"},
		{name: "all interfaces, UI off",
			vars: map[string]string{"SMSQ_HTTP_ADDR": "0.0.0.0:0", "SMSQ_UI": "off"}},
		{name: "all interfaces with credentials",
			vars: map[string]string{"SMSQ_HTTP_ADDR": "0.0.0.0:0", "SMSQ_UI_USER": "ops", "SMSQ_UI_PASSWORD": "pw"}},
		{name: "user without password",
			vars:    map[string]string{"SMSQ_HTTP_ADDR": "127.0.0.1:0", "SMSQ_UI_USER": "ops"},
			wantErr: "SMSQ_UI_PASSWORD"},
		{name: "bad UI switch", vars: map[string]string{"SMSQ_HTTP_ADDR": "127.0.0.1:0", "SMSQ_UI": "yes"}, wantErr: "SMSQ_UI"},
		{name: "not an address", vars: map[string]string{"SMSQ_HTTP_ADDR": "8080"}, wantErr: "SMSQ_HTTP_ADDR"},
		{name: "explicit address taken",
			vars:    map[string]string{"SMSQ_HTTP_ADDR": taken.Addr().String()},
			wantErr: "SMSQ_HTTP_ADDR"},
	}
	for _, tt := range tests {
		set, s := parseSettings(t, tt.vars)
		h, err := listenHTTP(set, s, zerolog.Nop())
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: error %v, want one naming %s", tt.name, err, tt.wantErr)
		case tt.vars["SMSQ_HTTP_ADDR"] == "off" && h != nil:
			t.Errorf("%s: listener opened", tt.name)
		}
		h.Close()
	}
}

// TestDefaultHTTPAddrFallsBack starts two listeners with the default
// address: whichever finds it taken (by the other, or by anything else on
// the machine) moves to a free loopback port instead of failing.
func TestDefaultHTTPAddrFallsBack(t *testing.T) {
	t.Parallel()
	var addrs []string
	for range 2 {
		set, s := parseSettings(t, map[string]string{})
		h, err := listenHTTP(set, s, zerolog.Nop())
		if err != nil {
			t.Fatalf("default address: %v", err)
		}
		defer h.Close()
		addrs = append(addrs, h.Addr())
	}
	if addrs[0] == addrs[1] || !strings.HasPrefix(addrs[1], "127.0.0.1:") {
		t.Fatalf("two listeners on the default address got %v", addrs)
	}
}
