package phone

import (
	"errors"
	"fmt"
	"math/rand/v2"
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

// TestMaskTextForms checks MaskText against every way a number can be
// written that libphonenumber accepts (and smsq would send), inside IDs and
// not, and that IDs without a phone stay whole.
func TestMaskTextForms(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		// Free text, every digit script and separator libphonenumber takes.
		{"call 13800138020 now", "call 138****8020 now"},
		{"１３８００１３８０２０", "１３８****８０２０"},
		{"١٣٨٠٠١٣٨٠٣٢", "١٣٨****٨٠٣٢"},
		{"۱۳۸۰۰۱۳۸۰۳۳", "۱۳۸****۸۰۳۳"},
		{"138/0013/8021", "138/****/8021"},
		{"138~0013~8021", "138~****~8021"},
		{"[138]0013[8021]", "[138]****[8021]"},
		{"138－0013－8021", "138－****－8021"},
		{"138\u30000013\u30008021", "138\u3000****\u30008021"},
		{"＋８６ １３８ ００１３ ８０００", "＋８６ １** **** ８０００"},
		{"phoneNumber: +86 138 0013 8000", "phoneNumber: +86 1** **** 8000"},
		{"(415) 555-2671", "(41*) ***-**71"},
		// IDs that hold no phone stay whole, so that they can be searched.
		{`"requestId":"78a1c91f-fedc-4d2b-b07d-46c281234534"`, `"requestId":"78a1c91f-fedc-4d2b-b07d-46c281234534"`},
		{`"holder":"ea47a577-d8bb-4312-3405-0123456789ab"`, `"holder":"ea47a577-d8bb-4312-3405-0123456789ab"`},
		{"requestId 80662045-af6a-419f-b0a2-17213814b4c5", "requestId 80662045-af6a-419f-b0a2-17213814b4c5"},
		{"task 8bb8-599647fc", "task 8bb8-599647fc"},
		{"HTTP 200, statusCode 400, apiCode 12004, attempt 3 of 25", "HTTP 200, statusCode 400, apiCode 12004, attempt 3 of 25"},
		// A phone hidden in an ID does not show.
		{"login_13800138008_1", "login_138****8008_1"},
		{"login-138-0013-8008", "login-138-****-8008"},
		{"00000000-0000-0000-0000-013800138000", "000*****-****-****-****-********8000"},
		{"abcdef00-0000-0000-0000-013800138000", "abcdef00-0000-0000-0000-013*****8000"},
		{"abc-138-0013-8000", "abc-138-****-8000"},
		{"deadbeef13800138000", "deadbeef138****8000"},
		{"cafe_8613800138000", "cafe_861******8000"},
		{"login_１３８００１３８０２０", "login_１３８****８０２０"},
		{"queue13800138040", "queue138****8040"},
		// A number hidden inside a longer run of a hex-looking token.
		{`channel: "C613800138000" is not one of`, `channel: "C613*****8000" is not one of`},
		{"beef9913800138000", "beef991******8000"},
	}
	for _, tt := range tests {
		if got := MaskText(tt.in); got != tt.want {
			t.Errorf("MaskText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestMaskTextHidesEverySendableForm builds numbers Parse accepts in every
// form and checks that MaskText leaves none of them readable, alone or
// inside an ID.
func TestMaskTextHidesEverySendableForm(t *testing.T) {
	t.Parallel()
	digits := map[string]rune{"ascii": '0', "full-width": '０', "arabic-indic": '٠', "persian": '۰'}
	seps := []string{"", " ", "-", "/", "~", "[", "]", ".", "(", "－", "\u3000", "\u2010"}
	for name, zero := range digits {
		sendable := 0
		for _, sep := range seps {
			var b strings.Builder
			for i, c := range "13800138000" {
				if i == 3 || i == 7 {
					b.WriteString(sep)
				}
				b.WriteRune(zero + (c - '0'))
			}
			num := b.String()
			if _, err := Parse(num, ""); err != nil {
				continue // not sendable: nothing to hide
			}
			sendable++
			for _, in := range []string{num, "x " + num, "login_" + num + "_1", "abc-" + num, "\"" + num + "\""} {
				got := MaskText(in)
				if shown := countDigits(got) - countDigits(strings.Replace(in, num, "", 1)); shown > 7 {
					t.Errorf("%s digits, separator %q: MaskText(%q) = %q shows %d of its digits", name, sep, in, got, shown)
				}
			}
		}
		if sendable == 0 {
			t.Errorf("no %s form parsed: the test checks nothing", name)
		}
	}
}

func TestMaskID(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"78a1c91f-fedc-4d2b-b07d-46c281234534": "78a1c91f-fedc-4d2b-b07d-46c281234534",
		"order-12345678":                       "order-12345678",
		"1234567890":                           "1234567890",
		"critical":                             "critical",
		"login_13800138008_1":                  "login_138****8008_1",
		"13800138040":                          "138****8040",
		"uk-447911123456":                      "uk-447*****3456",
		"reg-138/0013/8021":                    "reg-138/****/8021",
		"q-١٣٨٠٠١٣٨٠٣٢":                        "q-١٣٨****٨٠٣٢",
		"C613800138000":                        "C613*****8000",
	}
	for in, want := range tests {
		if got := MaskID(in); got != want {
			t.Errorf("MaskID(%q) = %q, want %q", in, got, want)
		}
	}
}

// Random UUIDs (asynq's task IDs, GenAuth's requestIds) are never
// garbled: their digit runs parse as some country's number now and then.
func TestMaskIDKeepsRandomUUIDs(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var b [16]byte
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		b[6] = b[6]&0x0f | 0x40
		b[8] = b[8]&0x3f | 0x80
		u := fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
		if got := MaskID(u); got != u {
			t.Fatalf("MaskID(%q) = %q, want the UUID whole", u, got)
		}
		if got := MaskID("task " + u + " of login_13800138008_1"); got != "task "+u+" of login_138****8008_1" {
			t.Fatalf("MaskID around a UUID = %q", got)
		}
	}
}
