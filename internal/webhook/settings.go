package webhook

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/smsq/smsq/internal/tasks"
)

// Endpoint is one webhook receiver.
type Endpoint struct {
	// URL is where deliveries are posted. It may carry a token (in its
	// path or query), so it is never logged, stored in Redis or put in a
	// metric: ID and Host name the endpoint there.
	URL *url.URL
	// ID is a short hash of the URL: the endpoint's name in task IDs,
	// payloads and the disabled set.
	ID string
	// Host is the URL's host[:port], the metrics label.
	Host string
}

// String shows the endpoint without what may be secret: scheme and host.
func (e Endpoint) String() string { return e.URL.Scheme + "://" + e.Host }

// maxEndpoints bounds SMSQ_WEBHOOK_URL: every event costs one task per
// endpoint.
const maxEndpoints = 10

// ParseEndpoints reads a comma-separated list of http(s) URLs. Errors show
// a URL only as scheme and host.
func ParseEndpoints(s string) ([]Endpoint, error) {
	var out []Endpoint
	seen := map[string]bool{}
	for i, raw := range strings.Split(s, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		n := i + 1
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("URL %d: does not parse as a URL", n)
		}
		shown := u.Scheme + "://" + u.Host
		switch {
		case u.Scheme != "http" && u.Scheme != "https":
			return nil, fmt.Errorf("URL %d (%s): scheme must be http or https", n, shown)
		case u.Hostname() == "":
			return nil, fmt.Errorf("URL %d (%s): no host", n, shown)
		case u.User != nil:
			return nil, fmt.Errorf("URL %d (%s): user and password in the URL are not sent; put a token in the path or query instead, and check signatures", n, shown)
		case u.Fragment != "":
			return nil, fmt.Errorf("URL %d (%s): a #fragment is never sent", n, shown)
		}
		if seen[u.String()] {
			return nil, fmt.Errorf("URL %d (%s): listed twice", n, shown)
		}
		seen[u.String()] = true
		sum := sha256.Sum256([]byte(u.String()))
		out = append(out, Endpoint{URL: u, ID: hex.EncodeToString(sum[:8]), Host: u.Host})
	}
	if len(out) == 0 {
		return nil, errors.New("no URL")
	}
	if len(out) > maxEndpoints {
		return nil, fmt.Errorf("%d URLs, at most %d", len(out), maxEndpoints)
	}
	return out, nil
}

// Secret is one signing key, the base64-decoded part of a whsec_ secret.
type Secret struct{ key []byte }

// Secret lengths the specification recommends.
const (
	minSecretLen = 24
	maxSecretLen = 64
	secretPrefix = "whsec_"
)

// ParseSecrets reads space-separated whsec_ secrets: one normally, two or
// more during a rotation (every delivery is signed with each). Errors
// never quote a secret, only its place in the list.
func ParseSecrets(s string) ([]Secret, error) {
	var out []Secret
	for i, f := range strings.Fields(s) {
		n := i + 1
		b64, ok := strings.CutPrefix(f, secretPrefix)
		if !ok {
			return nil, fmt.Errorf("secret %d: must start with %s (a Standard Webhooks secret: %s + base64 of %d to %d random bytes)", n, secretPrefix, secretPrefix, minSecretLen, maxSecretLen)
		}
		key, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("secret %d: the part after %s is not standard base64", n, secretPrefix)
		}
		if len(key) < minSecretLen || len(key) > maxSecretLen {
			return nil, fmt.Errorf("secret %d: decodes to %d bytes; use %d to %d random bytes", n, len(key), minSecretLen, maxSecretLen)
		}
		out = append(out, Secret{key: key})
	}
	if len(out) == 0 {
		return nil, errors.New("no secret")
	}
	return out, nil
}

// Outcomes are the final outcomes a filter may name.
func Outcomes() []string {
	out := slices.Clone(tasks.FinalOutcomes)
	if !slices.Contains(out, tasks.OutcomeBlocked) {
		out = append(out, tasks.OutcomeBlocked)
	}
	return out
}

// AllEvents is the filter value that lets every final outcome through.
const AllEvents = "all"

// Filter says which outcomes are delivered; the zero Filter delivers all.
type Filter struct {
	only map[string]bool
}

// ParseFilter reads "all" or a comma-separated list of final outcomes.
func ParseFilter(s string) (Filter, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == AllEvents {
		return Filter{}, nil
	}
	known := Outcomes()
	f := Filter{only: map[string]bool{}}
	for _, o := range strings.Split(s, ",") {
		o = strings.TrimSpace(o)
		if !slices.Contains(known, o) {
			return Filter{}, fmt.Errorf("%q is not a final outcome: use %s, or %s", o, strings.Join(known, ", "), AllEvents)
		}
		f.only[o] = true
	}
	return f, nil
}

// Match reports whether outcome o is delivered.
func (f Filter) Match(o string) bool { return f.only == nil || f.only[o] }

// String is the filter as ParseFilter reads it.
func (f Filter) String() string {
	if f.only == nil {
		return AllEvents
	}
	var out []string
	for _, o := range Outcomes() {
		if f.only[o] {
			out = append(out, o)
		}
	}
	return strings.Join(out, ",")
}
