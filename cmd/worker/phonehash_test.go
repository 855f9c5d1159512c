package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/tasks"
)

// TestPhoneHashKeySharedByWorkers runs two workers given one
// SMSQ_PHONE_HASH_KEY (one by value, one through SMSQ_PHONE_HASH_KEY_FILE)
// on one Redis: duplicates of one pair spread over both still make one
// GenAuth call, the reservation and history keys carry the keyed hash and
// not the unkeyed SHA-256 one, and the key is never logged.
func TestPhoneHashKeySharedByWorkers(t *testing.T) {
	const key = "deployment-secret-0123456789"
	srv := redistest.Start(t)
	fake := genauthtest.NewServer(genauthtest.Options{})
	t.Cleanup(fake.Close)
	file := filepath.Join(t.TempDir(), "phone_hash_key")
	if err := os.WriteFile(file, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := map[string]string{
		"GENAUTH_APP_HOST": fake.URL(), "GENAUTH_APP_ID": fake.AppID(),
		"SMSQ_POLL_INTERVAL": "20ms", "SMSQ_LOG_FORMAT": "json",
	}
	_, logs1 := startWorker(t, quietEnv(srv.URL(), with(base, "SMSQ_PHONE_HASH_KEY", key)))
	_, logs2 := startWorker(t, quietEnv(srv.URL(), with(base, "SMSQ_PHONE_HASH_KEY_FILE", file)))

	rdb := srv.Client()
	producer := smsq.NewClientFromRedis(rdb)
	ins := asynq.NewInspectorFromRedisClient(rdb)
	var ids []string
	for i := 0; i < 10; i++ {
		rc, err := producer.Send(context.Background(), smsq.Request{Channel: "CHANNEL_REGISTER", Phone: "13700137000"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rc.TaskID)
	}
	outcomes := map[string]int{}
	for _, id := range ids {
		_, r := waitFinal(t, ins, "default", id)
		outcomes[r.Outcome]++
	}
	if outcomes[tasks.OutcomeSent] != 1 || outcomes[tasks.OutcomeDeduplicated] != 9 {
		t.Fatalf("outcomes = %v, want 1 sent and 9 deduplicated", outcomes)
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
	for _, l := range []string{logs1.String(), logs2.String()} {
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

// with returns a copy of m with k set to v.
func with(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for mk, mv := range m {
		out[mk] = mv
	}
	return out
}
