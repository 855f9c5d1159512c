package main

import (
	"bytes"
	"context"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/outcome"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/workertest"
)

func appendOutcomes(t *testing.T, rdb redis.UniversalClient, from, n int) {
	t.Helper()
	s, err := outcome.New(outcome.Config{Client: rdb})
	if err != nil {
		t.Fatal(err)
	}
	for i := from; i < from+n; i++ {
		e := outcome.Event{TaskID: "o-" + strconv.Itoa(i), Queue: "critical", Channel: "CHANNEL_LOGIN", Phone: "+86 138****8000",
			Outcome: "sent", RequestID: "r-" + strconv.Itoa(i), Attempts: 1, FinishedAt: time.Now()}
		if _, err := s.Append(context.Background(), e, ""); err != nil {
			t.Fatal(err)
		}
	}
}

// printedIDs reads enqueue outcomes' JSON Lines, checking each.
func printedIDs(t *testing.T, out string) []string {
	t.Helper()
	var ids []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var v struct {
			ID      string `json:"id"`
			V       int    `json:"v"`
			TaskID  string `json:"taskId"`
			Outcome string `json:"outcome"`
		}
		decodeJSON(t, l, &v)
		if v.ID == "" || v.V != 1 || v.Outcome != "sent" {
			t.Fatalf("line %s", l)
		}
		ids = append(ids, v.TaskID)
	}
	return ids
}

func TestOutcomesPlain(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	url := srv.URL()
	if r := runCmd(t, url, "", "outcomes"); r.code != 0 || r.stdout != "" {
		t.Fatalf("empty stream: exit %d, %q: %v", r.code, r.stdout, r.err)
	}
	appendOutcomes(t, srv.Client(), 0, 1203) // more than one read's worth
	r := runCmd(t, url, "", "outcomes")
	ids := printedIDs(t, r.stdout)
	if r.code != 0 || len(ids) != 1203 || ids[0] != "o-0" || ids[1202] != "o-1202" {
		t.Fatalf("exit %d, %d lines (%v)", r.code, len(ids), r.err)
	}
	if ids := printedIDs(t, runCmd(t, url, "", "outcomes", "--count", "3").stdout); strings.Join(ids, ",") != "o-0,o-1,o-2" {
		t.Fatalf("--count 3: %v", ids)
	}
	// --from an entry ID: from there on.
	first, err := srv.Client().XRangeN(context.Background(), outcome.StreamKey(outcome.DefaultPrefix), "-", "+", 1201).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ids := printedIDs(t, runCmd(t, url, "", "outcomes", "--from", first[1200].ID).stdout); strings.Join(ids, ",") != "o-1200,o-1201,o-1202" {
		t.Fatalf("--from %s: %v", first[1200].ID, ids)
	}
	if ids := printedIDs(t, runCmd(t, url, "", "outcomes", "--from", time.Now().Add(time.Hour).Format(time.RFC3339)).stdout); len(ids) != 0 {
		t.Fatalf("--from an hour ahead: %v", ids)
	}
	for _, args := range [][]string{
		{"outcomes", "--from", "yesterday"},
		{"outcomes", "--count", "-1"},
		{"outcomes", "--consumer", "c"},
		{"outcomes", "extra"},
	} {
		if r := runCmd(t, closedURL(t), "", args...); r.code != exitUsage {
			t.Errorf("%q: exit %d (%v), want %d", args, r.code, r.err, exitUsage)
		}
	}
}

// A consumer group sees each entry once; a reader that stopped before
// acknowledging gets its entries again first.
func TestOutcomesGroup(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	url := srv.URL()
	rdb := srv.Client()
	appendOutcomes(t, rdb, 0, 5)
	// A new group starts at the end unless told --from 0.
	if r := runCmd(t, url, "", "outcomes", "--group", "late"); r.code != 0 || r.stdout != "" {
		t.Fatalf("new group at the end: exit %d, %q: %v", r.code, r.stdout, r.err)
	}
	r := runCmd(t, url, "", "outcomes", "--group", "g", "--consumer", "c1", "--from", "0")
	if ids := printedIDs(t, r.stdout); len(ids) != 5 || r.code != 0 {
		t.Fatalf("first read: exit %d, %v: %v", r.code, ids, r.err)
	}
	if r := runCmd(t, url, "", "outcomes", "--group", "g", "--consumer", "c1"); r.stdout != "" {
		t.Fatalf("second read printed %q; want nothing (all acknowledged)", r.stdout)
	}
	appendOutcomes(t, rdb, 5, 2)
	// Another reader of the group read o-5 and stopped before its XACK.
	key := outcome.StreamKey(outcome.DefaultPrefix)
	if _, err := rdb.XReadGroup(context.Background(), &redis.XReadGroupArgs{Group: "g", Consumer: "c2", Streams: []string{key, ">"}, Count: 1, Block: -1}).Result(); err != nil {
		t.Fatal(err)
	}
	if ids := printedIDs(t, runCmd(t, url, "", "outcomes", "--group", "g", "--consumer", "c2").stdout); strings.Join(ids, ",") != "o-5,o-6" {
		t.Fatalf("c2 after a stop: %v; want its unacknowledged o-5, then o-6", ids)
	}
	if n, err := rdb.XPending(context.Background(), key, "g").Result(); err != nil || n.Count != 0 {
		t.Fatalf("pending %+v, %v; want none", n, err)
	}
	if r := runCmd(t, url, "", "outcomes", "--group", "late"); strings.Join(printedIDs(t, r.stdout), ",") != "o-5,o-6" {
		t.Fatalf("group late: %q", r.stdout)
	}
}

// --follow prints outcomes as they are appended, with and without a group.
func TestOutcomesFollow(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	url := srv.URL()
	getenv := func(k string) string {
		if k == "REDIS_URL" {
			return url
		}
		return ""
	}
	appendOutcomes(t, srv.Client(), 0, 2)
	want := []string{"o-0", "o-1"}
	for i, args := range [][]string{{"outcomes", "--follow"}, {"outcomes", "--follow", "--group", "f", "--from", "0"}} {
		ctx, cancel := context.WithCancel(context.Background())
		var mu sync.Mutex
		var out bytes.Buffer
		done := make(chan error, 1)
		go func() { done <- run(ctx, args, getenv, nil, lockedWriter{&mu, &out}, io.Discard) }()
		lines := func() string {
			mu.Lock()
			defer mu.Unlock()
			return out.String()
		}
		workertest.WaitFor(t, 10*time.Second, func() (bool, string) { return strings.Count(lines(), "\n") == len(want), lines() })
		appendOutcomes(t, srv.Client(), 100+i, 1)
		want = append(want, "o-"+strconv.Itoa(100+i))
		workertest.WaitFor(t, 10*time.Second, func() (bool, string) { return strings.Count(lines(), "\n") == len(want), lines() })
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		if ids := printedIDs(t, lines()); strings.Join(ids, ",") != strings.Join(want, ",") {
			t.Fatalf("%q: %v, want %v", args, ids, want)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
