package tasks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/phone"
)

// TypeSendSMS is the asynq task type of every smsq task. It is part of the
// contract with producers: never change it.
const TypeSendSMS = "genauth:send_sms"

// MaxPayloadSize is the largest payload accepted. Real payloads are a few
// hundred bytes; anything larger is a producer bug, not an SMS.
const MaxPayloadSize = 4 << 10

// MaxIdempotencyKeyLen bounds idempotency keys, which become asynq task IDs.
const MaxIdempotencyKeyLen = 128

// ErrInvalidPayload is wrapped by every error Decode and Validate return.
var ErrInvalidPayload = errors.New("invalid payload")

// Held-reservation policies: what a task does when another task holds its
// (phone, channel) reservation.
const (
	// OnHeldDedupe completes the task as deduplicated: the code already on
	// its way is still valid.
	OnHeldDedupe = "dedupe"
	// OnHeldDefer runs the task again when the reservation expires.
	OnHeldDefer = "defer"
)

// Payload is the JSON body of a genauth:send_sms task. The first three
// fields are GenAuth's own request fields; a payload with only them is
// complete. Every other field is optional, and fields are only ever added,
// so payloads already waiting in Redis keep working.
type Payload struct {
	// Channel is one of GenAuth's eleven SMS channels, e.g. CHANNEL_LOGIN.
	Channel string `json:"channel"`
	// PhoneNumber is the number: E.164 ("+8613800138000") or national with
	// ordinary formatting ("138 0013 8000").
	PhoneNumber string `json:"phoneNumber"`
	// PhoneCountryCode is the calling code ("+86") for a national number;
	// empty means +86, as in GenAuth.
	PhoneCountryCode string `json:"phoneCountryCode,omitempty"`

	// ClientIP is the end user's IP address, forwarded as x-real-ip so that
	// GenAuth's per-IP limits see the user and not the worker.
	ClientIP string `json:"clientIp,omitempty"`
	// Lang is the language of the SMS template: zh-CN, en-US, ja-JP or zh-TW.
	Lang string `json:"lang,omitempty"`
	// IdempotencyKey, when set, is the asynq task ID: enqueueing the same key
	// twice is refused while the first task is retained.
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
	// SendBy is the deadline: past it the SMS is not sent and the task ends
	// as expired. Zero means EnqueuedAt (or the first attempt) plus the
	// worker's default.
	SendBy time.Time `json:"sendBy,omitzero"`
	// EnqueuedAt is set by NewTask.
	EnqueuedAt time.Time `json:"enqueuedAt,omitzero"`
	// OnHeld is the held-reservation policy for this task: "dedupe" or
	// "defer"; empty means the worker's default.
	OnHeld string `json:"onHeld,omitempty"`
	// Source names the producer that queued the task, for the record: the
	// HTTP API puts "api:<key name>" here (never the key's secret).
	Source string `json:"source,omitempty"`
}

// MaxSourceLen bounds Payload.Source.
const MaxSourceLen = 80

// Validated is a payload whose fields have been checked and normalised.
type Validated struct {
	Payload
	Phone   phone.Number
	Channel genauth.Channel
	// Queue is the queue NewTask puts the task in; not part of the payload.
	Queue string
}

// Decode parses a task payload. Unknown fields are ignored, so a newer
// producer never breaks an older worker.
func Decode(data []byte) (Payload, error) {
	var p Payload
	if len(data) > MaxPayloadSize {
		return p, fmt.Errorf("%w: payload is %d bytes, at most %d", ErrInvalidPayload, len(data), MaxPayloadSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return p, fmt.Errorf("%w: payload is empty", ErrInvalidPayload)
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return p, fmt.Errorf("%w: payload is not a JSON object of the send_sms contract: %v", ErrInvalidPayload, err)
	}
	return p, nil
}

// Validate checks every field and returns the normalised payload. Each
// error names the field and the value at fault (phone numbers masked).
func (p Payload) Validate() (Validated, error) {
	var v Validated
	var errs []error
	ch, err := genauth.ParseChannel(p.Channel) // masks what it quotes
	if err != nil {
		errs = append(errs, fmt.Errorf("channel: %w", err))
	}
	num, err := phone.Parse(p.PhoneNumber, p.PhoneCountryCode)
	if err != nil {
		errs = append(errs, fmt.Errorf("phoneNumber: %w", err))
	}
	if p.ClientIP != "" {
		if err := genauth.CheckClientIP(p.ClientIP); err != nil {
			errs = append(errs, fmt.Errorf("clientIp: %q %v", echoIP(p.ClientIP), err))
		}
	}
	if p.Lang != "" && !genauth.ValidLang(p.Lang) {
		errs = append(errs, fmt.Errorf("lang: %q is not one of %s", phone.MaskText(p.Lang), strings.Join(genauth.Langs, ", ")))
	}
	if err := ValidateIdempotencyKey(p.IdempotencyKey); err != nil {
		errs = append(errs, err)
	}
	switch p.OnHeld {
	case "", OnHeldDedupe, OnHeldDefer:
	default:
		errs = append(errs, fmt.Errorf("onHeld: %q is not %q or %q", phone.MaskText(p.OnHeld), OnHeldDedupe, OnHeldDefer))
	}
	if err := validateSource(p.Source); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return v, fmt.Errorf("%w: %s", ErrInvalidPayload, strings.Join(msgs, "; "))
	}
	v.Payload = p
	v.Phone = num
	v.Channel = ch
	v.Payload.Channel = string(ch)
	v.Payload.PhoneNumber = num.National
	v.Payload.PhoneCountryCode = num.CountryCode
	return v, nil
}

// ValidateIdempotencyKey checks a key that will become an asynq task ID.
func ValidateIdempotencyKey(key string) error {
	if key == "" {
		return nil
	}
	if len(key) > MaxIdempotencyKeyLen {
		return fmt.Errorf("idempotencyKey: %d characters, at most %d", len(key), MaxIdempotencyKeyLen)
	}
	for _, r := range key {
		if r < 0x21 || r > 0x7e {
			if phone.Holds(key) {
				// Full-width or other digits: do not quote it at all.
				return errors.New("idempotencyKey: may hold only printable ASCII without spaces, and holds a phone number")
			}
			return fmt.Errorf("idempotencyKey: %q may hold only printable ASCII without spaces", phone.MaskText(key))
		}
	}
	return nil
}

// validateSource checks Payload.Source: printable ASCII, bounded, and not
// quoted back when it holds anything else.
func validateSource(s string) error {
	if len(s) > MaxSourceLen {
		return fmt.Errorf("source: %d characters, at most %d", len(s), MaxSourceLen)
	}
	for _, r := range s {
		if r < 0x21 || r > 0x7e {
			return errors.New("source: may hold only printable ASCII without spaces")
		}
	}
	return nil
}

// Encode returns the JSON form of the validated payload.
func (v Validated) Encode() ([]byte, error) {
	return json.Marshal(v.Payload)
}

// ipShaped is what an attempt at an IP address looks like: four dotted
// groups of digits, or hex groups with at least two colons.
var ipShaped = regexp.MustCompile(`^[0-9]*(\.[0-9]*){3}$|^[0-9a-fA-F.]*:[0-9a-fA-F.]*:[0-9a-fA-F:.]*$`)

// echoIP returns a bad clientIp for an error message: as given when it is
// shaped like an IP address (so that "10.0.0.300" stays readable), masked
// otherwise, since a phone number put in the wrong field must not be
// echoed in clear.
func echoIP(s string) string {
	if ipShaped.MatchString(s) {
		return s
	}
	return phone.MaskText(s)
}
