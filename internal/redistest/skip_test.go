package redistest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// goTest runs go test on the testdata package needsredis the way a person
// without redis-server does (PATH without it), with the controlling
// terminal when tty is set, and returns go test's output and what reached
// the terminal.
func goTest(t *testing.T, tty bool, env []string, args ...string) (out, term string, err error) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs go test")
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goBin, append(append([]string{"test", "-count=1"}, args...), "./testdata/needsredis")...)
	// PATH without redis-server; go adds its own bin directory.
	cmd.Env = append(withoutEnv(os.Environ(), "PATH", "CI"), append([]string{"PATH=" + t.TempDir(), "CGO_ENABLED=0"}, env...)...)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stdout
	var readTerm func() string
	if tty {
		readTerm = withTerminal(t, cmd)
	}
	err = cmd.Run()
	if readTerm != nil {
		term = readTerm()
	}
	return stdout.String(), term, err
}

func withoutEnv(env []string, names ...string) []string {
	var out []string
	for _, kv := range env {
		keep := true
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

const wantLine = "SKIP ./internal/redistest/testdata/needsredis: 3 tests need redis-server, not on PATH: " +
	"install it (apt-get install redis-server), then go test -count=1 ./internal/redistest/testdata/needsredis"

// The point of the report: go test ./... shows nothing of a passing
// package but its ok line, so the line must reach the terminal.
func TestSkipReportReachesTheTerminalWithoutVerbose(t *testing.T) {
	t.Parallel()
	out, term, err := goTest(t, true, nil)
	if err != nil {
		t.Fatalf("go test: %v\n%s", err, out)
	}
	if !strings.Contains(out, "ok  \tgithub.com/smsq/smsq/internal/redistest/testdata/needsredis") {
		t.Fatalf("go test output lacks the ok line:\n%s", out)
	}
	if strings.Count(term, wantLine) != 1 {
		t.Fatalf("terminal got %q, want the line once:\n%s", term, wantLine)
	}
}

// Under -v the report goes with the rest of the output, not twice.
func TestSkipReportInVerboseOutput(t *testing.T) {
	t.Parallel()
	out, term, err := goTest(t, true, nil, "-v")
	if err != nil {
		t.Fatalf("go test: %v\n%s", err, out)
	}
	if strings.Count(out, wantLine) != 1 || strings.Contains(term, "SKIP ./") {
		t.Fatalf("want the line once in go test's output only; output:\n%s\nterminal:\n%s", out, term)
	}
}

// go test -json (as CI tools read it) carries the line too.
func TestSkipReportInJSONOutput(t *testing.T) {
	t.Parallel()
	out, _, err := goTest(t, false, nil, "-json")
	if err != nil {
		t.Fatalf("go test: %v\n%s", err, out)
	}
	if !strings.Contains(out, wantLine) {
		t.Fatalf("go test -json output lacks the line:\n%s", out)
	}
}

// Under CI the same tests fail instead of skipping.
func TestMissingRedisFailsUnderCI(t *testing.T) {
	t.Parallel()
	out, term, err := goTest(t, true, []string{"CI=true"})
	if err == nil {
		t.Fatalf("go test passed under CI without redis-server:\n%s", out)
	}
	if !strings.Contains(out, "redis-server not found on PATH") || !strings.Contains(out, "FAIL") {
		t.Fatalf("want the tests failing, naming redis-server:\n%s", out)
	}
	if strings.Contains(term, "SKIP ./") {
		t.Fatalf("a failing run reported skips: %q", term)
	}
}

func TestSkipLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		n    int
		want string
	}{
		{0, "SKIP ./x: some tests need chromium, not on PATH: install it (apt-get install chromium), then go test -count=1 ./x\n"},
		{1, "SKIP ./x: 1 test needs chromium, not on PATH: install it (apt-get install chromium), then go test -count=1 ./x\n"},
		{4, "SKIP ./x: 4 tests need chromium, not on PATH: install it (apt-get install chromium), then go test -count=1 ./x\n"},
	}
	for _, tt := range tests {
		if got := skipLine("./x", "chromium", toolSkips{install: "apt-get install chromium", tests: tt.n}); got != tt.want {
			t.Errorf("skipLine(%d tests) = %q, want %q", tt.n, got, tt.want)
		}
	}
}
