package webhook

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/outcome"
	"github.com/smsq/smsq/internal/redistest"
)

// verify checks one delivery's signature with secrets, as a receiver does.
func verify(t testing.TB, d delivery, secrets []Secret) {
	t.Helper()
	ts, err := strconv.ParseInt(d.Timestamp, 10, 64)
	if err != nil {
		t.Fatalf("webhook-timestamp %q: %v", d.Timestamp, err)
	}
	if age := time.Since(time.Unix(ts, 0)); age < -2*time.Second || age > time.Minute {
		t.Errorf("webhook-timestamp %d is %s off", ts, age)
	}
	want := Sign(d.ID, ts, d.Body, secrets)
	if d.Signature != want {
		t.Errorf("webhook-signature %q, want %q", d.Signature, want)
	}
	if d.ContentType != "application/json" || d.UserAgent != UserAgent {
		t.Errorf("Content-Type %q, User-Agent %q", d.ContentType, d.UserAgent)
	}
}

// A receiver that fails three times, then accepts, gets each event
// accepted exactly once, every attempt under the same webhook-id and
// signed afresh, along the schedule.
func TestRetryUntilAccepted(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	tries := map[string]int{}
	fails := []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusInternalServerError}
	rcv := newReceiver(t, func(_ int, d delivery) int {
		mu.Lock()
		defer mu.Unlock()
		tries[d.ID]++
		if n := tries[d.ID]; n <= len(fails) {
			return fails[n-1]
		}
		return http.StatusOK
	})
	sched := Schedule{time.Second, 2 * time.Second, 3 * time.Second}
	secrets := testSecret(3, 32) + " " + testSecret(9, 24)
	r := startRig(t, rigConfig{endpoints: rcv.URL + "/hook?token=t0k3n", secrets: secrets, schedule: sched, guard: Guard{AllowPrivate: true}})
	const events = 3
	for i := range events {
		r.append(t, event("task-"+itoa(i), "sent"))
	}
	waitFor(t, 60*time.Second, func() (bool, string) {
		n := r.counter(t, "smsq_webhook_deliveries_total", map[string]string{"result": ResultDelivered})
		return n == events, "delivered " + strconv.FormatFloat(n, 'f', 0, 64)
	})
	byID := map[string][]delivery{}
	for _, d := range rcv.deliveries() {
		verify(t, d, mustSecrets(t, secrets))
		byID[d.ID] = append(byID[d.ID], d)
	}
	if len(byID) != events {
		t.Fatalf("%d webhook-ids, want %d", len(byID), events)
	}
	for id, ds := range byID {
		if len(ds) != 4 {
			t.Errorf("%s: %d attempts, want 4 (3 failures, 1 success)", id, len(ds))
			continue
		}
		var gaps []string
		for i := 1; i < len(ds); i++ {
			if string(ds[i].Body) != string(ds[0].Body) {
				t.Errorf("%s: attempt %d body differs", id, i+1)
			}
			gap := ds[i].At.Sub(ds[i-1].At)
			gaps = append(gaps, gap.Round(10*time.Millisecond).String())
			// The jitter takes up to 10% off.
			if floor := sched[i-1] - sched[i-1]/10; gap < floor {
				t.Errorf("%s: retry %d after %s, want at least %s", id, i, gap, floor)
			}
		}
		t.Logf("%s: schedule %s; observed gaps %s", id, sched, strings.Join(gaps, ", "))
	}
	if n := r.counter(t, "smsq_webhook_deliveries_total", map[string]string{"result": ResultRetry}); n != 3*events {
		t.Errorf("retry count %v, want %d", n, 3*events)
	}
}

// 410 disables the endpoint for every worker: the next event is not sent;
// re-enabling lets deliveries through again.
func TestGoneDisables(t *testing.T) {
	t.Parallel()
	var gone sync.Mutex
	isGone := true
	rcv := newReceiver(t, func(int, delivery) int {
		gone.Lock()
		defer gone.Unlock()
		if isGone {
			return http.StatusGone
		}
		return http.StatusOK
	})
	r := startRig(t, rigConfig{endpoints: rcv.URL, guard: Guard{AllowPrivate: true}})
	r.append(t, event("a", "sent"))
	waitFor(t, 20*time.Second, func() (bool, string) {
		return r.counter(t, "smsq_webhook_endpoints_disabled", nil) == 1, "endpoint not disabled"
	})
	r.append(t, event("b", "sent"))
	waitFor(t, 20*time.Second, func() (bool, string) {
		return r.counter(t, "smsq_webhook_deliveries_total", map[string]string{"result": ResultDisabled}) == 1, "second event not ended as disabled"
	})
	if n := len(rcv.deliveries()); n != 1 {
		t.Fatalf("receiver got %d requests, want 1 (the 410)", n)
	}
	archived, err := r.ins.ListArchivedTasks(Queue)
	if err != nil || len(archived) != 2 {
		t.Fatalf("archived %d tasks (%v), want 2", len(archived), err)
	}
	notes, err := r.disabled.Enable(context.Background(), r.fanout.endpoints)
	if err != nil || len(notes) != 1 || notes[r.fanout.endpoints[0].ID].Status != http.StatusGone {
		t.Fatalf("Enable: %v %v", notes, err)
	}
	gone.Lock()
	isGone = false
	gone.Unlock()
	r.append(t, event("c", "sent"))
	waitFor(t, 20*time.Second, func() (bool, string) {
		return r.counter(t, "smsq_webhook_deliveries_total", map[string]string{"result": ResultDelivered}) == 1, "not delivered after re-enabling"
	})
}

// Another 4xx ends that delivery at once, archived with its status, and
// does not disable the endpoint.
func TestClientErrorEnds(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, func(n int, _ delivery) int {
		if n == 1 {
			return http.StatusBadRequest
		}
		return http.StatusAccepted
	})
	r := startRig(t, rigConfig{endpoints: rcv.URL, guard: Guard{AllowPrivate: true}})
	r.append(t, event("a", "failed"))
	waitFor(t, 20*time.Second, func() (bool, string) {
		a, _ := r.ins.ListArchivedTasks(Queue)
		return len(a) == 1, "not archived"
	})
	a, _ := r.ins.ListArchivedTasks(Queue)
	if !strings.Contains(a[0].LastErr, "answered 400") || !strings.Contains(string(a[0].Result), `"status":400`) {
		t.Errorf("archived task: error %q result %s", a[0].LastErr, a[0].Result)
	}
	r.append(t, event("b", "failed"))
	waitFor(t, 20*time.Second, func() (bool, string) {
		return r.counter(t, "smsq_webhook_deliveries_total", map[string]string{"result": ResultDelivered}) == 1, "next event not delivered"
	})
	if n := len(rcv.deliveries()); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

// Redirects: 307/308 to the same host and scheme are followed; to another
// host (another port counts) they are refused without contacting it;
// 301/302/303 are not followed (the POST would become a bodiless GET).
func TestRedirects(t *testing.T) {
	t.Parallel()
	other := newReceiver(t, nil)
	var mu sync.Mutex
	var target string
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Path {
		case "/elsewhere":
			http.Redirect(w, req, other.URL+"/in", http.StatusTemporaryRedirect)
		case "/moved":
			http.Redirect(w, req, "/final", http.StatusPermanentRedirect)
		case "/found":
			http.Redirect(w, req, "/final", http.StatusFound)
		case "/final":
			mu.Lock()
			target = req.Method + " " + req.Header.Get("webhook-id")
			mu.Unlock()
			w.WriteHeader(http.StatusOK)
		}
	}))
	defer rcv.Close()
	r := startRig(t, rigConfig{endpoints: rcv.URL + "/elsewhere," + rcv.URL + "/moved," + rcv.URL + "/found", guard: Guard{AllowPrivate: true}})
	r.append(t, event("a", "sent"))
	waitFor(t, 20*time.Second, func() (bool, string) {
		a, _ := r.ins.ListArchivedTasks(Queue)
		return len(a) == 2 && r.counter(t, "smsq_webhook_deliveries_total", map[string]string{"result": ResultDelivered}) == 1,
			"want 2 archived (elsewhere, found) and 1 delivered (moved)"
	})
	if n := len(other.deliveries()); n != 0 {
		t.Fatalf("the other host got %d requests", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.HasPrefix(target, "POST msg_") {
		t.Fatalf("the 308 was followed as %q", target)
	}
	if n := r.counter(t, "smsq_webhook_deliveries_total", map[string]string{"result": ResultRefused}); n != 1 {
		t.Errorf("refused %v, want 1", n)
	}
	if n := r.counter(t, "smsq_webhook_deliveries_total", map[string]string{"result": ResultRejected}); n != 1 {
		t.Errorf("rejected %v, want 1 (the 302)", n)
	}
}

// Without SMSQ_WEBHOOK_ALLOW_PRIVATE a delivery to a name resolving to
// 127.0.0.1 is refused at connect time and never retried.
func TestPrivateRefusedAtDelivery(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, nil)
	port := rcv.URL[strings.LastIndex(rcv.URL, ":")+1:]
	r := startRig(t, rigConfig{endpoints: "http://localhost:" + port + "/hook"})
	r.append(t, event("a", "sent"))
	waitFor(t, 20*time.Second, func() (bool, string) {
		a, _ := r.ins.ListArchivedTasks(Queue)
		return len(a) == 1, "not archived"
	})
	a, _ := r.ins.ListArchivedTasks(Queue)
	if !strings.Contains(a[0].LastErr, "loopback") || a[0].Retried != 0 {
		t.Errorf("archived: %q after %d retries", a[0].LastErr, a[0].Retried)
	}
	if n := len(rcv.deliveries()); n != 0 {
		t.Fatalf("receiver got %d requests", n)
	}
}

// Filtered outcomes, and entries that are not a task's outcome, are
// acknowledged without a task.
func TestFilter(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, nil)
	f, _ := ParseFilter("failed")
	r := startRig(t, rigConfig{endpoints: rcv.URL, filter: f, guard: Guard{AllowPrivate: true}})
	r.append(t, event("a", "sent"))
	r.append(t, event("b", "failed"))
	r.append(t, event("c", "deduplicated"))
	// Not a task's outcome: never an sms.* webhook, whatever the filter.
	if _, err := r.stream.Warn(context.Background(), outcome.Event{V: outcome.Version, Kind: outcome.KindBudgetWarning, Budget: "5/d", Used: 4, FinishedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() (bool, string) {
		p, err := r.rdb.XPending(context.Background(), outcome.StreamKey("smsq"), Group).Result()
		return err == nil && p.Count == 0 && r.counter(t, "smsq_webhook_deliveries_total", map[string]string{"result": ResultDelivered}) == 1, "entries pending or not delivered"
	})
	ds := rcv.deliveries()
	if typ, _, _ := envelopeOf(t, ds[0].Body); len(ds) != 1 || typ != "sms.failed" {
		t.Fatalf("got %d deliveries, first %s", len(ds), typ)
	}
	if n := r.counter(t, "smsq_webhook_events_total", map[string]string{"result": EventFiltered}); n != 3 {
		t.Errorf("filtered %v, want 3 (two outcomes, one budget warning)", n)
	}
}

// An entry read twice (a crash between queueing and acknowledging) queues
// one task per endpoint; entries another consumer read and never
// acknowledged are taken over once they have been idle for ClaimIdle.
func TestFanoutOnceAndTakeOver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Start(t).Client()
	stream, _ := outcome.New(outcome.Config{Client: rdb})
	eps := mustEndpoints(t, "https://a.example/x,https://b.example/y")
	client := asynq.NewClientFromRedisClient(rdb)
	defer client.Close()
	newFanout := func(name string) *Fanout {
		f, err := NewFanout(FanoutConfig{Client: rdb, Enqueuer: client, Endpoints: eps, Consumer: name, ClaimIdle: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		f.block = 50 * time.Millisecond
		if err := f.Init(ctx); err != nil {
			t.Fatal(err)
		}
		return f
	}
	dead, live := newFanout("dead"), newFanout("live")
	for i := range 5 {
		if _, err := stream.Append(ctx, event("t"+itoa(i), "sent"), ""); err != nil {
			t.Fatal(err)
		}
	}
	// The dead consumer reads everything and queues the first two entries
	// twice over, acknowledging nothing.
	res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: Group, Consumer: "dead", Streams: []string{outcome.StreamKey("smsq"), ">"}, Count: 10}).Result()
	if err != nil || len(res[0].Messages) != 5 {
		t.Fatalf("read %v %v", res, err)
	}
	for range 2 {
		for _, m := range res[0].Messages[:2] {
			if err := dead.fanout(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); live.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	ins := asynq.NewInspectorFromRedisClient(rdb)
	waitFor(t, 10*time.Second, func() (bool, string) {
		p, err := rdb.XPending(ctx, outcome.StreamKey("smsq"), Group).Result()
		return err == nil && p.Count == 0, "entries still pending"
	})
	tasks, err := ins.ListPendingTasks(Queue, asynq.PageSize(100))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, ti := range tasks {
		if seen[ti.ID] {
			t.Errorf("task %s twice", ti.ID)
		}
		seen[ti.ID] = true
	}
	if len(tasks) != 10 {
		t.Fatalf("%d tasks, want 10 (5 entries, 2 endpoints)", len(tasks))
	}
}

// A task of another type, or a payload that does not parse, ends without
// a retry.
func TestDelivererRefusesBadTasks(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	d, err := NewDeliverer(DelivererConfig{Secrets: mustSecrets(t, testSecret(1, 32)), Disabled: NewDisabled(rdb, "smsq")})
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range []*asynq.Task{asynq.NewTask("genauth:send_sms", nil), asynq.NewTask(TypeDeliver, []byte("{")), asynq.NewTask(TypeDeliver, []byte(`{"endpoint":"x"}`))} {
		if err := d.ProcessTask(context.Background(), tk); !errors.Is(err, asynq.SkipRetry) {
			t.Errorf("%s %s: %v, want SkipRetry", tk.Type(), tk.Payload(), err)
		}
	}
}
