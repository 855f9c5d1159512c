package guard

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/phone"
)

// keySlack keeps a window's counters this long past its end (only to clean
// up: windows are named by number, so a late key is never read as a new
// window).
const keySlack = time.Hour

// reportingFor is how long a channel counts as reporting conversions after
// its last Verified.
const reportingFor = 7 * 24 * time.Hour

// refundTimeout bounds a give-back, which runs even when the task's context
// has ended.
const refundTimeout = 2 * time.Second

// Deps are what a Guard runs with besides its rules.
type Deps struct {
	// Client is the Redis every worker shares; required.
	Client redis.UniversalClient
	// Hasher names phones, ranges and IPs in keys; required (every process
	// on one Redis must use the same one).
	Hasher Hasher
	// Prefix starts every key; default DefaultPrefix.
	Prefix string
	// Now is the clock; default time.Now. Windows and blocks are computed
	// from it, so every worker's clock must be roughly right.
	Now func() time.Time
}

// Guard checks and counts sends. It is safe for concurrent use.
type Guard struct {
	cfg    Config
	c      redis.UniversalClient
	hasher Hasher
	prefix string
	now    func() time.Time
	exempt map[string]bool

	blocks   *prometheus.CounterVec
	warnings *prometheus.CounterVec
	// onWarn is told of a budget window crossing WarnAt.
	warnMu sync.Mutex
	onWarn func(BudgetWarning)
}

// New validates cfg and returns a Guard.
func New(cfg Config, d Deps) (*Guard, error) {
	if d.Client == nil || d.Hasher == nil {
		return nil, errors.New("guard: Deps.Client and Deps.Hasher are required")
	}
	if d.Prefix == "" {
		d.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(d.Prefix, "{}") {
		return nil, fmt.Errorf("guard: Prefix %q must not contain '{' or '}'", d.Prefix)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if cfg.Modes == nil {
		cfg.Modes = map[string]Mode{}
	}
	for r, m := range cfg.Modes {
		if m != Enforce && m != Monitor && m != Off {
			return nil, fmt.Errorf("guard: mode %q of rule %s", m, r)
		}
	}
	if cfg.Countries.Allowed == nil && !cfg.Countries.Others {
		// The zero Countries would refuse every country.
		cfg.Countries.Others = true
	}
	if !cfg.Conversion.IsZero() {
		c := cfg.Conversion
		if c.Min <= 0 || c.Min > 1 || c.After < 1 || c.CountryAfter < 1 || c.Probes < 1 ||
			c.Block < time.Second || c.Window < time.Second || c.ProbeWait < time.Second {
			return nil, fmt.Errorf("guard: Conversion %s: every field must be set", c)
		}
	}
	g := &Guard{
		cfg: cfg, c: d.Client, hasher: d.Hasher, prefix: d.Prefix, now: d.Now,
		exempt: map[string]bool{},
		blocks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smsq_guard_blocks_total",
			Help: "Sends the abuse guard blocked (mode enforce) or would have blocked (mode monitor), by rule.",
		}, []string{"rule", "mode"}),
		warnings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smsq_guard_budget_warnings_total",
			Help: "Budget windows whose use crossed 80 %, seen by this worker, by window unit.",
		}, []string{"window"}),
	}
	for _, e := range cfg.Exempt {
		g.exempt[e] = true
	}
	for _, r := range Rules {
		g.blocks.WithLabelValues(r, string(Enforce))
		g.blocks.WithLabelValues(r, string(Monitor))
	}
	for _, u := range []Unit{Minute, Hour, Day, Month} {
		g.warnings.WithLabelValues(string(u))
	}
	return g, nil
}

// Config returns the guard's rules.
func (g *Guard) Config() Config { return g.cfg }

// OnBudgetWarning sets f to be told when a send makes a budget window cross
// WarnAt (once per window, by the worker whose send crossed it).
func (g *Guard) OnBudgetWarning(f func(BudgetWarning)) {
	g.warnMu.Lock()
	g.onWarn = f
	g.warnMu.Unlock()
}

// Request is one send to check.
type Request struct {
	Phone    phone.Number
	ClientIP string
	Channel  string
}

// Decision is the guard's answer.
type Decision struct {
	// Allowed: the send may go (and, from Admit, is counted).
	Allowed bool
	// Exempt: the number skips every rule.
	Exempt bool
	// Rule is the enforced rule that blocks, when not Allowed.
	Rule string
	// LiftsAt is when the block lifts; zero when it does not lift by
	// itself (a country not allowed).
	LiftsAt time.Time
	// Monitored lists monitored rules that would have blocked.
	Monitored []string
	// Warnings are budget windows this send made cross WarnAt.
	Warnings []BudgetWarning
	// Ticket gives the counts back (Refund) when the send does not happen.
	Ticket Ticket
}

// BudgetWarning says a budget window reached WarnAt of its limit.
type BudgetWarning struct {
	Limit Limit
	Used  int
	// Ends is the end of the window.
	Ends time.Time
}

// Ticket is what one admitted send counted, to give back.
type Ticket struct {
	keys, fields []string
	probes       []string
}

// IsZero reports whether nothing was counted.
func (t Ticket) IsZero() bool { return len(t.keys) == 0 && len(t.probes) == 0 }

// Errors.
var (
	// ErrNoConfig: no worker has published its settings on this Redis.
	ErrNoConfig = errors.New("guard: no worker has published its guard settings on this Redis")
)

// counter is one window of one rule a send is counted in.
type counter struct {
	key, field string
	limit      Limit
	enforce    bool
	rule       string
	ends       time.Time
	label      string
	warn       int
}

// breaker is one conversion breaker a send passes.
type breaker struct {
	field, label string
	enforce      bool
	after        int
	cur, prev    string
}

// plan lists the counters and breakers of a request at now.
func (g *Guard) plan(s subjects, now time.Time) ([]counter, []breaker) {
	var cs []counter
	add := func(rule, subject, label string, ls []Limit, warn bool) {
		m := g.cfg.mode(rule)
		if m == Off || subject == "" {
			return
		}
		for _, l := range ls {
			b, ends := l.Unit.bucket(now)
			c := counter{key: CounterKey(g.prefix, rule, l.Unit, b), field: subject, limit: l, enforce: m == Enforce,
				rule: rule, ends: ends, label: label}
			if warn {
				c.warn = int(math.Ceil(float64(l.N) * WarnAt))
			}
			cs = append(cs, c)
		}
	}
	add(RulePhone, s.phone, s.phoneLabel, g.cfg.Phone, false)
	add(RuleIP, s.ip, s.ipLabel, g.cfg.IP, false)
	add(RulePrefix, s.prefix, s.prefixLabel, g.cfg.Prefix, false)
	if ok, capN := g.cfg.Countries.allows(s.country); ok && capN > 0 {
		add(RuleCountry, s.country, "+"+s.country, []Limit{{N: capN, Unit: Day}}, false)
	}
	add(RuleBudget, "all", "all sends", g.cfg.Budget, true)

	var bs []breaker
	cv := g.cfg.Conversion
	if m := g.cfg.mode(RuleConversion); m != Off && !cv.IsZero() {
		w := now.UnixMilli() / cv.Window.Milliseconds()
		if s.prefix != "" {
			bs = append(bs, breaker{field: "prefix:" + s.prefix, label: s.prefixLabel, enforce: m == Enforce, after: cv.After,
				cur: ConvKey(g.prefix, RulePrefix, w), prev: ConvKey(g.prefix, RulePrefix, w-1)})
		}
		bs = append(bs, breaker{field: "country:" + s.country, label: "+" + s.country, enforce: m == Enforce, after: cv.CountryAfter,
			cur: ConvKey(g.prefix, RuleCountry, w), prev: ConvKey(g.prefix, RuleCountry, w-1)})
	}
	return cs, bs
}

// admitScript checks every counter and breaker of one send and, unless an
// enforced rule blocks (or it is a dry run), counts the send in all of
// them: check and count are one step, so concurrent sends never overshoot.
//
// KEYS[1] exempt hash, KEYS[2] breaker hash, KEYS[3] reporting channels,
// then one counter hash per counter, then two conversion hashes (current,
// previous window) per breaker.
// ARGV[1] now (ms), ARGV[2] "1" for a dry run, ARGV[3] phone hash, ARGV[4]
// channel, ARGV[5] counters, ARGV[6] breakers, ARGV[7] how long a channel
// counts as reporting (ms); then per counter: field, limit, enforce ("1"),
// rule, key TTL (ms), end of window (ms), label, warn-at count (0: none);
// then per breaker: field, label, enforce, after, min share, block (ms),
// probes, probe wait (ms), conversion key TTL (ms).
// Returns {state (0 allowed, 1 blocked, 2 exempt), rule, lifts at (ms),
// monitored rules, warned counters, counts after, probed breakers,
// reporting ("1")}, lists comma-separated.
var admitScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local dry = ARGV[2] == '1'
local nc, nb = tonumber(ARGV[5]), tonumber(ARGV[6])
if redis.call('HEXISTS', KEYS[1], ARGV[3]) == 1 then
  return {2, '', '0', '', '', '', '', ''}
end
local seen = tonumber(redis.call('HGET', KEYS[3], ARGV[4]) or '0')
local reporting = seen > 0 and now - seen < tonumber(ARGV[7])
local brule, buntil = false, 0
local monitor = {}
local function violate(rule, untilv, enforce)
  if not enforce then
    monitor[#monitor + 1] = rule
    return
  end
  if not brule or (buntil > 0 and (untilv == 0 or untilv > buntil)) then
    brule, buntil = rule, untilv
  end
end
local a = 8
local counts = {}
for i = 1, nc do
  local n = tonumber(redis.call('HGET', KEYS[3 + i], ARGV[a]) or '0')
  counts[i] = n
  if n + 1 > tonumber(ARGV[a + 1]) then
    violate(ARGV[a + 3], tonumber(ARGV[a + 5]), ARGV[a + 2] == '1')
  end
  a = a + 8
end
local bstart = a
local probe, states = {}, {}
local k = 3 + nc
for j = 1, nb do
  local field, label, enforce = ARGV[a], ARGV[a + 1], ARGV[a + 2] == '1'
  local after, minr, block = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  local probes, wait = tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7])
  local cur, prev = KEYS[k + 1], KEYS[k + 2]
  local raw = redis.call('HGET', KEYS[2], field)
  local st = false
  if raw then st = cjson.decode(raw) end
  local changed, reset = false, false
  if st and st.s == 'open' and now >= st.u then
    st = {s = 'half', p = 0, d = now + wait, l = st.l, t = st.t}
    changed = true
  end
  if st and st.s == 'half' and now >= st.d then
    if st.p > 0 then
      st = {s = 'open', u = now + block, l = st.l, t = now}
    else
      st.d = now + wait
    end
    changed = true
  end
  if not st and reporting then
    local s = tonumber(redis.call('HGET', cur, field .. ':s') or '0') + tonumber(redis.call('HGET', prev, field .. ':s') or '0')
    local v = tonumber(redis.call('HGET', cur, field .. ':v') or '0') + tonumber(redis.call('HGET', prev, field .. ':v') or '0')
    if s >= after and math.min(v, s) < minr * s then
      st = {s = 'open', u = now + block, l = label, t = now, n = s, v = v}
      changed, reset = true, true
    end
  end
  if st and st.s == 'open' then
    violate('conversion', st.u, enforce)
  elseif st and st.s == 'half' then
    if st.p >= probes then
      violate('conversion', st.d, enforce)
    elseif reporting then
      probe[j] = true
    end
  end
  if changed and not dry then
    redis.call('HSET', KEYS[2], field, cjson.encode(st))
    if reset then
      redis.call('HDEL', cur, field .. ':s', field .. ':v')
      redis.call('HDEL', prev, field .. ':s', field .. ':v')
    end
  end
  states[j] = st
  k = k + 2
  a = a + 9
end
local rep = reporting and '1' or ''
if dry or brule then
  return {brule and 1 or 0, brule or '', tostring(buntil), table.concat(monitor, ','), '', '', '', rep}
end
local warned, after, probed = {}, {}, {}
a = 8
for i = 1, nc do
  local key, f = KEYS[3 + i], ARGV[a]
  redis.call('HINCRBY', key, f, 1)
  if counts[i] == 0 then
    redis.call('PEXPIRE', key, ARGV[a + 4])
    if ARGV[a + 6] ~= '' then
      redis.call('HSETNX', key, f .. ':l', ARGV[a + 6])
    end
  end
  local w = tonumber(ARGV[a + 7])
  if w > 0 and counts[i] < w and counts[i] + 1 >= w then
    warned[#warned + 1] = tostring(i)
  end
  after[#after + 1] = tostring(counts[i] + 1)
  a = a + 8
end
k = 3 + nc
a = bstart
for j = 1, nb do
  if reporting then
    redis.call('HINCRBY', KEYS[k + 1], ARGV[a] .. ':s', 1)
    redis.call('PEXPIRE', KEYS[k + 1], ARGV[a + 8])
  end
  if probe[j] then
    local st = states[j]
    st.p = st.p + 1
    redis.call('HSET', KEYS[2], ARGV[a], cjson.encode(st))
    probed[#probed + 1] = tostring(j)
  end
  k = k + 2
  a = a + 9
end
return {0, '', '0', table.concat(monitor, ','), table.concat(warned, ','), table.concat(after, ','), table.concat(probed, ','), rep}
`)

// refundScript gives one send's counts back: each count one down, never
// below zero, and each probe of a half-open breaker.
//
// KEYS: one hash per count, then the breaker hash. ARGV[1] the number of
// counts; then their fields; then the breaker fields probed.
var refundScript = redis.NewScript(`
local n = tonumber(ARGV[1])
for i = 1, n do
  local f = ARGV[1 + i]
  if tonumber(redis.call('HGET', KEYS[i], f) or '0') > 0 then
    redis.call('HINCRBY', KEYS[i], f, -1)
  end
end
for i = n + 2, #ARGV do
  local raw = redis.call('HGET', KEYS[n + 1], ARGV[i])
  if raw then
    local st = cjson.decode(raw)
    if st.s == 'half' and st.p > 0 then
      st.p = st.p - 1
      redis.call('HSET', KEYS[n + 1], ARGV[i], cjson.encode(st))
    end
  end
end
return 1
`)

// Admit checks req against every rule and, when no enforced rule blocks,
// counts it: one round trip, none for a number exempted in the settings or
// a country the settings refuse.
func (g *Guard) Admit(ctx context.Context, req Request) (Decision, error) {
	return g.decide(ctx, req, false)
}

// Check says what Admit would answer now, counting nothing.
func (g *Guard) Check(ctx context.Context, req Request) (Decision, error) {
	return g.decide(ctx, req, true)
}

func (g *Guard) decide(ctx context.Context, req Request, dry bool) (Decision, error) {
	if g.exempt[req.Phone.E164] {
		return Decision{Allowed: true, Exempt: true}, nil
	}
	now := g.now()
	s := subjectsOf(g.hasher, req.Phone, req.ClientIP)
	var d Decision
	if m := g.cfg.mode(RuleCountry); m != Off {
		if ok, _ := g.cfg.Countries.allows(s.country); !ok {
			if m == Enforce {
				if !dry {
					g.blocks.WithLabelValues(RuleCountry, string(Enforce)).Inc()
				}
				return Decision{Rule: RuleCountry}, nil
			}
			d.Monitored = append(d.Monitored, RuleCountry)
		}
	}
	cs, bs := g.plan(s, now)
	keys := make([]string, 0, 3+len(cs)+2*len(bs))
	keys = append(keys, ExemptKey(g.prefix), BreakerKey(g.prefix), ChannelsKey(g.prefix))
	dryArg := "0"
	if dry {
		dryArg = "1"
	}
	args := make([]any, 0, 7+8*len(cs)+9*len(bs))
	args = append(args, now.UnixMilli(), dryArg, s.phone, req.Channel, len(cs), len(bs), reportingFor.Milliseconds())
	for _, c := range cs {
		keys = append(keys, c.key)
		args = append(args, c.field, c.limit.N, flag(c.enforce), c.rule, (c.ends.Sub(now) + keySlack).Milliseconds(),
			c.ends.UnixMilli(), c.label, c.warn)
	}
	cv := g.cfg.Conversion
	for _, b := range bs {
		keys = append(keys, b.cur, b.prev)
		args = append(args, b.field, b.label, flag(b.enforce), b.after, strconv.FormatFloat(cv.Min, 'g', -1, 64),
			cv.Block.Milliseconds(), cv.Probes, cv.ProbeWait.Milliseconds(), (2*cv.Window + keySlack).Milliseconds())
	}
	res, err := admitScript.Run(ctx, g.c, keys, args...).Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("guard: %w", err)
	}
	if len(res) != 8 {
		return Decision{}, fmt.Errorf("guard: unexpected answer %v", res)
	}
	state, _ := res[0].(int64)
	str := func(i int) string { v, _ := res[i].(string); return v }
	if state == 2 {
		return Decision{Allowed: true, Exempt: true}, nil
	}
	d.Monitored = append(d.Monitored, splitList(str(3))...)
	if !dry {
		for _, r := range d.Monitored {
			g.blocks.WithLabelValues(r, string(Monitor)).Inc()
		}
	}
	if state == 1 {
		d.Rule = str(1)
		if ms, _ := strconv.ParseInt(str(2), 10, 64); ms > 0 {
			d.LiftsAt = time.UnixMilli(ms).UTC()
		}
		if !dry {
			g.blocks.WithLabelValues(d.Rule, string(Enforce)).Inc()
		}
		return d, nil
	}
	d.Allowed = true
	if dry {
		return d, nil
	}
	counts := splitList(str(5))
	for _, i := range splitList(str(4)) {
		n, _ := strconv.Atoi(i)
		if n < 1 || n > len(cs) {
			continue
		}
		c := cs[n-1]
		used := 0
		if n-1 < len(counts) {
			used, _ = strconv.Atoi(counts[n-1])
		}
		w := BudgetWarning{Limit: c.limit, Used: used, Ends: c.ends}
		d.Warnings = append(d.Warnings, w)
		g.warnings.WithLabelValues(string(c.limit.Unit)).Inc()
		g.warnMu.Lock()
		f := g.onWarn
		g.warnMu.Unlock()
		if f != nil {
			f(w)
		}
	}
	t := &d.Ticket
	for _, c := range cs {
		t.keys, t.fields = append(t.keys, c.key), append(t.fields, c.field)
	}
	if str(7) == "1" {
		for _, b := range bs {
			t.keys, t.fields = append(t.keys, b.cur), append(t.fields, b.field+":s")
		}
	}
	for _, j := range splitList(str(6)) {
		n, _ := strconv.Atoi(j)
		if n >= 1 && n <= len(bs) {
			t.probes = append(t.probes, bs[n-1].field)
		}
	}
	return d, nil
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// Refund gives back what an admitted send counted, when the send did not
// happen (no GenAuth call, or one that sent nothing). It runs even when
// ctx has ended.
func (g *Guard) Refund(ctx context.Context, t Ticket) error {
	if t.IsZero() {
		return nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refundTimeout)
	defer cancel()
	keys := append(append(make([]string, 0, len(t.keys)+1), t.keys...), BreakerKey(g.prefix))
	args := make([]any, 0, 1+len(t.fields)+len(t.probes))
	args = append(args, len(t.fields))
	for _, f := range t.fields {
		args = append(args, f)
	}
	for _, p := range t.probes {
		args = append(args, p)
	}
	if err := refundScript.Run(rctx, g.c, keys, args...).Err(); err != nil {
		return fmt.Errorf("guard: refund: %w", err)
	}
	return nil
}

// verifyScript records one verified code for a range and a country, marks
// the channel as reporting, and closes a half-open breaker of either.
//
// KEYS[1] breaker hash, KEYS[2] reporting channels, KEYS[3], KEYS[4] the
// range's conversion hashes (current, previous window), KEYS[5], KEYS[6]
// the country's. ARGV[1] now (ms), ARGV[2] channel, ARGV[3] range field,
// ARGV[4] country field, ARGV[5] conversion key TTL (ms), ARGV[6] how long
// the channel counts as reporting (ms). Returns the breakers closed.
var verifyScript = redis.NewScript(`
local now = tonumber(ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
local closed = {}
local subs = {{ARGV[3], KEYS[3], KEYS[4]}, {ARGV[4], KEYS[5], KEYS[6]}}
for _, s in ipairs(subs) do
  local f = s[1]
  if f ~= '' then
    redis.call('HINCRBY', s[2], f .. ':v', 1)
    redis.call('PEXPIRE', s[2], ARGV[5])
    local raw = redis.call('HGET', KEYS[1], f)
    if raw then
      local st = cjson.decode(raw)
      if st.s == 'half' or (st.s == 'open' and now >= st.u) then
        redis.call('HDEL', KEYS[1], f)
        redis.call('HDEL', s[2], f .. ':s', f .. ':v')
        redis.call('HDEL', s[3], f .. ':s', f .. ':v')
        closed[#closed + 1] = f
      end
    end
  end
end
return closed
`)

// Verified records that the code sent to n on channel was used: the
// conversion breaker judges the channel's sends from now on, and a
// half-open breaker of n's range or country closes.
func (g *Guard) Verified(ctx context.Context, n phone.Number, channel string) error {
	return Verified(ctx, g.c, g.hasher, g.prefix, g.cfg.Conversion, g.now(), n, channel)
}

// Verified is Guard.Verified for producers, which have no Guard: cv is the
// workers' breaker (its window names the keys).
func Verified(ctx context.Context, c redis.UniversalClient, h Hasher, prefix string, cv Conversion, now time.Time, n phone.Number, channel string) error {
	if cv.IsZero() {
		cv, _ = ParseConversion(DefaultConversion)
	}
	if prefix == "" {
		prefix = DefaultPrefix
	}
	s := subjectsOf(h, n, "")
	w := now.UnixMilli() / cv.Window.Milliseconds()
	rangeField := ""
	if s.prefix != "" {
		rangeField = "prefix:" + s.prefix
	}
	keys := []string{BreakerKey(prefix), ChannelsKey(prefix),
		ConvKey(prefix, RulePrefix, w), ConvKey(prefix, RulePrefix, w-1),
		ConvKey(prefix, RuleCountry, w), ConvKey(prefix, RuleCountry, w-1)}
	err := verifyScript.Run(ctx, c, keys, now.UnixMilli(), channel, rangeField, "country:"+s.country,
		(2*cv.Window + keySlack).Milliseconds(), reportingFor.Milliseconds()).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("guard: verified: %w", err)
	}
	return nil
}
