package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smsq/smsq/internal/batch"
)

// The bar counts lines with a result (not bytes, not lines read ahead),
// shows lines/s, and for a file expects size / bytes-per-line lines.
func TestProgressShowsLinesDoneAndExpectedTotal(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	p := startProgress(&out, 10000)
	// 200 lines read in 1000 bytes: 5 bytes per line, 2000 lines in all.
	p.update(batch.Progress{Done: 100, Read: 200, ReadBytes: 1000})
	if st := p.bar.State(); st.CurrentNum != 100 || st.Max != 2000 {
		t.Fatalf("bar at %d of %d, want 100 of 2000 lines", st.CurrentNum, st.Max)
	}
	// The bar renders at most every 100ms; its last rendering shows the form.
	got := p.bar.String()
	if !strings.Contains(got, "/2000, ") || !strings.Contains(got, " lines/") || !strings.Contains(got, "%") || !strings.Contains(got, "s:") {
		t.Fatalf("bar %q: want lines of the expected 2000, a lines rate, the share done and the time left", got)
	}
	if strings.Contains(got, "B/s") || strings.Contains(got, "B/") {
		t.Fatalf("bar %q counts bytes", got)
	}
}

// lockedBuffer is written by the spinner's own render goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestProgressFromStandardInputCountsLines(t *testing.T) {
	t.Parallel()
	var out lockedBuffer
	p := startProgress(&out, -1)
	defer p.finish() // stops the spinner's render goroutine
	p.update(batch.Progress{Done: 42, Read: 99, ReadBytes: 1 << 20})
	if st := p.bar.State(); st.CurrentBytes != 42 { // a spinner's count
		t.Fatalf("bar at %d, want the 42 lines done", st.CurrentNum)
	}
	// A spinner renders from a goroutine of its own: read what it wrote,
	// not the bar's unguarded String.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), " lines/") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := out.String(); !strings.Contains(got, " lines/") || strings.Contains(got, "B/") {
		t.Fatalf("bar %q: want a lines rate", got)
	}
	var nilBar *progress // not a terminal
	nilBar.update(batch.Progress{Done: 1, Read: 1})
	nilBar.finish()
}
