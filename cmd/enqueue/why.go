package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/config"
	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/history"
	"github.com/smsq/smsq/internal/phone"
	"github.com/smsq/smsq/internal/redisconn"
	"github.com/smsq/smsq/internal/tasks"
)

// whySettings holds the settings of enqueue why.
type whySettings struct {
	RedisURL    string
	HashKey     string
	Phone       string
	CountryCode string
	Channel     string
	Task        string
	Queue       string
	Limit       int
	JSON        bool
	Timeout     time.Duration
}

func bindWhy(set *config.Set, s *whySettings) {
	set.Secret(&s.RedisURL, "redis-url", "REDIS_URL", defaultRedisURL, "Redis URL, as for the worker")
	set.Secret(&s.HashKey, "phone-hash-key", "SMSQ_PHONE_HASH_KEY", "", "the workers' phone hash key, as for the worker")
	set.String(&s.Phone, "phone", "", "", "phone number: E.164 or national with --country-code")
	set.String(&s.CountryCode, "country-code", "", "", "calling code for a national number (default +86)")
	set.String(&s.Channel, "channel", "", "", "only this channel (default: all)")
	set.String(&s.Task, "task", "", "", "task ID (or idempotency key) to explain instead of a phone")
	set.String(&s.Queue, "queue", "", "", "the task's queue (default: the one in its history, then critical, default, low, then every other queue)")
	set.Int(&s.Limit, "limit", "", 10, "how many recent tasks of the phone to show")
	set.Bool(&s.JSON, "json", "", false, "print JSON instead of text")
	set.Duration(&s.Timeout, "timeout", "SMSQ_ENQUEUE_TIMEOUT", 5*time.Second, "give up when Redis does not answer within this")
}

const whyUsage = `usage: enqueue why [flags] --phone P [--country-code CC] [--channel CH]
       enqueue why [flags] --task ID [--queue Q]

Shows why a phone got no code: the reservation of each channel and the
phone's recent tasks with their outcomes; or what became of one task, from
smsq's history and from asynq. Phone numbers are always masked.

`

// runWhy is enqueue why.
func runWhy(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var s whySettings
	set := config.NewSet("enqueue why", getenv, stderr)
	bindWhy(set, &s)
	setUsage(set, whyUsage)
	if err := parseArgs(set, args); err != nil {
		return err
	}
	if set.FlagSet().NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", set.FlagSet().Arg(0))}
	}
	switch {
	case (s.Phone == "") == (s.Task == ""):
		return usageError{errors.New("give either --phone or --task")}
	case s.Task != "" && (s.CountryCode != "" || s.Channel != ""):
		return usageError{errors.New("--country-code and --channel go with --phone, not --task")}
	case s.Phone != "" && s.Queue != "":
		return usageError{errors.New("--queue goes with --task, not --phone")}
	case s.Limit < 1:
		return usageError{fmt.Errorf("--limit %d: must be at least 1", s.Limit)}
	case s.Timeout <= 0:
		return usageError{fmt.Errorf("--timeout %s: must be positive", s.Timeout)}
	}
	hasher, err := dedupe.NewHasher([]byte(s.HashKey))
	if err != nil {
		return usageError{fmt.Errorf("SMSQ_PHONE_HASH_KEY: %w", err)}
	}
	var (
		num      phone.Number
		channels = genauth.Channels()
	)
	if s.Phone != "" {
		if num, err = phone.Parse(s.Phone, s.CountryCode); err != nil {
			return usageError{fmt.Errorf("--phone: %w", err)}
		}
		if s.Channel != "" {
			ch, err := genauth.ParseChannel(s.Channel)
			if err != nil {
				return usageError{fmt.Errorf("--channel: %w", err)}
			}
			channels = []genauth.Channel{ch}
		}
	}

	rdb, err := openRedis(s.RedisURL)
	if err != nil {
		return err
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("cannot reach Redis: %w (is the worker's Redis running? REDIS_URL)", err)
	}
	hist, err := history.New(history.Config{Client: rdb})
	if err != nil {
		return err
	}

	var report interface {
		text(w io.Writer, now time.Time)
		mask()
	}
	if s.Phone != "" {
		resv, err := dedupe.New(dedupe.Config{Client: rdb, Hasher: hasher})
		if err != nil {
			return err
		}
		report, err = phoneWhy(ctx, resv, hist, num, channels, s.Limit)
		if err != nil {
			return err
		}
	} else {
		report, err = taskWhy(ctx, rdb, hist, s.Task, s.Queue)
		if err != nil {
			return err
		}
	}
	// Task IDs, queue names and texts come from producers and GenAuth: a
	// phone hidden in them is masked in both forms of the report.
	report.mask()
	if s.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(report)
	}
	report.text(stdout, time.Now())
	return nil
}

// taskView is one task's latest recorded attempt, from the history store.
type taskView struct {
	TaskID        string    `json:"taskId"`
	Outcome       string    `json:"outcome"`
	Final         bool      `json:"final"`
	UpdatedAt     time.Time `json:"updatedAt"`
	Channel       string    `json:"channel,omitempty"`
	Phone         string    `json:"phone,omitempty"`
	Queue         string    `json:"queue,omitempty"`
	Attempt       int       `json:"attempt,omitempty"`
	Reason        string    `json:"reason,omitempty"`
	Holder        string    `json:"holder,omitempty"`
	ReservedForMS int64     `json:"reservedForMs,omitempty"`
	RetryInMS     int64     `json:"retryInMs,omitempty"`
	HTTPStatus    int       `json:"httpStatus,omitempty"`
	StatusCode    int       `json:"statusCode,omitempty"`
	APICode       int       `json:"apiCode,omitempty"`
	Message       string    `json:"message,omitempty"`
	RequestID     string    `json:"requestId,omitempty"`
	Rule          string    `json:"rule,omitempty"`
	LiftsAt       time.Time `json:"liftsAt,omitzero"`
	SendBy        time.Time `json:"sendBy,omitzero"`
	Sandbox       bool      `json:"sandbox,omitempty"`
}

func newTaskView(e history.Entry) taskView {
	v := taskView{TaskID: e.TaskID, Outcome: e.Outcome, Final: e.Final, UpdatedAt: e.UpdatedAt.UTC()}
	var r tasks.Result
	if len(e.Result) > 0 && json.Unmarshal(e.Result, &r) == nil {
		v.Channel, v.Phone, v.Queue, v.Attempt = r.Channel, r.Phone, r.Queue, r.Attempt
		v.Reason, v.Holder, v.ReservedForMS, v.RetryInMS = r.Reason, r.Holder, r.ReservedForMS, r.RetryInMS
		v.HTTPStatus, v.StatusCode, v.APICode = r.HTTPStatus, r.StatusCode, r.APICode
		v.Message, v.RequestID, v.SendBy, v.Sandbox = r.Message, r.RequestID, r.SendBy, r.Sandbox
		v.Rule, v.LiftsAt = r.Rule, r.LiftsAt
	}
	return v
}

// mask masks what producers and GenAuth wrote: IDs and names where they
// hide a phone (phone.MaskID), free text where it may echo one.
func (v *taskView) mask() {
	v.TaskID, v.Queue, v.Holder, v.RequestID = phone.MaskID(v.TaskID), phone.MaskID(v.Queue), phone.MaskID(v.Holder), phone.MaskID(v.RequestID)
	v.Reason, v.Message = phone.MaskText(v.Reason), phone.MaskText(v.Message)
}

func (r *phoneReport) mask() {
	for i := range r.Reservations {
		r.Reservations[i].Owner = phone.MaskID(r.Reservations[i].Owner)
	}
	for i := range r.Recent {
		r.Recent[i].mask()
	}
}

func (r *taskReport) mask() {
	r.TaskID = phone.MaskID(r.TaskID)
	if r.History != nil {
		r.History.mask()
	}
	for i := range r.Others {
		r.Others[i].mask()
	}
	for i, q := range r.Searched {
		r.Searched[i] = phone.MaskID(q)
	}
	if a := r.Asynq; a != nil {
		a.Queue, a.LastError = phone.MaskID(a.Queue), phone.MaskText(a.LastError)
		if v, err := decodeKeepNumbers(a.Result); err == nil {
			if b, err := json.Marshal(phone.MaskJSON(v)); err == nil {
				a.Result = b
			}
		}
	}
}

// decodeKeepNumbers decodes b keeping numbers as written.
func decodeKeepNumbers(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	return v, dec.Decode(&v)
}

func (v taskView) text(w io.Writer, now time.Time, indent string) {
	final := "not final"
	if v.Final {
		final = "final"
	}
	if v.Sandbox {
		final += ", SANDBOX: no SMS sent"
	}
	fmt.Fprintf(w, "%s%s  %s (%s)  task %s", indent, stamp(v.UpdatedAt, now), v.Outcome, final, v.TaskID)
	if v.Channel != "" {
		fmt.Fprintf(w, "  %s", v.Channel)
	}
	if v.Queue != "" {
		fmt.Fprintf(w, "  queue %s", v.Queue)
	}
	if v.Attempt > 0 {
		fmt.Fprintf(w, "  attempt %d", v.Attempt)
	}
	fmt.Fprintln(w)
	in := indent + "    "
	if v.Reason != "" {
		fmt.Fprintf(w, "%sreason: %s\n", in, v.Reason)
	}
	if v.Holder != "" {
		held := "held by task " + v.Holder
		if v.Holder == "genauth" {
			held = "GenAuth's own one-minute rule refused the send"
		}
		if v.ReservedForMS > 0 {
			held += fmt.Sprintf(", %s left then", (time.Duration(v.ReservedForMS) * time.Millisecond).Round(time.Second/10))
		}
		fmt.Fprintf(w, "%sreservation: %s\n", in, held)
	}
	if v.Outcome == tasks.OutcomeBlocked {
		// The abuse guard's rule; no GenAuth call was made.
		until := "lifts only when the workers' guard settings change"
		if !v.LiftsAt.IsZero() {
			until = "until " + stamp(v.LiftsAt, now)
		}
		fmt.Fprintf(w, "%sguard: blocked by the %s rule, %s (enqueue guard lists and lifts blocks)\n", in, v.Rule, until)
	} else if v.RetryInMS > 0 {
		fmt.Fprintf(w, "%snext attempt: %s after this one\n", in, time.Duration(v.RetryInMS)*time.Millisecond)
	}
	if v.HTTPStatus != 0 || v.StatusCode != 0 || v.RequestID != "" {
		var parts []string
		if v.HTTPStatus != 0 {
			parts = append(parts, fmt.Sprintf("HTTP %d", v.HTTPStatus))
		}
		if v.StatusCode != 0 {
			parts = append(parts, fmt.Sprintf("statusCode %d", v.StatusCode))
		}
		if v.APICode != 0 {
			parts = append(parts, fmt.Sprintf("apiCode %d", v.APICode))
		}
		if v.Message != "" {
			parts = append(parts, fmt.Sprintf("message %q", v.Message))
		}
		if v.RequestID != "" {
			parts = append(parts, "requestId "+v.RequestID)
		}
		fmt.Fprintf(w, "%sgenauth: %s\n", in, strings.Join(parts, ", "))
	}
	if v.Rule != "" && v.Outcome != tasks.OutcomeBlocked {
		// What smsq made of the answer, in SMSQ_CLASSIFY's form.
		fmt.Fprintf(w, "%srule: %s\n", in, v.Rule)
	}
}

// reservationView is one held (phone, channel) reservation.
type reservationView struct {
	Channel string    `json:"channel"`
	Owner   string    `json:"owner"`
	State   string    `json:"state"`
	TTLMS   int64     `json:"ttlMs"`
	Since   time.Time `json:"since"`
}

// phoneReport answers "why was no code sent to this phone?".
type phoneReport struct {
	Phone        string            `json:"phone"`
	Channels     []string          `json:"channels"`
	Reservations []reservationView `json:"reservations"`
	Recent       []taskView        `json:"recent"`
}

func phoneWhy(ctx context.Context, resv *dedupe.Store, hist *history.Store, num phone.Number, channels []genauth.Channel, limit int) (*phoneReport, error) {
	rep := &phoneReport{Phone: num.Masked(), Reservations: []reservationView{}, Recent: []taskView{}}
	only := map[string]bool{}
	for _, ch := range channels {
		rep.Channels = append(rep.Channels, string(ch))
		only[string(ch)] = true
		r, ok, err := resv.Get(ctx, num.E164, string(ch))
		if err != nil {
			return nil, err
		}
		if ok {
			rep.Reservations = append(rep.Reservations, reservationView{
				Channel: string(ch), Owner: r.Owner, State: string(r.State), TTLMS: r.TTL.Milliseconds(), Since: r.Since.UTC(),
			})
		}
	}
	// With one channel, read the whole kept index and filter, so that other
	// channels' tasks do not push this one's out of the limit.
	n := limit
	if len(channels) == 1 {
		n = 0
	}
	entries, err := hist.Recent(ctx, resv.PhoneHash(num.E164), n)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		v := newTaskView(e)
		if len(channels) == 1 && v.Channel != "" && !only[v.Channel] {
			continue
		}
		if len(rep.Recent) < limit {
			rep.Recent = append(rep.Recent, v)
		}
	}
	return rep, nil
}

func (r *phoneReport) text(w io.Writer, now time.Time) {
	fmt.Fprintf(w, "phone %s\n\n", r.Phone)
	fmt.Fprintln(w, "reservations (while one is held, new codes on its channel are deduplicated or deferred):")
	for _, v := range r.Reservations {
		fmt.Fprintf(w, "  %s  %s  task %s  since %s  %s left\n", v.Channel, v.State, v.Owner, stamp(v.Since, now),
			(time.Duration(v.TTLMS) * time.Millisecond).Round(time.Second/10))
	}
	switch free := len(r.Channels) - len(r.Reservations); {
	case len(r.Channels) == 1 && free == 1:
		fmt.Fprintf(w, "  none on %s\n", r.Channels[0])
	case free > 0 && len(r.Reservations) == 0:
		fmt.Fprintf(w, "  none on any of the %d channels\n", free)
	case free > 0:
		fmt.Fprintf(w, "  none on the other %d channels\n", free)
	}
	fmt.Fprintln(w)
	if len(r.Recent) == 0 {
		fmt.Fprintln(w, "recent tasks: none kept (history lasts SMSQ_RETENTION, 24h by default): the code was not enqueued, went to another Redis, or the workers use another SMSQ_PHONE_HASH_KEY")
		return
	}
	fmt.Fprintln(w, "recent tasks, newest first:")
	for _, v := range r.Recent {
		v.text(w, now, "  ")
	}
}

// asynqView is asynq's own record of a task.
type asynqView struct {
	Queue         string          `json:"queue"`
	State         string          `json:"state"`
	Retried       int             `json:"retried"`
	MaxRetry      int             `json:"maxRetry"`
	LastError     string          `json:"lastError,omitempty"`
	LastFailedAt  time.Time       `json:"lastFailedAt,omitzero"`
	NextProcessAt time.Time       `json:"nextProcessAt,omitzero"`
	CompletedAt   time.Time       `json:"completedAt,omitzero"`
	Result        json.RawMessage `json:"result,omitempty"`
}

// taskReport answers "what became of this task?".
type taskReport struct {
	TaskID  string     `json:"taskId"`
	History *taskView  `json:"history"`
	Asynq   *asynqView `json:"asynq"`
	// Searched lists the queues asked when asynq no longer has the task.
	Searched []string `json:"searched,omitempty"`
	// Others are tasks enqueued under the same ID that were not run as
	// this one (a raw producer reusing a TaskID in another queue).
	Others []taskView `json:"others,omitempty"`
}

func taskWhy(ctx context.Context, rdb redis.UniversalClient, hist *history.Store, id, queue string) (*taskReport, error) {
	rep := &taskReport{TaskID: id}
	all, err := hist.Entries(ctx, id)
	if err != nil {
		return nil, err
	}
	queues := []string{queue}
	for _, e := range all {
		v := newTaskView(e)
		if e.Collision != "" {
			rep.Others = append(rep.Others, v)
		} else {
			rep.History = &v
		}
	}
	if queue == "" {
		queues = []string{tasks.QueueCritical, tasks.QueueDefault, tasks.QueueLow}
		if rep.History != nil && rep.History.Queue != "" {
			queues = append([]string{rep.History.Queue}, without(queues, rep.History.Queue)...)
		}
	}
	if queue == "" {
		more, err := queuesHolding(ctx, rdb, id, queues)
		if err != nil {
			return nil, err
		}
		queues = append(queues, more...)
	}
	ins := asynq.NewInspectorFromRedisClient(rdb)
	for _, q := range queues {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		info, err := ins.GetTaskInfo(q, id)
		if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("asynq: %w", err)
		}
		rep.Asynq = &asynqView{
			Queue: info.Queue, State: info.State.String(), Retried: info.Retried, MaxRetry: info.MaxRetry,
			LastError: info.LastErr, LastFailedAt: info.LastFailedAt.UTC(), CompletedAt: info.CompletedAt.UTC(),
		}
		if !info.NextProcessAt.IsZero() {
			rep.Asynq.NextProcessAt = info.NextProcessAt.UTC()
		}
		// The result is the handler's tasks.Result: phone masked.
		if json.Valid(info.Result) {
			rep.Asynq.Result = info.Result
		}
		break
	}
	if rep.Asynq == nil {
		rep.Searched = queues
	}
	if rep.History == nil && rep.Asynq == nil && len(rep.Others) == 0 {
		return nil, fmt.Errorf("task %q: no history (kept SMSQ_RETENTION, 24h by default) and not in queue %s", id, strings.Join(queues, ", "))
	}
	return rep, nil
}

func without(list []string, s string) []string {
	var out []string
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

func (r *taskReport) text(w io.Writer, now time.Time) {
	fmt.Fprintf(w, "task %s\n\n", r.TaskID)
	if r.History != nil {
		fmt.Fprintln(w, "history (latest attempt):")
		if r.History.Phone != "" {
			fmt.Fprintf(w, "  phone %s\n", r.History.Phone)
		}
		r.History.text(w, now, "  ")
	} else {
		fmt.Fprintln(w, "history: none (no attempt yet, or older than SMSQ_RETENTION)")
	}
	fmt.Fprintln(w)
	if len(r.Others) > 0 {
		fmt.Fprintln(w, "other tasks under this ID (not run: the ID already named the task above):")
		for _, o := range r.Others {
			if o.Phone != "" {
				fmt.Fprintf(w, "  phone %s\n", o.Phone)
			}
			o.text(w, now, "  ")
		}
		fmt.Fprintln(w)
	}
	a := r.Asynq
	if a == nil {
		fmt.Fprintf(w, "asynq: not in queue %s (deleted, or its retention ended)\n", strings.Join(r.Searched, ", "))
		return
	}
	fmt.Fprintf(w, "asynq: queue %s, state %s, retried %d of %d\n", a.Queue, a.State, a.Retried, a.MaxRetry)
	if a.LastError != "" {
		fmt.Fprintf(w, "  last error: %s (%s)\n", a.LastError, stamp(a.LastFailedAt, now))
	}
	if !a.NextProcessAt.IsZero() && (a.State == "scheduled" || a.State == "retry") {
		fmt.Fprintf(w, "  next run: %s\n", stamp(a.NextProcessAt, now))
	}
	if !a.CompletedAt.IsZero() {
		fmt.Fprintf(w, "  completed: %s\n", stamp(a.CompletedAt, now))
	}
	if len(a.Result) > 0 {
		fmt.Fprintf(w, "  result: %s\n", a.Result)
	}
}

// stamp prints t with its distance from now.
func stamp(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t).Round(time.Second)
	rel := d.String() + " ago"
	if d < 0 {
		rel = "in " + (-d).String()
	}
	return t.UTC().Format(time.RFC3339) + " (" + rel + ")"
}

// openRedis opens the client of a read-only command: a short dial timeout,
// so that a Redis that is down fails the command within seconds.
func openRedis(rawURL string) (redis.UniversalClient, error) {
	rdb, err := redisconn.Open(rawURL, redisconn.Options{DialTimeout: 2 * time.Second})
	if err != nil {
		return nil, usageError{fmt.Errorf("REDIS_URL: %w", err)}
	}
	return rdb, nil
}
