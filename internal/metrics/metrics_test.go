package metrics

import (
	"io"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/smsq/smsq/internal/tasks"
)

func TestObserveFamiliesAndLabels(t *testing.T) {
	t.Parallel()
	m := New(Config{})
	enq := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	results := []tasks.Result{
		{Outcome: tasks.OutcomeSent, Final: true, Channel: "CHANNEL_LOGIN", Phone: "+86 138****8000",
			Class: "sent", HTTPStatus: 200, StatusCode: 200, GenAuthMS: 120, EnqueuedAt: enq, FinishedAt: enq.Add(1500 * time.Millisecond), RateWaitMS: 250},
		{Outcome: tasks.OutcomeDeduplicated, Final: true, Channel: "CHANNEL_LOGIN", Holder: "task-1"},
		{Outcome: tasks.OutcomeDeferred, Channel: "CHANNEL_REGISTER", Holder: "genauth", Class: "duplicate", StatusCode: 422, GenAuthMS: 80},
		{Outcome: tasks.OutcomeUnknown, Channel: "CHANNEL_REGISTER", Class: "unknown", GenAuthMS: 10000},
		// A producer that put the number where the channel goes.
		{Outcome: tasks.OutcomeInvalid, Final: true, Channel: "13800138000", Phone: "138****8000"},
		{Outcome: "something-new", Channel: "CHANNEL_LOGIN", Class: "Class(9)", GenAuthMS: 5},
	}
	for _, r := range results {
		m.Observe(r)
	}

	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	for _, name := range []string{
		"smsq_attempts_total", "smsq_tasks_finished_total", "smsq_genauth_request_duration_seconds",
		"smsq_reservation_conflicts_total", "smsq_unknown_outcomes_total", "smsq_enqueue_to_send_seconds",
		"smsq_rate_limit_wait_seconds", "go_goroutines", "process_cpu_seconds_total",
	} {
		if byName[name] == nil {
			t.Errorf("metric family %s is missing", name)
		}
	}

	longDigits := regexp.MustCompile(`[0-9]{7,}`)
	for _, f := range fams {
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if longDigits.MatchString(l.GetValue()) {
					t.Errorf("%s label %s=%q holds a digit run of 7 or more", f.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}

	tests := []struct {
		family string
		labels map[string]string
		want   float64 // counter value or histogram sample count
	}{
		{"smsq_attempts_total", map[string]string{"channel": "CHANNEL_LOGIN", "outcome": "sent", "final": "true"}, 1},
		{"smsq_attempts_total", map[string]string{"channel": "other", "outcome": "invalid", "final": "true"}, 1},
		{"smsq_attempts_total", map[string]string{"channel": "CHANNEL_LOGIN", "outcome": "other", "final": "false"}, 1},
		{"smsq_tasks_finished_total", map[string]string{"channel": "CHANNEL_LOGIN", "outcome": "deduplicated"}, 1},
		{"smsq_tasks_finished_total", map[string]string{"channel": "other", "outcome": "invalid"}, 1},
		{"smsq_reservation_conflicts_total", map[string]string{"channel": "CHANNEL_LOGIN"}, 1},
		// GenAuth's own minute rule is not a conflict between tasks.
		{"smsq_reservation_conflicts_total", map[string]string{"channel": "CHANNEL_REGISTER"}, 0},
		{"smsq_unknown_outcomes_total", map[string]string{"channel": "CHANNEL_REGISTER"}, 1},
		{"smsq_genauth_request_duration_seconds", map[string]string{"class": "sent"}, 1},
		{"smsq_genauth_request_duration_seconds", map[string]string{"class": "duplicate"}, 1},
		{"smsq_genauth_request_duration_seconds", map[string]string{"class": "other"}, 1},
		{"smsq_enqueue_to_send_seconds", map[string]string{"channel": "CHANNEL_LOGIN"}, 1},
		{"smsq_enqueue_to_send_seconds", map[string]string{"channel": "CHANNEL_REGISTER"}, 0},
		// Only attempts that waited for a send token.
		{"smsq_rate_limit_wait_seconds", map[string]string{"channel": "CHANNEL_LOGIN"}, 1},
		{"smsq_rate_limit_wait_seconds", map[string]string{"channel": "CHANNEL_REGISTER"}, 0},
	}
	for _, tt := range tests {
		got, ok := value(byName[tt.family], tt.labels)
		if !ok {
			t.Errorf("%s%v: no such series", tt.family, tt.labels)
			continue
		}
		if got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.family, tt.labels, got, tt.want)
		}
	}
	if f := byName["smsq_enqueue_to_send_seconds"]; f != nil {
		for _, mt := range f.GetMetric() {
			if mt.GetHistogram().GetSampleCount() == 1 && mt.GetHistogram().GetSampleSum() != 1.5 {
				t.Errorf("enqueue to send sum = %v, want 1.5", mt.GetHistogram().GetSampleSum())
			}
		}
	}
	if f := byName["smsq_rate_limit_wait_seconds"]; f != nil {
		for _, mt := range f.GetMetric() {
			if mt.GetHistogram().GetSampleCount() == 1 && mt.GetHistogram().GetSampleSum() != 0.25 {
				t.Errorf("rate limit wait sum = %v, want 0.25", mt.GetHistogram().GetSampleSum())
			}
		}
	}
}

// value returns the counter value or histogram sample count of the series
// with exactly labels.
func value(f *dto.MetricFamily, labels map[string]string) (float64, bool) {
	if f == nil {
		return 0, false
	}
next:
	for _, mt := range f.GetMetric() {
		if len(mt.GetLabel()) != len(labels) {
			continue
		}
		for _, l := range mt.GetLabel() {
			if labels[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		if h := mt.GetHistogram(); h != nil {
			return float64(h.GetSampleCount()), true
		}
		return mt.GetCounter().GetValue(), true
	}
	return 0, false
}

func TestLabelSets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		fn   func(string) string
		in   string
		want string
	}{
		{Channel, "CHANNEL_LOGIN", "CHANNEL_LOGIN"},
		{Channel, "channel_login", Other},
		{Channel, "+8613800138000", Other},
		{Channel, "", Other},
		{Outcome, "sent", "sent"},
		{Outcome, "throttled", "throttled"},
		{Outcome, "Sent", Other},
		{Class, "permanent", "permanent"},
		{Class, "Class(7)", Other},
	}
	for _, tt := range tests {
		if got := tt.fn(tt.in); got != tt.want {
			t.Errorf("label(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHandlerServesText(t *testing.T) {
	t.Parallel()
	m := New(Config{})
	m.Observe(tasks.Result{Outcome: tasks.OutcomeSent, Final: true, Channel: "CHANNEL_LOGIN"})
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != 200 || !strings.Contains(string(body), `smsq_attempts_total{channel="CHANNEL_LOGIN",final="true",outcome="sent"} 1`) {
		t.Fatalf("GET /metrics = %d\n%s", rec.Code, body)
	}
}
