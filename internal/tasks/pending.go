package tasks

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Outcomes the worker knows but could not write (Redis unreachable, or
// full and refusing writes) are kept in this process and written as soon as
// Redis takes writes again. The one that matters most is a send GenAuth
// accepted: lost, the task would come back through asynq's lease recovery,
// find its reservation still "reserved", take the unknown path and send a
// second SMS once the window had passed.
//
// The handler that got the answer holds its task while it waits for the
// write, so that asynq's heartbeat keeps extending the lease (as soon as
// Redis answers again) and no other worker is given the task; the task
// completes normally once the write is done. When the task's context ends
// first (its timeout, its lease lost in a long outage, shutdown), asynq
// takes the task back and the outcome stays here: a redelivery in this
// process writes it before doing anything else, and one in another process
// comes only through lease recovery, after the flusher below has written
// it (every pendingEvery while Redis is back), and in any case finds the
// reservation of the call still taken, so it makes no new call inside the
// window.

// pendingEvery is how often kept outcomes are tried while Redis refuses
// them: one write at a time, so a full Redis sees a few requests per second
// whatever the number of tasks waiting.
const pendingEvery = 250 * time.Millisecond

// pendingWriteTimeout bounds one try of a kept write.
const pendingWriteTimeout = 2 * time.Second

// maxPending bounds the outcomes kept in memory. Past it (a very long
// outage at high load) an outcome is not kept: its task runs again as
// before, safely for all but sends whose answer is then lost.
const maxPending = 10000

// pendingWrite is one outcome waiting for Redis.
type pendingWrite struct {
	id      string
	outcome string
	since   time.Time
	log     zerolog.Logger
	write   func(ctx context.Context) error
	done    chan struct{} // closed once written
	busy    bool          // a flush is writing it
}

// pendingStore holds the kept outcomes of one handler, oldest first.
type pendingStore struct {
	every time.Duration
	now   func() time.Time

	mu       sync.Mutex
	writes   []*pendingWrite
	flushing bool // the background flusher runs
}

// add keeps a write and makes sure the flusher runs. It returns nil when
// the store is full.
func (s *pendingStore) add(id, outcome string, log zerolog.Logger, write func(context.Context) error) *pendingWrite {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.writes) >= maxPending {
		return nil
	}
	w := &pendingWrite{id: id, outcome: outcome, since: s.now(), log: log, write: write, done: make(chan struct{})}
	s.writes = append(s.writes, w)
	if !s.flushing {
		s.flushing = true
		go s.flusher(s.every)
	}
	return w
}

// holds reports whether an outcome of task id is kept.
func (s *pendingStore) holds(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.writes {
		if w.id == id {
			return true
		}
	}
	return false
}

// size is the number of kept outcomes.
func (s *pendingStore) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.writes)
}

// flush writes kept outcomes oldest first, and stops at the first that
// fails (Redis still refuses) or when ctx ends. Writes another flush is
// busy with are skipped.
func (s *pendingStore) flush(ctx context.Context) {
	s.mu.Lock()
	todo := append([]*pendingWrite(nil), s.writes...)
	s.mu.Unlock()
	for _, w := range todo {
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		if w.busy {
			s.mu.Unlock()
			continue
		}
		w.busy = true
		s.mu.Unlock()

		wctx, cancel := context.WithTimeout(ctx, pendingWriteTimeout)
		err := w.write(wctx)
		cancel()

		s.mu.Lock()
		w.busy = false
		if err == nil {
			for i, x := range s.writes {
				if x == w {
					s.writes = append(s.writes[:i], s.writes[i+1:]...)
					break
				}
			}
			close(w.done)
		}
		s.mu.Unlock()
		if err != nil {
			return
		}
		w.log.Info().Str("outcome", w.outcome).Dur("kept", s.now().Sub(w.since)).
			Msg("kept outcome recorded now that Redis takes writes again")
	}
}

// flusher tries the kept outcomes every interval until none is left.
func (s *pendingStore) flusher(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for range t.C {
		s.flush(context.Background())
		s.mu.Lock()
		if len(s.writes) == 0 {
			s.flushing = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
}

// FlushPending writes the outcomes this handler keeps for want of Redis,
// until ctx ends, and logs each one it could not write: its task may be
// sent again. The worker calls it on shutdown, after its task servers
// stopped; it returns the number left unwritten.
func (h *Handler) FlushPending(ctx context.Context) int {
	for h.pending.size() > 0 {
		h.pending.flush(ctx)
		if h.pending.size() == 0 || ctx.Err() != nil {
			break
		}
		if sleepCtx(ctx, h.pending.every) != nil {
			break
		}
	}
	h.pending.mu.Lock()
	left := append([]*pendingWrite(nil), h.pending.writes...)
	h.pending.mu.Unlock()
	for _, w := range left {
		w.log.Error().Str("outcome", w.outcome).Dur("kept", h.now().Sub(w.since)).
			Msg("outcome not recorded before exit (Redis refused it): the task may run again and, for a send, send a second SMS after the window")
	}
	return len(left)
}
