package smsq_test

import (
	"context"
	"errors"
	"testing"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/guard"
	"github.com/smsq/smsq/internal/phone"
	"github.com/smsq/smsq/internal/redistest"
)

// TestCheck: Client.Check answers with the settings the workers published,
// counts nothing, and refuses a hash key other than the workers'.
func TestCheck(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client()
	defer rdb.Close()
	ctx := context.Background()
	key := []byte("check-test-hash-key-0123")
	h, _ := dedupe.NewHasher(key)
	cfg, _ := guard.Settings{Phone: "1/h", Countries: "+86", Modes: "enforce"}.Config(nil)
	g, err := guard.New(cfg, guard.Deps{Client: rdb, Hasher: h})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	c := smsq.NewClientFromRedis(rdb, smsq.WithPhoneHashKey(key))
	req := smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "+8613800138000"}
	for range 3 {
		v, err := c.Check(ctx, req)
		if err != nil || !v.Allowed {
			t.Fatalf("Check: %+v %v", v, err)
		}
	}
	n, _ := phone.Parse(req.Phone, "")
	if d, err := g.Admit(ctx, guard.Request{Phone: n, Channel: "CHANNEL_LOGIN"}); err != nil || !d.Allowed {
		t.Fatalf("Admit after Checks: %+v %v (Check must count nothing)", d, err)
	}
	v, err := c.Check(ctx, req)
	if err != nil || v.Allowed || v.Rule != guard.RulePhone || v.LiftsAt.IsZero() {
		t.Fatalf("Check after a send: %+v %v", v, err)
	}
	v, err = c.Check(ctx, smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "+14155552671"})
	if err != nil || v.Allowed || v.Rule != guard.RuleCountry || !v.LiftsAt.IsZero() {
		t.Fatalf("Check of a refused country: %+v %v", v, err)
	}
	if _, err := c.Check(ctx, smsq.Request{Channel: "CHANNEL_LOGIN", Phone: "12"}); !errors.Is(err, smsq.ErrInvalidRequest) {
		t.Fatalf("invalid request: %v", err)
	}
	other := smsq.NewClientFromRedis(rdb, smsq.WithPhoneHashKey([]byte("another-hash-key-012345")))
	if _, err := other.Check(ctx, req); !errors.Is(err, guard.ErrHashKey) {
		t.Fatalf("Check with another hash key: %v; want ErrHashKey", err)
	}
	if err := c.Verified(ctx, "+8613800138000", "CHANNEL_NOPE"); !errors.Is(err, smsq.ErrInvalidRequest) {
		t.Fatalf("Verified on a bad channel: %v", err)
	}
	if err := c.Verified(ctx, "+8613800138000", "CHANNEL_LOGIN"); err != nil {
		t.Fatal(err)
	}
	rep, err := g.Inspect(ctx, 1)
	if err != nil || len(rep.Reporting) != 1 || rep.Reporting[0] != "CHANNEL_LOGIN" {
		t.Fatalf("after Verified: %+v %v", rep.Reporting, err)
	}
}
