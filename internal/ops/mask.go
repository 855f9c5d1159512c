package ops

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/smsq/smsq/internal/phone"
)

// maxShown bounds what the UI shows of one payload, result or message.
const maxShown = 4 << 10

// MaskText hides every phone-like sequence of s (see phone.MaskText) and
// clips s to what the UI shows.
func MaskText(s string) string {
	if len(s) > maxShown {
		s = s[:maxShown] + "…"
	}
	return phone.MaskText(s)
}

// MaskPayload renders a task payload for people: phoneNumber (with
// phoneCountryCode) becomes the masked number, e.g. "+86 138****8000", and
// every other value passes through MaskText. A payload that is not JSON
// is shown as masked text, never raw.
func MaskPayload(payload []byte) string {
	v, ok := decode(payload)
	if !ok {
		return MaskText(string(payload))
	}
	if m, ok := v.(map[string]any); ok {
		// Keys as the worker reads them: encoding/json matches field names
		// ignoring case, so "PHONENUMBER" is the phone too.
		var cc string
		for k, e := range m {
			if s, ok := e.(string); ok && strings.EqualFold(k, "phoneCountryCode") {
				cc = s
			}
		}
		for k, e := range m {
			if pn, ok := e.(string); ok && strings.EqualFold(k, "phoneNumber") {
				if n, err := phone.Parse(pn, cc); err == nil {
					m[k] = n.Masked()
				}
			}
		}
	}
	return encode(phone.MaskJSON(v))
}

// MaskResult renders a task result for people. Results hold a masked phone
// already; every value still passes through MaskText in case a message
// from GenAuth or a reason echoes a number.
func MaskResult(result []byte) string {
	v, ok := decode(result)
	if !ok {
		return MaskText(string(result))
	}
	return encode(phone.MaskJSON(v))
}

func decode(b []byte) (any, bool) {
	if !utf8.Valid(b) {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return nil, false
	}
	return v, true
}

func encode(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "(unprintable)"
	}
	if len(b) > maxShown {
		return strings.ToValidUTF8(string(b[:maxShown]), "") + "…"
	}
	return string(b)
}
