package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// DefaultRate is GenAuth's documented SMS rate, 100 sends per second.
const DefaultRate = "100/s"

// maxRate bounds Rate so that the emission interval stays far above the
// precision of the limiter's timestamps.
const maxRate = 1_000_000

// Limit is a rate: Rate sends per Period, Burst of them at once. The zero
// Limit means no limit.
type Limit struct {
	Rate   int           // sends per Period, at least 1
	Period time.Duration // time.Second, time.Minute or time.Hour
	Burst  int           // sends allowed at once, at least 1
}

// IsZero reports whether l is the zero Limit (no limit).
func (l Limit) IsZero() bool { return l == Limit{} }

// String formats l as ParseRate reads it, plus the burst: "100/s burst 10".
func (l Limit) String() string {
	if l.IsZero() {
		return "off"
	}
	return fmt.Sprintf("%d/%s burst %d", l.Rate, unit(l.Period), l.Burst)
}

// PerSecond is l's steady rate in sends per second.
func (l Limit) PerSecond() float64 {
	if l.Period <= 0 {
		return 0
	}
	return float64(l.Rate) / l.Period.Seconds()
}

// WithBurst returns l with Burst set to n, or to [DefaultBurst] when n is 0.
func (l Limit) WithBurst(n int) Limit {
	if n == 0 {
		n = DefaultBurst(l)
	}
	l.Burst = n
	return l
}

// Validate reports what is wrong with a non-zero l.
func (l Limit) Validate() error {
	switch {
	case l.IsZero():
		return nil
	case l.Rate < 1 || l.Rate > maxRate:
		return fmt.Errorf("rate %d: must be between 1 and %d", l.Rate, maxRate)
	case l.Period != time.Second && l.Period != time.Minute && l.Period != time.Hour:
		return fmt.Errorf("period %s: must be a second, a minute or an hour", l.Period)
	case l.Burst < 1:
		// GCRA with no burst refuses every send.
		return fmt.Errorf("burst %d: must be at least 1", l.Burst)
	}
	return nil
}

// DefaultBurst is a tenth of a second's worth of sends at l's steady rate,
// rounded up, at least 1: 10 at 100/s, 10 at 6000/m, 1 at 5/s. It absorbs
// the jitter of many workers asking at once without letting through more
// than a fraction of a second of traffic in one go.
func DefaultBurst(l Limit) int {
	return max(1, int(math.Ceil(l.PerSecond()/10-1e-9)))
}

// ParseRate reads a rate: "100" or "100/s" (per second), "6000/m" (per
// minute), "10/h" (per hour), or "off" for no limit (the zero Limit). The
// Burst of the result is [DefaultBurst].
func ParseRate(s string) (Limit, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	if v == "off" {
		return Limit{}, nil
	}
	num, per, found := strings.Cut(v, "/")
	l := Limit{Period: time.Second}
	if found {
		switch strings.TrimSpace(per) {
		case "s":
		case "m":
			l.Period = time.Minute
		case "h":
			l.Period = time.Hour
		default:
			return Limit{}, fmt.Errorf("%q: the unit after / must be s, m or h", s)
		}
	}
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil {
		return Limit{}, fmt.Errorf("%q is not a rate such as 100, 100/s, 6000/m or off", s)
	}
	l.Rate = n
	if n < 1 || n > maxRate {
		return Limit{}, fmt.Errorf("%q: the rate must be between 1 and %d (off lifts the limit)", s, maxRate)
	}
	return l.WithBurst(0), nil
}

// ParseChannelLimits reads per-channel rates: a comma-separated list of
// NAME=RATE, e.g. "CHANNEL_LOGIN=50,CHANNEL_REGISTER=1200/m", each RATE
// read by [ParseRate] (so with the default burst). channel turns a NAME into
// the channel's key, or refuses it; nil keeps names as written. Every name
// is checked, and two that give the same key are an error, before a
// channel set to off is left out. The empty string gives no limits.
func ParseChannelLimits(s string, channel func(string) (string, error)) (map[string]Limit, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	if channel == nil {
		channel = func(name string) (string, error) { return name, nil }
	}
	out := map[string]Limit{}
	seen := map[string]bool{}
	var errs []error
	for item := range strings.SplitSeq(s, ",") {
		name, rate, ok := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			errs = append(errs, fmt.Errorf("%q: want NAME=RATE, e.g. CHANNEL_LOGIN=50", strings.TrimSpace(item)))
			continue
		}
		key, err := channel(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[key] {
			errs = append(errs, fmt.Errorf("%s: given twice", key))
			continue
		}
		seen[key] = true
		l, err := ParseRate(rate)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		if !l.IsZero() {
			out[key] = l
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func unit(d time.Duration) string {
	switch d {
	case time.Second:
		return "s"
	case time.Minute:
		return "m"
	case time.Hour:
		return "h"
	}
	return d.String()
}
