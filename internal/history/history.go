// Package history keeps what happened to each send task across its attempts,
// and an index of recent tasks per phone, so that the handler can tell a
// first attempt from a redelivery and an operator can answer "why was no
// code sent to this phone?".
//
// Phones are indexed by the hash the reservation store uses
// (dedupe.Store.PhoneHash, keyed when a deployment key is set); no phone number is stored here in clear. The package
// knows nothing of GenAuth: results are opaque JSON. Of asynq it knows one
// thing, the key of a task's hash (ResultKey): a result that asynq keeps
// on the task for at least the journal's retention is not copied into the
// journal, and is read back from there.
package history

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
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

// ResultKey is the hash where asynq (v0.26, base.TaskKey) keeps the task
// taskID of queue, whose "result" field holds what the task's
// ResultWriter wrote.
func ResultKey(queue, taskID string) string { return "asynq:{" + queue + "}:t:" + taskID }

// resultField is the field of ResultKey's hash that holds the result.
const resultField = "result"

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
	// Collision is set when the task ID already names a different task (in
	// another queue, or with another payload): this task must not be run as
	// that one, and nothing else in Begun is set.
	Collision *Collision
}

// Identity names one task: asynq task IDs are unique only per queue, and a
// raw producer may reuse one in another queue, so the journal keeps, with
// the first attempt (or the producer's claim), a hash of the queue and the
// payload, and compares it on every later attempt.
type Identity struct {
	Queue string
	// Hash is a SHA-256 prefix of the queue and the payload.
	Hash string
}

// IdentityOf returns the identity of the task with this payload in queue.
func IdentityOf(queue string, payload []byte) Identity {
	h := sha256.New()
	h.Write([]byte(queue))
	h.Write([]byte{0})
	h.Write(payload)
	return Identity{Queue: queue, Hash: hex.EncodeToString(h.Sum(nil)[:16])}
}

// Collision describes a task whose ID already names a different task.
type Collision struct {
	// Queue is the queue of the task that holds the ID.
	Queue string
	// Recorded is this task's own result, when an earlier delivery of it
	// already recorded the collision.
	Recorded json.RawMessage
}

// collisionField is the field of the holder's hash that keeps the record of
// a colliding task: it has no key of its own, and lives and expires with
// the holder's record.
func collisionField(hash string) string { return "x:" + hash }

// beginScript opens an attempt; the 'open' field stays "1" until Record
// closes the attempt (empties it), so the next Begin sees an attempt that
// never did. One read and one write: every attempt of every task runs it. A task whose identity differs from the one recorded for its ID
// is another task: nothing is changed, and the holder's queue and this
// task's own collision record (if any) come back instead.
// KEYS[1]: task key. ARGV[1]: now in ms; ARGV[2]: retention in ms;
// ARGV[3]: identity hash; ARGV[4]: queue.
// Returns {attempt, first_ms, unknown or false, outcome or false, open or
// false} ("" for open when closed), or {-1, holder queue or false, own
// collision record or false}.
var beginScript = redis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 'fp', 'queue', 'first_ms', 'attempts', 'unknown', 'outcome', 'open')
if v[1] and v[1] ~= ARGV[3] then
  return {-1, v[2], redis.call('HGET', KEYS[1], 'x:' .. ARGV[3])}
end
local n = (tonumber(v[4]) or 0) + 1
local first = v[3] or ARGV[1]
if v[1] then
  redis.call('HSET', KEYS[1], 'attempts', n, 'first_ms', first, 'open', '1')
else
  redis.call('HSET', KEYS[1], 'fp', ARGV[3], 'queue', ARGV[4], 'attempts', n, 'first_ms', first, 'open', '1')
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {n, first, v[5], v[6], v[7]}
`)

// Begin records the start of an attempt of the task id names and returns
// what came before. When the ID already names a different task, Begin
// changes nothing and returns Begun.Collision.
func (s *Store) Begin(ctx context.Context, taskID string, id Identity, now time.Time) (Begun, error) {
	if taskID == "" {
		return Begun{}, errors.New("history: empty task ID")
	}
	res, err := beginScript.Run(ctx, s.c, []string{TaskKey(s.prefix, taskID)},
		now.UnixMilli(), s.retention.Milliseconds(), id.Hash, id.Queue).Slice()
	if err != nil {
		return Begun{}, fmt.Errorf("history: begin attempt: %w", err)
	}
	var b Begun
	if len(res) == 3 {
		if n, _ := res[0].(int64); n == -1 {
			b.Collision = &Collision{Queue: asString(res[1])}
			var rec collisionRecord
			if raw := asString(res[2]); raw != "" && json.Unmarshal([]byte(raw), &rec) == nil && rec.Final {
				b.Collision.Recorded = rec.Result
			}
			return b, nil
		}
	}
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

// ErrClaimed is returned by Claim when the task ID is already in use; the
// error is a *Held describing the holder.
var ErrClaimed = errors.New("history: task ID already in use")

// Claim is a producer's hold on a task ID, taken by Claim or TakeOver and
// given back by Release.
type Claim struct {
	TaskID string
	// token tells this claim from any later one of the same ID, so that a
	// late Release never gives back another producer's claim.
	token string
}

// Held describes the record holding a task ID that Claim found in use.
type Held struct {
	TaskID string
	// Queue is the holder's queue, "" when unknown.
	Queue string
	// Begun reports that a worker began the task: it was queued.
	Begun bool
	// Age is how long ago the holder's claim was taken (by Redis's clock),
	// or -1 when the record is no producer's claim.
	Age   time.Duration
	token string
}

func (h *Held) Error() string {
	q := h.Queue
	if q == "" {
		q = "unknown"
	}
	return fmt.Sprintf("%s (queue %s)", ErrClaimed, q)
}

// Of reports that the record holding the ID is claim c.
func (h *Held) Of(c Claim) bool { return h.token != "" && h.token == c.token }

// Is makes a *Held match ErrClaimed.
func (h *Held) Is(target error) bool { return target == ErrClaimed }

// Unbegun reports that the record is a producer's claim no worker began,
// taken at least grace ago: the producer may have lost Redis between its
// claim and its enqueue, and the task may never have been queued.
func (h *Held) Unbegun(grace time.Duration) bool {
	return !h.Begun && h.token != "" && h.Queue != "" && h.Age >= grace
}

// claimScript takes a task ID for a producer before it enqueues: the task
// record is created with the task's identity, so that the ID stays taken
// in every queue for as long as the record lives, and the worker's first
// Begin finds the identity already there. The claim's token and Redis's
// time (one clock for every producer) are kept for TakeOver.
// KEYS[1]: task key. ARGV[1]: identity hash; ARGV[2]: queue; ARGV[3]: TTL
// in ms; ARGV[4]: claim token. Returns 1 when claimed, or {holder queue or
// false, attempts or false, claim token or false, claim age in ms or false}.
var claimScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('EXISTS', KEYS[1]) == 1 then
  local v = redis.call('HMGET', KEYS[1], 'queue', 'attempts', 'claim', 'claim_ms')
  local age = false
  if v[4] then age = now - tonumber(v[4]) end
  return {v[1], v[2], v[3], age}
end
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'queue', ARGV[2], 'claim', ARGV[4], 'claim_ms', now)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// Claim takes taskID for the task id names, for ttl, unless any task
// (from any queue, claimed or already begun) holds it: then the error is a
// *Held, which wraps ErrClaimed and names the holder's queue.
func (s *Store) Claim(ctx context.Context, taskID string, id Identity, ttl time.Duration) (Claim, error) {
	return s.ClaimAs(ctx, taskID, id, ttl, Claim{})
}

// ClaimAs is Claim under the token of prev, a claim of the same ID whose
// fate the caller does not know (its answer was lost): a retry that finds
// prev's claim held can then tell it as its own (Held.Of), however many
// of its attempts failed before.
func (s *Store) ClaimAs(ctx context.Context, taskID string, id Identity, ttl time.Duration, prev Claim) (Claim, error) {
	if taskID == "" {
		return Claim{}, errors.New("history: empty task ID")
	}
	token := prev.tokenFor(taskID)
	res, err := claimScript.Run(ctx, s.c, []string{TaskKey(s.prefix, taskID)}, id.Hash, id.Queue, max(ttl, time.Second).Milliseconds(), token).Result()
	if err != nil {
		// The claim may have been taken all the same (an answer lost): the
		// caller keeps it to know the claim as its own later.
		return Claim{TaskID: taskID, token: token}, fmt.Errorf("history: claim task ID: %w", err)
	}
	if v, ok := res.([]any); ok {
		return Claim{}, heldOf(taskID, v)
	}
	return Claim{TaskID: taskID, token: token}, nil
}

// heldOf reads the holder claimScript or takeOverScript returned.
func heldOf(taskID string, v []any) *Held {
	h := &Held{TaskID: taskID, Age: -1}
	at := func(i int) any {
		if i < len(v) {
			return v[i]
		}
		return nil
	}
	h.Queue = asString(at(0))
	h.Begun = at(1) != nil
	h.token = asString(at(2))
	if ms, ok := at(3).(int64); ok && h.token != "" {
		h.Age = time.Duration(ms) * time.Millisecond
	}
	return h
}

// takeOverScript replaces a claim no worker began with a new one, only if
// the record is still the claim h saw (same token): two producers taking
// over the same claim cannot both win. An ID whose record expired
// meanwhile is claimed afresh.
// KEYS[1]: task key. ARGV[1]: the claim's token; ARGV[2]: identity hash;
// ARGV[3]: queue; ARGV[4]: TTL in ms; ARGV[5]: new claim token. Returns 1
// when taken over, or the holder as claimScript does.
var takeOverScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HMGET', KEYS[1], 'queue', 'attempts', 'claim', 'claim_ms')
if redis.call('EXISTS', KEYS[1]) == 1 and (v[2] or v[3] ~= ARGV[1]) then
  local age = false
  if v[4] then age = now - tonumber(v[4]) end
  return {v[1], v[2], v[3], age}
end
redis.call('HSET', KEYS[1], 'fp', ARGV[2], 'queue', ARGV[3], 'claim', ARGV[5], 'claim_ms', now)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
`)

// TakeOver replaces the unbegun claim h describes with a claim for the
// task id names, for ttl. The caller must first make sure that the claimed
// task was never queued (this package knows nothing of asynq). When the
// record changed since Claim saw it, the error is the new *Held.
func (s *Store) TakeOver(ctx context.Context, h *Held, id Identity, ttl time.Duration) (Claim, error) {
	return s.TakeOverAs(ctx, h, id, ttl, Claim{})
}

// TakeOverAs is TakeOver under the token of prev, as ClaimAs.
func (s *Store) TakeOverAs(ctx context.Context, h *Held, id Identity, ttl time.Duration, prev Claim) (Claim, error) {
	if h == nil || h.token == "" {
		return Claim{}, errors.New("history: take over: not a producer's claim")
	}
	token := prev.tokenFor(h.TaskID)
	res, err := takeOverScript.Run(ctx, s.c, []string{TaskKey(s.prefix, h.TaskID)}, h.token, id.Hash, id.Queue, max(ttl, time.Second).Milliseconds(), token).Result()
	if err != nil {
		// Taken over or not, as Claim: the caller keeps the new token too.
		return Claim{TaskID: h.TaskID, token: token}, fmt.Errorf("history: take over task ID: %w", err)
	}
	if v, ok := res.([]any); ok {
		return Claim{}, heldOf(h.TaskID, v)
	}
	return Claim{TaskID: h.TaskID, token: token}, nil
}

// tokenFor is c's token when c is a claim of taskID, else a new one.
func (c Claim) tokenFor(taskID string) string {
	if c.TaskID == taskID && c.token != "" {
		return c.token
	}
	return newToken()
}

// newToken returns a random claim token.
func newToken() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// releaseScript gives a claimed ID back after the enqueue failed: only
// when the record is still this claim (same token, never begun).
// KEYS[1]: task key. ARGV[1]: claim token. Returns 1 when released.
var releaseScript = redis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 'claim', 'attempts')
if v[1] == ARGV[1] and not v[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// Release gives back a claim, unless a worker began the task meanwhile or
// another producer took the claim over.
func (s *Store) Release(ctx context.Context, c Claim) error {
	if c.token == "" {
		return nil
	}
	if err := releaseScript.Run(ctx, s.c, []string{TaskKey(s.prefix, c.TaskID)}, c.token).Err(); err != nil {
		return fmt.Errorf("history: release task ID: %w", err)
	}
	return nil
}

// collisionRecord is a colliding task's entry, kept in the holder's hash.
type collisionRecord struct {
	Phone     string          `json:"phone,omitempty"`
	Outcome   string          `json:"outcome"`
	Final     bool            `json:"final"`
	UpdatedMS int64           `json:"updatedMs"`
	Result    json.RawMessage `json:"result,omitempty"`
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
	// Collision, when set, is the identity hash of a task whose ID already
	// names another task (Begun.Collision): its entry is kept apart from
	// the holder's.
	Collision string `json:"-"`
	// PhoneHash is the phone the entry was indexed by, on entries read back.
	PhoneHash string `json:"-"`
	// ResultKeptFor, when writing, is how long asynq keeps Result on the
	// task itself (the task's retention; zero when unknown or none). When
	// it is at least the journal's retention, the journal keeps only the
	// outcome and its readers take the result from the task (ResultKey):
	// one copy of it in Redis. The caller writes it there in the same
	// round trip (RecordWith's before), ahead of the entry.
	ResultKeptFor time.Duration `json:"-"`
}

// Record stores the result of an attempt. unknownAttempt counts the attempt
// as one whose outcome is unknown; a final entry fixes the task's outcome.
func (s *Store) Record(ctx context.Context, phoneHash string, e Entry, unknownAttempt bool) error {
	return s.RecordWith(ctx, phoneHash, e, unknownAttempt, nil, nil)
}

// RecordWith is Record with the writes that before queues (when not nil)
// sent ahead of the entry and those after queues sent behind it, in the
// same round trip. On one Redis they run in that order, so that a write
// queued after (the outcome stream's append) is never there without the
// entry. Only Record's own writes decide the returned error; the caller
// reads the results of its commands itself.
func (s *Store) RecordWith(ctx context.Context, phoneHash string, e Entry, unknownAttempt bool, before, after func(redis.Pipeliner)) error {
	if e.TaskID == "" {
		return errors.New("history: empty task ID")
	}
	tk := TaskKey(s.prefix, e.TaskID)
	if e.Collision != "" {
		return s.recordCollision(ctx, phoneHash, e, after)
	}
	fields := map[string]any{
		"last":       e.Outcome,
		"updated_ms": e.UpdatedAt.UnixMilli(),
		"open":       "", // the attempt is closed: Begin reads "" as not interrupted
	}
	// Left empty when the task keeps the result: readers then look there,
	// and no copy an earlier attempt made outlives this one.
	fields[resultField] = ""
	if !s.ResultOnTask(e) {
		fields[resultField] = string(e.Result)
	}
	if e.Final {
		fields["outcome"] = e.Outcome
	}
	if phoneHash != "" {
		fields["phone"] = phoneHash
	}
	p := s.c.Pipeline()
	if before != nil {
		before(p)
	}
	own := []redis.Cmder{p.HSet(ctx, tk, fields)}
	if unknownAttempt {
		own = append(own, p.HIncrBy(ctx, tk, "unknown", 1))
	}
	own = append(own, p.PExpire(ctx, tk, s.retention))
	own = append(own, s.indexPhone(ctx, p, phoneHash, e)...)
	if after != nil {
		after(p)
	}
	return execOwn(ctx, p, own)
}

// ResultOnTask reports whether the store leaves e's result on the asynq
// task alone (see Entry.ResultKeptFor).
func (s *Store) ResultOnTask(e Entry) bool {
	return e.Collision == "" && e.ResultKeptFor >= s.retention
}

// recordCollision keeps a colliding task's entry in the holder's hash and
// indexes it by its own phone: the holder's fields stay untouched.
func (s *Store) recordCollision(ctx context.Context, phoneHash string, e Entry, after func(redis.Pipeliner)) error {
	tk := TaskKey(s.prefix, e.TaskID)
	rec, err := json.Marshal(collisionRecord{Phone: phoneHash, Outcome: e.Outcome, Final: e.Final, UpdatedMS: e.UpdatedAt.UnixMilli(), Result: e.Result})
	if err != nil {
		return fmt.Errorf("history: record: %w", err)
	}
	p := s.c.Pipeline()
	own := []redis.Cmder{p.HSet(ctx, tk, collisionField(e.Collision), rec), p.PExpire(ctx, tk, s.retention)}
	own = append(own, s.indexPhone(ctx, p, phoneHash, e)...)
	if after != nil {
		after(p)
	}
	return execOwn(ctx, p, own)
}

// indexPhone queues the phone index update of an entry on p: the task
// joins its phone's recent tasks, the oldest beyond PerPhone leave. No
// phone (an invalid payload) indexes nothing.
func (s *Store) indexPhone(ctx context.Context, p redis.Pipeliner, phoneHash string, e Entry) []redis.Cmder {
	if phoneHash == "" {
		return nil
	}
	pk := PhoneKey(s.prefix, phoneHash)
	return []redis.Cmder{
		p.ZAdd(ctx, pk, redis.Z{Score: float64(e.UpdatedAt.UnixMilli()), Member: e.TaskID}),
		p.ZRemRangeByRank(ctx, pk, 0, int64(-s.perPhone-1)),
		p.PExpire(ctx, pk, s.retention),
	}
}

// execOwn runs p; only the commands in own decide the error (p may carry
// a caller's commands too, whose results the caller reads itself).
func execOwn(ctx context.Context, p redis.Pipeliner, own []redis.Cmder) error {
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

// Task returns a task's latest entry; ok is false when none is kept (or
// the ID is only claimed by a producer, with no attempt yet).
func (s *Store) Task(ctx context.Context, taskID string) (Entry, bool, error) {
	all, err := s.Entries(ctx, taskID)
	if err != nil || len(all) == 0 || all[0].Collision != "" {
		return Entry{}, false, err
	}
	return all[0], true, nil
}

// Entries returns every entry kept under a task ID: the task that holds
// the ID first (when it had an attempt), then the tasks that collided with
// it, oldest first.
func (s *Store) Entries(ctx context.Context, taskID string) ([]Entry, error) {
	all, err := s.entriesOf(ctx, []string{taskID})
	if err != nil {
		return nil, err
	}
	return all[0], nil
}

// entriesOf is Entries for several IDs in two round trips: the journal
// hashes, then the results kept on asynq tasks only.
func (s *Store) entriesOf(ctx context.Context, taskIDs []string) ([][]Entry, error) {
	p := s.c.Pipeline()
	reads := make([]*redis.MapStringStringCmd, len(taskIDs))
	for i, id := range taskIDs {
		reads[i] = p.HGetAll(ctx, TaskKey(s.prefix, id))
	}
	if _, err := p.Exec(ctx); err != nil {
		return nil, fmt.Errorf("history: read task: %w", err)
	}
	out := make([][]Entry, len(taskIDs))
	onTask := map[int]*redis.StringCmd{}
	for i, id := range taskIDs {
		vals := reads[i].Val()
		if vals["attempts"] != "" || vals["last"] != "" {
			e := Entry{TaskID: id, Outcome: vals["last"], Final: vals["outcome"] != "", PhoneHash: vals["phone"]}
			if ms, err := strconv.ParseInt(vals["updated_ms"], 10, 64); err == nil {
				e.UpdatedAt = time.UnixMilli(ms)
			}
			r := vals[resultField]
			if r == "" && vals["last"] != "" && vals["queue"] != "" {
				// Kept on the asynq task only (Entry.ResultKeptFor).
				onTask[i] = p.HGet(ctx, ResultKey(vals["queue"], id), resultField)
			}
			if r != "" && json.Valid([]byte(r)) {
				e.Result = json.RawMessage(r)
			}
			out[i] = append(out[i], e)
		}
		var others []Entry
		for f, v := range vals {
			hash, ok := strings.CutPrefix(f, "x:")
			if !ok {
				continue
			}
			var rec collisionRecord
			if json.Unmarshal([]byte(v), &rec) != nil {
				continue
			}
			others = append(others, Entry{TaskID: id, Outcome: rec.Outcome, Final: rec.Final,
				UpdatedAt: time.UnixMilli(rec.UpdatedMS), Result: rec.Result, Collision: hash, PhoneHash: rec.Phone})
		}
		slices.SortFunc(others, func(a, b Entry) int { return a.UpdatedAt.Compare(b.UpdatedAt) })
		out[i] = append(out[i], others...)
	}
	if len(onTask) == 0 {
		return out, nil
	}
	_, _ = p.Exec(ctx)
	for i, cmd := range onTask {
		r, err := cmd.Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("history: read task result: %w", err)
		}
		if r != "" && json.Valid([]byte(r)) {
			out[i][0].Result = json.RawMessage(r)
		}
	}
	return out, nil
}

// Recent returns up to limit of a phone's latest task entries, newest
// first: only the entries of that phone, so a task whose ID collided with
// another phone's task shows its own entry.
func (s *Store) Recent(ctx context.Context, phoneHash string, limit int) ([]Entry, error) {
	if limit <= 0 {
		limit = s.perPhone
	}
	ids, err := s.c.ZRevRange(ctx, PhoneKey(s.prefix, phoneHash), 0, int64(limit-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("history: read phone index: %w", err)
	}
	out := make([]Entry, 0, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	byID, err := s.entriesOf(ctx, ids)
	if err != nil {
		return nil, err
	}
	for _, all := range byID {
		for i := len(all) - 1; i >= 0; i-- {
			if e := all[i]; e.PhoneHash == phoneHash && len(out) < limit {
				out = append(out, e)
			}
		}
	}
	return out, nil
}
