// Package webhooks proves webhook delivery end to end with real worker
// processes: it builds the worker binary, runs it against its own
// redis-server with webhooks on, kills it with SIGKILL in the middle of
// deliveries and checks that a second worker delivers every event.
//
// The package holds tests only. They wait for asynq's lease recovery
// (about a minute), so they live apart from the faster suites and run in
// parallel with them.
package webhooks
