// Package outcome hands every final outcome of a send task back to
// producers: it appends one entry per task to a Redis Stream that
// consumers read with consumer groups, and announces the task on a Pub/Sub
// channel so that a producer waiting for it wakes at once.
//
// An entry holds the masked phone and the keyed phone hash, never the
// number. Appending is idempotent per task: a redelivered task that
// already finished appends nothing, so a worker that crashed between
// recording an outcome and appending it can append it again on the
// redelivery without doubling it.
package outcome

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Version is the schema version of Event, carried in every entry as "v".
// Fields may be added within a version; a change of meaning or a removed
// field makes a new version.
const Version = 1

// Defaults.
const (
	DefaultPrefix = "smsq"
	// DefaultMaxLen bounds the stream: about a day and a half of traffic
	// at 1 send/s, or 17 minutes at GenAuth's ceiling of 100 sends/s,
	// tens of MB of Redis at most.
	DefaultMaxLen = 100_000
	// SeenWindow is how long a task's append is remembered, so that a
	// redelivery appends nothing. Redeliveries come within a lease
	// (30 s) or a retry delay (at most 30 s) of the first run.
	SeenWindow = time.Hour
)

// Event is one final outcome. Its JSON form and the stream entry use the
// same field names; in the stream every value is a string, times are
// RFC 3339 in UTC with milliseconds and zero numbers are left out.
type Event struct {
	V int `json:"v"`
	// TaskID is the asynq task ID (the idempotency key when the producer
	// gave one).
	TaskID string `json:"taskId"`
	// Key is the producer's idempotency key, when it gave one.
	Key     string `json:"idempotencyKey,omitempty"`
	Queue   string `json:"queue"`
	Channel string `json:"channel,omitempty"`
	// Phone is the masked number; PhoneHash the keyed hash smsq indexes
	// the phone by (the same value for the same number and key).
	Phone     string `json:"phone,omitempty"`
	PhoneHash string `json:"phoneHash,omitempty"`
	Outcome   string `json:"outcome"`
	Reason    string `json:"reason,omitempty"`
	// Rule names what decided a blocked outcome (the abuse guard's rule).
	Rule       string `json:"rule,omitempty"`
	StatusCode int    `json:"statusCode,omitempty"`
	APICode    int    `json:"apiCode,omitempty"`
	RequestID  string `json:"requestId,omitempty"`
	Attempts   int    `json:"attempts"`
	// RetryInMS is, for deduplicated and blocked outcomes, how long until
	// a code can be sent to the pair again.
	RetryInMS  int64     `json:"retryInMs,omitempty"`
	EnqueuedAt time.Time `json:"enqueuedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt"`
	// Sandbox is set when the worker sent to its built-in fake GenAuth.
	Sandbox bool `json:"sandbox,omitempty"`

	// Kind is empty for a task's final outcome. KindBudgetWarning marks
	// the abuse guard's warning that a budget window crossed 80 %: it has
	// no task, outcome or phone, but Budget (the window's limit, "50000/d"),
	// Used (sends counted in it) and WindowEndsAt; FinishedAt is when it
	// was crossed.
	Kind         string    `json:"kind,omitempty"`
	Budget       string    `json:"budget,omitempty"`
	Used         int64     `json:"used,omitempty"`
	WindowEndsAt time.Time `json:"windowEndsAt,omitzero"`
}

// KindBudgetWarning is Event.Kind of a budget warning.
const KindBudgetWarning = "budget-warning"

// StreamKey is the outcome stream. SeenKey, in the same Cluster slot,
// remembers which tasks were appended.
func StreamKey(prefix string) string { return prefix + ":{outcomes}" }

// SeenKey is the sorted set of recently appended task IDs, scored by the
// time of their append.
func SeenKey(prefix string) string { return prefix + ":{outcomes}:seen" }

// Channel is the Pub/Sub channel every appended task ID is published on.
func Channel(prefix string) string { return prefix + ":outcomes:done" }

const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// Fields returns the stream entry of e, as field-value pairs.
func (e Event) Fields() []any {
	f := make([]any, 0, 36)
	add := func(k, v string) {
		if v != "" {
			f = append(f, k, v)
		}
	}
	num := func(k string, n int64) {
		if n != 0 {
			f = append(f, k, strconv.FormatInt(n, 10))
		}
	}
	v := e.V
	if v == 0 {
		v = Version
	}
	f = append(f, "v", strconv.Itoa(v))
	add("taskId", e.TaskID)
	add("idempotencyKey", e.Key)
	add("queue", e.Queue)
	add("channel", e.Channel)
	add("phone", e.Phone)
	add("phoneHash", e.PhoneHash)
	add("outcome", e.Outcome)
	add("reason", e.Reason)
	add("rule", e.Rule)
	num("statusCode", int64(e.StatusCode))
	num("apiCode", int64(e.APICode))
	add("requestId", e.RequestID)
	f = append(f, "attempts", strconv.Itoa(e.Attempts))
	num("retryInMs", e.RetryInMS)
	if !e.EnqueuedAt.IsZero() {
		f = append(f, "enqueuedAt", e.EnqueuedAt.UTC().Format(timeLayout))
	}
	f = append(f, "finishedAt", e.FinishedAt.UTC().Format(timeLayout))
	if e.Sandbox {
		f = append(f, "sandbox", "true")
	}
	add("kind", e.Kind)
	add("budget", e.Budget)
	num("used", e.Used)
	if !e.WindowEndsAt.IsZero() {
		f = append(f, "windowEndsAt", e.WindowEndsAt.UTC().Format(timeLayout))
	}
	return f
}

// Parse reads a stream entry's values back into an Event. Unknown fields
// are ignored, so that a reader of this version reads later entries of
// the same version.
func Parse(values map[string]any) (Event, error) {
	var e Event
	str := func(k string) string {
		s, _ := values[k].(string)
		return s
	}
	var errs []string
	atoi := func(k string) int64 {
		s := str(k)
		if s == "" {
			return 0
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s %q: not an integer", k, s))
		}
		return n
	}
	when := func(k string) time.Time {
		s := str(k)
		if s == "" {
			return time.Time{}
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s %q: not an RFC 3339 time", k, s))
		}
		return t.UTC()
	}
	e.V = int(atoi("v"))
	e.TaskID = str("taskId")
	e.Key = str("idempotencyKey")
	e.Queue = str("queue")
	e.Channel = str("channel")
	e.Phone = str("phone")
	e.PhoneHash = str("phoneHash")
	e.Outcome = str("outcome")
	e.Reason = str("reason")
	e.Rule = str("rule")
	e.StatusCode = int(atoi("statusCode"))
	e.APICode = int(atoi("apiCode"))
	e.RequestID = str("requestId")
	e.Attempts = int(atoi("attempts"))
	e.RetryInMS = atoi("retryInMs")
	e.EnqueuedAt = when("enqueuedAt")
	e.FinishedAt = when("finishedAt")
	e.Sandbox = str("sandbox") == "true"
	e.Kind = str("kind")
	e.Budget = str("budget")
	e.Used = atoi("used")
	e.WindowEndsAt = when("windowEndsAt")
	if e.V == 0 {
		errs = append(errs, "v: missing")
	}
	if e.TaskID == "" && e.Kind == "" {
		errs = append(errs, "taskId: missing")
	}
	if e.Outcome == "" && e.Kind == "" {
		errs = append(errs, "outcome: missing")
	}
	if len(errs) > 0 {
		return e, errors.New("outcome: entry: " + strings.Join(errs, "; "))
	}
	return e, nil
}

// Config configures a Stream.
type Config struct {
	// Client is the Redis connection; required.
	Client redis.UniversalClient
	// Prefix starts every key; default "smsq".
	Prefix string
	// MaxLen trims the stream approximately to this many entries; 0 means
	// DefaultMaxLen, a negative value keeps no stream (tasks are still
	// announced on Channel).
	MaxLen int64
}

// Stream appends outcome events.
type Stream struct {
	c      redis.UniversalClient
	prefix string
	maxLen int64
	trims  atomic.Uint64
}

// New returns a Stream for cfg.
func New(cfg Config) (*Stream, error) {
	if cfg.Client == nil {
		return nil, errors.New("outcome: Client is required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.MaxLen == 0 {
		cfg.MaxLen = DefaultMaxLen
	}
	return &Stream{c: cfg.Client, prefix: cfg.Prefix, maxLen: cfg.MaxLen}, nil
}

// Enabled reports whether entries are kept (MaxLen is not off).
func (s *Stream) Enabled() bool { return s.maxLen > 0 }

// Prefix returns the key prefix.
func (s *Stream) Prefix() string { return s.prefix }

// appendScript appends one entry unless the member was appended within the
// seen window, trims the seen set when asked, and publishes the task ID.
// An append Redis refuses leaves the member out of the seen set, so that
// it is made again.
//
// KEYS[1] stream, KEYS[2] seen set. ARGV: member, now (ms), seen window
// (ms), max length (0: no stream), trim seen ("1"), channel, task ID, then
// the entry's field-value pairs. Returns the entry ID, or "" when the
// member had been appended already.
var appendScript = redis.NewScript(`
local maxlen = tonumber(ARGV[4])
local id = ''
if maxlen > 0 then
  if redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1]) == 0 then
    return ''
  end
  local ok, res = pcall(redis.call, 'XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(ARGV, 8))
  if not ok then
    -- Not appended: forget the member, so that the next try appends.
    redis.call('ZREM', KEYS[2], ARGV[1])
    return redis.error_reply(type(res) == 'table' and res.err or tostring(res))
  end
  id = res
  if ARGV[5] == '1' then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[3]))
  end
end
redis.call('PUBLISH', ARGV[6], ARGV[7])
return id
`)

// member names a task in the seen set: a task whose ID already named
// another task (a collision) has its own member.
func member(e Event, collision string) string {
	if collision == "" {
		return e.TaskID
	}
	return e.TaskID + "#" + collision
}

func (s *Stream) args(e Event, collision string, now time.Time) (keys []string, argv []any) {
	trim := "0"
	if s.trims.Add(1)%64 == 1 {
		trim = "1"
	}
	maxLen := s.maxLen
	if maxLen < 0 {
		maxLen = 0
	}
	argv = append([]any{member(e, collision), now.UnixMilli(), SeenWindow.Milliseconds(), maxLen, trim, Channel(s.prefix), e.TaskID}, e.Fields()...)
	return []string{StreamKey(s.prefix), SeenKey(s.prefix)}, argv
}

// Append appends e (once per task and collision identity, "" for none) and
// announces its task. It returns the entry ID, "" when the task had been
// appended already or the stream is off.
func (s *Stream) Append(ctx context.Context, e Event, collision string) (string, error) {
	keys, argv := s.args(e, collision, time.Now())
	id, err := appendScript.Run(ctx, s.c, keys, argv...).Text()
	if err != nil {
		return "", fmt.Errorf("outcome: append: %w", err)
	}
	return id, nil
}

// AppendIn queues the append of e on p (whose script cache must hold the
// script: call Load once at start and after a Redis restart, or use
// Append). The returned command's error is the append's.
func (s *Stream) AppendIn(ctx context.Context, p redis.Pipeliner, e Event, collision string) *redis.Cmd {
	keys, argv := s.args(e, collision, time.Now())
	return appendScript.EvalSha(ctx, p, keys, argv...)
}

// Warn appends e, an event of another Kind than a task's outcome (a
// budget warning), as it is: no seen set, no announcement. With the
// stream off it appends nothing.
func (s *Stream) Warn(ctx context.Context, e Event) (string, error) {
	if !s.Enabled() {
		return "", nil
	}
	if e.Kind == "" {
		return "", errors.New("outcome: Warn: an event without a Kind is a task's outcome: Append it")
	}
	id, err := s.c.XAdd(ctx, &redis.XAddArgs{Stream: StreamKey(s.prefix), MaxLen: s.maxLen, Approx: true, Values: e.Fields()}).Result()
	if err != nil {
		return "", fmt.Errorf("outcome: append %s: %w", e.Kind, err)
	}
	return id, nil
}

// Load loads the append script into Redis's script cache.
func (s *Stream) Load(ctx context.Context) error {
	return appendScript.Load(ctx, s.c).Err()
}
