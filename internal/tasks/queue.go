package tasks

import (
	"errors"
	"fmt"

	"github.com/smsq/smsq/internal/phone"
)

// MaxQueueNameLen bounds queue names. asynq puts the name into every key of
// the queue and every metric label; real names are a word or two.
const MaxQueueNameLen = 64

// ValidateQueue checks a queue name a producer asks for: 1 to
// MaxQueueNameLen ASCII letters, digits, '.', '_' or '-', starting with a
// letter or digit, and no phone number (see phone.Holds). The name becomes
// part of Redis key names ("asynq:{name}:..."), where braces would break
// Redis Cluster's hash tags and a phone number could never be masked. Every
// producer validates queue names with it (through NewTask); the error
// names the field, and does not quote a name that holds a phone number.
func ValidateQueue(name string) error {
	if phone.Holds(name) {
		return fmt.Errorf("queue: the name holds a phone number, which would appear in Redis key names, metrics and the UI; name queues by purpose (critical, default, low)")
	}
	if name == "" {
		return errors.New("queue: empty name")
	}
	if len(name) > MaxQueueNameLen {
		return fmt.Errorf("queue: %d characters, at most %d", len(name), MaxQueueNameLen)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || (i > 0 && (r == '.' || r == '_' || r == '-'))
		if !ok {
			return fmt.Errorf("queue: %q: use ASCII letters, digits, '.', '_' and '-', starting with a letter or digit", phone.MaskText(name))
		}
	}
	return nil
}

// CheckProducerKey refuses an idempotency key that holds a phone number
// (see phone.Holds): the key becomes the asynq task ID, which is part of
// Redis key names, log lines and the UI. The error does not quote the key. Producers call it; the worker does
// not, so that a task a raw producer queued with such a key still gets its
// outcome (its logs mask the ID instead).
func CheckProducerKey(key string) error {
	if phone.Holds(key) {
		return fmt.Errorf("idempotencyKey: the key holds a phone number, which would appear in Redis key names, logs and the UI; use an opaque ID (a UUID, or a keyed hash of what the key is made of)")
	}
	return nil
}
