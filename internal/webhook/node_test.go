package webhook

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/smsq/smsq/internal/redistest"
)

// nodeReport is one result the Node receiver reports.
type nodeReport struct {
	Listening int    `json:"listening"`
	Path      string `json:"path"`
	ID        string `json:"id"`
	OK        bool   `json:"ok"`
	Type      string `json:"type"`
	TaskID    string `json:"taskId"`
	Error     string `json:"error"`
}

// nodeReceiver is testdata/receiver.cjs running under the machine's Node
// with the standardwebhooks package from the npm registry.
type nodeReceiver struct {
	URL string
	mu  sync.Mutex
	got []nodeReport
}

func (n *nodeReceiver) reports() []nodeReport {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]nodeReport(nil), n.got...)
}

// startNodeReceiver installs standardwebhooks into a temporary directory
// and starts the receiver with secrets by path. Without node or npm the
// test is skipped, or fails under CI.
func startNodeReceiver(t *testing.T, secrets map[string]string) *nodeReceiver {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			redistest.SkipMissing(t, tool, "apt-get install nodejs npm")
		}
	}
	dir := t.TempDir()
	script, err := os.ReadFile(filepath.Join("testdata", "receiver.cjs"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "receiver.cjs"), script, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, "npm", "install", "--no-save", "--no-audit", "--no-fund", "--silent", "--prefix", dir, "standardwebhooks")
	install.Dir = dir
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("npm install standardwebhooks: %v\n%s", err, out)
	}
	sec, _ := json.Marshal(secrets)
	cmd := exec.Command("node", filepath.Join(dir, "receiver.cjs"))
	cmd.Env = append(os.Environ(), "SECRETS="+string(sec))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	n := &nodeReceiver{}
	port := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var r nodeReport
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				continue
			}
			if r.Listening != 0 {
				port <- r.Listening
				continue
			}
			n.mu.Lock()
			n.got = append(n.got, r)
			n.mu.Unlock()
		}
	}()
	select {
	case p := <-port:
		n.URL = "http://127.0.0.1:" + strconv.Itoa(p)
	case <-time.After(30 * time.Second):
		t.Fatal("the Node receiver did not start")
	}
	return n
}

// Every delivery verifies with the standardwebhooks package, including
// across a secret rotation: signed with the old secret, with both, then
// with the new one, to receivers that know one secret each. A receiver
// holding the other secret rejects, so the verification can fail.
func TestSignaturesVerifiedByStandardWebhooks(t *testing.T) {
	t.Parallel()
	oldSecret, newSecret := testSecret(11, 32), testSecret(99, 24)
	node := startNodeReceiver(t, map[string]string{"/old": oldSecret, "/new": newSecret})
	endpoints := node.URL + "/old?k=1," + node.URL + "/new"
	phases := []struct {
		name, secrets string
		oldOK, newOK  bool
	}{
		{"old secret only", oldSecret, true, false},
		{"rotation: old and new", oldSecret + " " + newSecret, true, true},
		{"new secret only", newSecret, false, true},
	}
	outcomes := []string{"sent", "deduplicated", "expired", "failed", "invalid", "blocked"}
	seen := 0
	for _, ph := range phases {
		r := startRig(t, rigConfig{endpoints: endpoints, secrets: ph.secrets, guard: Guard{AllowPrivate: true}})
		for i, o := range outcomes {
			e := event(ph.name+"-"+itoa(i), o)
			e.Reason = "GenAuth: «номер» 13800138000 ünïcödé １３８００１３８０００"
			r.append(t, e)
		}
		want := seen + 2*len(outcomes)
		waitFor(t, 60*time.Second, func() (bool, string) {
			n := len(node.reports())
			return n >= want, "node reported " + itoa(n-seen) + " of " + itoa(2*len(outcomes))
		})
		got := node.reports()[seen:want]
		seen = want
		types := map[string]int{}
		for _, rep := range got {
			wantOK := ph.oldOK
			if rep.Path == "/new" {
				wantOK = ph.newOK
			}
			if rep.OK != wantOK {
				t.Errorf("%s: %s %s verified=%v (%s), want %v", ph.name, rep.Path, rep.ID, rep.OK, rep.Error, wantOK)
			}
			if rep.OK {
				types[rep.Type]++
			} else if rep.Error == "" {
				t.Errorf("%s: %s rejected without a reason", ph.name, rep.Path)
			} else if rep.ID != "" && len(types) == 0 {
				t.Logf("%s: %s rejected: %s", ph.name, rep.Path, rep.Error)
			}
		}
		for _, o := range outcomes {
			n := 0
			if ph.oldOK {
				n++
			}
			if ph.newOK {
				n++
			}
			if types["sms."+o] != n {
				t.Errorf("%s: sms.%s verified %d times, want %d", ph.name, o, types["sms."+o], n)
			}
		}
		t.Logf("%s: %d deliveries checked by standardwebhooks", ph.name, len(got))
	}
}
