// Package redistest starts real redis-server processes for tests.
//
// Every server listens on a free loopback port and lives in a temporary
// directory, so test packages never share keys with each other or with a
// developer's own Redis. Tests that prove Redis behaviour (Lua, TTLs,
// persistence, crash recovery) use it instead of miniredis.
//
// When redis-server is not installed the test is skipped with a message
// saying how to run it, except under CI (CI=true), where it fails: a CI run
// must never pass by skipping the tests that matter. A package whose
// TestMain is Main reports its skips in one line that go test shows even
// without -v (see SkipMissing and Main).
package redistest

import (
	"fmt"
	"os/exec"
	"strconv"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/redisproc"
)

// Options change how a server is started.
type Options struct {
	// AppendOnly turns on AOF persistence with fsync on every write, so a
	// restarted server keeps what the killed one held.
	AppendOnly bool
	// Args are extra redis-server arguments, such as "--cluster-enabled", "yes".
	Args []string

	// conf is a config file given before the flags: sentinels need one,
	// which they rewrite as they learn about their group.
	conf string
}

// Server is one redis-server process owned by a test.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	opts Options

	mu   sync.Mutex
	proc *redisproc.Process
}

// Binary returns the path of redis-server, or skips or fails t when there
// is none (see the package comment).
func Binary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		SkipMissing(t, "redis-server", "apt-get install redis-server")
	}
	return bin
}

// Start starts a new redis-server on a free loopback port and stops it
// when the test ends.
func Start(t testing.TB, opts ...Options) *Server {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	s := &Server{t: t, bin: Binary(t), dir: t.TempDir(), opts: o}
	// A free port can be taken by another process before the server binds
	// it (parallel test packages pick ports at the same time): try another.
	var err error
	for range 5 {
		s.port = FreePort(t)
		if err = s.tryStart(); err == nil {
			t.Cleanup(s.Kill)
			return s
		}
	}
	t.Fatal(err)
	return nil
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := redisproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL is the server's redis:// URL for database 0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Port is the server's TCP port.
func (s *Server) Port() int { return s.port }

// Dir is the server's working directory (AOF files, logs).
func (s *Server) Dir() string { return s.dir }

// Client returns a go-redis client for the server, closed when the test ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

func (s *Server) start() {
	s.t.Helper()
	if err := s.tryStart(); err != nil {
		s.t.Fatal(err)
	}
}

func (s *Server) tryStart() error {
	p, err := redisproc.Start(redisproc.Config{
		Bin: s.bin, Port: s.port, Dir: s.dir,
		AppendOnly: s.opts.AppendOnly, Conf: s.opts.conf, Args: s.opts.Args,
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	return nil
}

// Kill stops the server with SIGKILL, as a crash would. It is safe to call
// more than once.
func (s *Server) Kill() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p != nil {
		p.Kill()
	}
}

// Restart kills the server and starts it again on the same port and
// directory; with AppendOnly the data written before survives.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	s.start()
}

// String describes the server for test messages.
func (s *Server) String() string { return fmt.Sprintf("redis-server(%s)", s.Addr()) }
