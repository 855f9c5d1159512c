package batch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smsq/smsq/internal/tasks"
)

// fakeLookup answers from a table of states per task ID: each lookup of an
// ID takes the next state of its list, the last one repeating. IDs not in
// the table are not found.
type fakeLookup struct {
	mu     sync.Mutex
	states map[string][]TaskState
	calls  int            // Lookup calls
	looked map[string]int // lookups per ID
	refs   int            // most refs in one call
	fail   int            // the next fail calls fail
}

func newFakeLookup(states map[string][]TaskState) *fakeLookup {
	return &fakeLookup{states: states, looked: map[string]int{}}
}

func (f *fakeLookup) Lookup(_ context.Context, refs []TaskRef, out []TaskState) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.refs = max(f.refs, len(refs))
	if f.fail > 0 {
		f.fail--
		return errors.New("connection refused")
	}
	for i, r := range refs {
		list := f.states[r.ID]
		n := f.looked[r.ID]
		f.looked[r.ID]++
		if len(list) == 0 {
			out[i] = TaskState{}
			continue
		}
		out[i] = list[min(n, len(list)-1)]
	}
	return nil
}

// fakeClock is a clock whose Sleep advances it.
type fakeClock struct {
	now    time.Time
	slept  []time.Duration
	wakeUp func() // called after each sleep
}

func (c *fakeClock) Now() time.Time { return c.now }
func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.slept = append(c.slept, d)
	c.now = c.now.Add(d)
	if c.wakeUp != nil {
		c.wakeUp()
	}
	return nil
}

func reportLines(t *testing.T, in string, cfg ReportConfig) ([]ReportLine, string, ReportSummary, error) {
	t.Helper()
	var out []ReportLine
	var buf bytes.Buffer
	cfg.Output = func(l ReportLine) error {
		out = append(out, l)
		b, err := json.Marshal(l)
		buf.Write(append(b, '\n'))
		return err
	}
	sum, err := Report(context.Background(), NewResultsReader(strings.NewReader(in)), cfg)
	return out, buf.String(), sum, err
}

var finishedAt = time.Date(2026, 11, 25, 20, 25, 42, 0, time.UTC)

func sent(reqID string) TaskState {
	return TaskState{Found: true, Final: true, Outcome: tasks.OutcomeSent, StatusCode: 200, RequestID: reqID, Attempts: 1, FinishedAt: finishedAt}
}

func pendingState(last string) TaskState {
	return TaskState{Found: true, Outcome: last, Reason: "genauth: HTTP 503", Attempts: 1, FinishedAt: finishedAt}
}

const everyStatus = `{"line":2,"status":"enqueued","taskId":"t-sent","queue":"critical"}
{"line":3,"status":"invalid","reason":"phoneNumber: invalid phone number: \"13800138000x\" is not a valid number"}
{"line":4,"status":"duplicate","taskId":"t-sent","queue":"critical"}
{"line":5,"status":"enqueued","taskId":"t-dedup","queue":"critical"}
{"line":7,"status":"enqueued","taskId":"t-expired","queue":"low"}

{"line":8,"status":"enqueued","taskId":"t-failed","queue":"default"}
{"line":9,"status":"enqueued","taskId":"t-gone","queue":"default"}
{"line":10,"status":"error","reason":"smsq: enqueue: dial tcp: connection refused"}
{"line":11,"status":"valid","taskId":"k11","queue":"low"}
{"line":12,"status":"enqueued","taskId":"t-pending","queue":"low"}
{"line":13,"status":"enqueued","taskId":"t-invalid","queue":"low"}
{"line":14,"status":"enqueued","taskId":"t-blocked","queue":"low"}
{"line":15,"status":"duplicate","taskId":"t-pending","queue":"low"}
`

var everyState = map[string][]TaskState{
	"t-sent": {sent("req-1")},
	"t-dedup": {{Found: true, Final: true, Outcome: tasks.OutcomeDeduplicated,
		Reason: "a code sent to +8613800138000 on this channel inside the window is still valid", Attempts: 1, FinishedAt: finishedAt}},
	"t-expired": {{Found: true, Final: true, Outcome: tasks.OutcomeExpired, Reason: "send-by deadline passed before the SMS could be sent", Attempts: 1, FinishedAt: finishedAt}},
	"t-failed": {{Found: true, Final: true, Outcome: tasks.OutcomeFailed, Reason: "genauth: statusCode 400", StatusCode: 400, APICode: 12004,
		RequestID: "req-2", Attempts: 1, FinishedAt: finishedAt}},
	"t-pending": {pendingState(tasks.OutcomeRetrying)},
	"t-invalid": {{Found: true, Final: true, Outcome: tasks.OutcomeInvalid, Reason: "task type x", Attempts: 1, FinishedAt: finishedAt}},
	"t-blocked": {{Found: true, Final: true, Outcome: "blocked", Reason: "abuse rule", Attempts: 1, FinishedAt: finishedAt}},
}

func TestReportEveryOutcomeInInputOrder(t *testing.T) {
	for _, window := range []int{1, 3, 1000} {
		lk := newFakeLookup(everyState)
		out, text, sum, err := reportLines(t, everyStatus, ReportConfig{Lookup: lk, Window: window})
		if err != nil {
			t.Fatalf("window %d: %v", window, err)
		}
		want := `{"line":2,"outcome":"sent","taskId":"t-sent","queue":"critical","statusCode":200,"requestId":"req-1","attempts":1,"finishedAt":"2026-11-25T20:25:42Z"}
{"line":3,"outcome":"invalid","stage":"enqueue","reason":"phoneNumber: invalid phone number: \"138****8000x\" is not a valid number"}
{"line":4,"outcome":"duplicate","stage":"enqueue","taskId":"t-sent","queue":"critical","reason":"the idempotency key already named a task: nothing was queued for this line","keyOutcome":"sent"}
{"line":5,"outcome":"deduplicated","taskId":"t-dedup","queue":"critical","reason":"a code sent to +861******8000 on this channel inside the window is still valid","attempts":1,"finishedAt":"2026-11-25T20:25:42Z"}
{"line":7,"outcome":"expired","taskId":"t-expired","queue":"low","reason":"send-by deadline passed before the SMS could be sent","attempts":1,"finishedAt":"2026-11-25T20:25:42Z"}
{"line":8,"outcome":"failed","taskId":"t-failed","queue":"default","reason":"genauth: statusCode 400","statusCode":400,"apiCode":12004,"requestId":"req-2","attempts":1,"finishedAt":"2026-11-25T20:25:42Z"}
{"line":9,"outcome":"missing","taskId":"t-gone","queue":"default","reason":"Redis holds no record of the task: its records expired after the retention, or it was queued into another Redis"}
{"line":10,"outcome":"not-queued","stage":"enqueue","reason":"enqueue failed: smsq: enqueue: dial tcp: connection refused"}
{"line":11,"outcome":"not-queued","stage":"enqueue","taskId":"k11","queue":"low","reason":"dry run: nothing was queued"}
{"line":12,"outcome":"pending","taskId":"t-pending","queue":"low","reason":"genauth: HTTP 503","attempts":1,"last":"retrying"}
{"line":13,"outcome":"invalid","taskId":"t-invalid","queue":"low","reason":"task type x","attempts":1,"finishedAt":"2026-11-25T20:25:42Z"}
{"line":14,"outcome":"blocked","taskId":"t-blocked","queue":"low","reason":"abuse rule","attempts":1,"finishedAt":"2026-11-25T20:25:42Z"}
{"line":15,"outcome":"duplicate","stage":"enqueue","taskId":"t-pending","queue":"low","reason":"the idempotency key already named a task: nothing was queued for this line","keyOutcome":"pending"}
`
		if text != want {
			t.Fatalf("window %d: report\n%s\nwant\n%s", window, text, want)
		}
		if len(out) != 13 || sum.Lines != 13 {
			t.Fatalf("window %d: %d lines, summary %d", window, len(out), sum.Lines)
		}
		wantCounts := map[string]int{"sent": 1, "invalid": 2, "duplicate": 2, "deduplicated": 1, "expired": 1, "failed": 1,
			"missing": 1, "not-queued": 2, "pending": 1, "blocked": 1}
		if fmt.Sprint(sum.ByOutcome) != fmt.Sprint(wantCounts) {
			t.Errorf("window %d: counts %v, want %v", window, sum.ByOutcome, wantCounts)
		}
		// Pending: line 12 and the duplicate of it; delivered: 2, 4, 5.
		if sum.Pending != 2 || sum.NotDelivered != 8 || sum.RefusedInvalid != 1 {
			t.Errorf("window %d: pending %d, not delivered %d, refused invalid %d; want 2, 8, 1", window, sum.Pending, sum.NotDelivered, sum.RefusedInvalid)
		}
		if lk.refs > window {
			t.Errorf("window %d: one lookup of %d tasks", window, lk.refs)
		}
		if !strings.Contains(sum.String(), "13 lines: sent 1, deduplicated 1, duplicate 2, expired 1, failed 1, invalid 2, blocked 1, not-queued 2, missing 1, pending 1 (and 1 duplicates whose key's task is pending)") {
			t.Errorf("summary %q", sum.String())
		}
	}
}

// Waiting: each window's pending lines are looked up again, with pauses
// doubling up to PollMax, until they are final or the wait has passed;
// then what is still pending is reported as pending.
func TestReportWaitsForPendingLines(t *testing.T) {
	in := `{"line":2,"status":"enqueued","taskId":"soon","queue":"low"}
{"line":3,"status":"enqueued","taskId":"never","queue":"low"}
{"line":4,"status":"enqueued","taskId":"done","queue":"low"}
{"line":5,"status":"enqueued","taskId":"late","queue":"low"}
`
	lk := newFakeLookup(map[string][]TaskState{
		"soon":  {{Found: true}, pendingState(tasks.OutcomeDeferred), pendingState(tasks.OutcomeDeferred), sent("r-soon")},
		"never": {{Found: true}},
		"done":  {sent("r-done")},
		// final by its second lookup, but its window comes after the wait
		"late": {{Found: true}, sent("r-late")},
	})
	clk := &fakeClock{now: finishedAt}
	out, _, sum, err := reportLines(t, in, ReportConfig{Lookup: lk, Window: 3, Wait: 10 * time.Second,
		PollMin: time.Second, PollMax: 4 * time.Second, Now: clk.Now, Sleep: clk.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	got := []string{}
	for _, l := range out {
		got = append(got, fmt.Sprintf("%d %s %s", l.Line, l.Outcome, l.Last))
	}
	if want := "[2 sent  3 pending  4 sent  5 pending ]"; fmt.Sprint(got) != want {
		t.Fatalf("lines %v, want %s", got, want)
	}
	// Pauses 1, 2, 4, then the 3 s left; done is looked up once, late
	// once (its window starts after the wait).
	if fmt.Sprint(clk.slept) != "[1s 2s 4s 3s]" {
		t.Errorf("slept %v, want [1s 2s 4s 3s]", clk.slept)
	}
	if lk.looked["done"] != 1 || lk.looked["late"] != 1 || lk.looked["soon"] != 4 || lk.looked["never"] != 5 {
		t.Errorf("lookups per task %v", lk.looked)
	}
	if sum.Pending != 2 || sum.Elapsed != 10*time.Second {
		t.Errorf("summary %+v", sum)
	}
}

// A report is re-runnable: run over the result file again, or over the
// earlier report, it gives the same final lines and updates the pending
// ones; over the report, only the pending lines are looked up.
func TestReportRerun(t *testing.T) {
	lk := newFakeLookup(everyState)
	_, first, _, err := reportLines(t, everyStatus, ReportConfig{Lookup: lk, Window: 4})
	if err != nil {
		t.Fatal(err)
	}
	lk.states["t-pending"] = []TaskState{sent("req-late")}
	_, again, _, err := reportLines(t, everyStatus, ReportConfig{Lookup: lk, Window: 4})
	if err != nil {
		t.Fatal(err)
	}
	// Everything else found gone now: only the pending lines may be looked up.
	only := newFakeLookup(map[string][]TaskState{"t-pending": {sent("req-late")}})
	_, fromReport, sum, err := reportLines(t, first, ReportConfig{Lookup: only, Window: 4})
	if err != nil {
		t.Fatal(err)
	}
	if fromReport != again {
		t.Fatalf("report over the report\n%s\ndiffers from the report over the results\n%s", fromReport, again)
	}
	if len(only.looked) != 1 || only.looked["t-pending"] != 2 {
		t.Errorf("lookups over the report: %v, want t-pending twice (its line and its duplicate)", only.looked)
	}
	a, b := strings.Split(first, "\n"), strings.Split(again, "\n")
	for i := range a {
		switch {
		case strings.Contains(a[i], `"taskId":"t-pending"`):
			if a[i] == b[i] {
				t.Errorf("pending line not updated: %s", b[i])
			}
		case a[i] != b[i]:
			t.Errorf("final line changed:\n%s\n%s", a[i], b[i])
		}
	}
	if sum.Pending != 0 || sum.ByOutcome["sent"] != 2 {
		t.Errorf("summary %+v", sum)
	}
	// A third run over the second report changes nothing.
	_, third, _, err := reportLines(t, fromReport, ReportConfig{Lookup: newFakeLookup(nil)})
	if err != nil || third != fromReport {
		t.Errorf("report over a final report: %v\n%s\nwant\n%s", err, third, fromReport)
	}
}

func TestReportRefusesWhatIsNoResultFile(t *testing.T) {
	long := `{"line":2,"status":"invalid","reason":"` + strings.Repeat("x", MaxLineBytes) + `"}`
	for _, tt := range []struct{ name, in, want string }{
		{"CSV input", "channel,phone\nCHANNEL_LOGIN,+8613800138000\n", "line 1 of the input"},
		{"lines out of order", `{"line":3,"status":"invalid"}` + "\n" + `{"line":2,"status":"invalid"}`, "line 2 of the input: not a batch result or report line: input line 2 after line 3"},
		{"a line twice", `{"line":2,"status":"invalid"}` + "\n" + `{"line":2,"status":"invalid"}`, "after line 2"},
		{"no line number", `{"status":"invalid"}`, "input line 0 after line 0"},
		{"unknown status", `{"line":2,"status":"sent"}`, `unknown status "sent"`},
		{"enqueued without a task", `{"line":2,"status":"enqueued"}`, "without a taskId"},
		{"pending without a task", `{"line":2,"outcome":"pending"}`, "without a taskId"},
		{"unknown outcome", `{"line":2,"outcome":"retrying","taskId":"x"}`, `unknown outcome "retrying"`},
		{"both", `{"line":2,"outcome":"sent","status":"enqueued","taskId":"x"}`, "both a status and an outcome"},
		{"neither", `{"line":2,"taskId":"x"}`, "neither"},
		{"over 64 KiB", `{"line":1,"status":"invalid"}` + "\n" + long, "line 2 of the input: not a batch result or report line: longer than 65536 bytes"},
	} {
		lk := newFakeLookup(nil)
		_, _, _, err := reportLines(t, tt.in, ReportConfig{Lookup: lk})
		if !errors.Is(err, ErrBadResults) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want ErrBadResults with %q", tt.name, err, tt.want)
		}
	}
}

// A lookup that fails is retried while waiting, up to MaxLookupErrors in
// a row; without a wait it fails the report at once.
func TestReportLookupErrors(t *testing.T) {
	in := `{"line":2,"status":"enqueued","taskId":"a","queue":"low"}`
	states := map[string][]TaskState{"a": {sent("r")}}

	lk := newFakeLookup(states)
	lk.fail = 1
	if _, _, _, err := reportLines(t, in, ReportConfig{Lookup: lk}); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("no wait, failed lookup: error %v", err)
	}

	lk = newFakeLookup(states)
	lk.fail = MaxLookupErrors - 1
	clk := &fakeClock{now: finishedAt}
	out, _, _, err := reportLines(t, in, ReportConfig{Lookup: lk, Wait: time.Hour, Now: clk.Now, Sleep: clk.Sleep})
	if err != nil || len(out) != 1 || out[0].Outcome != "sent" {
		t.Errorf("wait, %d failed lookups: %v %+v", MaxLookupErrors-1, err, out)
	}

	lk = newFakeLookup(states)
	lk.fail = MaxLookupErrors
	_, _, _, err = reportLines(t, in, ReportConfig{Lookup: lk, Wait: time.Hour, Now: clk.Now, Sleep: clk.Sleep})
	if err == nil || lk.calls != MaxLookupErrors {
		t.Errorf("wait, %d failed lookups: error %v after %d calls", MaxLookupErrors, err, lk.calls)
	}
}

func TestReportStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	lk := LookupFunc(func(_ context.Context, refs []TaskRef, out []TaskState) error {
		for i := range out {
			out[i] = TaskState{Found: true}
		}
		cancel()
		return nil
	})
	in := `{"line":2,"status":"enqueued","taskId":"a","queue":"low"}`
	_, err := Report(ctx, NewResultsReader(strings.NewReader(in)), ReportConfig{Lookup: lk, Wait: time.Hour, Output: func(ReportLine) error { return nil }})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
}

// generatedResults is a batch result file of n enqueued lines, made as it
// is read, so that the test holds none of it.
type generatedResults struct {
	n, i int
	buf  []byte
}

func (g *generatedResults) Read(p []byte) (int, error) {
	for len(g.buf) == 0 {
		if g.i == g.n {
			return 0, io.EOF
		}
		g.i++
		g.buf = fmt.Appendf(g.buf[:0], `{"line":%d,"status":"enqueued","taskId":"bench-%d","queue":"default"}`+"\n", g.i+1, g.i)
	}
	n := copy(p, g.buf)
	g.buf = g.buf[n:]
	return n, nil
}

// reportLinesForMemory is the size of the bounded-memory test: a million
// lines, as the README promises, unless -short or under the race detector.
func reportLinesForMemory() int {
	if testing.Short() || raceDetector {
		return 100_000
	}
	return 1_000_000
}

// The report holds one window at a time: the heap in use, sampled while a
// million-line report is written, stays far below what the lines take.
func TestReportBoundedMemory(t *testing.T) {
	n := reportLinesForMemory()
	lk := LookupFunc(func(_ context.Context, refs []TaskRef, out []TaskState) error {
		for i, r := range refs {
			out[i] = TaskState{Found: true, Final: true, Outcome: tasks.OutcomeSent, StatusCode: 200,
				RequestID: "6c0e1d4a-2f7b-4c1e-9a55-" + r.ID, Attempts: 1, FinishedAt: finishedAt}
		}
		return nil
	})
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapInuse, ms.HeapInuse
	var written, lines int64
	enc := json.NewEncoder(io.Discard)
	sum, err := Report(context.Background(), NewResultsReader(&generatedResults{n: n}), ReportConfig{
		Lookup: lk,
		Output: func(l ReportLine) error {
			lines++
			if lines%50_000 == 0 {
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
			written++
			return enc.Encode(l)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Lines != n || sum.ByOutcome["sent"] != n || written != int64(n) {
		t.Fatalf("summary %+v, %d written, want %d sent", sum, written, n)
	}
	// Each line is about 70 bytes of input and 190 of report: holding
	// them would take well over 100 MiB for a million.
	grown := int64(peak) - int64(base)
	t.Logf("%d lines: heap in use grew by at most %d KiB (%.1fs)", n, grown>>10, sum.Elapsed.Seconds())
	if grown > 8<<20 {
		t.Errorf("heap in use grew by %d KiB over %d lines, want at most 8 MiB", grown>>10, n)
	}
}
