package redisconn

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/redistest"
)

func TestOpenForms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url  string
		want string // client type
	}{
		{"redis://127.0.0.1:6379/0", "*redis.Client"},
		{"rediss://user:pw@example.com:6380/2", "*redis.Client"},
		{"redis-sentinel://:pw@h1:26379,h2:26379/1?master=mymaster", "*redis.Client"},
		{"redis-cluster://h1:7000,h2:7001", "*redis.ClusterClient"},
	}
	for _, tt := range tests {
		c, err := Open(tt.url, Options{PoolSize: 7})
		if err != nil {
			t.Errorf("Open(%q): %v", tt.url, err)
			continue
		}
		switch c.(type) {
		case *redis.Client:
			if tt.want != "*redis.Client" {
				t.Errorf("Open(%q) = %T", tt.url, c)
			}
		case *redis.ClusterClient:
			if tt.want != "*redis.ClusterClient" {
				t.Errorf("Open(%q) = %T", tt.url, c)
			}
		}
		_ = c.Close()
	}
}

func TestOpenErrorsHideThePassword(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"ftp://:hunter2@x", "redis-sentinel://:hunter2@h1:1", "redis://:hunter2@h:1/notadb", "redis-cluster://:hunter2@"} {
		_, err := Open(u, Options{})
		if err == nil {
			t.Errorf("Open(%q) = nil error", u)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open(%q) error shows the password: %v", u, err)
		}
	}
	if got := Redact("redis://u:hunter2@h:1/0"); strings.Contains(got, "hunter2") {
		t.Errorf("Redact = %q", got)
	}
}

func TestUsernamePasswordAndDB(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Args: []string{"--user", "default", "off", "--user", "smsq", "on", ">pw", "~*", "&*", "+@all"}})
	c, err := Open("redis://smsq:pw@"+srv.Addr()+"/3", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := Ping(ctx, c, "redis://smsq:pw@"+srv.Addr()+"/3", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.(*redis.Client).Options(), 0; got.DB != 3 || got.Username != "smsq" {
		t.Fatalf("options db %d user %q", got.DB, got.Username)
	}
	bad, _ := Open("redis://smsq:wrong@"+srv.Addr()+"/3", Options{})
	defer bad.Close()
	err = Ping(ctx, bad, "redis://smsq:wrong@"+srv.Addr()+"/3", 2*time.Second)
	if err == nil || strings.Contains(err.Error(), "wrong@") {
		t.Fatalf("Ping with a wrong password: %v", err)
	}
}

// TestSecretsNeverShown checks Redact and Open's errors against every URL
// form with a password in each place, raw and encoded.
func TestSecretsNeverShown(t *testing.T) {
	t.Parallel()
	for _, u := range redistest.SecretURLs("127.0.0.1:1") {
		if got := Redact(u); strings.Contains(got, redistest.URLSecret) {
			t.Errorf("Redact(%q) = %q", u, got)
		}
		c, err := Open(u, Options{})
		if err != nil {
			if strings.Contains(err.Error(), redistest.URLSecret) {
				t.Errorf("Open(%q) error shows the password: %v", u, err)
			}
			continue
		}
		_ = c.Close()
	}
}

func TestRedactKeepsWhatHelps(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"redis://127.0.0.1:6379/0":                                               "redis://127.0.0.1:6379/0",
		"redis://user:pw@h:1/2?dial_timeout=3s":                                  "redis://user:xxxxx@h:1/2?dial_timeout=3s",
		"redis-sentinel://:pw@s1:1,s2:2/1?master=mymaster&sentinel_password=pw2": "redis-sentinel://:xxxxx@s1:1,s2:2/1?master=mymaster&sentinel_password=xxxxx",
		"redis-cluster://n1:1,n2:2?password=pw":                                  "redis-cluster://n1:1,n2:2?password=xxxxx",
		"rediss://pw@h:1":                                                        "rediss://xxxxx@h:1",
		"redis://:pa#ss@h:1":                                                     "redis://(not shown: does not parse)",
		"redis-sentinel://h?master=m&sentinel_password=a#b":                      "redis-sentinel://(not shown: does not parse)",
	}
	for in, want := range tests {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestOpenRefusesMisparsedURLs checks that a password holding an unencoded
// reserved character is refused with a hint, not half-used.
func TestOpenRefusesMisparsedURLs(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"redis://:pa#ss@h:1/0",
		"redis://u:12/ss@h:1/0",
		"redis-sentinel://h:1?master=m&sentinel_password=a#b",
		"redis-sentinel://h:1?master=m&sentinel_password=a@b",
	} {
		_, err := Open(u, Options{})
		if err == nil || !strings.Contains(err.Error(), "percent-encode") {
			t.Errorf("Open(%q) = %v, want an error saying to percent-encode", u, err)
		}
	}
}
