package guard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/phone"
)

// hashCheckInput is hashed into the published settings, so that a reader
// with another phone hash key (whose keys would never match the workers')
// finds out instead of reading nothing.
const hashCheckInput = "smsq guard hash check"

// ErrHashKey: the reader's phone hash key is not the workers'.
var ErrHashKey = errors.New("guard: this process's SMSQ_PHONE_HASH_KEY is not the one the workers use")

// published is what ConfigKey holds.
type published struct {
	Config    Config `json:"config"`
	HashCheck string `json:"hashCheck"`
}

// AllOff reports whether every rule is off.
func (c Config) AllOff() bool {
	for _, r := range Rules {
		if c.mode(r) != Off {
			return false
		}
	}
	return true
}

// Describe sums the rules up for the start-up line.
func (g *Guard) Describe() string {
	c := g.cfg
	part := func(rule, v string) string {
		m := c.mode(rule)
		if m == Off {
			return rule + " off"
		}
		if m == Monitor {
			v += " (monitor)"
		}
		return rule + " " + v
	}
	return strings.Join([]string{
		part(RulePhone, FormatLimits(c.Phone)), part(RuleIP, FormatLimits(c.IP)), part(RulePrefix, FormatLimits(c.Prefix)),
		part(RuleCountry, c.Countries.String()), part(RuleBudget, FormatLimits(c.Budget)), part(RuleConversion, c.Conversion.String()),
		"exempt " + strconv.Itoa(len(c.Exempt)),
	}, "; ")
}

// Publish writes the guard's settings (never the exempt numbers) to Redis
// for Client.Check and enqueue guard. differs reports that another worker
// had published other settings.
func (g *Guard) Publish(ctx context.Context) (differs bool, err error) {
	b, err := json.Marshal(published{Config: g.cfg, HashCheck: g.hasher.PhoneHash(hashCheckInput)})
	if err != nil {
		return false, err
	}
	old, err := g.c.SetArgs(ctx, ConfigKey(g.prefix), b, redis.SetArgs{Get: true}).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, fmt.Errorf("publish settings: %w", err)
	}
	return old != "" && old != string(b), nil
}

// Open returns a Guard with the settings the workers published, for
// producers and operators. Without published settings it uses the
// defaults and returns ErrNoConfig with it.
func Open(ctx context.Context, d Deps) (*Guard, error) {
	if d.Client == nil || d.Hasher == nil {
		return nil, errors.New("guard: Deps.Client and Deps.Hasher are required")
	}
	prefix := d.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	raw, err := d.Client.Get(ctx, ConfigKey(prefix)).Bytes()
	if errors.Is(err, redis.Nil) {
		cfg, _ := DefaultSettings().Config(nil)
		g, err := New(cfg, d)
		if err != nil {
			return nil, err
		}
		return g, ErrNoConfig
	}
	if err != nil {
		return nil, fmt.Errorf("guard: read settings: %w", err)
	}
	var p published
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("guard: published settings: %w", err)
	}
	if p.HashCheck != d.Hasher.PhoneHash(hashCheckInput) {
		return nil, ErrHashKey
	}
	return New(p.Config, d)
}

// SubjectID is the name a rule counts n (and ip) under, as Inspect lists
// it and Lift takes it; "" when the rule has no subject for them.
func (g *Guard) SubjectID(rule string, n phone.Number, ip string) string {
	s := subjectsOf(g.hasher, n, ip)
	switch rule {
	case RulePhone:
		return s.phone
	case RuleIP:
		return s.ip
	case RulePrefix:
		return s.prefix
	case RuleCountry:
		return s.country
	case RuleBudget:
		return "all"
	}
	return ""
}

// IPID is the name the IP rule counts ip under.
func (g *Guard) IPID(ip string) string { return subjectsOf(g.hasher, phone.Number{}, ip).ip }

// CounterView is one subject's count in one window.
type CounterView struct {
	Rule    string    `json:"rule"`
	ID      string    `json:"id"`
	Label   string    `json:"label"`
	Limit   string    `json:"limit"`
	Count   int       `json:"count"`
	Mode    Mode      `json:"mode"`
	Blocked bool      `json:"blocked"`
	Ends    time.Time `json:"windowEnds"`
}

// BreakerView is a tripped conversion breaker.
type BreakerView struct {
	Kind  string `json:"kind"` // prefix or country
	ID    string `json:"id"`
	Label string `json:"label"`
	// State is "open" (blocked until Until) or "half-open" (probing until
	// Until).
	State  string    `json:"state"`
	Until  time.Time `json:"until"`
	Probes int       `json:"probes,omitempty"`
	Since  time.Time `json:"since,omitzero"`
	Sends  int       `json:"sends,omitempty"`
	Verif  int       `json:"verified,omitempty"`
}

// CountryConversion is a country's conversion over the breaker's window.
type CountryConversion struct {
	Country  string  `json:"country"`
	Sends    int     `json:"sends"`
	Verified int     `json:"verified"`
	Ratio    float64 `json:"ratio"`
}

// ExemptView is a number exempted at run time.
type ExemptView struct {
	ID    string `json:"id"`
	Label string `json:"label"`
}

// Report is the guard's state, phones masked.
type Report struct {
	Settings   string              `json:"settings"`
	Counters   []CounterView       `json:"counters"`
	Breakers   []BreakerView       `json:"breakers"`
	Exempt     []ExemptView        `json:"exempt"`
	Conversion []CountryConversion `json:"conversion"`
	// Reporting are the channels whose codes the producer reports verified.
	Reporting []string `json:"reportingChannels"`
}

// state is a breaker's stored form (see admitScript).
type state struct {
	S string  `json:"s"`
	U float64 `json:"u"`
	D float64 `json:"d"`
	P int     `json:"p"`
	L string  `json:"l"`
	T float64 `json:"t"`
	N int     `json:"n"`
	V int     `json:"v"`
}

// Inspect reads the current windows: up to top counters per rule and
// window (the highest), every breaker, exemption and country conversion.
func (g *Guard) Inspect(ctx context.Context, top int) (Report, error) {
	now := g.now()
	rep := Report{Settings: g.Describe(), Counters: []CounterView{}, Breakers: []BreakerView{}, Exempt: []ExemptView{}, Conversion: []CountryConversion{}}
	type rl struct {
		rule   string
		limits []Limit
	}
	sets := []rl{{RulePhone, g.cfg.Phone}, {RuleIP, g.cfg.IP}, {RulePrefix, g.cfg.Prefix}, {RuleBudget, g.cfg.Budget}, {RuleCountry, []Limit{{N: 0, Unit: Day}}}}
	for _, set := range sets {
		if g.cfg.mode(set.rule) == Off {
			continue
		}
		for _, l := range set.limits {
			b, ends := l.Unit.bucket(now)
			all, err := g.c.HGetAll(ctx, CounterKey(g.prefix, set.rule, l.Unit, b)).Result()
			if err != nil {
				return Report{}, err
			}
			var views []CounterView
			for f, v := range all {
				if strings.HasSuffix(f, ":l") {
					continue
				}
				n, _ := strconv.Atoi(v)
				if n <= 0 {
					continue
				}
				lim := l
				if set.rule == RuleCountry {
					_, lim.N = g.cfg.Countries.allows(f)
				}
				label := all[f+":l"]
				views = append(views, CounterView{Rule: set.rule, ID: f, Label: label, Limit: lim.String(), Count: n,
					Mode: g.cfg.mode(set.rule), Blocked: lim.N > 0 && n >= lim.N, Ends: ends})
			}
			slices.SortFunc(views, func(a, b CounterView) int { return b.Count - a.Count })
			if top > 0 && len(views) > top {
				views = views[:top]
			}
			rep.Counters = append(rep.Counters, views...)
		}
	}
	br, err := g.c.HGetAll(ctx, BreakerKey(g.prefix)).Result()
	if err != nil {
		return Report{}, err
	}
	for f, v := range br {
		var st state
		if json.Unmarshal([]byte(v), &st) != nil {
			continue
		}
		kind, id, _ := strings.Cut(f, ":")
		bv := BreakerView{Kind: kind, ID: id, Label: st.L, State: "open", Until: msTime(st.U), Since: msTime(st.T), Sends: st.N, Verif: st.V}
		if st.S == "half" {
			bv.State, bv.Until, bv.Probes = "half-open", msTime(st.D), st.P
		}
		rep.Breakers = append(rep.Breakers, bv)
	}
	slices.SortFunc(rep.Breakers, func(a, b BreakerView) int { return strings.Compare(a.Kind+a.ID, b.Kind+b.ID) })
	ex, err := g.c.HGetAll(ctx, ExemptKey(g.prefix)).Result()
	if err != nil {
		return Report{}, err
	}
	for id, label := range ex {
		rep.Exempt = append(rep.Exempt, ExemptView{ID: id, Label: label})
	}
	slices.SortFunc(rep.Exempt, func(a, b ExemptView) int { return strings.Compare(a.Label, b.Label) })
	rep.Conversion, err = g.countryConversion(ctx, now)
	if err != nil {
		return Report{}, err
	}
	ch, err := g.c.HGetAll(ctx, ChannelsKey(g.prefix)).Result()
	if err != nil {
		return Report{}, err
	}
	for c, v := range ch {
		ms, _ := strconv.ParseInt(v, 10, 64)
		if now.UnixMilli()-ms < reportingFor.Milliseconds() {
			rep.Reporting = append(rep.Reporting, c)
		}
	}
	slices.Sort(rep.Reporting)
	return rep, nil
}

func msTime(ms float64) time.Time {
	if ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(int64(ms)).UTC()
}

// countryConversion sums each country's sends and verified codes over the
// current and previous conversion windows.
func (g *Guard) countryConversion(ctx context.Context, now time.Time) ([]CountryConversion, error) {
	cv := g.cfg.Conversion
	if cv.IsZero() {
		return []CountryConversion{}, nil
	}
	w := now.UnixMilli() / cv.Window.Milliseconds()
	sums := map[string]*CountryConversion{}
	for _, b := range []int64{w, w - 1} {
		all, err := g.c.HGetAll(ctx, ConvKey(g.prefix, RuleCountry, b)).Result()
		if err != nil {
			return nil, err
		}
		for f, v := range all {
			rest, ok := strings.CutPrefix(f, "country:")
			if !ok {
				continue
			}
			cc, kind, ok := strings.Cut(rest, ":")
			if !ok {
				continue
			}
			n, _ := strconv.Atoi(v)
			c := sums[cc]
			if c == nil {
				c = &CountryConversion{Country: "+" + cc}
				sums[cc] = c
			}
			if kind == "s" {
				c.Sends += n
			} else if kind == "v" {
				c.Verified += n
			}
		}
	}
	out := make([]CountryConversion, 0, len(sums))
	for _, c := range sums {
		if c.Sends > 0 {
			c.Ratio = float64(min(c.Verified, c.Sends)) / float64(c.Sends)
		}
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b CountryConversion) int { return b.Sends - a.Sends })
	return out, nil
}

// Lift ends what blocks id under rule, cluster-wide at once: its counts in
// the current windows and, for ranges and countries, a tripped breaker.
// It reports whether there was anything to lift.
func (g *Guard) Lift(ctx context.Context, rule, id string) (bool, error) {
	if id == "" || !slices.Contains(Rules, rule) {
		return false, fmt.Errorf("guard: lift: rule %q, id %q", rule, id)
	}
	now := g.now()
	var limits []Limit
	switch rule {
	case RulePhone:
		limits = g.cfg.Phone
	case RuleIP:
		limits = g.cfg.IP
	case RulePrefix:
		limits = g.cfg.Prefix
	case RuleCountry:
		limits = []Limit{{N: 1, Unit: Day}}
	case RuleBudget:
		limits = g.cfg.Budget
	}
	// Every key is in one slot: one transaction.
	var cmds []*redis.IntCmd
	_, err := g.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, l := range limits {
			b, _ := l.Unit.bucket(now)
			cmds = append(cmds, p.HDel(ctx, CounterKey(g.prefix, rule, l.Unit, b), id, id+":l"))
		}
		if rule == RulePrefix || rule == RuleCountry || rule == RuleConversion {
			kinds := []string{RulePrefix, RuleCountry}
			if rule != RuleConversion {
				kinds = []string{rule}
			}
			for _, k := range kinds {
				f := k + ":" + id
				cmds = append(cmds, p.HDel(ctx, BreakerKey(g.prefix), f))
				if cv := g.cfg.Conversion; !cv.IsZero() {
					w := now.UnixMilli() / cv.Window.Milliseconds()
					p.HDel(ctx, ConvKey(g.prefix, k, w), f+":s", f+":v")
					p.HDel(ctx, ConvKey(g.prefix, k, w-1), f+":s", f+":v")
				}
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("guard: lift: %w", err)
	}
	any := false
	for _, c := range cmds {
		any = any || c.Val() > 0
	}
	return any, nil
}

// Exempt exempts n from every rule, cluster-wide at once, until Unexempt.
func (g *Guard) Exempt(ctx context.Context, n phone.Number) error {
	return g.c.HSet(ctx, ExemptKey(g.prefix), g.hasher.PhoneHash(n.E164), n.Masked()).Err()
}

// Unexempt ends n's run-time exemption; it reports whether there was one.
func (g *Guard) Unexempt(ctx context.Context, n phone.Number) (bool, error) {
	k, err := g.c.HDel(ctx, ExemptKey(g.prefix), g.hasher.PhoneHash(n.E164)).Result()
	return k > 0, err
}

// statsCacheFor is how long one read of the guard's Redis state serves
// scrapes.
const statsCacheFor = 10 * time.Second

// Collector returns the guard's Prometheus metrics: blocks by rule and
// mode, budget warnings (this worker's), and, read from Redis for the whole
// deployment, budget use and conversion by country.
func (g *Guard) Collector() prometheus.Collector {
	return &collector{g: g}
}

var (
	budgetDesc = prometheus.NewDesc("smsq_guard_budget_used_ratio",
		"Share of each SMSQ_BUDGET window used by all workers together (1 blocks).", []string{"window"}, nil)
	convDesc = prometheus.NewDesc("smsq_guard_conversion_ratio",
		"Share of sends verified over the conversion breaker's window, by calling code (channels reporting verified codes only).", []string{"country"}, nil)
	convSendsDesc = prometheus.NewDesc("smsq_guard_conversion_sends",
		"Sends the conversion breaker judges over its window, by calling code.", []string{"country"}, nil)
)

type collector struct {
	g     *Guard
	mu    sync.Mutex
	at    time.Time
	cache []prometheus.Metric
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	c.g.blocks.Describe(ch)
	c.g.warnings.Describe(ch)
	ch <- budgetDesc
	ch <- convDesc
	ch <- convSendsDesc
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.g.blocks.Collect(ch)
	c.g.warnings.Collect(ch)
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) > statsCacheFor {
		c.cache = c.read()
		c.at = time.Now()
	}
	for _, m := range c.cache {
		ch <- m
	}
}

func (c *collector) read() []prometheus.Metric {
	g := c.g
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	now := g.now()
	var out []prometheus.Metric
	if g.cfg.mode(RuleBudget) != Off {
		for _, l := range g.cfg.Budget {
			b, _ := l.Unit.bucket(now)
			n, err := g.c.HGet(ctx, CounterKey(g.prefix, RuleBudget, l.Unit, b), "all").Int()
			if err != nil && !errors.Is(err, redis.Nil) {
				continue
			}
			out = append(out, prometheus.MustNewConstMetric(budgetDesc, prometheus.GaugeValue, float64(n)/float64(l.N), string(l.Unit)))
		}
	}
	conv, err := g.countryConversion(ctx, now)
	if err == nil {
		for _, cc := range conv {
			out = append(out, prometheus.MustNewConstMetric(convDesc, prometheus.GaugeValue, cc.Ratio, cc.Country),
				prometheus.MustNewConstMetric(convSendsDesc, prometheus.GaugeValue, float64(cc.Sends), cc.Country))
		}
	}
	return out
}
