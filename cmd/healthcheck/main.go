// Command healthcheck is the container health probe for the worker image,
// whose distroless base has no shell, curl or wget. It asks the worker's
// /healthz on the port of SMSQ_HTTP_ADDR and exits 0 when it answers 200,
// 1 otherwise.
//
//	healthcheck [URL]
//
// Without URL it probes http://127.0.0.1:PORT/healthz, PORT taken from
// SMSQ_HTTP_ADDR (8080 when unset): the probe runs inside the worker's
// container, where loopback always reaches it.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, 3*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
}

// run probes the worker once, giving up after timeout.
func run(ctx context.Context, args []string, getenv func(string) string, timeout time.Duration) error {
	target, err := probeURL(args, getenv("SMSQ_HTTP_ADDR"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// Drain a little so the worker's log shows a completed request, not a
	// reset connection.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", target, resp.Status)
	}
	return nil
}

// probeURL returns the URL to probe: the argument, or /healthz on loopback
// at the port of addr.
func probeURL(args []string, addr string) (string, error) {
	switch len(args) {
	case 0:
	case 1:
		return args[0], nil
	default:
		return "", fmt.Errorf("want at most one argument, the URL; got %d", len(args))
	}
	port := "8080"
	if addr != "" {
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			return "", fmt.Errorf("SMSQ_HTTP_ADDR=%s: %w", addr, err)
		}
		port = p
	}
	return "http://" + net.JoinHostPort("127.0.0.1", port) + "/healthz", nil
}
