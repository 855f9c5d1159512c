package batch

import (
	"context"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
)

// Progress counts the lines reported, never the lines merely read ahead.
func TestRunProgressCountsReportedLines(t *testing.T) {
	t.Parallel()
	enq := &fakeEnqueuer{EnqueueFunc: func(ctx context.Context, task *asynq.Task) (*asynq.TaskInfo, error) {
		return &asynq.TaskInfo{ID: taskID(task), Queue: "critical"}, nil
	}}
	var reported, calls int
	out := func(Result) error { reported++; return nil }
	const n, conc, window = 500, 4, 16
	_, err := Run(context.Background(), &genLines{n: n}, Config{
		Enqueuer: enq, Output: out, Concurrency: conc, Window: window,
		Progress: func(p Progress) {
			done, read := p.Done, p.Read
			calls++
			if done != reported || done != calls {
				t.Errorf("progress %d done after %d result lines", done, reported)
			}
			if read < done || read > done+window {
				t.Errorf("progress read %d with %d done: want between done and done+%d", read, done, window)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != n {
		t.Fatalf("progress called %d times, want %d", calls, n)
	}
}

// The readers tell how much input their records took, for an estimate of
// the total from the input's size.
func TestReadersTellTheirOffset(t *testing.T) {
	t.Parallel()
	const csvIn = "channel,phone\nCHANNEL_LOGIN,+8613800138000\nCHANNEL_LOGIN,+8613800138001\n"
	c := mustCSV(t, csvIn)
	if _, err := c.Read(); err != nil {
		t.Fatal(err)
	}
	if got, want := c.Offset(), int64(len("channel,phone\nCHANNEL_LOGIN,+8613800138000\n")); got != want {
		t.Errorf("CSV offset after one row = %d, want %d", got, want)
	}
	const line = `{"channel":"CHANNEL_LOGIN","phoneNumber":"+8613800138000"}` + "\n"
	j := NewJSONLReader(strings.NewReader(line + "\n" + line))
	for range 2 {
		if _, err := j.Read(); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := j.Offset(), int64(2*len(line)+1); got != want {
		t.Errorf("JSON Lines offset after two lines = %d, want %d", got, want)
	}
}
