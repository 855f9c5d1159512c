package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/smsq/smsq/internal/api"
	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/workertest"
)

func TestMain(m *testing.M) {
	code := redistest.Main(m)
	workertest.Cleanup()
	os.Exit(code)
}

const secret = "e2e-secret-0123456789abcdef"

// exchange is one request and answer as e2e.mjs saw it.
type exchange struct {
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

func TestNodeClientEndToEnd(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		redistest.SkipMissing(t, "node", "apt-get install nodejs")
	}
	rs := redistest.Start(t)
	fake, err := genauthtest.Listen("127.0.0.1:0", genauthtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	port := redistest.FreePort(t)
	dir := t.TempDir()
	env := append(workertest.Env(rs.URL(), fake, time.Minute),
		"SMSQ_API_ADDR=127.0.0.1:"+strconv.Itoa(port),
		"SMSQ_API_KEYS=e2e:"+secret,
	)
	w := workertest.Start(t, "worker", workertest.Binary(t, false), filepath.Join(dir, "worker.log"), env)
	t.Cleanup(func() { workertest.Stop(w) })
	w.WaitLog(t, "worker started", 60*time.Second)

	exchanges := filepath.Join(dir, "exchanges.jsonl")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "e2e.mjs")
	cmd.Env = append(os.Environ(),
		"SMSQ_API_URL=http://127.0.0.1:"+strconv.Itoa(port),
		"SMSQ_API_SECRET="+secret,
		"SMSQ_EXCHANGES="+exchanges,
		"SMSQ_RUN="+strconv.FormatInt(time.Now().UnixNano(), 36),
	)
	out, err := cmd.CombinedOutput()
	t.Logf("node e2e.mjs:\n%s", out)
	if err != nil {
		workertest.DumpLogs(t, 4000, w)
		t.Fatalf("node e2e.mjs: %v", err)
	}

	// Every answer Node received, against the document.
	n := checkExchanges(t, exchanges)
	if n < 15 {
		t.Fatalf("only %d exchanges recorded", n)
	}
	logs, _ := os.ReadFile(w.LogPath)
	for _, s := range []string{secret, "13800138000", "13900139000"} {
		if bytes.Contains(logs, []byte(s)) {
			t.Errorf("the worker's log holds %q", s)
		}
	}
	if !bytes.Contains(logs, []byte(`"key":"e2e"`)) {
		t.Errorf("the worker's log does not name the key")
	}
}

func checkExchanges(t *testing.T, path string) int {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the OpenAPI document: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	openapi3filter.RegisterBodyDecoder("application/jsonl", func(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
		var items []any
		sc := bufio.NewScanner(body)
		for sc.Scan() {
			var v any
			if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
				return nil, err
			}
			items = append(items, v)
		}
		return items, sc.Err()
	})
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 8<<20)
	for sc.Scan() {
		var ex exchange
		if err := json.Unmarshal(sc.Bytes(), &ex); err != nil {
			t.Fatal(err)
		}
		n++
		req, err := http.NewRequest(ex.Method, "http://api.test"+ex.Path, nil)
		if err != nil {
			t.Fatal(err)
		}
		h := http.Header{}
		for k, v := range ex.Headers {
			h.Set(k, v)
		}
		if err := validate(router, req, ex.Status, h, []byte(ex.Body)); err != nil {
			t.Errorf("%s %s → %d: %v\n%s", ex.Method, ex.Path, ex.Status, err, ex.Body)
		}
		for _, s := range []string{"13800138000", "13900139000", secret} {
			if strings.Contains(ex.Body, s) {
				t.Errorf("%s %s: the answer holds %q", ex.Method, ex.Path, s)
			}
		}
	}
	return n
}

// validate checks one answer against the document's route for req.
func validate(rt routers.Router, req *http.Request, status int, h http.Header, body []byte) error {
	route, params, err := rt.FindRoute(req)
	if err != nil {
		return fmt.Errorf("no such route in the document: %w", err)
	}
	return openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 h,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	})
}
