package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/tasks"
)

// TestEndToEndClientIPZonesAreInvalid: a raw producer's clientIp with an
// IPv6 zone (forging x-real-ip, or holding CR/LF that net/http refuses on
// every attempt) is archived once as invalid, and GenAuth is never called.
func TestEndToEndClientIPZonesAreInvalid(t *testing.T) {
	srv := redistest.Start(t)
	fake := genauthtest.NewServer(genauthtest.Options{})
	t.Cleanup(fake.Close)
	startWorker(t, map[string]string{
		"REDIS_URL": srv.URL(), "GENAUTH_APP_HOST": fake.URL(), "GENAUTH_APP_ID": fake.AppID(),
		"SMSQ_POLL_INTERVAL": "50ms", "SMSQ_HTTP_ADDR": "off",
	})
	rdb := srv.Client()
	raw := asynq.NewClientFromRedisClient(rdb)
	ins := asynq.NewInspectorFromRedisClient(rdb)
	// One phone each, so that a payload let through would be sent, not
	// deduplicated behind the first.
	for i, ip := range []string{`fe80::1%1.2.3.4, 6.6.6.6`, `fe80::1%\r\nX-Evil: 1`, `fe80::1%eth0`} {
		info, err := raw.Enqueue(asynq.NewTask(tasks.TypeSendSMS,
			[]byte(`{"channel":"CHANNEL_LOGIN","phoneNumber":"1380013800`+strconv.Itoa(i)+`","clientIp":"`+ip+`"}`)),
			asynq.Retention(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		got, r := waitFinal(t, ins, info.Queue, info.ID)
		if got.State != asynq.TaskStateArchived || got.Retried != 0 || r.Outcome != tasks.OutcomeInvalid || !strings.Contains(r.Reason, "clientIp") {
			t.Errorf("clientIp %q: state %v retried %d result %+v, want archived once as invalid naming clientIp", ip, got.State, got.Retried, r)
		}
	}
	if fake.Calls() != 0 {
		t.Errorf("GenAuth calls = %d, want 0", fake.Calls())
	}
}
