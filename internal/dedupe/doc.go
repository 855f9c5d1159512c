// Package dedupe guards each (phone, channel) pair with a reservation in
// Redis, so that a crash, a retry or a duplicate task can never cause two
// verification-code sends for the same pair inside the provider's window.
//
// A task takes the reservation with [Store.Acquire] before it calls the
// provider, then records the outcome with [Store.MarkSent] or
// [Store.MarkUnknown] (both restart the window, which the provider counts
// from its send), or gives the reservation back with [Store.Release] when
// the call certainly did not go out. Every operation is one Lua script, so
// one round trip and atomic; timestamps come from the Redis server clock,
// so workers with skewed clocks agree.
//
// The package never talks to the SMS provider or the task queue, never
// stores a phone number (keys and values carry only a hash of it, see
// [Hasher]) and never retries on its own: callers decide what an error
// means.
package dedupe
