package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/config"
	"github.com/smsq/smsq/internal/outcome"
	"github.com/smsq/smsq/internal/redisconn"
)

// outcomesSettings holds the settings of enqueue outcomes.
type outcomesSettings struct {
	RedisURL string
	Follow   bool
	Group    string
	Consumer string
	From     string
	Count    int
	Timeout  time.Duration
}

func bindOutcomes(set *config.Set, s *outcomesSettings) {
	set.Secret(&s.RedisURL, "redis-url", "REDIS_URL", defaultRedisURL, "Redis URL, as for the worker")
	set.Bool(&s.Follow, "follow", "", false, "keep printing outcomes as they come, until interrupted")
	set.String(&s.Group, "group", "", "", "read as this consumer group (created when missing): each entry once per group, acknowledged once printed; unacknowledged entries of this consumer come first")
	set.String(&s.Consumer, "consumer", "", "", "with --group: this reader's name in the group (default host and process ID)")
	set.String(&s.From, "from", "", "", "first entry: a stream entry ID, or an RFC 3339 time; default the oldest kept (without --group) or, for a new group, the end (only new outcomes); 0 starts a new group at the oldest")
	set.Int(&s.Count, "count", "", 0, "stop after this many entries (0: no limit)")
	set.Duration(&s.Timeout, "timeout", "SMSQ_ENQUEUE_TIMEOUT", 5*time.Second, "give up when Redis does not answer within this")
}

const outcomesUsage = `usage: enqueue outcomes [--follow] [--group G [--consumer C]] [--from ID|TIME] [--count N]

Prints the outcome stream (smsq:{outcomes}, schema v1: see README) as JSON
Lines, one final outcome per line with its stream entry ID as "id". Without
--follow it stops at the stream's end. Phone numbers are masked.

`

// outcomeBatch is how many entries one read asks for.
const outcomeBatch = 500

// runOutcomes is enqueue outcomes.
func runOutcomes(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var s outcomesSettings
	set := config.NewSet("enqueue outcomes", getenv, stderr)
	bindOutcomes(set, &s)
	setUsage(set, outcomesUsage)
	if err := parseArgs(set, args); err != nil {
		return err
	}
	if set.FlagSet().NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", set.FlagSet().Arg(0))}
	}
	if s.Timeout <= 0 {
		return usageError{fmt.Errorf("--timeout %s: must be positive", s.Timeout)}
	}
	if s.Count < 0 {
		return usageError{fmt.Errorf("--count %d: must not be negative", s.Count)}
	}
	if s.Consumer != "" && s.Group == "" {
		return usageError{errors.New("--consumer goes with --group")}
	}
	from, err := streamID(s.From)
	if err != nil {
		return usageError{fmt.Errorf("--from: %w", err)}
	}
	if s.Consumer == "" {
		host, _ := os.Hostname()
		s.Consumer = fmt.Sprintf("enqueue-%s-%d", host, os.Getpid())
	}
	rdb, err := openRedis(s.RedisURL)
	if err != nil {
		return err
	}
	defer rdb.Close()
	if err := redisconn.Ping(ctx, rdb, s.RedisURL, s.Timeout); err != nil {
		return err
	}
	r := &outcomeReader{rdb: rdb, s: s, out: bufio.NewWriter(stdout), stderr: stderr, key: outcome.StreamKey(outcome.DefaultPrefix)}
	if s.Group != "" {
		return r.group(ctx, from)
	}
	return r.plain(ctx, from)
}

// streamID reads --from: "" (none), a stream entry ID (1700000000000-0,
// or its time part alone, or 0), or an RFC 3339 time.
func streamID(v string) (string, error) {
	if v == "" || v == "0" || v == "$" {
		return v, nil
	}
	ms, seq, hasSeq := strings.Cut(v, "-")
	if _, err := strconv.ParseUint(ms, 10, 64); err == nil {
		if !hasSeq {
			return ms + "-0", nil
		}
		if _, err := strconv.ParseUint(seq, 10, 64); err == nil {
			return v, nil
		}
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return "", fmt.Errorf("%q is neither a stream entry ID (1700000000000-0) nor an RFC 3339 time", v)
	}
	return strconv.FormatInt(t.UnixMilli(), 10) + "-0", nil
}

type outcomeReader struct {
	rdb     redis.UniversalClient
	s       outcomesSettings
	out     *bufio.Writer
	stderr  io.Writer
	key     string
	printed int
}

// line is one printed outcome: the entry ID, then the event's fields.
type line struct {
	ID string `json:"id"`
	outcome.Event
}

// print writes the entries; it reports whether --count is reached. An
// entry that does not parse is named on stderr and skipped.
func (r *outcomeReader) print(msgs []redis.XMessage) (bool, error) {
	for _, m := range msgs {
		e, err := outcome.Parse(m.Values)
		if err != nil {
			fmt.Fprintf(r.stderr, "enqueue outcomes: entry %s skipped: %v\n", m.ID, err)
			continue
		}
		b, err := json.Marshal(line{ID: m.ID, Event: e})
		if err != nil {
			return false, err
		}
		r.out.Write(b)
		r.out.WriteByte('\n')
		r.printed++
		if r.s.Count > 0 && r.printed >= r.s.Count {
			return true, r.out.Flush()
		}
	}
	return false, r.out.Flush()
}

// timed bounds one Redis call by --timeout, a blocking read by its block
// time more.
func (r *outcomeReader) timed(ctx context.Context, block time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.s.Timeout+block)
}

const followBlock = 2 * time.Second

// plain reads the stream from from (default its oldest entry) without a
// group: XRANGE to the end, then with --follow XREAD BLOCK from there.
func (r *outcomeReader) plain(ctx context.Context, from string) error {
	// last is where XREAD goes on from: the last entry printed, else
	// before the first one asked for (so that an entry appended between
	// the XRANGE and the XREAD is not missed), or "$" for new ones only.
	start, last := from, from
	switch from {
	case "", "0":
		start, last = "-", "0-0"
	case "$":
		if !r.s.Follow {
			return nil
		}
	}
	for start != "$" {
		cctx, cancel := r.timed(ctx, 0)
		msgs, err := r.rdb.XRangeN(cctx, r.key, start, "+", outcomeBatch).Result()
		cancel()
		if err != nil {
			return fmt.Errorf("read the outcome stream: %w", err)
		}
		if done, err := r.print(msgs); done || err != nil {
			return err
		}
		if len(msgs) > 0 {
			last = msgs[len(msgs)-1].ID
			start = "(" + last
		}
		if len(msgs) < outcomeBatch {
			break
		}
	}
	if !r.s.Follow {
		return nil
	}
	for ctx.Err() == nil {
		cctx, cancel := r.timed(ctx, followBlock)
		streams, err := r.rdb.XRead(cctx, &redis.XReadArgs{Streams: []string{r.key, last}, Count: outcomeBatch, Block: followBlock}).Result()
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, redis.Nil):
			continue
		case err != nil:
			return fmt.Errorf("read the outcome stream: %w", err)
		}
		for _, st := range streams {
			if done, err := r.print(st.Messages); done || err != nil {
				return err
			}
			if n := len(st.Messages); n > 0 {
				last = st.Messages[n-1].ID
			}
		}
	}
	return nil
}

// group reads as a consumer of group: this consumer's unacknowledged
// entries first (a reader that stopped before acknowledging), then new
// ones; each batch is acknowledged once printed and flushed.
func (r *outcomeReader) group(ctx context.Context, from string) error {
	start := from
	if start == "" {
		start = "$"
	}
	cctx, cancel := r.timed(ctx, 0)
	err := r.rdb.XGroupCreateMkStream(cctx, r.key, r.s.Group, start).Err()
	cancel()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create consumer group %q: %w", r.s.Group, err)
	}
	if err != nil && from != "" {
		// An existing group keeps its own position.
		fmt.Fprintf(r.stderr, "enqueue outcomes: group %s exists; --from is ignored, it goes on where it was\n", r.s.Group)
	}
	// "0" reads this consumer's pending entries (acknowledged ones leave
	// them); once none is left, ">" reads new ones.
	id := "0"
	for ctx.Err() == nil {
		block := time.Duration(-1) // no BLOCK: answer at once
		if id == ">" && r.s.Follow {
			block = followBlock
		}
		cctx, cancel := r.timed(ctx, max(block, 0))
		streams, err := r.rdb.XReadGroup(cctx, &redis.XReadGroupArgs{Group: r.s.Group, Consumer: r.s.Consumer,
			Streams: []string{r.key, id}, Count: outcomeBatch, Block: block}).Result()
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("read the outcome stream as group %q: %w", r.s.Group, err)
		}
		var msgs []redis.XMessage
		for _, st := range streams {
			msgs = append(msgs, st.Messages...)
		}
		switch {
		case len(msgs) > 0:
		case id == "0":
			id = ">"
			continue
		case r.s.Follow:
			continue
		default:
			return nil
		}
		if r.s.Count > 0 && len(msgs) > r.s.Count-r.printed {
			msgs = msgs[:r.s.Count-r.printed]
		}
		done, err := r.print(msgs)
		if err != nil {
			return err
		}
		ids := make([]string, len(msgs))
		for i, m := range msgs {
			ids[i] = m.ID
		}
		cctx, cancel = r.timed(ctx, 0)
		err = r.rdb.XAck(cctx, r.key, r.s.Group, ids...).Err()
		cancel()
		if err != nil {
			return fmt.Errorf("acknowledge %d entries: %w", len(ids), err)
		}
		if done {
			return nil
		}
	}
	return nil
}
