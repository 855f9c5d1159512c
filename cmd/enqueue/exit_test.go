package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/workertest"
)

// asMainEnv makes the test binary run main instead of the tests, so that
// TestExitStatuses sees the exit status a shell sees.
const asMainEnv = "SMSQ_ENQUEUE_TEST_AS_MAIN"

// TestMain also reports the tests skipped for want of redis-server in a
// line that go test shows without -v.
func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) == "1" {
		main()
		return
	}
	code := redistest.Main(m)
	workertest.Cleanup() // the worker binary TestKeyModel built
	os.Exit(code)
}

// runProcess runs the command as a process with REDIS_URL set to url and
// returns its exit status and standard error.
func runProcess(t *testing.T, url string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = []string{asMainEnv + "=1", "REDIS_URL=" + url}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stderr.String()
	default:
		t.Fatalf("run %v: %v", args, err)
		return -1, ""
	}
}

// Each documented exit status, as a retrying script sees it: a duplicate
// key (3: queued before, nothing new) is told apart from an unreachable
// Redis (1: retry) and from bad input (2: do not retry).
func TestExitStatuses(t *testing.T) {
	srv := redistest.Start(t)
	login := []string{"--channel", "CHANNEL_LOGIN", "--phone", "+8613800138000", "--timeout", "2s"}
	tests := []struct {
		name string
		url  string
		args []string
		want int
		msg  string
	}{
		{"queued", srv.URL(), append(login, "--idempotency-key", "exit-k1"), 0, "queued"},
		{"duplicate key", srv.URL(), append(login, "--idempotency-key", "exit-k1"), 3, "exit-k1"},
		{"invalid phone", srv.URL(), []string{"--channel", "CHANNEL_LOGIN", "--phone", "12"}, 2, "phoneNumber"},
		{"bad flag", srv.URL(), []string{"--nope"}, 2, "nope"},
		{"Redis unreachable", closedURL(t), append(login, "--idempotency-key", "exit-k2"), 1, "cannot reach Redis"},
		{"help", srv.URL(), []string{"-h"}, 0, "usage"},
	}
	for _, tt := range tests {
		code, stderr := runProcess(t, tt.url, tt.args...)
		if code != tt.want || !strings.Contains(stderr, tt.msg) {
			t.Errorf("%s: exit %d, stderr %q; want %d and a message with %q", tt.name, code, stderr, tt.want, tt.msg)
		}
	}
}
