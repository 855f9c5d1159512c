// Package phone turns what people type as a phone number into one canonical
// mobile number, so that one phone always maps to one reservation, and masks
// numbers for everything a person can read.
//
// Parsing and validation use github.com/nyaruka/phonenumbers, the Go port of
// Google's libphonenumber; this package never hand-rolls numbering rules.
package phone

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// DefaultCountryCode is used when neither the number nor the caller names a
// country, as GenAuth does.
const DefaultCountryCode = "+86"

// maxInput bounds the input handed to the parser; real numbers are far shorter.
const maxInput = 64

// ErrInvalid is wrapped by every error Parse returns.
var ErrInvalid = errors.New("invalid phone number")

// Number is a validated mobile number.
type Number struct {
	// E164 is the canonical form, e.g. "+8613800138000".
	E164 string
	// CountryCode is the calling code with its plus, e.g. "+86".
	CountryCode string
	// National is the national significant number, digits only, e.g. "13800138000".
	National string
}

// Parse validates input as a mobile number. input may be in E.164 form
// ("+8613800138000"), or national with ordinary formatting ("138 0013-8000",
// "(415) 555-2671") together with countryCode ("+86", "86", or "" for
// DefaultCountryCode). When input starts with "+" its own country code is
// used, and a countryCode that disagrees with it is an error.
func Parse(input, countryCode string) (Number, error) {
	raw := strings.TrimSpace(input)
	if raw == "" {
		return Number{}, fmt.Errorf("%w: phone number is empty", ErrInvalid)
	}
	if len(raw) > maxInput {
		return Number{}, fmt.Errorf("%w: phone number is %d characters long (at most %d)", ErrInvalid, len(raw), maxInput)
	}
	cc, err := parseCountryCode(countryCode)
	if err != nil {
		return Number{}, err
	}
	region := "ZZ"
	if !strings.HasPrefix(raw, "+") {
		if cc == 0 {
			cc = 86
		}
		// parseCountryCode accepted only assigned codes.
		region = phonenumbers.GetRegionCodeForCountryCode(cc)
	}
	num, err := phonenumbers.Parse(raw, region)
	if err != nil {
		return Number{}, fmt.Errorf("%w: %q: %v", ErrInvalid, Mask(raw), err)
	}
	got := int(num.GetCountryCode())
	if cc != 0 && got != cc {
		return Number{}, fmt.Errorf("%w: %q has country code +%d but phoneCountryCode is +%d", ErrInvalid, Mask(raw), got, cc)
	}
	// The number type is only known for valid numbers (UNKNOWN otherwise),
	// so one lookup answers both questions; IsValidNumber would run the
	// same pattern matching a second time on the hot path.
	switch phonenumbers.GetNumberType(num) {
	case phonenumbers.MOBILE, phonenumbers.FIXED_LINE_OR_MOBILE:
	case phonenumbers.UNKNOWN:
		return Number{}, fmt.Errorf("%w: %q is not a valid number for country code +%d", ErrInvalid, Mask(raw), got)
	default:
		return Number{}, fmt.Errorf("%w: %q is not a mobile number", ErrInvalid, Mask(raw))
	}
	return Number{
		E164:        phonenumbers.Format(num, phonenumbers.E164),
		CountryCode: "+" + strconv.Itoa(got),
		National:    phonenumbers.GetNationalSignificantNumber(num),
	}, nil
}

// parseCountryCode accepts "+86", "86", "0086" or "" (returns 0).
func parseCountryCode(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	digits := strings.TrimLeft(strings.TrimPrefix(s, "+"), "0")
	n, err := strconv.Atoi(digits)
	if err != nil || n <= 0 || n > 999 || len(digits) > 3 {
		return 0, fmt.Errorf("%w: phoneCountryCode %q is not a calling code like +86", ErrInvalid, Mask(s))
	}
	if phonenumbers.GetRegionCodeForCountryCode(n) == "ZZ" {
		return 0, fmt.Errorf("%w: phoneCountryCode %q is not an assigned calling code", ErrInvalid, s)
	}
	return n, nil
}

// String returns the masked form, so that a Number printed by mistake
// never leaks.
func (n Number) String() string { return n.Masked() }

// Masked returns the number with the middle of the national part hidden,
// e.g. "+86 138****8000".
func (n Number) Masked() string {
	return n.CountryCode + " " + Mask(n.National)
}

// Mask hides the middle of any string that may hold a phone number, for
// input that did not parse. Only digits are hidden; at most the first three
// and last four digits stay visible, fewer for short inputs.
func Mask(s string) string {
	if len(s) > maxInput {
		s = s[:maxInput]
	}
	var digits int
	for _, r := range s {
		if r >= '0' && r <= '9' {
			digits++
		}
	}
	head, tail := visible(digits)
	var b strings.Builder
	i := 0
	for _, r := range s {
		if r >= '0' && r <= '9' {
			if i >= head && i < digits-tail {
				r = '*'
			}
			i++
		}
		b.WriteRune(r)
	}
	return b.String()
}

// visible returns how many leading and trailing digits of a number with n
// digits may be shown: never more than half of them.
func visible(n int) (head, tail int) {
	switch {
	case n >= 11:
		return 3, 4
	case n >= 8:
		return 2, 2
	case n >= 4:
		return 0, 2
	default:
		return 0, 0
	}
}

// phoneLike matches what may be a phone number in free text: digits with
// the separators people type between them. MaskText hides it when it holds
// seven digits or more.
var phoneLike = regexp.MustCompile(`\+?[0-9][0-9 ()\-.]*[0-9]`)

// longRun is seven or more digits in a row.
var longRun = regexp.MustCompile(`[0-9]{7,}`)

// MaskText hides the middle of every digit sequence of seven or more
// digits in s (separators allowed) and replaces invalid UTF-8: for error
// messages and other free text that may echo user input.
// A sequence touching a letter is part of a token such as a request ID
// ("8bb8-599647fc"), and is hidden only when it holds seven digits in a
// row, so that IDs stay readable for support requests.
func MaskText(s string) string {
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
			b.WriteString(Mask(run))
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
