package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/smsq/smsq/internal/batch"
	"github.com/smsq/smsq/internal/phone"
)

// Batch concurrency: as enqueue batch's default, with a read-ahead window
// small enough that a batch holds at most batchWindow lines of
// MaxLineBytes (1 MiB) whatever its size.
const (
	batchConcurrency = batch.DefaultConcurrency
	batchWindow      = 4 * batchConcurrency
	// batchFlushEvery bounds how long a result line waits in the buffer.
	batchFlushEvery = 100 * time.Millisecond
)

// jsonlTypes are the content types of a batch body.
var jsonlTypes = map[string]bool{
	"application/jsonl": true, "application/x-ndjson": true, "application/x-jsonlines": true,
	"application/jsonlines": true, "application/json-seq": false,
}

// stopLine ends a batch answer that stopped before its input did.
type stopLine struct {
	Status string `json:"status"`
	Reason string `json:"reason"`
	// Line is the last input line reported before the stop.
	Line int `json:"line"`
}

// lineReader reads batch lines from a request body as batch records,
// pushing the read deadline on as lines come.
type lineReader struct {
	br     *bufio.Reader
	rc     *http.ResponseController
	line   int
	buf    []byte
	source string
	// first holds a record read ahead (the check for an empty body).
	first *batch.Record
}

func (l *lineReader) Read() (batch.Record, error) {
	if l.first != nil {
		rec := *l.first
		l.first = nil
		return rec, nil
	}
	for {
		_ = l.rc.SetReadDeadline(time.Now().Add(BatchIdleTimeout))
		line, tooLong, err := l.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) && (len(line) > 0 || tooLong) {
				// A last line without its line end.
				l.line++
				return l.parse(line, tooLong), nil
			}
			return batch.Record{}, err
		}
		l.line++
		if !tooLong && len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		return l.parse(line, tooLong), nil
	}
}

func (l *lineReader) parse(line []byte, tooLong bool) batch.Record {
	if tooLong {
		return batch.Record{Line: l.line, Err: fmt.Errorf("line longer than %d bytes", MaxLineBytes)}
	}
	req, err := decodeRequest(line)
	if err != nil {
		return batch.Record{Line: l.line, Err: err}
	}
	return req.record(l.line, l.source)
}

// readLine returns the next line; past MaxLineBytes the rest of it is
// skipped, not held.
func (l *lineReader) readLine() ([]byte, bool, error) {
	l.buf = l.buf[:0]
	tooLong := false
	for {
		chunk, isPrefix, err := l.br.ReadLine()
		if err != nil {
			return l.buf, tooLong, err
		}
		if !tooLong {
			if len(l.buf)+len(chunk) > MaxLineBytes {
				tooLong = true
				l.buf = l.buf[:0]
			} else {
				l.buf = append(l.buf, chunk...)
			}
		}
		if !isPrefix {
			return l.buf, tooLong, nil
		}
	}
}

// postBatch queues JSON Lines, answering one result line per request line
// in input order, while the input is still coming.
func (s *Server) postBatch(w *response, r *http.Request) {
	if !jsonlTypes[mediaType(r)] {
		writeProblem(w, problem(kindMediaType, "Content-Type", "Content-Type: want application/jsonl (or application/x-ndjson): one JSON object per line"))
		return
	}
	if n := s.batches.Add(1); n > int64(s.cfg.MaxBatches) {
		s.batches.Add(-1)
		p := problem(kindBusy, "", fmt.Sprintf("this server runs at most %d batches at once", s.cfg.MaxBatches))
		p.RetryAfter = 1
		writeProblem(w, p)
		return
	}
	defer s.batches.Add(-1)
	rc := http.NewResponseController(w)
	// Results stream out while the body is read.
	_ = rc.EnableFullDuplex()
	lr := &lineReader{br: bufio.NewReaderSize(r.Body, 16<<10), rc: rc, source: "api:" + w.key}
	first, err := lr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			invalid(w, &fieldError{"", "body: no request lines"})
		} else {
			writeProblem(w, problem(kindHeaderOrBodyRead, "", "body: "+err.Error()))
		}
		return
	}
	lr.first = &first

	var (
		mu      sync.Mutex
		out     = bufio.NewWriterSize(w, 32<<10)
		started bool
		writeOK = true
	)
	start := func() {
		if !started {
			started = true
			w.Header().Set("Content-Type", "application/jsonl")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
		}
	}
	flush := func() {
		if !writeOK {
			return
		}
		_ = rc.SetWriteDeadline(time.Now().Add(BatchIdleTimeout))
		if err := out.Flush(); err != nil {
			writeOK = false
			return
		}
		if err := rc.Flush(); err != nil {
			writeOK = false
		}
	}
	tick := time.NewTicker(batchFlushEvery)
	stopTick := make(chan struct{})
	tickDone := make(chan struct{})
	go func() {
		defer close(tickDone)
		for {
			select {
			case <-tick.C:
				mu.Lock()
				if started && out.Buffered() > 0 {
					flush()
				}
				mu.Unlock()
			case <-stopTick:
				return
			}
		}
	}()
	enc := json.NewEncoder(out)
	sum, runErr := batch.Run(r.Context(), lr, batch.Config{
		Enqueuer:    s.cfg.Enqueuer,
		Concurrency: batchConcurrency,
		Window:      batchWindow,
		Timeout:     s.cfg.Timeout,
		Served:      s.cfg.Served,
		Output: func(res batch.Result) error {
			mu.Lock()
			defer mu.Unlock()
			start()
			s.m.line(w.key, string(res.Status))
			res.Reason = phone.MaskText(res.Reason)
			if err := enc.Encode(res); err != nil {
				return err
			}
			if !writeOK {
				return errors.New("the client stopped reading the answer")
			}
			return nil
		},
	})
	close(stopTick)
	<-tickDone
	tick.Stop()
	w.lines = sum.Lines
	mu.Lock()
	defer mu.Unlock()
	start()
	if runErr != nil && !errors.Is(runErr, io.EOF) {
		reason := runErr.Error()
		if errors.Is(runErr, context.Canceled) {
			reason = "the client went away"
		}
		enc.Encode(stopLine{Status: "stopped", Reason: phone.MaskText(reason), Line: sum.LastLine})
	}
	flush()
}
