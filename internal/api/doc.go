// Package api is smsq's HTTP API for producers in any language: queue a
// code (POST /v1/sms), many codes (POST /v1/sms/batch, JSON Lines), read a
// task's state and outcome (GET /v1/sms/{id}), report a verification
// (POST /v1/verifications), and the OpenAPI document of all of it
// (GET /v1/openapi.json).
//
// Callers authenticate with a bearer API key; the key's name, never its
// secret, is what logs, metrics and the task's record carry. Every error
// is an RFC 9457 problem document naming the field at fault, and phone
// numbers are masked in every answer. The package validates and queues
// through the same code as smsq.Client.Send and enqueue batch; it never
// reads the environment: cmd/worker configures and serves it.
package api
