package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/outcome"
	"github.com/smsq/smsq/internal/redistest"
)

// streamRig is a handler wired as cmd/worker wires it, on a private
// redis-server, with the outcome stream.
type streamRig struct {
	rc    *redis.Client
	h     *Handler
	hist  *history.Store
	resv  *dedupe.Store
	calls atomic.Int32
	// refuse makes GenAuth refuse every call for good (statusCode 400).
	refuse atomic.Bool
	tasks  map[string]*asynq.Task
}

func newStreamRig(t *testing.T) *streamRig {
	t.Helper()
	r := &streamRig{rc: redistest.Start(t).Client(), tasks: map[string]*asynq.Task{}}
	var err error
	if r.resv, err = dedupe.New(dedupe.Config{Client: r.rc}); err != nil {
		t.Fatal(err)
	}
	if r.hist, err = history.New(history.Config{Client: r.rc}); err != nil {
		t.Fatal(err)
	}
	s, err := outcome.New(outcome.Config{Client: r.rc})
	if err != nil {
		t.Fatal(err)
	}
	sender := &fakeSender{SendSMSFunc: func(context.Context, genauth.SendSMSRequest) (*genauth.Response, error) {
		n := r.calls.Add(1)
		if r.refuse.Load() {
			return nil, genauthErr(400)
		}
		return &genauth.Response{HTTPStatus: 200, StatusCode: 200, RequestID: "req-" + string(rune('a'+n-1))}, nil
	}}
	r.h, err = NewHandler(HandlerConfig{Sender: sender, Reservations: r.resv, Journal: r.hist, JournalOnAsynqRedis: true, Outcomes: s})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *streamRig) run(t *testing.T, id, national string, lastTry bool) error {
	t.Helper()
	task := r.tasks[id]
	if task == nil {
		var err error
		task, _, err = NewTask(Payload{Channel: "CHANNEL_LOGIN", PhoneNumber: national, PhoneCountryCode: "+86", IdempotencyKey: id}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		r.tasks[id] = task
	}
	m := taskMeta{id: id, queue: QueueCritical, maxRetry: 5}
	if lastTry {
		m.retried = 5
	}
	return r.h.processTask(context.Background(), task, m)
}

// entries returns the stream's entries by task ID.
func (r *streamRig) entries(t *testing.T) map[string][]outcome.Event {
	t.Helper()
	msgs, err := r.rc.XRange(context.Background(), outcome.StreamKey(outcome.DefaultPrefix), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]outcome.Event{}
	for _, m := range msgs {
		for k, v := range m.Values {
			if s, _ := v.(string); strings.Contains(s, "0013800") || strings.Contains(s, "13800") && k != "phone" {
				t.Errorf("entry %s field %s = %q holds the phone number", m.ID, k, s)
			}
		}
		e, err := outcome.Parse(m.Values)
		if err != nil {
			t.Fatalf("entry %s: %v", m.ID, err)
		}
		out[e.TaskID] = append(out[e.TaskID], e)
	}
	return out
}

// A final outcome reaches the stream in the round trip of its record,
// once: a redelivery of the finished task appends nothing more.
func TestFinalOutcomeAppendedOnce(t *testing.T) {
	t.Parallel()
	r := newStreamRig(t)
	if err := r.run(t, "t-sent", "13800138001", false); err != nil {
		t.Fatal(err)
	}
	if err := r.run(t, "t-sent", "13800138001", false); err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	// Another task for the same pair inside the window: deduplicated.
	if err := r.run(t, "t-dup", "13800138001", false); err != nil {
		t.Fatal(err)
	}
	got := r.entries(t)
	if len(got["t-sent"]) != 1 || len(got["t-dup"]) != 1 || len(got) != 2 {
		t.Fatalf("entries %+v; want one for t-sent and one for t-dup", got)
	}
	sent, dup := got["t-sent"][0], got["t-dup"][0]
	wantHash := r.resv.PhoneHash("+8613800138001")
	if sent.Outcome != OutcomeSent || sent.RequestID != "req-a" || sent.Attempts != 1 || sent.Queue != QueueCritical ||
		sent.Channel != "CHANNEL_LOGIN" || sent.Phone != "+86 138****8001" || sent.PhoneHash != wantHash ||
		sent.Key != "t-sent" || sent.EnqueuedAt.IsZero() || sent.FinishedAt.Before(sent.EnqueuedAt) {
		t.Errorf("sent entry %+v", sent)
	}
	if dup.Outcome != OutcomeDeduplicated || dup.RetryInMS <= 0 || dup.RetryInMS > time.Minute.Milliseconds() || dup.PhoneHash != wantHash {
		t.Errorf("deduplicated entry %+v; want the time until the pair is free", dup)
	}
	if n := r.calls.Load(); n != 1 {
		t.Errorf("GenAuth calls %d, want 1", n)
	}
}

// A worker that stopped between the record and the append (the entry is
// final in the journal, nothing in the stream) leaves the append to the
// redelivery, which appends the recorded outcome, once.
func TestRedeliveryAppendsAnOutcomeRecordedWithoutIt(t *testing.T) {
	t.Parallel()
	r := newStreamRig(t)
	ctx := context.Background()
	task, _, err := NewTask(Payload{Channel: "CHANNEL_LOGIN", PhoneNumber: "13800138002", PhoneCountryCode: "+86", IdempotencyKey: "t-crash"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.hist.Begin(ctx, "t-crash", history.IdentityOf(QueueCritical, task.Payload()), time.Now()); err != nil {
		t.Fatal(err)
	}
	res, _ := json.Marshal(Result{Outcome: OutcomeSent, Final: true, RequestID: "earlier", Attempt: 1, Queue: QueueCritical, Channel: "CHANNEL_LOGIN", FinishedAt: time.Now().UTC()})
	hash := r.resv.PhoneHash("+8613800138002")
	if err := r.hist.Record(ctx, hash, history.Entry{TaskID: "t-crash", Outcome: OutcomeSent, Final: true, UpdatedAt: time.Now(), Result: res}, false); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := r.h.processTask(ctx, task, taskMeta{id: "t-crash", queue: QueueCritical, maxRetry: 5}); err != nil {
			t.Fatal(err)
		}
	}
	got := r.entries(t)["t-crash"]
	if len(got) != 1 || got[0].Outcome != OutcomeSent || got[0].RequestID != "earlier" || got[0].PhoneHash != hash {
		t.Fatalf("entries %+v; want the recorded outcome once", got)
	}
	if n := r.calls.Load(); n != 0 {
		t.Fatalf("GenAuth called %d times for a finished task", n)
	}
}

// The append's script is gone after a Redis restart (SCRIPT FLUSH here):
// the append in the record's round trip fails and is made again alone.
func TestAppendAfterScriptFlush(t *testing.T) {
	t.Parallel()
	r := newStreamRig(t)
	if err := r.run(t, "t-warm", "13800138003", false); err != nil {
		t.Fatal(err)
	}
	if err := r.rc.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.run(t, "t-flushed", "13800138004", false); err != nil {
		t.Fatal(err)
	}
	if got := r.entries(t); len(got["t-flushed"]) != 1 || len(got["t-warm"]) != 1 {
		t.Fatalf("entries %+v; want one per task", got)
	}
}

// An append Redis refuses (the stream key holds a string) fails the
// attempt, with the outcome recorded: the rerun sends nothing and appends
// once the key takes it.
func TestAppendRefusedIsRetried(t *testing.T) {
	t.Parallel()
	r := newStreamRig(t)
	ctx := context.Background()
	key := outcome.StreamKey(outcome.DefaultPrefix)
	if err := r.rc.Set(ctx, key, "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	err := r.run(t, "t-refused", "13800138005", false)
	if err == nil || !strings.Contains(err.Error(), "outcome stream") || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("attempt error %v; want the refused append", err)
	}
	if e, ok, _ := r.hist.Task(ctx, "t-refused"); !ok || e.Outcome != OutcomeSent || !e.Final {
		t.Fatalf("journal %+v; want sent, final", e)
	}
	if err := r.rc.Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.run(t, "t-refused", "13800138005", false); err != nil {
		t.Fatalf("rerun: %v", err)
	}
	if got := r.entries(t)["t-refused"]; len(got) != 1 || got[0].Outcome != OutcomeSent || got[0].RequestID != "req-a" {
		t.Fatalf("entries %+v; want the sent outcome once", got)
	}
	if n := r.calls.Load(); n != 1 {
		t.Fatalf("GenAuth calls %d, want 1", n)
	}
	// On the last try asynq ends the task whatever is returned, and no
	// redelivery comes: the task completes and the worker keeps the append
	// until the stream takes it.
	if err := r.rc.Set(ctx, key, "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.run(t, "t-last", "13800138006", true); err != nil {
		t.Fatalf("last try: %v; want the task completed", err)
	}
	if err := r.rc.Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(r.entries(t)["t-last"]) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the kept append never reached the stream")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := r.entries(t)["t-last"]; len(got) != 1 || got[0].Outcome != OutcomeSent {
		t.Fatalf("entries %+v; want sent once", got)
	}

	// A task archived on its first try (GenAuth refused for good) is not
	// run again either: its append is kept the same way.
	if err := r.rc.Set(ctx, key, "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r.refuse.Store(true)
	if err := r.run(t, "t-failed", "13800138007", false); err == nil || !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("refused send: %v; want the task archived", err)
	}
	if err := r.rc.Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for len(r.entries(t)["t-failed"]) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the kept append of the archived task never reached the stream")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := r.entries(t)["t-failed"]; len(got) != 1 || got[0].Outcome != OutcomeFailed || got[0].StatusCode != 400 {
		t.Fatalf("entries %+v; want failed once, statusCode 400", got)
	}
}
