package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// DisabledKey is the hash of disabled endpoints, endpoint ID to a JSON
// note (when, which host, why). Every worker reads it before a delivery.
func DisabledKey(prefix string) string { return prefix + ":webhooks:disabled" }

// Disabled is the shared record of endpoints that answered 410 Gone.
type Disabled struct {
	c   redis.UniversalClient
	key string
}

// NewDisabled returns the record under prefix.
func NewDisabled(c redis.UniversalClient, prefix string) *Disabled {
	return &Disabled{c: c, key: DisabledKey(prefix)}
}

// Note is why an endpoint is disabled.
type Note struct {
	At     time.Time `json:"at"`
	Host   string    `json:"host"`
	Status int       `json:"status"`
}

// Disable records ep as disabled.
func (d *Disabled) Disable(ctx context.Context, ep Endpoint, status int, now time.Time) error {
	b, _ := json.Marshal(Note{At: now.UTC(), Host: ep.Host, Status: status})
	return d.c.HSet(ctx, d.key, ep.ID, b).Err()
}

// Get returns ep's note, or nil when it is enabled.
func (d *Disabled) Get(ctx context.Context, ep Endpoint) (*Note, error) {
	s, err := d.c.HGet(ctx, d.key, ep.ID).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var n Note
	if err := json.Unmarshal([]byte(s), &n); err != nil {
		return &Note{}, nil // disabled, for a reason this version cannot read
	}
	return &n, nil
}

// Enable removes eps from the record and returns the notes of those that
// were disabled.
func (d *Disabled) Enable(ctx context.Context, eps []Endpoint) (map[string]Note, error) {
	ids := make([]string, len(eps))
	for i, ep := range eps {
		ids[i] = ep.ID
	}
	vals, err := d.c.HMGet(ctx, d.key, ids...).Result()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", d.key, err)
	}
	out := map[string]Note{}
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue
		}
		var n Note
		_ = json.Unmarshal([]byte(s), &n)
		out[ids[i]] = n
	}
	if len(out) == 0 {
		return out, nil
	}
	if err := d.c.HDel(ctx, d.key, ids...).Err(); err != nil {
		return nil, fmt.Errorf("clear %s: %w", d.key, err)
	}
	return out, nil
}
