package phone

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		input, cc string
		want      string
		wantCC    string
		wantNat   string
	}{
		{"+8613800138000", "", "+8613800138000", "+86", "13800138000"},
		{"13800138000", "", "+8613800138000", "+86", "13800138000"},
		{"13800138000", "+86", "+8613800138000", "+86", "13800138000"},
		{"138 0013 8000", "86", "+8613800138000", "+86", "13800138000"},
		{"138-0013-8000", "0086", "+8613800138000", "+86", "13800138000"},
		{" +86 (138) 0013-8000 ", "+86", "+8613800138000", "+86", "13800138000"},
		{"(201) 555-0123", "+1", "+12015550123", "+1", "2015550123"},
		{"+44 7911 123456", "", "+447911123456", "+44", "7911123456"},
		{"07911 123456", "+44", "+447911123456", "+44", "7911123456"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.input, tt.cc)
		if err != nil {
			t.Errorf("Parse(%q, %q): %v", tt.input, tt.cc, err)
			continue
		}
		if got.E164 != tt.want || got.CountryCode != tt.wantCC || got.National != tt.wantNat {
			t.Errorf("Parse(%q, %q) = %+v, want %s %s %s", tt.input, tt.cc, got, tt.want, tt.wantCC, tt.wantNat)
		}
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		input, cc string
		mention   string
	}{
		{"", "", "empty"},
		{"12345", "", "not a valid number"},
		{"not a phone", "", "not a phone"},
		{"+8613800138000", "+1", "country code +86 but phoneCountryCode is +1"},
		{"+8613800138000", "0044", "phoneCountryCode is +44"},
		{"13800138000", "+999", "calling code"},
		{"13800138000", "abc", "calling code"},
		{"+86 10 6552 9988", "", "not a mobile number"}, // Beijing fixed line
		{strings.Repeat("1", 100), "", "at most"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.input, tt.cc)
		if err == nil {
			t.Errorf("Parse(%q, %q) = nil error, want one mentioning %q", tt.input, tt.cc, tt.mention)
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q, %q) error %v does not wrap ErrInvalid", tt.input, tt.cc, err)
		}
		if !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("Parse(%q, %q) error %q does not mention %q", tt.input, tt.cc, err, tt.mention)
		}
	}
}

func TestErrorsNeverHoldTheFullNumber(t *testing.T) {
	t.Parallel()
	tests := []struct{ input, cc, full string }{
		{"+86 10 6552 9988", "", "1065529988"},
		{"123", "13800138000", "13800138000"},
		{"+8613800138000", "+13800138000", "13800138000"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.input, tt.cc)
		if err == nil || strings.Contains(strings.ReplaceAll(err.Error(), " ", ""), tt.full) {
			t.Errorf("Parse(%q, %q) error %v shows the full number", tt.input, tt.cc, err)
		}
	}
}

func TestMasked(t *testing.T) {
	t.Parallel()
	n, err := Parse("+8613800138000", "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := n.Masked(), "+86 138****8000"; got != want {
		t.Fatalf("Masked() = %q, want %q", got, want)
	}
	if got := n.String(); got != n.Masked() {
		t.Fatalf("String() = %q, want the masked form", got)
	}
	tests := map[string]string{
		"13800138000":     "138****8000",
		"+1 201-555-0123": "+1 20*-***-0123",
		"12345678":        "12****78",
		"123":             "***",
		"abc":             "abc",
	}
	for in, want := range tests {
		if got := Mask(in); got != want {
			t.Errorf("Mask(%q) = %q, want %q", in, got, want)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("138 0013 8000", "+86"); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"+8613800138000", "138 0013 8000", "(201) 555-0123", "", "+", "++86", "0086138"} {
		f.Add(s, "")
		f.Add(s, "+86")
	}
	f.Fuzz(func(t *testing.T, input, cc string) {
		n, err := Parse(input, cc)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		again, err := Parse(n.E164, "")
		if err != nil || again != n {
			t.Fatalf("Parse(%q) = %+v, %v; reparsing E.164 gave %+v", input, n, err, again)
		}
	})
}
