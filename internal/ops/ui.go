package ops

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

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
	return &UI{mon: mon, apiDir: mon.RootPath() + "/api/"}, nil
}

// ServeHTTP serves the UI. API answers pass through maskAPI: asynqmon
// shows a task's last error as it is, and that text may come from GenAuth.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, u.apiDir) {
		u.mon.ServeHTTP(w, r)
		return
	}
	rec := &recorder{header: http.Header{}, code: http.StatusOK}
	u.mon.ServeHTTP(rec, r)
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
func (u *UI) Close() error { return u.mon.Close() }

// maskAPI masks the error_message fields of a JSON answer, or the whole
// answer when it is not JSON (asynqmon's plain-text errors).
func maskAPI(body []byte) []byte {
	v, ok := decode(body)
	if !ok {
		return []byte(MaskText(string(body)))
	}
	maskErrors(v)
	out, err := json.Marshal(v)
	if err != nil {
		return []byte(MaskText(string(body)))
	}
	return append(out, '\n')
}

func maskErrors(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && k == "error_message" {
				x[k] = MaskText(s)
				continue
			}
			maskErrors(e)
		}
	case []any:
		for _, e := range x {
			maskErrors(e)
		}
	}
}

// recorder buffers an answer so that it can be masked before it is sent.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
	wrote  bool
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.code, r.wrote = code, true
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.wrote = true
	return r.body.Write(p)
}
