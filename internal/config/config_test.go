package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type vals struct {
	name   string
	n      int
	d      time.Duration
	b      bool
	secret string
}

func bindAll(s *Set, v *vals) {
	s.String(&v.name, "name", "T_NAME", "dflt", "a name")
	s.Int(&v.n, "n", "T_N", 3, "a number")
	s.Duration(&v.d, "d", "T_D", time.Second, "a duration")
	s.Bool(&v.b, "b", "T_B", false, "a switch")
	s.Secret(&v.secret, "secret", "T_SECRET", "", "a secret")
}

func TestPrecedence(t *testing.T) {
	t.Parallel()
	env := map[string]string{"T_NAME": "from-env", "T_N": "7", "T_D": "2m", "T_B": "true"}
	var v vals
	s := NewSet("t", func(k string) string { return env[k] }, io.Discard)
	bindAll(s, &v)
	if err := s.Parse([]string{"--n", "9"}); err != nil {
		t.Fatal(err)
	}
	if v.name != "from-env" || v.n != 9 || v.d != 2*time.Minute || !v.b || v.secret != "" {
		t.Fatalf("got %+v", v)
	}
	if !s.IsSet("name") || !s.IsSet("n") || s.IsSet("secret") {
		t.Fatalf("IsSet wrong")
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	var v vals
	s := NewSet("t", nil, io.Discard)
	bindAll(s, &v)
	if err := s.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if v.name != "dflt" || v.n != 3 || v.d != time.Second || v.b {
		t.Fatalf("got %+v", v)
	}
}

func TestBadValuesNameTheSetting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{"T_N": "many"}, nil, "T_N"},
		{map[string]string{"T_D": "soon"}, nil, "T_D"},
		{map[string]string{"T_B": "perhaps"}, nil, "T_B"},
		{nil, []string{"--n", "x"}, "-n"},
		{map[string]string{"T_SECRET_FILE": "/nonexistent/file"}, nil, "T_SECRET_FILE"},
	}
	for _, tt := range tests {
		var v vals
		s := NewSet("t", func(k string) string { return tt.env[k] }, io.Discard)
		bindAll(s, &v)
		err := s.Parse(tt.args)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("env %v args %v: err %v, want one naming %s", tt.env, tt.args, err, tt.want)
		}
	}
}

func TestFlagFixesBadEnv(t *testing.T) {
	t.Parallel()
	var v vals
	s := NewSet("t", func(k string) string { return map[string]string{"T_N": "many"}[k] }, io.Discard)
	bindAll(s, &v)
	if err := s.Parse([]string{"--n=4"}); err != nil || v.n != 4 {
		t.Fatalf("err %v n %d", err, v.n)
	}
}

func TestSecretFromFileIsHidden(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(path, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var v vals
	s := NewSet("t", func(k string) string { return map[string]string{"T_SECRET_FILE": path}[k] }, io.Discard)
	bindAll(s, &v)
	if err := s.Parse(nil); err != nil || v.secret != "s3cret" {
		t.Fatalf("err %v secret %q", err, v.secret)
	}
	var w vals
	s = NewSet("t", func(k string) string { return map[string]string{"T_N": "x", "T_SECRET": "abc"}[k] }, io.Discard)
	bindAll(s, &w)
	if err := s.Parse(nil); err == nil || strings.Contains(err.Error(), "abc") {
		t.Fatalf("err %v", err)
	}
}

// An <ENV>_FILE that names an empty file (a secret mount that did not get
// its value, a file truncated by an editor) is an error, not an empty
// secret: an empty REDIS_URL would start the embedded Redis and an empty
// SMSQ_PHONE_HASH_KEY the unkeyed hash, each silently.
func TestEmptySecretFileRefused(t *testing.T) {
	t.Parallel()
	for _, content := range []string{"", "\n", "\r\n\n"} {
		path := filepath.Join(t.TempDir(), "secret")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		var v vals
		s := NewSet("t", func(k string) string { return map[string]string{"T_SECRET_FILE": path}[k] }, io.Discard)
		bindAll(s, &v)
		if err := s.Parse(nil); err == nil || !strings.Contains(err.Error(), "T_SECRET_FILE") || !strings.Contains(err.Error(), "empty") {
			t.Errorf("file %q: err %v, want one naming T_SECRET_FILE and saying it is empty", content, err)
		}
	}
}

func TestUsageNeverShowsEnvironmentValues(t *testing.T) {
	t.Parallel()
	var v vals
	var out strings.Builder
	s := NewSet("t", func(k string) string {
		return map[string]string{"T_SECRET": "redis://:topsecret@db:6379/0", "T_N": "7"}[k]
	}, &out)
	bindAll(s, &v)
	if err := s.Parse([]string{"-h"}); err == nil {
		t.Fatal("-h: no error")
	}
	if strings.Contains(out.String(), "topsecret") || strings.Contains(out.String(), "(default 7)") {
		t.Fatalf("usage shows environment values:\n%s", out.String())
	}
	if v.secret != "redis://:topsecret@db:6379/0" || v.n != 7 {
		t.Fatalf("environment not applied: secret %q n %d", v.secret, v.n)
	}
}

func TestBareBooleanFlag(t *testing.T) {
	t.Parallel()
	var v vals
	s := NewSet("t", nil, io.Discard)
	bindAll(s, &v)
	if err := s.Parse([]string{"--b"}); err != nil || !v.b {
		t.Fatalf("--b: err %v, b %v", err, v.b)
	}
}

func TestWeights(t *testing.T) {
	t.Parallel()
	m, err := ParseWeights(" critical=6, default=3,low=1 ")
	if err != nil || len(m) != 3 || m["critical"] != 6 {
		t.Fatalf("%v %v", m, err)
	}
	if got := FormatWeights(m); got != "critical=6,default=3,low=1" {
		t.Fatalf("FormatWeights = %q", got)
	}
	for _, bad := range []string{"", "a", "a=0", "a=x", "a=1,a=2", "=3"} {
		if _, err := ParseWeights(bad); err == nil {
			t.Errorf("ParseWeights(%q) = nil error", bad)
		}
	}
}

func TestMarkdownAndDurations(t *testing.T) {
	t.Parallel()
	var v vals
	s := NewSet("t", nil, io.Discard)
	bindAll(s, &v)
	md := Markdown(s.Settings())
	for _, want := range []string{"`--n`", "`T_N`", "`T_SECRET` (or `T_SECRET_FILE`)", "| `1s` |"} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	for d, want := range map[time.Duration]string{24 * time.Hour: "24h", time.Minute: "1m", 90 * time.Second: "1m30s", 500 * time.Millisecond: "500ms"} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
