package smsq

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/guard"
	"github.com/smsq/smsq/internal/phone"
	"github.com/smsq/smsq/internal/tasks"
)

// WithPhoneHashKey gives the client the workers' SMSQ_PHONE_HASH_KEY, which
// Check and Verified need to name phones the way the workers do. A key the
// workers do not use makes them fail with an error saying so.
func WithPhoneHashKey(key []byte) ClientOption {
	return func(c *Client) { c.hasher, c.hashErr = dedupe.NewHasher(key) }
}

// Verdict is the abuse guard's answer to Check.
type Verdict struct {
	// Allowed: a send would go now.
	Allowed bool
	// Rule is the rule that would block: "phone", "ip", "prefix",
	// "country", "budget" or "conversion".
	Rule string
	// LiftsAt is when the block lifts; zero when it does not lift by
	// itself (a country the workers' settings refuse).
	LiftsAt time.Time
}

// guardSettingsFor is how long the workers' published settings serve
// Check and Verified before they are read again.
const guardSettingsFor = 10 * time.Second

// guard returns a Guard with the workers' published settings (the
// defaults when none are published yet).
func (c *Client) guard(ctx context.Context) (*guard.Guard, error) {
	if c.hashErr != nil {
		return nil, fmt.Errorf("smsq: WithPhoneHashKey: %w", c.hashErr)
	}
	c.abuseMu.Lock()
	defer c.abuseMu.Unlock()
	if c.abuse != nil && c.now().Sub(c.abuseAt) < guardSettingsFor {
		return c.abuse, nil
	}
	g, err := guard.Open(ctx, guard.Deps{Client: c.rdb, Hasher: c.hasher, Now: c.now})
	if err != nil && !errors.Is(err, guard.ErrNoConfig) {
		return nil, fmt.Errorf("smsq: %w", err)
	}
	c.abuse, c.abuseAt = g, c.now()
	return g, nil
}

// Check says whether the workers' abuse guard would let req be sent now
// and, if not, which rule blocks and until when, so that a login page can
// refuse early. It counts nothing; a send queued after it is checked again
// by the worker. An invalid req is an error wrapping ErrInvalidRequest.
func (c *Client) Check(ctx context.Context, req Request) (Verdict, error) {
	p := tasks.Payload{Channel: req.Channel, PhoneNumber: req.Phone, PhoneCountryCode: req.CountryCode, ClientIP: req.ClientIP, Lang: req.Lang}
	v, err := p.Validate()
	if err != nil {
		return Verdict{}, err
	}
	g, err := c.guard(ctx)
	if err != nil {
		return Verdict{}, err
	}
	d, err := g.Check(ctx, guard.Request{Phone: v.Phone, ClientIP: v.ClientIP, Channel: string(v.Channel)})
	if err != nil {
		return Verdict{}, fmt.Errorf("smsq: check: %w", err)
	}
	return Verdict{Allowed: d.Allowed, Rule: d.Rule, LiftsAt: d.LiftsAt}, nil
}

// Verified tells smsq that the code sent to phone (E.164, or national for
// +86) on channel was used. The abuse guard's conversion breaker judges a
// channel's sends only once its codes are reported this way, and blocks
// ranges and countries whose codes are rarely used (SMS pumping).
func (c *Client) Verified(ctx context.Context, phoneNumber, channel string) error {
	n, err := phone.Parse(phoneNumber, "")
	if err != nil {
		return fmt.Errorf("%w: phone: %w", ErrInvalidRequest, err)
	}
	ch, err := genauth.ParseChannel(channel)
	if err != nil {
		return fmt.Errorf("%w: channel: %w", ErrInvalidRequest, err)
	}
	g, err := c.guard(ctx)
	if err != nil {
		return err
	}
	return g.Verified(ctx, n, string(ch))
}
