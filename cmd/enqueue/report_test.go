package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smsq/smsq/internal/batch"
	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/workertest"
)

// The numbers a report test queues; none may appear in full in anything
// the commands print or write.
var reportPhones = []string{"13700000001", "13700000002", "13700000003", "13700000004", "13700000005", "13700000006", "13700000007", "13700000008"}

// reportCSV has a line of every outcome class. Lines 8 and 9 go to the
// queue slow, which no worker serves until the test starts one: until then
// they stay pending, and line 9's one-second deadline passes.
const reportCSV = `channel,phone,idempotency_key,queue,send_within
CHANNEL_LOGIN,+8613700000001,rep-sent,,
CHANNEL_LOGIN,12345,rep-bad,,
CHANNEL_REGISTER,+8613700000002,rep-sent,,
CHANNEL_LOGIN,+8613700000003,rep-held,,
CHANNEL_RESET_PASSWORD,+8613700000004,,,
CHANNEL_RESET_PASSWORD,137 0000 0004,,,
CHANNEL_REGISTER,+8613700000005,rep-fail,slow,
CHANNEL_REGISTER,+8613700000006,rep-exp,slow,1s
`

func readReport(t *testing.T, text string) []batch.ReportLine {
	t.Helper()
	var out []batch.ReportLine
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		var l batch.ReportLine
		decodeJSON(t, line, &l)
		out = append(out, l)
	}
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func noFullPhones(t *testing.T, what string, texts ...string) {
	t.Helper()
	for _, s := range texts {
		for _, p := range reportPhones {
			if strings.Contains(s, p) || strings.Contains(s, p[:3]+" "+p[3:7]+" "+p[7:]) {
				t.Errorf("%s shows the full number %s: %s", what, p, s)
			}
		}
	}
}

// waitFinal waits until the journal holds a final outcome for each task.
func waitFinal(t *testing.T, hist *history.Store, ids ...string) {
	t.Helper()
	workertest.WaitFor(t, 30*time.Second, func() (bool, string) {
		for _, id := range ids {
			e, ok, err := hist.Task(context.Background(), id)
			if err != nil || !ok || !e.Final {
				return false, fmt.Sprintf("task %s: %+v %v %v", id, e, ok, err)
			}
		}
		return true, ""
	})
}

// A batch with a line of every outcome class, drained by real worker
// processes: the report gives each line's outcome in input order; lines
// whose tasks no worker has run yet are reported pending when the wait
// ends, and a rerun over that report completes them and keeps the final
// lines as they were.
func TestReportEveryOutcome(t *testing.T) {
	srv := redistest.Start(t)
	url := srv.URL()
	hist, err := history.New(history.Config{Client: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	fake := genauthtest.NewServer(genauthtest.Options{})
	t.Cleanup(fake.Close)
	g := workertest.NewGroup(t, workertest.Binary(t, false))
	t.Cleanup(func() {
		g.Stop()
		if t.Failed() {
			g.DumpLogs(t, 20000)
		}
	})
	env := workertest.Env(url, fake, time.Minute)
	g.Start(t, env)

	// A code already sent to line 5's phone: its window holds it.
	if r := runCmd(t, url, "", "--channel", "CHANNEL_LOGIN", "--phone", "+8613700000003", "--idempotency-key", "rep-pre"); r.code != 0 {
		t.Fatalf("enqueue: exit %d: %v", r.code, r.err)
	}
	waitFinal(t, hist, "rep-pre")

	dir := t.TempDir()
	in := writeFile(t, "codes.csv", reportCSV)
	results := filepath.Join(dir, "results.jsonl")
	r := runCmd(t, url, "", "batch", "--allow-unserved-queue", "--out", results, in)
	if r.code != 1 || !strings.Contains(errText(r.err), "1 invalid") {
		t.Fatalf("batch: exit %d: %v\n%s", r.code, r.err, r.stderr)
	}
	var res []batch.Result
	for _, line := range strings.Split(strings.TrimSpace(readFile(t, results)), "\n") {
		var l batch.Result
		decodeJSON(t, line, &l)
		res = append(res, l)
	}
	if len(res) != 8 {
		t.Fatalf("%d result lines, want 8", len(res))
	}
	pairA, pairB := res[4].TaskID, res[5].TaskID
	waitFinal(t, hist, "rep-sent", "rep-held", pairA, pairB)

	// The slow queue has no worker: the report ends at the wait timeout
	// with lines 8 and 9 pending.
	report := filepath.Join(dir, "report.jsonl")
	r = runCmd(t, url, "", "report", "--wait", "--wait-timeout", "1s", "--out", report, results)
	if r.code != exitPending {
		t.Fatalf("report: exit %d, want %d: %v\n%s", r.code, exitPending, r.err, r.stderr)
	}
	first := readFile(t, report)
	lines := readReport(t, first)
	checkFast := func(lines []batch.ReportLine) {
		t.Helper()
		want := []struct {
			line    int
			outcome string
			taskID  string
		}{{2, "sent", "rep-sent"}, {3, "invalid", ""}, {4, "duplicate", "rep-sent"}, {5, "deduplicated", "rep-held"}}
		for i, w := range want {
			l := lines[i]
			if l.Line != w.line || l.Outcome != w.outcome || l.TaskID != w.taskID {
				t.Errorf("report line %d: %+v, want %s of task %q", w.line, l, w.outcome, w.taskID)
			}
		}
		if l := lines[0]; l.StatusCode != 200 || l.RequestID == "" || l.Attempts != 1 || l.FinishedAt.IsZero() {
			t.Errorf("sent line: %+v, want statusCode 200, a requestId, 1 attempt and a finish time", l)
		}
		if l := lines[1]; l.Stage != batch.StageEnqueue || !strings.Contains(l.Reason, "phoneNumber") {
			t.Errorf("invalid line: %+v, want refused at enqueue naming phoneNumber", l)
		}
		if l := lines[2]; l.KeyOutcome != "sent" || l.Stage != batch.StageEnqueue {
			t.Errorf("duplicate line: %+v, want keyOutcome sent", l)
		}
		// The pair without keys: one sent, the other deduplicated.
		a, b := lines[4], lines[5]
		if a.Outcome == "deduplicated" {
			a, b = b, a
		}
		if a.Outcome != "sent" || b.Outcome != "deduplicated" || a.TaskID == "" || b.TaskID == "" {
			t.Errorf("lines 6 and 7, one phone and channel: %+v and %+v, want one sent and one deduplicated", lines[4], lines[5])
		}
	}
	if len(lines) != 8 {
		t.Fatalf("report has %d lines, want 8:\n%s", len(lines), first)
	}
	checkFast(lines)
	for _, l := range lines[6:] {
		if l.Outcome != "pending" || l.Queue != "slow" || !l.FinishedAt.IsZero() {
			t.Errorf("line %d: %+v, want pending in slow", l.Line, l)
		}
	}
	if !strings.Contains(r.stderr, "8 lines: sent 2, deduplicated 2, duplicate 1, invalid 1, pending 2") {
		t.Errorf("summary: %s", r.stderr)
	}
	noFullPhones(t, "the first report", first, r.stderr)

	// GenAuth refuses for good from now on; a worker serves slow.
	fake.Inject(genauthtest.Fault{Kind: genauthtest.FaultBodyStatus, StatusCode: 400, APICode: 12004, Count: -1})
	g.Start(t, append(env, "SMSQ_QUEUES=slow=1"))

	// Rerun over the report itself, written in place.
	r = runCmd(t, url, "", "report", "--wait", "--wait-timeout", "25s", "--out", report, report)
	if r.code != exitNotDelivered {
		t.Fatalf("rerun: exit %d, want %d: %v\n%s", r.code, exitNotDelivered, r.err, r.stderr)
	}
	second := readFile(t, report)
	lines = readReport(t, second)
	if len(lines) != 8 {
		t.Fatalf("rerun has %d lines, want 8:\n%s", len(lines), second)
	}
	checkFast(lines)
	if a, b := strings.Split(first, "\n")[:6], strings.Split(second, "\n")[:6]; strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Errorf("final lines changed on the rerun:\n%s\nthen\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
	if l := lines[6]; l.Outcome != "failed" || l.StatusCode != 400 || l.APICode != 12004 || l.RequestID == "" || l.Reason == "" {
		t.Errorf("line 8: %+v, want failed with statusCode 400, apiCode 12004, a requestId and a reason", l)
	}
	if l := lines[7]; l.Outcome != "expired" || !strings.Contains(l.Reason, "deadline") {
		t.Errorf("line 9: %+v, want expired by its deadline", l)
	}
	if !strings.Contains(r.stderr, "8 lines: sent 2, deduplicated 2, duplicate 1, expired 1, failed 1, invalid 1, pending 0") {
		t.Errorf("summary: %s", r.stderr)
	}

	// Over the result file, without waiting: the same report.
	again := runCmd(t, url, "", "report", results)
	if again.code != exitNotDelivered || again.stdout != second {
		t.Errorf("report over the results: exit %d\n%s\nwant the rerun's\n%s", again.code, again.stdout, second)
	}
	noFullPhones(t, "the reports", second, r.stderr, again.stdout, again.stderr)
	if left, _ := filepath.Glob(filepath.Join(dir, ".*tmp")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// enqueue batch --wait: queue, wait, report on standard output.
	fake.ClearFaults()
	in = writeFile(t, "more.csv", `channel,phone,idempotency_key
CHANNEL_LOGIN,+8613700000007,rep-w1
CHANNEL_LOGIN,+8613700000008,rep-w2
CHANNEL_REGISTER,+8613700000001,rep-sent
`)
	r = runCmd(t, url, "", "batch", "--wait", "--wait-timeout", "25s", in)
	if r.code != 0 {
		t.Fatalf("batch --wait: exit %d: %v\n%s", r.code, r.err, r.stderr)
	}
	lines = readReport(t, r.stdout)
	if len(lines) != 3 || lines[0].Outcome != "sent" || lines[1].Outcome != "sent" || lines[2].Outcome != "duplicate" || lines[2].KeyOutcome != "sent" {
		t.Errorf("batch --wait report:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "enqueued 2, duplicate 1") || !strings.Contains(r.stderr, "3 lines: sent 2, duplicate 1") {
		t.Errorf("batch --wait summaries: %s", r.stderr)
	}
	noFullPhones(t, "batch --wait", r.stdout, r.stderr)
}

// What a careless caller gives enqueue report: bad flags and input are
// status 2, an unreachable Redis 1; an interrupted report leaves the
// earlier one whole.
func TestReportUsage(t *testing.T) {
	srv := redistest.Start(t)
	results := writeFile(t, "results.jsonl", `{"line":2,"status":"enqueued","taskId":"gone-1","queue":"default"}
{"line":3,"status":"invalid","reason":"channel: unknown"}
`)
	for _, tt := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"the CSV instead of the results", []string{"report", writeFile(t, "in.csv", "channel,phone\nCHANNEL_LOGIN,+8613700000001\n")}, exitUsage, "line 1 of the input: not a batch result or report line"},
		{"two files", []string{"report", results, results}, exitUsage, "unexpected argument"},
		{"window 0", []string{"report", "--window", "0", results}, exitUsage, "--window"},
		{"wait-timeout 0", []string{"report", "--wait", "--wait-timeout", "0s", results}, exitUsage, "--wait-timeout"},
		{"no such file", []string{"report", filepath.Join(t.TempDir(), "nope.jsonl")}, exitUsage, "no such file"},
		{"batch --wait --dry-run", []string{"batch", "--wait", "--dry-run", results}, exitUsage, "dry run"},
		{"batch --report without --wait", []string{"batch", "--report", "r.jsonl", results}, exitUsage, "only with --wait"},
		{"task gone, invalid line", []string{"report", results}, exitNotDelivered, "2 lines"},
		{"task gone, invalid allowed", []string{"report", "--allow-invalid", results}, exitNotDelivered, "1 lines"},
	} {
		r := runCmd(t, srv.URL(), "", tt.args...)
		if r.code != tt.code || !strings.Contains(errText(r.err), tt.msg) {
			t.Errorf("%s: exit %d, error %v; want %d with %q", tt.name, r.code, r.err, tt.code, tt.msg)
		}
	}

	// Redis down: status 1, and the earlier report stays as it was.
	out := writeFile(t, "report.jsonl", "earlier\n")
	r := runCmd(t, closedURL(t), "", "report", "--timeout", "1s", "--out", out, results)
	if r.code != exitFailure || !strings.Contains(errText(r.err), "cannot reach Redis") || readFile(t, out) != "earlier\n" {
		t.Errorf("Redis down: exit %d, error %v, report now %q", r.code, r.err, readFile(t, out))
	}
}

func TestReportLineJSONFields(t *testing.T) {
	// The README documents these names; a rename breaks readers.
	b, err := json.Marshal(batch.ReportLine{Line: 1, Outcome: "x", Stage: "s", TaskID: "t", Queue: "q", Reason: "r", StatusCode: 1,
		APICode: 2, RequestID: "i", Attempts: 3, FinishedAt: time.Unix(0, 0).UTC(), Last: "l", KeyOutcome: "k"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"line":1,"outcome":"x","stage":"s","taskId":"t","queue":"q","reason":"r","statusCode":1,"apiCode":2,"requestId":"i","attempts":3,"finishedAt":"1970-01-01T00:00:00Z","last":"l","keyOutcome":"k"}`
	if string(b) != want {
		t.Errorf("report line JSON\n%s\nwant\n%s", b, want)
	}
}
