package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// DefaultPrefix starts every key when Config.Prefix is empty.
const DefaultPrefix = "smsq:rate:"

// refundTimeout bounds the hand-back of a channel token, which runs even
// when the caller's context has ended.
const refundTimeout = time.Second

// GlobalKey returns the key of the limiter every send passes:
//
//	<prefix>global
func GlobalKey(prefix string) string { return prefix + "global" }

// ChannelKey returns the key of a channel's own limiter:
//
//	<prefix>channel:<channel>
func ChannelKey(prefix, channel string) string { return prefix + "channel:" + channel }

// Config configures a Limiter.
type Config struct {
	// Client is the Redis shared by every worker; required.
	Client redis.UniversalClient
	// Global limits every send; the zero Limit means none.
	Global Limit
	// Channels adds a limit per channel name, under the global one.
	Channels map[string]Limit
	// Prefix starts every key; empty means DefaultPrefix.
	Prefix string
}

// Limiter hands out send tokens under the configured limits. It is safe
// for concurrent use.
type Limiter struct {
	client   redis.UniversalClient
	rl       *redis_rate.Limiter
	global   Limit
	channels map[string]Limit
	prefix   string
}

// New validates cfg and returns a Limiter.
func New(cfg Config) (*Limiter, error) {
	if cfg.Client == nil {
		return nil, errors.New("ratelimit: Config.Client is required")
	}
	if err := cfg.Global.Validate(); err != nil {
		return nil, fmt.Errorf("ratelimit: Config.Global: %w", err)
	}
	channels := make(map[string]Limit, len(cfg.Channels))
	for name, l := range cfg.Channels {
		if name == "" {
			return nil, errors.New("ratelimit: Config.Channels: empty channel name")
		}
		if err := l.Validate(); err != nil {
			return nil, fmt.Errorf("ratelimit: Config.Channels[%s]: %w", name, err)
		}
		if !l.IsZero() {
			channels[name] = l
		}
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	return &Limiter{
		client:   cfg.Client,
		rl:       redis_rate.NewLimiter(keyspace{cfg.Client}),
		global:   cfg.Global,
		channels: channels,
		prefix:   cfg.Prefix,
	}, nil
}

// Enabled reports whether any limit is set; a Limiter without one allows
// every send without asking Redis.
func (l *Limiter) Enabled() bool { return !l.global.IsZero() || len(l.channels) > 0 }

// String describes the limits, for logs: "100/s burst 10; CHANNEL_LOGIN
// 50/s burst 5".
func (l *Limiter) String() string {
	parts := []string{l.global.String()}
	for _, name := range slices.Sorted(maps.Keys(l.channels)) {
		parts = append(parts, name+" "+l.channels[name].String())
	}
	return strings.Join(parts, "; ")
}

// Allow takes a token for one send on channel. It returns 0 when the send
// may go now (the token is spent), or how long to wait before asking again
// (nothing is spent). It never waits itself.
//
// The channel's limiter is asked before the global one, so that a send
// its channel refuses spends no global token. When the channel allows and
// the global limiter refuses, the channel token is handed back, so that a
// channel waiting on the global limit does not burn its own tokens on
// refused sends; should that hand-back fail (Redis gone), the channel
// loses one token, which delays its next send by one emission interval and
// never lets a send through.
func (l *Limiter) Allow(ctx context.Context, channel string) (time.Duration, error) {
	cl, perChannel := l.channels[channel]
	if perChannel {
		wait, err := l.take(ctx, ChannelKey(l.prefix, channel), cl)
		if err != nil || wait > 0 {
			return wait, err
		}
	}
	if !l.global.IsZero() {
		wait, err := l.take(ctx, GlobalKey(l.prefix), l.global)
		if err != nil || wait > 0 {
			if perChannel {
				l.refund(ctx, channel, cl)
			}
			return wait, err
		}
	}
	return 0, nil
}

// AllowKey takes a token from the limiter <prefix><key> under lim, as
// Allow does for the configured limits: 0 when allowed, else the wait
// before asking again. The HTTP API limits each API key this way.
func (l *Limiter) AllowKey(ctx context.Context, key string, lim Limit) (time.Duration, error) {
	return l.take(ctx, l.prefix+key, lim)
}

// take runs one GCRA step: 0 when a token was taken, else the wait.
func (l *Limiter) take(ctx context.Context, key string, lim Limit) (time.Duration, error) {
	r, err := l.rl.Allow(ctx, key, redis_rate.Limit{Rate: lim.Rate, Period: lim.Period, Burst: lim.Burst})
	if err != nil {
		return 0, fmt.Errorf("ratelimit: %s: %w", key, err)
	}
	if r.Allowed > 0 {
		return 0, nil
	}
	// RetryAfter is positive on a refusal; keep it so, since 0 means allowed.
	return max(r.RetryAfter, time.Microsecond), nil
}

// refundScript hands one token back to a GCRA limiter by moving its
// theoretical arrival time (TAT, the value redis_rate stores: seconds as a
// float) back by one emission interval. A TAT left in the past reads as an
// idle limiter, as redis_rate takes the later of TAT and now, so the result
// is exactly the state the limiter would have had without the token.
// Tokens are interchangeable, so sends taken in between change nothing.
// redis_rate's own step with a cost of -1 cannot do this: it skips the
// write when the limiter comes back to idle, the usual case.
//
// KEYS[1]: the limiter key. ARGV[1]: the emission interval in seconds.
// Returns 1 when the key existed, 0 when it had already expired.
var refundScript = redis.NewScript(`
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat then
  return 0
end
redis.call('SET', KEYS[1], tat - tonumber(ARGV[1]), 'KEEPTTL')
return 1
`)

// refund hands a channel token back, even when ctx has ended.
func (l *Limiter) refund(ctx context.Context, channel string, lim Limit) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refundTimeout)
	defer cancel()
	interval := lim.Period.Seconds() / float64(lim.Rate)
	_ = refundScript.Run(rctx, l.client, []string{ChannelKey(l.prefix, channel)}, strconv.FormatFloat(interval, 'g', -1, 64)).Err()
}

// libraryPrefix is what redis_rate puts before every key it is given.
const libraryPrefix = "rate:"

// keyspace is the client given to redis_rate. It takes off the prefix the
// library adds to every key, so that the limiter keys sit under the smsq
// prefix with every other smsq key (one pattern for ACLs such as ~smsq:*,
// for key scans and for clean-up). The package tests read the keys back
// to catch a library that changes its prefix.
type keyspace struct {
	redis.UniversalClient
}

func stripKeys(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = strings.TrimPrefix(k, libraryPrefix)
	}
	return out
}

func (k keyspace) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return k.UniversalClient.Eval(ctx, script, stripKeys(keys), args...)
}

func (k keyspace) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return k.UniversalClient.EvalSha(ctx, sha1, stripKeys(keys), args...)
}

func (k keyspace) EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return k.UniversalClient.EvalRO(ctx, script, stripKeys(keys), args...)
}

func (k keyspace) EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return k.UniversalClient.EvalShaRO(ctx, sha1, stripKeys(keys), args...)
}

func (k keyspace) Del(ctx context.Context, keys ...string) *redis.IntCmd {
	return k.UniversalClient.Del(ctx, stripKeys(keys)...)
}
