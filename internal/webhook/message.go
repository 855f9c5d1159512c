package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/smsq/smsq/internal/outcome"
	"github.com/smsq/smsq/internal/phone"
)

// Message is one event as it is posted: the same ID, type and body on every
// attempt and to every endpoint.
type Message struct {
	// ID is the webhook-id header: the same for every retry of the event,
	// so that a receiver can drop a repeat.
	ID string `json:"id"`
	// Type is "sms." followed by the outcome.
	Type string `json:"type"`
	// Body is the JSON body, exactly as signed and sent.
	Body json.RawMessage `json:"body"`
}

// envelope is the body: the Standard Webhooks payload structure.
type envelope struct {
	Type      string        `json:"type"`
	Timestamp string        `json:"timestamp"`
	Data      outcome.Event `json:"data"`
}

// outcomeName is what an outcome may look like to become part of a type.
var outcomeName = regexp.MustCompile(`^[a-z][a-z_]{0,31}$`)

// NewMessage makes the message of e: its text fields are masked again (a
// raw producer's task ID or a GenAuth message may hold a number) and its
// ID is derived from the task and its outcome, so that the event has one
// ID however often its entry is read.
func NewMessage(e outcome.Event) (Message, error) {
	if !outcomeName.MatchString(e.Outcome) {
		return Message{}, fmt.Errorf("outcome %q: not an outcome name", phone.MaskText(e.Outcome))
	}
	for name, n := range map[string]int64{"attempts": int64(e.Attempts), "statusCode": int64(e.StatusCode),
		"apiCode": int64(e.APICode), "retryInMs": e.RetryInMS} {
		// A number cannot be masked: one that reads as a phone number is a
		// writer's mistake, and the entry is not sent.
		if holds(strconv.FormatInt(n, 10)) {
			return Message{}, fmt.Errorf("%s: holds a phone number", name)
		}
	}
	id := MessageID(e.TaskID, e.Outcome)
	e = Scrub(e)
	ts := e.FinishedAt
	if ts.IsZero() {
		ts = time.Now()
	}
	body, err := json.Marshal(envelope{Type: "sms." + e.Outcome, Timestamp: ts.UTC().Format(time.RFC3339Nano), Data: e})
	if err != nil {
		return Message{}, err
	}
	return Message{ID: id, Type: "sms." + e.Outcome, Body: body}, nil
}

// MessageID is the webhook-id of a task's outcome: "msg_" and a hash, so
// that a phone number in a raw producer's task ID never shows in it.
func MessageID(taskID, outcomeName string) string {
	sum := sha256.Sum256([]byte("smsq webhook\x00" + taskID + "\x00" + outcomeName))
	return "msg_" + base64.RawURLEncoding.EncodeToString(sum[:18])
}

// Scrub masks every phone number that can hide in an event's text: IDs as
// phone.MaskID does, free text as phone.MaskText, and, should a number
// still be found (phone.Holds), every digit of the field.
func Scrub(e outcome.Event) outcome.Event {
	e.TaskID = scrub(e.TaskID, phone.MaskID)
	e.Key = scrub(e.Key, phone.MaskID)
	e.Queue = scrub(e.Queue, phone.MaskID)
	e.Channel = scrub(e.Channel, phone.MaskID)
	e.Rule = scrub(e.Rule, phone.MaskText)
	e.RequestID = scrub(e.RequestID, phone.MaskID)
	e.Reason = scrub(e.Reason, phone.MaskText)
	// The phone is masked already; a careless writer's full number is not.
	e.Phone = scrub(e.Phone, func(s string) string {
		if holds(s) {
			return phone.Mask(s)
		}
		return s
	})
	// A hash is hex, which MaskID could take for a number by chance.
	if !hexHash.MatchString(e.PhoneHash) {
		e.PhoneHash = scrub(e.PhoneHash, phone.MaskID)
	}
	return e
}

// hexHash is what the keyed phone hash looks like.
var hexHash = regexp.MustCompile(`^[0-9a-f]{16,128}$`)

// holds reports whether s holds a phone number in any digit script:
// phone.Holds reads the numbers libphonenumber parses, phone.MaskID masks
// a valid number in any script phone.Digits reads.
func holds(s string) bool { return phone.Holds(s) || phone.MaskID(s) != s }

func scrub(s string, mask func(string) string) string {
	s = mask(strings.ToValidUTF8(s, "\uFFFD"))
	if holds(s) {
		s = strings.Map(func(r rune) rune {
			if unicode.IsDigit(r) {
				return '*'
			}
			return r
		}, s)
	}
	return s
}

// Sign returns the webhook-signature header of one attempt: "v1," and the
// base64 HMAC-SHA256 of "id.timestamp.body" under each secret, separated
// by spaces.
func Sign(id string, timestamp int64, body []byte, secrets []Secret) string {
	ts := strconv.FormatInt(timestamp, 10)
	sigs := make([]string, len(secrets))
	for i, s := range secrets {
		mac := hmac.New(sha256.New, s.key)
		mac.Write([]byte(id))
		mac.Write([]byte{'.'})
		mac.Write([]byte(ts))
		mac.Write([]byte{'.'})
		mac.Write(body)
		sigs[i] = "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	}
	return strings.Join(sigs, " ")
}
