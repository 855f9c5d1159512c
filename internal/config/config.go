// Package config binds settings to command-line flags and environment
// variables, one to one, so that every setting can be given either way and
// listed in one table.
//
// Precedence: a flag beats its environment variable, which beats the
// default. A secret setting can also be read from a file named by
// <ENV>_FILE, which keeps it out of process listings and shell history. A
// bad value is an error naming the setting; nothing is silently clamped.
//
// The package never reads the process environment itself: callers pass a
// getenv function.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Setting describes one setting for documentation and drift checks.
type Setting struct {
	Flag    string // without dashes, e.g. "concurrency"
	Env     string // e.g. "SMSQ_CONCURRENCY"
	Default string
	Usage   string
	Secret  bool // may also come from <Env>_FILE
}

// Set is a group of settings for one command.
type Set struct {
	fs       *flag.FlagSet
	getenv   func(string) string
	settings []Setting
	errs     []namedErr
	fromEnv  map[string]bool
	setFlags map[string]bool
}

// NewSet returns an empty Set for the command name; usage goes to out.
func NewSet(name string, getenv func(string) string, out io.Writer) *Set {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	return &Set{fs: fs, getenv: getenv, fromEnv: map[string]bool{}, setFlags: map[string]bool{}}
}

// FlagSet returns the underlying flag set, for positional arguments.
func (s *Set) FlagSet() *flag.FlagSet { return s.fs }

// lookup returns the environment value of a setting, reading <env>_FILE for
// secrets.
func (s *Set) lookup(env string, secret bool) (string, bool, error) {
	if v := s.getenv(env); v != "" {
		return v, true, nil
	}
	if secret {
		if path := s.getenv(env + "_FILE"); path != "" {
			b, err := os.ReadFile(path)
			if err != nil {
				return "", false, fmt.Errorf("%s_FILE: %w", env, err)
			}
			v := strings.TrimRight(string(b), "\r\n")
			if v == "" {
				// Taking it as unset would fall back silently: the
				// embedded Redis for REDIS_URL, the unkeyed hash for
				// SMSQ_PHONE_HASH_KEY.
				return "", false, fmt.Errorf("%s_FILE: %s is empty", env, path)
			}
			return v, true, nil
		}
	}
	return "", false, nil
}

type namedErr struct {
	name string
	err  error
}

type value[T any] struct {
	p     *T
	parse func(string) (T, error)
	show  func(T) string
}

func (v *value[T]) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return v.show(*v.p)
}

func (v *value[T]) Set(s string) error {
	x, err := v.parse(s)
	if err != nil {
		return err
	}
	*v.p = x
	return nil
}

// IsBoolFlag lets a boolean setting be given as a bare --name, as the flag
// package does for its own booleans.
func (v *value[T]) IsBoolFlag() bool {
	_, ok := any(v.p).(*bool)
	return ok
}

func bind[T any](s *Set, p *T, name, env string, def T, usage string, secret bool, parse func(string) (T, error), show func(T) string) {
	*p = def
	st := Setting{Flag: name, Env: env, Default: show(def), Usage: usage, Secret: secret}
	s.settings = append(s.settings, st)
	u := usage
	if env != "" {
		u += " [$" + env + "]"
	}
	// Registered before the environment is read: the flag package shows
	// the value at registration as the default in -h, which must be the
	// declared default, never an environment value (a password in
	// REDIS_URL, say).
	s.fs.Var(&value[T]{p: p, parse: parse, show: show}, name, u)
	if env != "" {
		raw, ok, err := s.lookup(env, secret)
		switch {
		case err != nil:
			s.errs = append(s.errs, namedErr{name, err})
		case ok:
			x, err := parse(raw)
			if err != nil {
				shown := raw
				if secret {
					shown = "(hidden)"
				}
				s.errs = append(s.errs, namedErr{name, fmt.Errorf("%s=%s: %w", env, shown, err)})
			} else {
				*p = x
				s.fromEnv[name] = true
			}
		}
	}
}

// String binds a string setting.
func (s *Set) String(p *string, name, env, def, usage string) {
	bind(s, p, name, env, def, usage, false, func(v string) (string, error) { return v, nil }, func(v string) string { return v })
}

// Secret binds a string setting that may come from <env>_FILE and is never
// shown in usage or errors.
func (s *Set) Secret(p *string, name, env, def, usage string) {
	bind(s, p, name, env, def, usage, true, func(v string) (string, error) { return v, nil }, func(v string) string { return v })
}

// Int binds an integer setting.
func (s *Set) Int(p *int, name, env string, def int, usage string) {
	bind(s, p, name, env, def, usage, false, func(v string) (int, error) {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return 0, fmt.Errorf("%q is not a whole number", v)
		}
		return n, nil
	}, strconv.Itoa)
}

// Duration binds a duration setting ("500ms", "10s", "5m").
func (s *Set) Duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	bind(s, p, name, env, def, usage, false, func(v string) (time.Duration, error) {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration such as 500ms, 10s or 5m", v)
		}
		return d, nil
	}, FormatDuration)
}

// Bool binds a boolean setting.
func (s *Set) Bool(p *bool, name, env string, def bool, usage string) {
	bind(s, p, name, env, def, usage, false, func(v string) (bool, error) {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return false, fmt.Errorf("%q is not true or false", v)
		}
		return b, nil
	}, strconv.FormatBool)
}

// Parse applies the environment, then args. Errors name the setting.
func (s *Set) Parse(args []string) error {
	if err := s.fs.Parse(args); err != nil {
		return err
	}
	s.fs.Visit(func(f *flag.Flag) { s.setFlags[f.Name] = true })
	// Environment errors are reported only for settings the flags did not
	// override, so a flag can fix a bad variable.
	var errs []error
	for _, e := range s.errs {
		if !s.setFlags[e.name] {
			errs = append(errs, e.err)
		}
	}
	return errors.Join(errs...)
}

// IsSet reports whether a setting was given by flag or environment.
func (s *Set) IsSet(name string) bool { return s.setFlags[name] || s.fromEnv[name] }

// Settings lists the settings in the order they were bound.
func (s *Set) Settings() []Setting { return append([]Setting(nil), s.settings...) }

// Markdown renders settings as a README table.
func Markdown(settings []Setting) string {
	var b strings.Builder
	b.WriteString("| Flag | Environment | Default | Meaning |\n|---|---|---|---|\n")
	for _, st := range settings {
		env := "`" + st.Env + "`"
		if st.Secret {
			env += " (or `" + st.Env + "_FILE`)"
		}
		def := st.Default
		if def == "" {
			def = "(none)"
		}
		fmt.Fprintf(&b, "| `--%s` | %s | `%s` | %s |\n", st.Flag, env, def, st.Usage)
	}
	return b.String()
}

// ParseWeights parses "critical=6,default=3,low=1".
func ParseWeights(s string) (map[string]int, error) {
	out := map[string]int{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, w, ok := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("%q: want queue=weight", item)
		}
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q: weight must be a whole number >= 1", item)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("queue %q listed twice", name)
		}
		out[name] = n
	}
	if len(out) == 0 {
		return nil, errors.New("no queues")
	}
	return out, nil
}

// FormatWeights is the inverse of ParseWeights, sorted by weight.
func FormatWeights(m map[string]int) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if m[names[i]] != m[names[j]] {
			return m[names[i]] > m[names[j]]
		}
		return names[i] < names[j]
	})
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + strconv.Itoa(m[n])
	}
	return strings.Join(parts, ",")
}

// FormatDuration prints d without zero units: "24h", "1m", "1m30s", "500ms".
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
