//go:build !linux

package redistest

import (
	"os/exec"
	"testing"
)

func withTerminal(t *testing.T, _ *exec.Cmd) func() string {
	t.Skip("pseudo-terminal tests run on Linux")
	return nil
}
