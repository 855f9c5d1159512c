package dedupe_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/redisconn"
	"github.com/smsq/smsq/internal/redistest"
)

const (
	phone   = "+8613800138000"
	digits  = "8613800138000"
	channel = "sms"
)

// newStore starts a real Redis for the test and returns a Store on it and
// a raw client for inspecting keys.
func newStore(t testing.TB, window time.Duration, opts ...redistest.Options) (*dedupe.Store, *redis.Client, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t, opts...)
	c := srv.Client()
	s, err := dedupe.New(dedupe.Config{Client: c, Window: window})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s, c, srv
}

func pttl(t *testing.T, c *redis.Client, key string) time.Duration {
	t.Helper()
	d, err := c.PTTL(context.Background(), key).Result()
	if err != nil {
		t.Fatalf("PTTL: %v", err)
	}
	return d
}

// checkSince fails unless since is close to now (server and test share a
// machine, so their clocks agree).
func checkSince(t *testing.T, since time.Time) {
	t.Helper()
	if d := time.Since(since); d < -time.Second || d > 5*time.Second {
		t.Fatalf("Since = %v, %v away from now; want within seconds", since, d)
	}
}

func TestKeyGolden(t *testing.T) {
	t.Parallel()
	got := dedupe.Key("smsq", phone, channel)
	want := "smsq:resv:{ec61f3c620a98bdead8c1f1f0ae747ab}:sms"
	if got != want {
		t.Fatalf("Key = %q, want %q", got, want)
	}
	if got, want := dedupe.PhoneHash(phone), "ec61f3c620a98bdead8c1f1f0ae747ab"; got != want {
		t.Fatalf("PhoneHash = %q, want %q", got, want)
	}
}

func TestKeyForm(t *testing.T) {
	t.Parallel()
	re := regexp.MustCompile(`^p:resv:\{([0-9a-f]{32})\}:(sms|voice)$`)
	phones := []string{phone, "+14155552671", "+447911123456"}
	seen := map[string]bool{}
	for _, p := range phones {
		sms, voice := dedupe.Key("p", p, "sms"), dedupe.Key("p", p, "voice")
		for _, k := range []string{sms, voice} {
			if !re.MatchString(k) {
				t.Fatalf("Key(%q) = %q, want form %s", p, k, re)
			}
			if strings.Contains(k, strings.TrimPrefix(p, "+")) {
				t.Fatalf("Key %q contains the phone digits", k)
			}
		}
		tagSMS, tagVoice := re.FindStringSubmatch(sms)[1], re.FindStringSubmatch(voice)[1]
		if tagSMS != tagVoice {
			t.Fatalf("hash tags differ across channels: %q vs %q", tagSMS, tagVoice)
		}
		if seen[tagSMS] {
			t.Fatalf("two phones share hash tag %q", tagSMS)
		}
		seen[tagSMS] = true
	}
}

// TestKeySlot asks a cluster-enabled Redis which slot each key maps to:
// all keys of one phone must share it.
func TestKeySlot(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Options{Args: []string{"--cluster-enabled", "yes"}})
	c := srv.Client()
	ctx := context.Background()
	a, err := c.ClusterKeySlot(ctx, dedupe.Key("smsq", phone, "sms")).Result()
	if err != nil {
		t.Fatalf("CLUSTER KEYSLOT: %v", err)
	}
	b, err := c.ClusterKeySlot(ctx, dedupe.Key("smsq", phone, "voice")).Result()
	if err != nil {
		t.Fatalf("CLUSTER KEYSLOT: %v", err)
	}
	if a != b {
		t.Fatalf("slots differ: sms %d, voice %d", a, b)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	tests := []struct {
		name    string
		cfg     dedupe.Config
		wantErr string // substring; empty means success
	}{
		{"defaults", dedupe.Config{Client: c}, ""},
		{"one second", dedupe.Config{Client: c, Window: time.Second}, ""},
		{"no client", dedupe.Config{}, "Config.Client"},
		{"negative window", dedupe.Config{Client: c, Window: -time.Second}, "Config.Window"},
		{"short window", dedupe.Config{Client: c, Window: 999 * time.Millisecond}, "Config.Window"},
		{"sub-millisecond window", dedupe.Config{Client: c, Window: time.Second + time.Microsecond}, "Config.Window"},
		{"brace in prefix", dedupe.Config{Client: c, Prefix: "a{b"}, "Config.Prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := dedupe.New(tt.cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				want := tt.cfg.Window
				if want == 0 {
					want = dedupe.DefaultWindow
				}
				if got := s.Window(); got != want {
					t.Fatalf("Window() = %v, want %v", got, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want one naming %s", err, tt.wantErr)
			}
		})
	}
}

// TestArgs checks that empty arguments are refused before Redis is asked:
// the client points at a closed port, so any Redis call would fail with a
// connection error instead.
func TestArgs(t *testing.T) {
	t.Parallel()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer c.Close()
	s, err := dedupe.New(dedupe.Config{Client: c})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx := context.Background()
	calls := map[string]func(e164, ch, owner string) error{
		"Acquire":     func(e, ch, o string) error { _, _, err := s.Acquire(ctx, e, ch, o); return err },
		"MarkSent":    func(e, ch, o string) error { return s.MarkSent(ctx, e, ch, o) },
		"MarkUnknown": func(e, ch, o string) error { return s.MarkUnknown(ctx, e, ch, o) },
		"Release":     func(e, ch, o string) error { _, err := s.Release(ctx, e, ch, o); return err },
		"Get":         func(e, ch, _ string) error { _, _, err := s.Get(ctx, e, ch); return err },
	}
	for name, call := range calls {
		for _, tt := range []struct{ e164, ch, owner, want string }{
			{"", channel, "t1", "e164"},
			{phone, "", "t1", "channel"},
			{phone, channel, "", "owner"},
		} {
			if name == "Get" && tt.want == "owner" {
				continue
			}
			err := call(tt.e164, tt.ch, tt.owner)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("%s with empty %s: error = %v, want one naming %s", name, tt.want, err, tt.want)
			}
		}
	}
}

func TestAcquireNewAndReenter(t *testing.T) {
	t.Parallel()
	s, c, _ := newStore(t, time.Minute)
	ctx := context.Background()
	key := dedupe.Key("smsq", phone, channel)

	got, r, err := s.Acquire(ctx, phone, channel, "task-1")
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if got != dedupe.AcquiredNew {
		t.Fatalf("Acquire = %v, want %v", got, dedupe.AcquiredNew)
	}
	if r.Owner != "task-1" || r.State != dedupe.StateReserved || r.TTL != time.Minute {
		t.Fatalf("Reservation = %+v, want owner task-1, state reserved, TTL 1m", r)
	}
	checkSince(t, r.Since)
	if ttl := pttl(t, c, key); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("PTTL = %v, want in (0, 1m]", ttl)
	}

	// Shorten the TTL by hand: a re-entry must not restart it.
	if err := c.PExpire(ctx, key, 30*time.Second).Err(); err != nil {
		t.Fatalf("PEXPIRE: %v", err)
	}
	got, r2, err := s.Acquire(ctx, phone, channel, "task-1")
	if err != nil {
		t.Fatalf("re-Acquire: %v", err)
	}
	if got != dedupe.AcquiredReentered {
		t.Fatalf("re-Acquire = %v, want %v", got, dedupe.AcquiredReentered)
	}
	if r2.Owner != "task-1" || r2.State != dedupe.StateReserved || !r2.Since.Equal(r.Since) {
		t.Fatalf("re-Acquire Reservation = %+v, want owner task-1, state reserved, since %v", r2, r.Since)
	}
	if r2.TTL <= 0 || r2.TTL > 30*time.Second {
		t.Fatalf("re-Acquire TTL = %v, want in (0, 30s]", r2.TTL)
	}
	if ttl := pttl(t, c, key); ttl > 30*time.Second {
		t.Fatalf("PTTL after re-entry = %v, want <= 30s (unchanged)", ttl)
	}

	// A re-entry after MarkSent reports the sent state.
	if err := s.MarkSent(ctx, phone, channel, "task-1"); err != nil {
		t.Fatalf("MarkSent: %v", err)
	}
	got, r3, err := s.Acquire(ctx, phone, channel, "task-1")
	if err != nil || got != dedupe.AcquiredReentered || r3.State != dedupe.StateSent {
		t.Fatalf("Acquire after MarkSent = %v, %+v, %v; want reentered, state sent", got, r3, err)
	}
}

func TestAcquireHeld(t *testing.T) {
	t.Parallel()
	s, _, _ := newStore(t, time.Minute)
	ctx := context.Background()
	if _, _, err := s.Acquire(ctx, phone, channel, "task-1"); err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if err := s.MarkUnknown(ctx, phone, channel, "task-1"); err != nil {
		t.Fatalf("MarkUnknown: %v", err)
	}
	got, r, err := s.Acquire(ctx, phone, channel, "task-2")
	if !errors.Is(err, dedupe.ErrHeld) {
		t.Fatalf("Acquire by another owner: error = %v, want ErrHeld", err)
	}
	if got != 0 {
		t.Fatalf("Acquired = %v, want 0", got)
	}
	if r.Owner != "task-1" || r.State != dedupe.StateUnknown {
		t.Fatalf("holder = %+v, want owner task-1, state unknown", r)
	}
	if r.TTL <= 0 || r.TTL > s.Window() {
		t.Fatalf("holder TTL = %v, want in (0, %v]", r.TTL, s.Window())
	}
	checkSince(t, r.Since)

	// Another channel of the same phone is a different pair.
	if got, _, err := s.Acquire(ctx, phone, "voice", "task-2"); err != nil || got != dedupe.AcquiredNew {
		t.Fatalf("Acquire on another channel = %v, %v; want new", got, err)
	}
}

func TestRelease(t *testing.T) {
	t.Parallel()
	s, _, _ := newStore(t, time.Minute)
	ctx := context.Background()
	if ok, err := s.Release(ctx, phone, channel, "task-1"); err != nil || ok {
		t.Fatalf("Release of nothing = %v, %v; want false, nil", ok, err)
	}
	if _, _, err := s.Acquire(ctx, phone, channel, "task-1"); err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if ok, err := s.Release(ctx, phone, channel, "task-2"); err != nil || ok {
		t.Fatalf("Release by another owner = %v, %v; want false, nil", ok, err)
	}
	if r, ok, err := s.Get(ctx, phone, channel); err != nil || !ok || r.Owner != "task-1" {
		t.Fatalf("Get after foreign Release = %+v, %v, %v; want held by task-1", r, ok, err)
	}
	if ok, err := s.Release(ctx, phone, channel, "task-1"); err != nil || !ok {
		t.Fatalf("Release by owner = %v, %v; want true, nil", ok, err)
	}
	if _, ok, err := s.Get(ctx, phone, channel); err != nil || ok {
		t.Fatalf("Get after Release = %v, %v; want none", ok, err)
	}
	if got, _, err := s.Acquire(ctx, phone, channel, "task-2"); err != nil || got != dedupe.AcquiredNew {
		t.Fatalf("Acquire after Release = %v, %v; want new", got, err)
	}
}

func TestMark(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		state dedupe.State
		mark  func(*dedupe.Store, context.Context, string, string, string) error
	}{
		{"MarkSent", dedupe.StateSent, (*dedupe.Store).MarkSent},
		{"MarkUnknown", dedupe.StateUnknown, (*dedupe.Store).MarkUnknown},
		{"MarkSentIn", dedupe.StateSent, markSentIn},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, c, _ := newStore(t, time.Minute)
			ctx := context.Background()
			key := dedupe.Key("smsq", phone, channel)

			if err := tt.mark(s, ctx, phone, channel, "task-1"); !errors.Is(err, dedupe.ErrNotOwner) {
				t.Fatalf("%s with no reservation: error = %v, want ErrNotOwner", tt.name, err)
			}
			_, r0, err := s.Acquire(ctx, phone, channel, "task-1")
			if err != nil {
				t.Fatalf("Acquire: %v", err)
			}
			if err := c.PExpire(ctx, key, 5*time.Second).Err(); err != nil {
				t.Fatalf("PEXPIRE: %v", err)
			}
			if err := tt.mark(s, ctx, phone, channel, "task-2"); !errors.Is(err, dedupe.ErrNotOwner) {
				t.Fatalf("%s by another owner: error = %v, want ErrNotOwner", tt.name, err)
			}
			if r, _, _ := s.Get(ctx, phone, channel); r.State != dedupe.StateReserved || r.TTL > 5*time.Second {
				t.Fatalf("after foreign %s: %+v, want unchanged (reserved, TTL <= 5s)", tt.name, r)
			}
			if err := tt.mark(s, ctx, phone, channel, "task-1"); err != nil {
				t.Fatalf("%s by owner: %v", tt.name, err)
			}
			r, ok, err := s.Get(ctx, phone, channel)
			if err != nil || !ok {
				t.Fatalf("Get = %v, %v", ok, err)
			}
			if r.Owner != "task-1" || r.State != tt.state {
				t.Fatalf("after %s: %+v, want owner task-1, state %s", tt.name, r, tt.state)
			}
			if r.TTL <= 5*time.Second || r.TTL > time.Minute {
				t.Fatalf("TTL after %s = %v, want restarted near 1m", tt.name, r.TTL)
			}
			if r.Since.Before(r0.Since) {
				t.Fatalf("Since went back: %v before %v", r.Since, r0.Since)
			}
			checkSince(t, r.Since)
		})
	}
}

// markSentIn runs MarkSentIn in a pipeline of its own.
func markSentIn(s *dedupe.Store, ctx context.Context, e164, channel, owner string) error {
	p := s.Client().Pipeline()
	check := s.MarkSentIn(ctx, p, e164, channel, owner)
	_, _ = p.Exec(ctx)
	return check()
}

func TestMarkSentInRidesOnePipeline(t *testing.T) {
	t.Parallel()
	s, c, _ := newStore(t, time.Minute)
	ctx := context.Background()
	for _, ch := range []string{"a", "b"} {
		if _, _, err := s.Acquire(ctx, phone, ch, "task-1"); err != nil {
			t.Fatalf("Acquire: %v", err)
		}
	}
	// A Redis that lost its scripts (restart, failover): the mark falls
	// back to a call of its own, which loads the script.
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}
	if err := markSentIn(s, ctx, phone, "a", "task-1"); err != nil {
		t.Fatalf("MarkSentIn after SCRIPT FLUSH: %v", err)
	}
	if r, _, _ := s.Get(ctx, phone, "a"); r.State != dedupe.StateSent {
		t.Fatalf("after MarkSentIn: state %s, want sent", r.State)
	}

	// With the script known, the mark and the other writes are one
	// request, and the other writes happen too.
	trips := &redisconn.Requests{}
	c.AddHook(trips)
	p := c.Pipeline()
	check := s.MarkSentIn(ctx, p, phone, "b", "task-1")
	set := p.Set(ctx, "other", "1", 0)
	if _, err := p.Exec(ctx); err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if err := check(); err != nil {
		t.Fatalf("MarkSentIn: %v", err)
	}
	if n := trips.Load(); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
	if set.Err() != nil {
		t.Fatalf("SET in the same pipeline: %v", set.Err())
	}
	if r, _, _ := s.Get(ctx, phone, "b"); r.State != dedupe.StateSent || r.TTL <= 55*time.Second {
		t.Fatalf("after MarkSentIn: %+v, want sent with the window restarted", r)
	}
	if err := markSentIn(s, ctx, "", "b", "task-1"); err == nil {
		t.Fatal("MarkSentIn with an empty phone: no error")
	}
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	s, _, _ := newStore(t, time.Second)
	ctx := context.Background()
	if _, _, err := s.Acquire(ctx, phone, channel, "task-1"); err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if err := s.MarkSent(ctx, phone, channel, "task-1"); err != nil {
		t.Fatalf("MarkSent: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, ok, err := s.Get(ctx, phone, channel)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reservation with a 1s window still there after 5s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := s.MarkSent(ctx, phone, channel, "task-1"); !errors.Is(err, dedupe.ErrNotOwner) {
		t.Fatalf("MarkSent after expiry: error = %v, want ErrNotOwner", err)
	}
	if got, r, err := s.Acquire(ctx, phone, channel, "task-2"); err != nil || got != dedupe.AcquiredNew || r.Owner != "task-2" {
		t.Fatalf("Acquire after expiry = %v, %+v, %v; want new for task-2", got, r, err)
	}
}

// TestNoPhoneInRedis checks that neither keys nor values carry the number.
func TestNoPhoneInRedis(t *testing.T) {
	t.Parallel()
	s, c, _ := newStore(t, time.Minute)
	ctx := context.Background()
	if _, _, err := s.Acquire(ctx, phone, channel, "task-1"); err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if err := s.MarkSent(ctx, phone, channel, "task-1"); err != nil {
		t.Fatalf("MarkSent: %v", err)
	}
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatalf("KEYS: %v", err)
	}
	if len(keys) != 1 {
		t.Fatalf("keys = %q, want one", keys)
	}
	for _, k := range keys {
		if strings.Contains(k, digits) {
			t.Fatalf("key %q contains the phone digits", k)
		}
		vals, err := c.HGetAll(ctx, k).Result()
		if err != nil {
			t.Fatalf("HGETALL: %v", err)
		}
		for f, v := range vals {
			if strings.Contains(f, digits) || strings.Contains(v, digits) {
				t.Fatalf("hash %q field %q = %q contains the phone digits", k, f, v)
			}
		}
	}
}

// TestOwnerAnyCharacters checks that owners are compared as opaque
// strings, byte for byte.
func TestOwnerAnyCharacters(t *testing.T) {
	t.Parallel()
	s, _, _ := newStore(t, time.Minute)
	ctx := context.Background()
	owner := "task:{1}\x00'\"%s\n🙂"
	if got, _, err := s.Acquire(ctx, phone, channel, owner); err != nil || got != dedupe.AcquiredNew {
		t.Fatalf("Acquire = %v, %v", got, err)
	}
	if got, r, err := s.Acquire(ctx, phone, channel, owner); err != nil || got != dedupe.AcquiredReentered || r.Owner != owner {
		t.Fatalf("re-Acquire = %v, %+v, %v", got, r, err)
	}
	if _, _, err := s.Acquire(ctx, phone, channel, "task:{1}"); !errors.Is(err, dedupe.ErrHeld) {
		t.Fatalf("Acquire by a prefix of the owner: error = %v, want ErrHeld", err)
	}
	if ok, err := s.Release(ctx, phone, channel, owner); err != nil || !ok {
		t.Fatalf("Release = %v, %v", ok, err)
	}
}

func TestConcurrentAcquire(t *testing.T) {
	t.Parallel()
	s, _, _ := newStore(t, time.Minute)
	ctx := context.Background()
	const n = 50
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		results = make([]dedupe.Acquired, n)
		holders = make([]dedupe.Reservation, n)
		errs    = make([]error, n)
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], holders[i], errs[i] = s.Acquire(ctx, phone, channel, fmt.Sprintf("task-%d", i))
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for i := range n {
		switch {
		case results[i] == dedupe.AcquiredNew && errs[i] == nil:
			if winner >= 0 {
				t.Fatalf("both task-%d and task-%d acquired", winner, i)
			}
			winner = i
		case errors.Is(errs[i], dedupe.ErrHeld):
		default:
			t.Fatalf("task-%d: Acquire = %v, %v; want new or ErrHeld", i, results[i], errs[i])
		}
	}
	if winner < 0 {
		t.Fatalf("no goroutine acquired")
	}
	want := fmt.Sprintf("task-%d", winner)
	for i := range n {
		if i != winner && holders[i].Owner != want {
			t.Fatalf("task-%d saw holder %q, want %q", i, holders[i].Owner, want)
		}
	}
}

func TestSurvivesRestart(t *testing.T) {
	t.Parallel()
	s, _, srv := newStore(t, time.Minute, redistest.Options{AppendOnly: true})
	ctx := context.Background()
	if _, _, err := s.Acquire(ctx, phone, channel, "task-1"); err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if err := s.MarkSent(ctx, phone, channel, "task-1"); err != nil {
		t.Fatalf("MarkSent: %v", err)
	}
	before, ok, err := s.Get(ctx, phone, channel)
	if err != nil || !ok {
		t.Fatalf("Get before restart = %v, %v", ok, err)
	}

	srv.Restart()

	// The restarted server has an empty script cache, so this also proves
	// the EVALSHA-to-EVAL fallback.
	after, ok, err := s.Get(ctx, phone, channel)
	if err != nil || !ok {
		t.Fatalf("Get after restart = %v, %v; want the reservation", ok, err)
	}
	if after.Owner != "task-1" || after.State != dedupe.StateSent || !after.Since.Equal(before.Since) {
		t.Fatalf("after restart = %+v, want %+v with less TTL", after, before)
	}
	if after.TTL <= 0 || after.TTL > before.TTL {
		t.Fatalf("TTL after restart = %v, want in (0, %v]", after.TTL, before.TTL)
	}
	// The TTL keeps counting down on the restarted server.
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, ok, err := s.Get(ctx, phone, channel)
		if err != nil || !ok {
			t.Fatalf("Get = %v, %v", ok, err)
		}
		if r.TTL < after.TTL {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("TTL stuck at %v after restart", r.TTL)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, _, err := s.Acquire(ctx, phone, channel, "task-2"); !errors.Is(err, dedupe.ErrHeld) {
		t.Fatalf("Acquire by another owner after restart: error = %v, want ErrHeld", err)
	}
}

func BenchmarkAcquireRelease(b *testing.B) {
	s, _, _ := newStore(b, time.Minute)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.Acquire(ctx, phone, channel, "task-1"); err != nil {
			b.Fatalf("Acquire: %v", err)
		}
		if ok, err := s.Release(ctx, phone, channel, "task-1"); err != nil || !ok {
			b.Fatalf("Release = %v, %v", ok, err)
		}
	}
}

// A new reservation lives window + grace, so that it outlasts the
// provider's window even if its sent mark is lost; the mark itself restarts
// the plain window.
func TestGraceOnNewReservationOnly(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := srv.Client()
	s, err := dedupe.New(dedupe.Config{Client: c, Window: 30 * time.Second, Grace: 12 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := s.Acquire(ctx, phone, channel, "t1"); err != nil {
		t.Fatal(err)
	}
	key := dedupe.Key(dedupe.DefaultPrefix, phone, channel)
	if d := pttl(t, c, key); d <= 30*time.Second || d > 42*time.Second {
		t.Fatalf("new reservation TTL %s, want in (30s, 42s]", d)
	}
	if err := s.MarkSent(ctx, phone, channel, "t1"); err != nil {
		t.Fatal(err)
	}
	if d := pttl(t, c, key); d <= 25*time.Second || d > 30*time.Second {
		t.Fatalf("TTL after MarkSent %s, want the plain 30s window", d)
	}
	if _, err := dedupe.New(dedupe.Config{Client: c, Grace: -time.Second}); err == nil || !strings.Contains(err.Error(), "Grace") {
		t.Fatalf("negative Grace: %v, want an error naming Grace", err)
	}
}

// A held key without a TTL (written by hand) gets the window on the next
// acquire, so it cannot block its pair for ever.
func TestHeldKeyWithoutTTLGetsOne(t *testing.T) {
	t.Parallel()
	s, c, _ := newStore(t, 20*time.Second)
	ctx := context.Background()
	key := dedupe.Key(dedupe.DefaultPrefix, phone, channel)
	if err := c.HSet(ctx, key, "owner", "someone", "state", "sent", "since_ms", "1").Err(); err != nil {
		t.Fatal(err)
	}
	_, r, err := s.Acquire(ctx, phone, channel, "t2")
	if !errors.Is(err, dedupe.ErrHeld) || r.TTL != 20*time.Second {
		t.Fatalf("Acquire = %+v, %v; want ErrHeld with the 20s window as TTL", r, err)
	}
	if d := pttl(t, c, key); d <= 0 || d > 20*time.Second {
		t.Fatalf("key TTL %s, want the window", d)
	}
}

// TestHasherKeyed checks that a deployment key changes every phone's hash
// (so a masked phone from a log line no longer leads back to the number by
// hashing the few candidates), that the same key gives the same hash in
// every process, and that no key keeps the unkeyed form.
func TestHasherKeyed(t *testing.T) {
	t.Parallel()
	key := []byte("0123456789abcdef-deployment")
	h1, err := dedupe.NewHasher(key)
	if err != nil {
		t.Fatalf("NewHasher: %v", err)
	}
	h2, err := dedupe.NewHasher(append([]byte(nil), key...))
	if err != nil {
		t.Fatalf("NewHasher: %v", err)
	}
	other, err := dedupe.NewHasher([]byte("another key, 16+ bytes"))
	if err != nil {
		t.Fatalf("NewHasher: %v", err)
	}
	if got, want := h1.PhoneHash(phone), dedupe.PhoneHash(phone); got == want {
		t.Fatalf("keyed PhoneHash = %q, the unkeyed SHA-256 form", got)
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(h1.PhoneHash(phone)) {
		t.Fatalf("keyed PhoneHash = %q, want 32 hex digits", h1.PhoneHash(phone))
	}
	if h1.PhoneHash(phone) != h2.PhoneHash(phone) {
		t.Fatalf("two hashers with one key disagree: %q vs %q", h1.PhoneHash(phone), h2.PhoneHash(phone))
	}
	if h1.PhoneHash(phone) == other.PhoneHash(phone) {
		t.Fatalf("two keys give one hash %q", h1.PhoneHash(phone))
	}
	if h1.PhoneHash(phone) == h1.PhoneHash("+8613800138001") {
		t.Fatalf("two phones share hash %q", h1.PhoneHash(phone))
	}
	if got, want := (dedupe.Hasher{}).PhoneHash(phone), dedupe.PhoneHash(phone); got != want {
		t.Fatalf("zero Hasher = %q, want the unkeyed %q", got, want)
	}
	if plain, err := dedupe.NewHasher(nil); err != nil || plain.Keyed() || plain.PhoneHash(phone) != dedupe.PhoneHash(phone) {
		t.Fatalf("NewHasher(nil) = %v keyed %v, want the unkeyed hasher", err, plain.Keyed())
	}
	if !h1.Keyed() {
		t.Fatal("Keyed() = false with a key")
	}
}

func TestHasherShortKey(t *testing.T) {
	t.Parallel()
	_, err := dedupe.NewHasher([]byte("short-secret"))
	if err == nil {
		t.Fatal("NewHasher accepted a 12-byte key")
	}
	if strings.Contains(err.Error(), "short-secret") {
		t.Fatalf("error %q shows the key", err)
	}
}

// TestStoreHasherAcrossClients shares one key between two stores on their
// own connections (two workers): the second sees the first's reservation
// under the keyed name, and a store without the key does not, which is
// what the README says happens once at the switch.
func TestStoreHasherAcrossClients(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	key := []byte("shared deployment secret")
	hasher, err := dedupe.NewHasher(key)
	if err != nil {
		t.Fatal(err)
	}
	newStore := func(h dedupe.Hasher) *dedupe.Store {
		c := srv.Client()
		s, err := dedupe.New(dedupe.Config{Client: c, Hasher: h})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return s
	}
	h2, err := dedupe.NewHasher(append([]byte(nil), key...))
	if err != nil {
		t.Fatal(err)
	}
	a, b, plain := newStore(hasher), newStore(h2), newStore(dedupe.Hasher{})
	ctx := context.Background()
	if got, _, err := a.Acquire(ctx, phone, channel, "task-1"); err != nil || got != dedupe.AcquiredNew {
		t.Fatalf("Acquire = %v, %v", got, err)
	}
	if _, r, err := b.Acquire(ctx, phone, channel, "task-2"); !errors.Is(err, dedupe.ErrHeld) || r.Owner != "task-1" {
		t.Fatalf("second store with the key: Acquire = %+v, %v; want held by task-1", r, err)
	}
	if a.PhoneHash(phone) != hasher.PhoneHash(phone) || a.Key(phone, channel) != "smsq:resv:{"+hasher.PhoneHash(phone)+"}:"+channel {
		t.Fatalf("store key %q does not use its hasher", a.Key(phone, channel))
	}
	c := srv.Client()
	if n, err := c.Exists(ctx, a.Key(phone, channel)).Result(); err != nil || n != 1 {
		t.Fatalf("keyed reservation key: exists %d, %v", n, err)
	}
	if n, err := c.Exists(ctx, dedupe.Key(dedupe.DefaultPrefix, phone, channel)).Result(); err != nil || n != 0 {
		t.Fatalf("unkeyed reservation key exists (%d, %v): the key did not change the name", n, err)
	}
	if _, ok, err := plain.Get(ctx, phone, channel); err != nil || ok {
		t.Fatalf("store without the key sees the keyed reservation: %v, %v", ok, err)
	}
}
