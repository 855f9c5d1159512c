package api

import (
	stdlog "log"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/smsq/smsq/internal/phone"
)

// Server timeouts. Each request sets its own read and write deadlines
// (Config.Timeout, ?wait=, a batch's idle time), so that a batch may run
// for as long as its lines keep coming.
const (
	ReadHeaderTimeout = 10 * time.Second
	IdleTimeout       = 60 * time.Second
	MaxHeaderBytes    = 16 << 10
)

// NewHTTPServer returns the http.Server for the API handler h, with
// net/http's own errors logged through log, phone numbers masked.
func NewHTTPServer(h http.Handler, log zerolog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          stdlog.New(serverLog{log}, "", 0),
	}
}

type serverLog struct{ log zerolog.Logger }

func (l serverLog) Write(p []byte) (int, error) {
	l.log.Warn().Msg(phone.MaskText(strings.TrimRight(string(p), "\n")))
	return len(p), nil
}
