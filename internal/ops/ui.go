package ops

import (
	"bytes"
	"encoding/json"
	"errors"
	"github.com/smsq/smsq/internal/phone"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
)

// UIConfig configures the web UI.
type UIConfig struct {
	// Redis opens the UI's own connections. Required.
	Redis asynq.RedisConnOpt
	// Writable lets the UI delete, run, archive and cancel tasks and pause
	// queues; by default it only shows them.
	Writable bool
}

// UI is asynqmon with phone numbers masked in payloads, results and error
// messages.
type UI struct {
	mon    *asynqmon.HTTPHandler
	apiDir string
	stats  *queueStats
	ins    *asynq.Inspector
}

// NewUI validates cfg and builds the UI. It does not connect to Redis.
func NewUI(cfg UIConfig) (*UI, error) {
	if cfg.Redis == nil {
		return nil, errors.New("ops: UIConfig.Redis is required")
	}
	mon := asynqmon.New(asynqmon.Options{
		RootPath:     DefaultUIPath,
		RedisConnOpt: cfg.Redis,
		PayloadFormatter: asynqmon.PayloadFormatterFunc(func(_ string, p []byte) string {
			return MaskPayload(p)
		}),
		ResultFormatter: asynqmon.ResultFormatterFunc(func(_ string, r []byte) string {
			return MaskResult(r)
		}),
		ReadOnly: !cfg.Writable,
	})
	ins := asynq.NewInspector(cfg.Redis)
	return &UI{mon: mon, apiDir: mon.RootPath() + "/api/", ins: ins, stats: &queueStats{ins: ins, now: time.Now}}, nil
}

// ServeHTTP serves the UI. API answers pass through maskAPI: asynqmon
// shows a task's last error as it is, and that text may come from GenAuth.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, u.apiDir) {
		u.mon.ServeHTTP(w, r)
		return
	}
	if r.Method == http.MethodGet && r.URL.Path == u.apiDir+"queue_stats" {
		u.stats.ServeHTTP(w, r) // bounded and cached: see queueStats
		return
	}
	rec := &recorder{header: http.Header{}, code: http.StatusOK}
	u.mon.ServeHTTP(rec, r)
	if rec.over {
		text(w, http.StatusBadGateway, "answer larger than "+strconv.Itoa(maxAPIAnswer>>20)+" MiB: ask for a smaller page")
		return
	}
	body := maskAPI(rec.body.Bytes())
	h := w.Header()
	for k, v := range rec.header {
		h[k] = v
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(rec.code)
	w.Write(body)
}

// Close closes the UI's Redis connections.
func (u *UI) Close() error { return errors.Join(u.mon.Close(), u.ins.Close()) }

// maskAPI masks what a raw producer controls in a JSON answer (task IDs,
// queue and group names, task types, error messages; payloads and results
// went through MaskPayload and MaskResult already), or the whole answer
// when it is not JSON (asynqmon's plain-text errors). phone.MaskText keeps
// IDs readable unless a phone number is hidden in them.
func maskAPI(body []byte) []byte {
	v, ok := decode(body)
	if !ok {
		return []byte(MaskText(string(body)))
	}
	v = maskAPIValue("", v)
	out, err := json.Marshal(v)
	if err != nil {
		return []byte(MaskText(string(body)))
	}
	return append(out, '\n')
}

// producerIDs and producerText are the keys of asynqmon's answers whose
// string values come from producers: IDs and names, where only a hidden
// phone is masked (phone.MaskID), and free text.
var (
	producerIDs  = map[string]bool{"id": true, "task_id": true, "queue": true, "group": true}
	producerText = map[string]bool{"type": true, "task_type": true, "error_message": true}
)

func maskAPIValue(key string, v any) any {
	switch x := v.(type) {
	case string:
		switch {
		case producerIDs[key] || strings.HasSuffix(key, "_ids"):
			return phone.MaskID(x)
		case producerText[key]:
			return MaskText(x)
		}
		return x
	case map[string]any:
		if key == "queue_priorities" || strings.HasSuffix(key, "_by_queue") {
			// Keyed by queue name.
			out := make(map[string]any, len(x))
			for k, e := range x {
				out[phone.MaskID(k)] = maskAPIValue("", e)
			}
			return out
		}
		for k, e := range x {
			x[k] = maskAPIValue(k, e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = maskAPIValue(key, e)
		}
		return x
	default:
		return v
	}
}

// maxAPIAnswer bounds an API answer buffered for masking: decoding it
// takes several times its size.
const maxAPIAnswer = 16 << 20

// recorder buffers an answer so that it can be masked before it is sent,
// up to maxAPIAnswer; past it, over is set and the rest is dropped.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
	wrote  bool
	over   bool
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.code, r.wrote = code, true
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.wrote = true
	if r.over || r.body.Len()+len(p) > maxAPIAnswer {
		r.over = true
		return 0, errAnswerTooLarge
	}
	return r.body.Write(p)
}

var errAnswerTooLarge = errors.New("ops: API answer too large to buffer")
