package workertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/tasks"
)

// Queues are the queues the worker serves by default.
var Queues = []string{tasks.QueueCritical, tasks.QueueDefault, tasks.QueueLow}

// Task is what asynq (or, failing it, the history) holds about one task.
type Task struct {
	ID      string
	Queue   string
	State   string // asynq's list: pending, active, scheduled, retry, archived, completed
	Retried int
	LastErr string
	// Result is the task's recorded result; HasRes says whether it had one
	// that parsed.
	Result tasks.Result
	HasRes bool
}

// IsDone reports whether state is a finished one.
func IsDone(state string) bool { return state == "completed" || state == "archived" }

// pageSize is large to keep round trips few on runs of thousands of tasks.
const pageSize = 2000

// States lists every task of Queues through insp. asynq drops a completed
// task at once when it has no retention (a raw producer's default), so
// each of ids that asynq no longer holds is looked up in hist, and counts
// as completed when the history holds its final outcome. hist may be nil
// when ids is empty.
func States(ctx context.Context, insp *asynq.Inspector, hist *history.Store, ids ...string) (map[string]Task, error) {
	out := map[string]Task{}
	// Listed in the order tasks move, so that a task moving on while the
	// lists are read is seen again later rather than missed.
	lists := []struct {
		state string
		list  func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error)
	}{
		{"pending", insp.ListPendingTasks},
		{"active", insp.ListActiveTasks},
		{"scheduled", insp.ListScheduledTasks},
		{"retry", insp.ListRetryTasks},
		{"archived", insp.ListArchivedTasks},
		{"completed", insp.ListCompletedTasks},
	}
	for _, q := range Queues {
		for _, l := range lists {
			for page := 1; ; page++ {
				infos, err := l.list(q, asynq.PageSize(pageSize), asynq.Page(page))
				if errors.Is(err, asynq.ErrQueueNotFound) {
					break
				}
				if err != nil {
					return nil, fmt.Errorf("%s %s: %w", q, l.state, err)
				}
				for _, ti := range infos {
					s := Task{ID: ti.ID, Queue: q, State: l.state, Retried: ti.Retried, LastErr: ti.LastErr}
					if len(ti.Result) > 0 {
						s.HasRes = json.Unmarshal(ti.Result, &s.Result) == nil
					}
					// A task moving between lists may be seen twice; the
					// finished state wins.
					if prev, ok := out[ti.ID]; !ok || !IsDone(prev.State) {
						out[ti.ID] = s
					}
				}
				if len(infos) < pageSize {
					break
				}
			}
		}
	}
	for _, id := range ids {
		if _, ok := out[id]; ok {
			continue
		}
		h, ok, err := hist.Task(ctx, id)
		if err != nil {
			return nil, err
		}
		if !ok || !h.Final {
			continue
		}
		s := Task{ID: id, State: "completed"}
		s.HasRes = json.Unmarshal(h.Result, &s.Result) == nil
		out[id] = s
	}
	return out, nil
}

// PairKey names the (phone, channel) pair of a request the fake GenAuth
// received: country code, national number, channel.
func PairKey(r genauthtest.Request) string {
	cc := r.PhoneCountryCode
	if cc == "" {
		cc = "+86"
	}
	return cc + " " + r.PhoneNumber + " " + r.Channel
}

// MaskPair masks the number in a PairKey for test messages.
func MaskPair(p string) string {
	f := strings.Fields(p)
	if len(f) == 3 && len(f[1]) > 7 {
		f[1] = f[1][:3] + "****" + f[1][len(f[1])-4:]
	}
	return strings.Join(f, " ")
}

// SpacingSlack covers the gap between taking a reservation and the request
// reaching the fake GenAuth, since the fake stamps arrival and not the
// send.
const SpacingSlack = 50 * time.Millisecond

// CloseSend is two requests to one pair closer than the window.
type CloseSend struct {
	Pair          string // PairKey
	First, Second time.Time
}

// CloseSends lists the consecutive requests of a pair that arrived closer
// than window (less SpacingSlack).
func CloseSends(reqs []genauthtest.Request, window time.Duration) []CloseSend {
	byPair := map[string][]time.Time{}
	for _, r := range reqs {
		byPair[PairKey(r)] = append(byPair[PairKey(r)], r.Time)
	}
	var out []CloseSend
	for pair, times := range byPair {
		slices.SortFunc(times, time.Time.Compare)
		for i := 1; i < len(times); i++ {
			if times[i].Sub(times[i-1]) < window-SpacingSlack {
				out = append(out, CloseSend{Pair: pair, First: times[i-1], Second: times[i]})
			}
		}
	}
	return out
}
