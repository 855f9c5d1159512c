package api

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smsq/smsq"
)

func TestBatch(t *testing.T) {
	h := newHarness(t, nil)
	// Lines run concurrently: the duplicate's key is taken before.
	if _, err := h.sc.Send(context.Background(), smsq.Request{Channel: "CHANNEL_LOGIN", Phone: testPhone}, smsq.WithIdempotencyKey("b-0")); err != nil {
		t.Fatal(err)
	}
	lines := []string{
		`{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `","idempotencyKey":"b-1"}`,
		``,
		`{"channel":"CHANNEL_NOPE","phoneNumber":"13900139000"}`,
		`{"channel":"CHANNEL_REGISTER","phoneNumber":"` + testPhone + `","idempotencyKey":"b-0"}`,
		`not json`,
		`{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `","queue":"low","sendWithin":"2m","unknown":true}`,
		`{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `","pad":"` + strings.Repeat("x", MaxLineBytes) + `"}`,
		`{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `","queue":"nobody"}`,
		`{"channel":"CHANNEL_LOGIN","phoneNumber":"` + testPhone + `"}`, // no line end
	}
	resp, body := h.do(http.MethodPost, "/v1/sms/batch", billingSecret, "application/x-ndjson", strings.Join(lines, "\n"))
	wantStatus(t, resp, body, http.StatusOK)
	if ct := resp.Header.Get("Content-Type"); ct != "application/jsonl" {
		t.Errorf("content type %q", ct)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(string(body)), "\n") {
		r := decode[map[string]any](t, []byte(l))
		got = append(got, fmt.Sprintf("%v:%v", r["line"], r["status"]))
	}
	want := "1:enqueued 3:invalid 4:duplicate 5:invalid 6:enqueued 7:invalid 8:invalid 9:enqueued"
	if strings.Join(got, " ") != want {
		t.Fatalf("results %v, want %s\n%s", got, want, body)
	}
	if !strings.Contains(string(body), `"reason":"line longer than`) {
		t.Errorf("no too-long reason:\n%s", body)
	}
	if n := h.tasks(); n != 4 {
		t.Fatalf("%d tasks, want 4", n)
	}

	for name, c := range map[string]struct {
		ctype, body string
		status      int
	}{
		"empty":        {"application/jsonl", "\n\n  \n", 400},
		"json":         {"application/json", lines[0], 415},
		"no type":      {"", lines[0], 415},
		"unauthorized": {"application/jsonl", lines[0], 401},
	} {
		secret := billingSecret
		if name == "unauthorized" {
			secret = "nope"
		}
		resp, data := h.do(http.MethodPost, "/v1/sms/batch", secret, c.ctype, c.body)
		if resp.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d: %s", name, resp.StatusCode, c.status, data)
		}
	}
	if n := h.tasks(); n != 4 {
		t.Fatalf("%d tasks after refused batches, want 4", n)
	}
}

// The answer streams while the input is still coming: a client sending
// line by line reads each result before it sends the next line.
func TestBatchStreams(t *testing.T) {
	h := newHarness(t, nil)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/v1/sms/batch", pr)
	req.Header.Set("Authorization", "Bearer "+billingSecret)
	req.Header.Set("Content-Type", "application/jsonl")
	respCh := make(chan *http.Response, 1)
	go func() {
		// Not through the contract transport, which reads the whole answer.
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			close(respCh)
			return
		}
		respCh <- resp
	}()
	fmt.Fprintf(pw, `{"channel":"CHANNEL_LOGIN","phoneNumber":"%s","idempotencyKey":"s-0"}`+"\n", testPhone)
	resp := <-respCh
	if resp == nil {
		t.FailNow()
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		line, err := readLineWithin(br, 10*time.Second)
		if err != nil {
			t.Fatalf("result %d: %v", i, err)
		}
		if !strings.Contains(line, fmt.Sprintf(`"line":%d,"status":"enqueued"`, i+1)) {
			t.Fatalf("result %d: %s", i, line)
		}
		if i < 2 {
			fmt.Fprintf(pw, `{"channel":"CHANNEL_LOGIN","phoneNumber":"%s","idempotencyKey":"s-%d"}`+"\n", testPhone, i+1)
		}
	}
	pw.Close()
	if rest, _ := io.ReadAll(br); len(strings.TrimSpace(string(rest))) != 0 {
		t.Errorf("after the input ended: %s", rest)
	}
}

func readLineWithin(br *bufio.Reader, d time.Duration) (string, error) {
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := br.ReadString('\n')
		ch <- res{s, err}
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-time.After(d):
		return "", fmt.Errorf("no line within %s", d)
	}
}

// A batch of any size is held in bounded memory: 25 MB of lines, each
// near the line cap, raise the heap by far less than the input.
func TestBatchBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 25 MB")
	}
	h := newHarness(t, nil)
	const lines = 1600
	pad := strings.Repeat("x", MaxLineBytes-200)
	pr, pw := io.Pipe()
	go func() {
		for i := range lines {
			// Invalid (unknown channel): the test measures the stream, not Redis.
			fmt.Fprintf(pw, `{"channel":"CHANNEL_NONE","phoneNumber":"%s","pad":"%s","n":%d}`+"\n", testPhone, pad, i)
		}
		pw.Close()
	}()
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				runtime.ReadMemStats(&ms)
				if ms.HeapAlloc > peak.Load() {
					peak.Store(ms.HeapAlloc)
				}
			}
		}
	}()
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/v1/sms/batch", pr)
	req.Header.Set("Authorization", "Bearer "+billingSecret)
	req.Header.Set("Content-Type", "application/jsonl")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if !strings.Contains(sc.Text(), `"status":"invalid"`) {
			t.Fatalf("line %d: %s", n+1, sc.Text())
		}
		n++
	}
	resp.Body.Close()
	close(stop)
	if n != lines {
		t.Fatalf("%d results, want %d", n, lines)
	}
	grew := int64(peak.Load()) - int64(base.HeapAlloc)
	t.Logf("input %d MB, heap grew at most %d MB", lines*MaxLineBytes>>20, grew>>20)
	if grew > 12<<20 {
		t.Errorf("heap grew %d MB for a %d MB batch", grew>>20, lines*MaxLineBytes>>20)
	}
}
