// Package observability proves smsq's traces, dashboard and alert rules
// with real parts: worker and enqueue processes exporting OTLP/HTTP to a
// receiver inside the test, promtool checking and unit-testing the rules,
// and a real Prometheus scraping a real worker.
//
// The package holds tests only; they are slow (they build and start
// processes), hence a package of their own, which go test runs in
// parallel with the others.
package observability
