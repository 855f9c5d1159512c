// Package needsredis is a package whose tests need redis-server, run by
// redistest's own tests through go test with and without redis-server on
// PATH.
package needsredis

import (
	"os"
	"testing"

	"github.com/smsq/smsq/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func TestNeedsRedisOne(t *testing.T) { redistest.Binary(t) }

func TestNeedsRedisTwo(t *testing.T) {
	for _, name := range []string{"a", "b"} {
		t.Run(name, func(t *testing.T) { redistest.Binary(t) })
	}
}

func TestNeedsNothing(t *testing.T) {}
