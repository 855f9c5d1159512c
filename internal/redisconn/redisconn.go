// Package redisconn turns a Redis URL into a go-redis client shared by
// asynq, the reservation store and the history store, and describes it for
// logs without its password.
//
// Supported URLs:
//
//	redis://[user:password@]host:port[/db]       one server
//	rediss://[user:password@]host:port[/db]      one server over TLS
//	redis-sentinel://[user:password@]h1:p1,h2:p2[/db]?master=NAME
//	redis-cluster://[user:password@]h1:p1,h2:p2  Redis Cluster seed nodes
package redisconn

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options tune the client.
type Options struct {
	// PoolSize is the connection pool size per node; 0 keeps go-redis's default.
	PoolSize int
	// DialTimeout bounds each connection attempt; 0 keeps go-redis's 5 s.
	// Commands that must fail fast when Redis is down set it lower.
	DialTimeout time.Duration
}

// Open parses rawURL and returns a client. It does not connect.
func Open(rawURL string, o Options) (redis.UniversalClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("Redis URL %s: %v", Redact(rawURL), errors.Unwrap(err))
	}
	switch u.Scheme {
	case "redis", "rediss":
		opt, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("Redis URL %s: %w", Redact(rawURL), err)
		}
		if o.PoolSize > 0 {
			opt.PoolSize = o.PoolSize
		}
		if o.DialTimeout > 0 {
			opt.DialTimeout = o.DialTimeout
		}
		return redis.NewClient(opt), nil
	case "redis-sentinel":
		addrs, err := hosts(u)
		if err != nil {
			return nil, fmt.Errorf("Redis URL %s: %w", Redact(rawURL), err)
		}
		master := u.Query().Get("master")
		if master == "" {
			return nil, fmt.Errorf("Redis URL %s: redis-sentinel needs ?master=NAME", Redact(rawURL))
		}
		db, err := dbNumber(u)
		if err != nil {
			return nil, fmt.Errorf("Redis URL %s: %w", Redact(rawURL), err)
		}
		pw, _ := u.User.Password()
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:       master,
			SentinelAddrs:    addrs,
			Username:         u.User.Username(),
			Password:         pw,
			SentinelPassword: u.Query().Get("sentinel_password"),
			DB:               db,
			PoolSize:         o.PoolSize,
			DialTimeout:      o.DialTimeout,
		}), nil
	case "redis-cluster":
		addrs, err := hosts(u)
		if err != nil {
			return nil, fmt.Errorf("Redis URL %s: %w", Redact(rawURL), err)
		}
		pw, _ := u.User.Password()
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:       addrs,
			Username:    u.User.Username(),
			Password:    pw,
			PoolSize:    o.PoolSize,
			DialTimeout: o.DialTimeout,
		}), nil
	default:
		return nil, fmt.Errorf("Redis URL %s: scheme %q: want redis, rediss, redis-sentinel or redis-cluster", Redact(rawURL), u.Scheme)
	}
}

func hosts(u *url.URL) ([]string, error) {
	var out []string
	for _, h := range strings.Split(u.Host, ",") {
		if h = strings.TrimSpace(h); h != "" {
			out = append(out, h)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no host")
	}
	return out, nil
}

func dbNumber(u *url.URL) (int, error) {
	p := strings.Trim(u.Path, "/")
	if p == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("database %q is not a number", p)
	}
	return n, nil
}

// Redact returns rawURL with any password replaced, for logs and errors.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		// Unparsable: show only the scheme, a password may be inside.
		if i := strings.Index(rawURL, "://"); i > 0 && i < 20 {
			return rawURL[:i] + "://(unparsable)"
		}
		return "(unparsable)"
	}
	return u.Redacted()
}

// Ping checks that Redis answers within timeout, with an error an operator
// can act on.
func Ping(ctx context.Context, c redis.UniversalClient, rawURL string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("cannot reach Redis at %s: %w (is it running? set REDIS_URL)", Redact(rawURL), err)
	}
	return nil
}
