package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/smsq/smsq/internal/config"
)

// The deployment files in deploy/ pass settings to the worker by name. A
// renamed or misspelt variable is silently ignored by the worker (it falls
// back to the default), so these tests check every name those files pass
// against the settings bindSettings declares.

const deployDir = "../../deploy"

// deployFile is one file of deploy/, named relative to it.
type deployFile struct {
	name string
	data []byte
}

// deployUse is one setting a deploy file passes to the worker.
type deployUse struct {
	file  string // relative to deploy/
	where string // service, container or object inside the file
	name  string // environment variable, or flag without dashes
	flag  bool
	kind  string // compose, k8s, dockerfile, systemd or envfile
}

// place says where the use is, for errors.
func (u deployUse) place() string {
	if u.where != "" {
		return u.file + ": " + u.where
	}
	return u.file
}

// runtimeEnv are variables read by the Go runtime rather than by the
// worker's settings; deploy files may set them.
var runtimeEnv = map[string]bool{"GOMEMLIMIT": true, "GOMAXPROCS": true, "GODEBUG": true, "GOTRACEBACK": true}

// workerNames returns the environment variables and flags the worker
// understands, as bindSettings declares them.
func workerNames() (env, flags map[string]bool) {
	var s settings
	set := config.NewSet("worker", nil, io.Discard)
	bindSettings(set, &s)
	env, flags = map[string]bool{}, map[string]bool{"help": true, "h": true}
	for _, st := range set.Settings() {
		flags[st.Flag] = true
		if st.Env == "" {
			continue
		}
		env[st.Env] = true
		if st.Secret {
			env[st.Env+"_FILE"] = true
		}
	}
	return env, flags
}

// checkDeploy fails with every name in files that the worker does not
// understand.
func checkDeploy(files []deployFile) ([]deployUse, error) {
	uses, err := collectUses(files)
	if err != nil {
		return uses, err
	}
	env, flags := workerNames()
	var errs []error
	for _, u := range uses {
		switch {
		case u.flag && !flags[u.name]:
			errs = append(errs, fmt.Errorf("%s: the worker has no flag --%s", u.place(), u.name))
		case !u.flag && !env[u.name] && !runtimeEnv[u.name]:
			errs = append(errs, fmt.Errorf("%s: the worker has no setting %s", u.place(), u.name))
		}
	}
	return uses, errors.Join(errs...)
}

// collectUses finds every setting name the files pass to the worker.
func collectUses(files []deployFile) ([]deployUse, error) {
	k := &k8sObjects{configMaps: map[string]k8sData{}, secrets: map[string]k8sData{}}
	var uses []deployUse
	var errs []error
	for _, f := range files {
		base := path.Base(f.name)
		var (
			u   []deployUse
			err error
		)
		switch {
		case strings.HasSuffix(base, ".yml") || strings.HasSuffix(base, ".yaml"):
			u, err = yamlUses(f, k)
		case base == "Dockerfile" || strings.HasPrefix(base, "Dockerfile.") && !strings.HasSuffix(base, ".dockerignore"):
			u = dockerfileUses(f)
		case strings.HasSuffix(base, ".service"):
			u = systemdUses(f)
		case base == ".env" || strings.HasSuffix(base, ".env") || strings.HasSuffix(base, ".env.example"):
			u = envFileUses(f)
		}
		if err != nil {
			errs = append(errs, err)
		}
		uses = append(uses, u...)
	}
	u, err := k.resolve()
	if err != nil {
		errs = append(errs, err)
	}
	return append(uses, u...), errors.Join(errs...)
}

// --- YAML: docker compose and Kubernetes -------------------------------------

// k8sData is the keys of one ConfigMap or Secret.
type k8sData struct {
	file string
	keys []string
}

// envFromRef is a worker container's envFrom entry.
type envFromRef struct {
	file, where, kind, name, prefix string
	optional                        bool
}

// k8sObjects collects ConfigMaps, Secrets and references to them across
// files, since a Deployment and its ConfigMap often live apart.
type k8sObjects struct {
	configMaps, secrets map[string]k8sData
	refs                []envFromRef
}

// resolve turns the worker containers' envFrom references into uses of
// the referenced keys.
func (k *k8sObjects) resolve() ([]deployUse, error) {
	var uses []deployUse
	var errs []error
	for _, r := range k.refs {
		objs := k.configMaps
		if r.kind == "Secret" {
			objs = k.secrets
		}
		d, ok := objs[r.name]
		if !ok {
			if !r.optional {
				errs = append(errs, fmt.Errorf("%s: %s: envFrom names %s %q, which deploy/ does not define", r.file, r.where, r.kind, r.name))
			}
			continue
		}
		for _, key := range d.keys {
			uses = append(uses, deployUse{file: d.file, where: r.kind + " " + r.name, name: r.prefix + key, kind: "k8s"})
		}
	}
	return uses, errors.Join(errs...)
}

// yamlUses reads every document of a YAML file: compose files are known by
// their services, Kubernetes objects by their kind.
func yamlUses(f deployFile, k *k8sObjects) ([]deployUse, error) {
	dec := yaml.NewDecoder(bytes.NewReader(f.data))
	var uses []deployUse
	for i := 0; ; i++ {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return uses, nil
		}
		if err != nil {
			return uses, fmt.Errorf("%s: document %d: %w", f.name, i+1, err)
		}
		m := asMap(doc)
		switch {
		case m == nil:
		case m["services"] != nil:
			uses = append(uses, composeUses(f.name, m)...)
		case m["kind"] != nil:
			uses = append(uses, k.add(f.name, m)...)
		}
	}
}

// composeUses reads the worker services of a compose file: those built here
// or running an smsq image. Others (redis) take their own variables.
func composeUses(file string, doc map[string]any) []deployUse {
	var uses []deployUse
	services := asMap(doc["services"])
	for _, name := range sortedKeys(services) {
		svc := asMap(services[name])
		image, _ := svc["image"].(string)
		if svc["build"] == nil && !strings.Contains(image, "smsq") {
			continue
		}
		where := "service " + name
		switch env := svc["environment"].(type) {
		case []any:
			for _, e := range env {
				s, _ := e.(string)
				key, _, _ := strings.Cut(s, "=")
				uses = append(uses, deployUse{file: file, where: where, name: key, kind: "compose"})
			}
		default:
			for _, key := range sortedKeys(asMap(env)) {
				uses = append(uses, deployUse{file: file, where: where, name: key, kind: "compose"})
			}
		}
		for _, field := range []string{"entrypoint", "command"} {
			for _, fl := range flagNames(words(svc[field])) {
				uses = append(uses, deployUse{file: file, where: where, name: fl, flag: true, kind: "compose"})
			}
		}
	}
	return uses
}

// add records a Kubernetes object: the worker containers of a workload, or
// the keys of a ConfigMap or Secret.
func (k *k8sObjects) add(file string, obj map[string]any) []deployUse {
	kind, _ := obj["kind"].(string)
	name, _ := asMap(obj["metadata"])["name"].(string)
	switch kind {
	case "ConfigMap", "Secret":
		d := k8sData{file: file}
		for _, field := range []string{"data", "stringData"} {
			d.keys = append(d.keys, sortedKeys(asMap(obj[field]))...)
		}
		if kind == "ConfigMap" {
			k.configMaps[name] = d
		} else {
			k.secrets[name] = d
		}
		return nil
	}
	spec := podSpec(kind, obj)
	if spec == nil {
		return nil
	}
	var uses []deployUse
	for _, field := range []string{"initContainers", "containers"} {
		cs, _ := spec[field].([]any)
		for _, c := range cs {
			c := asMap(c)
			image, _ := c["image"].(string)
			if !strings.Contains(image, "smsq") {
				continue
			}
			cname, _ := c["name"].(string)
			where := kind + " " + name + " container " + cname
			envs, _ := c["env"].([]any)
			for _, e := range envs {
				n, _ := asMap(e)["name"].(string)
				uses = append(uses, deployUse{file: file, where: where, name: n, kind: "k8s"})
			}
			for _, field := range []string{"command", "args"} {
				for _, fl := range flagNames(words(c[field])) {
					uses = append(uses, deployUse{file: file, where: where, name: fl, flag: true, kind: "k8s"})
				}
			}
			refs, _ := c["envFrom"].([]any)
			for _, r := range refs {
				r := asMap(r)
				prefix, _ := r["prefix"].(string)
				for kindKey, refKind := range map[string]string{"configMapRef": "ConfigMap", "secretRef": "Secret"} {
					if ref := asMap(r[kindKey]); ref != nil {
						n, _ := ref["name"].(string)
						opt, _ := ref["optional"].(bool)
						k.refs = append(k.refs, envFromRef{file: file, where: where, kind: refKind, name: n, prefix: prefix, optional: opt})
					}
				}
			}
		}
	}
	return uses
}

// podSpec returns the pod spec inside a workload object, or nil.
func podSpec(kind string, obj map[string]any) map[string]any {
	spec := asMap(obj["spec"])
	switch kind {
	case "Pod":
		return spec
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job":
		return asMap(asMap(spec["template"])["spec"])
	case "CronJob":
		job := asMap(asMap(spec["jobTemplate"])["spec"])
		return asMap(asMap(job["template"])["spec"])
	}
	return nil
}

// asMap returns v as a string-keyed map, or nil.
func asMap(v any) map[string]any {
	switch m := v.(type) {
	case map[string]any:
		return m
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, x := range m {
			out[fmt.Sprint(k)] = x
		}
		return out
	}
	return nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// words returns a command given as a YAML list or a string.
func words(v any) []string {
	switch c := v.(type) {
	case string:
		return splitWords(c)
	case []any:
		out := make([]string, 0, len(c))
		for _, w := range c {
			out = append(out, fmt.Sprint(w))
		}
		return out
	}
	return nil
}

var flagRE = regexp.MustCompile(`^--?([a-zA-Z][a-zA-Z0-9-]*)(=.*)?$`)

// flagNames returns the names of the flags among a command's words.
func flagNames(ws []string) []string {
	var out []string
	for _, w := range ws {
		if m := flagRE.FindStringSubmatch(w); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

// splitWords splits a shell-like line on blanks, keeping quoted parts
// together and dropping the quotes.
func splitWords(s string) []string {
	var out []string
	var cur strings.Builder
	in, quote := false, rune(0)
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

// --- Dockerfile, systemd unit, environment file ------------------------------

// logicalLines joins backslash-continued lines.
func logicalLines(data []byte) []string {
	var out []string
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`))
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(line)
		out = append(out, cur.String())
		cur.Reset()
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// dockerfileUses reads the ENV, ENTRYPOINT and CMD of the last stage, the
// image that runs; builder stages set their own variables.
func dockerfileUses(f deployFile) []deployUse {
	var uses []deployUse
	for _, line := range logicalLines(f.data) {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		instr, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			uses = nil
		case "ENV":
			ws := splitWords(rest)
			if len(ws) > 0 && !strings.Contains(ws[0], "=") {
				ws = ws[:1] // legacy "ENV KEY value"
			}
			for _, w := range ws {
				key, _, _ := strings.Cut(w, "=")
				uses = append(uses, deployUse{file: f.name, name: key, kind: "dockerfile"})
			}
		case "ENTRYPOINT", "CMD":
			var ws []string
			if json.Unmarshal([]byte(rest), &ws) != nil {
				ws = splitWords(rest)
			}
			for _, fl := range flagNames(ws) {
				uses = append(uses, deployUse{file: f.name, name: fl, flag: true, kind: "dockerfile"})
			}
		}
	}
	return uses
}

// systemdUses reads Environment= and ExecStart= lines, including
// commented-out ones, which document options.
func systemdUses(f deployFile) []deployUse {
	var uses []deployUse
	for _, line := range logicalLines(f.data) {
		line = strings.TrimSpace(strings.TrimLeft(line, "#;"))
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(key) {
		case "Environment":
			for _, w := range splitWords(value) {
				name, _, _ := strings.Cut(w, "=")
				uses = append(uses, deployUse{file: f.name, name: name, kind: "systemd"})
			}
		case "ExecStart":
			for _, fl := range flagNames(splitWords(value)) {
				uses = append(uses, deployUse{file: f.name, name: fl, flag: true, kind: "systemd"})
			}
		}
	}
	return uses
}

var envLineRE = regexp.MustCompile(`^(?:export\s+)?([A-Z_][A-Z0-9_]*)=`)

// envFileUses reads KEY=value lines, including commented-out ones, which
// document optional settings.
func envFileUses(f deployFile) []deployUse {
	var uses []deployUse
	for _, line := range logicalLines(f.data) {
		line = strings.TrimSpace(strings.TrimLeft(line, "#"))
		if m := envLineRE.FindStringSubmatch(line); m != nil {
			uses = append(uses, deployUse{file: f.name, name: m[1], kind: "envfile"})
		}
	}
	return uses
}

// --- Tests -------------------------------------------------------------------

// readDeploy returns every regular file under deploy/.
func readDeploy(t *testing.T) []deployFile {
	t.Helper()
	var files []deployFile
	err := filepath.WalkDir(deployDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(deployDir, p)
		if err != nil {
			return err
		}
		files = append(files, deployFile{name: filepath.ToSlash(rel), data: data})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestDeployNamesExist fails when a deploy file passes the worker a
// variable or flag it does not have.
func TestDeployNamesExist(t *testing.T) {
	t.Parallel()
	uses, err := checkDeploy(readDeploy(t))
	if err != nil {
		t.Fatalf("deploy/ passes settings the worker does not have:\n%v", err)
	}
	// A checker that finds nothing passes everything: make sure each kind
	// of file was read.
	kinds := map[string]int{}
	for _, u := range uses {
		kinds[u.kind]++
	}
	for _, k := range []string{"compose", "k8s", "dockerfile", "systemd", "envfile"} {
		if kinds[k] == 0 {
			t.Errorf("found no settings in deploy/'s %s files; is the checker still reading them?", k)
		}
	}
}

func TestCheckDeploy(t *testing.T) {
	t.Parallel()
	deployment := func(envFrom string) string {
		return `apiVersion: apps/v1
kind: Deployment
metadata: {name: w}
spec:
  template:
    spec:
      containers:
        - name: worker
          image: example/smsq-worker:1
          envFrom:
` + envFrom
	}
	tests := []struct {
		name    string
		files   []deployFile
		wantErr string // "" for none
	}{
		{"compose map", []deployFile{{"c.yml", []byte(`services:
  w: {build: .., environment: {REDIS_URL: x, SMSQ_NOPE: "1"}}`)}}, "SMSQ_NOPE"},
		{"compose list", []deployFile{{"c.yml", []byte(`services:
  w: {image: smsq-worker, environment: ["REDIS_URL=x", "SMSQ_NOPE=1"]}`)}}, "SMSQ_NOPE"},
		{"compose merge key", []deployFile{{"c.yml", []byte(`x-w: &w
  build: ..
  environment: {SMSQ_NOPE: "1"}
services:
  w1:
    <<: *w`)}}, "SMSQ_NOPE"},
		{"compose flag", []deployFile{{"c.yml", []byte(`services:
  w: {build: .., command: ["--concurrency", "5", "--nope=1"]}`)}}, "--nope"},
		{"compose string command", []deployFile{{"c.yml", []byte(`services:
  w: {build: .., command: "--log-level debug --nope"}`)}}, "--nope"},
		{"compose other services are not the worker's", []deployFile{{"c.yml", []byte(`services:
  redis: {image: "redis:7", environment: {REDIS_PASSWORD: x}, command: ["redis-server", "--appendonly", "yes"]}
  w: {build: .., environment: {REDIS_URL: x, REDIS_URL_FILE: /run/secrets/r}, command: ["--concurrency=5"]}`)}}, ""},
		{"k8s env", []deployFile{{"d.yaml", []byte(`kind: Deployment
spec:
  template:
    spec:
      containers:
        - {name: redis, image: "redis:7", env: [{name: REDIS_ARGS, value: x}]}
        - {name: worker, image: smsq-worker, env: [{name: GOMEMLIMIT}, {name: SMSQ_NOPE, value: "1"}]}`)}}, "SMSQ_NOPE"},
		{"k8s args", []deployFile{{"d.yaml", []byte(`kind: Deployment
spec: {template: {spec: {containers: [{name: w, image: smsq-worker, args: ["--nope"]}]}}}`)}}, "--nope"},
		{"k8s second document", []deployFile{{"all.yaml", []byte(`kind: Service
metadata: {name: s}
---
kind: ConfigMap
metadata: {name: cm}
data: {SMSQ_NOPE: "1"}
---
` + deployment("            - configMapRef: {name: cm}\n"))}}, "SMSQ_NOPE"},
		{"k8s configmap in another file", []deployFile{
			{"cm.yaml", []byte("kind: ConfigMap\nmetadata: {name: cm}\ndata: {SMSQ_CONCURRENCY: \"5\", SMSQ_NOPE: \"1\"}\n")},
			{"d.yaml", []byte(deployment("            - configMapRef: {name: cm}\n"))},
		}, "SMSQ_NOPE"},
		{"k8s envFrom prefix", []deployFile{
			{"cm.yaml", []byte("kind: ConfigMap\nmetadata: {name: cm}\ndata: {CONCURRENCY: \"5\"}\n")},
			{"d.yaml", []byte(deployment("            - {prefix: SMSQ_, configMapRef: {name: cm}}\n"))},
		}, ""},
		{"k8s unreferenced configmap is not the worker's", []deployFile{
			{"cm.yaml", []byte("kind: ConfigMap\nmetadata: {name: redis}\ndata: {redis.conf: \"appendonly yes\"}\n")},
		}, ""},
		{"k8s missing configmap", []deployFile{{"d.yaml", []byte(deployment("            - configMapRef: {name: nope}\n"))}}, `ConfigMap "nope"`},
		{"k8s secret file variants", []deployFile{
			{"s.yaml", []byte("kind: Secret\nmetadata: {name: s}\nstringData: {REDIS_URL_FILE: /x, SMSQ_CONCURRENCY_FILE: /y}\n")},
			{"d.yaml", []byte(deployment("            - secretRef: {name: s}\n"))},
		}, "SMSQ_CONCURRENCY_FILE"},
		{"yaml parse error", []deployFile{{"bad.yaml", []byte("kind: [unclosed\n")}}, "bad.yaml"},
		{"systemd", []deployFile{{"x.service", []byte("[Service]\nEnvironment=SMSQ_LOG_FORMAT=json \"SMSQ_NOPE=a b\"\nExecStart=/usr/bin/w\n")}}, "SMSQ_NOPE"},
		{"systemd commented", []deployFile{{"x.service", []byte("[Service]\n#Environment=SMSQ_NOPE=1\n")}}, "SMSQ_NOPE"},
		{"systemd flag", []deployFile{{"x.service", []byte("[Service]\nExecStart=/usr/bin/w \\\n  --concurrency 5 --nope\n")}}, "--nope"},
		{"env file", []deployFile{{"w.env.example", []byte("# The Redis URL=where Redis is\nREDIS_URL=redis://x\nSMSQ_NOPE=1\n")}}, "SMSQ_NOPE"},
		{"env file commented", []deployFile{{"w.env.example", []byte("#SMSQ_NOPE=1\n")}}, "SMSQ_NOPE"},
		{"dockerfile", []deployFile{{"Dockerfile", []byte("FROM golang AS build\nENV CGO_ENABLED=0\nFROM scratch\nENV SMSQ_LOG_FORMAT=json \\\n    SMSQ_NOPE=1\nENTRYPOINT [\"/worker\"]\n")}}, "SMSQ_NOPE"},
		{"dockerfile legacy env", []deployFile{{"Dockerfile", []byte("FROM scratch\nENV SMSQ_NOPE 1\n")}}, "SMSQ_NOPE"},
		{"dockerfile flag", []deployFile{{"Dockerfile", []byte("FROM scratch\nENTRYPOINT [\"/worker\", \"--nope\"]\n")}}, "--nope"},
		{"dockerfile builder stage", []deployFile{{"Dockerfile", []byte("FROM golang AS build\nENV CGO_ENABLED=0 GOFLAGS=-trimpath\nFROM scratch\nENV SMSQ_LOG_FORMAT=json\nCMD [\"--log-level\", \"info\"]\n")}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := checkDeploy(tt.files)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("checkDeploy: %v, want no error", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("checkDeploy: %v, want an error naming %s", err, tt.wantErr)
			}
		})
	}
}

// TestDeployStopGrace checks that every deployment waits longer after
// SIGTERM than the worker's shutdown timeout; otherwise running tasks are
// killed before they record their outcome.
func TestDeployStopGrace(t *testing.T) {
	t.Parallel()
	var s settings
	bindSettings(config.NewSet("worker", nil, io.Discard), &s)
	timeout := func(v any) time.Duration {
		t.Helper()
		str, _ := v.(string)
		if str == "" {
			return s.ShutdownTimeout
		}
		d, err := time.ParseDuration(str)
		if err != nil {
			t.Fatalf("SMSQ_SHUTDOWN_TIMEOUT %q: %v", str, err)
		}
		return d
	}
	check := func(where string, grace, shutdown time.Duration) {
		t.Helper()
		if grace <= shutdown+5*time.Second {
			t.Errorf("%s: stop grace %s is not comfortably above SMSQ_SHUTDOWN_TIMEOUT %s", where, grace, shutdown)
		}
	}
	read := func(name string) any {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(deployDir, name))
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := yaml.Unmarshal(data, &doc); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return doc
	}

	cm := asMap(read("k8s/configmap.yaml"))
	dep := asMap(read("k8s/deployment.yaml"))
	grace, _ := asMap(asMap(asMap(dep["spec"])["template"])["spec"])["terminationGracePeriodSeconds"].(int)
	check("k8s/deployment.yaml", time.Duration(grace)*time.Second, timeout(asMap(cm["data"])["SMSQ_SHUTDOWN_TIMEOUT"]))

	services := asMap(asMap(read("docker-compose.yml"))["services"])
	for _, name := range []string{"worker-1", "worker-2"} {
		svc := asMap(services[name])
		str, _ := svc["stop_grace_period"].(string)
		g, err := time.ParseDuration(str)
		if err != nil {
			t.Fatalf("docker-compose.yml: %s: stop_grace_period %q: %v", name, str, err)
		}
		check("docker-compose.yml: "+name, g, timeout(asMap(svc["environment"])["SMSQ_SHUTDOWN_TIMEOUT"]))
	}

	unit, err := os.ReadFile(filepath.Join(deployDir, "smsq-worker.service"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^TimeoutStopSec=(\S+)$`).FindSubmatch(unit)
	if m == nil {
		t.Fatal("smsq-worker.service has no TimeoutStopSec")
	}
	g, err := time.ParseDuration(string(m[1]))
	if err != nil {
		t.Fatalf("smsq-worker.service: TimeoutStopSec=%s: %v", m[1], err)
	}
	example, err := os.ReadFile(filepath.Join(deployDir, "worker.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	var shutdown any
	if m := regexp.MustCompile(`(?m)^SMSQ_SHUTDOWN_TIMEOUT=(\S+)$`).FindSubmatch(example); m != nil {
		shutdown = string(m[1])
	}
	check("smsq-worker.service", g, timeout(shutdown))
}
