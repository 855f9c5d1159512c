package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// The OpenAPI document is checked by kin-openapi, a validator smsq did not
// write: the document itself once, and every answer the tests receive
// against it, so that the two cannot drift.

var (
	contractOnce   sync.Once
	contractRouter routers.Router
	contractErr    error
)

func init() {
	// JSON Lines: each line is one item of the array the document gives.
	openapi3filter.RegisterBodyDecoder("application/jsonl", func(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
		var items []any
		sc := bufio.NewScanner(body)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			var v any
			if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
				return nil, fmt.Errorf("line %d: %w", len(items)+1, err)
			}
			items = append(items, v)
		}
		return items, sc.Err()
	})
}

// loadContract loads and validates the embedded document.
func loadContract() (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(OpenAPI())
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("validate: %w", err)
	}
	return doc, nil
}

func router(t testing.TB) routers.Router {
	t.Helper()
	contractOnce.Do(func() {
		doc, err := loadContract()
		if err != nil {
			contractErr = err
			return
		}
		contractRouter, contractErr = gorillamux.NewRouter(doc)
	})
	if contractErr != nil {
		t.Fatalf("OpenAPI document: %v", contractErr)
	}
	return contractRouter
}

// checkResponse validates one exchange against the document; a route the
// document does not have must be answered 404 or 405 with a problem.
func checkResponse(t testing.TB, req *http.Request, status int, header http.Header, body []byte) {
	t.Helper()
	if err := validateExchange(router(t), req, status, header, body); err != nil {
		t.Errorf("%s %s → %d does not match the OpenAPI document: %v\nbody: %s", req.Method, req.URL, status, err, body)
	}
}

func validateExchange(rt routers.Router, req *http.Request, status int, header http.Header, body []byte) error {
	route, params, err := rt.FindRoute(req)
	if err != nil {
		if status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
			return fmt.Errorf("no such route in the document, yet answered %d", status)
		}
		var p Problem
		if header.Get("Content-Type") != "application/problem+json" || json.Unmarshal(body, &p) != nil || p.Status != status {
			return fmt.Errorf("a %d is not a problem document", status)
		}
		return nil
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	return openapi3filter.ValidateResponse(context.Background(), in)
}

// contractTransport validates every answer it carries and fails the test
// when one holds any of the forbidden strings (full phone numbers,
// secrets).
type contractTransport struct {
	t         testing.TB
	forbidden []string
}

func (c *contractTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	checkResponse(c.t, req, resp.StatusCode, resp.Header, body)
	for _, f := range c.forbidden {
		if strings.Contains(string(body), f) {
			c.t.Errorf("%s %s: the answer holds %q:\n%s", req.Method, req.URL, f, body)
		}
		for k, vs := range resp.Header {
			for _, v := range vs {
				if strings.Contains(v, f) {
					c.t.Errorf("%s %s: header %s holds %q", req.Method, req.URL, k, f)
				}
			}
		}
	}
	return resp, nil
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi %q: want 3.1", doc.OpenAPI)
	}
	// Every route the server has is in the document, and no other.
	want := []string{"/v1/sms", "/v1/sms/batch", "/v1/sms/{id}", "/v1/verifications", "/v1/openapi.json"}
	if got := doc.Paths.Len(); got != len(want) {
		t.Errorf("document has %d paths, want %d", got, len(want))
	}
	for _, p := range want {
		if doc.Paths.Value(p) == nil {
			t.Errorf("document lacks %s", p)
		}
	}
	// Every problem kind the server can answer is in the Problem schema.
	types := doc.Components.Schemas["Problem"].Value.Properties["type"].Value.Enum
	for _, k := range allKinds {
		found := false
		for _, e := range types {
			found = found || e == ProblemTypePrefix+k.slug
		}
		if !found {
			t.Errorf("problem type %s is not in the document", k.slug)
		}
	}
}

// A broken document must fail the check: the check is not a formality.
func TestContractCheckCatchesDrift(t *testing.T) {
	rt := router(t)
	req, _ := http.NewRequest(http.MethodPost, "http://api.test/v1/sms", nil)
	h := http.Header{"Content-Type": {"application/json"}}
	if err := validateExchange(rt, req, 202, h, []byte(`{"id":"x","queue":"critical","phone":"+86 138****8000","sendBy":"2026-01-01T00:00:00Z","status":"queued"}`)); err != nil {
		t.Fatalf("a good receipt was refused: %v", err)
	}
	for name, body := range map[string]string{
		"missing id":      `{"queue":"critical","phone":"x","sendBy":"2026-01-01T00:00:00Z","status":"queued"}`,
		"extra field":     `{"id":"x","queue":"critical","phone":"x","sendBy":"2026-01-01T00:00:00Z","status":"queued","secret":1}`,
		"wrong status":    `{"id":"x","queue":"critical","phone":"x","sendBy":"2026-01-01T00:00:00Z","status":"sent"}`,
		"not a date-time": `{"id":"x","queue":"critical","phone":"x","sendBy":"soon","status":"queued"}`,
	} {
		if err := validateExchange(rt, req, 202, h, []byte(body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := validateExchange(rt, req, 418, h, []byte(`{}`)); err == nil {
		t.Errorf("an undocumented status was accepted")
	}
	ph := http.Header{"Content-Type": {"application/problem+json"}}
	if err := validateExchange(rt, req, 400, ph, []byte(`{"type":"urn:smsq:problem:invalid-request","title":"t","status":400}`)); err == nil {
		t.Errorf("a problem without detail was accepted")
	}
}
