package observability

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/workertest"
)

// The files under test, relative to this package.
var (
	rulesFile     = filepath.Join("..", "..", "deploy", "prometheus", "smsq-alerts.yml")
	rulesTestFile = filepath.Join("..", "..", "deploy", "prometheus", "smsq-alerts_test.yml")
	dashboardFile = filepath.Join("..", "..", "deploy", "grafana", "smsq.json")
)

const installPrometheus = "apt-get install prometheus"

// promtool runs promtool with args and fails the test with its output.
func promtool(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("promtool"); err != nil {
		redistest.SkipMissing(t, "promtool", installPrometheus)
	}
	out, err := exec.Command("promtool", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestAlertRulesPassPromtool(t *testing.T) {
	t.Parallel()
	out := promtool(t, "check", "rules", rulesFile)
	if n := len(alerts(t)); !strings.Contains(out, fmt.Sprintf("SUCCESS: %d rules found", n)) {
		t.Fatalf("promtool check rules found other than the %d alerts:\n%s", n, out)
	}
	// promtool resolves rule_files against the test file's directory.
	out = promtool(t, "test", "rules", rulesTestFile)
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules:\n%s", out)
	}
}

// rule is one alerting rule of the rules file.
type rule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func alerts(t *testing.T) []rule {
	t.Helper()
	var doc struct {
		Groups []struct {
			Rules []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	readYAML(t, rulesFile, &doc)
	var out []rule
	for _, g := range doc.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatalf("%s holds no rules", rulesFile)
	}
	return out
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestEveryAlertIsTestedAndDocumented: every alert has a runbook, a
// severity, a promtool case in which it fires and one in which it must
// not; and the tests name no alert the rules lack.
func TestEveryAlertIsTestedAndDocumented(t *testing.T) {
	t.Parallel()
	var tests struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			Name  string `yaml:"name"`
			Cases []struct {
				Alert string `yaml:"alertname"`
				Exp   []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	readYAML(t, rulesTestFile, &tests)
	if !slices.Equal(tests.RuleFiles, []string{filepath.Base(rulesFile)}) {
		t.Errorf("rule_files %v, want [%s]", tests.RuleFiles, filepath.Base(rulesFile))
	}
	fires, quiet := map[string]int{}, map[string]int{}
	for _, g := range tests.Tests {
		for _, c := range g.Cases {
			if len(c.Exp) > 0 {
				fires[c.Alert]++
			} else {
				quiet[c.Alert]++
			}
		}
	}
	names := map[string]bool{}
	for _, r := range alerts(t) {
		names[r.Alert] = true
		if fires[r.Alert] == 0 || quiet[r.Alert] == 0 {
			t.Errorf("%s: %d cases where it fires and %d where it must not; want at least one of each", r.Alert, fires[r.Alert], quiet[r.Alert])
		}
		switch r.Labels["severity"] {
		case "critical", "warning":
		default:
			t.Errorf("%s: severity %q, want critical or warning", r.Alert, r.Labels["severity"])
		}
		for _, a := range []string{"summary", "description", "runbook"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s: no %s annotation", r.Alert, a)
			}
		}
		if !strings.HasPrefix(strings.TrimSpace(r.Annotations["runbook"]), "1. ") {
			t.Errorf("%s: the runbook should be numbered steps", r.Alert)
		}
	}
	for a := range fires {
		if !names[a] {
			t.Errorf("the tests name %s, which the rules lack", a)
		}
	}
	for a := range quiet {
		if !names[a] {
			t.Errorf("the tests name %s, which the rules lack", a)
		}
	}
}

// dashboard is the part of Grafana's dashboard model the tests read.
type dashboard struct {
	UID    string  `json:"uid"`
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID          int    `json:"id"`
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Datasource  struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

func TestDashboardIsWellFormed(t *testing.T) {
	t.Parallel()
	d := readDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q, title %q: want both", d.UID, d.Title)
	}
	ids := map[int]bool{}
	var queries int
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.X < 0 || p.GridPos.W < 1 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H < 1 {
			t.Errorf("panel %q: gridPos %+v outside Grafana's 24 columns", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Title == "" || p.Description == "" || len(p.Targets) == 0 {
			t.Errorf("panel %d %q: want a title, a description and queries", p.ID, p.Title)
		}
		if p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want the dashboard's Prometheus variable", p.Title, p.Datasource)
		}
		for _, q := range p.Targets {
			queries++
			if strings.TrimSpace(q.Expr) == "" || q.RefID == "" {
				t.Errorf("panel %q: a query without expr or refId", p.Title)
			}
		}
	}
	if queries < 20 {
		t.Errorf("%d queries; is the dashboard still read?", queries)
	}
}

// PromQL tokens that are not metric names.
var (
	promqlStrings  = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	promqlMatchers = regexp.MustCompile(`\{[^{}]*\}`)
	promqlRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promqlGrouping = regexp.MustCompile(`(?i)\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promqlWord     = regexp.MustCompile(`\b[a-zA-Z_:][a-zA-Z0-9_:]*\b(\s*\()?`)
	promqlKeywords = map[string]bool{
		"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true,
		"on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true,
	}
)

// metricNames returns the metric names a PromQL expression reads: every
// identifier outside strings, label matchers, ranges and grouping clauses
// that is neither a function (followed by a parenthesis) nor a keyword.
// Grafana's variables ($job, $__rate_interval) sit inside matchers and
// ranges.
func metricNames(expr string) []string {
	e := promqlStrings.ReplaceAllString(expr, `""`)
	e = promqlMatchers.ReplaceAllString(e, " ")
	e = promqlRanges.ReplaceAllString(e, " ")
	e = promqlGrouping.ReplaceAllString(e, " ")
	var out []string
	for _, m := range promqlWord.FindAllStringSubmatch(e, -1) {
		word := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(m[0]), "("))
		if m[1] != "" || promqlKeywords[strings.ToLower(word)] || strings.HasPrefix(word, "$") {
			continue
		}
		out = append(out, word)
	}
	return out
}

func TestMetricNames(t *testing.T) {
	t.Parallel()
	for expr, want := range map[string]string{
		`sum by (le, class) (rate(smsq_genauth_request_duration_seconds_bucket{job=~"$job",class!="x y"}[$__rate_interval]))`: "smsq_genauth_request_duration_seconds_bucket",
		`sum(up{job="smsq"}) == 0 or absent(up{job="smsq"})`:                                                                  "up up",
		`a / on(instance) group_left(host) b_total > bool 0.5 unless c offset 5m`:                                             "a b_total c",
		`histogram_quantile(0.99, sum without (instance) (rate(x_bucket[5m]))) > 1e3`:                                         "x_bucket",
		`max by (queue) (asynq_queue_latency_seconds{queue!="smsq-webhooks"}) > 300`:                                          "asynq_queue_latency_seconds",
		// A typo is a name like any other: the drift test must see it.
		`sum(rate(smsq_atempts_total[5m]))`:                    "smsq_atempts_total",
		`process_resident_memory_bytes{job=~"$job"} / 1048576`: "process_resident_memory_bytes",
	} {
		if got := strings.Join(metricNames(expr), " "); got != want {
			t.Errorf("metricNames(%q) = %q, want %q", expr, got, want)
		}
	}
}

// queriedMetrics is every metric name the dashboard and the rules read,
// with where each is read.
func queriedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, p := range readDashboard(t).Panels {
		for _, q := range p.Targets {
			for _, n := range metricNames(q.Expr) {
				out[n] = append(out[n], "dashboard panel "+strconv.Quote(p.Title))
			}
		}
	}
	for _, r := range alerts(t) {
		for _, n := range metricNames(r.Expr) {
			out[n] = append(out[n], "alert "+r.Alert)
		}
	}
	return out
}

// apiSecret is the scraped worker's HTTP API key.
const apiSecret = "obs-api-key-0123456789abcdef"

// prometheusMade are series Prometheus itself makes, not the worker.
var prometheusMade = map[string]bool{"up": true, "ALERTS": true}

// startScrapedWorker starts a worker process with its HTTP listener on a
// free port and a webhook endpoint (so that the webhook metrics exist),
// queues one code through it, and returns the listener's address.
func startScrapedWorker(t *testing.T, name string) (*workertest.Process, string) {
	t.Helper()
	rdb := redistest.Start(t)
	fake := genauthtest.NewServer(genauthtest.Options{})
	t.Cleanup(fake.Close)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(hook.Close)
	addr := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	apiAddr := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	env := append(workertest.Env(rdb.URL(), fake, time.Minute),
		"SMSQ_HTTP_ADDR="+addr,
		"SMSQ_WEBHOOK_URL="+hook.URL+"/smsq",
		"SMSQ_WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		"SMSQ_WEBHOOK_ALLOW_PRIVATE=true",
		// The abuse guard and the HTTP API, so that their metrics exist.
		"SMSQ_GUARD_MODE=enforce",
		"SMSQ_API_ADDR="+apiAddr,
		"SMSQ_API_KEYS=ops:"+apiSecret,
	)
	w := workertest.Start(t, name, workertest.Binary(t, false), filepath.Join(t.TempDir(), name+".log"), env)
	t.Cleanup(func() { workertest.Stop(w) })
	w.WaitLog(t, "worker started", 60*time.Second)
	// asynq's queue metrics exist once a queue does; the guard's
	// conversion figures once a channel reports verified codes.
	c := smsq.NewClientFromRedis(rdb.Client())
	ctx := context.Background()
	if err := c.Verified(ctx, "+8613800138000", "CHANNEL_LOGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(ctx, smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "+8613800138000"}); err != nil {
		t.Fatal(err)
	}
	// The API's request and batch-line counters exist once used.
	req, err := http.NewRequest(http.MethodPost, "http://"+apiAddr+"/v1/sms/batch", strings.NewReader(`{"channel":"CHANNEL_REGISTER","phoneNumber":"+8613900139000"}`+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiSecret)
	req.Header.Set("Content-Type", "application/jsonl")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/sms/batch: %s", resp.Status)
	}
	workertest.WaitFor(t, 30*time.Second, func() (bool, string) {
		names, err := scrape(addr)
		if err != nil {
			return false, err.Error()
		}
		return names["asynq_queue_size"], "no asynq_queue_size in /metrics yet"
	})
	return w, addr
}

// scrape returns the names of the samples a worker's /metrics serves.
func scrape(addr string) (map[string]bool, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, " ")
		name, _, _ = strings.Cut(name, "{")
		names[name] = true
	}
	return names, sc.Err()
}

// TestQueriedMetricsExist: every metric the dashboard and the alert rules
// read is one a running worker serves, so that a renamed metric, a typo or
// a panel for a metric not yet built fails here rather than showing "No
// data" at 3 a.m.
func TestQueriedMetricsExist(t *testing.T) {
	_, addr := startScrapedWorker(t, "worker")
	served, err := scrape(addr)
	if err != nil {
		t.Fatal(err)
	}
	queried := queriedMetrics(t)
	if len(queried) < 20 {
		t.Fatalf("only %d metric names found in the dashboard and the rules: %v", len(queried), queried)
	}
	for name, where := range queried {
		if !served[name] && !prometheusMade[name] {
			t.Errorf("%s, read by %s, is not in a worker's /metrics", name, strings.Join(slices.Compact(where), ", "))
		}
	}
	// And the other way round: smsq's own metrics all have a panel.
	for name := range served {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
		if !strings.HasPrefix(name, "smsq_") {
			continue
		}
		found := false
		for q := range queried {
			if strings.HasPrefix(q, base) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s is served but no dashboard panel or alert reads it", name)
		}
	}
}
