package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/tasks"
	"github.com/smsq/smsq/internal/workertest"
)

var (
	modelSeed = flag.Uint64("model.seed", 0, "seed of TestKeyModel (default: SMSQ_MODEL_SEED, else the time)")
	modelOps  = flag.Int("model.ops", 60, "enqueues per TestKeyModel run")
)

// modelOp is one random enqueue and what came of it.
type modelOp struct {
	path    string // send, cli, batch, raw-id, raw
	key     string // idempotency key or raw TaskID; "" for none
	channel string
	phone   string // national
	queue   string // as given; "" for the channel's
	// resolved queue, and what the model expects
	inQueue    string
	wantQueued bool
	// what happened
	queued bool
	id     string
	smsq   bool // through smsq's producers, which claim keys
}

// TestKeyModel is a randomized model-based test of "one idempotency key,
// one task": random enqueues through every producer path (smsq.Client.Send,
// the one-code command, enqueue batch, raw asynq with and without TaskID),
// keys reused across channels and queues, checked against a model of which
// must be refused; then two real worker processes drain the queues, and
// every accepted task must end with exactly one final outcome of its own
// (its channel, masked phone and queue), each ID must name exactly one task
// that ran, and the outcomes must add up. The seed is printed; rerun one
// with -model.seed=N (or SMSQ_MODEL_SEED=N), size with -model.ops.
func TestKeyModel(t *testing.T) {
	seed := *modelSeed
	if seed == 0 {
		if v, err := strconv.ParseUint(os.Getenv("SMSQ_MODEL_SEED"), 10, 64); err == nil {
			seed = v
		}
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -model.seed=%d), %d enqueues", seed, seed, *modelOps)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	srv := redistest.Start(t)
	rdb := srv.Client()
	url := srv.URL()
	client := smsq.NewClientFromRedis(rdb)
	raw := asynq.NewClientFromRedisClient(rdb)
	ctx := context.Background()

	keys := []string{"k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9", "k10"}
	channels := []string{"CHANNEL_LOGIN", "CHANNEL_REGISTER", "CHANNEL_RESET_PASSWORD"}
	queues := []string{"", "", tasks.QueueCritical, tasks.QueueDefault, tasks.QueueLow}
	paths := []string{"send", "cli", "batch", "raw-id", "raw"}
	pick := func(s []string) string { return s[rng.IntN(len(s))] }

	// The model: keys claimed by smsq's producers, and asynq's own (queue,
	// ID) uniqueness.
	claimed := map[string]bool{}
	inAsynq := map[string]bool{}
	predict := func(op *modelOp) {
		op.inQueue = op.queue
		if op.inQueue == "" {
			op.inQueue = tasks.QueueFor(genauth.Channel(op.channel))
		}
		qk := op.inQueue + "/" + op.key
		switch {
		case op.key == "":
			op.wantQueued = true
		case op.smsq:
			op.wantQueued = !claimed[op.key] && !inAsynq[qk]
			if op.wantQueued {
				claimed[op.key] = true
			}
		default:
			op.wantQueued = !inAsynq[qk]
		}
		if op.wantQueued && op.key != "" {
			inAsynq[qk] = true
		}
	}

	var ops []*modelOp
	for len(ops) < *modelOps {
		path := pick(paths)
		n := 1
		if path == "batch" {
			n = 1 + rng.IntN(3)
		}
		var group []*modelOp
		for range n {
			op := &modelOp{path: path, channel: pick(channels), phone: fmt.Sprintf("137%08d", 1+rng.IntN(8)), queue: pick(queues), smsq: path != "raw-id" && path != "raw"}
			if path != "raw" && rng.IntN(5) > 0 {
				op.key = pick(keys)
			}
			predict(op)
			group = append(group, op)
		}
		enqueue(t, ctx, url, client, raw, group)
		ops = append(ops, group...)
	}
	for i, op := range ops {
		if op.queued != op.wantQueued {
			t.Errorf("enqueue %d (%s, key %q, %s, queue %q): queued %v, model says %v", i, op.path, op.key, op.channel, op.queue, op.queued, op.wantQueued)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Workers drain everything.
	fake := genauthtest.NewServer(genauthtest.Options{})
	t.Cleanup(fake.Close)
	g := workertest.NewGroup(t, workertest.Binary(t, false))
	for range 2 {
		g.Start(t, workertest.Env(url, fake, time.Minute))
	}
	t.Cleanup(func() {
		g.Stop()
		if t.Failed() {
			g.DumpLogs(t, 20000)
		}
	})
	ins := asynq.NewInspectorFromRedisClient(rdb)
	results := map[*modelOp]tasks.Result{}
	workertest.WaitFor(t, 60*time.Second, func() (bool, string) {
		for _, op := range ops {
			if _, ok := results[op]; ok || !op.queued {
				continue
			}
			info, err := ins.GetTaskInfo(op.inQueue, op.id)
			if err != nil || !workertest.IsDone(strings.ToLower(info.State.String())) || len(info.Result) == 0 {
				return false, fmt.Sprintf("task %s in %s: %v %v", op.id, op.inQueue, info, err)
			}
			var r tasks.Result
			if err := json.Unmarshal(info.Result, &r); err != nil {
				return false, err.Error()
			}
			results[op] = r
		}
		return true, ""
	})

	finals := map[string]int{}
	ran := map[string][]*modelOp{} // per ID, the tasks not refused as a collision
	sentPairs := map[string]int{}
	accepted := 0
	for _, op := range ops {
		if !op.queued {
			continue
		}
		accepted++
		r := results[op]
		_, v, err := smsq.Prepare(smsq.Request{Channel: op.channel, Phone: op.phone}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if !r.Final || r.Channel != op.channel || r.Phone != v.Phone.Masked() || r.Queue != op.inQueue {
			t.Errorf("task %s (%s) in %s for %s %s: result %+v is not its own final one", op.id, op.path, op.inQueue, op.channel, v.Phone.Masked(), r)
		}
		finals[r.Outcome]++
		collided := r.Outcome == tasks.OutcomeInvalid && strings.Contains(r.Reason, "already names another task")
		if !collided {
			ran[op.id] = append(ran[op.id], op)
		} else {
			// Visible in why, under its own phone, as its own entry.
			r := runCmd(t, url, "", "why", "--phone", op.phone, "--json")
			var rep phoneReport
			decodeJSON(t, r.stdout, &rep)
			found := false
			for _, e := range rep.Recent {
				found = found || (e.TaskID == op.id && e.Queue == op.inQueue && e.Outcome == tasks.OutcomeInvalid && e.Channel == op.channel)
			}
			if !found {
				t.Errorf("why --phone for the colliding task %s in %s: %+v", op.id, op.inQueue, rep.Recent)
			}
		}
		if r.Outcome == tasks.OutcomeSent {
			sentPairs["+86 "+op.phone+" "+op.channel]++
		}
	}
	for id, list := range ran {
		if len(list) != 1 {
			t.Errorf("ID %s: %d tasks ran under it, want 1", id, len(list))
		}
	}
	for _, op := range ops {
		if op.queued && op.smsq && op.key != "" && len(ran[op.id]) == 1 && ran[op.id][0] != op {
			t.Errorf("ID %s: claimed by the %s task in %s, but another task ran under it", op.id, op.path, op.inQueue)
		}
	}
	sum := 0
	for _, o := range []string{tasks.OutcomeSent, tasks.OutcomeDeduplicated, tasks.OutcomeExpired, tasks.OutcomeFailed, tasks.OutcomeInvalid} {
		sum += finals[o]
	}
	if sum != accepted {
		t.Errorf("accepted %d tasks, outcomes %v add up to %d", accepted, finals, sum)
	}
	calls := map[string]int{}
	for _, r := range fake.Requests() {
		calls[workertest.PairKey(r)]++
	}
	for pair, n := range calls {
		if sentPairs[pair] != n {
			t.Errorf("pair %s: %d GenAuth calls, %d tasks sent", workertest.MaskPair(pair), n, sentPairs[pair])
		}
	}
	t.Logf("%d enqueues: %d accepted, %d refused as duplicate; outcomes %v; %d IDs ran", len(ops), accepted, len(ops)-accepted, finals, len(ran))
}

// enqueue runs one group of enqueues through its path (a batch is one
// group) and records what each got.
func enqueue(t *testing.T, ctx context.Context, url string, client *smsq.Client, raw *asynq.Client, group []*modelOp) {
	t.Helper()
	op := group[0]
	switch op.path {
	case "send":
		opts := []smsq.Option{}
		if op.key != "" {
			opts = append(opts, smsq.WithIdempotencyKey(op.key))
		}
		if op.queue != "" {
			opts = append(opts, smsq.WithQueue(op.queue))
		}
		rc, err := client.Send(ctx, smsq.Request{Channel: op.channel, Phone: op.phone}, opts...)
		switch {
		case errors.Is(err, smsq.ErrDuplicate):
		case err != nil:
			t.Fatalf("Send: %v", err)
		default:
			op.queued, op.id = true, rc.TaskID
		}
	case "cli":
		args := []string{"--channel", op.channel, "--phone", op.phone}
		if op.key != "" {
			args = append(args, "--idempotency-key", op.key)
		}
		if op.queue != "" {
			args = append(args, "--queue", op.queue)
		}
		r := runCmd(t, url, "", args...)
		switch r.code {
		case 3:
		case 0:
			op.queued, op.id = true, strings.TrimSpace(r.stdout)
		default:
			t.Fatalf("enqueue %v: exit %d: %v", args, r.code, r.err)
		}
	case "batch":
		var in strings.Builder
		in.WriteString("idempotency_key,channel,phone,queue\n")
		for _, o := range group {
			fmt.Fprintf(&in, "%s,%s,%s,%s\n", o.key, o.channel, o.phone, o.queue)
		}
		// One line at a time, in order, so that the model knows which of
		// a key's lines comes first.
		r := runCmd(t, url, in.String(), "batch", "--concurrency", "1", "-")
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if r.code != 0 || len(lines) != len(group) {
			t.Fatalf("batch: exit %d (%v), %d result lines for %d", r.code, r.err, len(lines), len(group))
		}
		for i, line := range lines {
			var res struct{ Status, TaskID string }
			decodeJSON(t, line, &res)
			switch res.Status {
			case "duplicate":
			case "enqueued":
				group[i].queued, group[i].id = true, res.TaskID
			default:
				t.Fatalf("batch line %d: %s", i+2, line)
			}
		}
	default: // raw asynq, with the contract's payload
		payload := fmt.Sprintf(`{"channel":%q,"phoneNumber":%q,"phoneCountryCode":"+86"}`, op.channel, op.phone)
		opts := []asynq.Option{asynq.Queue(op.inQueue), asynq.Retention(time.Hour)}
		if op.key != "" {
			opts = append(opts, asynq.TaskID(op.key))
		}
		info, err := raw.EnqueueContext(ctx, asynq.NewTask(tasks.TypeSendSMS, []byte(payload)), opts...)
		switch {
		case errors.Is(err, asynq.ErrTaskIDConflict):
		case err != nil:
			t.Fatalf("raw enqueue: %v", err)
		default:
			op.queued, op.id = true, info.ID
		}
	}
}
