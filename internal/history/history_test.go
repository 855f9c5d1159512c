package history_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/redisconn"
	"github.com/smsq/smsq/internal/redistest"
)

const phoneHash = "0123456789abcdef0123456789abcdef"

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// ident is the identity of the tests' tasks.
var ident = history.IdentityOf("default", []byte(`{"channel":"CHANNEL_LOGIN"}`))

func newStore(t *testing.T, cfg history.Config) (*history.Store, *redis.Client) {
	t.Helper()
	c := redistest.Start(t).Client()
	cfg.Client = c
	s, err := history.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s, c
}

func entry(id, outcome string, final bool, at time.Time) history.Entry {
	return history.Entry{TaskID: id, Outcome: outcome, Final: final, UpdatedAt: at,
		Result: json.RawMessage(fmt.Sprintf(`{"outcome":%q}`, outcome))}
}

func TestBeginCountsAttemptsAndKeepsFirstSeen(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, history.Config{})
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		b, err := s.Begin(ctx, "task-1", ident, t0.Add(time.Duration(i-1)*time.Minute))
		if err != nil {
			t.Fatalf("Begin #%d: %v", i, err)
		}
		if b.Attempt != i || !b.FirstSeen.Equal(t0) || b.Outcome != "" || b.UnknownAttempts != 0 {
			t.Fatalf("Begin #%d = %+v, want attempt %d first seen %v", i, b, i, t0)
		}
	}
	b, err := s.Begin(ctx, "task-2", ident, t0.Add(time.Hour))
	if err != nil {
		t.Fatalf("Begin task-2: %v", err)
	}
	if b.Attempt != 1 || !b.FirstSeen.Equal(t0.Add(time.Hour)) {
		t.Fatalf("Begin task-2 = %+v, want a first attempt of its own", b)
	}
	if _, err := s.Begin(ctx, "", ident, t0); err == nil {
		t.Fatal("Begin with an empty task ID succeeded")
	}
}

func TestRecordFinalIsSeenByNextBegin(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, history.Config{})
	ctx := context.Background()
	if _, err := s.Begin(ctx, "task-1", ident, t0); err != nil {
		t.Fatal(err)
	}
	// A non-final attempt leaves the outcome open.
	if err := s.Record(ctx, phoneHash, entry("task-1", "retrying", false, t0), false); err != nil {
		t.Fatalf("Record: %v", err)
	}
	b, err := s.Begin(ctx, "task-1", ident, t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if b.Outcome != "" || b.Attempt != 2 {
		t.Fatalf("Begin after a retry = %+v, want attempt 2 without outcome", b)
	}
	if err := s.Record(ctx, phoneHash, entry("task-1", "sent", true, t0.Add(time.Second)), false); err != nil {
		t.Fatalf("Record: %v", err)
	}
	b, err = s.Begin(ctx, "task-1", ident, t0.Add(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if b.Outcome != "sent" || b.Attempt != 3 || !b.FirstSeen.Equal(t0) {
		t.Fatalf("Begin after the final record = %+v, want outcome sent, attempt 3", b)
	}

	e, ok, err := s.Task(ctx, "task-1")
	if err != nil || !ok {
		t.Fatalf("Task = %v, %v", ok, err)
	}
	if e.Outcome != "sent" || !e.Final || !e.UpdatedAt.Equal(t0.Add(time.Second)) || string(e.Result) != `{"outcome":"sent"}` {
		t.Fatalf("Task = %+v, want the final entry", e)
	}
	if _, ok, err := s.Task(ctx, "task-none"); ok || err != nil {
		t.Fatalf("Task(unknown) = %v, %v; want not found", ok, err)
	}
}

func TestRecordWithoutPhoneStillFixesOutcome(t *testing.T) {
	t.Parallel()
	s, c := newStore(t, history.Config{})
	ctx := context.Background()
	// An invalid payload has no phone to index by.
	if err := s.Record(ctx, "", entry("task-bad", "invalid", true, t0), false); err != nil {
		t.Fatalf("Record: %v", err)
	}
	b, err := s.Begin(ctx, "task-bad", ident, t0)
	if err != nil {
		t.Fatal(err)
	}
	if b.Outcome != "invalid" {
		t.Fatalf("Begin = %+v, want outcome invalid", b)
	}
	if n, err := c.Exists(ctx, history.PhoneKey(history.DefaultPrefix, "")).Result(); err != nil || n != 0 {
		t.Fatalf("phone index for an empty hash exists (%d, %v)", n, err)
	}
	if err := s.Record(ctx, phoneHash, history.Entry{Outcome: "sent"}, false); err == nil {
		t.Fatal("Record with an empty task ID succeeded")
	}
}

func TestUnknownAttemptsCounted(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, history.Config{})
	ctx := context.Background()
	for i, unknown := range []bool{true, false, true} {
		if _, err := s.Begin(ctx, "task-1", ident, t0); err != nil {
			t.Fatal(err)
		}
		outcome := "retrying"
		if unknown {
			outcome = "unknown"
		}
		if err := s.Record(ctx, phoneHash, entry("task-1", outcome, false, t0.Add(time.Duration(i)*time.Second)), unknown); err != nil {
			t.Fatalf("Record: %v", err)
		}
	}
	b, err := s.Begin(ctx, "task-1", ident, t0)
	if err != nil {
		t.Fatal(err)
	}
	if b.UnknownAttempts != 2 || b.Attempt != 4 {
		t.Fatalf("Begin = %+v, want 2 unknown attempts of 4", b)
	}
}

func TestRecentNewestFirstAndTrimmed(t *testing.T) {
	t.Parallel()
	s, c := newStore(t, history.Config{PerPhone: 3, Prefix: "test"})
	ctx := context.Background()
	for i := 1; i <= 5; i++ {
		id := fmt.Sprintf("task-%d", i)
		if err := s.Record(ctx, phoneHash, entry(id, "sent", true, t0.Add(time.Duration(i)*time.Second)), false); err != nil {
			t.Fatalf("Record %s: %v", id, err)
		}
	}
	// An update moves a task to the front.
	if err := s.Record(ctx, phoneHash, entry("task-3", "deduplicated", true, t0.Add(time.Minute)), false); err != nil {
		t.Fatal(err)
	}
	if err := s.Record(ctx, "ffffffffffffffffffffffffffffffff", entry("other", "sent", true, t0.Add(time.Hour)), false); err != nil {
		t.Fatal(err)
	}

	got, err := s.Recent(ctx, phoneHash, 0)
	if err != nil {
		t.Fatalf("Recent: %v", err)
	}
	var ids []string
	for _, e := range got {
		ids = append(ids, e.TaskID+"="+e.Outcome)
	}
	if want := "task-3=deduplicated task-5=sent task-4=sent"; strings.Join(ids, " ") != want {
		t.Fatalf("Recent = %q, want %q", strings.Join(ids, " "), want)
	}
	if n, err := c.ZCard(ctx, history.PhoneKey("test", phoneHash)).Result(); err != nil || n != 3 {
		t.Fatalf("phone index holds %d (%v), want 3", n, err)
	}
	got, err = s.Recent(ctx, phoneHash, 1)
	if err != nil || len(got) != 1 || got[0].TaskID != "task-3" {
		t.Fatalf("Recent(limit 1) = %+v, %v; want task-3", got, err)
	}
	if got, err := s.Recent(ctx, "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", 0); err != nil || len(got) != 0 {
		t.Fatalf("Recent(unknown phone) = %+v, %v; want none", got, err)
	}
}

func TestRecentSkipsExpiredTasks(t *testing.T) {
	t.Parallel()
	s, c := newStore(t, history.Config{})
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		if err := s.Record(ctx, phoneHash, entry(id, "sent", true, t0), false); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Del(ctx, history.TaskKey(history.DefaultPrefix, "a")).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := s.Recent(ctx, phoneHash, 0)
	if err != nil || len(got) != 1 || got[0].TaskID != "b" {
		t.Fatalf("Recent = %+v, %v; want only b", got, err)
	}
}

func TestKeysExpire(t *testing.T) {
	t.Parallel()
	s, c := newStore(t, history.Config{Retention: time.Second})
	ctx := context.Background()
	if _, err := s.Begin(ctx, "task-1", ident, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.Record(ctx, phoneHash, entry("task-1", "sent", true, time.Now()), false); err != nil {
		t.Fatal(err)
	}
	tk, pk := history.TaskKey(history.DefaultPrefix, "task-1"), history.PhoneKey(history.DefaultPrefix, phoneHash)
	for _, k := range []string{tk, pk} {
		ttl, err := c.PTTL(ctx, k).Result()
		if err != nil || ttl <= 0 || ttl > time.Second {
			t.Fatalf("PTTL(%s) = %v, %v; want within (0, 1s]", k, ttl, err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := c.Exists(ctx, tk, pk).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of the keys still exist after their retention", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, err := s.Begin(ctx, "task-1", ident, t0)
	if err != nil {
		t.Fatal(err)
	}
	if b.Attempt != 1 || b.Outcome != "" {
		t.Fatalf("Begin after expiry = %+v, want a fresh task", b)
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	if got, want := history.TaskKey("smsq", "abc"), "smsq:task:{abc}"; got != want {
		t.Fatalf("TaskKey = %q, want %q", got, want)
	}
	if got, want := history.PhoneKey("smsq", phoneHash), "smsq:phone:{"+phoneHash+"}"; got != want {
		t.Fatalf("PhoneKey = %q, want %q", got, want)
	}
}

func TestNewConfig(t *testing.T) {
	t.Parallel()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = c.Close() })
	tests := []struct {
		name    string
		cfg     history.Config
		mention string // empty: valid
	}{
		{"defaults", history.Config{Client: c}, ""},
		{"all set", history.Config{Client: c, Prefix: "x", Retention: time.Second, PerPhone: 1}, ""},
		{"no client", history.Config{}, "Client"},
		{"short retention", history.Config{Client: c, Retention: 999 * time.Millisecond}, "Retention"},
		{"negative retention", history.Config{Client: c, Retention: -time.Hour}, "Retention"},
		{"negative per phone", history.Config{Client: c, PerPhone: -1}, "PerPhone"},
	}
	for _, tt := range tests {
		_, err := history.New(tt.cfg)
		switch {
		case tt.mention == "" && err != nil:
			t.Errorf("%s: New: %v", tt.name, err)
		case tt.mention != "" && (err == nil || !strings.Contains(err.Error(), tt.mention)):
			t.Errorf("%s: New error = %v, want one naming %s", tt.name, err, tt.mention)
		}
	}
}

// An attempt that began and never recorded (the worker died or was cut
// off mid-call) shows as Interrupted to the next one; a recorded attempt
// does not.
func TestBeginReportsInterruptedAttempt(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, history.Config{})
	ctx := context.Background()
	now := time.Now()
	b, err := s.Begin(ctx, "t-int", ident, now)
	if err != nil || b.Interrupted {
		t.Fatalf("first Begin = %+v, %v; want not interrupted", b, err)
	}
	if b, err = s.Begin(ctx, "t-int", ident, now); err != nil || !b.Interrupted {
		t.Fatalf("Begin after an unrecorded attempt = %+v, %v; want interrupted", b, err)
	}
	e := history.Entry{TaskID: "t-int", Outcome: "retrying", UpdatedAt: now, Result: []byte(`{}`)}
	if err := s.Record(ctx, "", e, false); err != nil {
		t.Fatal(err)
	}
	if b, err = s.Begin(ctx, "t-int", ident, now); err != nil || b.Interrupted {
		t.Fatalf("Begin after a recorded attempt = %+v, %v; want not interrupted", b, err)
	}
}

func TestRecordWithSendsExtraWritesInTheSameRequest(t *testing.T) {
	t.Parallel()
	s, c := newStore(t, history.Config{})
	ctx := context.Background()
	// Connect first (pipelines have a pool of their own): the handshake of
	// a new connection is not the point.
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error { return p.Ping(ctx).Err() }); err != nil {
		t.Fatal(err)
	}
	requests := &redisconn.Requests{}
	c.AddHook(requests)

	var extra *redis.StatusCmd
	var failing *redis.Cmd
	var afterOutcome *redis.StringCmd
	err := s.RecordWith(ctx, phoneHash, entry("task-1", "sent", true, t0), false, func(p redis.Pipeliner) {
		extra = p.Set(ctx, "extra", "1", 0)
		// A failing extra command is the caller's to read, not Record's.
		failing = p.Do(ctx, "NOSUCHCOMMAND")
	}, func(p redis.Pipeliner) {
		// Queued behind the entry: it sees the entry written.
		afterOutcome = p.HGet(ctx, history.TaskKey(history.DefaultPrefix, "task-1"), "outcome")
	})
	if err != nil {
		t.Fatalf("RecordWith: %v", err)
	}
	if n := requests.Load(); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
	if extra.Err() != nil || c.Get(ctx, "extra").Val() != "1" {
		t.Fatalf("extra SET: %v", extra.Err())
	}
	if failing.Err() == nil {
		t.Fatal("the unknown command did not fail")
	}
	if v, err := afterOutcome.Result(); err != nil || v != "sent" {
		t.Fatalf("the write queued after the entry read outcome %q, %v; want sent", v, err)
	}
	e, ok, err := s.Task(ctx, "task-1")
	if err != nil || !ok || e.Outcome != "sent" || !e.Final {
		t.Fatalf("Task = %+v, %v, %v; want the final entry", e, ok, err)
	}
	if ids, _ := s.Recent(ctx, phoneHash, 0); len(ids) != 1 {
		t.Fatalf("Recent = %v, want the task", ids)
	}
}

func TestIdentityOf(t *testing.T) {
	t.Parallel()
	a := history.IdentityOf("critical", []byte(`{"x":1}`))
	for _, other := range []history.Identity{
		history.IdentityOf("default", []byte(`{"x":1}`)),
		history.IdentityOf("critical", []byte(`{"x":2}`)),
		// The separator keeps the queue and the payload apart.
		history.IdentityOf("critical{", []byte(`"x":1}`)),
	} {
		if other.Hash == a.Hash {
			t.Errorf("identities %+v and %+v share a hash", a, other)
		}
	}
	if b := history.IdentityOf("critical", []byte(`{"x":1}`)); b != a || len(a.Hash) != 32 {
		t.Errorf("IdentityOf is not stable: %+v, %+v", a, b)
	}
}

// A second task under an ID that already names a task (another queue,
// another payload) is not taken for a redelivery: Begin leaves the holder's
// record alone and reports the collision; its own entry is kept apart,
// indexed by its own phone, and a redelivery of it finds that entry.
func TestBeginCollision(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, history.Config{})
	ctx := context.Background()
	first := history.IdentityOf("critical", []byte(`{"phone":"a"}`))
	other := history.IdentityOf("default", []byte(`{"phone":"b"}`))
	if b, err := s.Begin(ctx, "k", first, t0); err != nil || b.Collision != nil || b.Attempt != 1 {
		t.Fatalf("first Begin = %+v, %v", b, err)
	}
	if err := s.Record(ctx, phoneHash, entry("k", "sent", true, t0), false); err != nil {
		t.Fatal(err)
	}
	b, err := s.Begin(ctx, "k", other, t0.Add(time.Second))
	if err != nil || b.Collision == nil || b.Collision.Queue != "critical" || b.Collision.Recorded != nil || b.Outcome != "" || b.Attempt != 0 {
		t.Fatalf("colliding Begin = %+v (%+v), %v; want a collision with the critical task, nothing else", b, b.Collision, err)
	}
	const otherPhone = "fedcba9876543210fedcba9876543210"
	e := entry("k", "invalid", true, t0.Add(time.Second))
	e.Collision = other.Hash
	if err := s.Record(ctx, otherPhone, e, false); err != nil {
		t.Fatal(err)
	}
	// The holder is untouched: its redelivery still finds its own outcome.
	if b, err := s.Begin(ctx, "k", first, t0.Add(2*time.Second)); err != nil || b.Collision != nil || b.Outcome != "sent" || b.Attempt != 2 {
		t.Fatalf("holder's Begin = %+v, %v; want its own sent outcome", b, err)
	}
	if got, ok, err := s.Task(ctx, "k"); err != nil || !ok || got.Outcome != "sent" || got.PhoneHash != phoneHash {
		t.Fatalf("Task = %+v, %v, %v; want the holder's entry", got, ok, err)
	}
	// The colliding task's redelivery gets its own recorded result back.
	b, err = s.Begin(ctx, "k", other, t0.Add(3*time.Second))
	if err != nil || b.Collision == nil || string(b.Collision.Recorded) != `{"outcome":"invalid"}` {
		t.Fatalf("colliding redelivery Begin = %+v, %v; want its own recorded result", b.Collision, err)
	}
	// Each phone sees only its own task's entry.
	for _, tt := range []struct{ phone, outcome string }{{phoneHash, "sent"}, {otherPhone, "invalid"}} {
		got, err := s.Recent(ctx, tt.phone, 10)
		if err != nil || len(got) != 1 || got[0].Outcome != tt.outcome {
			t.Errorf("Recent(%s) = %+v, %v; want one %s entry", tt.phone, got, err, tt.outcome)
		}
	}
	all, err := s.Entries(ctx, "k")
	if err != nil || len(all) != 2 || all[0].Collision != "" || all[1].Collision != other.Hash {
		t.Fatalf("Entries = %+v, %v; want the holder then the colliding task", all, err)
	}
}

// A claim takes the ID for every queue; only a claim never begun is given
// back, and only by its own producer.
func TestClaimAndRelease(t *testing.T) {
	t.Parallel()
	s, c := newStore(t, history.Config{})
	ctx := context.Background()
	a := history.IdentityOf("critical", []byte(`{"a":1}`))
	b := history.IdentityOf("low", []byte(`{"b":1}`))
	ca, err := s.Claim(ctx, "key-1", a, time.Hour)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if ttl := c.PTTL(ctx, history.TaskKey("smsq", "key-1")).Val(); ttl < 59*time.Minute {
		t.Fatalf("claim TTL %v, want about an hour", ttl)
	}
	_, err = s.Claim(ctx, "key-1", b, time.Hour)
	var held *history.Held
	if !errors.As(err, &held) || !errors.Is(err, history.ErrClaimed) || !strings.Contains(err.Error(), "queue critical") {
		t.Fatalf("second Claim = %v, want ErrClaimed naming queue critical", err)
	}
	if held.Begun || !held.Unbegun(0) || held.Unbegun(time.Minute) {
		t.Fatalf("held = %+v: want a fresh claim no worker began", held)
	}
	if _, ok, err := s.Task(ctx, "key-1"); err != nil || ok {
		t.Fatalf("Task of a claimed ID = %v, %v; want no entry before an attempt", ok, err)
	}
	// The claim is the task's identity: the worker's Begin agrees with it,
	// another task's Begin collides.
	if got, err := s.Begin(ctx, "key-1", b, t0); err != nil || got.Collision == nil {
		t.Fatalf("Begin of another task = %+v, %v; want a collision", got, err)
	}
	if err := s.Release(ctx, history.Claim{TaskID: "key-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, "key-1", b, time.Hour); !errors.Is(err, history.ErrClaimed) {
		t.Fatalf("a claim without its token was released: %v", err)
	}
	if err := s.Release(ctx, ca); err != nil {
		t.Fatal(err)
	}
	cb, err := s.Claim(ctx, "key-1", b, time.Hour)
	if err != nil {
		t.Fatalf("Claim after Release: %v", err)
	}
	// Begun: never given back, never taken over.
	if _, err := s.Begin(ctx, "key-1", b, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, cb); err != nil {
		t.Fatal(err)
	}
	_, err = s.Claim(ctx, "key-1", a, time.Hour)
	if !errors.As(err, &held) || !held.Begun || held.Unbegun(0) {
		t.Fatalf("a begun task's ID was released, or looks unbegun: %v, %+v", err, held)
	}
	// An ID a raw producer's task began under (no claim) is taken too.
	if _, err := s.Begin(ctx, "raw-1", a, t0); err != nil {
		t.Fatal(err)
	}
	_, err = s.Claim(ctx, "raw-1", b, time.Hour)
	if !errors.As(err, &held) || held.Unbegun(0) {
		t.Fatalf("Claim of a begun raw task's ID = %v, %+v; want ErrClaimed, not unbegun", err, held)
	}
}

// TakeOver is a compare-and-set on the claim: of two producers taking over
// the same claim one wins, the first claim's late Release gives back
// nothing, and a claim a worker began meanwhile is not replaced.
func TestTakeOver(t *testing.T) {
	t.Parallel()
	s, c := newStore(t, history.Config{})
	ctx := context.Background()
	a := history.IdentityOf("critical", []byte(`{"a":1}`))
	b := history.IdentityOf("low", []byte(`{"b":1}`))
	first, err := s.Claim(ctx, "key-1", a, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var h1, h2 *history.Held
	_, err1 := s.Claim(ctx, "key-1", b, time.Hour)
	_, err2 := s.Claim(ctx, "key-1", b, time.Hour)
	if !errors.As(err1, &h1) || !errors.As(err2, &h2) {
		t.Fatalf("Claims of a claimed ID = %v, %v", err1, err2)
	}
	if _, err := s.TakeOver(ctx, h1, b, 2*time.Hour); err != nil {
		t.Fatalf("TakeOver: %v", err)
	}
	if _, err := s.TakeOver(ctx, h2, b, 2*time.Hour); !errors.Is(err, history.ErrClaimed) {
		t.Fatalf("second TakeOver of the same claim = %v, want ErrClaimed", err)
	}
	if q := c.HGet(ctx, history.TaskKey("smsq", "key-1"), "queue").Val(); q != "low" {
		t.Fatalf("queue after TakeOver = %q, want low", q)
	}
	if got, err := s.Begin(ctx, "key-1", b, t0); err != nil || got.Collision != nil {
		t.Fatalf("Begin of the new claim's task = %+v, %v; want no collision", got, err)
	}
	if err := s.Release(ctx, first); err != nil {
		t.Fatal(err)
	}
	if n := c.Exists(ctx, history.TaskKey("smsq", "key-1")).Val(); n != 1 {
		t.Fatal("the replaced claim's Release deleted the record")
	}
	// Begun since the holder was read: not replaced.
	if _, err := s.Claim(ctx, "key-2", a, time.Hour); err != nil {
		t.Fatal(err)
	}
	var h *history.Held
	if _, err := s.Claim(ctx, "key-2", b, time.Hour); !errors.As(err, &h) {
		t.Fatal(err)
	}
	if _, err := s.Begin(ctx, "key-2", a, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakeOver(ctx, h, b, time.Hour); !errors.Is(err, history.ErrClaimed) {
		t.Fatalf("TakeOver of a claim begun meanwhile = %v, want ErrClaimed", err)
	}
}

// A result asynq keeps on the task for the journal's retention is not
// copied into the journal: the readers take it from the task. One asynq
// keeps for less, or for an unknown time, is copied, and a later entry
// kept on the task leaves no stale copy behind.
func TestResultKeptOnTaskIsNotCopied(t *testing.T) {
	t.Parallel()
	s, c := newStore(t, history.Config{Retention: time.Hour})
	ctx := context.Background()
	onTask := `{"outcome":"sent","requestId":"on-task"}`

	if _, err := s.Begin(ctx, "kept", ident, t0); err != nil {
		t.Fatal(err)
	}
	// An earlier attempt whose result asynq keeps too briefly is copied.
	short := entry("kept", "retrying", false, t0)
	short.ResultKeptFor = 59 * time.Minute
	if err := s.Record(ctx, phoneHash, short, false); err != nil {
		t.Fatal(err)
	}
	if got := c.HGet(ctx, history.TaskKey("smsq", "kept"), "result").Val(); got != `{"outcome":"retrying"}` {
		t.Fatalf("journal result %q, want the copy of a result asynq keeps for less than the retention", got)
	}
	final := entry("kept", "sent", true, t0.Add(time.Second))
	final.ResultKeptFor = time.Hour
	if err := s.Record(ctx, phoneHash, final, false); err != nil {
		t.Fatal(err)
	}
	if got := c.HGet(ctx, history.TaskKey("smsq", "kept"), "result").Val(); got != "" {
		t.Fatalf("journal result %q, want none: asynq keeps it", got)
	}
	// Nothing on the task yet (its write lost): the entry still tells the
	// outcome, without a result.
	e, ok, err := s.Task(ctx, "kept")
	if err != nil || !ok || e.Outcome != "sent" || !e.Final || e.Result != nil {
		t.Fatalf("Task = %+v, %v, %v; want sent, final, no result", e, ok, err)
	}
	if err := c.HSet(ctx, history.ResultKey(ident.Queue, "kept"), "result", onTask).Err(); err != nil {
		t.Fatal(err)
	}
	e, ok, err = s.Task(ctx, "kept")
	if err != nil || !ok || string(e.Result) != onTask {
		t.Fatalf("Task = %+v, %v, %v; want the result kept on the task", e, ok, err)
	}
	recent, err := s.Recent(ctx, phoneHash, 5)
	if err != nil || len(recent) != 1 || string(recent[0].Result) != onTask {
		t.Fatalf("Recent = %+v, %v; want the task with the result kept on it", recent, err)
	}
	// A task that is not JSON on the asynq side (a hand-written value)
	// gives no result rather than a broken one.
	if err := c.HSet(ctx, history.ResultKey(ident.Queue, "kept"), "result", "{not json").Err(); err != nil {
		t.Fatal(err)
	}
	if e, _, err := s.Task(ctx, "kept"); err != nil || e.Result != nil {
		t.Fatalf("Task = %+v, %v; want no result from a value that is not JSON", e, err)
	}
}
