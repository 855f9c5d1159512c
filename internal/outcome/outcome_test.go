package outcome

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smsq/smsq/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

func sample() Event {
	return Event{
		TaskID: "t-1", Key: "t-1", Queue: "critical", Channel: "CHANNEL_LOGIN",
		Phone: "+86 138****5678", PhoneHash: "ab12", Outcome: "sent",
		StatusCode: 200, RequestID: "req-9", Attempts: 2,
		EnqueuedAt: time.UnixMilli(1_700_000_000_123).UTC(),
		FinishedAt: time.UnixMilli(1_700_000_001_456).UTC(),
	}
}

func TestFieldsRoundTrip(t *testing.T) {
	e := sample()
	e.V = Version
	f := e.Fields()
	m := map[string]any{}
	for i := 0; i < len(f); i += 2 {
		m[f[i].(string)] = f[i+1]
	}
	got, err := Parse(m)
	if err != nil {
		t.Fatal(err)
	}
	if got != e {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, e)
	}
	if _, ok := m["apiCode"]; ok {
		t.Error("zero apiCode written")
	}
}

func TestParseRefusesBadEntries(t *testing.T) {
	for name, m := range map[string]map[string]any{
		"empty":    {},
		"bad time": {"v": "1", "taskId": "a", "outcome": "sent", "finishedAt": "yesterday"},
		"bad int":  {"v": "1", "taskId": "a", "outcome": "sent", "attempts": "two"},
	} {
		if _, err := Parse(m); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// A task appended twice (a redelivery after a crash between the record and
// the append) has one entry; a colliding task with the same ID has its own.
func TestAppendOncePerTask(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	s, err := New(Config{Client: rdb})
	if err != nil {
		t.Fatal(err)
	}
	sub := rdb.Subscribe(ctx, Channel(DefaultPrefix))
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	e := sample()
	var wg sync.WaitGroup
	ids := make(chan string, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := s.Append(ctx, e, "")
			if err != nil {
				t.Error(err)
			}
			ids <- id
		}()
	}
	wg.Wait()
	close(ids)
	n := 0
	for id := range ids {
		if id != "" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d appends of one task reported an entry, want 1", n)
	}
	if _, err := s.Append(ctx, e, "x1"); err != nil {
		t.Fatal(err)
	}
	msgs, err := rdb.XRange(ctx, StreamKey(DefaultPrefix), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 {
		t.Fatalf("%d entries, want 2 (the task and the colliding one)", len(msgs))
	}
	got, err := Parse(msgs[0].Values)
	if err != nil {
		t.Fatal(err)
	}
	want := e
	want.V = Version
	if got != want {
		t.Fatalf("entry:\n got %+v\nwant %+v", got, want)
	}
	for _, m := range msgs {
		for k, v := range m.Values {
			if strings.Contains(v.(string), "13812345678") {
				t.Errorf("field %s holds the number", k)
			}
		}
	}
	// Every append is announced, the repeated ones too: a waiter that
	// subscribed late still wakes.
	msg, err := sub.ReceiveTimeout(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg.(interface{ String() string }).String(), "t-1") {
		t.Errorf("announcement %v does not name the task", msg)
	}
}

func TestStreamOffAnnouncesOnly(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	s, err := New(Config{Client: rdb, MaxLen: -1})
	if err != nil {
		t.Fatal(err)
	}
	if s.Enabled() {
		t.Fatal("MaxLen -1 reported enabled")
	}
	if _, err := s.Append(ctx, sample(), ""); err != nil {
		t.Fatal(err)
	}
	if n, _ := rdb.Exists(ctx, StreamKey(DefaultPrefix), SeenKey(DefaultPrefix)).Result(); n != 0 {
		t.Fatalf("stream off wrote %d keys", n)
	}
}

func TestAppendTrimsApproximately(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	s, err := New(Config{Client: rdb, MaxLen: 100})
	if err != nil {
		t.Fatal(err)
	}
	e := sample()
	for i := range 1000 {
		e.TaskID = "t-" + time.Duration(i).String()
		if _, err := s.Append(ctx, e, ""); err != nil {
			t.Fatal(err)
		}
	}
	n, err := rdb.XLen(ctx, StreamKey(DefaultPrefix)).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n < 100 || n > 300 {
		t.Fatalf("stream holds %d entries after 1000 appends with MaxLen 100", n)
	}
}

// A budget warning is an entry of its own kind: no task, outcome or
// phone, the budget's figures; it parses back, and an entry with neither a
// kind nor a task still does not.
func TestBudgetWarningEntry(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	s, err := New(Config{Client: rdb})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Warn(ctx, sample()); err == nil {
		t.Fatal("Warn took a task's outcome")
	}
	ends := time.UnixMilli(1_700_086_400_000).UTC()
	w := Event{V: Version, Kind: KindBudgetWarning, Budget: "50000/d", Used: 40000, WindowEndsAt: ends, FinishedAt: ends.Add(-time.Hour)}
	if _, err := s.Warn(ctx, w); err != nil {
		t.Fatal(err)
	}
	msgs, err := rdb.XRange(ctx, StreamKey(DefaultPrefix), "-", "+").Result()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("entries %v, %v", msgs, err)
	}
	got, err := Parse(msgs[0].Values)
	if err != nil || got != w {
		t.Fatalf("parsed %+v, %v; want %+v", got, err, w)
	}
	if _, err := Parse(map[string]any{"v": "1", "budget": "5/d"}); err == nil {
		t.Fatal("an entry with no kind and no task parsed")
	}
	off, _ := New(Config{Client: rdb, MaxLen: -1})
	if id, err := off.Warn(ctx, w); err != nil || id != "" {
		t.Fatalf("stream off: Warn = %q, %v; want nothing appended", id, err)
	}
}
