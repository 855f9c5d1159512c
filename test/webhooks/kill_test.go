package webhooks

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/outcome"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/webhook"
	"github.com/smsq/smsq/internal/workertest"
)

// TestMain reports the tests skipped for want of redis-server and removes
// the worker binary.
func TestMain(m *testing.M) {
	code := redistest.Main(m)
	workertest.Cleanup()
	os.Exit(code)
}

// holdingReceiver holds every request while hold is set (the worker is
// then in the middle of those deliveries) and answers 204 otherwise,
// counting what it accepted by webhook-id.
type holdingReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	hold     bool
	release  chan struct{}
	held     int
	accepted map[string]int
}

func newHoldingReceiver(t *testing.T) *holdingReceiver {
	r := &holdingReceiver{hold: true, release: make(chan struct{}), accepted: map[string]int{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.ReadAll(req.Body)
		r.mu.Lock()
		if r.hold {
			r.held++
			r.mu.Unlock()
			select {
			case <-r.release:
			case <-req.Context().Done():
			}
			// Whatever the worker does now, this attempt was never
			// answered: a later attempt must deliver the event.
			http.Error(w, "held", http.StatusServiceUnavailable)
			return
		}
		r.accepted[req.Header.Get("webhook-id")]++
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *holdingReceiver) stopHolding() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hold {
		r.hold = false
		close(r.release)
	}
}

func (r *holdingReceiver) state() (held int, accepted map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, v := range r.accepted {
		out[k] = v
	}
	return r.held, out
}

// A worker killed with SIGKILL while its deliveries wait on the receiver
// loses no event: a second worker delivers every one, those appended while
// no worker ran included, each under its own webhook-id.
func TestKilledMidDeliveryLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for asynq's lease recovery; run without -short")
	}
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client()
	fake, err := genauthtest.Listen("127.0.0.1:0", genauthtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	rcv := newHoldingReceiver(t)
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i * 13)
	}
	env := append(workertest.Env(srv.URL(), fake, 3*time.Second),
		"SMSQ_WEBHOOK_URL="+rcv.URL+"/hook",
		"SMSQ_WEBHOOK_SECRET=whsec_"+base64.StdEncoding.EncodeToString(key),
		"SMSQ_WEBHOOK_ALLOW_PRIVATE=true",
		"SMSQ_WEBHOOK_CONCURRENCY=8")
	g := workertest.NewGroup(t, workertest.Binary(t, raceEnabled))
	defer g.Stop()
	w1 := g.Start(t, env)

	stream, err := outcome.New(outcome.Config{Client: rdb})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	want := map[string]bool{}
	add := func(i int) {
		e := outcome.Event{TaskID: "kill-" + strconv.Itoa(i), Queue: "critical", Outcome: "sent", Attempts: 1, FinishedAt: time.Now()}
		if _, err := stream.Append(ctx, e, ""); err != nil {
			t.Fatal(err)
		}
		want[webhook.MessageID(e.TaskID, e.Outcome)] = true
	}
	// More events than deliveries in flight: some are running (held),
	// the rest wait in the queue when the worker dies.
	for i := range 20 {
		add(i)
	}
	workertest.WaitFor(t, 30*time.Second, func() (bool, string) {
		held, _ := rcv.state()
		return held >= 8, "deliveries held: " + strconv.Itoa(held)
	})
	w1.Kill9(t)
	rcv.stopHolding()
	// Appended while no worker runs.
	for i := 20; i < 25; i++ {
		add(i)
	}
	killed := time.Now()
	g.Start(t, env)
	workertest.WaitEvery(t, 4*time.Minute, time.Second, func() (bool, string) {
		_, acc := rcv.state()
		missing := 0
		for id := range want {
			if acc[id] == 0 {
				missing++
			}
		}
		return missing == 0, strconv.Itoa(missing) + " of " + strconv.Itoa(len(want)) + " events not delivered"
	})
	held, acc := rcv.state()
	extra := 0
	for id, n := range acc {
		if !want[id] {
			t.Errorf("delivery under an unknown webhook-id %s", id)
		}
		extra += n - 1
	}
	t.Logf("%d events; %d deliveries held when the worker was killed; all delivered %s after the kill; %d repeats",
		len(want), held, time.Since(killed).Round(time.Second), extra)
	for _, p := range g.List() {
		for _, l := range p.Logs(t) {
			if l.Crash() {
				t.Errorf("%s: %s", p.Name, l.Raw)
			}
		}
	}
}
