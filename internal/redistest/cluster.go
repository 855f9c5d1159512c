package redistest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// Cluster is a Redis Cluster of masters without replicas, each a
// redis-server owned by the test. The slots are split evenly between the
// masters, as `redis-cli --cluster create --cluster-replicas 0` does.
type Cluster struct {
	// Nodes are the masters, in slot order: Nodes[0] serves slot 0.
	Nodes []*Server
}

// StartCluster starts a cluster of masters nodes (at least 3, Redis's own
// minimum) and waits until every node reports cluster_state:ok and knows
// the others. The processes are killed when the test ends.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("redistest.StartCluster: %d masters: a cluster needs at least 3", masters)
	}
	c := &Cluster{}
	for range masters {
		c.Nodes = append(c.Nodes, Start(t, Options{Args: []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			// Short, so a test that stops a node sees it marked failed soon.
			"--cluster-node-timeout", "2000",
			// Keep serving the slots that are up when one master is gone:
			// tests look at one node's loss, not at the whole cluster's.
			"--cluster-require-full-coverage", "no",
		}}))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clients := make([]*redis.Client, masters)
	for i, n := range c.Nodes {
		clients[i] = redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1})
		defer clients[i].Close()
	}
	per := clusterSlots / masters
	for i, rc := range clients {
		first, last := i*per, (i+1)*per-1
		if i == masters-1 {
			last = clusterSlots - 1
		}
		// Distinct epochs avoid the collision round a fresh cluster
		// otherwise goes through before it settles.
		if err := rc.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err(); err != nil {
			t.Fatalf("redistest: %s: CLUSTER SET-CONFIG-EPOCH: %v", c.Nodes[i], err)
		}
		if err := rc.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", first, last).Err(); err != nil {
			t.Fatalf("redistest: %s: CLUSTER ADDSLOTSRANGE %d %d: %v", c.Nodes[i], first, last, err)
		}
	}
	for i := 1; i < masters; i++ {
		if err := clients[0].ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(c.Nodes[i].Port())).Err(); err != nil {
			t.Fatalf("redistest: CLUSTER MEET %s: %v", c.Nodes[i], err)
		}
	}
	for i, rc := range clients {
		for {
			info, err := rc.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(masters)+"\r\n") &&
				strings.Contains(info, "cluster_slots_ok:"+strconv.Itoa(clusterSlots)+"\r\n") {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("redistest: %s did not join the cluster: %v\n%s", c.Nodes[i], err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Every node must also agree on who serves which slot, or a client
	// started now would be redirected while the gossip settles.
	for {
		ok := true
		for _, rc := range clients {
			slots, err := rc.ClusterSlots(ctx).Result()
			if err != nil || len(slots) != masters {
				ok = false
				break
			}
		}
		if ok {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("redistest: cluster nodes do not agree on the slot map")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c
}

// Addrs returns the nodes' host:port addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// URL is the cluster's redis-cluster:// URL naming every node as a seed.
func (c *Cluster) URL() string { return "redis-cluster://" + strings.Join(c.Addrs(), ",") }

// NodeFor returns the node serving key's hash slot.
func (c *Cluster) NodeFor(key string) *Server {
	slot := int(Slot(key))
	i := slot / (clusterSlots / len(c.Nodes))
	if i >= len(c.Nodes) {
		i = len(c.Nodes) - 1
	}
	return c.Nodes[i]
}

// String describes the cluster for test messages.
func (c *Cluster) String() string {
	return fmt.Sprintf("redis-cluster(%s)", strings.Join(c.Addrs(), ","))
}

// Slot returns the Redis Cluster hash slot of key: CRC16 of the key, or of
// its hash tag (the part between the first '{' and the next '}', when not
// empty), modulo 16384.
func Slot(key string) uint16 {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	return crc16(key) % clusterSlots
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial 0), the checksum Redis
// Cluster hashes keys with.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
