package ops

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestServerErrorsGoToTheLog: net/http reports what it cannot hand to a
// handler (accept errors when the process is out of files, a handler's
// panic) on its ErrorLog, by default plain text on stderr between the JSON
// lines. They must be JSON lines of the worker's log, with any phone
// number masked, like every other line.
func TestServerErrorsGoToTheLog(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	srv := NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("payload phoneNumber 13800138000")
	}), zerolog.New(logs))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	if resp, err := http.Get("http://" + ln.Addr().String() + "/"); err == nil {
		resp.Body.Close()
	}
	// The server logs after the client has seen the connection close.
	deadline := time.Now().Add(5 * time.Second)
	for logs.String() == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := logs.String()
	var line struct{ Level, Message string }
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &line); err != nil || line.Level != "warn" || !strings.Contains(line.Message, "http: panic serving") {
		t.Fatalf("server error not logged as a JSON warning (%v):\n%s", err, out)
	}
	if strings.Contains(out, "13800138000") {
		t.Fatalf("server error log shows the phone number:\n%s", out)
	}
}
