package tasks

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/logging"
)

// ansi matches the colour codes of the console form.
var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

const (
	longTaskID    = "0b1f7a52-3c7e-4f5e-9d3a-6f0e2a9c1d47"
	longRequestID = "78a1c91f-fedc-4d2b-b07d-46c28dd0ab34"
)

// attemptLine runs one task through a handler logging in format and
// returns its attempt line and the recorded result.
func attemptLine(t *testing.T, format string, sandbox bool, send func(context.Context, genauth.SendSMSRequest) (*genauth.Response, error)) (string, []byte) {
	t.Helper()
	var buf syncBuffer
	logger, err := logging.New(&buf, "info", format)
	if err != nil {
		t.Fatal(err)
	}
	logger = logger.With().Str("component", "handler").Logger()
	journal := &fakeJournal{}
	h, err := NewHandler(HandlerConfig{
		Sender: &fakeSender{SendSMSFunc: send}, Reservations: &fakeReserver{}, Journal: journal,
		Logger: &logger, Sandbox: sandbox,
		Now: func() time.Time { return testEnqueued.Add(time.Second) },
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = h.processTask(context.Background(), newTestTask(t, nil), taskMeta{id: longTaskID, maxRetry: 5, queue: QueueCritical})
	var line string
	for _, l := range strings.Split(buf.String(), "\n") {
		if strings.Contains(l, "send_sms") {
			line = ansi.ReplaceAllString(l, "")
		}
	}
	if line == "" {
		t.Fatalf("no attempt line in:\n%s", buf.String())
	}
	recs := journal.recorded()
	if len(recs) == 0 {
		t.Fatal("nothing recorded")
	}
	return line, recs[len(recs)-1].entry.Result
}

var (
	sentReply  = reply(&genauth.Response{HTTPStatus: 200, StatusCode: 200, RequestID: longRequestID}, nil)
	retryReply = reply(nil, &genauth.Error{HTTPStatus: 500, StatusCode: 500, Message: "internal error", RequestID: longRequestID})
)

// fieldOrder returns the keys of line's key=value fields in order.
func fieldOrder(line string) []string {
	var keys []string
	for _, m := range regexp.MustCompile(` ([a-z_]+)=`).FindAllStringSubmatch(line, -1) {
		keys = append(keys, m[1])
	}
	return keys
}

func TestConsoleAttemptLineIsShortAndOrdered(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		send    func(context.Context, genauth.SendSMSRequest) (*genauth.Response, error)
		msg     string
		maxLen  int
		order   []string
		present []string
	}{
		{"sent", sentReply, " INF send_sms sent (final) ", 225,
			[]string{"channel", "phone", "attempt", "duration", "status", "task_id", "queue", "request_id"}, nil},
		{"retrying", retryReply, " WRN send_sms retrying ", 320,
			[]string{"channel", "phone", "attempt", "duration", "status", "reason", "task_id", "queue", "request_id"},
			[]string{`reason="transient failure, nothing sent: genauth: send-sms: HTTP 500, statusCode 500: internal error"`}},
	}
	for _, tt := range tests {
		line, _ := attemptLine(t, "console", false, tt.send)
		if len(line) > tt.maxLen {
			t.Errorf("%s: console line is %d characters, want at most %d:\n%s", tt.name, len(line), tt.maxLen, line)
		}
		if !strings.Contains(line, tt.msg) {
			t.Errorf("%s: console line lacks %q:\n%s", tt.name, tt.msg, line)
		}
		if got := strings.Join(fieldOrder(line), " "); got != strings.Join(tt.order, " ") {
			t.Errorf("%s: console fields %q, want %q:\n%s", tt.name, got, strings.Join(tt.order, " "), line)
		}
		if !regexp.MustCompile(` duration=[0-9.]+(µs|ms|s|m)[0-9.a-zµ]* `).MatchString(line) {
			t.Errorf("%s: duration without a unit:\n%s", tt.name, line)
		}
		for _, want := range append(tt.present, "task_id="+longTaskID, "request_id="+longRequestID, `phone="+86 138****8000"`) {
			if !strings.Contains(line, want) {
				t.Errorf("%s: console line lacks %s:\n%s", tt.name, want, line)
			}
		}
		if strings.Contains(line, "SANDBOX") {
			t.Errorf("%s: a real send marked sandbox:\n%s", tt.name, line)
		}
	}
}

// JSON, for machines, keeps every field the console form folds away.
func TestJSONAttemptLineIsComplete(t *testing.T) {
	t.Parallel()
	line, _ := attemptLine(t, "json", false, retryReply)
	var got map[string]any
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("%v: %s", err, line)
	}
	for _, k := range []string{"task_id", "queue", "retry", "channel", "phone", "outcome", "final", "attempt",
		"duration", "status_code", "http_status", "class", "genauth_request_id", "reason", "component", "message"} {
		if _, ok := got[k]; !ok {
			t.Errorf("JSON attempt line lacks %q: %s", k, line)
		}
	}
	if _, ok := got["sandbox"]; ok {
		t.Errorf("a real send marked sandbox: %s", line)
	}
}

func TestSandboxSendsAreMarked(t *testing.T) {
	t.Parallel()
	for _, sandbox := range []bool{false, true} {
		jsonLine, result := attemptLine(t, "json", sandbox, sentReply)
		var res map[string]any
		if err := json.Unmarshal(result, &res); err != nil {
			t.Fatal(err)
		}
		if got, ok := res["sandbox"]; sandbox && got != true || !sandbox && ok {
			t.Errorf("sandbox %v: result %s", sandbox, result)
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(jsonLine), &ev); err != nil {
			t.Fatal(err)
		}
		if got, ok := ev["sandbox"]; sandbox && got != true || !sandbox && ok {
			t.Errorf("sandbox %v: JSON line %s", sandbox, jsonLine)
		}
		console, _ := attemptLine(t, "console", sandbox, sentReply)
		if strings.Contains(console, "send_sms sent (final) SANDBOX: no SMS sent ") != sandbox {
			t.Errorf("sandbox %v: console line %s", sandbox, console)
		}
	}
}
