// Package workertest runs the worker binary as real processes for the
// process-level test suites (test/faults, test/ha).
//
// It builds cmd/worker once per test process, starts workers with a clean
// environment and their output captured to a file, signals them as a crash,
// a deploy or a supervisor would, reads their JSON log lines back, and reads
// task states through asynq's Inspector. It holds no scenario: each suite
// decides what to start, what to break and what to assert. It is normal Go
// code so that test packages can share it, but only tests import it.
package workertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// build is one variant of the worker binary, built at most once.
type build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// buildKey names one variant: the command's package and the race flag.
type buildKey struct {
	pkg  string
	race bool
}

var (
	buildsMu sync.Mutex
	builds   = map[buildKey]*build{}
)

// Binary builds ./cmd/worker once per test process and returns its path.
// With race the worker carries the race detector, which makes every worker
// several times slower: suites that run many workers under load may build
// without it. Call Cleanup from TestMain to remove the binary.
func Binary(t testing.TB, race bool) string {
	t.Helper()
	return Command(t, "./cmd/worker", race)
}

// Command builds the module's command pkg (such as "./cmd/enqueue") once
// per test process and returns its path; see Binary.
func Command(t testing.TB, pkg string, race bool) string {
	t.Helper()
	k := buildKey{pkg, race}
	buildsMu.Lock()
	b := builds[k]
	if b == nil {
		b = &build{}
		builds[k] = b
	}
	buildsMu.Unlock()
	b.once.Do(func() { b.dir, b.path, b.err = compile(pkg, race) })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

func compile(pkg string, race bool) (dir, path string, err error) {
	root, err := moduleRoot()
	if err != nil {
		return "", "", err
	}
	name := filepath.Base(pkg)
	dir, err = os.MkdirTemp("", "smsq-"+name+"-")
	if err != nil {
		return "", "", err
	}
	path = filepath.Join(dir, name)
	args := []string{"build", "-o", path}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return dir, "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	return dir, path, nil
}

// moduleRoot finds the module's directory; the fallback assumes the test
// package sits two levels down, as test/faults and test/ha do.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err == nil {
		if gomod := strings.TrimSpace(string(out)); gomod != "" && gomod != os.DevNull {
			return filepath.Dir(gomod), nil
		}
	}
	return filepath.Abs(filepath.Join("..", ".."))
}

// Cleanup removes the binaries Binary built. TestMain calls it after m.Run.
func Cleanup() {
	buildsMu.Lock()
	defer buildsMu.Unlock()
	for _, b := range builds {
		if b.dir != "" {
			os.RemoveAll(b.dir)
		}
	}
}
