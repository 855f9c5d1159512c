package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/smsq/smsq/internal/batch"
	"github.com/smsq/smsq/internal/phone"
)

// smsRequest is the body of POST /v1/sms and one line of a batch: the task
// contract's fields plus queue, delay and sendWithin. Unknown fields are
// ignored; null is the same as absent.
type smsRequest struct {
	Channel          string `json:"channel"`
	PhoneNumber      string `json:"phoneNumber"`
	PhoneCountryCode string `json:"phoneCountryCode"`
	ClientIP         string `json:"clientIp"`
	Lang             string `json:"lang"`
	OnHeld           string `json:"onHeld"`
	SendBy           string `json:"sendBy"`
	Queue            string `json:"queue"`
	Delay            string `json:"delay"`
	SendWithin       string `json:"sendWithin"`
	// IdempotencyKey is read from batch lines only; POST /v1/sms takes the
	// Idempotency-Key header.
	IdempotencyKey string `json:"idempotencyKey"`
}

// fieldError is a request error about one field.
type fieldError struct {
	field, msg string
}

func (e *fieldError) Error() string { return e.msg }

// decodeRequest parses one JSON object. The error names the field at
// fault (a value of the wrong type) or the body (not an object).
func decodeRequest(data []byte) (smsRequest, error) {
	var r smsRequest
	return r, decodeObject(data, &r)
}

// decodeObject parses one JSON object of string fields into v, with
// decodeRequest's errors.
func decodeObject(data []byte, v any) error {
	err := json.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return &fieldError{"", "body: want a JSON object, got " + te.Value}
		}
		field, _, _ := strings.Cut(te.Field, ".")
		return &fieldError{field, fmt.Sprintf("%s: want a string, got %s", field, te.Value)}
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &fieldError{"", fmt.Sprintf("body: not JSON: %s at byte %d", se.Error(), se.Offset)}
	}
	return &fieldError{"", "body: " + phone.MaskText(err.Error())}
}

// record turns a request into a batch record (line is its line number,
// 0 for POST /v1/sms). Times and durations are parsed here; every other
// field is validated by smsq.Prepare, as for Send and enqueue batch.
func (r smsRequest) record(line int, source string) batch.Record {
	rec := batch.Record{
		Line: line, Channel: r.Channel, Phone: r.PhoneNumber, CountryCode: r.PhoneCountryCode,
		ClientIP: r.ClientIP, Lang: r.Lang, IdempotencyKey: r.IdempotencyKey, Queue: r.Queue,
		OnHeld: r.OnHeld, Source: source,
	}
	var errs []string
	dur := func(name, s string) time.Duration {
		if s == "" {
			return 0
		}
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			errs = append(errs, fmt.Sprintf("%s: %q is not a duration such as 90s or 5m", name, phone.MaskText(s)))
		case d < 0:
			errs = append(errs, fmt.Sprintf("%s: %s is negative", name, s))
		}
		return d
	}
	rec.Delay = dur("delay", r.Delay)
	rec.SendWithin = dur("sendWithin", r.SendWithin)
	if r.SendBy != "" {
		t, err := time.Parse(time.RFC3339Nano, r.SendBy)
		if err != nil {
			errs = append(errs, fmt.Sprintf("sendBy: %q is not an RFC 3339 time such as 2026-01-02T15:04:05Z", phone.MaskText(r.SendBy)))
		}
		rec.SendBy = t
		if r.SendWithin != "" {
			errs = append(errs, "sendWithin: give sendBy or sendWithin, not both")
		}
	}
	if len(errs) > 0 {
		rec.Err = errors.New(strings.Join(errs, "; "))
	}
	return rec
}
