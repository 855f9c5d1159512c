package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smsq/smsq/internal/config"
	"github.com/smsq/smsq/internal/redistest"
)

// quietEnv is the base of these tests' environments: no HTTP listener, so
// parallel workers do not compete for a port.
func quietEnv(redisURL string, extra map[string]string) map[string]string {
	m := map[string]string{"REDIS_URL": redisURL, "SMSQ_HTTP_ADDR": "off"}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// runToError runs the worker, expecting it to refuse to start; a worker
// that starts is stopped and reported.
func runToError(t *testing.T, args []string, vars map[string]string) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := func(*worker) {
		t.Errorf("worker started with args %q and env %v; want a start-up error", args, vars)
		cancel()
	}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, env(vars), io.Discard, &syncBuffer{}, &hooks{ready: started}) }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("run(%q, %v) neither failed nor started", args, vars)
		return nil
	}
}

// TestSettingsErrors checks that each bad setting stops start-up with an
// error naming it. Redis is reachable, so every check is reached whatever
// the order of start-up.
func TestSettingsErrors(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	tests := []struct {
		vars map[string]string
		args []string
		want string
	}{
		{vars: map[string]string{"SMSQ_CONCURRENCY": "abc"}, want: "SMSQ_CONCURRENCY"},
		{vars: map[string]string{"SMSQ_CONCURRENCY": "0"}, want: "SMSQ_CONCURRENCY"},
		{vars: map[string]string{"SMSQ_CONCURRENCY": "-3"}, want: "SMSQ_CONCURRENCY"},
		{vars: map[string]string{"SMSQ_FETCHERS": "-1"}, want: "SMSQ_FETCHERS"},
		{vars: map[string]string{"SMSQ_FETCHERS": "5", "SMSQ_CONCURRENCY": "4"}, want: "SMSQ_FETCHERS"},
		// Bounded: 100000 made 1,000 fetch loops polling Redis 71k times a second.
		{vars: map[string]string{"SMSQ_CONCURRENCY": "100000"}, want: "SMSQ_CONCURRENCY 100000: must be between 1 and 1000"},
		{vars: map[string]string{"SMSQ_CONCURRENCY": "1000", "SMSQ_FETCHERS": "11"}, want: "SMSQ_FETCHERS 11: must be between 1 and SMSQ_CONCURRENCY (1000) and at most 10"},
		{vars: map[string]string{"SMSQ_QUEUES": "bad"}, want: "SMSQ_QUEUES"},
		{vars: map[string]string{"SMSQ_QUEUES": "critical=0"}, want: "SMSQ_QUEUES"},
		{vars: map[string]string{"SMSQ_LOG_LEVEL": "loud"}, want: "SMSQ_LOG_LEVEL"},
		{vars: map[string]string{"SMSQ_LOG_FORMAT": "xml"}, want: "SMSQ_LOG_FORMAT"},
		{vars: map[string]string{"SMSQ_ON_HELD": "maybe"}, want: "SMSQ_ON_HELD"},
		{vars: map[string]string{"SMSQ_CLASSIFY": "x"}, want: "SMSQ_CLASSIFY"},
		{vars: map[string]string{"SMSQ_STRICT_PRIORITY": "perhaps"}, want: "SMSQ_STRICT_PRIORITY"},
		{vars: map[string]string{"SMSQ_RETENTION": "forever"}, want: "SMSQ_RETENTION"},
		{vars: map[string]string{"SMSQ_SHUTDOWN_TIMEOUT": "0s"}, want: "SMSQ_SHUTDOWN_TIMEOUT"},
		{vars: map[string]string{"SMSQ_POLL_INTERVAL": "1ms"}, want: "SMSQ_POLL_INTERVAL"},
		{vars: map[string]string{"SMSQ_SEND_BY": "-1s"}, want: "SMSQ_SEND_BY"},
		{vars: map[string]string{"SMSQ_WINDOW": "-1s"}, want: "SMSQ_WINDOW"},
		{vars: map[string]string{"SMSQ_GENAUTH_TIMEOUT": "-1s"}, want: "SMSQ_GENAUTH_TIMEOUT"},
		{vars: map[string]string{"SMSQ_GENAUTH_LANG": "xx"}, want: "SMSQ_GENAUTH_LANG"},
		{vars: map[string]string{"SMSQ_GENAUTH_HEADER_PREFIX": "x-bad-"}, want: "SMSQ_GENAUTH_HEADER_PREFIX"},
		{vars: map[string]string{"GENAUTH_APP_HOST": "https://example.genauth.ai"}, want: "GENAUTH_APP_ID"},
		{vars: map[string]string{"GENAUTH_APP_ID": "app"}, want: "GENAUTH_APP_HOST"},
		{vars: map[string]string{"REDIS_URL": "ftp://x"}, want: "REDIS_URL"},
		{vars: map[string]string{"REDIS_URL_FILE": filepath.Join(t.TempDir(), "missing")}, want: "REDIS_URL_FILE"},
		// A flag fixes only its own setting.
		{vars: map[string]string{"SMSQ_CONCURRENCY": "abc", "SMSQ_QUEUES": "bad"}, args: []string{"--concurrency", "5"}, want: "SMSQ_QUEUES"},
		{args: []string{"--concurrency", "many"}, want: "concurrency"},
		{args: []string{"--nope"}, want: "nope"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.args, tt.vars), func(t *testing.T) {
			t.Parallel()
			vars := quietEnv(srv.URL(), tt.vars)
			if _, ok := tt.vars["REDIS_URL_FILE"]; ok {
				delete(vars, "REDIS_URL")
			}
			err := runToError(t, tt.args, vars)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("run(%q, %v) = %v; want an error naming %s", tt.args, tt.vars, err, tt.want)
			}
		})
	}
}

// TestSettingsRedisUnreachable checks that a Redis nobody listens on is
// reported as such, promptly, without the password.
func TestSettingsRedisUnreachable(t *testing.T) {
	t.Parallel()
	url := fmt.Sprintf("redis://:hunter2@127.0.0.1:%d/0", redistest.FreePort(t))
	start := time.Now()
	err := runToError(t, nil, quietEnv(url, nil))
	if err == nil || !strings.Contains(err.Error(), "cannot reach Redis") {
		t.Fatalf("run = %v; want an error saying it cannot reach Redis", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error %q shows the Redis password", err)
	}
	// Generous: the point is "seconds, not a hang", not a latency figure.
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("run took %s to give up on Redis", d)
	}
}

// TestSettingsPrecedence checks flag over environment over default, and
// secrets read from <ENV>_FILE.
func TestSettingsPrecedence(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "redis_url")
	if err := os.WriteFile(file, []byte("redis://:pw@10.0.0.1:6379/2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name            string
		vars            map[string]string
		args            []string
		wantConcurrency int
		wantRedisURL    string
	}{
		{"defaults", nil, nil, 100, defaultRedisURL},
		{"env", map[string]string{"SMSQ_CONCURRENCY": "7", "REDIS_URL": "redis://r:6379/1"}, nil, 7, "redis://r:6379/1"},
		{"flag over env", map[string]string{"SMSQ_CONCURRENCY": "7"}, []string{"--concurrency", "5"}, 5, defaultRedisURL},
		{"flag over bad env", map[string]string{"SMSQ_CONCURRENCY": "abc"}, []string{"--concurrency=5"}, 5, defaultRedisURL},
		{"file", map[string]string{"REDIS_URL_FILE": file}, nil, 100, "redis://:pw@10.0.0.1:6379/2"},
		{"flag over file", map[string]string{"REDIS_URL_FILE": file}, []string{"--redis-url", "redis://f:6379/0"}, 100, "redis://f:6379/0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var s settings
			set := config.NewSet("worker", env(tt.vars), io.Discard)
			bindSettings(set, &s)
			if err := set.Parse(tt.args); err != nil {
				t.Fatalf("Parse(%q) with %v: %v", tt.args, tt.vars, err)
			}
			if s.Concurrency != tt.wantConcurrency {
				t.Fatalf("Concurrency = %d, want %d", s.Concurrency, tt.wantConcurrency)
			}
			if s.RedisURL != tt.wantRedisURL {
				t.Fatalf("RedisURL = %q, want %q", s.RedisURL, tt.wantRedisURL)
			}
		})
	}
}

// TestSettingsStart checks that a worker configured by flag over a bad
// variable, and with its Redis URL in a file, really starts.
func TestSettingsStart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	file := filepath.Join(t.TempDir(), "redis_url")
	if err := os.WriteFile(file, []byte(srv.URL()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		vars map[string]string
	}{
		{"flag over bad env", []string{"--concurrency", "5"}, quietEnv(srv.URL(), map[string]string{"SMSQ_CONCURRENCY": "abc"})},
		{"REDIS_URL_FILE", nil, map[string]string{"REDIS_URL_FILE": file, "SMSQ_HTTP_ADDR": "off"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			logs := &syncBuffer{}
			ready := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				done <- run(ctx, tt.args, env(tt.vars), io.Discard, logs, &hooks{ready: func(*worker) { close(ready) }})
			}()
			select {
			case <-ready:
			case err := <-done:
				t.Fatalf("run(%q, %v) = %v; want it to start\n%s", tt.args, tt.vars, err, logs)
			case <-time.After(30 * time.Second):
				t.Fatalf("run(%q, %v) did not start\n%s", tt.args, tt.vars, logs)
			}
			if tt.name == "flag over bad env" && !strings.Contains(logs.String(), `"concurrency":5`) && !strings.Contains(logs.String(), "concurrency=5") {
				t.Errorf("start-up log does not show concurrency 5:\n%s", logs)
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("worker stopped with %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("worker did not stop\n%s", logs)
			}
		})
	}
}
