package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/guard"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/phone"
	"github.com/smsq/smsq/internal/redistest"
)

// fakeGuard admits or blocks as told and counts the refunds.
type fakeGuard struct {
	decision guard.Decision
	err      error

	mu       sync.Mutex
	admitted []guard.Request
	refunds  int
}

func (g *fakeGuard) Admit(_ context.Context, req guard.Request) (guard.Decision, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.admitted = append(g.admitted, req)
	return g.decision, g.err
}

func (g *fakeGuard) Refund(context.Context, guard.Ticket) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refunds++
	return nil
}

// counted is a ticket that counted something, as an allowed Admit gives;
// tickets are opaque outside the guard, so take one from a real guard.
func counted(t *testing.T) guard.Ticket {
	t.Helper()
	srv := redistest.Start(t)
	c := srv.Client()
	t.Cleanup(func() { c.Close() })
	cfg, _ := guard.DefaultSettings().Config(nil)
	g, err := guard.New(cfg, guard.Deps{Client: c, Hasher: dedupe.Hasher{}})
	if err != nil {
		t.Fatal(err)
	}
	n, err := phone.Parse(testNational, "+86")
	if err != nil {
		t.Fatal(err)
	}
	d, err := g.Admit(context.Background(), guard.Request{Phone: n, Channel: "CHANNEL_LOGIN"})
	if err != nil || !d.Allowed || d.Ticket.IsZero() {
		t.Fatalf("Admit: %+v %v", d, err)
	}
	return d.Ticket
}

// TestGuardSettles: the guard's count stays only when this attempt's own
// call may have sent; every other way an attempt ends gives it back, once.
func TestGuardSettles(t *testing.T) {
	t.Parallel()
	ticket := counted(t)
	timeoutErr := &genauth.Error{Err: context.DeadlineExceeded, RequestWritten: true}
	cases := []struct {
		name       string
		send       func(context.Context, genauth.SendSMSRequest) (*genauth.Response, error)
		acquire    func(context.Context, string, string, string) (dedupe.Acquired, dedupe.Reservation, error)
		wantOut    string
		wantRefund int
	}{
		{name: "sent keeps the count", wantOut: OutcomeSent},
		{name: "unknown keeps the count", send: reply(nil, timeoutErr), wantOut: OutcomeUnknown},
		{name: "genauth's minute rule gives it back", send: reply(nil, genauthErr(422)), wantOut: OutcomeDeduplicated, wantRefund: 1},
		{name: "throttled gives it back", send: reply(nil, genauthErr(429)), wantOut: OutcomeThrottled, wantRefund: 1},
		{name: "transient failure gives it back", send: reply(nil, genauthErr(500)), wantOut: OutcomeRetrying, wantRefund: 1},
		{name: "permanent failure gives it back", send: reply(nil, genauthErr(400)), wantOut: OutcomeFailed, wantRefund: 1},
		{name: "held reservation gives it back", acquire: heldBy("other", dedupe.StateSent, 30*time.Second), wantOut: OutcomeDeduplicated, wantRefund: 1},
		{name: "reservation error gives it back", acquire: func(context.Context, string, string, string) (dedupe.Acquired, dedupe.Reservation, error) {
			return 0, dedupe.Reservation{}, errors.New("redis down")
		}, wantRefund: 1},
		{name: "sent by an earlier attempt gives it back", acquire: reentered(dedupe.StateSent, 30*time.Second), wantOut: OutcomeSent, wantRefund: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := &fakeGuard{decision: guard.Decision{Allowed: true, Ticket: ticket}}
			journal := &fakeJournal{}
			h, err := NewHandler(HandlerConfig{
				Sender: &fakeSender{SendSMSFunc: tc.send}, Reservations: &fakeReserver{AcquireFunc: tc.acquire}, Journal: journal,
				Now: func() time.Time { return testEnqueued.Add(time.Second) }, Guard: g,
			})
			if err != nil {
				t.Fatal(err)
			}
			_ = h.processTask(context.Background(), newTestTask(t, nil), taskMeta{id: "task-1", maxRetry: DefaultMaxRetry, queue: QueueCritical})
			if len(g.admitted) != 1 || g.refunds != tc.wantRefund {
				t.Fatalf("admitted %d, refunds %d; want 1 and %d", len(g.admitted), g.refunds, tc.wantRefund)
			}
			if recs := journal.recorded(); tc.wantOut != "" && (len(recs) == 0 || recs[len(recs)-1].entry.Outcome != tc.wantOut) {
				t.Fatalf("records %+v; want outcome %s", recs, tc.wantOut)
			}
		})
	}
}

// TestGuardBlocks: a blocked send ends the task as blocked, final, with
// the rule and when it lifts, without a reservation or a call, and is
// neither retried nor archived.
func TestGuardBlocks(t *testing.T) {
	t.Parallel()
	lifts := testEnqueued.Add(time.Hour)
	for _, lastTry := range []bool{false, true} {
		g := &fakeGuard{decision: guard.Decision{Rule: guard.RulePrefix, LiftsAt: lifts}}
		sender, resv, journal := &fakeSender{}, &fakeReserver{}, &fakeJournal{}
		h, err := NewHandler(HandlerConfig{Sender: sender, Reservations: resv, Journal: journal,
			Now: func() time.Time { return testEnqueued.Add(time.Second) }, Guard: g})
		if err != nil {
			t.Fatal(err)
		}
		m := taskMeta{id: "task-1", maxRetry: DefaultMaxRetry, queue: QueueCritical}
		if lastTry {
			m.retried = m.maxRetry
		}
		err = h.processTask(context.Background(), newTestTask(t, func(p *Payload) { p.ClientIP = "203.0.113.9" }), m)
		if err != nil {
			t.Fatalf("blocked returned %v; want nil (completed, not retried or archived)", err)
		}
		if len(sender.calls()) != 0 || len(resv.ops()) != 0 || g.refunds != 0 {
			t.Fatalf("calls %d, reservation ops %v, refunds %d; want none", len(sender.calls()), resv.ops(), g.refunds)
		}
		if len(g.admitted) != 1 || g.admitted[0].ClientIP != "203.0.113.9" || g.admitted[0].Phone.E164 != "+86"+testNational || g.admitted[0].Channel != "CHANNEL_LOGIN" {
			t.Fatalf("guard asked %+v", g.admitted)
		}
		recs := journal.recorded()
		if len(recs) != 1 || recs[0].entry.Outcome != OutcomeBlocked || !recs[0].entry.Final {
			t.Fatalf("records %+v; want one final blocked", recs)
		}
		var r Result
		if err := json.Unmarshal(recs[0].entry.Result, &r); err != nil {
			t.Fatal(err)
		}
		if r.Rule != guard.RulePrefix || !r.LiftsAt.Equal(lifts) || r.RetryInMS != (time.Hour-time.Second).Milliseconds() || r.Class != "" {
			t.Fatalf("result %+v", r)
		}
		var raw map[string]any
		_ = json.Unmarshal(recs[0].entry.Result, &raw)
		if raw["rule"] != "prefix" || raw["liftsAt"] != lifts.Format(time.RFC3339) {
			t.Fatalf("result JSON %s: want rule and liftsAt", recs[0].entry.Result)
		}
	}
}

// TestGuardUnavailable: without an answer from the guard nothing is sent;
// the attempt is retried like any Redis failure.
func TestGuardUnavailable(t *testing.T) {
	t.Parallel()
	g := &fakeGuard{err: errors.New("redis down")}
	sender, resv, journal := &fakeSender{}, &fakeReserver{}, &fakeJournal{}
	h, err := NewHandler(HandlerConfig{Sender: sender, Reservations: resv, Journal: journal,
		Now: func() time.Time { return testEnqueued.Add(time.Second) }, Guard: g})
	if err != nil {
		t.Fatal(err)
	}
	err = h.processTask(context.Background(), newTestTask(t, nil), taskMeta{id: "task-1", maxRetry: DefaultMaxRetry, queue: QueueCritical})
	if err == nil || errors.Is(err, asynq.SkipRetry) || len(sender.calls()) != 0 || len(resv.ops()) != 0 {
		t.Fatalf("err %v, calls %d, ops %v; want a retried error and nothing done", err, len(sender.calls()), resv.ops())
	}
}

// TestGuardEndToEnd runs the real guard and stores on a real Redis: the
// third login code for one phone in an hour under 2/h is blocked and the
// phone's history says so.
func TestGuardEndToEnd(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := srv.Client()
	defer c.Close()
	resv, err := dedupe.New(dedupe.Config{Client: c, Window: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	hist, err := history.New(history.Config{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := guard.Settings{Phone: "2/h", Modes: "enforce"}.Config(nil)
	g, err := guard.New(cfg, guard.Deps{Client: c, Hasher: resv})
	if err != nil {
		t.Fatal(err)
	}
	sender := &fakeSender{}
	now := time.Now()
	h, err := NewHandler(HandlerConfig{Sender: sender, Reservations: resv, Journal: hist, Guard: g,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	channels := []string{"CHANNEL_LOGIN", "CHANNEL_REGISTER", "CHANNEL_RESET_PASSWORD"}
	for i, ch := range channels {
		task, _, err := NewTask(Payload{Channel: ch, PhoneNumber: testNational, PhoneCountryCode: "+86"}, now)
		if err != nil {
			t.Fatal(err)
		}
		id := []string{"t1", "t2", "t3"}[i]
		if err := h.processTask(context.Background(), task, taskMeta{id: id, maxRetry: DefaultMaxRetry, queue: QueueCritical}); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	if n := len(sender.calls()); n != 2 {
		t.Fatalf("%d calls, want 2", n)
	}
	e, ok, err := hist.Task(context.Background(), "t3")
	if err != nil || !ok || e.Outcome != OutcomeBlocked || !e.Final {
		t.Fatalf("t3: %+v %v %v", e, ok, err)
	}
	var r Result
	_ = json.Unmarshal(e.Result, &r)
	if r.Rule != guard.RulePhone || r.LiftsAt.IsZero() || r.LiftsAt.After(now.Add(time.Hour)) {
		t.Fatalf("t3 result %+v", r)
	}
	// No reservation held for the blocked task.
	if r, held, err := resv.Get(context.Background(), "+86"+testNational, "CHANNEL_RESET_PASSWORD"); err != nil || held {
		t.Fatalf("reservation %+v held %v (%v); the blocked task must hold none", r, held, err)
	}
}

// heldReserver is a fakeReserver whose pair another task holds, readable
// with Get.
type heldReserver struct {
	fakeReserver
	owner string
}

func (r *heldReserver) Get(context.Context, string, string) (dedupe.Reservation, bool, error) {
	return dedupe.Reservation{Owner: r.owner, State: dedupe.StateSent, TTL: 40 * time.Second}, r.owner != "", nil
}

// TestGuardBlockOnHeldPair: a task the guard refuses while another task
// holds its pair (a burst of duplicates, counted in flight) ends as the
// reservation would end it, deduplicated, not blocked; with the pair free
// it is blocked.
func TestGuardBlockOnHeldPair(t *testing.T) {
	t.Parallel()
	for _, owner := range []string{"other-task", ""} {
		g := &fakeGuard{decision: guard.Decision{Rule: guard.RulePhone, LiftsAt: testEnqueued.Add(time.Hour)}}
		resv, journal, sender := &heldReserver{owner: owner}, &fakeJournal{}, &fakeSender{}
		h, err := NewHandler(HandlerConfig{Sender: sender, Reservations: resv, Journal: journal,
			Now: func() time.Time { return testEnqueued.Add(time.Second) }, Guard: g})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.processTask(context.Background(), newTestTask(t, nil), taskMeta{id: "task-1", maxRetry: DefaultMaxRetry, queue: QueueCritical}); err != nil {
			t.Fatal(err)
		}
		want := OutcomeDeduplicated
		if owner == "" {
			want = OutcomeBlocked
		}
		recs := journal.recorded()
		if len(recs) != 1 || recs[0].entry.Outcome != want || len(sender.calls()) != 0 || len(resv.ops()) != 0 {
			t.Fatalf("holder %q: records %+v, calls %d, ops %v; want one %s and nothing taken", owner, recs, len(sender.calls()), resv.ops(), want)
		}
	}
}
