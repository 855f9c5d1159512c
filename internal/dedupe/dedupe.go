package dedupe

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// State is the lifecycle state of a reservation.
type State string

const (
	// StateReserved means the reservation is taken and the provider call
	// is about to go out or is in flight.
	StateReserved State = "reserved"
	// StateSent means the provider accepted the send.
	StateSent State = "sent"
	// StateUnknown means the call may have gone out (a timeout or a lost
	// response), so the pair must be treated as sent until the window ends.
	StateUnknown State = "unknown"
)

// DefaultWindow is the window used when Config.Window is zero: the
// provider allows one send per phone per channel per minute.
const DefaultWindow = 60 * time.Second

// DefaultPrefix is the key prefix used when Config.Prefix is empty.
const DefaultPrefix = "smsq"

// ErrHeld is wrapped by the error Acquire returns when another owner holds
// the reservation.
var ErrHeld = errors.New("dedupe: reservation held by another task")

// ErrNotOwner is returned by MarkSent and MarkUnknown when the caller does
// not hold the reservation: another owner holds it, or it has expired.
var ErrNotOwner = errors.New("dedupe: reservation not held by this task")

// Config configures a Store.
type Config struct {
	// Client is the Redis client; required. A cluster client works: all
	// keys of one phone share a hash slot.
	Client redis.UniversalClient
	// Window is how long a reservation blocks its pair, counted again
	// from each MarkSent or MarkUnknown. Zero means DefaultWindow; it must
	// be at least one second and a whole number of milliseconds.
	Window time.Duration
	// Prefix starts every key; empty means DefaultPrefix. It must not
	// contain '{' or '}', which would move the Cluster hash tag.
	Prefix string
	// Grace is added to the first TTL of a new reservation, to cover the
	// time between taking it and the provider's send (waits, the call
	// itself): a reservation whose sent or unknown mark is lost (Redis
	// blip, worker killed) still outlasts the provider's window.
	Grace time.Duration
	// Hasher names each phone's keys; the zero value is the unkeyed
	// SHA-256 form. Every process sharing the Redis must use the same one.
	Hasher Hasher
}

func (c Config) withDefaults() Config {
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	return c
}

func (c Config) validate() error {
	if c.Client == nil {
		return errors.New("dedupe: Config.Client is required")
	}
	if c.Window < time.Second {
		return fmt.Errorf("dedupe: Config.Window must be at least 1s, got %s", c.Window)
	}
	if c.Window%time.Millisecond != 0 {
		return fmt.Errorf("dedupe: Config.Window must be a whole number of milliseconds, got %s", c.Window)
	}
	if c.Grace < 0 || c.Grace%time.Millisecond != 0 {
		return fmt.Errorf("dedupe: Config.Grace must be a non-negative whole number of milliseconds, got %s", c.Grace)
	}
	if strings.ContainsAny(c.Prefix, "{}") {
		return fmt.Errorf("dedupe: Config.Prefix must not contain '{' or '}', got %q", c.Prefix)
	}
	return nil
}

// Store takes and records reservations in Redis. It is safe for
// concurrent use.
type Store struct {
	client   redis.UniversalClient
	window   time.Duration
	windowMS int64
	firstMS  int64 // window + grace, the TTL of a new reservation
	prefix   string
	hasher   Hasher
}

// New returns a Store for cfg, filling in defaults. An invalid setting is
// an error that names it.
func New(cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Store{
		client:   cfg.Client,
		window:   cfg.Window,
		windowMS: cfg.Window.Milliseconds(),
		firstMS:  (cfg.Window + cfg.Grace).Milliseconds(),
		prefix:   cfg.Prefix,
		hasher:   cfg.Hasher,
	}, nil
}

// Window returns the reservation window in effect.
func (s *Store) Window() time.Duration { return s.window }

// Key returns the Redis key of the reservation for a phone (E.164 form,
// e.g. "+8613800138000") and channel, for a store without a hash key:
//
//	<prefix>:resv:{<PhoneHash(e164)>}:<channel>
//
// It never contains the phone number. The hash tag keeps every key of one
// phone in one Redis Cluster slot. A store with a hash key names its keys
// with [Store.Key].
func Key(prefix, e164, channel string) string {
	return resvKey(prefix, PhoneHash(e164), channel)
}

// resvKey lays out a reservation key from a phone hash; Key and Store.Key
// both build theirs here.
func resvKey(prefix, phoneHash, channel string) string {
	return prefix + ":resv:{" + phoneHash + "}:" + channel
}

// Key returns the Redis key of the reservation for a phone and channel,
// named with the store's Hasher.
func (s *Store) Key(e164, channel string) string {
	return resvKey(s.prefix, s.hasher.PhoneHash(e164), channel)
}

// PhoneHash returns the phone's hash under the store's Hasher: the hash
// tag of its reservation keys, and the one other packages (the history)
// must index the phone by, so that both keep one slot and one name.
func (s *Store) PhoneHash(e164 string) string { return s.hasher.PhoneHash(e164) }

// Reservation is the recorded state of one (phone, channel) pair.
type Reservation struct {
	// Owner is the ID of the task holding the reservation.
	Owner string
	// State is the reservation's current state.
	State State
	// TTL is the time left before the reservation expires.
	TTL time.Duration
	// Since is when the current state was set, by the Redis server clock
	// with millisecond precision.
	Since time.Time
}

// Acquired says how Acquire obtained a reservation; it is zero when it did
// not.
type Acquired int

const (
	// AcquiredNew means the pair was free and is now held by the caller,
	// in StateReserved, for the full window.
	AcquiredNew Acquired = iota + 1
	// AcquiredReentered means the caller already held the reservation (a
	// retry or a redelivery of the same task); its state and TTL are
	// unchanged and reported.
	AcquiredReentered
)

// String returns a name for logs.
func (a Acquired) String() string {
	switch a {
	case AcquiredNew:
		return "new"
	case AcquiredReentered:
		return "reentered"
	default:
		return "none"
	}
}

// Script replies for Acquire.
const (
	acquireHeld       = 0
	acquireNew        = 1
	acquireReentered  = 2
	replicateCommands = "if redis.replicate_commands then redis.replicate_commands() end\n"
	// nowMS sets local now to the server time in ms as a string, exact
	// (Lua numbers are doubles, so the string is built from TIME's parts).
	nowMS = "local t = redis.call('TIME')\nlocal now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))\n"
)

// acquireScript takes the reservation if it is free.
//
// KEYS[1]: reservation key
// ARGV[1]: owner
// ARGV[2]: TTL of a new reservation in ms (window + grace)
// ARGV[3]: window in ms, given to a held key found without a TTL (set by
// hand, say), so that no reservation can block its pair for ever
// Returns {status, owner, state, pttl_ms, since_ms}: status 1 taken now
// (by ARGV[1]), 2 already held by ARGV[1], 0 held by another owner; the
// rest describes the holder after the call.
var acquireScript = redis.NewScript(replicateCommands + `
local cur = redis.call('HMGET', KEYS[1], 'owner', 'state', 'since_ms')
if not cur[1] then
` + nowMS + `
  if cur[2] or cur[3] then redis.call('DEL', KEYS[1]) end
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'state', 'reserved', 'since_ms', now)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, ARGV[1], 'reserved', tonumber(ARGV[2]), now}
end
local status = 0
if cur[1] == ARGV[1] then status = 2 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  ttl = tonumber(ARGV[3])
end
return {status, cur[1], cur[2] or '', ttl, cur[3] or '0'}
`)

// markScript sets the state of an owned reservation and restarts its TTL.
//
// KEYS[1]: reservation key
// ARGV[1]: owner
// ARGV[2]: new state
// ARGV[3]: window in ms
// Returns 1 when updated, 0 when ARGV[1] does not hold the key (or it is gone).
var markScript = redis.NewScript(replicateCommands + `
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
` + nowMS + `
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'since_ms', now)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// releaseScript deletes the reservation if the owner holds it
// (compare-and-delete).
//
// KEYS[1]: reservation key
// ARGV[1]: owner
// Returns 1 when deleted, 0 otherwise.
var releaseScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// getScript reads a reservation.
//
// KEYS[1]: reservation key
// Returns {owner, state, pttl_ms, since_ms}, or 0 when there is none.
var getScript = redis.NewScript(`
local cur = redis.call('HMGET', KEYS[1], 'owner', 'state', 'since_ms')
if not cur[1] then
  return 0
end
return {cur[1], cur[2] or '', redis.call('PTTL', KEYS[1]), cur[3] or '0'}
`)

func checkArgs(e164, channel string, owner *string) error {
	switch {
	case e164 == "":
		return errors.New("dedupe: e164 is empty")
	case channel == "":
		return errors.New("dedupe: channel is empty")
	case owner != nil && *owner == "":
		return errors.New("dedupe: owner is empty")
	}
	return nil
}

// Acquire takes the reservation for owner. When another owner holds it,
// it returns the holder's Reservation and an error wrapping ErrHeld.
func (s *Store) Acquire(ctx context.Context, e164, channel, owner string) (Acquired, Reservation, error) {
	if err := checkArgs(e164, channel, &owner); err != nil {
		return 0, Reservation{}, err
	}
	reply, err := acquireScript.Run(ctx, s.client, []string{s.Key(e164, channel)}, owner, s.firstMS, s.windowMS).Slice()
	if err != nil {
		return 0, Reservation{}, fmt.Errorf("dedupe: acquire: %w", err)
	}
	if len(reply) != 5 {
		return 0, Reservation{}, fmt.Errorf("dedupe: acquire: unexpected reply %v", reply)
	}
	status, ok := reply[0].(int64)
	if !ok {
		return 0, Reservation{}, fmt.Errorf("dedupe: acquire: unexpected status %v", reply[0])
	}
	r, err := parseReservation(reply[1:])
	if err != nil {
		return 0, Reservation{}, fmt.Errorf("dedupe: acquire: %w", err)
	}
	switch status {
	case acquireNew:
		return AcquiredNew, r, nil
	case acquireReentered:
		return AcquiredReentered, r, nil
	case acquireHeld:
		return 0, r, fmt.Errorf("%w (owner %q, state %s, %s left)", ErrHeld, r.Owner, r.State, r.TTL)
	default:
		return 0, Reservation{}, fmt.Errorf("dedupe: acquire: unexpected status %d", status)
	}
}

// parseReservation reads {owner, state, pttl_ms, since_ms} from a script
// reply.
func parseReservation(v []any) (Reservation, error) {
	if len(v) != 4 {
		return Reservation{}, fmt.Errorf("unexpected reply %v", v)
	}
	owner, ok1 := v[0].(string)
	state, ok2 := v[1].(string)
	pttl, ok3 := v[2].(int64)
	sinceStr, ok4 := v[3].(string)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return Reservation{}, fmt.Errorf("unexpected reply %v", v)
	}
	since, err := strconv.ParseInt(sinceStr, 10, 64)
	if err != nil {
		return Reservation{}, fmt.Errorf("bad since_ms %q: %w", sinceStr, err)
	}
	r := Reservation{Owner: owner, State: State(state), Since: time.UnixMilli(since)}
	if pttl > 0 {
		r.TTL = time.Duration(pttl) * time.Millisecond
	}
	return r, nil
}

// MarkSent sets the state to sent and restarts the TTL at the full window,
// since the provider counts its window from the send. It returns
// ErrNotOwner unless owner holds the reservation.
func (s *Store) MarkSent(ctx context.Context, e164, channel, owner string) error {
	return s.mark(ctx, e164, channel, owner, StateSent)
}

// MarkSentIn queues MarkSent on pipe, so that the mark travels in one round
// trip with other writes (the handler's journal entry). The returned func,
// called after the pipeline ran, reports the result as MarkSent would; when
// Redis did not know the script yet (first use, a restart, a failover) it
// runs MarkSent on its own, which loads it.
func (s *Store) MarkSentIn(ctx context.Context, pipe redis.Pipeliner, e164, channel, owner string) func() error {
	if err := checkArgs(e164, channel, &owner); err != nil {
		return func() error { return err }
	}
	cmd := markScript.EvalSha(ctx, pipe, []string{s.Key(e164, channel)}, owner, string(StateSent), s.windowMS)
	return func() error {
		n, err := cmd.Int64()
		switch {
		case err != nil && redis.HasErrorPrefix(err, "NOSCRIPT"):
			return s.MarkSent(ctx, e164, channel, owner)
		case err != nil:
			return fmt.Errorf("dedupe: mark %s: %w", StateSent, err)
		case n != 1:
			return ErrNotOwner
		}
		return nil
	}
}

// Client returns the Redis client the store uses, so that a caller can
// tell whether two stores share one Redis before pipelining their writes.
func (s *Store) Client() redis.Cmdable { return s.client }

// MarkUnknown sets the state to unknown and restarts the TTL at the full
// window. It returns ErrNotOwner unless owner holds the reservation.
func (s *Store) MarkUnknown(ctx context.Context, e164, channel, owner string) error {
	return s.mark(ctx, e164, channel, owner, StateUnknown)
}

func (s *Store) mark(ctx context.Context, e164, channel, owner string, state State) error {
	if err := checkArgs(e164, channel, &owner); err != nil {
		return err
	}
	n, err := markScript.Run(ctx, s.client, []string{s.Key(e164, channel)}, owner, string(state), s.windowMS).Int64()
	if err != nil {
		return fmt.Errorf("dedupe: mark %s: %w", state, err)
	}
	if n != 1 {
		return ErrNotOwner
	}
	return nil
}

// Release deletes the reservation if owner holds it and reports whether it
// did. A caller releases only when the provider call certainly did not go
// out; otherwise the reservation must run out its window.
func (s *Store) Release(ctx context.Context, e164, channel, owner string) (bool, error) {
	if err := checkArgs(e164, channel, &owner); err != nil {
		return false, err
	}
	n, err := releaseScript.Run(ctx, s.client, []string{s.Key(e164, channel)}, owner).Int64()
	if err != nil {
		return false, fmt.Errorf("dedupe: release: %w", err)
	}
	return n == 1, nil
}

// Get reads the reservation for a pair, for operators asking why no code
// was sent; ok is false when there is none.
func (s *Store) Get(ctx context.Context, e164, channel string) (r Reservation, ok bool, err error) {
	if err := checkArgs(e164, channel, nil); err != nil {
		return Reservation{}, false, err
	}
	reply, err := getScript.Run(ctx, s.client, []string{s.Key(e164, channel)}).Result()
	if err != nil {
		return Reservation{}, false, fmt.Errorf("dedupe: get: %w", err)
	}
	v, isSlice := reply.([]any)
	if !isSlice {
		return Reservation{}, false, nil
	}
	r, err = parseReservation(v)
	if err != nil {
		return Reservation{}, false, fmt.Errorf("dedupe: get: %w", err)
	}
	return r, true, nil
}
