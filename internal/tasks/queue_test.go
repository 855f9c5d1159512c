package tasks

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

func TestValidateQueue(t *testing.T) {
	t.Parallel()
	for _, q := range []string{"critical", "default", "low", "Critical", "bulk-2", "eu.low", "q_1", "7"} {
		if err := ValidateQueue(q); err != nil {
			t.Errorf("ValidateQueue(%q) = %v, want nil", q, err)
		}
	}
	for _, tc := range []struct{ q, mention string }{
		{"", "empty"},
		{strings.Repeat("q", MaxQueueNameLen+1), "at most 64"},
		{"a}b", "ASCII letters"},                // would break Redis Cluster hash tags
		{"{critical}", "ASCII letters"},         //
		{"crit ical", "ASCII letters"},          //
		{"-low", "starting with a letter"},      //
		{"lоw", "ASCII letters"},                // Cyrillic o
		{"low\n", "ASCII letters"},              //
		{"13800138040", "holds a phone number"}, // a phone as the queue name
		{"sms-138-0013-8000", "holds a phone number"},
		{"q１３８００１３８０２０", "holds a phone number"}, // full-width digits
	} {
		err := ValidateQueue(tc.q)
		if err == nil || !strings.Contains(err.Error(), tc.mention) || !strings.HasPrefix(err.Error(), "queue:") {
			t.Errorf("ValidateQueue(%q) = %v, want an error naming the queue and mentioning %q", tc.q, err, tc.mention)
		}
		if err != nil && strings.Contains(err.Error(), "8000") || err != nil && strings.Contains(err.Error(), "０２０") {
			t.Errorf("ValidateQueue(%q) error quotes the number: %v", tc.q, err)
		}
	}
}

// TestNewTaskRefusesPhonesInIDs: a producer cannot put a phone number into
// a task ID or a queue name, where no masking can reach it.
func TestNewTaskRefusesPhonesInIDs(t *testing.T) {
	t.Parallel()
	now := time.Now()
	p := Payload{Channel: "CHANNEL_LOGIN", PhoneNumber: "13800138000"}
	for _, tc := range []struct {
		key     string
		opts    []asynq.Option
		mention string
	}{
		{"login_13800138008_1", nil, "idempotencyKey: the key holds a phone number"},
		{"user-+8613800138000", nil, "use an opaque ID"},
		{"login_１３８００１３８０２０", nil, "holds a phone number"},
		{"", []asynq.Option{asynq.Queue("13800138040")}, "queue: the name holds a phone number"},
		{"", []asynq.Option{asynq.Queue("a}b")}, "queue:"},
		{"", []asynq.Option{asynq.Queue("")}, "queue: empty"},
	} {
		p := p
		p.IdempotencyKey = tc.key
		_, _, err := NewTask(p, now, tc.opts...)
		if !errors.Is(err, ErrInvalidPayload) || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("NewTask(key %q, %v) = %v, want ErrInvalidPayload mentioning %q", tc.key, tc.opts, err, tc.mention)
			continue
		}
		for _, leak := range []string{"13800138008", "13800138000", "13800138040", "１３８００１３８０２０"} {
			if strings.Contains(err.Error(), leak) {
				t.Errorf("NewTask error quotes %q: %v", leak, err)
			}
		}
	}
	// Opaque keys and names pass, and the worker still accepts a payload
	// whose key holds a phone (a raw producer's task gets its outcome).
	p.IdempotencyKey = "ed132221-2750-4db1-bea7-3d7c9ddfdf32"
	if _, _, err := NewTask(p, now, asynq.Queue("low")); err != nil {
		t.Fatalf("NewTask with a UUID key: %v", err)
	}
	p.IdempotencyKey = "login_13800138008_1"
	if _, err := p.Validate(); err != nil {
		t.Fatalf("worker-side Validate refuses a raw producer's key: %v", err)
	}
}
