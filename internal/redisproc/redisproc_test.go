package redisproc

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func binary(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server not installed")
		}
		t.Skip("redis-server not installed: apt-get install redis-server to run this test")
	}
	return bin
}

func TestStartAnswersAndKillStops(t *testing.T) {
	t.Parallel()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start(Config{Bin: binary(t), Port: port, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1})
	defer c.Close()
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
	p.Kill()
	p.Kill() // twice is fine
	if err := c.Ping(context.Background()).Err(); err == nil {
		t.Fatal("PING answered after Kill")
	}
}

func TestStartReportsAServerThatExits(t *testing.T) {
	t.Parallel()
	port, _ := FreePort()
	_, err := Start(Config{Bin: binary(t), Port: port, Dir: t.TempDir(), Args: []string{"--no-such-option", "x"}})
	if err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("Start with a bad option: %v, want an error saying the server exited", err)
	}
	if _, err := Start(Config{}); err == nil {
		t.Fatal("Start with no binary, port or dir succeeded")
	}
}
