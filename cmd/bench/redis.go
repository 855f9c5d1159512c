package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/redisproc"
)

// redisServer is a private redis-server the bench starts so that its
// figures (INFO commandstats above all) see no other client.
type redisServer struct {
	proc *redisproc.Process
	dir  string
}

// startRedis starts redis-server on a free loopback port with persistence
// off, in a temporary directory.
func startRedis(bin string) (*redisServer, error) {
	dir, err := os.MkdirTemp("", "smsq-bench-redis-")
	if err != nil {
		return nil, err
	}
	port, err := redisproc.FreePort()
	if err == nil {
		var p *redisproc.Process
		if p, err = redisproc.Start(redisproc.Config{Bin: bin, Port: port, Dir: dir}); err == nil {
			return &redisServer{proc: p, dir: dir}, nil
		}
	}
	os.RemoveAll(dir)
	return nil, err
}

func (s *redisServer) addr() string { return s.proc.Addr() }

func (s *redisServer) url() string { return "redis://" + s.addr() + "/0" }

// stop kills the server and removes its directory.
func (s *redisServer) stop() {
	s.proc.Kill()
	os.RemoveAll(s.dir)
}

// commandStats reads INFO commandstats: calls per command.
func commandStats(ctx context.Context, c redis.UniversalClient) (map[string]int64, error) {
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("INFO commandstats: %w", err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		// cmdstat_evalsha:calls=12,usec=...
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":")
		if !ok || !strings.HasPrefix(line, "cmdstat_") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				out[name] = n
			}
		}
	}
	return out, nil
}

// commandDelta is the number of commands run between two commandStats
// readings, leaving out the INFO calls that took them.
func commandDelta(before, after map[string]int64) int64 {
	var n int64
	for name, v := range after {
		if name == "info" {
			continue
		}
		n += v - before[name]
	}
	return n
}
