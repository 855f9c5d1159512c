package main

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smsq/smsq/internal/redistest"
)

// urlPassword holds every character URLs reserve, between pieces that each
// hold redistest.URLSecret.
const urlPassword = "SeCrEt1#SeCrEt2@SeCrEt3:SeCrEt4/SeCrEt5%SeCrEt6?SeCrEt7 SeCrEt8&SeCrEt9"

// TestRedisURLSecretsInStartLog starts the worker on a password-protected
// Redis through each URL form that carries a password, and checks that the
// start-up log shows where it connected without the password.
func TestRedisURLSecretsInStartLog(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Options{Args: []string{"--requirepass", urlPassword,
		"--user", "smsq", "on", ">" + urlPassword, "~*", "&*", "+@all"}})
	g := redistest.StartSentinelGroup(t, redistest.SentinelOptions{Sentinels: 1})
	// The sentinel asks for a password only now, once the group is ready.
	sc := g.Sentinels[0].Client()
	if err := sc.Do(context.Background(), "ACL", "SETUSER", "default", "on", ">"+urlPassword).Err(); err != nil {
		t.Fatalf("set the sentinel's password: %v", err)
	}
	enc := url.UserPassword("", urlPassword).String()
	urls := []string{
		"redis://" + enc + "@" + srv.Addr() + "/0",
		"redis://smsq" + enc + "@" + srv.Addr() + "/0?client_name=smsq",
		g.URL() + "&sentinel_password=" + url.QueryEscape(urlPassword),
	}
	for i, u := range urls {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			_, logs := startWorker(t, quietEnv(u, nil))
			out := logs.String()
			if !strings.Contains(out, "xxxxx") {
				t.Errorf("start-up log does not show the redacted URL:\n%s", out)
			}
			if strings.Contains(out, redistest.URLSecret) {
				t.Errorf("start-up log shows the password:\n%s", out)
			}
		})
	}
}

// TestRedisURLSecretsInErrors runs the worker with every URL form of
// redistest.SecretURLs pointing where no Redis listens: the error and the
// logs never show a password, whole or in part.
func TestRedisURLSecretsInErrors(t *testing.T) {
	t.Parallel()
	addr := "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t))
	// Concurrently rather than as parallel subtests: each run mostly waits
	// for dials to fail, and -parallel would run only two at a time.
	var wg sync.WaitGroup
	for _, u := range redistest.SecretURLs(addr) {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, logs := &syncBuffer{}, &syncBuffer{}
			err := run(ctx, nil, env(quietEnv(u, nil)), out, logs, &hooks{ready: func(*worker) {
				t.Errorf("worker started on %q", u)
				cancel()
			}})
			if err == nil {
				t.Errorf("run(%q) = nil error", u)
				return
			}
			for what, s := range map[string]string{"error": err.Error(), "stdout": out.String(), "log": logs.String()} {
				if strings.Contains(s, redistest.URLSecret) {
					t.Errorf("REDIS_URL %q: %s shows the password: %s", u, what, s)
				}
			}
		})
	}
	wg.Wait()
}
