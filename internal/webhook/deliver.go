package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/smsq/smsq/internal/phone"
)

// TypeDeliver is the asynq task type of one delivery to one endpoint, and
// Queue the queue those tasks live in, served only by workers that have
// webhooks configured.
const (
	TypeDeliver = "smsq:webhook"
	Queue       = "smsq-webhooks"
)

// Delivery limits.
const (
	// DefaultTimeout bounds one attempt: connect, TLS, and the answer.
	DefaultTimeout = 10 * time.Second
	// MaxAnswer is how much of an answer's body is read.
	MaxAnswer = 64 << 10
	// UserAgent is sent with every delivery.
	UserAgent = "smsq-webhook/1"
)

// payload is a delivery task's payload: which endpoint, and the message.
// The URL stays out of Redis; the endpoint is named by its ID.
type payload struct {
	Endpoint string `json:"endpoint"`
	// TaskID is the send task's ID, masked, for log lines.
	TaskID string `json:"taskId,omitempty"`
	Message
}

// DelivererConfig configures a Deliverer.
type DelivererConfig struct {
	Endpoints []Endpoint
	// Secrets sign every delivery, one signature each; required.
	Secrets []Secret
	// Disabled is the shared record of disabled endpoints; required.
	Disabled *Disabled
	// Client posts the deliveries; default NewHTTPClient(Guard{},
	// DefaultTimeout), which refuses internal addresses.
	Client  *http.Client
	Metrics *Metrics
	Logger  *zerolog.Logger
	// Now is the clock of webhook-timestamp; default time.Now.
	Now func() time.Time
}

// Deliverer is the asynq handler of TypeDeliver tasks.
type Deliverer struct {
	endpoints map[string]Endpoint
	secrets   []Secret
	disabled  *Disabled
	client    *http.Client
	metrics   *Metrics
	log       zerolog.Logger
	now       func() time.Time
}

var _ asynq.Handler = (*Deliverer)(nil)

// NewDeliverer returns a Deliverer for cfg.
func NewDeliverer(cfg DelivererConfig) (*Deliverer, error) {
	if len(cfg.Secrets) == 0 {
		return nil, errors.New("webhook: Secrets are required")
	}
	if cfg.Disabled == nil {
		return nil, errors.New("webhook: Disabled is required")
	}
	d := &Deliverer{endpoints: map[string]Endpoint{}, secrets: cfg.Secrets, disabled: cfg.Disabled,
		client: cfg.Client, metrics: cfg.Metrics, log: zerolog.Nop(), now: cfg.Now}
	for _, ep := range cfg.Endpoints {
		d.endpoints[ep.ID] = ep
	}
	if d.client == nil {
		d.client = NewHTTPClient(Guard{}, DefaultTimeout)
	}
	if cfg.Logger != nil {
		d.log = *cfg.Logger
	}
	if d.now == nil {
		d.now = time.Now
	}
	return d, nil
}

// attemptResult is what one attempt wrote on the task (asynq's result,
// shown by the Inspector and asynqmon).
type attemptResult struct {
	Result     string    `json:"result"`
	Status     int       `json:"status,omitempty"`
	Error      string    `json:"error,omitempty"`
	Attempt    int       `json:"attempt"`
	At         time.Time `json:"at"`
	DurationMS int64     `json:"durationMs"`
}

// ProcessTask makes one delivery attempt. It returns nil when the endpoint
// took the event, an error wrapping asynq.SkipRetry when the delivery is
// over without it (4xx, 410, refused address, disabled endpoint), and a
// plain error to be retried along the schedule otherwise.
func (d *Deliverer) ProcessTask(ctx context.Context, t *asynq.Task) error {
	if t.Type() != TypeDeliver {
		return fmt.Errorf("webhook: task type %q is not %s: %w", phone.MaskText(t.Type()), TypeDeliver, asynq.SkipRetry)
	}
	var p payload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.ID == "" || len(p.Body) == 0 {
		return fmt.Errorf("webhook: payload does not parse: %w", asynq.SkipRetry)
	}
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	log := d.log.With().Str("webhook_id", p.ID).Str("event", p.Type).Str("task_id", p.TaskID).
		Str("endpoint_id", p.Endpoint).Int("attempt", retried+1).Logger()
	ep, ok := d.endpoints[p.Endpoint]
	if !ok {
		// Another worker's configuration, during a change of endpoints:
		// a worker that knows it may take the retry.
		log.Warn().Msg("webhook endpoint not configured on this worker; retrying later")
		return errors.New("webhook: endpoint not configured on this worker")
	}
	log = log.With().Str("endpoint", ep.String()).Logger()
	note, err := d.disabled.Get(ctx, ep)
	if err != nil {
		return fmt.Errorf("webhook: read disabled endpoints: %w", err)
	}
	if note != nil {
		d.metrics.delivery(ep.Host, ResultDisabled, 0)
		d.record(t, attemptResult{Result: ResultDisabled, Attempt: retried + 1, At: d.now()})
		log.Error().Time("disabled_at", note.At).Msg("webhook not delivered: endpoint disabled after 410 Gone")
		return fmt.Errorf("webhook: endpoint %s disabled since %s (410 Gone): %w", ep, note.At.Format(time.RFC3339), asynq.SkipRetry)
	}

	start := time.Now()
	status, err := d.post(ctx, ep, p.Message)
	took := time.Since(start)
	res := attemptResult{Status: status, Attempt: retried + 1, At: d.now().UTC(), DurationMS: took.Milliseconds()}
	log = log.With().Int("status", status).Dur("duration", took).Logger()
	var final error
	switch {
	case err != nil && (errors.Is(err, ErrRefused) || errors.Is(err, ErrRedirect)):
		res.Result, res.Error = ResultRefused, err.Error()
		final = fmt.Errorf("webhook: %s: %w: %w", ep, err, asynq.SkipRetry)
	case err != nil:
		res.Result, res.Error = ResultRetry, err.Error()
		final = fmt.Errorf("webhook: %s: %w", ep, err)
	case status >= 200 && status < 300:
		res.Result = ResultDelivered
	case status == http.StatusGone:
		res.Result = ResultGone
		if derr := d.disabled.Disable(ctx, ep, status, d.now()); derr != nil {
			log.Error().Err(derr).Msg("cannot record the endpoint as disabled")
		}
		final = fmt.Errorf("webhook: %s answered 410 Gone; endpoint disabled: %w", ep, asynq.SkipRetry)
	case status == http.StatusTooManyRequests || status >= 500:
		res.Result = ResultRetry
		final = fmt.Errorf("webhook: %s answered %d", ep, status)
	default:
		res.Result = ResultRejected
		final = fmt.Errorf("webhook: %s answered %d: %w", ep, status, asynq.SkipRetry)
	}
	if res.Result == ResultRetry && retried >= maxRetry {
		res.Result = ResultExhausted
	}
	if err != nil {
		res.Error = phone.MaskText(err.Error())
	}
	d.metrics.delivery(ep.Host, res.Result, took)
	d.record(t, res)
	switch res.Result {
	case ResultDelivered:
		log.Info().Msg("webhook delivered")
	case ResultRetry:
		log.Warn().Err(final).Msg("webhook delivery failed; retrying later")
	case ResultGone:
		log.Error().Msg("webhook endpoint answered 410 Gone: disabled for every worker until a restart or until its entry is removed from " + DisabledKey("smsq"))
	default:
		log.Error().Err(final).Str("result", res.Result).Msg("webhook not delivered")
	}
	return final
}

// post makes one attempt and returns the answer's status.
func (d *Deliverer) post(ctx context.Context, ep Endpoint, m Message) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL.String(), bytes.NewReader(m.Body))
	if err != nil {
		return 0, err
	}
	ts := d.now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set("webhook-id", m.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", Sign(m.ID, ts, m.Body, d.secrets))
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, unwrapURL(err)
	}
	defer resp.Body.Close()
	// The answer's body is of no use beyond draining a little of it, so
	// that a small answer leaves the connection reusable.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxAnswer))
	return resp.StatusCode, nil
}

// unwrapURL drops the *url.Error wrapper, whose message quotes the URL
// (and with it any token it carries), keeping the cause.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err
	}
	return err
}

func (d *Deliverer) record(t *asynq.Task, r attemptResult) {
	w := t.ResultWriter()
	if w == nil {
		return
	}
	b, _ := json.Marshal(r)
	_, _ = w.Write(b)
}
