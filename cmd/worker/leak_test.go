package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/smsq/smsq/internal/phone"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/tasks"
)

// echoGenAuth answers every send-sms as GenAuth does for a refused number,
// quoting the number back in its message.
func echoGenAuth(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			PhoneNumber      string `json:"phoneNumber"`
			PhoneCountryCode string `json:"phoneCountryCode"`
		}
		body, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(body, &req)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"statusCode":400,"apiCode":12004,"message":"phone %s%s is invalid","requestId":"80662045-af6a-419f-b0a2-17213814b4c5"}`,
			req.PhoneCountryCode, req.PhoneNumber)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestEndToEndNoPhoneInAnyForm sends, as a raw producer could, numbers in
// every form libphonenumber accepts, under a key in capitals, in a task ID
// and in a queue name, to a GenAuth that echoes the number, and checks that
// neither the worker's log, the recorded results nor the web UI shows any
// of them in full. It reports the count of leaks it finds.
func TestEndToEndNoPhoneInAnyForm(t *testing.T) {
	srv := redistest.Start(t)
	const user, pass = "ops", "correct horse"
	w, logs := startWorker(t, map[string]string{
		"REDIS_URL": srv.URL(), "GENAUTH_APP_HOST": echoGenAuth(t).URL, "GENAUTH_APP_ID": "app",
		"SMSQ_HTTP_ADDR": "127.0.0.1:0", "SMSQ_UI_USER": user, "SMSQ_UI_PASSWORD": pass,
		"SMSQ_POLL_INTERVAL": "50ms", "SMSQ_LOG_FORMAT": "json",
	})
	rdb := srv.Client()
	raw := asynq.NewClientFromRedisClient(rdb)
	ins := asynq.NewInspectorFromRedisClient(rdb)
	sent := []struct{ id, payload string }{
		{"t-invalid-fullwidth", `{"channel":"CHANNEL_LOGON","phoneNumber":"１３８００１３８０２８"}`},
		{"t-invalid-swapped", `{"channel":"١٣٨٠٠١٣٨٠٢٩","phoneNumber":"CHANNEL_LOGIN"}`},
		{"t-fullwidth", `{"channel":"CHANNEL_LOGIN","phoneNumber":"１３８００１３８０２０"}`},
		{"t-arabic", `{"channel":"CHANNEL_LOGIN","phoneNumber":"١٣٨٠٠١٣٨٠٣٢"}`},
		{"t-slashes", `{"channel":"CHANNEL_LOGIN","phoneNumber":"138/0013/8021"}`},
		{"t-tilde", `{"channel":"CHANNEL_LOGIN","phoneNumber":"[138]0013 8027"}`},
		{"t-capitals", `{"CHANNEL":"CHANNEL_LOGIN","PHONENUMBER":"13800138022"}`},
		{"login_13800138023_1", `{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138025"}`},
	}
	numbers := []string{"13800138020", "13800138032", "13800138021", "13800138027", "13800138022", "13800138023", "13800138025", "13800138040", "13800138026", "13800138028", "13800138029"}
	var results []string
	for _, s := range sent {
		info, err := raw.Enqueue(asynq.NewTask(tasks.TypeSendSMS, []byte(s.payload)), asynq.TaskID(s.id), asynq.Queue(tasks.QueueCritical), asynq.Retention(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		_, r := waitFinal(t, ins, info.Queue, info.ID)
		if want := tasks.OutcomeFailed; strings.HasPrefix(s.id, "t-invalid") && r.Outcome != tasks.OutcomeInvalid || !strings.HasPrefix(s.id, "t-invalid") && r.Outcome != want {
			t.Errorf("task %s: outcome %s, want failed (GenAuth refused it)", s.id, r.Outcome)
		}
		b, _ := json.Marshal(r)
		results = append(results, string(b))
	}
	// A queue no worker serves, named with a phone: the UI still lists it.
	if _, err := raw.Enqueue(asynq.NewTask(tasks.TypeSendSMS, []byte(`{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138026"}`)),
		asynq.Queue("13800138040")); err != nil {
		t.Fatal(err)
	}

	base := "http://" + w.web.Addr() + "/monitoring/api"
	shown := map[string]string{"log": logs.String(), "results": strings.Join(results, "\n")}
	for _, path := range []string{"/queues", "/queues/critical/archived_tasks", "/queues/critical/completed_tasks",
		"/queues/13800138040/pending_tasks", "/queues/critical/tasks/login_13800138023_1"} {
		code, body := get(t, base+path, user, pass)
		if code != http.StatusOK {
			t.Errorf("GET %s = %d\n%.300s", path, code, body)
		}
		shown["UI "+path] = body
	}
	if !strings.Contains(shown["UI /queues/critical/archived_tasks"], "80662045-af6a-419f-b0a2-17213814b4c5") {
		t.Errorf("the UI garbles GenAuth's requestId:\n%.2000s", shown["UI /queues/critical/archived_tasks"])
	}
	leaks := 0
	for where, text := range shown {
		d := phone.Digits(text)
		for _, n := range numbers {
			if strings.Contains(d, n) {
				leaks++
				t.Errorf("%s shows %s in full", where, n)
				for _, l := range strings.Split(text, "\n") {
					if strings.Contains(phone.Digits(l), n) {
						t.Logf("  %s", strings.ReplaceAll(l, n, "<PHONE>"))
					}
				}
			}
		}
	}
	t.Logf("leaks: %d (sources %d, numbers %d)", leaks, len(shown), len(numbers))
}
