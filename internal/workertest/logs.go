package workertest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"github.com/smsq/smsq/internal/phone"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Line is one log line of a worker. A line that is not JSON (a race
// report, a panic, a stack) has only Raw set.
type Line struct {
	Level     string `json:"level"`
	Message   string `json:"message"`
	Component string `json:"component"`
	TaskID    string `json:"task_id"`
	Outcome   string `json:"outcome"`
	Repeated  int    `json:"repeated"`
	Time      string `json:"time"`
	// Raw is the line as written.
	Raw string `json:"-"`
}

// Crash reports whether the line starts a data race report, a panic, a
// fatal runtime error (concurrent map writes, out of memory) or a goroutine
// dump.
func (l Line) Crash() bool {
	return strings.Contains(l.Raw, "WARNING: DATA RACE") || strings.HasPrefix(l.Raw, "panic:") ||
		strings.HasPrefix(l.Raw, "fatal error:") || l.Level == "" && strings.HasPrefix(l.Raw, "goroutine ")
}

// Lines reads the log file at path.
func Lines(path string) ([]Line, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []Line
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l Line
		_ = json.Unmarshal(sc.Bytes(), &l)
		l.Raw = sc.Text()
		out = append(out, l)
	}
	return out, sc.Err()
}

// Leak is a log line that holds a full phone number.
type Leak struct {
	// Line is the line's number, from 1.
	Line int
	// Redacted is the line with the number replaced by <PHONE>, safe to
	// print.
	Redacted string
}

// PhoneLeaks returns the lines that hold one of numbers in full, in any
// form phone.Digits reads. numbers are ASCII digits only; a number longer than a national one (country code
// included) also counts when only its last 11 digits appear.
func PhoneLeaks(lines []Line, numbers []string) []Leak {
	if len(numbers) == 0 {
		return nil
	}
	shortest := len(numbers[0])
	for _, n := range numbers {
		shortest = min(shortest, len(n))
	}
	shortest = min(shortest, 11)
	var out []Leak
	for i, l := range lines {
		// A number appears only inside a run of digits at least as long,
		// so most lines are done with after one scan, even against
		// thousands of numbers.
		// Any digit script and separator libphonenumber accepts counts:
		// "１３８-0013/8000" is the number as much as "13800138000".
		runs := digitRuns(phone.Digits(l.Raw), shortest)
		for _, n := range numbers {
			for _, run := range runs {
				if strings.Contains(run, n) || (len(n) > 11 && strings.Contains(run, n[len(n)-11:])) {
					raw := l.Raw
					if !strings.Contains(raw, n[max(0, len(n)-11):]) {
						// Written in another form: redact the normalised line.
						raw = phone.Digits(raw)
					}
					redacted := strings.ReplaceAll(raw, n, "<PHONE>")
					if len(n) > 11 {
						redacted = strings.ReplaceAll(redacted, n[len(n)-11:], "<PHONE>")
					}
					out = append(out, Leak{Line: i + 1, Redacted: redacted})
					break
				}
			}
		}
	}
	return out
}

// digitRuns returns the runs of at least `least` digits in s.
func digitRuns(s string, least int) []string {
	var out []string
	start := -1
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] >= '0' && s[i] <= '9' {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 && i-start >= least {
			out = append(out, s[start:i])
		}
		start = -1
	}
	return out
}

// SilenceRedis stops go-redis from writing to the standard logger, which
// it does on every failed dial of a failover; the tests report what
// matters themselves. It changes a process-wide setting: call it from
// TestMain.
func SilenceRedis() { redis.SetLogger(quietLogger{}) }

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}
