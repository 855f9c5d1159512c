package redisproc_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/redisproc"
	"github.com/smsq/smsq/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func binary(t *testing.T) string { return redistest.Binary(t) }

func TestStartAnswersAndKillStops(t *testing.T) {
	t.Parallel()
	port, err := redisproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p, err := redisproc.Start(redisproc.Config{Bin: binary(t), Port: port, Dir: t.TempDir()})
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
	port, _ := redisproc.FreePort()
	_, err := redisproc.Start(redisproc.Config{Bin: binary(t), Port: port, Dir: t.TempDir(), Args: []string{"--no-such-option", "x"}})
	if err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("Start with a bad option: %v, want an error saying the server exited", err)
	}
	if _, err := redisproc.Start(redisproc.Config{}); err == nil {
		t.Fatal("Start with no binary, port or dir succeeded")
	}
}
