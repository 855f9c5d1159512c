package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The IETF httpapi Idempotency-Key draft: a request with a key is done
// once; the same key with the same request gets the first answer again,
// with another request 422, and while the first is still in progress 409.
// The first answer is kept in Redis beside the task's claim, for as long.

// IdempotencyKey is the Redis key holding the answer to the request made
// with idempotency key k. The hash tag puts it in the slot of the task's
// journal record (smsq:task:{k}), which claims k for every queue.
func IdempotencyKey(k string) string { return "smsq:api:idem:{" + k + "}" }

// idemRecord is what IdempotencyKey holds: the request's fingerprint and,
// once done, the answer.
type idemRecord struct {
	Fingerprint string          `json:"fp"`
	Done        bool            `json:"done,omitempty"`
	Status      int             `json:"status,omitempty"`
	Body        json.RawMessage `json:"body,omitempty"`
}

// fingerprint identifies a request for its idempotency key: the API key's
// name and the request's known fields (so that whitespace, field order and
// unknown fields do not make it another request).
func fingerprint(keyName string, r smsRequest) string {
	r.IdempotencyKey = ""
	data, _ := json.Marshal(r)
	h := sha256.New()
	h.Write([]byte(keyName))
	h.Write([]byte{0})
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}

// beginScript starts a request under its key: it stores the in-progress
// record unless one is there, and returns the one that is.
//
// KEYS[1] the record. ARGV[1] the in-progress record, ARGV[2] its TTL
// (ms). Returns the existing record, or nil after storing ARGV[1].
var beginScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
`)

// abandonScript deletes the in-progress record this request stored, and
// nothing else.
//
// KEYS[1] the record. ARGV[1] the in-progress record. Returns 1 when deleted.
var abandonScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// idemStore keeps the answers of requests made with an idempotency key.
type idemStore struct {
	rdb redis.UniversalClient
}

// errInProgress: another request with the key has not answered yet.
var errInProgress = errors.New("in progress")

// errReused: the key was used with another request.
var errReused = errors.New("reused")

// begin claims key for the request fp. It returns the first answer when
// the same request was answered already (replay), errReused or
// errInProgress, or nil, and then the caller must finish or abandon.
func (s idemStore) begin(ctx context.Context, key, fp string, ttl time.Duration) (*idemRecord, error) {
	pending, _ := json.Marshal(idemRecord{Fingerprint: fp})
	v, err := beginScript.Run(ctx, s.rdb, []string{IdempotencyKey(key)}, pending, ttl.Milliseconds()).Text()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("idempotency record: %w", err)
	}
	var rec idemRecord
	if err := json.Unmarshal([]byte(v), &rec); err != nil {
		return nil, fmt.Errorf("idempotency record: %w", err)
	}
	switch {
	case rec.Fingerprint != fp:
		return nil, errReused
	case !rec.Done:
		return nil, errInProgress
	}
	return &rec, nil
}

// finish stores the answer of the request begun under key.
func (s idemStore) finish(ctx context.Context, key, fp string, status int, body []byte, ttl time.Duration) error {
	data, _ := json.Marshal(idemRecord{Fingerprint: fp, Done: true, Status: status, Body: body})
	return s.rdb.Set(ctx, IdempotencyKey(key), data, ttl).Err()
}

// abandon gives key back after a request that queued nothing.
func (s idemStore) abandon(ctx context.Context, key, fp string) error {
	pending, _ := json.Marshal(idemRecord{Fingerprint: fp})
	return abandonScript.Run(ctx, s.rdb, []string{IdempotencyKey(key)}, pending).Err()
}

// headerKey reads an Idempotency-Key header: the draft makes it a
// Structured Field string ("..."); a bare token is accepted as well, as
// most clients send one.
func headerKey(v string) (string, error) {
	v = strings.TrimSpace(v)
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		inner := v[1 : len(v)-1]
		if strings.ContainsAny(inner, `"\`) {
			return "", errors.New(`Idempotency-Key: quotes and backslashes are not allowed inside the key`)
		}
		v = inner
	}
	if v == "" {
		return "", errors.New("Idempotency-Key: empty")
	}
	return v, nil
}
