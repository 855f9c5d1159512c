package main

import (
	"strings"
	"testing"

	"github.com/smsq/smsq/internal/dedupe"
)

// TestWhyPhoneHashKey runs why against a worker whose keys are named with
// a deployment hash key: with the same key it finds the phone's
// reservation and history; without it, it finds nothing (which is what
// the README says an operator sees when the key is missing).
func TestWhyPhoneHashKey(t *testing.T) {
	const key = "why-test deployment secret"
	hasher, err := dedupe.NewHasher([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	p := startPipelineWith(t, hasher)
	p.send(t, "keyed-1", "CHANNEL_LOGIN", "+8613800138000")
	url := p.redis.URL()

	r := runCmd(t, url, "", "why", "--phone-hash-key", key, "--phone", "13800138000")
	if r.code != 0 {
		t.Fatalf("exit %d: %v", r.code, r.err)
	}
	for _, want := range []string{"CHANNEL_LOGIN  sent  task keyed-1", "sent (final)  task keyed-1  CHANNEL_LOGIN"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("with the key, output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout+r.stderr, key) {
		t.Fatalf("output shows the hash key:\n%s%s", r.stdout, r.stderr)
	}

	r = runCmd(t, url, "", "why", "--phone", "13800138000")
	if r.code != 0 || !strings.Contains(r.stdout, "recent tasks: none kept") || !strings.Contains(r.stdout, "none on any of the 11 channels") {
		t.Fatalf("without the key: exit %d, %v; want nothing found:\n%s", r.code, r.err, r.stdout)
	}

	r = runCmd(t, url, "", "why", "--phone-hash-key", "too-short", "--phone", "13800138000")
	if r.code != 2 || !strings.Contains(errText(r.err), "SMSQ_PHONE_HASH_KEY") || strings.Contains(errText(r.err), "too-short") {
		t.Fatalf("short key: exit %d, error %v; want 2 naming SMSQ_PHONE_HASH_KEY without the key", r.code, r.err)
	}
}
