// Package redisproc runs one redis-server process on a loopback port. The
// test helpers (internal/redistest) and the benchmark command, which must
// measure a server that no other client touches, share it.
package redisproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config describes the process to start.
type Config struct {
	// Bin is the redis-server binary; required.
	Bin string
	// Port is the loopback port; required (see FreePort).
	Port int
	// Dir is the working directory (data files, redis.log); required.
	Dir string
	// AppendOnly turns on AOF with fsync on every write, so that a server
	// restarted after SIGKILL keeps what the killed one held.
	AppendOnly bool
	// Conf is a config file given before the flags (sentinels need one).
	Conf string
	// Args are extra redis-server arguments.
	Args []string
	// Ready bounds the wait for the first PING answer; default 10 s.
	Ready time.Duration
}

// Process is a running redis-server.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
	port int
}

// Start starts redis-server and waits until it answers PING (NOAUTH, from
// a server started with a password, counts as an answer).
func Start(c Config) (*Process, error) {
	if c.Bin == "" || c.Port == 0 || c.Dir == "" {
		return nil, errors.New("redisproc: Bin, Port and Dir are required")
	}
	if c.Ready == 0 {
		c.Ready = 10 * time.Second
	}
	args := []string{
		"--port", strconv.Itoa(c.Port),
		"--bind", "127.0.0.1",
		"--dir", c.Dir,
		"--save", "",
		"--logfile", filepath.Join(c.Dir, "redis.log"),
	}
	if c.AppendOnly {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	args = append(args, c.Args...)
	if c.Conf != "" {
		args = append([]string{c.Conf}, args...)
	}
	cmd := exec.Command(c.Bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{}), port: c.Port}
	go func() { _ = cmd.Wait(); close(p.done) }()

	rc := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1})
	defer rc.Close()
	deadline := time.Now().Add(c.Ready)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := rc.Ping(ctx).Err()
		cancel()
		if err == nil || strings.Contains(err.Error(), "NOAUTH") {
			return p, nil
		}
		select {
		case <-p.done:
			log, _ := os.ReadFile(filepath.Join(c.Dir, "redis.log"))
			return nil, fmt.Errorf("redis-server on port %d exited: %s %s", c.Port, strings.TrimSpace(stderr.String()), log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Kill()
			return nil, fmt.Errorf("redis-server on port %d did not answer PING: %w", c.Port, err)
		}
	}
}

// Addr is the server's host:port.
func (p *Process) Addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

// Kill stops the server with SIGKILL, as a crash would, and waits (up to
// five seconds) until it has exited. It is safe to call more than once.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
