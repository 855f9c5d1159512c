package guard

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"
)

// Rules, as recorded on a blocked task ("rule") and named in SMSQ_GUARD_MODE.
const (
	RulePhone      = "phone"
	RuleIP         = "ip"
	RulePrefix     = "prefix"
	RuleCountry    = "country"
	RuleBudget     = "budget"
	RuleConversion = "conversion"
)

// Rules lists every rule in the order they are checked and reported.
var Rules = []string{RulePhone, RuleIP, RulePrefix, RuleCountry, RuleBudget, RuleConversion}

// Mode says what a rule does when it would block.
type Mode string

// Modes.
const (
	// Enforce blocks the send.
	Enforce Mode = "enforce"
	// Monitor counts and reports what it would have blocked, and lets the
	// send go.
	Monitor Mode = "monitor"
	// Off turns the rule off: nothing counted, nothing checked.
	Off Mode = "off"
)

// Defaults, as the worker settings give them (see the README for why each
// is what it is).
const (
	DefaultPhone      = "5/h,10/d"
	DefaultIP         = "60/h,500/d"
	DefaultRange      = "30/h,100/d"
	DefaultCountries  = "+86,*=10000/d"
	DefaultBudget     = "100000/d"
	DefaultConversion = "min=20%,after=20,block=1h,window=1h,probes=5,probe-wait=10m,country-after=200"
	DefaultModes      = "enforce"
)

// WarnAt is the share of a budget at which the guard warns.
const WarnAt = 0.8

// Unit is the length of a counting window. Windows are fixed and aligned:
// minutes, hours and days on UTC boundaries, months on calendar months.
type Unit string

// Units.
const (
	Minute Unit = "m"
	Hour   Unit = "h"
	Day    Unit = "d"
	Month  Unit = "mo"
)

// Limit is at most N sends per window of Unit.
type Limit struct {
	N    int  `json:"n"`
	Unit Unit `json:"unit"`
}

// String formats l as ParseLimits reads it: "10/h".
func (l Limit) String() string { return strconv.Itoa(l.N) + "/" + string(l.Unit) }

// bucket returns the window holding t: its number (unique per unit) and
// its end.
func (u Unit) bucket(t time.Time) (int64, time.Time) {
	t = t.UTC()
	switch u {
	case Month:
		y, m, _ := t.Date()
		return int64(y)*12 + int64(m) - 1, time.Date(y, m+1, 1, 0, 0, 0, 0, time.UTC)
	default:
		d := u.length()
		n := t.UnixMilli() / d.Milliseconds()
		return n, time.UnixMilli((n + 1) * d.Milliseconds()).UTC()
	}
}

func (u Unit) length() time.Duration {
	switch u {
	case Minute:
		return time.Minute
	case Hour:
		return time.Hour
	case Day:
		return 24 * time.Hour
	default:
		return 31 * 24 * time.Hour
	}
}

// maxLimit bounds N: far above any real limit, far below float precision
// in Lua.
const maxLimit = 1_000_000_000

// ParseLimits reads a comma-separated list of N/UNIT, e.g. "10/h,20/d";
// UNIT is m, h, d or mo. "off" or "" gives none. A unit given twice is an
// error.
func ParseLimits(s string) ([]Limit, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	if v == "" || v == "off" {
		return nil, nil
	}
	var out []Limit
	for item := range strings.SplitSeq(v, ",") {
		l, err := parseLimit(item)
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(out, func(o Limit) bool { return o.Unit == l.Unit }) {
			return nil, fmt.Errorf("%q: the unit /%s is given twice", s, l.Unit)
		}
		out = append(out, l)
	}
	return out, nil
}

func parseLimit(item string) (Limit, error) {
	item = strings.TrimSpace(item)
	num, unit, ok := strings.Cut(item, "/")
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if !ok || err != nil {
		return Limit{}, fmt.Errorf("%q: want N/UNIT such as 10/h, UNIT one of m, h, d, mo", item)
	}
	if n < 1 || n > maxLimit {
		return Limit{}, fmt.Errorf("%q: N must be between 1 and %d (off turns the rule off)", item, maxLimit)
	}
	u := Unit(strings.TrimSpace(unit))
	switch u {
	case Minute, Hour, Day, Month:
	default:
		return Limit{}, fmt.Errorf("%q: the unit after / must be m, h, d or mo", item)
	}
	return Limit{N: n, Unit: u}, nil
}

// FormatLimits is the inverse of ParseLimits.
func FormatLimits(ls []Limit) string {
	if len(ls) == 0 {
		return "off"
	}
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = l.String()
	}
	return strings.Join(parts, ",")
}

// Countries says which calling codes may be sent to, and the daily cap of
// each.
type Countries struct {
	// Allowed maps a calling code without its plus ("86") to its daily
	// cap, 0 for none.
	Allowed map[string]int `json:"allowed,omitempty"`
	// Others says whether codes not in Allowed may be sent to ("*").
	Others bool `json:"others"`
	// OthersCap is the daily cap of each such code, 0 for none.
	OthersCap int `json:"othersCap,omitempty"`
}

// cap returns whether cc may be sent to and its daily cap.
func (c Countries) allows(cc string) (bool, int) {
	if n, ok := c.Allowed[cc]; ok {
		return true, n
	}
	return c.Others, c.OthersCap
}

// ParseCountries reads a comma-separated list of calling codes, each with
// an optional daily cap: "+86,+852=500/d,*=1000/d". "*" stands for every
// code not listed; without it only the listed codes are sent to. "" or "*"
// allows every country without a cap.
func ParseCountries(s string) (Countries, error) {
	c := Countries{Allowed: map[string]int{}}
	v := strings.TrimSpace(s)
	if v == "" {
		c.Others = true
		return c, nil
	}
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		code, capText, hasCap := strings.Cut(item, "=")
		code = strings.TrimSpace(code)
		n := 0
		if hasCap {
			l, err := parseLimit(capText)
			if err != nil {
				return Countries{}, fmt.Errorf("%q: %w", item, err)
			}
			if l.Unit != Day {
				return Countries{}, fmt.Errorf("%q: a country's cap is per day (N/d)", item)
			}
			n = l.N
		}
		if code == "*" {
			if c.Others {
				return Countries{}, fmt.Errorf("%q: * is given twice", s)
			}
			c.Others, c.OthersCap = true, n
			continue
		}
		digits := strings.TrimPrefix(code, "+")
		cc, err := strconv.Atoi(digits)
		if err != nil || digits == "" || digits[0] == '0' || phonenumbers.GetRegionCodeForCountryCode(cc) == "ZZ" {
			return Countries{}, fmt.Errorf("%q: %q is not an assigned calling code such as +86", item, code)
		}
		if _, dup := c.Allowed[digits]; dup {
			return Countries{}, fmt.Errorf("%q: +%s is given twice", s, digits)
		}
		c.Allowed[digits] = n
	}
	return c, nil
}

// String formats c as ParseCountries reads it, codes in numeric order.
func (c Countries) String() string {
	codes := make([]string, 0, len(c.Allowed))
	for cc := range c.Allowed {
		codes = append(codes, cc)
	}
	slices.SortFunc(codes, func(a, b string) int {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		return x - y
	})
	var parts []string
	for _, cc := range codes {
		p := "+" + cc
		if n := c.Allowed[cc]; n > 0 {
			p += "=" + strconv.Itoa(n) + "/d"
		}
		parts = append(parts, p)
	}
	if c.Others {
		p := "*"
		if c.OthersCap > 0 {
			p += "=" + strconv.Itoa(c.OthersCap) + "/d"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ",")
}

// Conversion configures the conversion breaker. It acts only on channels
// whose codes the producer reports with Verified.
type Conversion struct {
	// Min is the lowest share of verified sends a range or a country keeps
	// open, 0 to 1.
	Min float64 `json:"min"`
	// After is how many sends a range needs in the window before its
	// conversion is judged; CountryAfter the same for a country.
	After        int `json:"after"`
	CountryAfter int `json:"countryAfter"`
	// Block is how long a range or country stays blocked once tripped.
	Block time.Duration `json:"block"`
	// Window is the counting window: sends and verifications of the
	// current and the previous window are judged together.
	Window time.Duration `json:"window"`
	// Probes is how many sends a half-open range lets through after its
	// block; ProbeWait how long it waits for one of them to be verified
	// before blocking again.
	Probes    int           `json:"probes"`
	ProbeWait time.Duration `json:"probeWait"`
}

// ParseConversion reads "min=20%,after=20,block=1h,window=1h,probes=5,
// probe-wait=10m,country-after=200"; keys left out keep their defaults,
// "off" turns the breaker off (the zero Conversion).
func ParseConversion(s string) (Conversion, error) {
	v := strings.TrimSpace(s)
	if strings.EqualFold(v, "off") {
		return Conversion{}, nil
	}
	c, err := parseConversion(DefaultConversion, Conversion{})
	if err != nil {
		return Conversion{}, err
	}
	return parseConversion(v, c)
}

func parseConversion(s string, c Conversion) (Conversion, error) {
	if strings.TrimSpace(s) == "" {
		return c, nil
	}
	seen := map[string]bool{}
	for item := range strings.SplitSeq(s, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		k, val = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(val)
		if !ok || val == "" {
			return Conversion{}, fmt.Errorf("%q: want KEY=VALUE, e.g. min=20%%", item)
		}
		if seen[k] {
			return Conversion{}, fmt.Errorf("%q: %s is given twice", s, k)
		}
		seen[k] = true
		var err error
		switch k {
		case "min":
			c.Min, err = parseShare(val)
		case "after":
			c.After, err = parseCount(val)
		case "country-after":
			c.CountryAfter, err = parseCount(val)
		case "probes":
			c.Probes, err = parseCount(val)
		case "block":
			c.Block, err = parseDur(val)
		case "window":
			c.Window, err = parseDur(val)
		case "probe-wait":
			c.ProbeWait, err = parseDur(val)
		default:
			err = errors.New("unknown key (min, after, country-after, block, window, probes, probe-wait)")
		}
		if err != nil {
			return Conversion{}, fmt.Errorf("%q: %w", item, err)
		}
	}
	return c, nil
}

func parseShare(s string) (float64, error) {
	pct := strings.HasSuffix(s, "%")
	f, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil || math.IsNaN(f) {
		return 0, errors.New("want a share such as 20% or 0.2")
	}
	if pct {
		f /= 100
	}
	if f <= 0 || f > 1 {
		return 0, errors.New("the share must be above 0 and at most 100%")
	}
	return f, nil
}

func parseCount(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxLimit {
		return 0, fmt.Errorf("want a whole number between 1 and %d", maxLimit)
	}
	return n, nil
}

func parseDur(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Second || d%time.Millisecond != 0 {
		return 0, errors.New("want a duration of at least 1s such as 10m or 1h")
	}
	return d, nil
}

// IsZero reports whether the breaker is off.
func (c Conversion) IsZero() bool { return c == Conversion{} }

// String formats c as ParseConversion reads it.
func (c Conversion) String() string {
	if c.IsZero() {
		return "off"
	}
	return fmt.Sprintf("min=%s%%,after=%d,block=%s,window=%s,probes=%d,probe-wait=%s,country-after=%d",
		strconv.FormatFloat(c.Min*100, 'f', -1, 64), c.After, fmtDur(c.Block), fmtDur(c.Window), c.Probes, fmtDur(c.ProbeWait), c.CountryAfter)
}

// fmtDur prints "1h" rather than "1h0m0s".
func fmtDur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// ParseModes reads SMSQ_GUARD_MODE: a default mode optionally followed by
// rule=mode overrides, e.g. "enforce,conversion=monitor,ip=off"; a lone
// "rule=mode" list keeps enforce for the rest.
func ParseModes(s string) (map[string]Mode, error) {
	out := map[string]Mode{}
	def := Enforce
	seen := map[string]bool{}
	for i, item := range strings.Split(strings.TrimSpace(s), ",") {
		item = strings.ToLower(strings.TrimSpace(item))
		if item == "" {
			continue
		}
		rule, mode, ok := strings.Cut(item, "=")
		if !ok {
			if i != 0 {
				return nil, fmt.Errorf("%q: the default mode goes first; then rule=mode", item)
			}
			mode, rule = rule, ""
		}
		m := Mode(strings.TrimSpace(mode))
		if m != Enforce && m != Monitor && m != Off {
			return nil, fmt.Errorf("%q: the mode must be enforce, monitor or off", item)
		}
		rule = strings.TrimSpace(rule)
		if rule == "" {
			def = m
			continue
		}
		if !slices.Contains(Rules, rule) {
			return nil, fmt.Errorf("%q: unknown rule (one of %s)", item, strings.Join(Rules, ", "))
		}
		if seen[rule] {
			return nil, fmt.Errorf("%q: %s is given twice", s, rule)
		}
		seen[rule] = true
		out[rule] = m
	}
	for _, r := range Rules {
		if _, ok := out[r]; !ok {
			out[r] = def
		}
	}
	return out, nil
}

// Config configures a Guard. Build it with Settings.Config, or fill it in.
type Config struct {
	Phone  []Limit `json:"phone,omitempty"`
	IP     []Limit `json:"ip,omitempty"`
	Prefix []Limit `json:"prefix,omitempty"`
	// Countries is the allow-list with daily caps.
	Countries Countries `json:"countries"`
	Budget    []Limit   `json:"budget,omitempty"`
	// Conversion is the breaker; the zero value is off.
	Conversion Conversion `json:"conversion"`
	// Modes maps each rule to its mode; a rule left out is enforced.
	Modes map[string]Mode `json:"modes"`
	// Exempt are E.164 numbers that skip every rule (test phones). They are
	// never stored: the worker checks them in memory.
	Exempt []string `json:"-"`
}

// Settings are the guard's worker settings as text, each in the form its
// Parse function reads.
type Settings struct {
	Phone, IP, Prefix, Countries, Budget, Conversion, Modes, Exempt string
}

// DefaultSettings returns the defaults.
func DefaultSettings() Settings {
	return Settings{Phone: DefaultPhone, IP: DefaultIP, Prefix: DefaultRange, Countries: DefaultCountries,
		Budget: DefaultBudget, Conversion: DefaultConversion, Modes: DefaultModes}
}

// Config parses every setting; an error names the environment variable.
// parseExempt turns an exempt entry into E.164, or refuses it.
func (s Settings) Config(parseExempt func(string) (string, error)) (Config, error) {
	var c Config
	var err error
	var errs []error
	wrap := func(name string, e error) {
		if e != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, e))
		}
	}
	c.Phone, err = ParseLimits(s.Phone)
	wrap("SMSQ_LIMIT_PHONE", err)
	c.IP, err = ParseLimits(s.IP)
	wrap("SMSQ_LIMIT_IP", err)
	c.Prefix, err = ParseLimits(s.Prefix)
	wrap("SMSQ_LIMIT_PREFIX", err)
	c.Countries, err = ParseCountries(s.Countries)
	wrap("SMSQ_COUNTRIES", err)
	c.Budget, err = ParseLimits(s.Budget)
	wrap("SMSQ_BUDGET", err)
	c.Conversion, err = ParseConversion(s.Conversion)
	wrap("SMSQ_GUARD_CONVERSION", err)
	c.Modes, err = ParseModes(s.Modes)
	wrap("SMSQ_GUARD_MODE", err)
	for item := range strings.SplitSeq(s.Exempt, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		e164, err := parseExempt(item)
		if err != nil {
			wrap("SMSQ_GUARD_EXEMPT", err)
			continue
		}
		c.Exempt = append(c.Exempt, e164)
	}
	return c, errors.Join(errs...)
}

// mode returns the rule's mode, Enforce when unset.
func (c Config) mode(rule string) Mode {
	if m, ok := c.Modes[rule]; ok {
		return m
	}
	return Enforce
}
