package dedupe

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// MinHashKeyLen is the shortest hash key NewHasher accepts: shorter
// secrets can be guessed more easily than the phone numbers they protect.
const MinHashKeyLen = 16

// Hasher turns a phone number into the opaque name its keys carry. With a
// deployment key it is HMAC-SHA256 under that key, so that a masked phone
// from a log line (which leaves some 10^4 candidates) cannot be matched
// to its keys without the key; the zero Hasher is the plain SHA-256 form,
// which anyone can recompute, kept so that a deployment without a key
// (the embedded default) works as before.
type Hasher struct {
	key []byte
}

// NewHasher returns a Hasher for key; an empty key gives the unkeyed
// Hasher. A key shorter than MinHashKeyLen bytes is an error, which never
// quotes the key.
func NewHasher(key []byte) (Hasher, error) {
	if len(key) == 0 {
		return Hasher{}, nil
	}
	if len(key) < MinHashKeyLen {
		return Hasher{}, fmt.Errorf("dedupe: hash key must be at least %d bytes, got %d", MinHashKeyLen, len(key))
	}
	return Hasher{key: append([]byte(nil), key...)}, nil
}

// Keyed reports whether the Hasher uses a deployment key.
func (h Hasher) Keyed() bool { return len(h.key) > 0 }

// PhoneHash returns the hex form of the first 16 bytes of the HMAC-SHA256
// under the key (or, without one, of the SHA-256) of a phone number in
// E.164 form. Other packages use it to index by phone without storing the
// number.
func (h Hasher) PhoneHash(e164 string) string {
	if len(h.key) == 0 {
		sum := sha256.Sum256([]byte(e164))
		return hex.EncodeToString(sum[:16])
	}
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte(e164))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// PhoneHash is the unkeyed Hasher's PhoneHash; a deployment with a hash
// key uses Store.PhoneHash instead.
func PhoneHash(e164 string) string { return Hasher{}.PhoneHash(e164) }
