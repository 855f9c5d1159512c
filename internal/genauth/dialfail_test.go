package genauth_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"syscall"
	"testing"

	"github.com/smsq/smsq/internal/genauth"
)

// roundTripFunc lets a test play the transport.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestLocalResourceErrorsAreRetried: a failure to open a connection,
// whether this process is out of files (EMFILE), the machine out of files,
// buffers or ports, or the address refused or unknown, means that none of
// the request left, so the task must be retried, never failed for good nor
// held as a possible send. That holds even when the transport reported a
// write before: it moves a request to a new connection only when nothing
// of it was written on the old one, so a dial error as the last word
// settles it.
func TestLocalResourceErrorsAreRetried(t *testing.T) {
	t.Parallel()
	dial := func(syscallName string, errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError(syscallName, errno)}
	}
	lookup := &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{
		Err: "dial udp 127.0.0.53:53: socket: too many open files", Name: "example.genauth.ai"}}
	tests := []struct {
		name        string
		err         error
		wroteBefore bool // the transport reported a write before failing
		want        genauth.Class
	}{
		{"EMFILE on socket", dial("socket", syscall.EMFILE), false, genauth.ClassRetry},
		{"ENFILE on socket", dial("socket", syscall.ENFILE), false, genauth.ClassRetry},
		{"ENOBUFS on socket", dial("socket", syscall.ENOBUFS), false, genauth.ClassRetry},
		{"EADDRNOTAVAIL on connect", dial("connect", syscall.EADDRNOTAVAIL), false, genauth.ClassRetry},
		{"look-up out of files", lookup, false, genauth.ClassRetry},
		{"EMFILE on a new connection after a reused one wrote nothing", dial("socket", syscall.EMFILE), true, genauth.ClassRetry},
		{"refused on a new connection after a reused one wrote nothing", dial("connect", syscall.ECONNREFUSED), true, genauth.ClassRetry},
		{"look-up failure after a reused one wrote nothing", lookup, true, genauth.ClassRetry},
		// A failed write may still have put bytes on the wire.
		{"ENOBUFS on write", &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.ENOBUFS)}, true, genauth.ClassUnknown},
		{"reset after write", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true, genauth.ClassUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if tt.wroteBefore {
					if tr := httptrace.ContextClientTrace(r.Context()); tr != nil && tr.WroteHeaders != nil {
						tr.WroteHeaders()
					}
				}
				return nil, tt.err
			})}
			c, err := genauth.New(genauth.Config{AppHost: "https://example.genauth.ai", AppID: "app", HTTPClient: hc})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.SendSMS(context.Background(), genauth.SendSMSRequest{Channel: genauth.ChannelLogin, PhoneNumber: testPhone})
			if err == nil {
				t.Fatal("SendSMS = nil error, want the transport's")
			}
			if got := (genauth.Classifier{}).Classify(nil, err); got != tt.want {
				t.Fatalf("Classify(%v) = %v, want %v", err, got, tt.want)
			}
			if !errors.Is(err, tt.err) {
				t.Fatalf("SendSMS error %v does not wrap the transport's %v", err, tt.err)
			}
		})
	}
}
