package api

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/smsq/smsq/internal/phone"
)

// MinSecretLen is the shortest secret a name:secret entry may give: a
// key is the only thing standing between the Internet and the queue.
const MinSecretLen = 16

// maxKeyNameLen bounds key names, which label metrics and go into the
// task's record.
const maxKeyNameLen = 64

// Key is one API key: its name, and the SHA-256 of its secret (the
// secret itself is not kept).
type Key struct {
	Name string
	hash [sha256.Size]byte
}

// Keys is the set of API keys a server accepts.
type Keys struct {
	keys []Key
}

// Len is the number of keys.
func (k Keys) Len() int { return len(k.keys) }

// Names lists the key names, in the order given.
func (k Keys) Names() []string {
	out := make([]string, len(k.keys))
	for i, key := range k.keys {
		out[i] = key.Name
	}
	return out
}

// ParseKeys reads API keys: entries separated by commas or line ends,
// each name:secret or name:sha256:<64 hex digits> (the SHA-256 of the
// secret, so that the secret need not be stored). Blank lines and lines
// starting with # are skipped (for SMSQ_API_KEYS_FILE). An error never
// quotes a secret.
func ParseKeys(s string) (Keys, error) {
	var out Keys
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for entry := range strings.SplitSeq(line, ",") {
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			n++
			k, err := parseKey(entry)
			if err != nil {
				return Keys{}, fmt.Errorf("key %d: %w", n, err)
			}
			if seen[k.Name] {
				return Keys{}, fmt.Errorf("key %d: name %q is given twice", n, k.Name)
			}
			seen[k.Name] = true
			out.keys = append(out.keys, k)
		}
	}
	if err := sc.Err(); err != nil {
		return Keys{}, err
	}
	return out, nil
}

func parseKey(entry string) (Key, error) {
	name, rest, ok := strings.Cut(entry, ":")
	if !ok {
		return Key{}, errors.New("want name:secret or name:sha256:<hex>")
	}
	if err := validName(name); err != nil {
		return Key{}, err
	}
	k := Key{Name: name}
	if hexSum, ok := strings.CutPrefix(rest, "sha256:"); ok {
		sum, err := hex.DecodeString(hexSum)
		if err != nil || len(sum) != sha256.Size {
			return Key{}, fmt.Errorf("%s: sha256: want %d hex digits", name, 2*sha256.Size)
		}
		copy(k.hash[:], sum)
		return k, nil
	}
	if len(rest) < MinSecretLen {
		return Key{}, fmt.Errorf("%s: the secret has %d characters, at least %d are needed (openssl rand -hex 32)", name, len(rest), MinSecretLen)
	}
	for _, r := range rest {
		if r < 0x21 || r > 0x7e {
			return Key{}, fmt.Errorf("%s: the secret may hold only printable ASCII without spaces", name)
		}
	}
	k.hash = sha256.Sum256([]byte(rest))
	return k, nil
}

// validName checks a key name: it labels metrics and is written into the
// task's record, so it is short, plain and holds no phone number.
func validName(name string) error {
	if name == "" || len(name) > maxKeyNameLen {
		return fmt.Errorf("name %q: 1 to %d characters", phone.MaskText(name), maxKeyNameLen)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || (i > 0 && (r == '.' || r == '_' || r == '-'))
		if !ok {
			return fmt.Errorf("name %q: use ASCII letters, digits, '.', '_' and '-', starting with a letter or digit", phone.MaskText(name))
		}
	}
	if phone.Holds(name) {
		return errors.New("a key name holds a phone number; name keys by the service that uses them")
	}
	return nil
}

// Lookup returns the name of the key whose secret is secret. Every key is
// compared, in constant time over their SHA-256 digests, so that neither
// the time taken nor which key matched tells anything about the secrets.
func (k Keys) Lookup(secret string) (string, bool) {
	sum := sha256.Sum256([]byte(secret))
	found := -1
	for i := range k.keys {
		if subtle.ConstantTimeCompare(sum[:], k.keys[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", false
	}
	return k.keys[found].Name, true
}
