package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hibiken/asynq"

	"github.com/smsq/smsq/internal/genauth/genauthtest"
)

// sender is the yardstick smsq is weighed against: the sender a user would
// write in an afternoon on asynq. Its handler decodes the payload, POSTs it
// to GenAuth's send-sms and checks statusCode, with no reservation, no
// journal and no records; a failed call is retried by asynq.
type sender struct {
	hc    *http.Client
	url   string
	appID string
}

var _ asynq.Handler = (*sender)(nil)

// newSender returns a sender calling fake. Its HTTP client keeps an idle
// connection per handler goroutine, as a sender tuned for load would (Go's
// default of two per host would make it open a connection per call, and so
// flatter smsq).
func newSender(fake *genauthtest.Server, concurrency int) *sender {
	return &sender{
		hc: &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{MaxIdleConns: concurrency, MaxIdleConnsPerHost: concurrency},
		},
		url:   fake.URL() + genauthtest.Path,
		appID: fake.AppID(),
	}
}

// close drops the client's idle connections.
func (s *sender) close() { s.hc.CloseIdleConnections() }

// ProcessTask sends one task's code.
func (s *sender) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var req struct {
		Channel          string `json:"channel"`
		PhoneNumber      string `json:"phoneNumber"`
		PhoneCountryCode string `json:"phoneCountryCode,omitempty"`
	}
	if err := json.Unmarshal(t.Payload(), &req); err != nil {
		return fmt.Errorf("payload: %v: %w", err, asynq.SkipRetry)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set(genauthtest.PrefixGenAuth+"app-id", s.appID)
	resp, err := s.hc.Do(hreq)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var answer struct {
		StatusCode int    `json:"statusCode"`
		Message    string `json:"message"`
	}
	err = json.NewDecoder(resp.Body).Decode(&answer)
	_, _ = io.Copy(io.Discard, resp.Body) // keep the connection reusable
	if err != nil {
		return fmt.Errorf("send-sms: HTTP %d: %w", resp.StatusCode, err)
	}
	if answer.StatusCode != http.StatusOK {
		return fmt.Errorf("send-sms: statusCode %d: %s", answer.StatusCode, answer.Message)
	}
	return nil
}
