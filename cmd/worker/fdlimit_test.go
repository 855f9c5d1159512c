package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/tasks"
)

// childWorkerEnv marks the test binary started as a worker process by
// TestIdleConnectionsDoNotStopDelivery.
const childWorkerEnv = "SMSQ_TEST_CHILD_WORKER"

// TestChildWorker is the worker process of
// TestIdleConnectionsDoNotStopDelivery (the test binary runs itself under a
// lowered RLIMIT_NOFILE) and of TestPhoneHashKeyAcrossProcesses: it runs
// the worker until SIGTERM.
func TestChildWorker(t *testing.T) {
	if os.Getenv(childWorkerEnv) != "1" {
		t.Skip("runs only as the child process of TestIdleConnectionsDoNotStopDelivery")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := run(ctx, nil, os.Getenv, os.Stderr, os.Stderr, nil); err != nil {
		t.Fatal(err)
	}
}

// childNoFile is the child's RLIMIT_NOFILE, soft and hard: a small
// container's. idleConns is well above it.
const (
	childNoFile = 1024
	idleConns   = 3000
	idleTasks   = 40
)

// TestIdleConnectionsDoNotStopDelivery holds thousands of keep-alive
// connections to the worker's unauthenticated /healthz, more than the
// process may have files, while tasks are sent: every task must still be
// sent, since the HTTP listener may never take the sockets the send path
// needs.
func TestIdleConnectionsDoNotStopDelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("holds thousands of connections")
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < idleConns+1000 {
		t.Fatalf("this test holds %d connections and needs RLIMIT_NOFILE of %d or more, has %d (%v): raise it (ulimit -n)",
			idleConns, idleConns+1000, lim.Cur, err)
	}
	srv := redistest.Start(t)
	fake := genauthtest.NewServer(genauthtest.Options{})
	t.Cleanup(fake.Close)

	logPath := filepath.Join(t.TempDir(), "worker.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	// sh sets the soft and hard limits together, so the Go runtime cannot
	// raise the soft one above childNoFile.
	cmd := exec.Command("/bin/sh", "-c", `ulimit -n `+strconv.Itoa(childNoFile)+` && exec "$0" "$@"`,
		os.Args[0], "-test.run=^TestChildWorker$", "-test.count=1")
	cmd.Env = append(os.Environ(), childWorkerEnv+"=1",
		"REDIS_URL="+srv.URL(),
		"GENAUTH_APP_HOST="+fake.URL(), "GENAUTH_APP_ID="+fake.AppID(),
		"SMSQ_HTTP_ADDR=127.0.0.1:0", "SMSQ_LOG_FORMAT=json", "SMSQ_POLL_INTERVAL=50ms",
		"SMSQ_CONCURRENCY=20", "SMSQ_SHUTDOWN_TIMEOUT=2s",
		// Sequential numbers in one range: not the abuse guard's test.
		"SMSQ_GUARD_MODE=off")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	addr := waitHTTPAddr(t, logPath, exited)

	// Hold the connections, each after one keep-alive request, as careless
	// probers or hostile clients would: from a hundred addresses, since
	// one client alone may hold only an eighth of the listener's cap.
	var held []net.Conn
	var mu sync.Mutex
	var failed atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range idleConns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i%100))}}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				failed.Add(1)
				return
			}
			if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: worker\r\n\r\n")); err != nil {
				c.Close()
				failed.Add(1)
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	time.Sleep(time.Second) // let the worker accept what it will
	t.Logf("connections held: %d (%d dials failed); worker's open files: %d of %d",
		len(held), failed.Load(), openFiles(cmd.Process.Pid), childNoFile)
	if len(held) < childNoFile {
		t.Fatalf("held only %d connections, want more than the worker's %d files", len(held), childNoFile)
	}

	producer := smsq.NewClientFromRedis(srv.Client())
	ins := asynq.NewInspectorFromRedisClient(srv.Client())
	type sentTask struct{ queue, id string }
	var sent []sentTask
	for i := range idleTasks {
		rc, err := producer.Send(context.Background(), smsq.Request{
			Channel: "CHANNEL_LOGIN", Phone: fmt.Sprintf("1380013%04d", i),
		})
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, sentTask{rc.Queue, rc.TaskID})
	}
	outcomes := map[string]int{}
	deadline := time.Now().Add(60 * time.Second)
	for _, st := range sent {
		for {
			info, err := ins.GetTaskInfo(st.queue, st.id)
			if err == nil && (info.State == asynq.TaskStateCompleted || info.State == asynq.TaskStateArchived) {
				var r tasks.Result
				if err := json.Unmarshal(info.Result, &r); err != nil {
					t.Fatalf("task %s result: %v", st.id, err)
				}
				outcomes[r.Outcome]++
				if r.Outcome != tasks.OutcomeSent {
					t.Errorf("task %s ended %s: %s", st.id, r.Outcome, r.Reason)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("task %s not finished after 60 s with %d idle connections held: %+v %v\n%s",
					st.id, len(held), info, err, tailFile(logPath, 20))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if got := fake.Calls(); got != idleTasks {
		t.Errorf("GenAuth got %d calls, want %d", got, idleTasks)
	}
	t.Logf("outcomes with %d connections held: %v; worker's open files now %d", len(held), outcomes, openFiles(cmd.Process.Pid))
	if t.Failed() {
		t.Logf("worker log:\n%s", tailFile(logPath, 30))
	}
}

var httpAddrRE = regexp.MustCompile(`"http_addr":"([^"]+)"`)

// waitHTTPAddr waits for the child's "HTTP listening" line and returns the
// address it names.
func waitHTTPAddr(t *testing.T, logPath string, exited <-chan error) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(logPath)
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, `"HTTP listening"`) {
				if m := httpAddrRE.FindStringSubmatch(line); m != nil {
					return m[1]
				}
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("worker exited: %v\n%s", err, data)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("worker did not listen\n%s", tailFile(logPath, 30))
	return ""
}

// openFiles counts the open file descriptors of process pid, -1 when
// unknown.
func openFiles(pid int) int {
	entries, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return -1
	}
	return len(entries)
}

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
