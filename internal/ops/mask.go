package ops

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/smsq/smsq/internal/phone"
)

// maxShown bounds what the UI shows of one payload, result or message.
const maxShown = 4 << 10

// phoneLike matches what may be a phone number in free text: digits with
// the separators people type between them. MaskText hides it when it holds
// seven digits or more.
var phoneLike = regexp.MustCompile(`\+?[0-9][0-9 ()\-.]*[0-9]`)

// longRun is seven or more digits in a row.
var longRun = regexp.MustCompile(`[0-9]{7,}`)

// MaskText hides the middle of every digit sequence of seven or more
// digits in s (separators allowed), clips s, and replaces invalid UTF-8.
// A sequence touching a letter is part of a token such as a request ID
// ("8bb8-599647fc"), and is hidden only when it holds seven digits in a
// row, so that IDs stay readable for support requests.
func MaskText(s string) string {
	if len(s) > maxShown {
		s = s[:maxShown] + "…"
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	idx := phoneLike.FindAllStringIndex(s, -1)
	if idx == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for _, m := range idx {
		run := s[m[0]:m[1]]
		b.WriteString(s[last:m[0]])
		last = m[1]
		if !hides(run, (m[0] > 0 && isLetter(s[m[0]-1])) || (m[1] < len(s) && isLetter(s[m[1]]))) {
			b.WriteString(run)
			continue
		}
		if len(run) <= 64 {
			b.WriteString(phone.Mask(run))
			continue
		}
		// Too long to be one number: hide every digit.
		b.WriteString(strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return '*'
			}
			return r
		}, run))
	}
	b.WriteString(s[last:])
	return b.String()
}

// hides reports whether a phone-like run must be masked.
func hides(run string, inToken bool) bool {
	if inToken {
		return longRun.MatchString(run)
	}
	digits := 0
	for i := 0; i < len(run); i++ {
		if run[i] >= '0' && run[i] <= '9' {
			digits++
		}
	}
	return digits >= 7
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' }

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
		if pn, ok := m["phoneNumber"].(string); ok {
			cc, _ := m["phoneCountryCode"].(string)
			if n, err := phone.Parse(pn, cc); err == nil {
				m["phoneNumber"] = n.Masked()
			}
		}
	}
	return encode(maskValue("", v))
}

// MaskResult renders a task result for people. Results hold a masked phone
// already; every value still passes through MaskText in case a message
// from GenAuth or a reason echoes a number.
func MaskResult(result []byte) string {
	v, ok := decode(result)
	if !ok {
		return MaskText(string(result))
	}
	return encode(maskValue("", v))
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

// maskValue masks strings and long numbers in v. Timestamps stay readable
// (their nanoseconds are nine digits), and so do numbers under keys ending
// in "Ms", which are durations.
func maskValue(key string, v any) any {
	switch x := v.(type) {
	case string:
		if _, err := time.Parse(time.RFC3339Nano, x); err == nil {
			return x
		}
		return MaskText(x)
	case json.Number:
		if strings.HasSuffix(key, "Ms") || strings.HasSuffix(key, "MS") {
			return x
		}
		if s := MaskText(x.String()); s != x.String() {
			return s
		}
		return x
	case map[string]any:
		for k, e := range x {
			x[k] = maskValue(k, e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = maskValue(key, e)
		}
		return x
	default:
		return v
	}
}
