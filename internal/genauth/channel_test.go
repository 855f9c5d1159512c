package genauth

import (
	"errors"
	"strings"
	"testing"
)

func TestChannels(t *testing.T) {
	t.Parallel()
	want := []Channel{
		ChannelLogin, ChannelRegister, ChannelResetPassword, ChannelBindPhone, ChannelUnbindPhone,
		ChannelBindMFA, ChannelVerifyMFA, ChannelUnbindMFA, ChannelCompletePhone,
		ChannelIdentityVerification, ChannelDeleteAccount,
	}
	got := Channels()
	if len(got) != len(want) {
		t.Fatalf("len(Channels()) = %d, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Channels()[%d] = %q, want %q", i, got[i], want[i])
		}
	}
	got[0] = "CHANNEL_CHANGED"
	if Channels()[0] != ChannelLogin {
		t.Fatalf("Channels() returned shared storage")
	}
}

func TestParseChannel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Channel
	}{
		{"CHANNEL_LOGIN", ChannelLogin},
		{"  channel_delete_account\n", ChannelDeleteAccount},
		{"Channel_Bind_MFA", ChannelBindMFA},
	}
	for _, tt := range tests {
		got, err := ParseChannel(tt.in)
		if err != nil || got != tt.want {
			t.Fatalf("ParseChannel(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "LOGIN", "CHANNEL_LOGIN_X", "CHANNEL LOGIN"} {
		_, err := ParseChannel(in)
		if !errors.Is(err, ErrUnknownChannel) {
			t.Fatalf("ParseChannel(%q) error = %v, want ErrUnknownChannel", in, err)
		}
		if msg := err.Error(); !strings.Contains(msg, `"`+in+`"`) || !strings.Contains(msg, "CHANNEL_DELETE_ACCOUNT") {
			t.Fatalf("ParseChannel(%q) error = %q, want it to name the input and list the channels", in, msg)
		}
	}
	// A phone number given as the channel is not echoed in clear.
	_, err := ParseChannel("+86 138 0013 8000")
	if !errors.Is(err, ErrUnknownChannel) || strings.Contains(err.Error(), "0013") {
		t.Fatalf("ParseChannel(phone) error = %v, want ErrUnknownChannel with the number masked", err)
	}
}

func TestValidLang(t *testing.T) {
	t.Parallel()
	for _, l := range []string{"zh-CN", "en-US", "ja-JP", "zh-TW"} {
		if !ValidLang(l) {
			t.Fatalf("ValidLang(%q) = false, want true", l)
		}
	}
	for _, l := range []string{"", "en", "EN-US", "fr-FR"} {
		if ValidLang(l) {
			t.Fatalf("ValidLang(%q) = true, want false", l)
		}
	}
}

func TestSendSMSRequestString(t *testing.T) {
	t.Parallel()
	r := SendSMSRequest{Channel: ChannelLogin, PhoneNumber: "13800138000", PhoneCountryCode: "+86", AccessToken: "secret-token"}
	s := r.String()
	if strings.Contains(s, "13800138000") || strings.Contains(s, "secret-token") {
		t.Fatalf("String() = %q, leaks the phone or the token", s)
	}
	if want := "channel=CHANNEL_LOGIN phone=+86138******00 authorization=set"; s != want {
		t.Fatalf("String() = %q, want %q", s, want)
	}
}
