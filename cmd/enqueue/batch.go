package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/redis/go-redis/v9"
	"github.com/schollz/progressbar/v3"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/batch"
	"github.com/smsq/smsq/internal/config"
	"github.com/smsq/smsq/internal/redisconn"
)

// batchSettings holds the settings of enqueue batch.
type batchSettings struct {
	RedisURL     string
	Format       string
	Out          string
	Concurrency  int
	DryRun       bool
	AllowInvalid bool
	MaxErrors    int
	Timeout      time.Duration
	Stats        bool
	AnyQueue     bool
	// Report: with Wait, the delivery report written after the run.
	Report     reportSettings
	ReportPath string
}

func bindBatch(set *config.Set, s *batchSettings) {
	set.Secret(&s.RedisURL, "redis-url", "REDIS_URL", defaultRedisURL, "Redis URL, as for the worker")
	set.String(&s.Format, "format", "", "", "input format, csv or jsonl (default: by file extension, else by the first character: '{' is jsonl)")
	set.String(&s.Out, "out", "", "", "write the result lines to this file instead of standard output")
	set.Int(&s.Concurrency, "concurrency", "", batch.DefaultConcurrency, "lines enqueued at once")
	set.Bool(&s.DryRun, "dry-run", "", false, "validate every line and queue nothing (no Redis connection)")
	set.Bool(&s.AllowInvalid, "allow-invalid", "", false, "exit 0 even when some lines are invalid (enqueue errors still fail)")
	set.Int(&s.MaxErrors, "max-errors", "", batch.DefaultMaxErrors, "stop after this many lines fail to enqueue; -1 for no limit")
	set.Duration(&s.Timeout, "timeout", "SMSQ_ENQUEUE_TIMEOUT", 5*time.Second, "give up on Redis (first contact, and each line) after this")
	set.Bool(&s.Stats, "stats", "", false, "print the peak memory (resident set) at the end")
	set.Bool(&s.AnyQueue, "allow-unserved-queue", "", false, "accept lines for queues no live worker serves (for workers yet to start); a dry run checks against the default queues")
	bindWait(set, &s.Report)
	set.String(&s.ReportPath, "report", "", "", "with --wait, write the report to this file (replaced only once complete) instead of standard output")
}

// maxBatchConcurrency bounds --concurrency: each line in flight holds a
// goroutine, a result slot and a Redis connection.
const maxBatchConcurrency = 1024

const batchUsage = `usage: enqueue batch [flags] [FILE|-]

Queues one code per line of FILE (standard input when absent or "-"), CSV
with a header row or JSON Lines, and writes one JSON result line per input
line, in input order. With --wait, the result lines go to --out (or a
temporary file) and the delivery report (see enqueue report -h) to standard
output, once every line's task is final or --wait-timeout has passed.

`

// runBatch is enqueue batch.
func runBatch(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	var s batchSettings
	set := config.NewSet("enqueue batch", getenv, stderr)
	bindBatch(set, &s)
	setUsage(set, batchUsage)
	if err := parseArgs(set, args); err != nil {
		return err
	}
	fs := set.FlagSet()
	if fs.NArg() > 1 {
		return usageError{fmt.Errorf("unexpected argument %q: give one input file", fs.Arg(1))}
	}
	switch {
	case s.Concurrency < 1 || s.Concurrency > maxBatchConcurrency:
		return usageError{fmt.Errorf("--concurrency %d: must be between 1 and %d", s.Concurrency, maxBatchConcurrency)}
	case s.Timeout <= 0:
		return usageError{fmt.Errorf("--timeout %s: must be positive", s.Timeout)}
	case s.MaxErrors == 0 || s.MaxErrors < -1:
		return usageError{fmt.Errorf("--max-errors %d: must be at least 1, or -1 for no limit", s.MaxErrors)}
	case s.Report.Wait && s.DryRun:
		return usageError{errors.New("--wait: a dry run queues nothing to wait for")}
	case s.ReportPath != "" && !s.Report.Wait:
		return usageError{errors.New("--report: only with --wait")}
	}
	s.Report.RedisURL, s.Report.Out, s.Report.Window, s.Report.Timeout = s.RedisURL, s.ReportPath, batch.DefaultReportWindow, s.Timeout
	s.Report.AllowInvalid = s.AllowInvalid
	if err := s.Report.check(); err != nil {
		return err
	}

	// Input, then its format and header: bad input never waits on Redis.
	name := fs.Arg(0)
	in, size, closeIn, err := openInput(name, stdin)
	if err != nil {
		return usageError{err}
	}
	defer closeIn()
	bar := newProgress(stderr, size)
	br := bufio.NewReaderSize(in, 64<<10)
	format, err := inputFormat(s.Format, name, br)
	if err != nil {
		return usageError{err}
	}
	if _, err := batch.Sniff(br); errors.Is(err, batch.ErrEmpty) {
		return usageError{err}
	}
	var rd batch.Reader
	if format == batch.FormatCSV {
		c, err := batch.NewCSVReader(br)
		if err != nil {
			return usageError{err}
		}
		rd = c
	} else {
		rd = batch.NewJSONLReader(br)
	}

	var w *bufio.Writer // set below, once the results file is open
	cfg := batch.Config{
		Concurrency: s.Concurrency,
		Timeout:     s.Timeout,
		MaxErrors:   s.MaxErrors,
		Progress:    bar.update,
		// A file's rest is read to count what a stopped run did not
		// process; standard input may never end.
		CountUnread: size >= 0,
		AnyQueue:    s.AnyQueue,
		Output: func(r batch.Result) error {
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			b = append(b, '\n')
			_, err = w.Write(b)
			return err
		},
	}
	var rdb redis.UniversalClient
	if !s.DryRun {
		var err error
		rdb, err = redisconn.Open(s.RedisURL, redisconn.Options{PoolSize: s.Concurrency + 4, DialTimeout: 2 * time.Second})
		if err != nil {
			return usageError{fmt.Errorf("REDIS_URL: %w", err)}
		}
		defer rdb.Close()
		if err := redisconn.Ping(ctx, rdb, s.RedisURL, s.Timeout); err != nil {
			return err
		}
		// The asynq client shares rdb, whose pool is sized for the workers;
		// closing rdb releases it.
		cfg.Enqueuer = smsq.NewClientFromRedis(rdb)
		served, err := liveServed(rdb)
		if err != nil {
			return err
		}
		cfg.Served = served.names
	}

	// The results file is created only once Redis answered, so that a
	// failed run leaves an earlier file as it was.
	out := stdout
	var results string // the result file a --wait reads back
	if s.Report.Wait && s.Out == "" {
		// The result lines go to a file of their own, the report to
		// standard output.
		f, err := os.CreateTemp("", "enqueue-batch-*.jsonl")
		if err != nil {
			return fmt.Errorf("--wait: %w", err)
		}
		defer os.Remove(f.Name())
		defer f.Close()
		out, results = f, f.Name()
	}
	if s.Out != "" {
		if sameFile(name, s.Out) {
			return usageError{fmt.Errorf("--out %s is the input file: its results would overwrite it", s.Out)}
		}
		f, err := os.Create(s.Out)
		if err != nil {
			return usageError{fmt.Errorf("--out: %w", err)}
		}
		defer f.Close()
		out, results = f, s.Out
	}
	w = bufio.NewWriterSize(out, 64<<10)

	sum, runErr := batch.Run(ctx, rd, cfg)
	flushErr := w.Flush()
	bar.finish()
	if errors.Is(runErr, batch.ErrEmpty) && sum.Lines == 0 {
		return usageError{runErr}
	}
	fmt.Fprintln(stderr, sum)
	if s.Stats {
		fmt.Fprintln(stderr, "peak memory (VmHWM):", peakRSS())
	}
	switch {
	case runErr != nil:
		return fmt.Errorf("%w (after input line %d; later lines were not processed)", runErr, sum.LastLine)
	case flushErr != nil:
		return fmt.Errorf("write results: %w", flushErr)
	}
	if s.Report.Wait {
		return reportAfterBatch(ctx, s.Report, rdb, results, sum, stdout, stderr)
	}
	var failed []string
	if sum.Invalid > 0 && !s.AllowInvalid {
		failed = append(failed, fmt.Sprintf("%d invalid", sum.Invalid))
	}
	if sum.Errors > 0 {
		failed = append(failed, fmt.Sprintf("%d failed to enqueue", sum.Errors))
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s lines; see their result lines", strings.Join(failed, " and "))
	}
	return nil
}

// openInput opens name, or returns stdin for "" and "-". size is the
// file's size, or -1 when unknown.
// sameFile reports whether the input name and path are one existing file.
func sameFile(name, path string) bool {
	if name == "" || name == "-" {
		return false
	}
	a, err1 := os.Stat(name)
	b, err2 := os.Stat(path)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

func openInput(name string, stdin io.Reader) (r io.Reader, size int64, closeFn func(), err error) {
	if name == "" || name == "-" {
		return stdin, -1, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, nil, err
	}
	size = -1
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	return f, size, func() { _ = f.Close() }, nil
}

// inputFormat picks the format: --format, else the file extension, else
// the first character of the input.
func inputFormat(flagValue, name string, br *bufio.Reader) (batch.Format, error) {
	if flagValue != "" {
		f, err := batch.ParseFormat(flagValue)
		if err != nil {
			return "", fmt.Errorf("--format: %w", err)
		}
		return f, nil
	}
	if f, ok := batch.FormatForName(name); ok {
		return f, nil
	}
	return batch.Sniff(br)
}

// newProgress returns a progress bar on stderr when it is a terminal, and
// nil otherwise: a bar in a log file or a pipe is noise.
func newProgress(stderr io.Writer, size int64) *progress {
	f, ok := stderr.(*os.File)
	if !ok || !(isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())) {
		return nil
	}
	return startProgress(stderr, size)
}

// progress shows lines done (those with a result line, not those read
// ahead), lines/s and, for a file of known size, the expected total and
// the time left: the total is the size over the bytes per line read so far.
type progress struct {
	bar  *progressbar.ProgressBar
	size int64
}

func startProgress(w io.Writer, size int64) *progress {
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("enqueue"),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("lines"),
	}
	max := int64(-1) // a spinner until the total can be told
	if size > 0 {
		opts = append(opts, progressbar.OptionSetPredictTime(true))
		max = 1 // until the first update can tell the total
	}
	return &progress{bar: progressbar.NewOptions64(max, opts...), size: size}
}

// update is batch.Config.Progress.
func (p *progress) update(at batch.Progress) {
	if p == nil {
		return
	}
	if p.size > 0 && at.ReadBytes > 0 && at.Read > 0 {
		total := max(int64(float64(at.Read)*float64(p.size)/float64(at.ReadBytes)), int64(at.Done))
		p.bar.ChangeMax64(total)
	}
	_ = p.bar.Set(at.Done)
}

func (p *progress) finish() {
	if p != nil {
		_ = p.bar.Finish()
	}
}

// peakRSS reports the process's peak resident set size from
// /proc/self/status (Linux).
func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unavailable on this system"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unavailable on this system"
}

// reportAfterBatch writes the delivery report of the run whose result
// lines are in the file results. Lines that failed to enqueue make the
// exit status 1, as without --wait: re-running the batch queues them.
func reportAfterBatch(ctx context.Context, s reportSettings, rdb redis.UniversalClient, results string, sum batch.Summary, stdout, stderr io.Writer) error {
	f, err := os.Open(results)
	if err != nil {
		return fmt.Errorf("--wait: read the result lines back: %w", err)
	}
	defer f.Close()
	verdict := writeReport(ctx, s, rdb, f, stdout, stderr)
	if sum.Errors > 0 && (verdict == nil || errors.Is(verdict, errNotDelivered) || errors.Is(verdict, errPending)) {
		// Not errNotDelivered: status 1 says to re-run the batch.
		return fmt.Errorf("%d lines failed to enqueue; see their result lines", sum.Errors)
	}
	return verdict
}
