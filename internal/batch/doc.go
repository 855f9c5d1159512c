// Package batch queues many SMS verification codes from one CSV or JSON
// Lines input: it parses each line into a request, validates it with
// smsq.Prepare (an invalid line never reaches Redis), enqueues the valid
// ones through a pool of goroutines and reports one Result per line, in
// input order.
//
// Input is streamed: memory stays bounded by the reorder window whatever the
// input's length. The package knows nothing of flags, files or terminals;
// cmd/enqueue wires it to them.
package batch
