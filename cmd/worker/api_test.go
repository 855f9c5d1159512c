package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/smsq/smsq/internal/genauth/genauthtest"
	"github.com/smsq/smsq/internal/redistest"
	"github.com/smsq/smsq/internal/tasks"
)

const apiTestSecret = "worker-test-secret-0123456789"

func apiPost(t *testing.T, c *http.Client, url, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/sms", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+apiTestSecret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	return resp.StatusCode, m
}

// The worker serves the API on its own listener; a task queued through
// it is delivered.
func TestWorkerServesTheAPI(t *testing.T) {
	srv := redistest.Start(t)
	fake := genauthtest.NewServer(genauthtest.Options{})
	t.Cleanup(fake.Close)
	w, logs := startWorker(t, map[string]string{
		"REDIS_URL": srv.URL(), "GENAUTH_APP_HOST": fake.URL(), "GENAUTH_APP_ID": fake.AppID(),
		"SMSQ_POLL_INTERVAL": "50ms", "SMSQ_LOG_FORMAT": "json", "SMSQ_HTTP_ADDR": "127.0.0.1:0",
		"SMSQ_API_ADDR": "127.0.0.1:0", "SMSQ_API_KEYS": "shop:" + apiTestSecret,
	})
	if w.api.Addr() == "" || w.api.Addr() == w.web.Addr() {
		t.Fatalf("API on %q, operator listener on %q", w.api.Addr(), w.web.Addr())
	}
	status, m := apiPost(t, http.DefaultClient, "http://"+w.api.Addr(), `{"channel":"CHANNEL_LOGIN","phoneNumber":"+8613800138000"}`)
	if status != http.StatusAccepted {
		t.Fatalf("status %d: %v", status, m)
	}
	_, r := waitFinal(t, asynq.NewInspectorFromRedisClient(srv.Client()), "critical", m["id"].(string))
	if r.Outcome != tasks.OutcomeSent {
		t.Fatalf("outcome %+v", r)
	}
	// The operator listener has no API, the API no operator endpoints.
	resp, err := http.Get("http://" + w.web.Addr() + "/v1/openapi.json")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("the operator listener serves the API")
		}
	}
	resp, err = http.Get("http://" + w.api.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("the API listener answers /metrics with %d", resp.StatusCode)
	}
	// The API's metrics are on the operator listener.
	resp, err = http.Get("http://" + w.web.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(data), `smsq_api_requests_total{key="shop",route="POST /v1/sms",status="202"} 1`) {
		t.Errorf("metrics lack the API request:\n%s", grepLines(string(data), "smsq_api"))
	}
	if strings.Contains(logs.String(), apiTestSecret) {
		t.Errorf("the secret is logged")
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// SMSQ_MODE=api serves the API over TLS and processes no task.
func TestAPIModeWithTLS(t *testing.T) {
	srv := redistest.Start(t)
	cert, key, pool := selfSigned(t)
	w, _ := startWorker(t, map[string]string{
		"REDIS_URL": srv.URL(), "SMSQ_LOG_FORMAT": "json", "SMSQ_HTTP_ADDR": "127.0.0.1:0", "SMSQ_MODE": "api",
		"SMSQ_API_ADDR": "127.0.0.1:0", "SMSQ_API_KEYS": "shop:" + apiTestSecret,
		"SMSQ_API_TLS_CERT": cert, "SMSQ_API_TLS_KEY": key,
	})
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	status, m := apiPost(t, c, "https://"+w.api.Addr(), `{"channel":"CHANNEL_LOGIN","phoneNumber":"+8613800138000"}`)
	if status != http.StatusAccepted {
		t.Fatalf("status %d: %v", status, m)
	}
	// Plain HTTP to the TLS listener gets no answer from the API.
	if resp, err := http.Post("http://"+w.api.Addr()+"/v1/sms", "application/json", strings.NewReader("{}")); err == nil {
		if resp.StatusCode == http.StatusAccepted {
			t.Errorf("plain HTTP queued a task")
		}
		resp.Body.Close()
	}
	// Ready, and nothing processes the task.
	resp, err := http.Get("http://" + w.web.Addr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("readyz %d", resp.StatusCode)
	}
	time.Sleep(500 * time.Millisecond)
	info, err := asynq.NewInspectorFromRedisClient(srv.Client()).GetTaskInfo("critical", m["id"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if info.State != asynq.TaskStatePending {
		t.Errorf("task state %s in api mode, want pending", info.State)
	}
	srvs, err := asynq.NewInspectorFromRedisClient(srv.Client()).Servers()
	if err != nil || len(srvs) != 0 {
		t.Errorf("asynq servers in api mode: %d, %v", len(srvs), err)
	}
}

func TestAPISettingsErrors(t *testing.T) {
	srv := redistest.Start(t)
	base := map[string]string{"REDIS_URL": srv.URL(), "SMSQ_HTTP_ADDR": "off"}
	for _, c := range []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"SMSQ_MODE": "api"}, "needs SMSQ_API_ADDR"},
		{map[string]string{"SMSQ_MODE": "both"}, "SMSQ_MODE"},
		{map[string]string{"SMSQ_API_ADDR": "127.0.0.1:0"}, "gives no key"},
		{map[string]string{"SMSQ_API_ADDR": "127.0.0.1:0", "SMSQ_API_KEYS": "a:short-secret"}, "SMSQ_API_KEYS"},
		{map[string]string{"SMSQ_API_ADDR": "127.0.0.1:0", "SMSQ_API_KEYS": "a:" + apiTestSecret, "SMSQ_API_RATE_LIMIT": "fast"}, "SMSQ_API_RATE_LIMIT"},
		{map[string]string{"SMSQ_API_ADDR": "127.0.0.1:0", "SMSQ_API_KEYS": "a:" + apiTestSecret, "SMSQ_API_TLS_CERT": "x.pem"}, "set together"},
		{map[string]string{"SMSQ_API_ADDR": "127.0.0.1:0", "SMSQ_API_KEYS": "a:" + apiTestSecret, "SMSQ_API_TLS_CERT": "x.pem", "SMSQ_API_TLS_KEY": "y.pem"}, "SMSQ_API_TLS_CERT"},
		{map[string]string{"SMSQ_API_ADDR": "nowhere", "SMSQ_API_KEYS": "a:" + apiTestSecret}, "SMSQ_API_ADDR"},
	} {
		vars := map[string]string{}
		for k, v := range base {
			vars[k] = v
		}
		for k, v := range c.vars {
			vars[k] = v
		}
		logs := &syncBuffer{}
		err := run(context.Background(), nil, env(vars), logs, logs, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one naming %q", c.vars, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), apiTestSecret) {
			t.Errorf("%v: the error shows the secret", c.vars)
		}
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "smsq test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return certFile, keyFile, pool
}
