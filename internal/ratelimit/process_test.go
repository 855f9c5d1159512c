package ratelimit

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/redistest"
)

// Environment of the helper processes of TestAcrossProcesses.
const (
	envHelper = "SMSQ_RATELIMIT_HELPER" // "1" in a helper
	envAddr   = "SMSQ_RATELIMIT_ADDR"   // Redis host:port
	envOut    = "SMSQ_RATELIMIT_OUT"    // file for the allowed sends
	envStart  = "SMSQ_RATELIMIT_START"  // Unix nanoseconds when to begin
	envRun    = "SMSQ_RATELIMIT_RUN"    // how long to ask, a duration
)

const (
	processRate  = 50
	processBurst = 5
)

// send is one allowed send seen by a helper: the Redis server decided
// somewhere between the request leaving and the answer arriving.
type send struct{ sent, answered time.Time }

// TestHelperProcess is not a test: TestAcrossProcesses runs the test
// binary again with it as a worker process that asks for tokens in a loop
// and writes down when each allowed send was asked and answered.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(envHelper) != "1" {
		return
	}
	start, err := strconv.ParseInt(os.Getenv(envStart), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", envStart, err)
	}
	run, err := time.ParseDuration(os.Getenv(envRun))
	if err != nil {
		t.Fatalf("%s: %v", envRun, err)
	}
	c := redis.NewClient(&redis.Options{Addr: os.Getenv(envAddr)})
	defer c.Close()
	l := newLimiter(t, c, Config{Global: Limit{Rate: processRate, Period: time.Second, Burst: processBurst}})
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	begin := time.Unix(0, start)
	time.Sleep(time.Until(begin)) // line up with the other helpers
	var out strings.Builder
	for end := begin.Add(run); time.Now().Before(end); {
		sent := time.Now()
		wait, err := l.Allow(ctx, "CHANNEL_LOGIN")
		answered := time.Now()
		if err != nil {
			t.Fatalf("Allow: %v", err)
		}
		if wait == 0 {
			fmt.Fprintf(&out, "%d %d\n", sent.UnixNano(), answered.UnixNano())
			continue
		}
		// Come back when told, as a worker does, but often enough to keep
		// the limiter busy.
		time.Sleep(min(wait, 5*time.Millisecond))
	}
	if err := os.WriteFile(os.Getenv(envOut), []byte(out.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestAcrossProcesses runs three worker processes against one Redis and
// checks that no one-second window holds more sends than the rate plus
// the burst.
func TestAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for several seconds")
	}
	t.Parallel()
	const (
		procs = 3
		run   = 3 * time.Second
	)
	srv := redistest.Start(t)
	dir := t.TempDir()
	start := time.Now().Add(time.Second) // time for the processes to start
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cmds := make([]*exec.Cmd, procs)
	outs := make([]string, procs)
	for i := range procs {
		outs[i] = filepath.Join(dir, fmt.Sprintf("sends-%d.txt", i))
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(),
			envHelper+"=1",
			envAddr+"="+srv.Addr(),
			envOut+"="+outs[i],
			envStart+"="+strconv.FormatInt(start.UnixNano(), 10),
			envRun+"="+run.String(),
		)
		var logs strings.Builder
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatalf("start helper %d: %v", i, err)
		}
		cmds[i] = cmd
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("helper %d output:\n%s", i, logs.String())
			}
		})
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v", i, err)
		}
	}

	var sends []send
	perProc := make([]int, procs)
	for i, path := range outs {
		got := readSends(t, path)
		perProc[i] = len(got)
		sends = append(sends, got...)
	}
	slices.SortFunc(sends, func(a, b send) int { return a.sent.Compare(b.sent) })
	for i, n := range perProc {
		if n == 0 {
			t.Fatalf("helper %d got no send through (per helper: %v)", i, perProc)
		}
	}

	// The server's decision lies between sent and answered. Counting the
	// sends whose whole span falls in a window gives a count the true one
	// is never below, so the assertion cannot fail from scheduling noise;
	// the count by answer time is logged for comparison.
	most, mostAnswered := 0, 0
	var slowest time.Duration
	answered := make([]time.Time, len(sends))
	for i, s := range sends {
		answered[i] = s.answered
		slowest = max(slowest, s.answered.Sub(s.sent))
	}
	slices.SortFunc(answered, time.Time.Compare)
	for i, s := range sends {
		end := s.sent.Add(time.Second)
		n := 0
		for _, o := range sends[i:] {
			if !o.sent.Before(end) {
				break
			}
			if o.answered.Before(end) {
				n++
			}
		}
		most = max(most, n)
	}
	for i, a := range answered {
		j, _ := slices.BinarySearchFunc(answered, a.Add(time.Second), time.Time.Compare)
		mostAnswered = max(mostAnswered, j-i)
	}
	limit := processRate + processBurst
	t.Logf("%d processes, %v: %d sends (per process %v); most in one second: %d (%d by answer time), limit %d/s + burst %d = %d; slowest answer %v",
		procs, run, len(sends), perProc, most, mostAnswered, processRate, processBurst, limit, slowest.Round(time.Microsecond))
	if most > limit {
		t.Fatalf("%d sends in one second, want at most %d", most, limit)
	}
}

func readSends(t *testing.T, path string) []send {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []send
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		a, b, ok := strings.Cut(sc.Text(), " ")
		x, err1 := strconv.ParseInt(a, 10, 64)
		y, err2 := strconv.ParseInt(b, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			t.Fatalf("%s: bad line %q", path, sc.Text())
		}
		out = append(out, send{time.Unix(0, x), time.Unix(0, y)})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
