package workertest

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/smsq/smsq/internal/genauth/genauthtest"
)

func TestPhoneLeaks(t *testing.T) {
	t.Parallel()
	lines := []Line{
		{Raw: `{"message":"sent","phone":"139****0001"}`},
		{Raw: `{"message":"sent","phone":"13910000001"}`},
		{Raw: `{"message":"sent","phone":"+8613910000002"}`},
		{Raw: `{"message":"bad","payload":"12345678"}`},
		{Raw: `{"message":"ok","n":1391000000}`},
		{Raw: `{"message":"sent","phone":"１３９１００００００３"}`},
		{Raw: `{"message":"sent","phone":"139/1000/0004"}`},
		{Raw: `{"message":"sent","phone":"١٣٩١٠٠٠٠٠٠٥"}`},
	}
	cases := []struct {
		name    string
		numbers []string
		want    []Leak
	}{
		{"none", nil, nil},
		{"national", []string{"13910000001"}, []Leak{{Line: 2, Redacted: `{"message":"sent","phone":"<PHONE>"}`}}},
		{"with country code", []string{"8613910000002"}, []Leak{{Line: 3, Redacted: `{"message":"sent","phone":"+<PHONE>"}`}}},
		{"national part of a longer number", []string{"8613910000001"}, []Leak{{Line: 2, Redacted: `{"message":"sent","phone":"<PHONE>"}`}}},
		{"short number", []string{"12345678"}, []Leak{{Line: 4, Redacted: `{"message":"bad","payload":"<PHONE>"}`}}},
		{"prefix only", []string{"13910000009"}, nil},
		{"full-width digits", []string{"13910000003"}, []Leak{{Line: 6, Redacted: `{"message":"sent","phone":"<PHONE>"}`}}},
		{"slashes", []string{"13910000004"}, []Leak{{Line: 7, Redacted: `{"message":"sent","phone":"<PHONE>"}`}}},
		{"Arabic-Indic digits", []string{"13910000005"}, []Leak{{Line: 8, Redacted: `{"message":"sent","phone":"<PHONE>"}`}}},
	}
	for _, c := range cases {
		if got := PhoneLeaks(lines, c.numbers); !reflect.DeepEqual(got, c.want) {
			t.Fatalf("%s: PhoneLeaks = %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestLines(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "w.log")
	data := "{\"level\":\"info\",\"message\":\"worker started\",\"task_id\":\"a\"}\nWARNING: DATA RACE\n"
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Lines(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Message != "worker started" || got[0].TaskID != "a" || got[0].Crash() || !got[1].Crash() || got[1].Level != "" {
		t.Fatalf("Lines = %+v", got)
	}
}

func TestCrash(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]bool{
		"WARNING: DATA RACE":                       true,
		"panic: runtime error: index out of range": true,
		"fatal error: concurrent map writes":       true,
		"goroutine 1 [running]:":                   true,
		`{"level":"info","message":"goroutine 7"}`: false,
		`{"level":"error","message":"panic: no"}`:  false,
	} {
		l := Line{Raw: raw}
		if strings.HasPrefix(raw, "{") {
			l.Level = "info"
		}
		if got := l.Crash(); got != want {
			t.Errorf("Line{%q}.Crash() = %v, want %v", raw, got, want)
		}
	}
}

func TestPairKey(t *testing.T) {
	t.Parallel()
	cases := []struct {
		req  genauthtest.Request
		want string
	}{
		{genauthtest.Request{PhoneNumber: "13910000001", Channel: "LOGIN"}, "+86 139****0001 LOGIN"},
		{genauthtest.Request{PhoneCountryCode: "+1", PhoneNumber: "2025550123", Channel: "LOGIN"}, "+1 202****0123 LOGIN"},
	}
	for _, c := range cases {
		if got := MaskPair(PairKey(c.req)); got != c.want {
			t.Fatalf("MaskPair(PairKey(%+v)) = %q, want %q", c.req, got, c.want)
		}
	}
}

func TestCloseSends(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	req := func(phone, ch string, at time.Duration) genauthtest.Request {
		return genauthtest.Request{PhoneNumber: phone, Channel: ch, Time: t0.Add(at)}
	}
	reqs := []genauthtest.Request{
		req("13800138000", "CHANNEL_LOGIN", 0),
		req("13800138000", "CHANNEL_LOGIN", 61*time.Second),   // a window later
		req("13800138000", "CHANNEL_LOGIN", 90*time.Second),   // 29 s after the last
		req("13800138000", "CHANNEL_REGISTER", 5*time.Second), // another pair
		req("13800138001", "CHANNEL_LOGIN", 59990*time.Millisecond),
		req("13800138001", "CHANNEL_LOGIN", 0), // out of order, 59.99 s: inside the slack
	}
	got := CloseSends(reqs, time.Minute)
	want := []CloseSend{{Pair: "+86 13800138000 CHANNEL_LOGIN", First: t0.Add(61 * time.Second), Second: t0.Add(90 * time.Second)}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("CloseSends = %+v, want %+v", got, want)
	}
}
