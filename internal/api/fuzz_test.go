package api

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/tasks"
)

// countingEnqueuer counts the tasks actually queued.
type countingEnqueuer struct {
	next   *smsq.Client
	queued atomic.Int64
}

func (c *countingEnqueuer) Enqueue(ctx context.Context, t *asynq.Task, v tasks.Validated) (*asynq.TaskInfo, error) {
	info, err := c.next.Enqueue(ctx, t, v)
	if err == nil {
		c.queued.Add(1)
	}
	return info, err
}

// FuzzHandlers sends random bodies and headers to every route: never a
// 5xx, never a panic, every answer as the OpenAPI document says, no phone
// number in full, and a task queued only by an answer that says so.
func FuzzHandlers(f *testing.F) {
	good := `{"channel":"CHANNEL_LOGIN","phoneNumber":"+8613800138000"}`
	seeds := []struct {
		route            uint8
		ctype, auth, key string
		query, body      string
	}{
		{0, "application/json", "good", "", "", good},
		{0, "application/json", "good", `"k-1"`, "", good},
		{0, "application/json", "good", "k-1", "", `{"channel":"CHANNEL_REGISTER","phoneNumber":"+8613800138000"}`},
		{0, "application/json", "good", "", "wait=1ms", `{"channel":"CHANNEL_LOGIN","phoneNumber":"138 0013 8000","phoneCountryCode":"+86","lang":"en-US","sendWithin":"2m","delay":"1s","queue":"low"}`},
		{0, "application/json", "bad", "", "", good},
		{0, "text/plain", "good", "", "", good},
		{0, "application/json; charset=utf-8", "good", "", "", `{"channel":null,"phoneNumber":13800138000}`},
		{0, "application/json", "good", "", "", `{"channel":"CHANNEL_LOGIN","phoneNumber":"+8613800138000","sendBy":"2099-01-01T00:00:00Z","onHeld":"defer","clientIp":"::1"}`},
		{1, "application/jsonl", "good", "", "", good + "\n\n" + `{"channel":"X"}` + "\nnot json\n" + `{"channel":"CHANNEL_LOGIN","phoneNumber":"+8613800138000","idempotencyKey":"b-1"}`},
		{1, "application/x-ndjson", "good", "", "", "\n"},
		{2, "", "good", "", "", ""},
		{2, "", "good", "", "wait=1ms", ""},
		{3, "", "none", "", "", ""},
		{4, "application/json", "good", "", "", "[]"},
		{5, "application/json", "good", "", "", `{"phoneNumber":"+8613800138000","channel":"CHANNEL_LOGIN"}`},
		{5, "application/json", "good", "", "", `{"phoneNumber":"138 0013 8000","phoneCountryCode":"+86","channel":"c613800138000"}`},
	}
	for _, s := range seeds {
		f.Add(s.route, s.ctype, s.auth, s.key, s.query, []byte(s.body))
	}
	rs := redistest.Start(f)
	rdb := rs.Client()
	sc := smsq.NewClientFromRedis(rdb)
	f.Cleanup(func() { sc.Close() })
	enq := &countingEnqueuer{next: sc}
	pending := &fakeOutcomes{
		OutcomeFunc: func(_ context.Context, id string) (smsq.Outcome, error) {
			return smsq.Outcome{TaskID: id, State: smsq.StatePending}, nil
		},
		WaitFunc: func(_ context.Context, id string) (smsq.Outcome, error) {
			return smsq.Outcome{TaskID: id, State: smsq.StatePending}, nil
		},
	}
	api, err := New(Config{Enqueuer: enq, Outcomes: pending, Verifier: sc, Redis: rdb, Keys: testKeys(f), Registerer: prometheus.NewRegistry()})
	if err != nil {
		f.Fatal(err)
	}
	rt := router(f)
	paths := []string{"/v1/sms", "/v1/sms/batch", "/v1/sms/k-1", "/v1/openapi.json", "/v1/sms/", "/v1/verifications"}
	f.Fuzz(func(t *testing.T, route uint8, ctype, auth, key, query string, body []byte) {
		method := http.MethodPost
		path := paths[int(route)%len(paths)]
		if route%len8(paths) == 2 || route%len8(paths) == 3 {
			method = http.MethodGet
		}
		if route >= 128 {
			method = http.MethodPut
		}
		target := path
		if query != "" {
			target += "?" + query
		}
		req, err := http.NewRequest(method, "http://api.test"+target, bytes.NewReader(body))
		if err != nil {
			return // not a request a client can send
		}
		switch auth {
		case "good":
			req.Header.Set("Authorization", "Bearer "+billingSecret)
		case "none":
		default:
			req.Header.Set("Authorization", auth)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		before := enq.queued.Load()
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		queued := enq.queued.Load() - before
		out := rec.Body.Bytes()
		if rec.Code >= 500 {
			t.Fatalf("%s %s: %d %s", method, target, rec.Code, out)
		}
		if err := validateExchange(rt, req, rec.Code, rec.Header(), out); err != nil {
			t.Fatalf("%s %s → %d: not as documented: %v\n%s", method, target, rec.Code, err, out)
		}
		if strings.Contains(string(out), "13800138000") {
			t.Fatalf("the answer holds the phone number: %s", out)
		}
		switch {
		case path == "/v1/sms/batch" && rec.Code == http.StatusOK:
			if n := int64(strings.Count(string(out), `"status":"enqueued"`)); n != queued {
				t.Fatalf("batch reported %d enqueued, %d queued:\n%s", n, queued, out)
			}
		case path == "/v1/verifications":
			// A report queues nothing, whatever it answers.
			if queued != 0 {
				t.Fatalf("a verification report queued %d tasks: %s", queued, out)
			}
		case rec.Code == http.StatusAccepted && rec.Header().Get("Idempotent-Replayed") == "":
			if queued != 1 {
				t.Fatalf("202 with %d tasks queued", queued)
			}
		default:
			if queued != 0 {
				t.Fatalf("%d answered, yet %d tasks queued: %s", rec.Code, queued, out)
			}
		}
	})
}

func len8(s []string) uint8 { return uint8(len(s)) }
