// Package ha proves that smsq keeps its delivery guarantees on highly
// available Redis: a Redis Cluster of three masters and a Sentinel group
// (one master, one replica, three sentinels). It builds the worker binary,
// runs three worker processes against each deployment through the
// redis-cluster:// and redis-sentinel:// URLs, enqueues ten thousand tasks
// with duplicates through the producer API, kills a worker with SIGKILL in
// the middle of the run and, on Sentinel, crashes the master so that the
// replica is promoted. It then checks that every task reached a recorded
// final outcome, that the outcomes add up, and that no (phone, channel)
// pair got two sends inside the reservation window.
//
// The package holds tests only. `go test -short` runs the quick checks of
// the Lua scripts and pipelines on a cluster and skips the long runs, which
// wait for asynq to recover the killed worker's tasks.
package ha
