package tasks

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/logging"
	"github.com/smsq/smsq/internal/redistest"
)

// GenAuth does not document how it answers a second send inside its
// minute. These tests run each shape the answer could take (the fake's
// TooFrequent option) end to end: asynq, the handler, the real stores on
// a real Redis, and the GenAuth client calling the fake over HTTP.

// ruleRig is a worker whose GenAuth answers the one-minute rule in one
// shape.
type ruleRig struct {
	fake   *genauthtest.Server
	client *asynq.Client
	insp   *asynq.Inspector
}

// startRuleRig starts the rig. overrides is an SMSQ_CLASSIFY value;
// window is smsq's reservation window; timeout is the GenAuth client's.
func startRuleRig(t *testing.T, shape genauthtest.TooFrequent, overrides string, window, timeout time.Duration) *ruleRig {
	t.Helper()
	srv := redistest.Start(t)
	rc := srv.Client()
	fake := genauthtest.NewServer(genauthtest.Options{TooFrequent: shape})
	t.Cleanup(fake.Close)
	client, err := genauth.New(genauth.Config{AppHost: fake.URL(), AppID: fake.AppID(), Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	classifier, err := genauth.ParseOverrides(overrides)
	if err != nil {
		t.Fatalf("SMSQ_CLASSIFY %q: %v", overrides, err)
	}
	resv, err := dedupe.New(dedupe.Config{Client: rc, Window: window})
	if err != nil {
		t.Fatal(err)
	}
	hist, err := history.New(history.Config{Client: rc})
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(HandlerConfig{Sender: client, Reservations: resv, Journal: hist, Classifier: classifier})
	if err != nil {
		t.Fatal(err)
	}
	cfg := ServerConfig(2, 20*time.Millisecond, &logging.Asynq{Log: zerolog.Nop()})
	cfg.DelayedTaskCheckInterval, cfg.LogLevel = 100*time.Millisecond, asynq.FatalLevel
	opt := asynq.RedisClientOpt{Addr: srv.Addr()}
	asrv := asynq.NewServer(opt, cfg)
	if err := asrv.Start(h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(asrv.Shutdown)
	r := &ruleRig{fake: fake, client: asynq.NewClient(opt), insp: asynq.NewInspector(opt)}
	t.Cleanup(func() { _ = r.client.Close(); _ = r.insp.Close() })
	return r
}

// enqueue queues a login code for +86 138 0013 8000.
func (r *ruleRig) enqueue(t *testing.T, key string) *asynq.TaskInfo {
	t.Helper()
	task, _, err := NewTask(Payload{Channel: "CHANNEL_LOGIN", PhoneNumber: "138 0013 8000", IdempotencyKey: key}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	info, err := r.client.Enqueue(task)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// sendElsewhere sends to the same pair as another system would, outside
// smsq, so that smsq's own call meets GenAuth's rule.
func (r *ruleRig) sendElsewhere(t *testing.T) {
	t.Helper()
	c, err := genauth.New(genauth.Config{AppHost: r.fake.URL(), AppID: r.fake.AppID()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SendSMS(context.Background(), genauth.SendSMSRequest{
		Channel: genauth.ChannelLogin, PhoneNumber: "13800138000", PhoneCountryCode: "+86",
	}); err != nil {
		t.Fatalf("send from elsewhere: %v", err)
	}
}

// waitResult polls until the task's result satisfies done, and returns
// its info and result.
func (r *ruleRig) waitResult(t *testing.T, info *asynq.TaskInfo, what string, done func(*asynq.TaskInfo, Result) bool) (*asynq.TaskInfo, Result) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, err := r.insp.GetTaskInfo(info.Queue, info.ID)
		if err == nil && len(got.Result) > 0 {
			var res Result
			if err := json.Unmarshal(got.Result, &res); err != nil {
				t.Fatalf("result %q: %v", got.Result, err)
			}
			if done(got, res) {
				return got, res
			}
			if time.Now().After(deadline) {
				t.Fatalf("task %s: state %v, result %s; want %s", info.ID, got.State, got.Result, what)
			}
		} else if time.Now().After(deadline) {
			t.Fatalf("task %s: %v, no result; want %s", info.ID, err, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkOneSend fails unless GenAuth sent exactly one SMS to the pair.
func (r *ruleRig) checkOneSend(t *testing.T) {
	t.Helper()
	if sent := r.fake.Sent(); len(sent) != 1 {
		t.Fatalf("GenAuth sent %d SMS to the pair inside its window, want 1", len(sent))
	}
}

func final(info *asynq.TaskInfo, res Result) bool {
	return res.Final && (info.State == asynq.TaskStateCompleted || info.State == asynq.TaskStateArchived)
}

// TestMinuteRuleShapes: another system sent to the pair a moment ago, and
// smsq's call meets GenAuth's refusal in each shape. No shape makes a
// second SMS; with the matching override none ends as a failure; and the
// result names the rule that decided.
func TestMinuteRuleShapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		shape     genauthtest.TooFrequent
		overrides string
		want      string // outcome of the first attempt
		wantRule  string
	}{
		{"422 by default", genauthtest.TooFrequent422, "", OutcomeDeduplicated, "default statusCode:422=duplicate"},
		{"429 by default", genauthtest.TooFrequent429, "", OutcomeThrottled, "default statusCode:429=throttle"},
		{"429 with override", genauthtest.TooFrequent429, "statusCode:429=duplicate", OutcomeDeduplicated, "override statusCode:429=duplicate"},
		{"400 apiCode by default", genauthtest.TooFrequent400, "", OutcomeFailed, "default statusCode:400=permanent"},
		{"400 apiCode with override", genauthtest.TooFrequent400, "apiCode:40001=duplicate", OutcomeDeduplicated, "override apiCode:40001=duplicate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := startRuleRig(t, tt.shape, tt.overrides, time.Minute, 5*time.Second)
			r.sendElsewhere(t)
			info := r.enqueue(t, "rule-task")
			got, res := r.waitResult(t, info, tt.want, func(info *asynq.TaskInfo, res Result) bool {
				return res.Outcome != "" && (!res.Final || final(info, res))
			})
			if res.Outcome != tt.want || res.Rule != tt.wantRule {
				t.Fatalf("first attempt: outcome %q rule %q (%+v), want %q by %q", res.Outcome, res.Rule, res, tt.want, tt.wantRule)
			}
			switch tt.want {
			case OutcomeDeduplicated:
				if !res.Final || res.Holder != "genauth" || got.State != asynq.TaskStateCompleted {
					t.Fatalf("result %+v state %v, want a completed deduplicated task held by genauth", res, got.State)
				}
			case OutcomeThrottled:
				// Not a failure, so no retry spent: it runs again and meets
				// the rule again while GenAuth's window lasts.
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := r.fake.WaitForCalls(ctx, 3); err != nil {
					t.Fatal(err)
				}
				got, res = r.waitResult(t, info, "a second throttled attempt", func(_ *asynq.TaskInfo, res Result) bool { return res.Attempt >= 2 })
				if res.Outcome != OutcomeThrottled || got.State == asynq.TaskStateArchived || got.Retried != 0 {
					t.Fatalf("second attempt %+v, state %v, retried %d: want throttled again, no retry spent", res, got.State, got.Retried)
				}
			case OutcomeFailed:
				// The false failure the override exists for: the code the
				// other system sent is valid, yet the task reads failed.
				if !res.Final || got.State != asynq.TaskStateArchived || res.APICode != genauthtest.APICodeTooFrequent400 {
					t.Fatalf("result %+v state %v, want archived failed with the apiCode to override", res, got.State)
				}
			}
			r.checkOneSend(t)
		})
	}
}

// TestMinuteRuleConfirmsLostAnswer: smsq's own first call timed out after
// GenAuth sent, and the retry after smsq's window meets GenAuth's rule
// (its window is longer here, as a clock skew would make it). With the
// shape's override the task ends as sent, the earlier attempt confirmed,
// never as failed, and no second SMS goes out.
func TestMinuteRuleConfirmsLostAnswer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		shape     genauthtest.TooFrequent
		overrides string
		wantRule  string
	}{
		{"422 by default", genauthtest.TooFrequent422, "", "default statusCode:422=duplicate"},
		{"429 with override", genauthtest.TooFrequent429, "statusCode:429=duplicate", "override statusCode:429=duplicate"},
		{"400 apiCode with override", genauthtest.TooFrequent400, "apiCode:40001=duplicate", "override apiCode:40001=duplicate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := startRuleRig(t, tt.shape, tt.overrides, time.Second, 300*time.Millisecond)
			r.fake.Inject(genauthtest.Fault{Kind: genauthtest.FaultTimeout, Latency: 3 * time.Second})
			info := r.enqueue(t, "lost-answer")
			got, res := r.waitResult(t, info, "a final outcome", final)
			if res.Outcome != OutcomeSent || res.Rule != tt.wantRule || res.UnknownAttempts != 1 || res.Attempt != 2 || got.State != asynq.TaskStateCompleted {
				t.Fatalf("result %+v state %v: want sent on attempt 2, confirmed by %q after one unknown attempt", res, got.State, tt.wantRule)
			}
			if n := r.fake.Calls(); n != 2 {
				t.Fatalf("GenAuth calls = %d, want 2", n)
			}
			r.checkOneSend(t)
		})
	}
}
