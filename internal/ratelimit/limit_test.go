package ratelimit

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Limit
		err  string // substring of the error; empty: none
	}{
		{in: "100", want: Limit{Rate: 100, Period: time.Second, Burst: 10}},
		{in: "100/s", want: Limit{Rate: 100, Period: time.Second, Burst: 10}},
		{in: " 100 / S ", want: Limit{Rate: 100, Period: time.Second, Burst: 10}},
		{in: "6000/m", want: Limit{Rate: 6000, Period: time.Minute, Burst: 10}},
		{in: "50/s", want: Limit{Rate: 50, Period: time.Second, Burst: 5}},
		{in: "5", want: Limit{Rate: 5, Period: time.Second, Burst: 1}},
		{in: "15", want: Limit{Rate: 15, Period: time.Second, Burst: 2}},
		{in: "10/h", want: Limit{Rate: 10, Period: time.Hour, Burst: 1}},
		{in: "off"},
		{in: "OFF"},
		{in: "", err: "not a rate"},
		{in: "fast", err: "not a rate"},
		{in: "100/d", err: "must be s, m or h"},
		{in: "100/", err: "must be s, m or h"},
		{in: "0", err: "between 1 and"},
		{in: "-5/s", err: "between 1 and"},
		{in: "2000000", err: "between 1 and"},
		{in: "1.5/s", err: "not a rate"},
	}
	for _, tt := range tests {
		got, err := ParseRate(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("ParseRate(%q) error = %v, want one containing %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Fatalf("ParseRate(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("ParseRate(%q) gives an invalid limit: %v", tt.in, err)
		}
	}
}

func TestParseChannelLimits(t *testing.T) {
	t.Parallel()
	persec := func(n, burst int) Limit { return Limit{Rate: n, Period: time.Second, Burst: burst} }
	tests := []struct {
		in   string
		want map[string]Limit
		err  []string // substrings of the error
	}{
		{in: ""},
		{in: "  "},
		{in: "CHANNEL_LOGIN=50,CHANNEL_REGISTER=20", want: map[string]Limit{"CHANNEL_LOGIN": persec(50, 5), "CHANNEL_REGISTER": persec(20, 2)}},
		{in: " CHANNEL_LOGIN = 1200/m ", want: map[string]Limit{"CHANNEL_LOGIN": {Rate: 1200, Period: time.Minute, Burst: 2}}},
		{in: "CHANNEL_LOGIN=off,CHANNEL_REGISTER=20", want: map[string]Limit{"CHANNEL_REGISTER": persec(20, 2)}},
		{in: "CHANNEL_LOGIN", err: []string{`"CHANNEL_LOGIN": want NAME=RATE`}},
		{in: "=50", err: []string{"want NAME=RATE"}},
		{in: "CHANNEL_LOGIN=50,", err: []string{`"": want NAME=RATE`}},
		{in: "CHANNEL_LOGIN=50,CHANNEL_LOGIN=20", err: []string{"CHANNEL_LOGIN: given twice"}},
		{in: "CHANNEL_LOGIN=fast,CHANNEL_REGISTER=0", err: []string{"CHANNEL_LOGIN: \"fast\"", "CHANNEL_REGISTER: \"0\""}},
		// Names go through the normaliser, off or not.
		{in: "channel_login=50", want: map[string]Limit{"CHANNEL_LOGIN": persec(50, 5)}},
		{in: "CHANNEL_LOGN=off", err: []string{"unknown channel CHANNEL_LOGN"}},
		{in: "CHANNEL_LOGIN=5,channel_login=off", err: []string{"CHANNEL_LOGIN: given twice"}},
	}
	upper := func(name string) (string, error) {
		if !strings.HasPrefix(strings.ToUpper(name), "CHANNEL_LOGIN") && !strings.HasPrefix(strings.ToUpper(name), "CHANNEL_REGISTER") {
			return "", fmt.Errorf("unknown channel %s", name)
		}
		return strings.ToUpper(name), nil
	}
	for _, tt := range tests {
		got, err := ParseChannelLimits(tt.in, upper)
		if tt.err != nil {
			if err == nil {
				t.Fatalf("ParseChannelLimits(%q) = %v, want an error", tt.in, got)
			}
			for _, s := range tt.err {
				if !strings.Contains(err.Error(), s) {
					t.Fatalf("ParseChannelLimits(%q) error = %q, want it to contain %q", tt.in, err, s)
				}
			}
			continue
		}
		if err != nil || !maps.Equal(got, tt.want) {
			t.Fatalf("ParseChannelLimits(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestLimitValidateAndString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		l    Limit
		err  string
		text string
	}{
		{l: Limit{}, text: "off"},
		{l: Limit{Rate: 100, Period: time.Second, Burst: 10}, text: "100/s burst 10"},
		{l: Limit{Rate: 6000, Period: time.Minute, Burst: 1}, text: "6000/m burst 1"},
		{l: Limit{Rate: 100, Period: time.Second}, err: "burst 0"},
		{l: Limit{Rate: 0, Period: time.Second, Burst: 1}, err: "rate 0"},
		{l: Limit{Rate: 1, Period: 2 * time.Second, Burst: 1}, err: "period 2s"},
	}
	for _, tt := range tests {
		err := tt.l.Validate()
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("%+v.Validate() = %v, want an error containing %q", tt.l, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%+v.Validate() = %v", tt.l, err)
		}
		if got := tt.l.String(); got != tt.text {
			t.Fatalf("%+v.String() = %q, want %q", tt.l, got, tt.text)
		}
	}
}

func TestWithBurst(t *testing.T) {
	t.Parallel()
	l := Limit{Rate: 300, Period: time.Second}
	if got := l.WithBurst(0).Burst; got != 30 {
		t.Fatalf("WithBurst(0).Burst = %d, want 30 (a tenth of a second)", got)
	}
	if got := l.WithBurst(7).Burst; got != 7 {
		t.Fatalf("WithBurst(7).Burst = %d, want 7", got)
	}
}

func TestKeyGolden(t *testing.T) {
	t.Parallel()
	if got, want := GlobalKey(DefaultPrefix), "smsq:rate:global"; got != want {
		t.Fatalf("GlobalKey = %q, want %q", got, want)
	}
	if got, want := ChannelKey(DefaultPrefix, "CHANNEL_LOGIN"), "smsq:rate:channel:CHANNEL_LOGIN"; got != want {
		t.Fatalf("ChannelKey = %q, want %q", got, want)
	}
}
