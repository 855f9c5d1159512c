package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/genauth"
	"github.com/smsq/smsq/internal/phone"
	"github.com/smsq/smsq/internal/tasks"
)

// receipt is the answer to POST /v1/sms.
type receipt struct {
	ID     string    `json:"id"`
	Queue  string    `json:"queue"`
	Phone  string    `json:"phone"`
	SendBy time.Time `json:"sendBy"`
	Status string    `json:"status"`
	// Outcome is the task's state at the end of a ?wait=.
	Outcome *smsq.Outcome `json:"outcome,omitempty"`
}

// Outcomes reads tasks' outcomes; *smsq.Client is one.
type Outcomes interface {
	// Outcome is the task's state now; the error wraps
	// smsq.ErrNoSuchTask for a task nobody knows.
	Outcome(ctx context.Context, id string) (smsq.Outcome, error)
	// Wait returns once the task's outcome is final, or when ctx ends
	// with the last state read and an error.
	Wait(ctx context.Context, id string) (smsq.Outcome, error)
}

// parseWait reads ?wait=.
func parseWait(r *http.Request) (time.Duration, error) {
	v := r.URL.Query().Get("wait")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > MaxWait {
		return 0, &fieldError{"wait", fmt.Sprintf("wait: want a duration from 0s to %s, such as 5s", MaxWait)}
	}
	return d, nil
}

// invalid answers 400 for err (a *fieldError or a validation message).
func invalid(w *response, err error) {
	msg := strings.TrimPrefix(err.Error(), smsq.ErrInvalidRequest.Error()+": ")
	field := ""
	var fe *fieldError
	if errors.As(err, &fe) {
		field = fe.field
	} else {
		field = fieldOf(msg)
	}
	writeProblem(w, problem(kindInvalid, field, msg))
}

// postSMS queues one code.
func (s *Server) postSMS(w *response, r *http.Request) {
	if !requireJSON(w, r) {
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	req, err := decodeRequest(body)
	if err != nil {
		invalid(w, err)
		return
	}
	if req.IdempotencyKey != "" {
		invalid(w, &fieldError{"idempotencyKey", "idempotencyKey: send the key in the Idempotency-Key header"})
		return
	}
	wait, err := parseWait(r)
	if err != nil {
		invalid(w, err)
		return
	}
	if wait > 0 && s.cfg.Outcomes == nil {
		writeProblem(w, problem(kindNotImplemented, "wait", "wait: this server cannot read outcomes"))
		return
	}
	if h := r.Header.Values("Idempotency-Key"); len(h) > 0 {
		if len(h) > 1 {
			invalid(w, &fieldError{"Idempotency-Key", "Idempotency-Key: given more than once"})
			return
		}
		key, err := headerKey(h[0])
		if err != nil {
			invalid(w, &fieldError{"Idempotency-Key", err.Error()})
			return
		}
		req.IdempotencyKey = key
	}
	rec := req.record(0, "api:"+w.key)
	if rec.Err != nil {
		invalid(w, rec.Err)
		return
	}
	now := s.cfg.Now()
	t, v, err := smsq.Prepare(rec.Request(), now, rec.Options()...)
	if err == nil {
		err = smsq.CheckServed(v.Queue, s.cfg.Served)
	}
	if err != nil {
		if fieldOf(strings.TrimPrefix(err.Error(), smsq.ErrInvalidRequest.Error()+": ")) == "idempotencyKey" {
			msg := strings.TrimPrefix(err.Error(), smsq.ErrInvalidRequest.Error()+": idempotencyKey")
			err = &fieldError{"Idempotency-Key", "Idempotency-Key" + msg}
		}
		invalid(w, err)
		return
	}
	key := v.IdempotencyKey
	// The work goes on if the caller goes away: what it did in Redis is
	// then on record for its retry.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.cfg.Timeout)
	defer cancel()
	fp := fingerprint(w.key, req)
	ttl := v.SendBy.Sub(now) + tasks.DefaultRetention
	if key != "" {
		first, err := s.idem.begin(ctx, key, fp, 2*s.cfg.Timeout+5*time.Second)
		switch {
		case errors.Is(err, errReused):
			writeProblem(w, problem(kindKeyReused, "Idempotency-Key", "Idempotency-Key: this key was used with another request; a new request needs a new key"))
			return
		case errors.Is(err, errInProgress):
			p := problem(kindKeyInUse, "Idempotency-Key", "Idempotency-Key: a request with this key is still in progress; retry it shortly")
			p.RetryAfter = 1
			writeProblem(w, p)
			return
		case err != nil:
			s.unavailable(w, ctx, err)
			return
		case first != nil:
			w.Header().Set("Idempotent-Replayed", "true")
			var rc receipt
			if wait > 0 && json.Unmarshal(first.Body, &rc) == nil {
				w.taskID = rc.ID
				s.answerReceipt(w, r, first.Status, rc, wait)
				return
			}
			writeJSONBytes(w, first.Status, first.Body)
			return
		}
	}
	info, err := s.cfg.Enqueuer.Enqueue(ctx, t, v)
	if err != nil {
		if key != "" {
			actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			if aerr := s.idem.abandon(actx, key, fp); aerr != nil {
				s.log.Warn().Err(aerr).Msg("api: cannot give an idempotency key back")
			}
			acancel()
		}
		if errors.Is(err, smsq.ErrDuplicate) {
			writeProblem(w, problem(kindKeyInUse, "Idempotency-Key", "Idempotency-Key: the key already names a task queued by another producer or request; a new request needs a new key"))
			return
		}
		s.unavailable(w, ctx, err)
		return
	}
	w.taskID = info.ID
	rc := receipt{ID: info.ID, Queue: info.Queue, Phone: v.Phone.Masked(), SendBy: v.SendBy.UTC(), Status: "queued"}
	if key != "" {
		data, _ := json.Marshal(rc)
		fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		if err := s.idem.finish(fctx, key, fp, http.StatusAccepted, data, ttl); err != nil {
			// The task is queued: answer. A retry finds the record in
			// progress (409) until it expires, then the key in use.
			s.log.Warn().Err(err).Msg("api: cannot store the answer of an idempotent request")
		}
		fcancel()
	}
	s.answerReceipt(w, r, http.StatusAccepted, rc, wait)
}

// answerReceipt writes rc, first waiting up to wait for the task's outcome.
func (s *Server) answerReceipt(w *response, r *http.Request, status int, rc receipt, wait time.Duration) {
	if wait > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		o, err := s.cfg.Outcomes.Wait(ctx, rc.ID)
		cancel()
		if err == nil || ctx.Err() != nil {
			rc.Outcome = &o
		}
	}
	writeJSON(w, status, rc)
}

// unavailable answers 503 for a Redis failure or a timeout.
func (s *Server) unavailable(w *response, ctx context.Context, err error) {
	s.log.Warn().Err(err).Str("route", w.route).Msg("api: cannot queue")
	k := kindUnavailable
	detail := "Redis did not take the request; nothing was queued under a new key. Retry with the same Idempotency-Key"
	if ctx.Err() != nil {
		k = kindTimeout
		detail = "the request took longer than " + s.cfg.Timeout.String() + "; retry with the same Idempotency-Key"
	}
	p := problem(k, "", detail)
	p.RetryAfter = 1
	writeProblem(w, p)
}

// getSMS answers a task's state and outcome.
func (s *Server) getSMS(w *response, r *http.Request) {
	id := r.PathValue("id")
	wait, err := parseWait(r)
	if err != nil {
		invalid(w, err)
		return
	}
	if s.cfg.Outcomes == nil {
		writeProblem(w, problem(kindNotImplemented, "", "this server cannot read outcomes"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout+wait)
	defer cancel()
	o, err := s.cfg.Outcomes.Outcome(ctx, id)
	if err == nil && wait > 0 && !o.Final {
		wctx, wcancel := context.WithTimeout(ctx, wait)
		if wo, werr := s.cfg.Outcomes.Wait(wctx, id); werr == nil || wctx.Err() != nil {
			o = wo
		} else {
			err = werr
		}
		wcancel()
	}
	switch {
	case errors.Is(err, smsq.ErrNoSuchTask):
		writeProblem(w, problem(kindNotFound, "id", "id: no task "+phone.MaskID(id)+" is queued or remembered (never queued, or its record expired)"))
		return
	case err != nil:
		s.unavailable(w, ctx, err)
		return
	}
	w.taskID = id
	writeJSON(w, http.StatusOK, o)
}

// verificationRequest is the body of POST /v1/verifications.
type verificationRequest struct {
	PhoneNumber      string `json:"phoneNumber"`
	PhoneCountryCode string `json:"phoneCountryCode"`
	Channel          string `json:"channel"`
}

// verificationReceipt is the answer to POST /v1/verifications.
type verificationReceipt struct {
	Phone   string `json:"phone"`
	Channel string `json:"channel"`
	Status  string `json:"status"`
}

// postVerification takes a conversion report: the code sent to the phone
// on the channel was used.
func (s *Server) postVerification(w *response, r *http.Request) {
	if s.cfg.Verifier == nil {
		writeProblem(w, problem(kindNotImplemented, "", "this server has no abuse guard to report verifications to"))
		return
	}
	if !requireJSON(w, r) {
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var req verificationRequest
	if err := decodeObject(body, &req); err != nil {
		invalid(w, err)
		return
	}
	if req.PhoneNumber == "" {
		invalid(w, &fieldError{"phoneNumber", "phoneNumber: required"})
		return
	}
	if req.Channel == "" {
		invalid(w, &fieldError{"channel", "channel: required"})
		return
	}
	n, err := phone.Parse(req.PhoneNumber, req.PhoneCountryCode)
	if err != nil {
		invalid(w, &fieldError{"phoneNumber", "phoneNumber: " + phone.MaskText(err.Error())})
		return
	}
	ch, err := genauth.ParseChannel(req.Channel)
	if err != nil {
		invalid(w, &fieldError{"channel", "channel: " + phone.MaskText(err.Error())})
		return
	}
	ctx := r.Context()
	if err := s.cfg.Verifier.Verified(ctx, n.E164, string(ch)); err != nil {
		if errors.Is(err, smsq.ErrInvalidRequest) {
			invalid(w, &fieldError{"channel", strings.TrimPrefix(phone.MaskText(err.Error()), smsq.ErrInvalidRequest.Error()+": ")})
			return
		}
		s.log.Warn().Err(err).Str("route", w.route).Msg("api: cannot record a verification")
		k, detail := kindUnavailable, "Redis did not take the report; retry it"
		if ctx.Err() != nil {
			k = kindTimeout
		}
		writeProblem(w, problem(k, "", detail))
		return
	}
	writeJSON(w, http.StatusAccepted, verificationReceipt{Phone: n.Masked(), Channel: string(ch), Status: "recorded"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, _ := json.Marshal(v)
	writeJSONBytes(w, status, data)
}

func writeJSONBytes(w http.ResponseWriter, status int, data []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(data, '\n'))
}
