package ops

import (
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/smsq/smsq/internal/phone"
)

// Bounds of the UI's queue_stats answer. asynqmon's own handler reads 90
// days of history for every queue name Redis knows (two commands a day and
// queue) and buffers it all: with 3,000 names, ten calls took a worker to
// 3.5 GB. This one reads at most statsQueues queues, served ones first,
// and serves one read for statsCacheFor.
const (
	statsQueues   = 20
	statsDays     = 90
	statsCacheFor = 10 * time.Second
)

// queueStats serves GET .../api/queue_stats in asynqmon's answer format.
type queueStats struct {
	ins *asynq.Inspector
	now func() time.Time

	mu   sync.Mutex // held during a read: concurrent calls share it
	at   time.Time
	body []byte
	code int
}

// statsDay is asynqmon's dailyStats.
type statsDay struct {
	Queue     string `json:"queue"`
	Processed int    `json:"processed"`
	Succeeded int    `json:"succeeded"`
	Failed    int    `json:"failed"`
	Date      string `json:"date"`
}

func (s *queueStats) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	if s.body == nil || s.now().Sub(s.at) >= statsCacheFor {
		s.body, s.code = s.read()
		s.at = s.now()
	}
	body, code := s.body, s.code
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(body)
}

// read picks the queues (those live servers serve, then the rest by name,
// statsQueues in all) and reads their history. Queue names are masked
// like every producer ID the UI shows.
func (s *queueStats) read() ([]byte, int) {
	names, err := s.ins.Queues()
	if err != nil {
		return []byte(MaskText(err.Error())), http.StatusInternalServerError
	}
	slices.Sort(names)
	var pick []string
	if srvs, err := s.ins.Servers(); err == nil {
		for _, srv := range srvs {
			for q := range srv.Queues {
				if slices.Contains(names, q) && !slices.Contains(pick, q) {
					pick = append(pick, q)
				}
			}
		}
	}
	slices.Sort(pick)
	for _, q := range names {
		if len(pick) >= statsQueues {
			break
		}
		if !slices.Contains(pick, q) {
			pick = append(pick, q)
		}
	}
	pick = pick[:min(len(pick), statsQueues)]
	out := map[string][]statsDay{}
	for _, q := range pick {
		days, err := s.ins.History(q, statsDays)
		if err != nil {
			return []byte(MaskText(err.Error())), http.StatusInternalServerError
		}
		shown := phone.MaskID(q)
		list := make([]statsDay, 0, len(days))
		for _, d := range days {
			list = append(list, statsDay{Queue: shown, Processed: d.Processed, Succeeded: d.Processed - d.Failed, Failed: d.Failed, Date: d.Date.Format("2006-01-02")})
		}
		out[shown] = list
	}
	b, err := json.Marshal(map[string]any{"stats": out})
	if err != nil {
		return []byte(err.Error()), http.StatusInternalServerError
	}
	return append(b, '\n'), http.StatusOK
}
