package ha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/redisconn"
	"github.com/smsq/smsq/internal/redistest"
)

// TestClusterKeys runs every Redis operation smsq makes on a real cluster:
// the reservation scripts, the history script and pipelines, enqueueing
// and asynq's Inspector. A script whose keys spanned slots would fail with
// CROSSSLOT; a pipeline over several slots must be split by the client.
func TestClusterKeys(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	rdb, err := redisconn.Open(c.URL(), redisconn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	resv, err := dedupe.New(dedupe.Config{Client: rdb, Window: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	hist, err := history.New(history.Config{Client: rdb})
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]bool{}
	for i := range 60 {
		e164 := fmt.Sprintf("+8613910%06d", i)
		owner := fmt.Sprintf("task-%d", i)
		nodes[c.NodeFor(dedupe.Key(dedupe.DefaultPrefix, e164, "CHANNEL_LOGIN")).Addr()] = true
		if got, want := redistest.Slot(history.PhoneKey(history.DefaultPrefix, dedupe.PhoneHash(e164))),
			redistest.Slot(dedupe.Key(dedupe.DefaultPrefix, e164, "CHANNEL_LOGIN")); got != want {
			t.Fatalf("phone index slot %d, reservation slot %d: want one slot per phone", got, want)
		}
		if acq, _, err := resv.Acquire(ctx, e164, "CHANNEL_LOGIN", owner); err != nil || acq != dedupe.AcquiredNew {
			t.Fatalf("Acquire: %v, %v; want new", acq, err)
		}
		if _, _, err := resv.Acquire(ctx, e164, "CHANNEL_LOGIN", "other"); !errors.Is(err, dedupe.ErrHeld) {
			t.Fatalf("second Acquire: %v, want ErrHeld", err)
		}
		if err := resv.MarkSent(ctx, e164, "CHANNEL_LOGIN", owner); err != nil {
			t.Fatalf("MarkSent: %v", err)
		}
		if r, ok, err := resv.Get(ctx, e164, "CHANNEL_LOGIN"); err != nil || !ok || r.State != dedupe.StateSent {
			t.Fatalf("Get: %+v %v %v; want sent", r, ok, err)
		}
		if ok, err := resv.Release(ctx, e164, "CHANNEL_LOGIN", owner); err != nil || !ok {
			t.Fatalf("Release: %v %v", ok, err)
		}
		if _, err := hist.Begin(ctx, owner, history.IdentityOf("default", []byte(owner)), time.Now()); err != nil {
			t.Fatalf("history Begin: %v", err)
		}
		entry := history.Entry{TaskID: owner, Outcome: "sent", Final: true, UpdatedAt: time.Now(), Result: json.RawMessage(`{"outcome":"sent"}`)}
		if err := hist.Record(ctx, dedupe.PhoneHash(e164), entry, true); err != nil {
			t.Fatalf("history Record: %v", err)
		}
		recent, err := hist.Recent(ctx, dedupe.PhoneHash(e164), 5)
		if err != nil || len(recent) != 1 || recent[0].Outcome != "sent" {
			t.Fatalf("history Recent: %+v %v", recent, err)
		}
	}
	if len(nodes) != len(c.Nodes) {
		t.Fatalf("reservations landed on %d of %d masters; the test must cover them all", len(nodes), len(c.Nodes))
	}

	client, err := smsq.NewClient(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var ids []string
	for i, ch := range []string{"CHANNEL_LOGIN", "CHANNEL_REGISTER", "CHANNEL_RESET_PASSWORD"} {
		r, err := client.Send(ctx, smsq.Request{Channel: ch, Phone: fmt.Sprintf("1391000%04d", i)}, smsq.WithIdempotencyKey("key-"+ch))
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
		ids = append(ids, r.TaskID)
		if _, err := client.Send(ctx, smsq.Request{Channel: ch, Phone: fmt.Sprintf("1391000%04d", i)}, smsq.WithIdempotencyKey("key-"+ch)); !errors.Is(err, smsq.ErrDuplicate) {
			t.Fatalf("second Send with one key: %v, want ErrDuplicate", err)
		}
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	qs, err := insp.Queues()
	if err != nil {
		t.Fatalf("Inspector.Queues: %v", err)
	}
	pending := 0
	for _, q := range qs {
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			t.Fatalf("Inspector.GetQueueInfo(%s): %v", q, err)
		}
		pending += info.Pending
		if _, err := insp.ListPendingTasks(q); err != nil {
			t.Fatalf("Inspector.ListPendingTasks(%s): %v", q, err)
		}
		if _, err := insp.History(q, 2); err != nil {
			t.Fatalf("Inspector.History(%s): %v", q, err)
		}
	}
	if pending != len(ids) {
		t.Fatalf("pending tasks %d, want %d", pending, len(ids))
	}
	if _, err := insp.Servers(); err != nil {
		t.Fatalf("Inspector.Servers: %v", err)
	}
	if _, err := insp.ClusterKeySlot(qs[0]); err != nil {
		t.Fatalf("Inspector.ClusterKeySlot: %v", err)
	}
}

// TestSentinelFailover checks the helper and the URL: a client made from
// the redis-sentinel:// URL follows the master through a failover.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	g := redistest.StartSentinelGroup(t)
	rdb, err := redisconn.Open(g.URL(), redisconn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := rdb.Set(ctx, "before", "1", 0).Err(); err != nil {
		t.Fatalf("SET before failover: %v", err)
	}
	addr, err := g.Failover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The client learns of the switch from the sentinels; a write made
	// before it does may fail once (READONLY or a closed connection).
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := rdb.Set(ctx, "after", "1", 0).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SET after failover: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got, err := rdb.Get(ctx, "before").Result(); err != nil || got != "1" {
		t.Fatalf("GET before = %q, %v; want the write made before the failover", got, err)
	}
	// The write after the failover went to the promoted master.
	promoted := redis.NewClient(&redis.Options{Addr: addr})
	defer promoted.Close()
	if got, err := promoted.Get(ctx, "after").Result(); err != nil || got != "1" {
		t.Fatalf("GET after on the new master %s = %q, %v; want the write made after the failover", addr, got, err)
	}
}
