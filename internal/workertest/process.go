package workertest

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smsq/smsq/internal/genauth/genauthtest"
)

// Process is one running worker process.
type Process struct {
	// Name names the process in test messages.
	Name string
	// LogPath is the file holding the process's stdout and stderr.
	LogPath string

	cmd  *exec.Cmd
	done chan struct{}
	err  error // exit status, once done is closed
}

// Concurrency is SMSQ_CONCURRENCY of the workers Env configures.
const Concurrency = 50

// Env returns the worker settings both suites start from: JSON logs at
// info, fast polling, short timeouts, no HTTP listener and no abuse guard, against
// redisURL and the fake GenAuth, with window as SMSQ_WINDOW. Later
// entries of a process's environment override earlier ones.
func Env(redisURL string, fake *genauthtest.Server, window time.Duration) []string {
	return []string{
		"REDIS_URL=" + redisURL,
		"GENAUTH_APP_HOST=" + fake.URL(),
		"GENAUTH_APP_ID=" + fake.AppID(),
		"SMSQ_LOG_FORMAT=json",
		"SMSQ_LOG_LEVEL=info",
		"SMSQ_WINDOW=" + window.String(),
		"SMSQ_POLL_INTERVAL=100ms",
		"SMSQ_SHUTDOWN_TIMEOUT=5s",
		"SMSQ_GENAUTH_TIMEOUT=5s",
		"SMSQ_CONCURRENCY=" + strconv.Itoa(Concurrency),
		"SMSQ_HTTP_ADDR=off",
		// The suites send to many numbers of a few ranges, which the abuse
		// guard's defaults would block; its own tests turn it on.
		"SMSQ_GUARD_MODE=off",
	}
}

// BaseEnv is the test's environment without any smsq or OpenTelemetry
// setting, for other commands a test starts (Start uses it for workers).
func BaseEnv() []string { return baseEnv() }

// Start starts the worker binary bin as name with settings env (NAME=value)
// and its output in logPath. The test's own smsq settings are dropped first,
// so that a developer's configuration cannot leak into the worker. Start
// does not wait for the worker to serve: see WaitLog.
func Start(t testing.TB, name, bin, logPath string, env []string) *Process {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(baseEnv(), env...)
	cmd.Stdout = f
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p
}

// baseEnv is the test's environment without any smsq or OpenTelemetry
// setting.
func baseEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "SMSQ_") || strings.HasPrefix(name, "GENAUTH_") || strings.HasPrefix(name, "OTEL_") || name == "REDIS_URL" {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// Alive reports whether the process is still running.
func (p *Process) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Err returns the exit status once the process has exited, nil before.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Kill9 kills the process as a crash would and waits for it to be gone.
func (p *Process) Kill9(t testing.TB) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not die after SIGKILL", p.Name)
	}
}

// Term sends SIGTERM, waits up to limit for the process to exit and
// returns how long it took.
func (p *Process) Term(t testing.TB, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(limit):
		t.Fatalf("%s still running %s after SIGTERM", p.Name, limit)
	}
	return time.Since(start)
}

// Logs returns the process's log lines so far; see Lines.
func (p *Process) Logs(t testing.TB) []Line {
	t.Helper()
	lines, err := Lines(p.LogPath)
	if err != nil {
		t.Fatalf("read %s log: %v", p.Name, err)
	}
	return lines
}

// WaitLog waits up to limit until the process logged a line with message
// msg, and fails at once if the process exits first.
func (p *Process) WaitLog(t testing.TB, msg string, limit time.Duration) {
	t.Helper()
	WaitFor(t, limit, func() (bool, string) {
		for _, l := range p.Logs(t) {
			if l.Message == msg {
				return true, ""
			}
		}
		if !p.Alive() {
			data, _ := os.ReadFile(p.LogPath)
			t.Fatalf("%s exited (%v) before logging %q:\n%s", p.Name, p.Err(), msg, data)
		}
		return false, fmt.Sprintf("%s has not logged %q", p.Name, msg)
	})
}

// Stop sends SIGTERM to every process still running, then waits for each;
// one that has not exited after 15 s is killed.
func Stop(ps ...*Process) {
	for _, p := range ps {
		if p.Alive() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, p := range ps {
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
		}
	}
}

// DumpLogs logs the last tail bytes of each process's output, for a
// failed test.
func DumpLogs(t testing.TB, tail int, ps ...*Process) {
	t.Helper()
	for _, p := range ps {
		data, _ := os.ReadFile(p.LogPath)
		if len(data) > tail {
			data = append([]byte("...\n"), data[len(data)-tail:]...)
		}
		t.Logf("--- %s log (tail) ---\n%s", p.Name, data)
	}
}

// WaitFor polls cond every 50 ms until it holds, and fails the test with
// cond's last explanation once limit has passed.
func WaitFor(t testing.TB, limit time.Duration, cond func() (ok bool, why string)) {
	t.Helper()
	WaitEvery(t, limit, 50*time.Millisecond, cond)
}

// WaitEvery is WaitFor polling every interval, for conditions that are
// costly to evaluate.
func WaitEvery(t testing.TB, limit, interval time.Duration, cond func() (ok bool, why string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s: %s", limit, why)
		}
		time.Sleep(interval)
	}
}
