package main

import (
	"io"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/smsq/smsq/internal/config"
	"github.com/smsq/smsq/internal/ratelimit"
)

func TestRateLimitSettings(t *testing.T) {
	t.Parallel()
	persec := func(n, burst int) ratelimit.Limit {
		return ratelimit.Limit{Rate: n, Period: time.Second, Burst: burst}
	}
	tests := []struct {
		vars     map[string]string
		global   ratelimit.Limit
		channels map[string]ratelimit.Limit
		err      string // substring naming the setting; empty: none
	}{
		{global: persec(100, 10), channels: map[string]ratelimit.Limit{}},
		{vars: map[string]string{"SMSQ_RATE_LIMIT": "6000/m", "SMSQ_RATE_BURST": "3"},
			global: ratelimit.Limit{Rate: 6000, Period: time.Minute, Burst: 3}, channels: map[string]ratelimit.Limit{}},
		{vars: map[string]string{"SMSQ_RATE_LIMIT": "off", "SMSQ_RATE_LIMIT_PER_CHANNEL": "channel_login=50, CHANNEL_REGISTER=20"},
			channels: map[string]ratelimit.Limit{"CHANNEL_LOGIN": persec(50, 5), "CHANNEL_REGISTER": persec(20, 2)}},
		{vars: map[string]string{"SMSQ_RATE_LIMIT": "lots"}, err: "SMSQ_RATE_LIMIT"},
		{vars: map[string]string{"SMSQ_RATE_LIMIT": "0"}, err: "SMSQ_RATE_LIMIT"},
		{vars: map[string]string{"SMSQ_RATE_BURST": "-1"}, err: "SMSQ_RATE_BURST -1"},
		{vars: map[string]string{"SMSQ_RATE_LIMIT": "off", "SMSQ_RATE_BURST": "5"}, err: "SMSQ_RATE_BURST is set but SMSQ_RATE_LIMIT is off"},
		{vars: map[string]string{"SMSQ_RATE_MAX_WAIT": "0s"}, err: "SMSQ_RATE_MAX_WAIT"},
		{vars: map[string]string{"SMSQ_RATE_LIMIT_PER_CHANNEL": "CHANNEL_LOGIN"}, err: "SMSQ_RATE_LIMIT_PER_CHANNEL"},
		{vars: map[string]string{"SMSQ_RATE_LIMIT_PER_CHANNEL": "CHANNEL_LOGN=5"}, err: "SMSQ_RATE_LIMIT_PER_CHANNEL: \"CHANNEL_LOGN\" is not one of"},
		{vars: map[string]string{"SMSQ_RATE_LIMIT_PER_CHANNEL": "CHANNEL_LOGIN=5,channel_login=6"}, err: "SMSQ_RATE_LIMIT_PER_CHANNEL: CHANNEL_LOGIN: given twice"},
		{vars: map[string]string{"SMSQ_RATE_LIMIT_PER_CHANNEL": "CHANNEL_LOGN=off"}, err: "SMSQ_RATE_LIMIT_PER_CHANNEL: \"CHANNEL_LOGN\" is not one of"},
		{vars: map[string]string{"SMSQ_RATE_LIMIT_PER_CHANNEL": "CHANNEL_LOGIN=5,channel_login=off"}, err: "SMSQ_RATE_LIMIT_PER_CHANNEL: CHANNEL_LOGIN: given twice"},
	}
	for _, tt := range tests {
		var s settings
		set := config.NewSet("worker", env(tt.vars), io.Discard)
		bindSettings(set, &s)
		if err := set.Parse(nil); err != nil {
			t.Fatalf("%v: Parse: %v", tt.vars, err)
		}
		global, channels, err := rateLimits(&s)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("%v: error = %v, want one containing %q", tt.vars, err, tt.err)
			}
			continue
		}
		if err != nil || global != tt.global || !maps.Equal(channels, tt.channels) {
			t.Fatalf("%v: rateLimits = %v, %v, %v; want %v, %v", tt.vars, global, channels, err, tt.global, tt.channels)
		}
	}
}
