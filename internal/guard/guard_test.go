package guard_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/guard"
	"github.com/smsq/smsq/internal/phone"
	"github.com/smsq/smsq/internal/redistest"
)

// TestMain reports the tests skipped for want of redis-server in a line
// that go test shows without -v.
func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// clock is a clock the test drives.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// start is a few minutes into an hour, so that tests do not straddle a
// window by accident.
var start = time.Date(2030, 3, 5, 10, 3, 0, 0, time.UTC)

// only is a Config with every rule off but those set.
func only(c guard.Config) guard.Config {
	modes := map[string]guard.Mode{}
	for _, r := range guard.Rules {
		modes[r] = guard.Off
	}
	on := func(rule string, set bool) {
		if set {
			modes[rule] = guard.Enforce
		}
	}
	on(guard.RulePhone, c.Phone != nil)
	on(guard.RuleIP, c.IP != nil)
	on(guard.RulePrefix, c.Prefix != nil)
	on(guard.RuleCountry, c.Countries.Allowed != nil)
	on(guard.RuleBudget, c.Budget != nil)
	on(guard.RuleConversion, !c.Conversion.IsZero())
	for r, m := range c.Modes {
		modes[r] = m
	}
	c.Modes = modes
	return c
}

type env struct {
	g     *guard.Guard
	c     *redis.Client
	clock *clock
	h     dedupe.Hasher
}

func newEnv(t *testing.T, cfg guard.Config) *env {
	t.Helper()
	srv := redistest.Start(t)
	c := srv.Client()
	t.Cleanup(func() { c.Close() })
	h, err := dedupe.NewHasher([]byte("guard-test-key-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: start}
	g, err := guard.New(cfg, guard.Deps{Client: c, Hasher: h, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &env{g: g, c: c, clock: clk, h: h}
}

func num(t testing.TB, s string) phone.Number {
	t.Helper()
	n, err := phone.Parse(s, "")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *env) admit(t *testing.T, n phone.Number, ip, channel string) guard.Decision {
	t.Helper()
	d, err := e.g.Admit(context.Background(), guard.Request{Phone: n, ClientIP: ip, Channel: channel})
	if err != nil {
		t.Fatalf("Admit: %v", err)
	}
	return d
}

func lim(s string) []guard.Limit {
	l, err := guard.ParseLimits(s)
	if err != nil {
		panic(err)
	}
	return l
}

func wantBlocked(t *testing.T, d guard.Decision, rule string, lifts time.Time) {
	t.Helper()
	if d.Allowed || d.Rule != rule || !d.LiftsAt.Equal(lifts) {
		t.Fatalf("decision %+v; want blocked by %s until %s", d, rule, lifts)
	}
}

const victim = "+8613800138000"

func TestPhoneLimitAcrossChannels(t *testing.T) {
	t.Parallel()
	e := newEnv(t, only(guard.Config{Phone: lim("3/h,5/d")}))
	n := num(t, victim)
	for i, ch := range []string{"CHANNEL_LOGIN", "CHANNEL_REGISTER", "CHANNEL_RESET_PASSWORD"} {
		if d := e.admit(t, n, "", ch); !d.Allowed {
			t.Fatalf("send %d on %s blocked: %+v", i+1, ch, d)
		}
	}
	wantBlocked(t, e.admit(t, n, "", "CHANNEL_LOGIN"), guard.RulePhone, start.Truncate(time.Hour).Add(time.Hour))
	if d := e.admit(t, num(t, "+8613800138001"), "", "CHANNEL_LOGIN"); !d.Allowed {
		t.Fatalf("another phone blocked: %+v", d)
	}
	// The next hour lets two more through, then the day's limit holds
	// until midnight UTC.
	e.clock.Add(time.Hour)
	for range 2 {
		if d := e.admit(t, n, "", "CHANNEL_LOGIN"); !d.Allowed {
			t.Fatalf("blocked in the next hour: %+v", d)
		}
	}
	wantBlocked(t, e.admit(t, n, "", "CHANNEL_LOGIN"), guard.RulePhone, time.Date(2030, 3, 6, 0, 0, 0, 0, time.UTC))
}

// TestRefundCountsRealSendsOnly: a send that did not happen gives its
// count back, and a refund never goes below zero.
func TestRefundCountsRealSendsOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, only(guard.Config{Phone: lim("1/h"), Prefix: lim("1/h"), Budget: lim("1/d")}))
	n := num(t, victim)
	ctx := context.Background()
	for i := range 5 {
		d := e.admit(t, n, "", "CHANNEL_LOGIN")
		if !d.Allowed {
			t.Fatalf("admit %d after refunds blocked: %+v", i, d)
		}
		if err := e.g.Refund(ctx, d.Ticket); err != nil {
			t.Fatal(err)
		}
		// A second refund of the same ticket (a careless caller) must not
		// free a slot that another send holds.
		if err := e.g.Refund(ctx, d.Ticket); err != nil {
			t.Fatal(err)
		}
	}
	if d := e.admit(t, n, "", "CHANNEL_LOGIN"); !d.Allowed {
		t.Fatalf("blocked: %+v", d)
	}
	if d := e.admit(t, n, "", "CHANNEL_LOGIN"); d.Allowed {
		t.Fatal("second real send allowed under 1/h")
	}
}

// TestFloodDoesNotOvershoot: many concurrent sends for one phone, over
// many connections, get exactly the limit.
func TestFloodDoesNotOvershoot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, only(guard.Config{Phone: lim("10/h"), Budget: lim("1000/d")}))
	n := num(t, victim)
	var allowed, blocked atomic.Int64
	var wg sync.WaitGroup
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := e.g.Admit(context.Background(), guard.Request{Phone: n, Channel: fmt.Sprintf("CH%d", i%11)})
			if err != nil {
				t.Error(err)
				return
			}
			if d.Allowed {
				allowed.Add(1)
			} else if d.Rule == guard.RulePhone {
				blocked.Add(1)
			}
		}()
	}
	wg.Wait()
	if allowed.Load() != 10 || blocked.Load() != 290 {
		t.Fatalf("allowed %d, blocked %d; want 10 and 290", allowed.Load(), blocked.Load())
	}
	// Blocked sends counted nothing: the budget saw 10.
	rep, err := e.g.Inspect(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Counters {
		if c.Rule == guard.RuleBudget && c.Count != 10 {
			t.Fatalf("budget counted %d, want 10", c.Count)
		}
	}
}

func TestIPLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, only(guard.Config{IP: lim("2/h")}))
	for i := range 2 {
		if d := e.admit(t, num(t, fmt.Sprintf("+861380013800%d", i)), "203.0.113.7", "CHANNEL_LOGIN"); !d.Allowed {
			t.Fatalf("blocked: %+v", d)
		}
	}
	wantBlocked(t, e.admit(t, num(t, "+8613800138009"), "203.0.113.7", "CHANNEL_LOGIN"), guard.RuleIP, start.Truncate(time.Hour).Add(time.Hour))
	if d := e.admit(t, num(t, "+8613800138009"), "203.0.113.8", "CHANNEL_LOGIN"); !d.Allowed {
		t.Fatalf("other IP blocked: %+v", d)
	}
	// No IP: the rule has nothing to count.
	if d := e.admit(t, num(t, "+8613800138009"), "", "CHANNEL_LOGIN"); !d.Allowed {
		t.Fatalf("no IP blocked: %+v", d)
	}
	// One IPv6 subscriber holds a /64: rotating inside it does not help.
	for i := range 2 {
		if d := e.admit(t, num(t, victim), fmt.Sprintf("2001:db8:1:2::%x", i+1), "CHANNEL_LOGIN"); !d.Allowed {
			t.Fatalf("blocked: %+v", d)
		}
	}
	if d := e.admit(t, num(t, victim), "2001:db8:1:2:ffff::9", "CHANNEL_LOGIN"); d.Allowed || d.Rule != guard.RuleIP {
		t.Fatalf("third address in one /64: %+v", d)
	}
}

func TestPrefixLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, only(guard.Config{Prefix: lim("5/h")}))
	for i := range 5 {
		if d := e.admit(t, num(t, fmt.Sprintf("+86138001300%02d", i)), "", "CHANNEL_LOGIN"); !d.Allowed {
			t.Fatalf("blocked: %+v", d)
		}
	}
	wantBlocked(t, e.admit(t, num(t, "+8613800139999"), "", "CHANNEL_LOGIN"), guard.RulePrefix, start.Truncate(time.Hour).Add(time.Hour))
	if d := e.admit(t, num(t, "+8613800140000"), "", "CHANNEL_LOGIN"); !d.Allowed {
		t.Fatalf("next range blocked: %+v", d)
	}
}

func TestCountries(t *testing.T) {
	t.Parallel()
	cs, err := guard.ParseCountries("+86,+44=2/d")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, only(guard.Config{Countries: cs}))
	if d := e.admit(t, num(t, "+14155552671"), "", "CHANNEL_LOGIN"); d.Allowed || d.Rule != guard.RuleCountry || !d.LiftsAt.IsZero() {
		t.Fatalf("+1 not in the list: %+v", d)
	}
	uk := []string{"+447400123001", "+447400123002", "+447400123003"}
	for _, s := range uk[:2] {
		if d := e.admit(t, num(t, s), "", "CHANNEL_LOGIN"); !d.Allowed {
			t.Fatalf("blocked: %+v", d)
		}
	}
	wantBlocked(t, e.admit(t, num(t, uk[2]), "", "CHANNEL_LOGIN"), guard.RuleCountry, time.Date(2030, 3, 6, 0, 0, 0, 0, time.UTC))
	for range 20 {
		if d := e.admit(t, num(t, victim), "", "CHANNEL_LOGIN"); !d.Allowed {
			t.Fatalf("+86 has no cap: %+v", d)
		}
	}
}

func TestBudget(t *testing.T) {
	t.Parallel()
	e := newEnv(t, only(guard.Config{Budget: lim("10/d,1000/mo")}))
	var warned []guard.BudgetWarning
	e.g.OnBudgetWarning(func(w guard.BudgetWarning) { warned = append(warned, w) })
	for i := range 10 {
		d := e.admit(t, num(t, fmt.Sprintf("+86138%08d", i*10007)), "", "CHANNEL_LOGIN")
		if !d.Allowed {
			t.Fatalf("send %d blocked: %+v", i+1, d)
		}
		if (len(d.Warnings) == 1) != (i+1 == 8) {
			t.Fatalf("send %d warnings %+v; want one at the 8th only", i+1, d.Warnings)
		}
	}
	if len(warned) != 1 || warned[0].Limit.String() != "10/d" || warned[0].Used != 8 {
		t.Fatalf("warnings %+v", warned)
	}
	wantBlocked(t, e.admit(t, num(t, "+8613912345678"), "", "CHANNEL_LOGIN"), guard.RuleBudget, time.Date(2030, 3, 6, 0, 0, 0, 0, time.UTC))
}

// TestMonitorMode: a monitored rule reports what it would have blocked and
// blocks nothing; the enforced ones still block.
func TestMonitorMode(t *testing.T) {
	t.Parallel()
	e := newEnv(t, only(guard.Config{Phone: lim("1/h"), Budget: lim("3/d"), Modes: map[string]guard.Mode{guard.RulePhone: guard.Monitor}}))
	n := num(t, victim)
	e.admit(t, n, "", "CHANNEL_LOGIN")
	for i := range 2 {
		d := e.admit(t, n, "", "CHANNEL_LOGIN")
		if !d.Allowed || len(d.Monitored) != 1 || d.Monitored[0] != guard.RulePhone {
			t.Fatalf("send %d under a monitored limit: %+v", i+2, d)
		}
	}
	d := e.admit(t, n, "", "CHANNEL_LOGIN")
	if d.Allowed || d.Rule != guard.RuleBudget {
		t.Fatalf("enforced budget: %+v", d)
	}
}

// TestBlockedCountsNothing: a send one rule blocks is counted by no rule.
func TestBlockedCountsNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, only(guard.Config{Phone: lim("1/h"), Prefix: lim("1/h")}))
	a, b := num(t, "+8613800138000"), num(t, "+8613800138001")
	e.admit(t, a, "", "CHANNEL_LOGIN")
	for range 3 {
		if d := e.admit(t, b, "", "CHANNEL_LOGIN"); d.Rule != guard.RulePrefix {
			t.Fatalf("want the range blocked: %+v", d)
		}
	}
	ok, err := e.g.Lift(context.Background(), guard.RulePrefix, e.g.SubjectID(guard.RulePrefix, b, ""))
	if err != nil || !ok {
		t.Fatalf("Lift: %v %v", ok, err)
	}
	if d := e.admit(t, b, "", "CHANNEL_LOGIN"); !d.Allowed {
		t.Fatalf("b's phone counter counted blocked sends: %+v", d)
	}
}

func TestExempt(t *testing.T) {
	t.Parallel()
	cfg := only(guard.Config{Phone: lim("1/h")})
	cfg.Exempt = []string{"+8613800138099"}
	e := newEnv(t, cfg)
	for range 3 {
		if d := e.admit(t, num(t, "+8613800138099"), "", "CHANNEL_LOGIN"); !d.Allowed || !d.Exempt {
			t.Fatalf("exempt in the settings: %+v", d)
		}
	}
	n := num(t, victim)
	e.admit(t, n, "", "CHANNEL_LOGIN")
	if d := e.admit(t, n, "", "CHANNEL_LOGIN"); d.Allowed {
		t.Fatal("not exempt yet")
	}
	if err := e.g.Exempt(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	if d := e.admit(t, n, "", "CHANNEL_LOGIN"); !d.Allowed || !d.Exempt {
		t.Fatalf("exempt at run time: %+v", d)
	}
	if ok, err := e.g.Unexempt(context.Background(), n); !ok || err != nil {
		t.Fatalf("Unexempt: %v %v", ok, err)
	}
	if d := e.admit(t, n, "", "CHANNEL_LOGIN"); d.Allowed {
		t.Fatal("still exempt")
	}
}

func conv(t *testing.T, s string) guard.Conversion {
	t.Helper()
	c, err := guard.ParseConversion(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestConversionBreaker walks a range through closed, open, half-open and
// closed again, and half-open back to open.
func TestConversionBreaker(t *testing.T) {
	t.Parallel()
	e := newEnv(t, only(guard.Config{Conversion: conv(t, "min=50%,after=5,block=1h,probes=2,probe-wait=10m,country-after=1000")}))
	ctx := context.Background()
	rng := func(i int) phone.Number { return num(t, fmt.Sprintf("+86138001300%02d", i)) }
	// Until the producer reports a verified code on the channel, the
	// breaker judges nothing.
	for i := range 20 {
		if d := e.admit(t, rng(i), "", "CHANNEL_LOGIN"); !d.Allowed {
			t.Fatalf("breaker acted before any conversion was reported: %+v", d)
		}
	}
	if err := e.g.Verified(ctx, num(t, "+8613912345678"), "CHANNEL_LOGIN"); err != nil {
		t.Fatal(err)
	}
	// Sends on another channel that reports nothing are still not judged.
	for i := range 10 {
		if d := e.admit(t, rng(i), "", "CHANNEL_REGISTER"); !d.Allowed {
			t.Fatalf("unreported channel judged: %+v", d)
		}
	}
	for i := range 5 {
		if d := e.admit(t, rng(i), "", "CHANNEL_LOGIN"); !d.Allowed {
			t.Fatalf("send %d before enough sends: %+v", i+1, d)
		}
	}
	tripped := e.clock.Now()
	wantBlocked(t, e.admit(t, rng(50), "", "CHANNEL_LOGIN"), guard.RuleConversion, tripped.Add(time.Hour))
	// An open range blocks every channel.
	if d := e.admit(t, rng(51), "", "CHANNEL_REGISTER"); d.Rule != guard.RuleConversion {
		t.Fatalf("open range on another channel: %+v", d)
	}
	if d := e.admit(t, num(t, "+8613800140000"), "", "CHANNEL_LOGIN"); !d.Allowed {
		t.Fatalf("another range blocked: %+v", d)
	}
	// Half-open: two probes, then blocked until the probe wait ends.
	e.clock.Add(time.Hour)
	for i := range 2 {
		if d := e.admit(t, rng(60+i), "", "CHANNEL_LOGIN"); !d.Allowed {
			t.Fatalf("probe %d: %+v", i+1, d)
		}
	}
	wantBlocked(t, e.admit(t, rng(70), "", "CHANNEL_LOGIN"), guard.RuleConversion, e.clock.Now().Add(10*time.Minute))
	// A probe verified closes it.
	if err := e.g.Verified(ctx, rng(61), "CHANNEL_LOGIN"); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if d := e.admit(t, rng(80+i), "", "CHANNEL_LOGIN"); !d.Allowed {
			t.Fatalf("closed again, send %d: %+v", i+1, d)
		}
	}
	// Trip it again; this time no probe is verified in time.
	e.admit(t, rng(90), "", "CHANNEL_LOGIN")
	wantBlocked(t, e.admit(t, rng(91), "", "CHANNEL_LOGIN"), guard.RuleConversion, e.clock.Now().Add(time.Hour))
	e.clock.Add(time.Hour)
	e.admit(t, rng(92), "", "CHANNEL_LOGIN")
	e.clock.Add(11 * time.Minute)
	wantBlocked(t, e.admit(t, rng(93), "", "CHANNEL_LOGIN"), guard.RuleConversion, e.clock.Now().Add(time.Hour))
}

func TestCountryBreaker(t *testing.T) {
	t.Parallel()
	e := newEnv(t, only(guard.Config{Conversion: conv(t, "min=30%,after=1000,country-after=10,block=2h")}))
	ctx := context.Background()
	if err := e.g.Verified(ctx, num(t, "+8613912345678"), "CHANNEL_LOGIN"); err != nil {
		t.Fatal(err)
	}
	// Ten UK sends over ten ranges, one verified: 10 % < 30 %.
	for i := range 10 {
		n := num(t, fmt.Sprintf("+4474001%02d001", i))
		if d := e.admit(t, n, "", "CHANNEL_LOGIN"); !d.Allowed {
			t.Fatalf("send %d: %+v", i+1, d)
		}
		if i == 0 {
			if err := e.g.Verified(ctx, n, "CHANNEL_LOGIN"); err != nil {
				t.Fatal(err)
			}
		}
	}
	wantBlocked(t, e.admit(t, num(t, "+447400199001"), "", "CHANNEL_LOGIN"), guard.RuleConversion, e.clock.Now().Add(2*time.Hour))
	if d := e.admit(t, num(t, victim), "", "CHANNEL_LOGIN"); !d.Allowed {
		t.Fatalf("+86 blocked by the UK's breaker: %+v", d)
	}
	rep, err := e.g.Inspect(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Breakers) != 1 || rep.Breakers[0].Kind != "country" || rep.Breakers[0].ID != "44" || rep.Breakers[0].State != "open" {
		t.Fatalf("breakers %+v", rep.Breakers)
	}
}

// TestCheckCountsNothing: Check answers as Admit would and counts nothing.
func TestCheckCountsNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, only(guard.Config{Phone: lim("2/h")}))
	n := num(t, victim)
	ctx := context.Background()
	for range 10 {
		d, err := e.g.Check(ctx, guard.Request{Phone: n, Channel: "CHANNEL_LOGIN"})
		if err != nil || !d.Allowed {
			t.Fatalf("Check: %+v %v", d, err)
		}
	}
	e.admit(t, n, "", "CHANNEL_LOGIN")
	e.admit(t, n, "", "CHANNEL_LOGIN")
	d, err := e.g.Check(ctx, guard.Request{Phone: n, Channel: "CHANNEL_LOGIN"})
	if err != nil {
		t.Fatal(err)
	}
	wantBlocked(t, d, guard.RulePhone, start.Truncate(time.Hour).Add(time.Hour))
}

// TestKeysHoldNoNumber: after traffic on every rule, no key name, hash
// field or value holds the number, its range's digits or the IP; and
// every key maps to one Cluster slot.
func TestKeysHoldNoNumber(t *testing.T) {
	t.Parallel()
	cfg, err := guard.DefaultSettings().Config(nil)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, cfg)
	ctx := context.Background()
	n := num(t, "+447400123123")
	e.admit(t, n, "198.51.100.77", "CHANNEL_LOGIN")
	if err := e.g.Verified(ctx, n, "CHANNEL_LOGIN"); err != nil {
		t.Fatal(err)
	}
	if err := e.g.Exempt(ctx, num(t, victim)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.g.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	keys, err := e.c.Keys(ctx, "*").Result()
	if err != nil || len(keys) < 5 {
		t.Fatalf("keys %v %v", keys, err)
	}
	secret := regexp.MustCompile(`7400123|740012|198\.51\.100\.77|100\.77|13800138000`)
	slot := redistest.Slot(keys[0])
	for _, k := range keys {
		if redistest.Slot(k) != slot {
			t.Errorf("key %s in slot %d, %s in %d", k, redistest.Slot(k), keys[0], slot)
		}
		var text []string
		switch typ := e.c.Type(ctx, k).Val(); typ {
		case "hash":
			for f, v := range e.c.HGetAll(ctx, k).Val() {
				text = append(text, f, v)
			}
		case "string":
			text = append(text, e.c.Get(ctx, k).Val())
		default:
			t.Errorf("key %s is a %s", k, typ)
		}
		all := k + " " + strings.Join(text, " ")
		if m := secret.FindString(all); m != "" {
			t.Errorf("key %s holds %q: %s", k, m, all)
		}
	}
}

func TestLiftPhone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, only(guard.Config{Phone: lim("1/h,2/d")}))
	n := num(t, victim)
	e.admit(t, n, "", "CHANNEL_LOGIN")
	if d := e.admit(t, n, "", "CHANNEL_LOGIN"); d.Allowed {
		t.Fatal("not blocked")
	}
	rep, err := e.g.Inspect(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	id := e.g.SubjectID(guard.RulePhone, n, "")
	var blocked int
	for _, c := range rep.Counters {
		if c.ID == id && c.Label == n.Masked() && c.Blocked {
			blocked++
		}
	}
	if blocked != 1 {
		t.Fatalf("report %+v; want the phone's hour blocked", rep.Counters)
	}
	if ok, err := e.g.Lift(context.Background(), guard.RulePhone, id); !ok || err != nil {
		t.Fatalf("Lift %v %v", ok, err)
	}
	if d := e.admit(t, n, "", "CHANNEL_LOGIN"); !d.Allowed {
		t.Fatalf("after lift: %+v", d)
	}
}
