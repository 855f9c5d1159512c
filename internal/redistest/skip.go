package redistest

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
)

// A test that needs a tool that is not installed (redis-server, a browser)
// skips outside CI. `go test ./...` shows a passing package's output only
// with -v: its "ok" line alone would hide that whole suites did not run.
// So every such skip is counted, and the package reports the count in one
// line where it is seen (see report).

// skips counts the tests skipped for each missing tool in this test binary.
var skips = struct {
	sync.Mutex
	byTool  map[string]*toolSkips
	deferTo bool // Main reports after m.Run; otherwise report at the first skip
}{byTool: map[string]*toolSkips{}}

type toolSkips struct {
	install string
	tests   int
	told    bool // reported already (packages without Main)
}

// SkipMissing skips t because tool is not on PATH, or fails it under CI
// (CI set), where a run must never pass by skipping the tests that matter.
// install says how to get the tool, e.g. "apt-get install chromium".
func SkipMissing(t testing.TB, tool, install string) {
	t.Helper()
	msg := fmt.Sprintf("%s not found on PATH: install it (%s) to run this test", tool, install)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	skips.Lock()
	s := skips.byTool[tool]
	if s == nil {
		s = &toolSkips{install: install}
		skips.byTool[tool] = s
	}
	s.tests++
	now := !skips.deferTo && !s.told
	s.told = s.told || now
	skips.Unlock()
	if now {
		// No Main to count them: say it once, without a count.
		report(map[string]toolSkips{tool: {install: install}})
	}
	t.Skip(msg)
}

// Main runs the package's tests and then reports, in one visible line per
// missing tool, how many tests skipped for it and how to run them. Use it
// as the package's TestMain body: os.Exit(redistest.Main(m)).
func Main(m *testing.M) int {
	skips.Lock()
	skips.deferTo = true
	skips.Unlock()
	code := m.Run()
	skips.Lock()
	counted := map[string]toolSkips{}
	for tool, s := range skips.byTool {
		counted[tool] = *s
	}
	skips.Unlock()
	report(counted)
	return code
}

// report writes one line per tool to where the person running go test
// sees it (see reportWriter). A zero count means "some tests".
func report(byTool map[string]toolSkips) {
	if len(byTool) == 0 {
		return
	}
	w, closeW := reportWriter()
	defer closeW()
	pkg := packageDir()
	tools := make([]string, 0, len(byTool))
	for tool := range byTool {
		tools = append(tools, tool)
	}
	sort.Strings(tools)
	for _, tool := range tools {
		_, _ = io.WriteString(w, skipLine(pkg, tool, byTool[tool]))
	}
}

// skipLine is the report for one tool, e.g.
//
//	SKIP ./internal/dedupe: 9 tests need redis-server, not on PATH: install it (apt-get install redis-server), then go test -count=1 ./internal/dedupe
//
// -count=1 because go test's cache does not notice a newly installed tool
// and would replay this run's "ok".
func skipLine(pkg, tool string, s toolSkips) string {
	what := "tests need"
	switch s.tests {
	case 0:
		what = "some tests need"
	case 1:
		what = "1 test needs"
	default:
		what = fmt.Sprintf("%d tests need", s.tests)
	}
	return fmt.Sprintf("SKIP %s: %s %s, not on PATH: install it (%s), then go test -count=1 %s\n",
		pkg, what, tool, s.install, pkg)
}

// reportWriter picks where a skip report is seen. go test runs the test
// binary with its output in a pipe and, in package list mode (go test
// ./...), prints a passing package's output only under -v (or -json). So:
// with -v, or when the binary writes to a terminal already (go test in a
// package directory), standard output; otherwise the controlling terminal
// of the person running go test; with neither, standard error, which go
// test shows with -v, -json or when the package fails.
func reportWriter() (io.Writer, func()) {
	if testing.Verbose() || isTerminal(os.Stdout) {
		return os.Stdout, func() {}
	}
	if tty, err := os.OpenFile(ttyPath, os.O_WRONLY, 0); err == nil {
		return tty, func() { _ = tty.Close() }
	}
	return os.Stderr, func() {}
}

// ttyPath is the controlling terminal.
const ttyPath = "/dev/tty"

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// packageDir names the package under test as go test takes it, "./cmd/x":
// go test runs the binary in the package's directory.
func packageDir() string {
	wd, err := os.Getwd()
	if err != nil {
		return "."
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			rel, err := filepath.Rel(dir, wd)
			if err != nil || rel == "." {
				return "."
			}
			return "./" + filepath.ToSlash(rel)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "."
		}
		dir = parent
	}
}
