package workertest

import (
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Group is the worker processes of one test: named worker1, worker2, … in
// start order, with their logs in one directory. It is safe for concurrent
// use.
type Group struct {
	bin string
	dir string

	mu sync.Mutex
	ps []*Process
}

// NewGroup returns an empty group running the binary bin, logging to a
// directory of t's.
func NewGroup(t testing.TB, bin string) *Group {
	return &Group{bin: bin, dir: t.TempDir()}
}

// Start starts a worker with settings env and waits up to 30 s until it
// serves; it fails the test when the worker exits first.
func (g *Group) Start(t testing.TB, env []string) *Process {
	t.Helper()
	g.mu.Lock()
	name := "worker" + strconv.Itoa(len(g.ps)+1)
	// Reserve the name before the slow start, so that concurrent starts
	// never share a log file.
	g.ps = append(g.ps, nil)
	i := len(g.ps) - 1
	g.mu.Unlock()
	p := Start(t, name, g.bin, filepath.Join(g.dir, name+".log"), env)
	g.mu.Lock()
	g.ps[i] = p
	g.mu.Unlock()
	p.WaitLog(t, "worker started", 30*time.Second)
	return p
}

// List returns the group's processes in start order.
func (g *Group) List() []*Process {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*Process, 0, len(g.ps))
	for _, p := range g.ps {
		if p != nil {
			out = append(out, p)
		}
	}
	return out
}

// Stop stops every process of the group; see Stop.
func (g *Group) Stop() { Stop(g.List()...) }

// DumpLogs logs the last tail bytes of every process's output; see
// DumpLogs.
func (g *Group) DumpLogs(t testing.TB, tail int) {
	t.Helper()
	DumpLogs(t, tail, g.List()...)
}
