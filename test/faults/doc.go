// Package faults is the fault-injection suite that proves smsq's delivery
// guarantees end to end: it builds the worker binary, runs it as real
// processes against real redis-server processes and the fake GenAuth, and
// then kills workers, restarts Redis, injects GenAuth faults and floods
// the queue, checking after each scenario that no (phone, channel) pair
// got two sends inside the reservation window, that every task reached a
// recorded final outcome, and that no log line carries a full phone number.
//
// The package holds tests only. `go test -short` skips the scenarios that
// wait for asynq's lease recovery; the full run executes all of them in
// parallel.
package faults
