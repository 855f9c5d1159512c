package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/config"
	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/guard"
	"github.com/smsq/smsq/internal/phone"
)

// guardSettings holds the settings of enqueue guard and enqueue verified.
type guardSettings struct {
	RedisURL    string
	HashKey     string
	Phone       string
	CountryCode string
	Channel     string
	RangeOf     string
	IP          string
	Country     string
	Budget      bool
	Top         int
	JSON        bool
	Timeout     time.Duration
}

func bindGuard(set *config.Set, s *guardSettings, verified bool) {
	set.Secret(&s.RedisURL, "redis-url", "REDIS_URL", defaultRedisURL, "Redis URL, as for the worker")
	set.Secret(&s.HashKey, "phone-hash-key", "SMSQ_PHONE_HASH_KEY", "", "the workers' phone hash key, as for the worker")
	set.String(&s.Phone, "phone", "", "", "phone number: E.164 or national with --country-code")
	set.String(&s.CountryCode, "country-code", "", "", "calling code for a national number (default +86)")
	set.Duration(&s.Timeout, "timeout", "SMSQ_ENQUEUE_TIMEOUT", 5*time.Second, "give up when Redis does not answer within this")
	if verified {
		set.String(&s.Channel, "channel", "", "", "the channel the code was sent on, e.g. CHANNEL_LOGIN")
		return
	}
	set.String(&s.RangeOf, "range-of", "", "", "lift: the number range (all but the last 4 digits) of this number")
	set.String(&s.IP, "ip", "", "", "lift: this end-user IP")
	set.String(&s.Country, "country", "", "", "lift: this calling code's cap and breaker, e.g. +44")
	set.Bool(&s.Budget, "budget", "", false, "lift: the budget's current windows")
	set.Int(&s.Top, "top", "", 20, "list: the highest counters shown per rule and window")
	set.Bool(&s.JSON, "json", "", false, "list: print JSON instead of text")
}

const guardUsage = `usage: enqueue guard [flags]                  list blocks and counters (masked)
       enqueue guard lift --phone P | --range-of P | --ip IP | --country CC | --budget
       enqueue guard exempt --phone P      exempt a number from every rule
       enqueue guard unexempt --phone P

Changes take effect at once on every worker sharing the Redis.

`

const verifiedUsage = `usage: enqueue verified --phone P --channel CH

Tells smsq that the code sent to P on CH was used; the abuse guard's
conversion breaker needs these reports.

`

// runGuard is enqueue guard.
func runGuard(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	action := "list"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		action, args = args[0], args[1:]
	}
	switch action {
	case "list", "lift", "exempt", "unexempt":
	default:
		return usageError{fmt.Errorf("enqueue guard %s: want list, lift, exempt or unexempt", action)}
	}
	var s guardSettings
	set := config.NewSet("enqueue guard", getenv, stderr)
	bindGuard(set, &s, false)
	setUsage(set, guardUsage)
	if err := parseArgs(set, args); err != nil {
		return err
	}
	if set.FlagSet().NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", set.FlagSet().Arg(0))}
	}
	if s.Timeout <= 0 {
		return usageError{fmt.Errorf("--timeout %s: must be positive", s.Timeout)}
	}
	hasher, err := dedupe.NewHasher([]byte(s.HashKey))
	if err != nil {
		return usageError{fmt.Errorf("SMSQ_PHONE_HASH_KEY: %w", err)}
	}
	parse := func(flagName, v string) (phone.Number, error) {
		n, err := phone.Parse(v, s.CountryCode)
		if err != nil {
			return n, usageError{fmt.Errorf("--%s: %w", flagName, err)}
		}
		return n, nil
	}
	// What to lift: exactly one of the flags.
	var rule, id string
	var target phone.Number
	picked := 0
	for _, on := range []bool{s.Phone != "", s.RangeOf != "", s.IP != "", s.Country != "", s.Budget} {
		if on {
			picked++
		}
	}
	switch action {
	case "list":
		if picked > 0 {
			return usageError{errors.New("the list takes no --phone, --range-of, --ip, --country or --budget")}
		}
	case "exempt", "unexempt":
		if s.Phone == "" || picked != 1 {
			return usageError{fmt.Errorf("enqueue guard %s takes --phone only", action)}
		}
		if target, err = parse("phone", s.Phone); err != nil {
			return err
		}
	case "lift":
		if picked != 1 {
			return usageError{errors.New("enqueue guard lift takes one of --phone, --range-of, --ip, --country, --budget")}
		}
	}

	rdb, err := openRedis(s.RedisURL)
	if err != nil {
		return err
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	g, err := guard.Open(ctx, guard.Deps{Client: rdb, Hasher: hasher})
	noConfig := errors.Is(err, guard.ErrNoConfig)
	if err != nil && !noConfig {
		return fmt.Errorf("cannot read the abuse guard: %w", err)
	}
	if noConfig {
		fmt.Fprintln(stderr, "enqueue guard: no worker has published its guard settings on this Redis; using the defaults")
	}

	if action == "lift" {
		switch {
		case s.Phone != "":
			if target, err = parse("phone", s.Phone); err != nil {
				return err
			}
			rule, id = guard.RulePhone, g.SubjectID(guard.RulePhone, target, "")
		case s.RangeOf != "":
			if target, err = parse("range-of", s.RangeOf); err != nil {
				return err
			}
			rule, id = guard.RulePrefix, g.SubjectID(guard.RulePrefix, target, "")
		case s.IP != "":
			rule, id = guard.RuleIP, g.IPID(s.IP)
			if id == "" {
				return usageError{fmt.Errorf("--ip %q: not an IP address", s.IP)}
			}
		case s.Country != "":
			cc, err := guard.ParseCountries(s.Country)
			if err != nil || len(cc.Allowed) != 1 {
				return usageError{fmt.Errorf("--country %q: want one calling code such as +44", s.Country)}
			}
			for code := range cc.Allowed {
				rule, id = guard.RuleCountry, code
			}
		default:
			rule, id = guard.RuleBudget, "all"
		}
		ok, err := g.Lift(ctx, rule, id)
		if err != nil {
			return err
		}
		if ok {
			fmt.Fprintf(stdout, "lifted the %s rule's counts and breakers for %s\n", rule, liftLabel(rule, target, s))
		} else {
			fmt.Fprintf(stdout, "nothing to lift: the %s rule holds no count or breaker for %s now\n", rule, liftLabel(rule, target, s))
		}
		return nil
	}
	switch action {
	case "exempt":
		if err := g.Exempt(ctx, target); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s is exempt from every abuse guard rule (enqueue guard unexempt ends it)\n", target.Masked())
		return nil
	case "unexempt":
		ok, err := g.Unexempt(ctx, target)
		if err != nil {
			return err
		}
		if !ok {
			fmt.Fprintf(stdout, "%s was not exempt at run time (numbers in SMSQ_GUARD_EXEMPT stay exempt)\n", target.Masked())
			return nil
		}
		fmt.Fprintf(stdout, "%s is no longer exempt\n", target.Masked())
		return nil
	}
	if s.Top < 1 {
		return usageError{fmt.Errorf("--top %d: must be at least 1", s.Top)}
	}
	rep, err := g.Inspect(ctx, s.Top)
	if err != nil {
		return err
	}
	if s.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	guardText(stdout, rep, time.Now())
	return nil
}

func liftLabel(rule string, n phone.Number, s guardSettings) string {
	switch rule {
	case guard.RulePhone:
		return n.Masked()
	case guard.RulePrefix:
		return "range " + guard.MaskRange(n)
	case guard.RuleIP:
		return "that IP"
	case guard.RuleCountry:
		return s.Country
	}
	return "all sends"
}

func guardText(w io.Writer, rep guard.Report, now time.Time) {
	fmt.Fprintf(w, "settings: %s\n\n", rep.Settings)
	fmt.Fprintln(w, "blocks:")
	blocks := 0
	for _, c := range rep.Counters {
		if c.Blocked {
			blocks++
			fmt.Fprintf(w, "  %-8s %-22s %d of %s  until %s  (%s, id %s)\n", c.Rule, c.Label, c.Count, c.Limit, stamp(c.Ends, now), c.Mode, short(c.ID))
		}
	}
	for _, b := range rep.Breakers {
		blocks++
		fmt.Fprintf(w, "  conversion %-7s %-18s %s until %s", b.Kind, b.Label, b.State, stamp(b.Until, now))
		if b.State == "half-open" {
			fmt.Fprintf(w, ", %d probes sent", b.Probes)
		} else if b.Sends > 0 {
			fmt.Fprintf(w, ", tripped at %d of %d verified", b.Verif, b.Sends)
		}
		fmt.Fprintf(w, "  (id %s)\n", short(b.ID))
	}
	if blocks == 0 {
		fmt.Fprintln(w, "  none")
	}
	fmt.Fprintln(w, "\ncounters of the current windows, highest first:")
	if len(rep.Counters) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, c := range rep.Counters {
		fmt.Fprintf(w, "  %-8s %-22s %d of %s  window ends %s\n", c.Rule, c.Label, c.Count, c.Limit, stamp(c.Ends, now))
	}
	fmt.Fprintln(w, "\nconversion by country (channels reporting verified codes: "+orNone(strings.Join(rep.Reporting, ", "))+"):")
	if len(rep.Conversion) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, c := range rep.Conversion {
		fmt.Fprintf(w, "  %-6s %5.1f %%  %d of %d sends verified\n", c.Country, c.Ratio*100, c.Verified, c.Sends)
	}
	fmt.Fprintln(w, "\nexempt at run time:")
	if len(rep.Exempt) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, e := range rep.Exempt {
		fmt.Fprintf(w, "  %s\n", e.Label)
	}
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func orNone(s string) string {
	if s == "" {
		return "none yet, so the breaker is off"
	}
	return s
}

// runVerified is enqueue verified.
func runVerified(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var s guardSettings
	set := config.NewSet("enqueue verified", getenv, stderr)
	bindGuard(set, &s, true)
	setUsage(set, verifiedUsage)
	if err := parseArgs(set, args); err != nil {
		return err
	}
	if set.FlagSet().NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", set.FlagSet().Arg(0))}
	}
	if s.Phone == "" || s.Channel == "" {
		return usageError{errors.New("give --phone and --channel")}
	}
	n, err := phone.Parse(s.Phone, s.CountryCode)
	if err != nil {
		return usageError{fmt.Errorf("--phone: %w", err)}
	}
	if s.Timeout <= 0 {
		return usageError{fmt.Errorf("--timeout %s: must be positive", s.Timeout)}
	}
	rdb, err := openRedis(s.RedisURL)
	if err != nil {
		return err
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	c := smsq.NewClientFromRedis(rdb, smsq.WithPhoneHashKey([]byte(s.HashKey)))
	if err := c.Verified(ctx, n.E164, s.Channel); err != nil {
		if errors.Is(err, smsq.ErrInvalidRequest) {
			return usageError{err}
		}
		return err
	}
	fmt.Fprintf(stdout, "recorded: the code sent to %s on %s was used\n", n.Masked(), strings.ToUpper(strings.TrimSpace(s.Channel)))
	return nil
}
