package tasks_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"

	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/tasks"
)

func TestDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		data    string
		want    tasks.Payload
		wantErr string // empty: no error
	}{
		{
			name: "old three-field payload",
			data: `{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000","phoneCountryCode":"+86"}`,
			want: tasks.Payload{Channel: "CHANNEL_LOGIN", PhoneNumber: "13800138000", PhoneCountryCode: "+86"},
		},
		{
			name: "unknown fields ignored",
			data: `{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000","fromTheFuture":{"a":[1,2]},"priority":9}`,
			want: tasks.Payload{Channel: "CHANNEL_LOGIN", PhoneNumber: "13800138000"},
		},
		{
			name: "every field",
			data: `{"channel":"CHANNEL_REGISTER","phoneNumber":"+8613800138000","clientIp":"203.0.113.7","lang":"en-US",` +
				`"idempotencyKey":"k-1","sendBy":"2025-01-02T03:04:05Z","enqueuedAt":"2025-01-02T03:00:00Z","onHeld":"defer"}`,
			want: tasks.Payload{
				Channel: "CHANNEL_REGISTER", PhoneNumber: "+8613800138000", ClientIP: "203.0.113.7", Lang: "en-US",
				IdempotencyKey: "k-1", OnHeld: "defer",
				SendBy:     time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
				EnqueuedAt: time.Date(2025, 1, 2, 3, 0, 0, 0, time.UTC),
			},
		},
		{name: "empty", data: "", wantErr: "empty"},
		{name: "blank", data: " \n\t", wantErr: "empty"},
		{name: "not JSON", data: "channel=CHANNEL_LOGIN", wantErr: "not a JSON object"},
		{name: "JSON array", data: `["CHANNEL_LOGIN"]`, wantErr: "not a JSON object"},
		{name: "wrong type", data: `{"channel":"CHANNEL_LOGIN","phoneNumber":13800138000}`, wantErr: "not a JSON object"},
		{
			name:    "oversize",
			data:    `{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000","pad":"` + strings.Repeat("x", tasks.MaxPayloadSize) + `"}`,
			wantErr: "at most 4096",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tasks.Decode([]byte(tt.data))
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Decode() = %+v, nil; want error mentioning %q", got, tt.wantErr)
				}
				if !errors.Is(err, tasks.ErrInvalidPayload) {
					t.Fatalf("Decode() error %v does not wrap ErrInvalidPayload", err)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Decode() error = %q, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode(): %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Decode() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeSizeLimitIsInclusive(t *testing.T) {
	t.Parallel()
	base := `{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000"}`
	exact := base[:len(base)-1] + strings.Repeat(" ", tasks.MaxPayloadSize-len(base)) + "}"
	if len(exact) != tasks.MaxPayloadSize {
		t.Fatalf("test payload is %d bytes, want %d", len(exact), tasks.MaxPayloadSize)
	}
	if _, err := tasks.Decode([]byte(exact)); err != nil {
		t.Fatalf("Decode(%d bytes): %v, want success", len(exact), err)
	}
	if _, err := tasks.Decode([]byte(exact + " ")); !errors.Is(err, tasks.ErrInvalidPayload) {
		t.Fatalf("Decode(%d bytes) error = %v, want ErrInvalidPayload", len(exact)+1, err)
	}
}

func TestValidatePhoneFormats(t *testing.T) {
	t.Parallel()
	tests := []struct{ number, cc string }{
		{"+8613800138000", ""},
		{"+8613800138000", "+86"},
		{"13800138000", ""},
		{"13800138000", "+86"},
		{"13800138000", "86"},
		{"138 0013 8000", "+86"},
		{"138-0013-8000", "+86"},
		{"(138) 0013-8000", "+86"},
		{" +86 138-0013 8000 ", ""},
	}
	for _, tt := range tests {
		p := tasks.Payload{Channel: "CHANNEL_LOGIN", PhoneNumber: tt.number, PhoneCountryCode: tt.cc}
		v, err := p.Validate()
		if err != nil {
			t.Errorf("Validate(%q, %q): %v", tt.number, tt.cc, err)
			continue
		}
		if v.Phone.E164 != "+8613800138000" {
			t.Errorf("Validate(%q, %q) E164 = %q, want +8613800138000", tt.number, tt.cc, v.Phone.E164)
		}
		if v.PhoneNumber != "13800138000" || v.PhoneCountryCode != "+86" {
			t.Errorf("Validate(%q, %q) payload phone = %q %q, want 13800138000 +86", tt.number, tt.cc, v.PhoneNumber, v.PhoneCountryCode)
		}
	}
}

func TestValidateNormalises(t *testing.T) {
	t.Parallel()
	p := tasks.Payload{Channel: " channel_verify_mfa ", PhoneNumber: "+44 7911 123456", OnHeld: tasks.OnHeldDefer}
	v, err := p.Validate()
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if v.Channel != genauth.ChannelVerifyMFA || v.Payload.Channel != string(genauth.ChannelVerifyMFA) {
		t.Fatalf("channel = %q / %q, want %q", v.Channel, v.Payload.Channel, genauth.ChannelVerifyMFA)
	}
	if v.Phone.E164 != "+447911123456" || v.PhoneNumber != "7911123456" || v.PhoneCountryCode != "+44" {
		t.Fatalf("phone = %+v, payload %q %q; want +447911123456", v.Phone, v.PhoneNumber, v.PhoneCountryCode)
	}
	if v.OnHeld != tasks.OnHeldDefer {
		t.Fatalf("OnHeld = %q, want %q", v.OnHeld, tasks.OnHeldDefer)
	}
}

func TestValidateFieldErrors(t *testing.T) {
	t.Parallel()
	valid := tasks.Payload{Channel: "CHANNEL_LOGIN", PhoneNumber: "13800138000"}
	tests := []struct {
		name    string
		edit    func(*tasks.Payload)
		mention []string
	}{
		{"empty channel", func(p *tasks.Payload) { p.Channel = "" }, []string{"channel:"}},
		{"unknown channel", func(p *tasks.Payload) { p.Channel = "CHANNEL_LOGON" }, append([]string{"channel:", "CHANNEL_LOGON"}, channelNames()...)},
		{"empty phone", func(p *tasks.Payload) { p.PhoneNumber = "" }, []string{"phoneNumber:", "empty"}},
		{"short phone", func(p *tasks.Payload) { p.PhoneNumber = "12345" }, []string{"phoneNumber:"}},
		{"fixed line", func(p *tasks.Payload) { p.PhoneNumber = "+86 10 6552 9988" }, []string{"phoneNumber:", "not a mobile number"}},
		{"country code disagrees", func(p *tasks.Payload) { p.PhoneNumber = "+8613800138000"; p.PhoneCountryCode = "+1" }, []string{"phoneNumber:", "phoneCountryCode"}},
		{"bad country code", func(p *tasks.Payload) { p.PhoneCountryCode = "+999" }, []string{"phoneNumber:", "phoneCountryCode"}},
		{"bad client IP", func(p *tasks.Payload) { p.ClientIP = "10.0.0.300" }, []string{"clientIp:", "10.0.0.300"}},
		{"client IP with a zone forging x-real-ip", func(p *tasks.Payload) { p.ClientIP = "fe80::1%1.2.3.4, 6.6.6.6" }, []string{"clientIp:", "zone"}},
		{"client IP with a plain zone", func(p *tasks.Payload) { p.ClientIP = "fe80::1%eth0" }, []string{"clientIp:", "zone"}},
		{"client IP zone with CR/LF", func(p *tasks.Payload) { p.ClientIP = "fe80::1%\r\nX-Evil: 1" }, []string{"clientIp:", "zone"}},
		{"client IP with a NUL", func(p *tasks.Payload) { p.ClientIP = "203.0.113.7\x00" }, []string{"clientIp:", "control"}},
		{"client IP with an Arabic-Indic digit", func(p *tasks.Payload) { p.ClientIP = "203.0.113.٧" }, []string{"clientIp:", "non-ASCII"}},
		{"client IP with a trailing tab", func(p *tasks.Payload) { p.ClientIP = "203.0.113.7\t" }, []string{"clientIp:", "control"}},
		{"bad lang", func(p *tasks.Payload) { p.Lang = "fr-FR" }, []string{"lang:", "fr-FR", "zh-CN", "en-US", "ja-JP", "zh-TW"}},
		{"long key", func(p *tasks.Payload) { p.IdempotencyKey = strings.Repeat("k", tasks.MaxIdempotencyKeyLen+1) }, []string{"idempotencyKey:", "at most 128"}},
		{"key with space", func(p *tasks.Payload) { p.IdempotencyKey = "a b" }, []string{"idempotencyKey:", "printable ASCII"}},
		{"key not ASCII", func(p *tasks.Payload) { p.IdempotencyKey = "ключ" }, []string{"idempotencyKey:"}},
		{"bad onHeld", func(p *tasks.Payload) { p.OnHeld = "wait" }, []string{"onHeld:", `"wait"`, "dedupe", "defer"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := valid
			tt.edit(&p)
			_, err := p.Validate()
			if err == nil {
				t.Fatalf("Validate(%+v) = nil error", p)
			}
			if !errors.Is(err, tasks.ErrInvalidPayload) {
				t.Fatalf("error %v does not wrap ErrInvalidPayload", err)
			}
			for _, m := range tt.mention {
				if !strings.Contains(err.Error(), m) {
					t.Fatalf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}

func TestValidateReportsEveryError(t *testing.T) {
	t.Parallel()
	p := tasks.Payload{Channel: "SMS", PhoneNumber: "12", ClientIP: "nope", Lang: "xx", IdempotencyKey: "a b", OnHeld: "later"}
	_, err := p.Validate()
	if err == nil {
		t.Fatal("Validate = nil error")
	}
	for _, field := range []string{"channel:", "phoneNumber:", "clientIp:", "lang:", "idempotencyKey:", "onHeld:"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error %q does not name %s", err, field)
		}
	}
}

func TestValidateErrorMasksPhone(t *testing.T) {
	t.Parallel()
	p := tasks.Payload{Channel: "CHANNEL_LOGIN", PhoneNumber: "+86 10 6552 9988"}
	_, err := p.Validate()
	if err == nil {
		t.Fatal("Validate accepted a fixed-line number")
	}
	if digits := onlyDigits(err.Error()); strings.Contains(digits, "1065529988") {
		t.Fatalf("error %q shows the full number", err)
	}
}

func TestQueueFor(t *testing.T) {
	t.Parallel()
	for _, ch := range genauth.Channels() {
		want := tasks.QueueDefault
		if ch == genauth.ChannelLogin || ch == genauth.ChannelVerifyMFA {
			want = tasks.QueueCritical
		}
		if got := tasks.QueueFor(ch); got != want {
			t.Errorf("QueueFor(%s) = %q, want %q", ch, got, want)
		}
	}
}

func TestNewTask(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 4, 5, 6, 7, 891_234_567, time.FixedZone("CST", 8*3600))
	task, v, err := tasks.NewTask(tasks.Payload{Channel: "channel_login", PhoneNumber: "138 0013 8000"}, now)
	if err != nil {
		t.Fatalf("NewTask: %v", err)
	}
	if task.Type() != tasks.TypeSendSMS {
		t.Fatalf("Type() = %q, want %q", task.Type(), tasks.TypeSendSMS)
	}
	wantEnq := now.UTC().Truncate(time.Millisecond)
	if !v.EnqueuedAt.Equal(wantEnq) || v.EnqueuedAt.Location() != time.UTC {
		t.Fatalf("EnqueuedAt = %v, want %v in UTC", v.EnqueuedAt, wantEnq)
	}
	if want := wantEnq.Add(tasks.DefaultSendBy); !v.SendBy.Equal(want) {
		t.Fatalf("SendBy = %v, want EnqueuedAt + %v = %v", v.SendBy, tasks.DefaultSendBy, want)
	}
	// The stored payload is the normalised one, and decodes to v again.
	p, err := tasks.Decode(task.Payload())
	if err != nil {
		t.Fatalf("Decode(task payload): %v", err)
	}
	if !reflect.DeepEqual(p, v.Payload) {
		t.Fatalf("stored payload = %+v, want %+v", p, v.Payload)
	}
	var raw map[string]any
	if err := json.Unmarshal(task.Payload(), &raw); err != nil {
		t.Fatalf("payload is not JSON: %v", err)
	}
	if raw["channel"] != "CHANNEL_LOGIN" || raw["phoneNumber"] != "13800138000" || raw["phoneCountryCode"] != "+86" {
		t.Fatalf("stored payload %s is not normalised", task.Payload())
	}
}

func TestNewTaskKeepsGivenTimes(t *testing.T) {
	t.Parallel()
	enq := time.Date(2025, 3, 4, 5, 0, 0, 0, time.UTC)
	by := enq.Add(time.Minute)
	_, v, err := tasks.NewTask(tasks.Payload{Channel: "CHANNEL_LOGIN", PhoneNumber: "13800138000", EnqueuedAt: enq, SendBy: by}, enq.Add(time.Hour))
	if err != nil {
		t.Fatalf("NewTask: %v", err)
	}
	if !v.EnqueuedAt.Equal(enq) || !v.SendBy.Equal(by) {
		t.Fatalf("EnqueuedAt, SendBy = %v, %v; want %v, %v", v.EnqueuedAt, v.SendBy, enq, by)
	}
}

func TestNewTaskRejectsInvalid(t *testing.T) {
	t.Parallel()
	task, _, err := tasks.NewTask(tasks.Payload{Channel: "CHANNEL_LOGIN", PhoneNumber: "nope"}, time.Now())
	if task != nil || !errors.Is(err, tasks.ErrInvalidPayload) {
		t.Fatalf("NewTask = %v, %v; want nil task and ErrInvalidPayload", task, err)
	}
}

// TestNewTaskOptions enqueues tasks and reads back the options asynq stored,
// the only place they can be observed.
func TestNewTaskOptions(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: m.Addr()})
	t.Cleanup(func() { _ = client.Close() })
	now := time.Now()

	tests := []struct {
		channel   genauth.Channel
		key       string
		opts      []asynq.Option
		wantQueue string
	}{
		{channel: genauth.ChannelLogin, key: "login-1", wantQueue: tasks.QueueCritical},
		{channel: genauth.ChannelVerifyMFA, key: "mfa-1", wantQueue: tasks.QueueCritical},
		{channel: genauth.ChannelRegister, key: "register-1", wantQueue: tasks.QueueDefault},
		{channel: genauth.ChannelResetPassword, wantQueue: tasks.QueueDefault},
		{channel: genauth.ChannelDeleteAccount, key: "delete-1", wantQueue: tasks.QueueDefault},
		{channel: genauth.ChannelLogin, key: "override-1", opts: []asynq.Option{asynq.Queue(tasks.QueueLow)}, wantQueue: tasks.QueueLow},
	}
	for _, tt := range tests {
		p := tasks.Payload{Channel: string(tt.channel), PhoneNumber: "13800138000", IdempotencyKey: tt.key}
		task, _, err := tasks.NewTask(p, now, tt.opts...)
		if err != nil {
			t.Fatalf("NewTask(%s): %v", tt.channel, err)
		}
		info, err := client.Enqueue(task)
		if err != nil {
			t.Fatalf("Enqueue(%s): %v", tt.channel, err)
		}
		if tt.key != "" && info.ID != tt.key {
			t.Errorf("%s: task ID = %q, want the idempotency key %q", tt.channel, info.ID, tt.key)
		}
		if tt.key == "" && info.ID == "" {
			t.Errorf("%s: empty task ID", tt.channel)
		}
		if info.Queue != tt.wantQueue {
			t.Errorf("%s: queue = %q, want %q", tt.channel, info.Queue, tt.wantQueue)
		}
		if info.MaxRetry != tasks.DefaultMaxRetry {
			t.Errorf("%s: MaxRetry = %d, want %d", tt.channel, info.MaxRetry, tasks.DefaultMaxRetry)
		}
		if info.Timeout != tasks.DefaultTimeout {
			t.Errorf("%s: Timeout = %v, want %v", tt.channel, info.Timeout, tasks.DefaultTimeout)
		}
		if info.Retention != tasks.DefaultRetention {
			t.Errorf("%s: Retention = %v, want %v", tt.channel, info.Retention, tasks.DefaultRetention)
		}
	}

	// The same idempotency key is refused while the first task is kept.
	task, _, err := tasks.NewTask(tasks.Payload{Channel: "CHANNEL_LOGIN", PhoneNumber: "13800138000", IdempotencyKey: "login-1"}, now)
	if err != nil {
		t.Fatalf("NewTask: %v", err)
	}
	if _, err := client.Enqueue(task); !errors.Is(err, asynq.ErrTaskIDConflict) {
		t.Fatalf("second Enqueue with key login-1: error = %v, want ErrTaskIDConflict", err)
	}
}

func FuzzDecodeValidate(f *testing.F) {
	for _, s := range []string{
		`{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000","phoneCountryCode":"+86"}`,
		`{"channel":"channel_register","phoneNumber":"+44 7911 123456","lang":"en-US","clientIp":"::1","onHeld":"defer"}`,
		`{"channel":"CHANNEL_LOGIN","phoneNumber":"138-0013-8000","idempotencyKey":"k","sendBy":"2025-01-02T03:04:05Z"}`,
		`{"channel":1}`,
		`null`,
		`{}`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := tasks.Decode(data)
		if err != nil {
			if !errors.Is(err, tasks.ErrInvalidPayload) {
				t.Fatalf("Decode error %v does not wrap ErrInvalidPayload", err)
			}
			return
		}
		v, err := p.Validate()
		if err != nil {
			if !errors.Is(err, tasks.ErrInvalidPayload) {
				t.Fatalf("Validate error %v does not wrap ErrInvalidPayload", err)
			}
			return
		}
		again, err := v.Payload.Validate()
		if err != nil {
			t.Fatalf("normalised payload %+v does not validate: %v", v.Payload, err)
		}
		if !reflect.DeepEqual(again, v) {
			t.Fatalf("Validate is not idempotent:\n first %+v\nsecond %+v", v, again)
		}
		data, err = v.Encode()
		if err != nil {
			t.Fatalf("Encode: %v", err)
		}
		decoded, err := tasks.Decode(data)
		if err != nil {
			t.Fatalf("Decode(Encode(v)): %v", err)
		}
		// Times lose their monotonic reading and location in JSON.
		decoded.SendBy, decoded.EnqueuedAt = v.SendBy, v.EnqueuedAt
		if !reflect.DeepEqual(decoded, v.Payload) {
			t.Fatalf("Decode(Encode(v)) = %+v, want %+v", decoded, v.Payload)
		}
	})
}

func BenchmarkValidate(b *testing.B) {
	p := tasks.Payload{Channel: "CHANNEL_LOGIN", PhoneNumber: "138 0013 8000", PhoneCountryCode: "+86", ClientIP: "203.0.113.7", Lang: "zh-CN"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewTask(b *testing.B) {
	p := tasks.Payload{Channel: "CHANNEL_LOGIN", PhoneNumber: "138 0013 8000", PhoneCountryCode: "+86", IdempotencyKey: "bench-1"}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := tasks.NewTask(p, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeDecode is the payload's trip through asynq: encoded by
// the producer, decoded by the worker.
func BenchmarkEncodeDecode(b *testing.B) {
	p := tasks.Payload{Channel: "CHANNEL_LOGIN", PhoneNumber: "138 0013 8000", PhoneCountryCode: "+86", IdempotencyKey: "bench-1"}
	v, err := p.Validate()
	if err != nil {
		b.Fatal(err)
	}
	v.EnqueuedAt = time.Now()
	v.SendBy = v.EnqueuedAt.Add(tasks.DefaultSendBy)
	b.ReportAllocs()
	for b.Loop() {
		data, err := v.Encode()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tasks.Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}

func channelNames() []string {
	var names []string
	for _, ch := range genauth.Channels() {
		names = append(names, string(ch))
	}
	return names
}

func onlyDigits(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Values echoed in validation errors never carry a phone number in clear,
// whichever field it was put in.
func TestValidateMasksEchoedValues(t *testing.T) {
	p := tasks.Payload{Channel: "CHANNEL_LOGIN", PhoneNumber: "13800138000", PhoneCountryCode: "+86",
		ClientIP: "13800138001", Lang: "13800138002", OnHeld: "13800138003", IdempotencyKey: "login 13800138004"}
	_, err := p.Validate()
	if err == nil {
		t.Fatal("Validate: no error")
	}
	for _, field := range []string{"clientIp", "lang", "onHeld", "idempotencyKey"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error %q does not name %s", err, field)
		}
	}
	for _, full := range []string{"13800138001", "13800138002", "13800138003", "13800138004"} {
		if strings.Contains(err.Error(), full) {
			t.Errorf("error %q holds %s in clear", err, full)
		}
	}
}
