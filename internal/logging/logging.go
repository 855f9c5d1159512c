// Package logging builds the zerolog logger of a command and adapts it for
// asynq, whose own messages would otherwise go to the standard logger in
// another format.
package logging

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/smsq/smsq/internal/phone"
)

// New returns a logger writing to w at level ("debug", "info", "warn",
// "error") in format ("json", "console", or "auto": console on a terminal,
// JSON otherwise). The console form is short, for people (see newConsole);
// JSON has every field.
func New(w io.Writer, level, format string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(strings.ToLower(strings.TrimSpace(level)))
	if err != nil || lvl == zerolog.NoLevel {
		return zerolog.Nop(), fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	switch format {
	case "json":
	case "console":
		w = newConsole(w)
	case "auto", "":
		if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			w = newConsole(w)
		}
	default:
		return zerolog.Nop(), fmt.Errorf("log format %q: want json, console or auto", format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// Asynq adapts a zerolog logger to asynq.Logger. A message repeated within
// Every is logged once, then once more with the count of repeats when the
// interval ends, so that an outage is reported once per interval and not
// once per poll.
type Asynq struct {
	Log   zerolog.Logger
	Every time.Duration
	// Component names the source in each line; default "asynq".
	Component string

	once    sync.Once
	repeats Repeats
}

// Repeats rate-limits a stream of messages: the first of each message in
// an interval of Every passes, later ones within it are counted, and the
// count goes with the next one that passes. Messages are compared after
// task IDs in them are replaced (see repeatKey), so that one outage
// reported once per task in flight counts as one message. The zero value
// lets everything through; it is safe for concurrent use.
type Repeats struct {
	Every time.Duration

	mu   sync.Mutex
	seen map[string]*repeat
}

type repeat struct {
	first time.Time
	count int
}

// Allow reports whether msg should be logged now, and how many repeats of
// it were held back since it last was.
func (r *Repeats) Allow(msg string) (ok bool, suppressed int) {
	if r.Every <= 0 {
		return true, 0
	}
	key := repeatKey(msg)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]*repeat{}
	}
	now := time.Now()
	p := r.seen[key]
	if p != nil && now.Sub(p.first) < r.Every {
		p.count++
		return false, 0
	}
	if p != nil {
		suppressed = p.count
	}
	r.seen[key] = &repeat{first: now}
	if len(r.seen) > 1000 {
		// Bound memory: so many distinct messages are not repeats anyway.
		clear(r.seen)
	}
	return true, suppressed
}

// taskIDs match what asynq and smsq put in messages about one task: task
// IDs after "id=" and lists of them in brackets (asynq's lease and sync
// messages), and UUIDs.
var taskIDs = regexp.MustCompile(`(?i)\bid=[^\s;,"]+|\[[^\]]*\]|\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b`)

// repeatKey is msg with task IDs replaced.
func repeatKey(msg string) string { return taskIDs.ReplaceAllString(msg, "<id>") }

func (a *Asynq) emit(ev *zerolog.Event, args []any) {
	// asynq's messages quote task IDs, queue names and handler errors,
	// which a raw producer or GenAuth may have filled with a phone number.
	msg := phone.MaskText(fmt.Sprint(args...))
	a.once.Do(func() { a.repeats.Every = a.Every })
	ok, suppressed := a.repeats.Allow(msg)
	if !ok {
		ev.Discard()
		return
	}
	if suppressed > 0 {
		ev = ev.Int("repeated", suppressed)
	}
	component := a.Component
	if component == "" {
		component = "asynq"
	}
	ev.Str("component", component).Msg(msg)
}

// Debug logs at debug level.
func (a *Asynq) Debug(args ...any) { a.emit(a.Log.Debug(), args) }

// Info logs at info level.
func (a *Asynq) Info(args ...any) { a.emit(a.Log.Info(), args) }

// Warn logs at warn level.
func (a *Asynq) Warn(args ...any) { a.emit(a.Log.Warn(), args) }

// Error logs at error level.
func (a *Asynq) Error(args ...any) { a.emit(a.Log.Error(), args) }

// Fatal logs at error level and exits, as asynq expects of it.
func (a *Asynq) Fatal(args ...any) {
	a.emit(a.Log.Error(), args)
	os.Exit(1)
}

// Redis adapts an Asynq logger for go-redis's own messages (failed dials
// and the like), which would otherwise go to the standard logger once per
// connection attempt during an outage.
type Redis struct {
	A *Asynq
}

// Printf logs a go-redis message at warn level, repeats rate-limited.
func (r Redis) Printf(_ context.Context, format string, v ...any) {
	r.A.Warn(fmt.Sprintf(format, v...))
}

// Std adapts an Asynq logger as the output of the standard log package,
// which libraries use for their own complaints (asynq's metrics collector
// logs every failed scrape there): each line becomes a rate-limited
// warning instead of plain text in the JSON stream. Use it with
// log.SetFlags(0).
type Std struct {
	A *Asynq
}

// Write logs each line of p.
func (s Std) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if line != "" {
			s.A.Warn(line)
		}
	}
	return len(p), nil
}
