package logging

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestConsoleFormUnitsOrderAndRedundancy(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	l, err := New(&b, "info", "console")
	if err != nil {
		t.Fatal(err)
	}
	// Fields in the order a child logger and record add them.
	l.Warn().Str("component", "handler").Str("task_id", "t-1").Str("queue", "critical").Int("retry", 2).
		Str("channel", "CHANNEL_LOGIN").Str("phone", "+86 138****8000").Str("genauth_request_id", "r-1").
		Str("outcome", "throttled").Bool("final", false).Int("attempt", 4).Dur("duration", 5020*time.Microsecond).
		Int("status_code", 429).Int("http_status", 200).Str("class", "throttle").Str("rule", "default statusCode:429=throttle").
		Int64("retry_in_ms", 1500).Int64("rate_wait_ms", 3).Str("reason", "slow down (requestId r-1)").
		Msg("send_sms attempt")
	line := plain(b.String())
	const want = `WRN send_sms throttled channel=CHANNEL_LOGIN phone="+86 138****8000" attempt=4 duration=5ms ` +
		`rate_wait=3ms retry_in=1.5s status=429 http=200 reason="slow down" task_id=t-1 queue=critical request_id=r-1`
	if _, rest, _ := strings.Cut(line, " "); rest != want {
		t.Fatalf("console line\n%s\nwant (after the time)\n%s", line, want)
	}
}

func TestConsoleNamesComponentsOtherThanTheHandler(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	l, _ := New(&b, "info", "console")
	l.Warn().Str("component", "asynq").Int("retry", 1).Msg("Dequeue error")
	if out := plain(b.String()); !strings.Contains(out, "component=asynq") || !strings.Contains(out, "retry=1") {
		t.Fatalf("console line %q: want the component and, outside attempt lines, retry", out)
	}
}

func TestShortDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0:                       "0s",
		420 * time.Microsecond:  "420µs",
		5020 * time.Microsecond: "5ms",
		1234 * time.Millisecond: "1.23s",
		83 * time.Second:        "1m23s",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%s) = %s, want %s", d, got, want)
		}
	}
}

// plain is a console line without its colour codes.
func plain(s string) string {
	return regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(strings.TrimSpace(s), "")
}

func TestConsoleShowsOverrideRules(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	l, _ := New(&b, "info", "console")
	l.Info().Str("outcome", "sent").Str("rule", "override apiCode:40001=duplicate").Str("reason", "r").Msg("send_sms attempt")
	if out := plain(b.String()); !strings.Contains(out, `reason=r rule="override apiCode:40001=duplicate"`) {
		t.Fatalf("console line %q: want an override rule shown after the reason", out)
	}
}
