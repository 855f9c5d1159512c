package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelOptions shape a Sentinel group. Zero values select the defaults.
type SentinelOptions struct {
	// MasterName is the name the sentinels monitor; default "mymaster".
	MasterName string
	// Sentinels is the number of sentinel processes; default 3. The quorum
	// is a majority of them.
	Sentinels int
	// Replicas is the number of replicas of the master; default 1.
	Replicas int
	// DownAfter is how long a master must stay silent before a sentinel
	// considers it down; default 1s, so that failovers take seconds.
	DownAfter time.Duration
	// DataArgs are extra redis-server arguments for the master and the
	// replicas, such as "--min-replicas-to-write", "1".
	DataArgs []string
}

func (o SentinelOptions) withDefaults() SentinelOptions {
	if o.MasterName == "" {
		o.MasterName = "mymaster"
	}
	if o.Sentinels == 0 {
		o.Sentinels = 3
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.DownAfter == 0 {
		o.DownAfter = time.Second
	}
	return o
}

// SentinelGroup is a master, its replicas and the sentinels watching them,
// every one a redis-server process owned by the test.
type SentinelGroup struct {
	opts SentinelOptions
	// Data holds the master and the replicas; Data[0] is the first master.
	// After a failover the master is another one: ask MasterAddr.
	Data []*Server
	// Sentinels are the sentinel processes.
	Sentinels []*Server
}

// StartSentinelGroup starts a master, its replicas and the sentinels, and
// waits until the replicas are in sync and every sentinel knows the
// replicas and the other sentinels, so that a failover can start at once.
// The processes are killed when the test ends.
func StartSentinelGroup(t testing.TB, opts ...SentinelOptions) *SentinelGroup {
	t.Helper()
	var o SentinelOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	o = o.withDefaults()
	g := &SentinelGroup{opts: o}
	master := Start(t, Options{Args: o.DataArgs})
	g.Data = append(g.Data, master)
	for range o.Replicas {
		args := append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(master.Port())}, o.DataArgs...)
		g.Data = append(g.Data, Start(t, Options{Args: args}))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := waitReplicas(ctx, master.Addr(), o.Replicas); err != nil {
		t.Fatalf("redistest: %v", err)
	}

	quorum := o.Sentinels/2 + 1
	confDir := t.TempDir()
	for i := range o.Sentinels {
		conf := filepath.Join(confDir, "sentinel"+strconv.Itoa(i)+".conf")
		text := fmt.Sprintf(`sentinel monitor %[1]s 127.0.0.1 %[2]d %[3]d
sentinel down-after-milliseconds %[1]s %[4]d
sentinel failover-timeout %[1]s 10000
sentinel parallel-syncs %[1]s 1
`, o.MasterName, master.Port(), quorum, o.DownAfter.Milliseconds())
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatalf("redistest: write sentinel config: %v", err)
		}
		g.Sentinels = append(g.Sentinels, Start(t, Options{conf: conf, Args: []string{"--sentinel"}}))
	}
	for _, s := range g.Sentinels {
		if err := g.waitSentinelReady(ctx, s); err != nil {
			t.Fatalf("redistest: %v", err)
		}
	}
	return g
}

// waitReplicas waits until the master at addr has n replicas online.
func waitReplicas(ctx context.Context, addr string, n int) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	var info string
	for {
		var err error
		info, err = c.Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, "role:master") &&
			strings.Count(info, "state=online") >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("master %s does not have %d replicas online: %v\n%s", addr, n, err, info)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitSentinelReady waits until sentinel s sees the master up, with every
// replica and every other sentinel.
func (g *SentinelGroup) waitSentinelReady(ctx context.Context, s *Server) error {
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer sc.Close()
	var last string
	for {
		m, err := sc.Master(ctx, g.opts.MasterName).Result()
		if err == nil {
			last = fmt.Sprintf("flags=%s num-slaves=%s num-other-sentinels=%s", m["flags"], m["num-slaves"], m["num-other-sentinels"])
			if m["flags"] == "master" &&
				m["num-slaves"] == strconv.Itoa(g.opts.Replicas) &&
				m["num-other-sentinels"] == strconv.Itoa(g.opts.Sentinels-1) {
				return nil
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sentinel %s not ready: %s", s.Addr(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// SentinelAddrs returns the sentinels' host:port addresses.
func (g *SentinelGroup) SentinelAddrs() []string {
	out := make([]string, len(g.Sentinels))
	for i, s := range g.Sentinels {
		out[i] = s.Addr()
	}
	return out
}

// URL is the group's redis-sentinel:// URL for database 0.
func (g *SentinelGroup) URL() string {
	return "redis-sentinel://" + strings.Join(g.SentinelAddrs(), ",") + "/0?master=" + g.opts.MasterName
}

// MasterAddr returns the master's address as the first sentinel that
// answers reports it.
func (g *SentinelGroup) MasterAddr(ctx context.Context) (string, error) {
	var errs []error
	for _, s := range g.Sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: time.Second})
		hp, err := sc.GetMasterAddrByName(ctx, g.opts.MasterName).Result()
		sc.Close()
		if err == nil && len(hp) == 2 {
			return hp[0] + ":" + hp[1], nil
		}
		errs = append(errs, fmt.Errorf("sentinel %s: %v", s.Addr(), err))
	}
	return "", errors.Join(errs...)
}

// Master returns the data server that is the master now.
func (g *SentinelGroup) Master(ctx context.Context) (*Server, error) {
	addr, err := g.MasterAddr(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range g.Data {
		if s.Addr() == addr {
			return s, nil
		}
	}
	return nil, fmt.Errorf("sentinels name %s as master, which is none of the group's servers", addr)
}

// Failover asks a sentinel for a failover (SENTINEL FAILOVER) and waits
// until every sentinel names a new master and that server has taken the
// role. It returns the new master's address.
func (g *SentinelGroup) Failover(ctx context.Context) (string, error) {
	old, err := g.MasterAddr(ctx)
	if err != nil {
		return "", err
	}
	sc := redis.NewSentinelClient(&redis.Options{Addr: g.Sentinels[0].Addr(), MaxRetries: -1})
	defer sc.Close()
	if err := sc.Failover(ctx, g.opts.MasterName).Err(); err != nil {
		return "", fmt.Errorf("SENTINEL FAILOVER %s: %w", g.opts.MasterName, err)
	}
	return g.WaitNewMaster(ctx, old)
}

// WaitNewMaster waits until every live sentinel names a master other than
// old and that server answers as a master, as after a failover that
// follows a crash of old. It returns the new master's address.
func (g *SentinelGroup) WaitNewMaster(ctx context.Context, old string) (string, error) {
	var last string
	for {
		addr, ok, why := g.agreedMaster(ctx)
		last = why
		if ok && addr != old {
			c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
			info, err := c.Info(ctx, "replication").Result()
			c.Close()
			if err == nil && strings.Contains(info, "role:master") {
				return addr, nil
			}
			last = fmt.Sprintf("sentinels name %s, which does not answer as master yet: %v", addr, err)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no new master replaced %s: %s", old, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// agreedMaster reports the master address when every sentinel that
// answers names the same one.
func (g *SentinelGroup) agreedMaster(ctx context.Context) (string, bool, string) {
	seen := map[string]bool{}
	for _, s := range g.Sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
		hp, err := sc.GetMasterAddrByName(ctx, g.opts.MasterName).Result()
		sc.Close()
		if err != nil || len(hp) != 2 {
			continue
		}
		seen[hp[0]+":"+hp[1]] = true
	}
	if len(seen) != 1 {
		return "", false, fmt.Sprintf("sentinels disagree or do not answer: %v", seen)
	}
	for a := range seen {
		return a, true, ""
	}
	return "", false, ""
}

// String describes the group for test messages.
func (g *SentinelGroup) String() string {
	return fmt.Sprintf("redis-sentinel(%s master=%s)", strings.Join(g.SentinelAddrs(), ","), g.opts.MasterName)
}
