package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/tasks"
)

// childProcess is a worker running in a process of its own (the test
// binary running TestChildWorker), logging to a file.
type childProcess struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan error
	once    sync.Once
}

// startChild starts a worker process with env added to the test's
// environment, and waits until it has started. It is stopped with SIGTERM
// when the test ends, if not before.
func startChild(t *testing.T, name string, env ...string) *childProcess {
	t.Helper()
	c := &childProcess{logPath: filepath.Join(t.TempDir(), name+".log"), exited: make(chan error, 1)}
	f, err := os.Create(c.logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestChildWorker$", "-test.count=1")
	c.cmd.Env = append(append(os.Environ(), childWorkerEnv+"=1"), env...)
	c.cmd.Stdout, c.cmd.Stderr = f, f
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.exited <- c.cmd.Wait() }()
	t.Cleanup(c.stop)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(c.logs(), `"worker started"`) {
		select {
		case err := <-c.exited:
			t.Fatalf("%s exited: %v\n%s", name, err, c.logs())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not start\n%s", name, c.logs())
		}
	}
	return c
}

func (c *childProcess) logs() string {
	b, _ := os.ReadFile(c.logPath)
	return string(b)
}

// stop ends the process with SIGTERM, then SIGKILL if it lingers; calls
// after the first do nothing.
func (c *childProcess) stop() {
	c.once.Do(func() {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(20 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	})
}

// TestPhoneHashKeyAcrossProcesses runs two worker processes given one
// SMSQ_PHONE_HASH_KEY (one by value, one through SMSQ_PHONE_HASH_KEY_FILE)
// on one Redis, one after the other: the second sees the reservation the
// first took, so a second task for the pair makes no GenAuth call; the
// reservation and history keys carry the keyed hash, not the unkeyed
// SHA-256 one; and the key appears in neither log.
func TestPhoneHashKeyAcrossProcesses(t *testing.T) {
	const key = "deployment-secret-0123456789"
	srv := redistest.Start(t)
	fake := genauthtest.NewServer(genauthtest.Options{})
	t.Cleanup(fake.Close)
	file := filepath.Join(t.TempDir(), "phone_hash_key")
	if err := os.WriteFile(file, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{
		"REDIS_URL=" + srv.URL(), "GENAUTH_APP_HOST=" + fake.URL(), "GENAUTH_APP_ID=" + fake.AppID(),
		"SMSQ_HTTP_ADDR=off", "SMSQ_POLL_INTERVAL=20ms", "SMSQ_LOG_FORMAT=json", "SMSQ_SHUTDOWN_TIMEOUT=2s",
	}
	rdb := srv.Client()
	producer := smsq.NewClientFromRedis(rdb)
	ins := asynq.NewInspectorFromRedisClient(rdb)
	send := func() string {
		t.Helper()
		rc, err := producer.Send(context.Background(), smsq.Request{Channel: "CHANNEL_REGISTER", Phone: "13700137000"})
		if err != nil {
			t.Fatal(err)
		}
		return rc.TaskID
	}

	w1 := startChild(t, "worker1", append(base, "SMSQ_PHONE_HASH_KEY="+key)...)
	first := send()
	if _, r := waitFinal(t, ins, "default", first); r.Outcome != tasks.OutcomeSent {
		t.Fatalf("first task: %+v, want sent", r)
	}
	w1.stop()
	w2 := startChild(t, "worker2", append(base, "SMSQ_PHONE_HASH_KEY_FILE="+file)...)
	second := send()
	if _, r := waitFinal(t, ins, "default", second); r.Outcome != tasks.OutcomeDeduplicated || r.Holder != first {
		t.Fatalf("second task in another process: %+v, want deduplicated, held by %s", r, first)
	}
	if n := fake.CallsFor("+86", "13700137000", "CHANNEL_REGISTER"); n != 1 {
		t.Fatalf("GenAuth calls = %d, want 1", n)
	}

	hasher, err := dedupe.NewHasher([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	const e164 = "+8613700137000"
	ctx := context.Background()
	keyed := hasher.PhoneHash(e164)
	for _, k := range []string{
		"smsq:resv:{" + keyed + "}:CHANNEL_REGISTER",
		history.PhoneKey(history.DefaultPrefix, keyed),
	} {
		if n, err := rdb.Exists(ctx, k).Result(); err != nil || n != 1 {
			t.Errorf("keyed key %s: exists %d, %v", k, n, err)
		}
	}
	for _, k := range []string{
		dedupe.Key(dedupe.DefaultPrefix, e164, "CHANNEL_REGISTER"),
		history.PhoneKey(history.DefaultPrefix, dedupe.PhoneHash(e164)),
	} {
		if n, err := rdb.Exists(ctx, k).Result(); err != nil || n != 0 {
			t.Errorf("unkeyed key %s: exists %d, %v; want the keyed name only", k, n, err)
		}
	}
	w2.stop()
	for _, l := range []string{w1.logs(), w2.logs()} {
		if strings.Contains(l, key) {
			t.Fatalf("a worker log shows the hash key:\n%s", l)
		}
		if !strings.Contains(l, `"phone_hash":"hmac-sha256"`) {
			t.Errorf("start-up line does not say the phone hash is keyed:\n%s", l)
		}
	}
}

func TestPhoneHashKeyTooShort(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	err := runToError(t, nil, quietEnv(srv.URL(), map[string]string{"SMSQ_PHONE_HASH_KEY": "short-pw"}))
	if err == nil || !strings.Contains(err.Error(), "SMSQ_PHONE_HASH_KEY") || strings.Contains(err.Error(), "short-pw") {
		t.Fatalf("error %v; want one naming SMSQ_PHONE_HASH_KEY without the key", err)
	}
}
