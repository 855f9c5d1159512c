package logging

import (
	"encoding/json"
	"io"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// The console form is for a person at a terminal: the JSON form keeps
// every field for machines, the console form shows the same events short,
// in a fixed order (what happened, to whom, how long, why, then IDs), with
// units on durations and without the fields that repeat another one.

// consoleOrder is the order of the fields shown first; the others follow
// in alphabetical order.
var consoleOrder = []string{
	"channel", "phone", "attempt", "duration", "rate_wait", "retry_in",
	"status", "http", "api_code", "holder", "reserved_for", "reason", "rule",
	"task_id", "queue", "request_id", "component",
}

// consoleRenamed are fields shown under a shorter name.
var consoleRenamed = map[string]string{
	"status_code":        "status",
	"http_status":        "http",
	"genauth_request_id": "request_id",
}

// newConsole returns the console form of the log writing to w.
func newConsole(w io.Writer) io.Writer {
	return zerolog.ConsoleWriter{
		Out: w, TimeFormat: time.TimeOnly,
		FieldsOrder:   consoleOrder,
		FormatPrepare: prepareConsole,
	}
}

// prepareConsole rewrites one decoded event for the console form.
func prepareConsole(evt map[string]any) error {
	for from, to := range consoleRenamed {
		if v, ok := evt[from]; ok {
			delete(evt, from)
			evt[to] = v
		}
	}
	// An attempt line says its outcome in the message: "send_sms sent
	// (final)", "send_sms retrying". The class only restates the outcome
	// and the reason; retry (asynq's count of failed runs) is covered by
	// attempt (every run).
	if outcome, ok := evt["outcome"].(string); ok {
		msg, _ := evt[zerolog.MessageFieldName].(string)
		msg = strings.TrimSuffix(msg, " attempt") + " " + outcome
		if final, _ := evt["final"].(bool); final {
			msg += " (final)"
		}
		evt[zerolog.MessageFieldName] = msg
		delete(evt, "outcome")
		delete(evt, "final")
		delete(evt, "class")
		if _, ok := evt["attempt"]; ok {
			delete(evt, "retry")
		}
	}
	// A sandbox send reached the built-in fake GenAuth: no SMS went out,
	// and the line must never read as a real send.
	if sandbox, _ := evt["sandbox"].(bool); sandbox {
		msg, _ := evt[zerolog.MessageFieldName].(string)
		evt[zerolog.MessageFieldName] = msg + " SANDBOX: no SMS sent"
		delete(evt, "sandbox")
	}
	// Only an operator's override of GenAuth's classification is news; the
	// default rules restate the status and the outcome.
	if rule, _ := evt["rule"].(string); strings.HasPrefix(rule, "default ") {
		delete(evt, "rule")
	}
	// The handler writes most lines; other sources stay named.
	if evt["component"] == "handler" {
		delete(evt, "component")
	}
	// GenAuth's HTTP status is worth a field only when the body's
	// statusCode differs from it.
	if http, ok := evt["http"]; ok {
		if h := number(http); h == 0 || h == number(evt["status"]) {
			delete(evt, "http")
		}
	}
	// GenAuth's error text ends with the request ID, shown as a field.
	if id, ok := evt["request_id"].(string); ok && id != "" {
		if reason, ok := evt["reason"].(string); ok {
			evt["reason"] = strings.ReplaceAll(reason, " (requestId "+id+")", "")
		}
	}
	// Durations with their unit: zerolog writes Dur fields as numbers in
	// DurationFieldUnit, and smsq's _ms fields in milliseconds.
	if d, ok := evt["duration"]; ok {
		evt["duration"] = shortDuration(time.Duration(numberF(d) * float64(zerolog.DurationFieldUnit)))
	}
	for name, v := range evt {
		if base, ok := strings.CutSuffix(name, "_ms"); ok && base != "" {
			if _, isNum := v.(json.Number); isNum {
				delete(evt, name)
				evt[base] = shortDuration(time.Duration(numberF(v) * float64(time.Millisecond)))
			}
		}
	}
	return nil
}

// shortDuration is d with about three significant figures: 5ms, 1.23s, 2m3s.
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

func number(v any) int64 {
	return int64(numberF(v))
}

func numberF(v any) float64 {
	switch n := v.(type) {
	case json.Number:
		f, _ := n.Float64()
		return f
	case float64:
		return n
	}
	return 0
}
