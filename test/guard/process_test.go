package guard_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/tasks"
	"github.com/smsq/smsq/internal/workertest"
)

// TestLimitAcrossProcesses floods one phone on every channel and a range (another one)
// with tasks served by three worker processes under SMSQ_LIMIT_PHONE=3/h
// and SMSQ_LIMIT_PREFIX=8/h: GenAuth gets exactly three codes for the
// phone and eight for the range, every task ends with a recorded final
// outcome, and the outcomes add up with blocked among them.
func TestLimitAcrossProcesses(t *testing.T) {
	t.Parallel()
	workertest.SilenceRedis()
	srv := redistest.Start(t)
	rdb := srv.Client()
	defer rdb.Close()
	fake := genauthtest.NewServer(genauthtest.Options{})
	t.Cleanup(fake.Close)
	g := workertest.NewGroup(t, workertest.Binary(t, false))
	env := append(workertest.Env(srv.URL(), fake, time.Minute),
		"SMSQ_GUARD_MODE=enforce", "SMSQ_LIMIT_PHONE=3/h", "SMSQ_LIMIT_PREFIX=8/h", "SMSQ_LIMIT_IP=off")
	for range 3 {
		g.Start(t, env)
	}
	t.Cleanup(func() {
		g.Stop()
		if t.Failed() {
			g.DumpLogs(t, 200)
		}
	})
	for _, p := range g.List() {
		p.WaitLog(t, "worker started", 30*time.Second)
	}

	// Three tasks per channel for the victim (33), and one each for 30
	// numbers of another range, all enqueued before the workers can
	// drain them: the limit must hold under concurrency.
	c := smsq.NewClientFromRedis(rdb)
	ctx := context.Background()
	const victim = "+8613800138000"
	var ids []string
	send := func(ch genauth.Channel, number string, n int) {
		r, err := c.Send(ctx, smsq.Request{Channel: string(ch), Phone: number}, smsq.WithIdempotencyKey(fmt.Sprintf("t-%s-%s-%d", ch, number[len(number)-4:], n)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.TaskID)
	}
	for n := range 3 {
		for _, ch := range genauth.Channels() {
			send(ch, victim, n)
		}
	}
	for i := range 30 {
		send(genauth.ChannelLogin, fmt.Sprintf("+861390013%04d", 9000+i), 0)
	}
	hist, err := history.New(history.Config{Client: rdb})
	if err != nil {
		t.Fatal(err)
	}
	ins := asynq.NewInspectorFromRedisClient(rdb)
	var st map[string]workertest.Task
	workertest.WaitFor(t, 90*time.Second, func() (bool, string) {
		st, err = workertest.States(ctx, ins, hist, ids...)
		if err != nil {
			return false, err.Error()
		}
		open := 0
		for _, id := range ids {
			if s, ok := st[id]; !ok || !workertest.IsDone(s.State) {
				open++
			}
		}
		return open == 0, fmt.Sprintf("%d of %d tasks open", open, len(ids))
	})

	counts := map[string]int{}
	for _, id := range ids {
		s := st[id]
		if !s.HasRes || !s.Result.Final || !tasks.IsFinal(s.Result.Outcome) {
			t.Errorf("task %s: %s without a final result (%+v)", id, s.State, s.Result)
			continue
		}
		if s.Result.Outcome == tasks.OutcomeBlocked && (s.State != "completed" || s.Retried != 0 || s.Result.Rule == "" || s.Result.LiftsAt.IsZero()) {
			t.Errorf("blocked task %s: state %s, retried %d, result %+v; want completed at once with rule and liftsAt", id, s.State, s.Retried, s.Result)
		}
		counts[s.Result.Outcome]++
	}
	sum := 0
	for _, o := range tasks.FinalOutcomes {
		sum += counts[o]
	}
	if sum != len(ids) {
		t.Errorf("outcomes %v add up to %d, want %d", counts, sum, len(ids))
	}
	sent := map[string]int{}
	for _, r := range fake.Sent() {
		sent[r.PhoneCountryCode+r.PhoneNumber]++
	}
	rangeSends := 0
	for number, n := range sent {
		if strings.HasPrefix(number, "+861390013") {
			rangeSends += n
		}
	}
	if sent[victim] != 3 || rangeSends != 8 || counts[tasks.OutcomeSent] != 11 {
		t.Errorf("GenAuth got %d codes for the victim and %d for its range (%d sent outcomes); want 3, 8 and 11", sent[victim], rangeSends, counts[tasks.OutcomeSent])
	}
	if counts[tasks.OutcomeBlocked] == 0 {
		t.Errorf("no task blocked: %v", counts)
	}
	t.Logf("outcomes %v", counts)
}
