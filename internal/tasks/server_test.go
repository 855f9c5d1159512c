package tasks

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/logging"
	"github.com/smsq/smsq/internal/outcome"
	"github.com/smsq/smsq/internal/redisconn"
)

// These tests run the handler under a real asynq.Server, the only place
// asynq's context, result writer, RetryDelayFunc and IsFailure meet. They
// use miniredis for speed; the stores' own tests prove TTLs on real Redis.

type worker struct {
	client *asynq.Client
	insp   *asynq.Inspector
	rc     *redis.Client
	// requests counts what the handler's stores send to Redis: one per
	// command or pipeline.
	requests *redisconn.Requests
}

// startWorker runs a server with the handler, the real reservation and
// history stores and sender, as cmd/worker wires them.
func startWorker(t *testing.T, sender Sender) *worker {
	t.Helper()
	m := miniredis.RunT(t)
	opt := asynq.RedisClientOpt{Addr: m.Addr()}
	rc := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = rc.Close() })
	requests := &redisconn.Requests{}
	rc.AddHook(requests)
	resv, err := dedupe.New(dedupe.Config{Client: rc})
	if err != nil {
		t.Fatalf("dedupe.New: %v", err)
	}
	hist, err := history.New(history.Config{Client: rc})
	if err != nil {
		t.Fatalf("history.New: %v", err)
	}
	stream, err := outcome.New(outcome.Config{Client: rc})
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(HandlerConfig{Sender: sender, Reservations: resv, Journal: hist, JournalOnAsynqRedis: true, Outcomes: stream})
	if err != nil {
		t.Fatalf("NewHandler: %v", err)
	}
	// The worker's server configuration, polling faster.
	cfg := ServerConfig(2, 20*time.Millisecond, &logging.Asynq{Log: zerolog.Nop()})
	cfg.DelayedTaskCheckInterval, cfg.LogLevel = 100*time.Millisecond, asynq.FatalLevel
	srv := asynq.NewServer(opt, cfg)
	// As cmd/worker does: the handler takes every task, so that a task of
	// another type gets a recorded outcome instead of a mux's retries.
	if err := srv.Start(h); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	w := &worker{client: asynq.NewClient(opt), insp: asynq.NewInspector(opt), rc: rc, requests: requests}
	t.Cleanup(func() { _ = w.client.Close(); _ = w.insp.Close() })
	return w
}

// enqueue queues a login code for 138 0013 8000 with idempotency key key.
func (w *worker) enqueue(t *testing.T, key string) *asynq.TaskInfo {
	t.Helper()
	info, _ := w.enqueueChannel(t, key, "CHANNEL_LOGIN")
	return info
}

// enqueueChannel is enqueue on another channel; it returns the validated
// request too.
func (w *worker) enqueueChannel(t *testing.T, key, channel string) (*asynq.TaskInfo, Validated) {
	t.Helper()
	p := Payload{Channel: channel, PhoneNumber: "138 0013 8000", PhoneCountryCode: "+86", IdempotencyKey: key}
	task, v, err := NewTask(p, time.Now())
	if err != nil {
		t.Fatalf("NewTask: %v", err)
	}
	info, err := w.client.Enqueue(task)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	return info, v
}

// streamed returns the outcome stream's entries of task id (masked as in
// the stream), in order.
func (w *worker) streamed(t *testing.T, id string) []outcome.Event {
	t.Helper()
	msgs, err := w.rc.XRange(context.Background(), outcome.StreamKey(outcome.DefaultPrefix), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []outcome.Event
	for _, m := range msgs {
		e, err := outcome.Parse(m.Values)
		if err != nil {
			t.Fatalf("entry %s: %v", m.ID, err)
		}
		if e.TaskID == id {
			out = append(out, e)
		}
	}
	return out
}

// streamedOnce checks that task id has one stream entry, of outcome want.
func (w *worker) streamedOnce(t *testing.T, id, want string) outcome.Event {
	t.Helper()
	got := w.streamed(t, id)
	if len(got) != 1 || got[0].Outcome != want {
		t.Fatalf("task %s: stream entries %+v; want one %s", id, got, want)
	}
	return got[0]
}

// waitState polls until the task reaches state and returns its info with
// the decoded result.
func (w *worker) waitState(t *testing.T, info *asynq.TaskInfo, state asynq.TaskState) (*asynq.TaskInfo, Result) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last *asynq.TaskInfo
	for {
		got, err := w.insp.GetTaskInfo(info.Queue, info.ID)
		if err == nil && got.State == state && len(got.Result) > 0 {
			var res Result
			if err := json.Unmarshal(got.Result, &res); err != nil {
				t.Fatalf("task result %q is not JSON: %v", got.Result, err)
			}
			return got, res
		}
		if err == nil {
			last = got
		}
		if time.Now().After(deadline) {
			if last != nil {
				t.Fatalf("task %s: state %v (last error %q, result %s), want %v", info.ID, last.State, last.LastErr, last.Result, state)
			}
			t.Fatalf("task %s: not found (%v), want state %v", info.ID, err, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWorkerSent(t *testing.T) {
	t.Parallel()
	sender := &fakeSender{}
	w := startWorker(t, sender)
	info, res := w.waitState(t, w.enqueue(t, "srv-sent"), asynq.TaskStateCompleted)
	if info.ID != "srv-sent" || info.Queue != QueueCritical {
		t.Fatalf("task %s in %s, want srv-sent in %s", info.ID, info.Queue, QueueCritical)
	}
	if res.Outcome != OutcomeSent || !res.Final || res.Queue != QueueCritical || res.Attempt != 1 || res.Phone != "+86 138****8000" {
		t.Fatalf("result = %+v, want a first attempt sent from critical", res)
	}
	if n := len(sender.calls()); n != 1 {
		t.Fatalf("GenAuth calls = %d, want 1", n)
	}
	if e := w.streamedOnce(t, "srv-sent", OutcomeSent); e.Phone != "+86 138****8000" || e.Queue != QueueCritical || e.Attempts != 1 {
		t.Fatalf("stream entry %+v", e)
	}
}

// A sent task costs the handler three requests to Redis: open the attempt,
// take the reservation, then the journal entry with the task's result and
// the sent mark riding along (asynq's ResultWriter, a request of its own,
// is not used).
func TestWorkerSentTaskRequests(t *testing.T) {
	t.Parallel()
	w := startWorker(t, &fakeSender{})
	// The first task loads the scripts and opens the connections.
	w.waitState(t, w.enqueue(t, "warm-up"), asynq.TaskStateCompleted)

	before := w.requests.Load()
	info, v := w.enqueueChannel(t, "counted", "CHANNEL_REGISTER")
	if _, res := w.waitState(t, info, asynq.TaskStateCompleted); res.Outcome != OutcomeSent {
		t.Fatalf("result = %+v, want sent", res)
	}
	if n := w.requests.Load() - before; n != 3 {
		t.Fatalf("handler sent %d requests to Redis, want 3", n)
	}
	resv, err := dedupe.New(dedupe.Config{Client: w.rc})
	if err != nil {
		t.Fatal(err)
	}
	r, ok, err := resv.Get(context.Background(), v.Phone.E164, string(v.Channel))
	if err != nil || !ok || r.State != dedupe.StateSent || r.Owner != "counted" || r.TTL <= 55*time.Second {
		t.Fatalf("reservation = %+v, %v, %v; want sent by counted, window restarted", r, ok, err)
	}
}

// The result of a task NewTask made is kept once, on the asynq task that
// asynq retains, and the journal's readers find it there. A raw
// producer's task, which asynq drops as soon as it completes (no
// retention), or one whose retention header is forged or too short, keeps
// its result in the journal.
func TestWorkerResultKeptOnce(t *testing.T) {
	t.Parallel()
	w := startWorker(t, &fakeSender{})
	hist, err := history.New(history.Config{Client: w.rc})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	info, _ := w.enqueueChannel(t, "kept-once", "CHANNEL_REGISTER")
	got, res := w.waitState(t, info, asynq.TaskStateCompleted)
	if res.Outcome != OutcomeSent {
		t.Fatalf("result = %+v, want sent", res)
	}
	if copy := w.rc.HGet(ctx, history.TaskKey(history.DefaultPrefix, "kept-once"), "result").Val(); copy != "" {
		t.Fatalf("journal keeps a copy of the result (%d bytes) that asynq keeps too", len(copy))
	}
	e, ok, err := hist.Task(ctx, "kept-once")
	if err != nil || !ok || string(e.Result) != string(got.Result) {
		t.Fatalf("journal entry %+v, %v, %v; want the result on the asynq task", e, ok, err)
	}

	payload := []byte(`{"channel":"CHANNEL_RESET_PASSWORD","phoneNumber":"13800138000","phoneCountryCode":"+86"}`)
	for _, c := range []struct {
		id      string
		headers map[string]string
	}{
		{"raw-none", nil},
		{"raw-forged", map[string]string{HeaderRetention: "99999999"}},
		{"raw-short", map[string]string{HeaderRetention: "60"}},
		{"raw-garbage", map[string]string{HeaderRetention: "-1e9"}},
	} {
		opts := []asynq.Option{asynq.TaskID(c.id), asynq.Queue(QueueLow)}
		if c.id == "raw-short" {
			opts = append(opts, asynq.Retention(time.Minute))
		}
		if _, err := w.client.Enqueue(asynq.NewTaskWithHeaders(TypeSendSMS, payload, c.headers, opts...)); err != nil {
			t.Fatal(err)
		}
		var e history.Entry
		deadline := time.Now().Add(10 * time.Second)
		for {
			e, ok, err = hist.Task(ctx, c.id)
			if err != nil {
				t.Fatal(err)
			}
			if ok && e.Final {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no final entry in the journal after 10s", c.id)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if c.id == "raw-forged" {
			// Believed: the forger's own task loses its result with the
			// asynq task, and nothing else; its outcome stays.
			if !IsFinal(e.Outcome) || len(e.Result) != 0 {
				t.Fatalf("%s: entry %+v, want a final outcome without a result", c.id, e)
			}
			continue
		}
		var r Result
		if err := json.Unmarshal(e.Result, &r); err != nil || !r.Final || r.Queue != QueueLow {
			t.Fatalf("%s: journal result %s (%v); want the task's own", c.id, e.Result, err)
		}
		if copy := w.rc.HGet(ctx, history.TaskKey(history.DefaultPrefix, c.id), "result").Val(); copy == "" {
			t.Fatalf("%s: the journal keeps no copy of a result asynq does not keep for the retention", c.id)
		}
	}
}

func TestWorkerSecondTaskIsDeduplicated(t *testing.T) {
	t.Parallel()
	sender := &fakeSender{}
	w := startWorker(t, sender)
	w.waitState(t, w.enqueue(t, "first"), asynq.TaskStateCompleted)
	_, res := w.waitState(t, w.enqueue(t, "second"), asynq.TaskStateCompleted)
	if res.Outcome != OutcomeDeduplicated || res.Holder != "first" {
		t.Fatalf("second task result = %+v, want deduplicated, held by first", res)
	}
	w.streamedOnce(t, "first", OutcomeSent)
	if e := w.streamedOnce(t, "second", OutcomeDeduplicated); e.RetryInMS <= 0 {
		t.Fatalf("deduplicated entry %+v; want the time until the pair is free", e)
	}
	if n := len(sender.calls()); n != 1 {
		t.Fatalf("GenAuth calls = %d, want 1", n)
	}
}

func TestWorkerPermanentFailureIsArchived(t *testing.T) {
	t.Parallel()
	sender := &fakeSender{SendSMSFunc: reply(nil, genauthErr(400))}
	w := startWorker(t, sender)
	info, res := w.waitState(t, w.enqueue(t, "srv-400"), asynq.TaskStateArchived)
	if info.Retried != 0 || !strings.Contains(info.LastErr, "statusCode 400") {
		t.Fatalf("archived after %d retries with %q, want 0 and the GenAuth error", info.Retried, info.LastErr)
	}
	if res.Outcome != OutcomeFailed || !res.Final || res.StatusCode != 400 || res.Class != "permanent" {
		t.Fatalf("result = %+v, want final failed, statusCode 400", res)
	}
	if e := w.streamedOnce(t, "srv-400", OutcomeFailed); e.StatusCode != 400 {
		t.Fatalf("stream entry %+v; want statusCode 400", e)
	}
	if n := len(sender.calls()); n != 1 {
		t.Fatalf("GenAuth calls = %d, want 1", n)
	}
}

func TestWorkerThrottleKeepsRetries(t *testing.T) {
	t.Parallel()
	sender := &fakeSender{SendSMSFunc: reply(nil, &genauth.Error{HTTPStatus: 200, StatusCode: 429, RetryAfter: 7 * time.Second})}
	w := startWorker(t, sender)
	start := time.Now()
	info, res := w.waitState(t, w.enqueue(t, "srv-429"), asynq.TaskStateRetry)
	if info.Retried != 0 {
		t.Fatalf("Retried = %d, want 0: a throttle is not a failure", info.Retried)
	}
	// asynq keeps the next run time in whole seconds, truncated; the slack
	// smsq adds means the truncated time is still never before Retry-After.
	if earliest, latest := start.Add(7*time.Second), time.Now().Add(7*time.Second+scheduleSlack+700*time.Millisecond); info.NextProcessAt.Before(earliest) || info.NextProcessAt.After(latest) {
		t.Fatalf("next run at %v, want between %v and %v", info.NextProcessAt, earliest, latest)
	}
	if res.Outcome != OutcomeThrottled || res.Final || res.RetryInMS < 7000 {
		t.Fatalf("result = %+v, want throttled for about 7s", res)
	}
}

func TestWorkerRetriesTransientFailure(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	sender := &fakeSender{SendSMSFunc: func(context.Context, genauth.SendSMSRequest) (*genauth.Response, error) {
		if n.Add(1) == 1 {
			return nil, genauthErr(502)
		}
		return &genauth.Response{HTTPStatus: 200, StatusCode: 200, RequestID: "req-2"}, nil
	}}
	w := startWorker(t, sender)
	start := time.Now()
	info, res := w.waitState(t, w.enqueue(t, "srv-502"), asynq.TaskStateCompleted)
	if res.Outcome != OutcomeSent || res.Attempt != 2 || res.Retried != 1 || info.Retried != 1 {
		t.Fatalf("result = %+v (task retried %d), want sent on the second attempt", res, info.Retried)
	}
	// The retried attempt is not an outcome: one entry, the last attempt's.
	if e := w.streamedOnce(t, "srv-502", OutcomeSent); e.Attempts != 2 || e.RequestID != "req-2" {
		t.Fatalf("stream entry %+v; want the second attempt's", e)
	}
	// The first retry comes within a second, plus the forwarder's tick.
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %v to send after one transient failure", took)
	}
	if got := len(sender.calls()); got != 2 {
		t.Fatalf("GenAuth calls = %d, want 2", got)
	}
}

func TestWorkerInvalidPayloadIsArchived(t *testing.T) {
	t.Parallel()
	sender := &fakeSender{}
	w := startWorker(t, sender)
	info, err := w.client.Enqueue(asynq.NewTask(TypeSendSMS, []byte(`{"channel":"CHANNEL_LOGIN","phoneNumber":"12"}`), asynq.Retention(time.Hour)))
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	got, res := w.waitState(t, info, asynq.TaskStateArchived)
	if res.Outcome != OutcomeInvalid || !strings.Contains(got.LastErr, "phoneNumber") {
		t.Fatalf("result = %+v, last error %q; want invalid naming phoneNumber", res, got.LastErr)
	}
	if e := w.streamedOnce(t, info.ID, OutcomeInvalid); e.PhoneHash != "" || !strings.Contains(e.Reason, "phoneNumber") {
		t.Fatalf("stream entry %+v; want no phone, the reason", e)
	}
	if n := len(sender.calls()); n != 0 {
		t.Fatalf("GenAuth calls = %d, want 0", n)
	}
}

// Only genauth:send_sms is the contract: a type that merely starts with it
// (asynq's ServeMux matches by prefix) or any other type is archived on its
// first attempt with a reason naming the type, and nothing is sent.
func TestWorkerOtherTaskTypesAreArchived(t *testing.T) {
	t.Parallel()
	sender := &fakeSender{}
	w := startWorker(t, sender)
	payload := []byte(`{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000","phoneCountryCode":"+86"}`)
	for _, typ := range []string{TypeSendSMS + "_v2", TypeSendSMS + ":13800138000", "email:send", "genauth"} {
		info, err := w.client.Enqueue(asynq.NewTask(typ, payload, asynq.Retention(time.Hour)))
		if err != nil {
			t.Fatalf("Enqueue: %v", err)
		}
		got, res := w.waitState(t, info, asynq.TaskStateArchived)
		if got.Retried != 0 || res.Outcome != OutcomeInvalid || !res.Final || !strings.Contains(res.Reason, "task type") || !strings.Contains(res.Reason, TypeSendSMS) {
			t.Errorf("type %q: retried %d, result %+v; want invalid on the first attempt naming the type", typ, got.Retried, res)
		}
		if strings.Contains(res.Reason, "13800138000") || strings.Contains(got.LastErr, "13800138000") {
			t.Errorf("type %q: a full phone number in %q / %q", typ, res.Reason, got.LastErr)
		}
		hist, err := history.New(history.Config{Client: w.rc})
		if err != nil {
			t.Fatal(err)
		}
		if e, ok, err := hist.Task(context.Background(), info.ID); err != nil || !ok || e.Outcome != OutcomeInvalid || !e.Final {
			t.Errorf("type %q: journal entry %+v, %v, %v; want a final invalid one", typ, e, ok, err)
		}
	}
	if n := len(sender.calls()); n != 0 {
		t.Fatalf("GenAuth calls = %d, want 0", n)
	}
}

// asynq task IDs are unique per queue only: a raw producer reusing a TaskID
// in another queue (another phone and channel, or the very same payload)
// gets a task of its own that is never taken for a redelivery of the first
// and never completed with its result. It is archived once as invalid,
// naming the conflict, with its own channel, phone and queue.
func TestWorkerCollidingTaskIDs(t *testing.T) {
	t.Parallel()
	sender := &fakeSender{}
	w := startWorker(t, sender)
	first := []byte(`{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000"}`)
	info, err := w.client.Enqueue(asynq.NewTask(TypeSendSMS, first, asynq.TaskID("dup"), asynq.Queue(QueueCritical), asynq.Retention(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	if _, res := w.waitState(t, info, asynq.TaskStateCompleted); res.Outcome != OutcomeSent {
		t.Fatalf("first task: %+v, want sent", res)
	}
	others := []struct {
		queue   string
		payload []byte
		phone   string
		channel string
	}{
		{QueueDefault, []byte(`{"channel":"CHANNEL_REGISTER","phoneNumber":"13900139000"}`), "+86 139****9000", "CHANNEL_REGISTER"},
		{QueueLow, first, "+86 138****8000", "CHANNEL_LOGIN"},
	}
	for _, o := range others {
		info, err := w.client.Enqueue(asynq.NewTask(TypeSendSMS, o.payload, asynq.TaskID("dup"), asynq.Queue(o.queue), asynq.Retention(time.Hour)))
		if err != nil {
			t.Fatalf("raw enqueue in %s: %v", o.queue, err)
		}
		got, res := w.waitState(t, info, asynq.TaskStateArchived)
		if got.Retried != 0 || res.Outcome != OutcomeInvalid || !res.Final || !strings.Contains(res.Reason, "already names another task (queue critical") {
			t.Errorf("task in %s: retried %d, result %+v; want invalid once, naming the conflict", o.queue, got.Retried, res)
		}
		if res.Queue != o.queue || res.Phone != o.phone || res.Channel != o.channel || res.RequestID != "" {
			t.Errorf("task in %s: result %+v names another task's queue, phone, channel or send", o.queue, res)
		}
	}
	if _, res := w.waitState(t, info, asynq.TaskStateCompleted); res.Outcome != OutcomeSent || res.Queue != QueueCritical {
		t.Fatalf("first task after the collisions: %+v, want still sent from critical", res)
	}
	if n := len(sender.calls()); n != 1 {
		t.Fatalf("GenAuth calls = %d, want 1", n)
	}
	// One entry per task: the holder's and each colliding task's own.
	got := w.streamed(t, "dup")
	if len(got) != 3 || got[0].Outcome != OutcomeSent || got[1].Outcome != OutcomeInvalid || got[2].Outcome != OutcomeInvalid ||
		got[1].Queue != QueueDefault || got[2].Queue != QueueLow || got[1].Phone != "+86 139****9000" {
		t.Fatalf("stream entries %+v; want sent, then invalid from default and low", got)
	}
}

// A task whose final outcome is in the journal but whose asynq result was
// lost (a failover between the two writes) is not run again, and gets the
// recorded result back.
func TestWorkerRedeliveryRestoresRecordedResult(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	w := startWorker(t, &fakeSender{SendSMSFunc: func(context.Context, genauth.SendSMSRequest) (*genauth.Response, error) {
		calls.Add(1)
		return &genauth.Response{HTTPStatus: 200, StatusCode: 200, RequestID: "new"}, nil
	}})
	hist, err := history.New(history.Config{Client: w.rc})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	task, _, err := NewTask(Payload{Channel: "CHANNEL_LOGIN", PhoneNumber: "138 0013 8000", IdempotencyKey: "done-1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hist.Begin(ctx, "done-1", history.IdentityOf(QueueCritical, task.Payload()), time.Now()); err != nil {
		t.Fatal(err)
	}
	recorded := `{"outcome":"sent","final":true,"requestId":"earlier","attempt":1,"retried":0,"finishedAt":"2026-01-02T03:04:05Z","durationMs":3}`
	if err := hist.Record(ctx, "", history.Entry{TaskID: "done-1", Outcome: OutcomeSent, Final: true, UpdatedAt: time.Now(), Result: json.RawMessage(recorded)}, false); err != nil {
		t.Fatal(err)
	}
	info, err := w.client.Enqueue(task)
	if err != nil {
		t.Fatal(err)
	}
	_, res := w.waitState(t, info, asynq.TaskStateCompleted)
	if res.Outcome != OutcomeSent || res.RequestID != "earlier" {
		t.Fatalf("result %+v, want the recorded one", res)
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("GenAuth called %d times for a finished task", n)
	}
	if e := w.streamedOnce(t, "done-1", OutcomeSent); e.RequestID != "earlier" {
		t.Fatalf("stream entry %+v; want the recorded outcome", e)
	}
}
