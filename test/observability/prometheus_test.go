package observability

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/workertest"
)

// forClause is a rule's "for:" line.
var forClause = regexp.MustCompile(`(?m)^(\s+for:\s*)\S+\s*$`)

// startPrometheus runs the prometheus binary scraping target as job smsq
// every second, with the alert rules evaluated every second and their
// "for:" durations cut to 2 s (promtool's tests hold the real ones), and
// returns its base URL.
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		redistest.SkipMissing(t, "prometheus", installPrometheus)
	}
	dir := t.TempDir()
	rules, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	fast := forClause.ReplaceAll(rules, []byte("${1}2s"))
	if n := len(forClause.FindAll(rules, -1)); n != len(alerts(t)) {
		t.Fatalf("found %d for: clauses for %d alerts", n, len(alerts(t)))
	}
	rulesPath := filepath.Join(dir, "smsq-alerts.yml")
	if err := os.WriteFile(rulesPath, fast, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
rule_files:
  - %s
scrape_configs:
  - job_name: smsq
    static_configs:
      - targets: ["%s"]
`, rulesPath, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			data, _ := os.ReadFile(logf.Name())
			t.Logf("--- prometheus log ---\n%s", data)
		}
	})
	base := "http://" + addr
	workertest.WaitFor(t, 30*time.Second, func() (bool, string) {
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, "prometheus /-/ready: " + resp.Status
	})
	return base
}

// query runs an instant query and returns each sample's value by its
// instance label.
func query(t *testing.T, base, q string) map[string]string {
	t.Helper()
	var out struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	getJSON(t, base+"/api/v1/query?query="+url.QueryEscape(q), &out)
	vals := map[string]string{}
	for _, r := range out.Data.Result {
		vals[r.Metric["instance"]] = fmt.Sprint(r.Value[1])
	}
	return vals
}

// firing returns the alerts Prometheus holds, "name state" each.
func firing(t *testing.T, base string) []string {
	t.Helper()
	var out struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	getJSON(t, base+"/api/v1/alerts", &out)
	var got []string
	for _, a := range out.Data.Alerts {
		got = append(got, a.Labels["alertname"]+" "+a.State)
	}
	return got
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

// TestLivenessAlertFiresOnRealPrometheus: a real Prometheus scrapes a real
// worker with the shipped rules loaded; while the worker runs no smsq alert
// fires, and once it stops SmsqNoLiveWorker does.
func TestLivenessAlertFiresOnRealPrometheus(t *testing.T) {
	w, addr := startScrapedWorker(t, "worker")
	base := startPrometheus(t, addr)
	defer func() {
		if t.Failed() {
			workertest.DumpLogs(t, 3000, w)
		}
	}()

	workertest.WaitFor(t, 60*time.Second, func() (bool, string) {
		up, ready := query(t, base, `up{job="smsq"}`), query(t, base, `smsq_ready{job="smsq"}`)
		return up[addr] == "1" && ready[addr] == "1", fmt.Sprintf("up %v, smsq_ready %v", up, ready)
	})
	// Several evaluations with a live, ready worker: nothing fires (each
	// rule's for: is 2 s here).
	time.Sleep(4 * time.Second)
	for _, a := range firing(t, base) {
		if strings.HasPrefix(a, "Smsq") {
			t.Fatalf("alert %s while the worker is up and idle", a)
		}
	}

	w.Term(t, 30*time.Second)
	workertest.WaitFor(t, 60*time.Second, func() (bool, string) {
		got := firing(t, base)
		for _, a := range got {
			if a == "SmsqNoLiveWorker firing" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("alerts %v, up %v", got, query(t, base, `up{job="smsq"}`))
	})
}
