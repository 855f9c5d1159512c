package guard

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/smsq/smsq/internal/phone"
)

// DefaultPrefix starts every key when Config.Prefix is empty.
const DefaultPrefix = "smsq"

// Every key carries the hash tag {guard}: one Cluster slot, so that one
// script sees every rule.

// CounterKey is the hash counting a rule's sends in one window: field
// <subject> holds the count, <subject>:l the subject's masked label.
//
//	<prefix>:{guard}:n:<rule>:<unit>:<window number>
func CounterKey(prefix, rule string, u Unit, bucket int64) string {
	return prefix + ":{guard}:n:" + rule + ":" + string(u) + ":" + strconv.FormatInt(bucket, 10)
}

// ConvKey is the hash counting sends (<subject>:s) and verified codes
// (<subject>:v) of ranges (kind "prefix") or countries (kind "country")
// in one conversion window.
//
//	<prefix>:{guard}:v:<kind>:<window number>
func ConvKey(prefix, kind string, bucket int64) string {
	return prefix + ":{guard}:v:" + kind + ":" + strconv.FormatInt(bucket, 10)
}

// BreakerKey is the hash of tripped breakers: field prefix:<hash> or
// country:<code>, value the breaker's state as JSON.
func BreakerKey(prefix string) string { return prefix + ":{guard}:breaker" }

// ExemptKey is the hash of numbers exempted at run time: field the phone
// hash, value the masked number.
func ExemptKey(prefix string) string { return prefix + ":{guard}:exempt" }

// ChannelsKey is the hash of channels whose codes the producer reports
// verified: field the channel, value the time of the last report (Unix
// ms). The breaker judges only these channels' sends.
func ChannelsKey(prefix string) string { return prefix + ":{guard}:verified" }

// ConfigKey holds the settings the workers run with, as JSON, for
// Client.Check and enqueue guard.
func ConfigKey(prefix string) string { return prefix + ":{guard}:config" }

// subjects names what one send is counted under: hashes for the phone,
// its range and the IP, the calling code for the country.
type subjects struct {
	phone, ip, prefix, country       string
	phoneLabel, ipLabel, prefixLabel string
}

// Hasher names phones, ranges and IPs in keys (dedupe.Hasher).
type Hasher interface {
	PhoneHash(s string) string
}

func subjectsOf(h Hasher, n phone.Number, clientIP string) subjects {
	s := subjects{
		phone:      h.PhoneHash(n.E164),
		phoneLabel: n.Masked(),
		country:    strings.TrimPrefix(n.CountryCode, "+"),
	}
	if r := RangeOf(n.E164); r != "" {
		s.prefix = h.PhoneHash("range:" + r)
		s.prefixLabel = MaskRange(n)
	}
	if ip, label, ok := normalizeIP(clientIP); ok {
		s.ip = h.PhoneHash("ip:" + ip)
		s.ipLabel = label
	}
	return s
}

// RangeOf is the number range of an E.164 number: the number without its
// last four digits ("+8613800138000" is in "+861380013").
func RangeOf(e164 string) string {
	if len(e164) < 8 {
		return ""
	}
	return e164[:len(e164)-4]
}

// MaskRange labels n's range for operators: the calling code, the first
// three national digits, the rest of the range hidden and its last four
// as x ("+86 138****xxxx").
func MaskRange(n phone.Number) string {
	nat := n.National
	if len(nat) <= 4 {
		return n.CountryCode + " " + strings.Repeat("x", len(nat))
	}
	head := min(3, len(nat)-4)
	return n.CountryCode + " " + nat[:head] + strings.Repeat("*", len(nat)-4-head) + "xxxx"
}

// normalizeIP returns the key form of a client IP (IPv4 as is, IPv6 by its
// /64, which one subscriber gets whole) and its masked label.
func normalizeIP(s string) (key, label string, ok bool) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return "", "", false
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		b := a.As4()
		return a.String(), strconv.Itoa(int(b[0])) + "." + strconv.Itoa(int(b[1])) + ".x.x", true
	}
	p, _ := a.Prefix(64)
	b := p.Addr().As16()
	label = strconv.FormatUint(uint64(b[0])<<8|uint64(b[1]), 16) + ":" + strconv.FormatUint(uint64(b[2])<<8|uint64(b[3]), 16) + ":x::/64"
	return p.String(), label, true
}
