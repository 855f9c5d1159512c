package webhook

import (
	"strings"
	"testing"
)

func TestParseEndpoints(t *testing.T) {
	t.Parallel()
	eps, err := ParseEndpoints(" https://hooks.example.com/smsq?token=s3cr3t , http://10.0.0.7:8080/in")
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 2 || eps[0].Host != "hooks.example.com" || eps[1].Host != "10.0.0.7:8080" {
		t.Fatalf("got %+v", eps)
	}
	if eps[0].ID == eps[1].ID || len(eps[0].ID) != 16 {
		t.Fatalf("IDs %q %q", eps[0].ID, eps[1].ID)
	}
	if s := eps[0].String(); strings.Contains(s, "s3cr3t") || strings.Contains(s, "/smsq") {
		t.Fatalf("String() shows the path or token: %s", s)
	}
	for _, bad := range []string{"", " , ", "ftp://x.example/", "https:///nohost", "https://user:pw@x.example/",
		"https://x.example/#zz9", "https://a.example/,https://a.example/", "::not a url",
		strings.Repeat("https://x.example/a,", 11)} {
		_, err := ParseEndpoints(bad)
		if err == nil {
			t.Errorf("%q: no error", bad)
			continue
		}
		if strings.Contains(err.Error(), "pw") || strings.Contains(err.Error(), "zz9") {
			t.Errorf("%q: error quotes a secret part: %v", bad, err)
		}
	}
}

func TestParseSecrets(t *testing.T) {
	t.Parallel()
	one, two := testSecret(1, 24), testSecret(50, 64)
	s, err := ParseSecrets(one + "  " + two)
	if err != nil || len(s) != 2 {
		t.Fatalf("got %d secrets, %v", len(s), err)
	}
	for _, bad := range []string{"", "   ", strings.TrimPrefix(one, secretPrefix), secretPrefix + "!!!notbase64",
		testSecret(1, 16), testSecret(1, 65), one + " nope"} {
		_, err := ParseSecrets(bad)
		if err == nil {
			t.Errorf("%q: no error", bad)
			continue
		}
		for _, f := range strings.Fields(bad) {
			if len(f) > 8 && strings.Contains(err.Error(), f) {
				t.Errorf("error quotes the secret: %v", err)
			}
		}
	}
}

func TestParseFilter(t *testing.T) {
	t.Parallel()
	all, err := ParseFilter("all")
	if err != nil || !all.Match("sent") || !all.Match("blocked") || all.String() != "all" {
		t.Fatalf("all: %v %v", all, err)
	}
	f, err := ParseFilter("failed, expired")
	if err != nil {
		t.Fatal(err)
	}
	if f.Match("sent") || !f.Match("failed") || !f.Match("expired") || f.String() != "expired,failed" {
		t.Fatalf("failed,expired: %v", f)
	}
	for _, bad := range []string{"sending", "sent,", "retrying", "SENT"} {
		if _, err := ParseFilter(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
