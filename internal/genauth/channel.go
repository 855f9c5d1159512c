package genauth

import (
	"errors"
	"fmt"
	"strings"

	"github.com/smsq/smsq/internal/phone"
)

// Channel names the purpose of an SMS. GenAuth keeps a separate one-minute
// send limit per channel and rejects codes checked on a different channel
// than the one they were sent on.
type Channel string

// The channels GenAuth accepts, as listed in its send-sms reference.
const (
	ChannelLogin                Channel = "CHANNEL_LOGIN"
	ChannelRegister             Channel = "CHANNEL_REGISTER"
	ChannelResetPassword        Channel = "CHANNEL_RESET_PASSWORD"
	ChannelBindPhone            Channel = "CHANNEL_BIND_PHONE"
	ChannelUnbindPhone          Channel = "CHANNEL_UNBIND_PHONE"
	ChannelBindMFA              Channel = "CHANNEL_BIND_MFA"
	ChannelVerifyMFA            Channel = "CHANNEL_VERIFY_MFA"
	ChannelUnbindMFA            Channel = "CHANNEL_UNBIND_MFA"
	ChannelCompletePhone        Channel = "CHANNEL_COMPLETE_PHONE"
	ChannelIdentityVerification Channel = "CHANNEL_IDENTITY_VERIFICATION"
	ChannelDeleteAccount        Channel = "CHANNEL_DELETE_ACCOUNT"
)

var channels = [...]Channel{
	ChannelLogin,
	ChannelRegister,
	ChannelResetPassword,
	ChannelBindPhone,
	ChannelUnbindPhone,
	ChannelBindMFA,
	ChannelVerifyMFA,
	ChannelUnbindMFA,
	ChannelCompletePhone,
	ChannelIdentityVerification,
	ChannelDeleteAccount,
}

// ErrUnknownChannel is wrapped by the error ParseChannel returns for a name
// that is not one of [Channels].
var ErrUnknownChannel = errors.New("genauth: unknown channel")

// Channels returns every channel GenAuth accepts, in the order of its
// reference. The slice is a fresh copy the caller may modify.
func Channels() []Channel {
	out := make([]Channel, len(channels))
	copy(out, channels[:])
	return out
}

// Valid reports whether c is one of [Channels], spelled exactly.
func (c Channel) Valid() bool {
	for _, k := range channels {
		if c == k {
			return true
		}
	}
	return false
}

// String returns the channel's wire name.
func (c Channel) String() string { return string(c) }

// ParseChannel returns the channel named s. Surrounding spaces and lower
// case are accepted because the names usually come from configuration or
// from another service's payload; the result is always the upper-case wire
// name. An unknown name gives an error wrapping [ErrUnknownChannel] that
// lists the valid ones, so the person who typed it can fix it at once; the
// name it quotes has any phone-like digits masked.
func ParseChannel(s string) (Channel, error) {
	c := Channel(strings.ToUpper(strings.TrimSpace(s)))
	if c.Valid() {
		return c, nil
	}
	names := make([]string, len(channels))
	for i, k := range channels {
		names[i] = string(k)
	}
	// Masked: a caller that swapped two fields put a phone number here.
	return "", unknownChannelError{name: phone.MaskText(s), valid: strings.Join(names, ", ")}
}

// unknownChannelError is ParseChannel's error: it reads as the problem
// itself and matches ErrUnknownChannel.
type unknownChannelError struct{ name, valid string }

func (e unknownChannelError) Error() string {
	return fmt.Sprintf("%q is not one of %s", e.name, e.valid)
}

func (e unknownChannelError) Is(target error) bool { return target == ErrUnknownChannel }

// Langs lists the languages GenAuth localises its messages and SMS
// templates in, the values of the lang header. Do not modify it.
var Langs = []string{"zh-CN", "en-US", "ja-JP", "zh-TW"}

// ValidLang reports whether s is one of [Langs], spelled exactly.
func ValidLang(s string) bool {
	for _, l := range Langs {
		if s == l {
			return true
		}
	}
	return false
}
