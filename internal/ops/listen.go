package ops

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
)

// FallbackAddr is where Listen goes when the default address is taken.
const FallbackAddr = "127.0.0.1:0"

// Listen opens a TCP listener on addr. When addr is in use and fallback is
// true (the address was a default, not the operator's choice), it listens
// on FallbackAddr instead, so that several workers on one machine start
// without clashing; fellBack reports that it did.
func Listen(addr string, fallback bool) (ln net.Listener, fellBack bool, err error) {
	ln, err = net.Listen("tcp", addr)
	if err == nil || !fallback || !errors.Is(err, syscall.EADDRINUSE) {
		return ln, false, err
	}
	ln, err = net.Listen("tcp", FallbackAddr)
	return ln, err == nil, err
}

// IsLoopback reports whether addr (host:port) listens only on the
// loopback interface. An empty host means every interface.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
