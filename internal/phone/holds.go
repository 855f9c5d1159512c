package phone

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"
)

// MinHeldDigits is the fewest digits a run must have for Holds to read it
// as a phone number: no mobile number anywhere is shorter.
const MinHeldDigits = 7

// separators are libphonenumber's punctuation inside numbers (spaces,
// dashes, dots, slashes, brackets, tildes, their full-width forms), less
// the "x" of extensions.
var separators = strings.Replace(phonenumbers.VALID_PUNCTUATION, "x", "", 1)

// digitRun is a run of Unicode decimal digits, optionally after a plus,
// split by at most three separators at a time.
var digitRun = regexp.MustCompile(`[+\x{FF0B}]?\p{Nd}+(?:[` + separators + `]{1,3}\p{Nd}+)*`)

// hexUUID is a UUID in its canonical form: an opaque ID by construction.
var hexUUID = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)

// token is a run of letters and digits.
var token = regexp.MustCompile(`[\p{L}\p{Nd}]+`)

// hexToken is a hexadecimal token of 16 characters or more with a letter
// in it: a hash or a random ID.
var hexToken = regexp.MustCompile(`^[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*$`)

// Holds reports whether s holds a phone number: whether a run of its
// digits, in any Unicode digit form, is a mobile number Parse accepts,
// read as a national number of DefaultCountryCode, or with its country
// code (after "+", "00", or none). A run may be split by the separators
// people type inside numbers ("138-0013-8000", "138/0013/8000"), except
// where it touches a letter: inside a token such as "login13800138000" or
// a hex ID, only digits in a row count. Canonical UUIDs and hex tokens of
// 16 or more characters (hashes) are opaque IDs and never hold one.
//
// Producers use it to refuse idempotency keys and queue names that would
// put a phone number into Redis key names, logs, metrics and the UI, which
// cannot be masked there. Reading runs as real numbers rather than
// counting digits keeps order numbers, dates and timestamps
// ("order-20261202-0001", "job-1764689400123") usable as keys.
func Holds(s string) bool {
	s = hexUUID.ReplaceAllLiteralString(s, " ")
	s = token.ReplaceAllStringFunc(s, func(t string) string {
		if len(t) >= 16 && hexToken.MatchString(t) {
			return " "
		}
		return t
	})
	for _, m := range digitRun.FindAllStringIndex(s, -1) {
		run := s[m[0]:m[1]]
		if touchesLetter(s, m[0], m[1]) {
			for _, piece := range consecutive.FindAllString(run, -1) {
				if isNumber(asciiDigits(piece)) {
					return true
				}
			}
			continue
		}
		if isNumber(asciiDigits(run)) {
			return true
		}
	}
	return false
}

// asciiDigits returns the decimal digits of s, of any script, as ASCII
// digits. (libphonenumber's NormalizeDigitsOnly keeps the digits of
// scripts it has no mapping for, such as Devanagari and Thai, as they are.)
func asciiDigits(s string) string {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if unicode.IsDigit(r) {
			b = append(b, byte('0'+digitValue(r)))
		}
	}
	return string(b)
}

// consecutive is digits in a row.
var consecutive = regexp.MustCompile(`\p{Nd}+`)

// touchesLetter reports whether s[i:j] has a letter right before or after it.
func touchesLetter(s string, i, j int) bool {
	before, _ := utf8.DecodeLastRuneInString(s[:i])
	after, _ := utf8.DecodeRuneInString(s[j:])
	return unicode.IsLetter(before) || unicode.IsLetter(after)
}

// isNumber reports whether the ASCII digits d are a mobile number in one
// of the readings Holds documents.
func isNumber(d string) bool {
	if len(d) < MinHeldDigits || len(d) > maxInput {
		return false
	}
	if _, err := Parse(d, DefaultCountryCode); err == nil {
		return true
	}
	if _, err := Parse("+"+d, ""); err == nil {
		return true
	}
	if rest, ok := strings.CutPrefix(d, "00"); ok {
		if _, err := Parse("+"+rest, ""); err == nil {
			return true
		}
	}
	return false
}
