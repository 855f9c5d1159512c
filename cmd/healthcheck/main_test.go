package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestProbeURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args    []string
		addr    string
		want    string
		wantErr string
	}{
		{nil, "", "http://127.0.0.1:8080/healthz", ""},
		{nil, "0.0.0.0:9090", "http://127.0.0.1:9090/healthz", ""},
		{nil, ":8081", "http://127.0.0.1:8081/healthz", ""},
		{[]string{"http://10.0.0.1:1/readyz"}, "0.0.0.0:9090", "http://10.0.0.1:1/readyz", ""},
		{nil, "nonsense", "", "SMSQ_HTTP_ADDR"},
		{[]string{"a", "b"}, "", "", "at most one"},
	}
	for _, tt := range tests {
		got, err := probeURL(tt.args, tt.addr)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("probeURL(%q, %q) error = %v, want one containing %q", tt.args, tt.addr, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Fatalf("probeURL(%q, %q) = %q, %v; want %q", tt.args, tt.addr, got, err, tt.want)
		}
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	noEnv := func(string) string { return "" }
	ctx := context.Background()
	if err := run(ctx, []string{srv.URL + "/healthz"}, noEnv, 5*time.Second); err != nil {
		t.Fatalf("healthy worker: %v", err)
	}
	if err := run(ctx, []string{srv.URL + "/readyz"}, noEnv, 5*time.Second); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("unhealthy worker: err = %v, want a 503 error", err)
	}
	srv.Close()
	if err := run(ctx, []string{srv.URL + "/healthz"}, noEnv, 5*time.Second); err == nil {
		t.Fatalf("stopped worker: err = nil, want an error")
	}
}
