package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/guard"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/logging"
	"github.com/smsq/smsq/internal/phone"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/tasks"
)

// pipeline is a real Redis with a worker's handler serving it, calling a
// fake GenAuth: the data why reads is written by the code that writes it
// in production.
type pipeline struct {
	redis *redistest.Server
	fake  *genauthtest.Server
	ins   *asynq.Inspector
}

func startPipeline(t *testing.T) *pipeline {
	t.Helper()
	return startPipelineWith(t, dedupe.Hasher{})
}

// startPipelineWith is startPipeline with a worker whose reservations and
// history use hasher.
func startPipelineWith(t *testing.T, hasher dedupe.Hasher) *pipeline {
	t.Helper()
	return startGuardedPipeline(t, hasher, nil)
}

// startGuardedPipeline is startPipelineWith with an abuse guard of gs,
// published as a worker publishes it; nil runs without one.
func startGuardedPipeline(t *testing.T, hasher dedupe.Hasher, gs *guard.Settings) *pipeline {
	t.Helper()
	srv := redistest.Start(t)
	rdb := srv.Client()
	fake := genauthtest.NewServer(genauthtest.Options{})
	t.Cleanup(fake.Close)
	client, err := genauth.New(genauth.Config{AppHost: fake.URL(), AppID: fake.AppID()})
	if err != nil {
		t.Fatalf("genauth.New: %v", err)
	}
	resv, err := dedupe.New(dedupe.Config{Client: rdb, Hasher: hasher})
	if err != nil {
		t.Fatalf("dedupe.New: %v", err)
	}
	hist, err := history.New(history.Config{Client: rdb})
	if err != nil {
		t.Fatalf("history.New: %v", err)
	}
	var abuse tasks.Guard
	if gs != nil {
		cfg, err := gs.Config(nil)
		if err != nil {
			t.Fatal(err)
		}
		g, err := guard.New(cfg, guard.Deps{Client: rdb, Hasher: resv})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.Publish(context.Background()); err != nil {
			t.Fatal(err)
		}
		abuse = g
	}
	h, err := tasks.NewHandler(tasks.HandlerConfig{Sender: client, Reservations: resv, Journal: hist, Guard: abuse})
	if err != nil {
		t.Fatalf("NewHandler: %v", err)
	}
	asrv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency:       1,
		Queues:            tasks.DefaultQueues(),
		TaskCheckInterval: 20 * time.Millisecond,
		RetryDelayFunc:    tasks.RetryDelay,
		IsFailure:         tasks.IsFailure,
		Logger:            &logging.Asynq{Log: zerolog.Nop()},
		LogLevel:          asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	mux.Handle(tasks.TypeSendSMS, h)
	if err := asrv.Start(mux); err != nil {
		t.Fatalf("asynq Start: %v", err)
	}
	t.Cleanup(asrv.Shutdown)
	return &pipeline{redis: srv, fake: fake, ins: asynq.NewInspectorFromRedisClient(rdb)}
}

// send queues one code with the enqueue command and waits until the task
// is completed or archived.
func (p *pipeline) send(t *testing.T, key, channel, phone string) *asynq.TaskInfo {
	t.Helper()
	r := runCmd(t, p.redis.URL(), "", "--channel", channel, "--phone", phone, "--idempotency-key", key)
	if r.code != 0 {
		t.Fatalf("enqueue %s: exit %d: %v", key, r.code, r.err)
	}
	queue := tasks.QueueFor(genauth.Channel(channel))
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := p.ins.GetTaskInfo(queue, key)
		if err == nil && (info.State == asynq.TaskStateCompleted || info.State == asynq.TaskStateArchived) && len(info.Result) > 0 {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s did not finish: %v %+v", key, err, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWhy(t *testing.T) {
	p := startPipeline(t)
	sent := p.send(t, "why-1", "CHANNEL_LOGIN", "+8613800138000")
	p.send(t, "why-2", "CHANNEL_LOGIN", "138 0013 8000")
	p.fake.Inject(genauthtest.Fault{Kind: genauthtest.FaultBodyStatus, StatusCode: 400, APICode: 12004})
	failed := p.send(t, "why-3", "CHANNEL_REGISTER", "+8613800138000")
	var sentRes, failedRes tasks.Result
	decodeJSON(t, string(sent.Result), &sentRes)
	decodeJSON(t, string(failed.Result), &failedRes)
	if sentRes.RequestID == "" || failedRes.RequestID == "" {
		t.Fatalf("results carry no requestId: %s / %s", sent.Result, failed.Result)
	}
	url := p.redis.URL()

	t.Run("phone text", func(t *testing.T) {
		r := runCmd(t, url, "", "why", "--phone", "13800138000")
		if r.code != 0 {
			t.Fatalf("exit %d: %v", r.code, r.err)
		}
		for _, want := range []string{
			"phone +86 138****8000",
			"CHANNEL_LOGIN  sent  task why-1  since ",
			"none on the other 10 channels",
			"failed (final)  task why-3  CHANNEL_REGISTER  queue default  attempt 1",
			"genauth: HTTP 200, statusCode 400, apiCode 12004, message \"Invalid argument\"",
			"rule: default statusCode:400=permanent",
			"requestId " + failedRes.RequestID,
			"deduplicated (final)  task why-2  CHANNEL_LOGIN  queue critical",
			"reservation: held by task why-1",
			"sent (final)  task why-1  CHANNEL_LOGIN",
			"genauth: HTTP 200, statusCode 200",
			"rule: default statusCode:200=sent",
			"requestId " + sentRes.RequestID,
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("output lacks %q:\n%s", want, r.stdout)
			}
		}
		// Newest first.
		if i, j := strings.Index(r.stdout, "task why-3"), strings.Index(r.stdout, "sent (final)  task why-1"); i > j {
			t.Errorf("why-3 listed after why-1:\n%s", r.stdout)
		}
		if strings.Contains(r.stdout, "13800138000") {
			t.Fatalf("output shows the full number:\n%s", r.stdout)
		}
	})

	t.Run("phone json one channel", func(t *testing.T) {
		r := runCmd(t, url, "", "why", "--phone", "+8613800138000", "--channel", "channel_register", "--json")
		if r.code != 0 {
			t.Fatalf("exit %d: %v", r.code, r.err)
		}
		var rep phoneReport
		decodeJSON(t, r.stdout, &rep)
		if rep.Phone != "+86 138****8000" || len(rep.Channels) != 1 || len(rep.Reservations) != 0 {
			t.Fatalf("report %+v: want masked phone, one channel, no reservation (a permanent failure releases it)", rep)
		}
		if len(rep.Recent) != 1 {
			t.Fatalf("recent = %+v, want only why-3", rep.Recent)
		}
		got := rep.Recent[0]
		if got.TaskID != "why-3" || got.Outcome != "failed" || !got.Final || got.StatusCode != 400 || got.APICode != 12004 || got.RequestID != failedRes.RequestID {
			t.Fatalf("recent[0] = %+v", got)
		}
		if strings.Contains(r.stdout, "13800138000") {
			t.Fatalf("output shows the full number:\n%s", r.stdout)
		}
	})

	t.Run("task json", func(t *testing.T) {
		r := runCmd(t, url, "", "why", "--task", "why-1", "--json")
		if r.code != 0 {
			t.Fatalf("exit %d: %v", r.code, r.err)
		}
		var rep taskReport
		decodeJSON(t, r.stdout, &rep)
		if rep.History == nil || rep.History.Outcome != "sent" || rep.History.RequestID != sentRes.RequestID {
			t.Fatalf("history = %+v, want sent with requestId %s", rep.History, sentRes.RequestID)
		}
		if rep.Asynq == nil || rep.Asynq.State != "completed" || rep.Asynq.Queue != "critical" || rep.Asynq.CompletedAt.IsZero() {
			t.Fatalf("asynq = %+v, want completed in critical", rep.Asynq)
		}
		var res tasks.Result
		decodeJSON(t, string(rep.Asynq.Result), &res)
		if res.Outcome != "sent" || res.Phone != "+86 138****8000" {
			t.Fatalf("asynq result = %+v", res)
		}
	})

	t.Run("task text archived", func(t *testing.T) {
		r := runCmd(t, url, "", "why", "--task", "why-3")
		if r.code != 0 {
			t.Fatalf("exit %d: %v", r.code, r.err)
		}
		for _, want := range []string{
			"task why-3", "phone +86 138****8000", "failed (final)",
			"asynq: queue default, state archived, retried 0 of " + strconv.Itoa(tasks.DefaultMaxRetry), "last error: ",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("output lacks %q:\n%s", want, r.stdout)
			}
		}
		if strings.Contains(r.stdout, "13800138000") {
			t.Fatalf("output shows the full number:\n%s", r.stdout)
		}
	})

	t.Run("unknown task", func(t *testing.T) {
		r := runCmd(t, url, "", "why", "--task", "nope", "--queue", "low")
		if r.code != 1 || !strings.Contains(errText(r.err), `task "nope": no history`) {
			t.Fatalf("exit %d, error %v; want 1 and no history", r.code, r.err)
		}
	})

	t.Run("no tasks for phone", func(t *testing.T) {
		r := runCmd(t, url, "", "why", "--phone", "+8613800138999")
		if r.code != 0 || !strings.Contains(r.stdout, "recent tasks: none kept") || !strings.Contains(r.stdout, "none on any of the 11 channels") {
			t.Fatalf("exit %d, error %v:\n%s", r.code, r.err, r.stdout)
		}
	})
}

func TestWhyUsage(t *testing.T) {
	t.Parallel()
	url := closedURL(t) // usage errors come before any Redis contact
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"why"}, "give either --phone or --task"},
		{[]string{"why", "--phone", "+8613800138000", "--task", "x"}, "give either --phone or --task"},
		{[]string{"why", "--phone", "12345"}, "--phone: invalid phone number"},
		{[]string{"why", "--phone", "+8613800138000", "--channel", "nope"}, "--channel"},
		{[]string{"why", "--phone", "+8613800138000", "--queue", "low"}, "--queue goes with --task"},
		{[]string{"why", "--task", "x", "--channel", "CHANNEL_LOGIN"}, "go with --phone"},
		{[]string{"why", "--task", "x", "--limit", "0"}, "--limit 0"},
	}
	for _, tt := range tests {
		r := runCmd(t, url, "", tt.args...)
		if r.code != 2 || !strings.Contains(errText(r.err), tt.want) {
			t.Fatalf("%v: exit %d, error %v; want 2 and %q", tt.args, r.code, r.err, tt.want)
		}
	}
}

func TestWhyRedisDown(t *testing.T) {
	t.Parallel()
	start := time.Now()
	r := runCmd(t, closedURL(t), "", "why", "--task", "x", "--timeout", "2s")
	if r.code != 1 || !strings.Contains(errText(r.err), "cannot reach Redis") {
		t.Fatalf("exit %d, error %v; want 1 and cannot reach Redis", r.code, r.err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %s to give up", d)
	}
}

// A raw producer's task reusing an ID in another queue shows its own entry:
// under its own phone, and apart from the ID's first task under --task.
func TestWhyCollidingTask(t *testing.T) {
	p := startPipeline(t)
	p.send(t, "why-c", "CHANNEL_LOGIN", "13800138000")
	raw := asynq.NewClientFromRedisClient(p.redis.Client())
	info, err := raw.Enqueue(asynq.NewTask(tasks.TypeSendSMS, []byte(`{"channel":"CHANNEL_REGISTER","phoneNumber":"13900139000"}`),
		asynq.TaskID("why-c"), asynq.Queue("low"), asynq.Retention(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := p.ins.GetTaskInfo(info.Queue, info.ID)
		if err == nil && got.State == asynq.TaskStateArchived {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("colliding task did not finish: %+v, %v", got, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r := runCmd(t, p.redis.URL(), "", "why", "--phone", "13900139000", "--json")
	var rep phoneReport
	decodeJSON(t, r.stdout, &rep)
	if len(rep.Recent) != 1 || rep.Recent[0].TaskID != "why-c" || rep.Recent[0].Outcome != tasks.OutcomeInvalid ||
		rep.Recent[0].Queue != "low" || rep.Recent[0].Phone != "+86 139****9000" || !strings.Contains(rep.Recent[0].Reason, "already names another task") {
		t.Fatalf("why --phone of the colliding task: %+v", rep.Recent)
	}
	r = runCmd(t, p.redis.URL(), "", "why", "--phone", "13800138000", "--json")
	rep = phoneReport{}
	decodeJSON(t, r.stdout, &rep)
	if len(rep.Recent) != 1 || rep.Recent[0].Outcome != tasks.OutcomeSent || rep.Recent[0].Queue != "critical" {
		t.Fatalf("why --phone of the first task: %+v", rep.Recent)
	}
	r = runCmd(t, p.redis.URL(), "", "why", "--task", "why-c")
	for _, want := range []string{"sent (final)", "other tasks under this ID", "phone +86 139****9000", "invalid (final)", "queue low"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("why --task lacks %q:\n%s", want, r.stdout)
		}
	}
}

// TestWhyTaskInAnyQueue: a task stranded in a queue no worker serves, with
// no history yet, is found without --queue.
func TestWhyTaskInAnyQueue(t *testing.T) {
	srv := redistest.Start(t)
	raw := asynq.NewClientFromRedisClient(srv.Client())
	for i, q := range []string{"unserved", "Critical", "zz-other"} {
		if _, err := raw.Enqueue(asynq.NewTask(tasks.TypeSendSMS, []byte(`{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000"}`),
			asynq.TaskID("stranded-"+strconv.Itoa(i)), asynq.Queue(q))); err != nil {
			t.Fatal(err)
		}
	}
	r := runCmd(t, srv.URL(), "", "why", "--task", "stranded-1")
	if r.code != 0 || !strings.Contains(r.stdout, "asynq: queue Critical, state pending") {
		t.Fatalf("exit %d (%v):\n%s\nwant the task found in queue Critical", r.code, r.err, r.stdout)
	}
	r = runCmd(t, srv.URL(), "", "why", "--task", "stranded-9")
	if r.code == 0 {
		t.Fatalf("a task that is nowhere was found:\n%s", r.stdout)
	}
}

// TestWhyMasksWhatProducersWrote: task IDs, queue names, reasons, GenAuth
// messages and asynq's last error may hold a phone (a raw producer's ID,
// GenAuth echoing the number): why shows none in full, in either form,
// and keeps IDs without one readable.
func TestWhyMasksWhatProducersWrote(t *testing.T) {
	t.Parallel()
	v := taskView{TaskID: "login_13800138023_1", Queue: "13800138040", Reason: "phone １３８００１３８０２０ is invalid",
		Message: "phone 138/0013/8021 is invalid", RequestID: "80662045-af6a-419f-b0a2-17213814b4c5", Holder: "reg-13800138024"}
	r := &taskReport{TaskID: v.TaskID, History: &v, Others: []taskView{v}, Searched: []string{"13800138041"},
		Asynq: &asynqView{Queue: "13800138040", LastError: "genauth: phone ١٣٨٠٠١٣٨٠٣٢ is invalid",
			Result: []byte(`{"reason":"phone 13800138025","requestId":"80662045-af6a-419f-b0a2-17213814b4c5","sendBy":"2026-12-02T01:12:32.897Z"}`)}}
	r.mask()
	var text bytes.Buffer
	r.text(&text, time.Now())
	js, _ := json.Marshal(r)
	for _, out := range []string{text.String(), string(js)} {
		for _, n := range []string{"13800138023", "13800138040", "13800138020", "13800138021", "13800138024", "13800138041", "13800138032", "13800138025"} {
			if strings.Contains(phone.Digits(out), n) {
				t.Errorf("why shows %s:\n%s", n, out)
			}
		}
		if !strings.Contains(out, "80662045-af6a-419f-b0a2-17213814b4c5") || !strings.Contains(out, "2026-12-02T01:12:32.897Z") {
			t.Errorf("why garbles the requestId or a timestamp:\n%s", out)
		}
	}
}
