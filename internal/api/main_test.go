package api

import (
	"os"
	"testing"

	"github.com/smsq/smsq/internal/redistest"
)

// TestMain reports the tests skipped for want of redis-server in a line
// that go test shows without -v.
func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }
