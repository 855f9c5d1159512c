package webhook

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

func TestRefusal(t *testing.T) {
	t.Parallel()
	for ip, want := range map[string]string{
		"127.0.0.1": "loopback", "127.9.9.9": "loopback", "::1": "loopback",
		"10.1.2.3": "private", "172.16.0.1": "private", "172.31.255.255": "private", "192.168.1.1": "private", "fd00::1": "private",
		"169.254.169.254": "link-local", "fe80::1": "link-local",
		"100.64.0.1": "carrier-grade NAT", "100.127.255.254": "carrier-grade NAT",
		"0.0.0.0": "unspecified", "::": "unspecified", "0.1.2.3": "unspecified",
		"224.0.0.1": "multicast", "239.1.1.1": "multicast", "ff02::1": "multicast",
		"255.255.255.255": "reserved", "240.0.0.1": "reserved",
		// IPv4-mapped and NAT64 forms of internal addresses.
		"::ffff:127.0.0.1": "loopback", "::ffff:10.0.0.1": "private", "::ffff:169.254.169.254": "link-local",
		"64:ff9b::7f00:1": "loopback", "64:ff9b::a9fe:a9fe": "link-local",
		"fe80::1%eth0": "link-local",
		// Public.
		"8.8.8.8": "", "1.1.1.1": "", "100.128.0.1": "", "172.32.0.1": "", "2606:4700::1111": "", "::ffff:8.8.8.8": "",
	} {
		got := Refusal(netip.MustParseAddr(ip))
		if got != want {
			t.Errorf("Refusal(%s) = %q, want %q", ip, got, want)
		}
	}
}

func TestCheckURLAtStart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	refused := []string{"http://127.0.0.1/", "http://[::1]:8080/", "http://[::ffff:127.0.0.1]/", "http://10.0.0.1/",
		"http://169.254.169.254/latest/meta-data", "http://100.64.1.1/", "http://0.0.0.0/", "http://localhost:9/",
		"http://LOCALHOST./", "http://app.localhost/"}
	for _, raw := range refused {
		u, _ := url.Parse(raw)
		if _, err := (Guard{}).CheckURL(ctx, u, nil); !errors.Is(err, ErrRefused) {
			t.Errorf("%s: err %v, want ErrRefused", raw, err)
		}
		if _, err := (Guard{AllowPrivate: true}).CheckURL(ctx, u, nil); err != nil {
			t.Errorf("%s allowed: %v", raw, err)
		}
	}
	u, _ := url.Parse("https://8.8.8.8/")
	if _, err := (Guard{}).CheckURL(ctx, u, nil); err != nil {
		t.Errorf("public IP refused: %v", err)
	}
}

// The guard judges the address actually dialled, so a name that resolves
// to loopback is refused when the connection is made, whatever it
// resolved to at start-up (DNS rebinding).
func TestConnectTimeRefusal(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, nil)
	u, _ := url.Parse(rcv.URL)
	for _, host := range []string{"localhost", "127.0.0.1", "[::ffff:127.0.0.1]"} {
		target := "http://" + host + ":" + u.Port() + "/hook"
		req, _ := http.NewRequest(http.MethodPost, target, strings.NewReader("{}"))
		_, err := NewHTTPClient(Guard{}, DefaultTimeout).Do(req)
		if !errors.Is(err, ErrRefused) {
			t.Errorf("%s: err %v, want ErrRefused", host, err)
		}
	}
	if n := len(rcv.deliveries()); n != 0 {
		t.Fatalf("receiver got %d requests through the guard", n)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://localhost:"+u.Port()+"/hook", strings.NewReader("{}"))
	resp, err := NewHTTPClient(Guard{AllowPrivate: true}, DefaultTimeout).Do(req)
	if err != nil {
		t.Fatalf("allowed: %v", err)
	}
	resp.Body.Close()
}
