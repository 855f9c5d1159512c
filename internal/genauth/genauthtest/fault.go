package genauthtest

import (
	"strconv"
	"time"
)

// FaultKind is a way a call can go wrong.
type FaultKind int

// The faults a Server can be made to show.
const (
	// FaultLatency sleeps Fault.Latency, then answers normally.
	FaultLatency FaultKind = iota
	// FaultBodyStatus answers HTTP 200 with body statusCode
	// Fault.StatusCode (default 500), as GenAuth does for its own and its
	// SMS provider's failures; 429 also carries a Retry-After header when
	// Fault.RetryAfter is set. Nothing is sent.
	FaultBodyStatus
	// FaultHTTPStatus answers as a gateway in front of GenAuth would: HTTP
	// Fault.StatusCode (default 502) with an HTML page. Nothing is sent.
	FaultHTTPStatus
	// FaultMalformed answers HTTP 200 with a body that is not valid JSON.
	// Nothing is sent unless Fault.SendBeforeFailing.
	FaultMalformed
	// FaultDrop reads the request, then closes the connection without
	// answering. Nothing is sent unless Fault.SendBeforeFailing.
	FaultDrop
	// FaultTimeout sends the SMS, then holds the answer for Fault.Latency,
	// so a client deadline shorter than that fires after the send.
	FaultTimeout
)

var faultNames = [...]string{
	FaultLatency:    "latency",
	FaultBodyStatus: "body-status",
	FaultHTTPStatus: "http-status",
	FaultMalformed:  "malformed",
	FaultDrop:       "drop",
	FaultTimeout:    "timeout",
}

// String names the fault kind, as recorded in Request.Fault.
func (k FaultKind) String() string {
	if k >= 0 && int(k) < len(faultNames) {
		return faultNames[k]
	}
	return "FaultKind(" + strconv.Itoa(int(k)) + ")"
}

// Fault is a misbehaviour queued with Server.Inject.
type Fault struct {
	// Kind is what goes wrong.
	Kind FaultKind
	// Count is how many requests the fault applies to: 0 means 1, -1
	// means every request until ClearFaults.
	Count int
	// StatusCode is the body statusCode of FaultBodyStatus or the HTTP
	// status of FaultHTTPStatus.
	StatusCode int
	// APICode is the apiCode of FaultBodyStatus, 0 for none.
	APICode int
	// RetryAfter, when positive, is sent as a Retry-After header in
	// whole seconds (rounded up) by FaultBodyStatus and FaultHTTPStatus.
	RetryAfter time.Duration
	// Latency is the delay of FaultLatency and FaultTimeout.
	Latency time.Duration
	// SendBeforeFailing makes FaultDrop and FaultMalformed count the SMS
	// as sent (for Sent and the one-minute rule) before failing, the case
	// of an answer lost after GenAuth did its work. The request must be
	// valid and outside the window for the send to happen.
	SendBeforeFailing bool
}

// nextFault takes the fault for one request off the queue. The caller holds
// s.mu.
func (s *Server) nextFault() (Fault, bool) {
	if len(s.faults) == 0 {
		return Fault{}, false
	}
	f := s.faults[0]
	if s.faults[0].Count > 0 {
		s.faults[0].Count--
		if s.faults[0].Count == 0 {
			s.faults = s.faults[1:]
		}
	}
	return f, true
}
