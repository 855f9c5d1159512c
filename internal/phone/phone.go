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
	"unicode"
	"unicode/utf8"

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
// input that did not parse. Only digits are hidden, in any script
// (full-width and Arabic-Indic digits are numbers to libphonenumber too); at
// most the first three and last four digits stay visible, fewer for short
// inputs.
func Mask(s string) string {
	if len(s) > maxInput {
		s = strings.ToValidUTF8(s[:maxInput], "")
	}
	var digits int
	for _, r := range s {
		if unicode.IsDigit(r) {
			digits++
		}
	}
	head, tail := visible(digits)
	var b strings.Builder
	i := 0
	for _, r := range s {
		if unicode.IsDigit(r) {
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

// punct is what libphonenumber accepts between the digits of a number
// (its VALID_PUNCTUATION without the letter x, plus the space forms).
const punct = `\-\x{2010}-\x{2015}\x{2212}\x{30FC}\x{FF0D}-\x{FF0F} \x{00A0}\x{00AD}\x{200B}\x{2060}\x{3000}()\x{FF08}\x{FF09}\x{FF3B}\x{FF3D}.\[\]/~\x{2053}\x{223C}\x{FF5E}`

// phoneLike matches what may be a phone number in free text: decimal digits
// of any script with the punctuation libphonenumber accepts between them.
var phoneLike = regexp.MustCompile(`[+\x{FF0B}]?\p{Nd}(?:[\p{Nd}` + punct + `]*\p{Nd})?`)

// MaskText hides what may be a phone number in s and replaces invalid
// UTF-8: for error messages, IDs and other free text that may echo user
// input. Outside IDs, every phone-like sequence of seven digits or more is
// masked. Inside an ID (a token of letters, digits, "-" and "_" holding a
// letter, such as a request ID or a task ID), digits are masked so that the
// ID stays readable and searchable while a phone hidden in it does not
// show (see maskInID).
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
		if l, r := tokenAround(s, m[0], m[1]); hasLetter(s[l:r]) {
			tok := s[l:r]
			b.WriteString(maskInID(run, isHexToken(tok), !hexUUID.MatchString(tok)))
			continue
		}
		if countDigits(run) < 7 {
			b.WriteString(run)
			continue
		}
		b.WriteString(maskRun(run))
	}
	b.WriteString(s[last:])
	return b.String()
}

// MaskID masks the phone numbers hidden in an ID (a task ID, a queue name,
// a request ID): a phone-like sequence, or a run of digits in it, that
// parses as a valid number, national for DefaultCountryCode or
// international. Other digits stay, so that "order-12345678" and UUIDs can
// still be searched and quoted; free text goes through MaskText instead.
// A canonical UUID in it is left whole, as Holds reads none as a number:
// its hex digits fall into runs that parse as some country's number in a
// few of every hundred random UUIDs, and an operator must be able to
// search a task ID or quote a requestId whole.
func MaskID(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	mask := func(part string) string {
		return phoneLike.ReplaceAllStringFunc(part, func(run string) string { return maskInID(run, true, true) })
	}
	uuids := hexUUID.FindAllStringIndex(s, -1)
	if uuids == nil {
		return mask(s)
	}
	var b strings.Builder
	last := 0
	for _, u := range uuids {
		b.WriteString(mask(s[last:u[0]]))
		b.WriteString(s[u[0]:u[1]])
		last = u[1]
	}
	b.WriteString(mask(s[last:]))
	return b.String()
}

// maskRun masks one phone-like run.
func maskRun(run string) string {
	if len(run) <= maxInput {
		return Mask(run)
	}
	// Too long to be one number: hide every digit.
	return strings.Map(func(r rune) rune {
		if unicode.IsDigit(r) {
			return '*'
		}
		return r
	}, run)
}

// maskInID masks a phone-like run found inside an ID. In a hex ID (a UUID,
// a request ID) digit runs are hex by chance, so they are masked only when
// they, or the run as a whole, parse as a phone number, or (deep) when a
// number is hidden inside a longer run ("C613800138000"). In any other ID
// ("login_13800138008_1") a run of seven digits or more is masked as in
// free text.
func maskInID(run string, hex, deep bool) string {
	if !hex {
		if countDigits(run) < 7 {
			return run
		}
		return maskRun(run)
	}
	if isPhone(run) {
		return maskRun(run)
	}
	var b strings.Builder
	start := -1
	flush := func(end int) {
		if start >= 0 {
			d := run[start:end]
			if isPhone(d) || deep && hidesPhone(d) {
				d = maskRun(d)
			}
			b.WriteString(d)
			start = -1
		}
	}
	for i, r := range run {
		if unicode.IsDigit(r) {
			if start < 0 {
				start = i
			}
			continue
		}
		flush(i)
		b.WriteRune(r)
	}
	flush(len(run))
	return b.String()
}

// isPhone reports whether the digits of s, seven or more, are a valid
// number: national for DefaultCountryCode, or international.
func isPhone(s string) bool {
	d := Digits(s)
	if len(d) < 7 || len(d) > 17 || strings.Trim(d, "0123456789") != "" {
		return false
	}
	for _, in := range []string{d, "+" + d} {
		if n, err := phonenumbers.Parse(in, "CN"); err == nil && phonenumbers.IsValidNumber(n) {
			return true
		}
	}
	return false
}

// hidesPhone reports whether a run of more than seven digits holds a
// valid number (as isPhone reads one) inside it, not at its ends only.
func hidesPhone(s string) bool {
	d := Digits(s)
	if len(d) <= 7 || len(d) > 32 || strings.Trim(d, "0123456789") != "" {
		return false
	}
	for i := 0; i+7 <= len(d); i++ {
		for j := min(len(d), i+17); j >= i+7; j-- {
			if (i > 0 || j < len(d)) && isPhone(d[i:j]) {
				return true
			}
		}
	}
	return false
}

// digitValue is the value of a decimal digit of any script.
func digitValue(r rune) int {
	// Unicode lays out every decimal digit block as 0..9 in order.
	for z := r; z >= r-9; z-- {
		if !unicode.IsDigit(z) {
			return int(r - z - 1)
		}
	}
	return int(r - (r - 9))
}

// tokenAround extends [i, j) over the ID characters around it.
func tokenAround(s string, i, j int) (int, int) {
	for i > 0 {
		r, n := utf8.DecodeLastRuneInString(s[:i])
		if !idRune(r) {
			break
		}
		i -= n
	}
	for j < len(s) {
		r, n := utf8.DecodeRuneInString(s[j:])
		if !idRune(r) {
			break
		}
		j += n
	}
	return i, j
}

func idRune(r rune) bool { return isLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_' }

func hasLetter(s string) bool { return strings.IndexFunc(s, isLetter) >= 0 }

// isHexToken reports whether an ID is hex groups joined by "-" or "_", like
// a UUID or a hex request ID.
func isHexToken(s string) bool {
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9', r >= 'a' && r <= 'f', r >= 'A' && r <= 'F', r == '-', r == '_':
		default:
			return false
		}
	}
	return true
}

func countDigits(s string) int {
	n := 0
	for _, r := range s {
		if unicode.IsDigit(r) {
			n++
		}
	}
	return n
}

func isLetter(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }

// Digits returns s with every phone-like sequence (any digit script, any
// punctuation libphonenumber allows) replaced by its ASCII digits, so that
// "１３８-0013/8000" becomes "13800138000": for checks that a number does
// not appear in some text in any form.
func Digits(s string) string {
	return phoneLike.ReplaceAllStringFunc(s, func(run string) string {
		var b strings.Builder
		for _, r := range run {
			if unicode.IsDigit(r) {
				b.WriteRune('0' + rune(digitValue(r)))
			}
		}
		return b.String()
	})
}
