package main

import (
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/smsq/smsq/internal/redistest"
)

// TestRedisURLSecretsInErrors runs enqueue, enqueue batch and why with
// every URL form of redistest.SecretURLs pointing where no Redis listens:
// no output shows a password, whole or in part.
func TestRedisURLSecretsInErrors(t *testing.T) {
	t.Parallel()
	addr := "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t))
	commands := map[string]struct {
		stdin string
		args  []string
	}{
		"enqueue": {"", []string{"--channel", "CHANNEL_LOGIN", "--phone", "+8613800138000", "--timeout", "2s"}},
		"batch":   {"channel,phone\nCHANNEL_LOGIN,+8613800138000\n", []string{"batch", "--timeout", "2s"}},
		"why":     {"", []string{"why", "--phone", "+8613800138000"}},
	}
	// Concurrently rather than as parallel subtests: each run mostly waits
	// for dials to fail, and -parallel would run only two at a time.
	var wg sync.WaitGroup
	for name, c := range commands {
		for _, u := range redistest.SecretURLs(addr) {
			wg.Go(func() {
				r := runCmd(t, u, c.stdin, c.args...)
				if r.err == nil {
					t.Errorf("%s with REDIS_URL %q: no error", name, u)
				}
				if out := errText(r.err) + r.stdout + r.stderr; strings.Contains(out, redistest.URLSecret) {
					t.Errorf("%s with REDIS_URL %q: output shows the password: %s", name, u, out)
				}
			})
		}
	}
	wg.Wait()
}
