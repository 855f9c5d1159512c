// Package api drives the HTTP API end to end from a client not written in
// Go: Node's fetch (e2e.mjs) against a real worker process and a real
// redis-server, every answer checked against the OpenAPI document by
// kin-openapi.
package api
