package observability

import (
	"os"
	"testing"

	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/workertest"
)

func TestMain(m *testing.M) {
	code := redistest.Main(m)
	workertest.Cleanup()
	os.Exit(code)
}
