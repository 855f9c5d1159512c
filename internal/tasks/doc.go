// Package tasks defines the genauth:send_sms task: its payload contract, the
// constructor producers use, and the asynq handler that validates a task,
// reserves its (phone, channel) pair, calls GenAuth, classifies the answer
// and records the outcome.
//
// The package wires nothing itself: the GenAuth client, the reservation
// store and the history store arrive as small interfaces, so the handler is
// tested with hand-written fakes and run by cmd/worker with the real parts.
package tasks
