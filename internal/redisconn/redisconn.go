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
	"regexp"
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
	// MaxIdle is the most idle connections kept per node; one returned
	// beyond it is closed, so that a burst does not leave the pool's every
	// connection open while the worker idles. 0 keeps them all.
	MaxIdle int
}

// Open parses rawURL and returns a client. It does not connect. Its errors
// never quote rawURL or a part of it: they show Redact's form and say what
// is wrong in words, because a URL that does not parse as intended may hold
// a password anywhere.
func Open(rawURL string, o Options) (redis.UniversalClient, error) {
	u, err := parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("Redis URL %s: %w", Redact(rawURL), err)
	}
	switch u.Scheme {
	case "redis", "rediss":
		opt, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("Redis URL %s: %s", Redact(rawURL), goRedisReason(err))
		}
		if o.PoolSize > 0 {
			opt.PoolSize = o.PoolSize
		}
		if o.DialTimeout > 0 {
			opt.DialTimeout = o.DialTimeout
		}
		opt.MaxIdleConns = o.MaxIdle
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
			MaxIdleConns:     o.MaxIdle,
		}), nil
	case "redis-cluster":
		addrs, err := hosts(u)
		if err != nil {
			return nil, fmt.Errorf("Redis URL %s: %w", Redact(rawURL), err)
		}
		pw, _ := u.User.Password()
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:        addrs,
			Username:     u.User.Username(),
			Password:     pw,
			PoolSize:     o.PoolSize,
			DialTimeout:  o.DialTimeout,
			MaxIdleConns: o.MaxIdle,
		}), nil
	default:
		return nil, fmt.Errorf("Redis URL %s: the scheme is not redis, rediss, redis-sentinel or redis-cluster", Redact(rawURL))
	}
}

// encodeHint ends every error about a URL that does not parse as intended:
// nearly always a password holding a character that URLs reserve.
const encodeHint = "percent-encode # @ : / ? % and spaces in a password (# is %23, @ is %40, / is %2F, % is %25)"

// parse parses rawURL and refuses what would parse into something other
// than what was meant: a fragment, or an "@" after the host, is a password
// holding an unencoded "#", "/" or "?" whose rest went into the path, the
// query or the fragment, where logs and errors would show it.
func parse(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("does not parse (%s): %s", parseReason(err), encodeHint)
	}
	if u.Opaque != "" || u.Fragment != "" || strings.Contains(rawURL, "#") ||
		strings.Contains(u.Path, "@") || strings.Contains(u.RawQuery, "@") {
		return nil, fmt.Errorf("does not parse as scheme://[user:password@]host:port[/db][?options]: %s", encodeHint)
	}
	return u, nil
}

// parseReason says why net/url refused a URL without quoting it: its
// messages quote the offending part (`invalid port ":Pass" after host`),
// so only the words before the first quote are kept.
func parseReason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := strings.TrimPrefix(err.Error(), "net/url: ")
	if i := strings.IndexAny(msg, "\"'%:"); i >= 0 {
		msg = msg[:i]
	}
	if msg = strings.TrimSpace(msg); msg == "" {
		return "malformed"
	}
	return msg
}

// goRedisReason says why go-redis refused a URL that parsed, without the
// values it quotes (a database "number" or an option value may be a piece
// of a password): its fixed words, and for unknown options their names.
func goRedisReason(err error) string {
	msg := strings.TrimPrefix(err.Error(), "redis: ")
	head, rest, _ := strings.Cut(msg, ": ")
	if head == "unexpected option" {
		var names []string
		for _, n := range strings.Split(rest, ", ") {
			if !secretOptions[n] {
				// An unknown name may be the rest of a value holding "&".
				n = redacted
			}
			names = append(names, n)
		}
		return "unexpected option " + strings.Join(names, ", ")
	}
	if i := strings.IndexAny(head, "\"'%"); i >= 0 {
		head = head[:i]
	}
	return strings.TrimSpace(head)
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
		return 0, errors.New("the path is not a database number")
	}
	return n, nil
}

// Redact returns rawURL for logs and errors: scheme, hosts and database,
// option names, and the values of the options known to hold no secret
// (shownOptions). The password, a user name given without a password (some
// clients read "redis://secret@host" as a password), every other option
// value (password, sentinel_password, ...) and any path that is not a
// database number are replaced by "xxxxx". A URL that does not parse as
// intended is never echoed, not even in part.
func Redact(rawURL string) string {
	u, err := parse(rawURL)
	if err != nil {
		scheme, _, ok := strings.Cut(rawURL, "://")
		if !ok || !knownScheme(scheme) {
			scheme = "redis"
		}
		return scheme + "://(not shown: does not parse)"
	}
	var b strings.Builder
	if knownScheme(u.Scheme) {
		b.WriteString(u.Scheme)
	} else {
		b.WriteString("(unknown)")
	}
	b.WriteString("://")
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			b.WriteString(url.PathEscape(u.User.Username()) + ":" + redacted + "@")
		} else {
			b.WriteString(redacted + "@")
		}
	}
	b.WriteString(u.Host)
	if p := strings.Trim(u.Path, "/"); p != "" {
		if _, err := strconv.Atoi(p); err == nil && len(p) <= 3 {
			b.WriteString("/" + p)
		} else {
			b.WriteString("/" + redacted)
		}
	}
	if u.RawQuery != "" {
		for i, kv := range strings.Split(u.RawQuery, "&") {
			k, v, _ := strings.Cut(kv, "=")
			name, err := url.QueryUnescape(k)
			if err != nil || !shownOptions[name] && !secretOptions[name] {
				// An unknown name may be the rest of a value holding "&".
				name, v = redacted, redacted
			} else if v != "" && !shownValue(name, v) {
				v = redacted
			}
			if i == 0 {
				b.WriteString("?")
			} else {
				b.WriteString("&")
			}
			b.WriteString(name + "=" + v)
		}
	}
	return b.String()
}

// redacted stands for a hidden value, as in url.URL.Redacted.
const redacted = "xxxxx"

// shownOptions are the URL options whose values Redact shows: go-redis's
// connection settings and the sentinel master name. Every other value,
// known or not, may be a credential.
var shownOptions = map[string]bool{
	"master": true, "db": true, "protocol": true, "client_name": true,
	"max_retries": true, "min_retry_backoff": true, "max_retry_backoff": true,
	"dial_timeout": true, "read_timeout": true, "write_timeout": true,
	"pool_fifo": true, "pool_size": true, "pool_timeout": true,
	"min_idle_conns": true, "max_idle_conns": true, "max_active_conns": true,
	"conn_max_idle_time": true, "conn_max_lifetime": true, "skip_verify": true,
}

// secretOptions are the option names that people put credentials under;
// their names are shown, never their values.
var secretOptions = map[string]bool{
	"password": true, "sentinel_password": true, "username": true, "sentinel_username": true, "user": true,
}

// settingValue is what a number, duration or boolean setting looks like.
var settingValue = regexp.MustCompile(`^([0-9]+(\.[0-9]+)?[a-z]{0,2}|true|false)$`)

// shownValue reports whether the value of option name may be shown: the
// names (master, client_name) always, settings only when they look like
// one, since a value that does not may be a password put in the wrong place.
func shownValue(name, v string) bool {
	switch {
	case name == "master" || name == "client_name":
		return true
	case shownOptions[name]:
		return settingValue.MatchString(v)
	}
	return false
}

func knownScheme(s string) bool {
	switch s {
	case "redis", "rediss", "redis-sentinel", "redis-cluster":
		return true
	}
	return false
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
