package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/smsq/smsq/internal/redistest"
)

// TestCheckRedisSettings runs the start-up check against real servers: one
// that keeps nothing on disk, one that evicts, one configured as
// deploy/redis.conf says, and one that refuses CONFIG as managed Redis
// often does (start-up goes on, saying it could not check).
func TestCheckRedisSettings(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		opts redistest.Options
		want []string // substrings, one warning each
		info string
	}{
		{name: "nothing on disk", want: []string{"keeps nothing on disk"}},
		{name: "evicts", opts: redistest.Options{AppendOnly: true, Args: []string{"--maxmemory-policy", "allkeys-lru"}},
			want: []string{"maxmemory-policy is not noeviction"}},
		{name: "both", opts: redistest.Options{Args: []string{"--maxmemory-policy", "volatile-ttl"}},
			want: []string{"keeps nothing on disk", "maxmemory-policy is not noeviction"}},
		{name: "AOF and noeviction", opts: redistest.Options{AppendOnly: true}},
		{name: "RDB snapshots only", opts: redistest.Options{Args: []string{"--save", "60 1"}}},
		{name: "CONFIG refused", opts: redistest.Options{Args: []string{"--rename-command", "CONFIG", ""}}, info: "could not check"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t, c.opts)
			var buf bytes.Buffer
			checkRedisSettings(context.Background(), srv.Client(), zerolog.New(&buf))
			out := buf.String()
			warns := strings.Count(out, `"level":"warn"`)
			if warns != len(c.want) {
				t.Fatalf("%d warnings, want %d:\n%s", warns, len(c.want), out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) || !strings.Contains(out, `README \"Deploying\"`) {
					t.Errorf("no warning saying %q and naming the README section:\n%s", w, out)
				}
			}
			if c.info != "" && !strings.Contains(out, c.info) {
				t.Errorf("want a line saying %q:\n%s", c.info, out)
			}
			if c.info == "" && len(c.want) == 0 && out != "" {
				t.Errorf("want nothing logged, got:\n%s", out)
			}
		})
	}
}
