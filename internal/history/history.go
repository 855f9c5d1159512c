// Package history keeps what happened to each send task across its attempts,
// and an index of recent tasks per phone, so that the handler can tell a
// first attempt from a redelivery and an operator can answer "why was no
// code sent to this phone?".
//
// Phones are indexed by the hash the reservation store uses
// (dedupe.Store.PhoneHash, keyed when a deployment key is set); no phone number is stored here in clear. The package
// knows nothing of GenAuth or asynq: results are opaque JSON.
package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults.
const (
	DefaultPrefix    = "smsq"
	DefaultRetention = 24 * time.Hour
	DefaultPerPhone  = 50
)

// Config configures a Store.
type Config struct {
	// Client is the Redis connection; required.
	Client redis.UniversalClient
	// Prefix starts every key; default "smsq".
	Prefix string
	// Retention is how long a task's history is kept after its last
	// attempt; default 24h.
	Retention time.Duration
	// PerPhone is how many recent tasks are kept per phone; default 50.
	PerPhone int
}

// Store reads and writes task history in Redis.
type Store struct {
	c         redis.UniversalClient
	prefix    string
	retention time.Duration
	perPhone  int
}

// New validates cfg and returns a Store.
func New(cfg Config) (*Store, error) {
	if cfg.Client == nil {
		return nil, errors.New("history: Client is required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.Retention < time.Second {
		return nil, fmt.Errorf("history: Retention %s: must be at least 1s", cfg.Retention)
	}
	if cfg.PerPhone == 0 {
		cfg.PerPhone = DefaultPerPhone
	}
	if cfg.PerPhone < 0 {
		return nil, fmt.Errorf("history: PerPhone %d: must be positive", cfg.PerPhone)
	}
	return &Store{c: cfg.Client, prefix: cfg.Prefix, retention: cfg.Retention, perPhone: cfg.PerPhone}, nil
}

// TaskKey is the hash holding one task's history. The task ID is the hash
// tag so that all of a task's state sits in one Cluster slot.
func TaskKey(prefix, taskID string) string { return prefix + ":task:{" + taskID + "}" }

// PhoneKey is the sorted set of a phone's recent task IDs, scored by the
// time of their last attempt. Its hash tag matches the reservation keys of
// the same phone.
func PhoneKey(prefix, phoneHash string) string { return prefix + ":phone:{" + phoneHash + "}" }

// Begun describes a task at the start of an attempt.
type Begun struct {
	// Attempt counts the handler runs of this task, this one included.
	Attempt int
	// FirstSeen is when the first attempt began.
	FirstSeen time.Time
	// UnknownAttempts counts earlier attempts whose GenAuth call may have
	// sent the SMS without smsq knowing.
	UnknownAttempts int
	// Outcome is the final outcome already recorded for the task, if any: a
	// redelivered task that already finished must not run again.
	Outcome string
	// Interrupted reports that the previous attempt began and recorded
	// nothing: its worker died or was cut off, possibly during the GenAuth
	// call, so that call may have sent the SMS. (An attempt that failed
	// on Redis before calling looks the same; the flag errs on the side of
	// "may have been sent".)
	Interrupted bool
}

// beginScript opens an attempt; the 'open' field stays "1" until Record
// closes the attempt (empties it), so the next Begin sees an attempt that
// never did.
// KEYS[1]: task key. ARGV[1]: now in ms; ARGV[2]: retention in ms.
// Returns {attempt, first_ms, unknown or false, outcome or false, open or
// false} ("" for open when closed).
var beginScript = redis.NewScript(`
redis.call('HSETNX', KEYS[1], 'first_ms', ARGV[1])
local n = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
local v = redis.call('HMGET', KEYS[1], 'first_ms', 'unknown', 'outcome', 'open')
redis.call('HSET', KEYS[1], 'open', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {n, v[1], v[2], v[3], v[4]}
`)

// Begin records the start of an attempt and returns what came before.
func (s *Store) Begin(ctx context.Context, taskID string, now time.Time) (Begun, error) {
	if taskID == "" {
		return Begun{}, errors.New("history: empty task ID")
	}
	res, err := beginScript.Run(ctx, s.c, []string{TaskKey(s.prefix, taskID)},
		now.UnixMilli(), s.retention.Milliseconds()).Slice()
	if err != nil {
		return Begun{}, fmt.Errorf("history: begin attempt: %w", err)
	}
	var b Begun
	if len(res) != 5 {
		return b, fmt.Errorf("history: begin attempt: unexpected reply %v", res)
	}
	n, _ := res[0].(int64)
	b.Attempt = int(n)
	if ms, err := strconv.ParseInt(asString(res[1]), 10, 64); err == nil {
		b.FirstSeen = time.UnixMilli(ms)
	}
	b.UnknownAttempts, _ = strconv.Atoi(asString(res[2]))
	b.Outcome = asString(res[3])
	b.Interrupted = asString(res[4]) != ""
	return b, nil
}

func asString(v any) string {
	s, _ := v.(string)
	return s
}

// Entry is one task's latest recorded state.
type Entry struct {
	TaskID    string          `json:"taskId"`
	Outcome   string          `json:"outcome"`
	Final     bool            `json:"final"`
	UpdatedAt time.Time       `json:"updatedAt"`
	Result    json.RawMessage `json:"result,omitempty"`
}

// Record stores the result of an attempt. unknownAttempt counts the attempt
// as one whose outcome is unknown; a final entry fixes the task's outcome.
func (s *Store) Record(ctx context.Context, phoneHash string, e Entry, unknownAttempt bool) error {
	return s.RecordWith(ctx, phoneHash, e, unknownAttempt, nil)
}

// RecordWith is Record with the writes that also queues (when not nil) sent
// first in the same round trip. Only Record's own writes decide the
// returned error; the caller reads the results of its commands itself.
func (s *Store) RecordWith(ctx context.Context, phoneHash string, e Entry, unknownAttempt bool, also func(redis.Pipeliner)) error {
	if e.TaskID == "" {
		return errors.New("history: empty task ID")
	}
	tk := TaskKey(s.prefix, e.TaskID)
	fields := map[string]any{
		"last":       e.Outcome,
		"updated_ms": e.UpdatedAt.UnixMilli(),
		"result":     string(e.Result),
		"open":       "", // the attempt is closed: Begin reads "" as not interrupted
	}
	if e.Final {
		fields["outcome"] = e.Outcome
	}
	if phoneHash != "" {
		fields["phone"] = phoneHash
	}
	p := s.c.Pipeline()
	if also != nil {
		also(p)
	}
	own := []redis.Cmder{p.HSet(ctx, tk, fields)}
	if unknownAttempt {
		own = append(own, p.HIncrBy(ctx, tk, "unknown", 1))
	}
	own = append(own, p.PExpire(ctx, tk, s.retention))
	if phoneHash != "" {
		pk := PhoneKey(s.prefix, phoneHash)
		own = append(own,
			p.ZAdd(ctx, pk, redis.Z{Score: float64(e.UpdatedAt.UnixMilli()), Member: e.TaskID}),
			p.ZRemRangeByRank(ctx, pk, 0, int64(-s.perPhone-1)),
			p.PExpire(ctx, pk, s.retention))
	}
	_, _ = p.Exec(ctx)
	for _, c := range own {
		if err := c.Err(); err != nil {
			return fmt.Errorf("history: record: %w", err)
		}
	}
	return nil
}

// Client returns the Redis client the store uses.
func (s *Store) Client() redis.Cmdable { return s.c }

// Task returns a task's latest entry; ok is false when none is kept.
func (s *Store) Task(ctx context.Context, taskID string) (Entry, bool, error) {
	vals, err := s.c.HGetAll(ctx, TaskKey(s.prefix, taskID)).Result()
	if err != nil {
		return Entry{}, false, fmt.Errorf("history: read task: %w", err)
	}
	if len(vals) == 0 {
		return Entry{}, false, nil
	}
	e := Entry{TaskID: taskID, Outcome: vals["last"], Final: vals["outcome"] != ""}
	if ms, err := strconv.ParseInt(vals["updated_ms"], 10, 64); err == nil {
		e.UpdatedAt = time.UnixMilli(ms)
	}
	if r := vals["result"]; r != "" && json.Valid([]byte(r)) {
		e.Result = json.RawMessage(r)
	}
	return e, true, nil
}

// Recent returns up to limit of a phone's latest tasks, newest first.
func (s *Store) Recent(ctx context.Context, phoneHash string, limit int) ([]Entry, error) {
	if limit <= 0 {
		limit = s.perPhone
	}
	ids, err := s.c.ZRevRange(ctx, PhoneKey(s.prefix, phoneHash), 0, int64(limit-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("history: read phone index: %w", err)
	}
	out := make([]Entry, 0, len(ids))
	for _, id := range ids {
		e, ok, err := s.Task(ctx, id)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, e)
		}
	}
	return out, nil
}
