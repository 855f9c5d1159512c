package main

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/smsq/smsq/internal/config"
)

var updateReadme = flag.Bool("update-readme", false, "rewrite the worker settings table in README.md")

const (
	tableStart = "<!-- worker-settings:start -->\n"
	tableEnd   = "<!-- worker-settings:end -->"
)

// TestReadmeSettingsTable keeps the README's configuration table in step
// with the settings the worker really has. Run with -update-readme to
// regenerate it.
func TestReadmeSettingsTable(t *testing.T) {
	var s settings
	set := config.NewSet("worker", nil, nil)
	bindSettings(set, &s)
	want := config.Markdown(set.Settings())

	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	i := strings.Index(doc, tableStart)
	j := strings.Index(doc, tableEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md has no %q ... %q block", strings.TrimSpace(tableStart), tableEnd)
	}
	got := doc[i+len(tableStart) : j]
	if got == want {
		return
	}
	if *updateReadme {
		doc = doc[:i+len(tableStart)] + want + doc[j:]
		if err := os.WriteFile("../../README.md", []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("README.md settings table is out of date; run: go test ./cmd/worker -run TestReadmeSettingsTable -update-readme\nwant:\n%s", want)
}
