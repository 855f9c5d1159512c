package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/redistest"
)

// result is one run of the command.
type result struct {
	stdout, stderr string
	err            error
	code           int
}

// runCmd runs the command with REDIS_URL set to url.
func runCmd(t *testing.T, url, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	getenv := func(k string) string {
		if k == "REDIS_URL" {
			return url
		}
		return ""
	}
	err := run(ctx, args, getenv, strings.NewReader(stdin), &out, &errOut)
	return result{stdout: out.String(), stderr: errOut.String(), err: err, code: exitCode(err, io.Discard)}
}

// closedURL is a Redis URL where nothing listens.
func closedURL(t *testing.T) string {
	return "redis://127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)) + "/0"
}

// queued returns how many tasks Redis holds in the default queues.
func queued(t *testing.T, srv *redistest.Server) int {
	t.Helper()
	ins := asynq.NewInspectorFromRedisClient(srv.Client())
	queues, err := ins.Queues()
	if err != nil {
		t.Fatalf("Queues: %v", err)
	}
	n := 0
	for _, q := range queues {
		info, err := ins.GetQueueInfo(q)
		if err != nil {
			t.Fatalf("GetQueueInfo(%s): %v", q, err)
		}
		n += info.Size
	}
	return n
}

func TestSingle(t *testing.T) {
	srv := redistest.Start(t)
	r := runCmd(t, srv.URL(), "", "--channel", "CHANNEL_LOGIN", "--phone", "+8613800138000", "--defer")
	if r.code != 0 {
		t.Fatalf("exit %d: %v\n%s", r.code, r.err, r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	info, err := asynq.NewInspectorFromRedisClient(srv.Client()).GetTaskInfo("critical", id)
	if err != nil {
		t.Fatalf("printed task ID %q is not queued: %v", id, err)
	}
	if !strings.Contains(string(info.Payload), `"onHeld":"defer"`) {
		t.Fatalf("payload %s: want onHeld defer from the bare --defer flag", info.Payload)
	}
	if strings.Contains(r.stderr, "13800138000") {
		t.Fatalf("stderr shows the full number: %s", r.stderr)
	}

	// The other options reach the task: queue, key, delay.
	r = runCmd(t, srv.URL(), "", "--channel", "CHANNEL_REGISTER", "--phone", "+8613800138001",
		"--queue", "low", "--idempotency-key", "single-k1", "--delay", "1m", "--send-within", "2m")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "single-k1" {
		t.Fatalf("exit %d, stdout %q: %v", r.code, r.stdout, r.err)
	}
	info, err = asynq.NewInspectorFromRedisClient(srv.Client()).GetTaskInfo("low", "single-k1")
	if err != nil {
		t.Fatalf("task single-k1 not in queue low: %v", err)
	}
	if info.State != asynq.TaskStateScheduled || time.Until(info.NextProcessAt) < 50*time.Second {
		t.Fatalf("task %s due %s: want scheduled about a minute ahead", info.State, info.NextProcessAt)
	}
}

func TestSingleInvalidEnqueuesNothing(t *testing.T) {
	srv := redistest.Start(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--channel", "CHANNEL_LOGIN", "--phone", "12345"}, "phoneNumber"},
		{[]string{"--channel", "CHANNEL_NOPE", "--phone", "+8613800138000"}, "channel"},
		{[]string{"--channel", "CHANNEL_LOGIN", "--phone", "+8613800138000", "--client-ip", "fe80::1%1.2.3.4, 6.6.6.6"}, "clientIp"},
		{[]string{"--channel", "CHANNEL_LOGIN", "--phone", "+8613800138000", "--client-ip", "fe80::1%\r\nX-Evil: 1"}, "clientIp"},
		{[]string{"--phone", "+8613800138000"}, "--channel and --phone are required"},
		{[]string{"--channel", "CHANNEL_LOGIN", "--phone", "+8613800138000", "extra"}, `unexpected argument "extra"`},
		{[]string{"--channel", "CHANNEL_LOGIN", "--phone", "+8613800138000", "--timeout", "0s"}, "--timeout 0s: must be positive"},
		{[]string{"--channel", "CHANNEL_LOGIN", "--phone", "+8613800138000", "--idempotency-key", "login_13800138008_1"}, "idempotencyKey: the key holds a phone number"},
		{[]string{"--channel", "CHANNEL_LOGIN", "--phone", "+8613800138000", "--queue", "13800138040"}, "queue: the name holds a phone number"},
	}
	for _, tt := range tests {
		r := runCmd(t, srv.URL(), "", tt.args...)
		if r.code != 2 || !strings.Contains(errText(r.err), tt.want) {
			t.Fatalf("%v: exit %d, error %v; want 2 and an error naming %q", tt.args, r.code, r.err, tt.want)
		}
	}
	if n := queued(t, srv); n != 0 {
		t.Fatalf("%d tasks queued, want none", n)
	}
}

func TestSingleRedisDown(t *testing.T) {
	t.Parallel()
	start := time.Now()
	r := runCmd(t, closedURL(t), "", "--channel", "CHANNEL_LOGIN", "--phone", "+8613800138000", "--timeout", "2s")
	if r.code != 1 || !strings.Contains(errText(r.err), "cannot reach Redis at redis://127.0.0.1:") || !strings.Contains(errText(r.err), "REDIS_URL") {
		t.Fatalf("exit %d, error %v; want 1 and a message naming the Redis and REDIS_URL", r.code, r.err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %s to give up", d)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// writeFile writes a test input file and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const batchCSV = `channel,phone,country_code,idempotency_key,queue,send_within
CHANNEL_LOGIN,+8613800138000,,batch-1,,
CHANNEL_LOGIN,12345,,batch-2,,
CHANNEL_REGISTER,138 0013 8001,+86,batch-3,low,2m
CHANNEL_LOGIN,+8613800138002,,batch-4,,-1m
CHANNEL_RESET_PASSWORD,(415) 555-2671,+1,batch-5,,
`

func TestBatchAgainstRedis(t *testing.T) {
	srv := redistest.Start(t)
	in := writeFile(t, "codes.csv", batchCSV)
	want := func(status string) string {
		return `{"line":2,"status":"` + status + `","taskId":"batch-1","queue":"critical"}
{"line":3,"status":"invalid","reason":"phoneNumber: invalid phone number: \"***45\" is not a valid number for country code +86"}
{"line":4,"status":"` + status + `","taskId":"batch-3","queue":"low"}
{"line":5,"status":"invalid","reason":"delay and send-within must not be negative"}
{"line":6,"status":"` + status + `","taskId":"batch-5","queue":"default"}
`
	}
	r := runCmd(t, srv.URL(), "", "batch", in)
	if r.code != 1 || !strings.Contains(errText(r.err), "2 invalid lines") {
		t.Fatalf("exit %d, error %v; want 1 for 2 invalid lines", r.code, r.err)
	}
	if r.stdout != want("enqueued") {
		t.Fatalf("results:\n%s\nwant:\n%s", r.stdout, want("enqueued"))
	}
	if !strings.Contains(r.stderr, "enqueued 3, duplicate 0, invalid 2, error 0, in ") {
		t.Fatalf("summary: %s", r.stderr)
	}
	if n := queued(t, srv); n != 3 {
		t.Fatalf("%d tasks queued, want 3", n)
	}

	// Re-running the file queues nothing twice; duplicates are no failure.
	r = runCmd(t, srv.URL(), "", "batch", "--allow-invalid", in)
	if r.code != 0 {
		t.Fatalf("re-run: exit %d, error %v; want 0 with --allow-invalid", r.code, r.err)
	}
	if r.stdout != want("duplicate") {
		t.Fatalf("re-run results:\n%s\nwant:\n%s", r.stdout, want("duplicate"))
	}
	if n := queued(t, srv); n != 3 {
		t.Fatalf("%d tasks queued after the re-run, want still 3", n)
	}
	for _, s := range []string{r.stdout, r.stderr} {
		if strings.Contains(s, "13800138001") || strings.Contains(s, "5552671") {
			t.Fatalf("output shows a full number: %s", s)
		}
	}
}

// A key names one task across every queue, in a batch (a key repeated
// with another channel or queue column) and between the one-code form and
// a batch.
func TestKeyReusedAcrossQueues(t *testing.T) {
	srv := redistest.Start(t)
	in := writeFile(t, "reused.csv", `idempotency_key,channel,phone,queue
reuse-1,CHANNEL_LOGIN,13700000001,
reuse-1,CHANNEL_REGISTER,13700000002,
reuse-1,CHANNEL_LOGIN,13700000003,low
reuse-2,CHANNEL_REGISTER,13700000004,
`)
	r := runCmd(t, srv.URL(), "", "batch", in)
	if r.code != 0 {
		t.Fatalf("exit %d: %v", r.code, r.err)
	}
	var results []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var m map[string]any
		decodeJSON(t, line, &m)
		results = append(results, m)
	}
	status := map[string]int{}
	for _, m := range results[:3] {
		status[m["status"].(string)]++
	}
	if status["enqueued"] != 1 || status["duplicate"] != 2 || results[3]["status"] != "enqueued" {
		t.Fatalf("results %v: want reuse-1 enqueued once and refused twice, reuse-2 enqueued", results)
	}
	if n := queued(t, srv); n != 2 {
		t.Fatalf("%d tasks queued, want 2", n)
	}
	r = runCmd(t, srv.URL(), "", "--channel", "CHANNEL_RESET_PASSWORD", "--phone", "13700000005", "--queue", "low", "--idempotency-key", "reuse-2")
	if r.code != 3 || !errors.Is(r.err, smsq.ErrDuplicate) {
		t.Fatalf("one-code form with a batch's key: exit %d, %v; want 3, duplicate", r.code, r.err)
	}
	if n := queued(t, srv); n != 2 {
		t.Fatalf("%d tasks queued, want still 2", n)
	}
}

func TestBatchStdinJSONL(t *testing.T) {
	t.Parallel()
	in := `{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000","idempotencyKey":"j1"}
{"channel":"CHANNEL_LOGIN","phone_number":"13800138000","colour":"red"}

{"channel":"CHANNEL_BIND_PHONE","phoneNumber":"+8613800138009","sendWithin":"90s","delay":"10s","onHeld":"defer"}
`
	// A dry run never connects: the closed port would fail it.
	r := runCmd(t, closedURL(t), in, "batch", "--dry-run", "-")
	if r.code != 1 {
		t.Fatalf("exit %d, error %v; want 1 for the invalid line", r.code, r.err)
	}
	want := `{"line":1,"status":"valid","taskId":"j1","queue":"critical"}
{"line":2,"status":"invalid","reason":"unknown key \"colour\""}
{"line":4,"status":"valid","queue":"default"}
`
	if r.stdout != want {
		t.Fatalf("results:\n%s\nwant:\n%s", r.stdout, want)
	}
	if !strings.Contains(r.stderr, "valid 2, invalid 1, error 0") {
		t.Fatalf("summary: %s", r.stderr)
	}
}

func TestBatchOutFileAndExitZero(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "results.jsonl")
	in := writeFile(t, "codes.txt", "channel,phone\nCHANNEL_LOGIN,+8613800138000\n")
	r := runCmd(t, closedURL(t), "", "batch", "--dry-run", "--out", out, in)
	if r.code != 0 || r.stdout != "" {
		t.Fatalf("exit %d, error %v, stdout %q; want 0 and nothing on stdout", r.code, r.err, r.stdout)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"line":2,"status":"valid","queue":"critical"}`+"\n" {
		t.Fatalf("--out file holds %q", b)
	}
}

func TestBatchBadInput(t *testing.T) {
	t.Parallel()
	url := closedURL(t) // exit 2, not a Redis error: input is checked first
	tests := []struct {
		name  string
		args  []string
		stdin string
		want  string
	}{
		{"unknown column", []string{"batch", writeFile(t, "a.csv", "channel,phone,colour\n")}, "", `unknown column "colour"`},
		{"missing column", []string{"batch", "-"}, "phone\n+8613800138000\n", "missing column channel"},
		{"empty file", []string{"batch", writeFile(t, "b.csv", "")}, "", "input is empty"},
		{"empty stdin", []string{"batch"}, " \n", "input is empty"},
		{"empty jsonl", []string{"batch", "--format", "jsonl"}, "\n\n", "input is empty"},
		{"no such file", []string{"batch", filepath.Join(t.TempDir(), "none.csv")}, "", "no such file"},
		{"bad format", []string{"batch", "--format", "xml", "-"}, "", "--format"},
		{"two files", []string{"batch", "a.csv", "b.csv"}, "", `unexpected argument "b.csv"`},
		{"bad concurrency", []string{"batch", "--concurrency", "0", "-"}, "", "--concurrency 0"},
		{"huge concurrency", []string{"batch", "--concurrency", "100000000000", "--dry-run", "-"}, "", "--concurrency 100000000000"},
		{"bad max errors", []string{"batch", "--max-errors", "-7", "-"}, "", "--max-errors -7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCmd(t, url, tt.stdin, tt.args...)
			if r.code != 2 || !strings.Contains(errText(r.err), tt.want) {
				t.Fatalf("exit %d, error %v; want 2 and an error containing %q", r.code, r.err, tt.want)
			}
		})
	}
}

func TestBatchRedisDown(t *testing.T) {
	t.Parallel()
	r := runCmd(t, closedURL(t), "channel,phone\nCHANNEL_LOGIN,+8613800138000\n", "batch", "--timeout", "2s")
	if r.code != 1 || !strings.Contains(errText(r.err), "cannot reach Redis") || r.stdout != "" {
		t.Fatalf("exit %d, error %v, stdout %q; want 1, a clear message and no results", r.code, r.err, r.stdout)
	}
}

// TestBatchOutIsKept: --out naming the input is refused before anything is
// written, and a run that cannot reach Redis leaves an earlier results file
// as it was.
func TestBatchOutIsKept(t *testing.T) {
	t.Parallel()
	const input = "channel,phone\nCHANNEL_LOGIN,+8613800138000\n"
	in := writeFile(t, "codes.csv", input)
	r := runCmd(t, closedURL(t), "", "batch", "--dry-run", "--out", in, in)
	if r.code != 2 || !strings.Contains(errText(r.err), "is the input file") {
		t.Fatalf("--out = input: exit %d, error %v; want 2 naming the clash", r.code, r.err)
	}
	if b, _ := os.ReadFile(in); string(b) != input {
		t.Fatalf("input file now holds %q", b)
	}

	out := writeFile(t, "results.jsonl", "earlier results\n")
	r = runCmd(t, closedURL(t), "", "batch", "--timeout", "1s", "--out", out, in)
	if r.code != 1 || !strings.Contains(errText(r.err), "cannot reach Redis") {
		t.Fatalf("Redis down: exit %d, error %v; want 1", r.code, r.err)
	}
	if b, _ := os.ReadFile(out); string(b) != "earlier results\n" {
		t.Fatalf("results file after a failed run holds %q, want it untouched", b)
	}
}

// TestBatchHeaderOnly: a CSV with a header and no rows is not an error.
func TestBatchHeaderOnly(t *testing.T) {
	t.Parallel()
	r := runCmd(t, closedURL(t), "channel,phone\n", "batch", "--dry-run")
	if r.code != 0 || r.stdout != "" {
		t.Fatalf("exit %d, error %v, stdout %q; want 0 and no results", r.code, r.err, r.stdout)
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-h"}, {"batch", "-h"}, {"why", "-h"}} {
		r := runCmd(t, "", "", args...)
		if r.code != 0 || !strings.Contains(r.stderr, "usage:") {
			t.Fatalf("%v: exit %d, stderr %q; want 0 and usage", args, r.code, r.stderr)
		}
	}
}

// decodeJSON parses out into v or fails.
func decodeJSON(t *testing.T, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
}
