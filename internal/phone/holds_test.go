package phone

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestHolds(t *testing.T) {
	t.Parallel()
	holds := []string{
		"13800138040",              // a queue name that is a phone
		"login_13800138008_1",      // an idempotency key built from one
		"login-13800138008",        //
		"login13800138008",         // glued to a word: digits in a row still count
		"user:+8613800138000",      // E.164
		"user-8613800138000",       // E.164 without its plus
		"user-008613800138000",     // international prefix
		"138-0013-8000",            // separators
		"138/0013/8021",            //
		"138.0013.8000",            //
		"(138) 0013 8000",          //
		"138~0013~8000",            //
		"key-+44-7911-123456",      // another country, with its code
		"+1 (201) 555-0123",        //
		"１３８００１３８０２０",              // full-width digits
		"١٣٨٠٠١٣٨٠٣٢",              // Arabic-Indic digits
		"login_١٣٨٠٠١٣٨٠٣٢",        //
		"१३८००१३८०००",              // Devanagari digits
		"key-১৩৮০০১৩৮০০০",          // Bengali digits
		"๑๓๘๐๐๑๓๘๐๐๐",              // Thai digits
		"q-۱۳۸۰۰۱۳۸۰۰۰",            // Extended Arabic-Indic (Persian) digits
		"x_１３８－００１３－８０２０",          // full-width digits and dashes
		"a-13800138000-b",          //
		"order/13800138000",        //
		"9f86d081-13800138000-key", // a phone next to a hex fragment
	}
	for _, s := range holds {
		if !Holds(s) {
			t.Errorf("Holds(%q) = false, want true", s)
		}
	}
	opaque := []string{
		"", "user-7", "login-42", "batch-1", "critical", "default", "low",
		"order-20261202-0001",                  // a date and a sequence
		"job-1764689400",                       // Unix seconds
		"job-1764689400123",                    // Unix milliseconds
		"order-1732154823456789012",            // a snowflake ID
		"1234567",                              // seven digits that are no mobile number
		"v2.13.0",                              // a version
		"2026-12-02T01:02:03Z",                 // a time stamp
		"ed132221-2750-4db1-bea7-3d7c9ddfdf32", // a UUID with a valid CN mobile-ish group
		"login-5471016d4a46fc77acd8dc72911a2d6c9970fabed96f53cdf430c17542191435", // a SHA-256
		"01HF7YAT8X6M3Q9KJ2V4W5Z0N1", // a ULID
	}
	for _, s := range opaque {
		if Holds(s) {
			t.Errorf("Holds(%q) = true, want false", s)
		}
	}
}

// TestHoldsOpaqueIDs: the IDs the refusal tells producers to use instead
// (random UUIDs, hashes) are never taken for phone numbers. Counting
// digits instead would refuse about 15% of random UUIDs, which hold seven
// digits in a row that often.
func TestHoldsOpaqueIDs(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(9, 4))
	for i := range 2000 {
		var b [16]byte
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		h := hex.EncodeToString(b[:])
		ids := []string{
			fmt.Sprintf("%s-%s-%s-%s-%s", h[:8], h[8:12], h[12:16], h[16:20], h[20:]),
			"login-" + h,
		}
		sum := sha256.Sum256(b[:])
		ids = append(ids, "login:"+hex.EncodeToString(sum[:]), hex.EncodeToString(sum[:8]),
			base64.RawURLEncoding.EncodeToString(sum[:]))
		for _, id := range ids {
			if Holds(id) {
				t.Fatalf("random ID %d %q read as a phone number", i, id)
			}
		}
	}
}

func BenchmarkHolds(b *testing.B) {
	for b.Loop() {
		Holds("login-ed132221-2750-4db1-bea7-3d7c9ddfdf32-1764689400123")
	}
}
