// Package ratelimit caps how fast every worker together calls the SMS
// provider, with one limiter state in Redis shared by all processes.
//
// Each limiter is a GCRA (generic cell rate algorithm, the
// github.com/go-redis/redis_rate implementation): a Limit of Rate sends
// per Period lets Burst sends go at once and then one every Period/Rate,
// so no window of length T ever holds more than Burst + Rate·T/Period
// sends, whatever the number of workers. Time comes from the Redis server
// clock, so workers with skewed clocks agree.
//
// An optional limit per channel sits under the global one; a send must
// pass both. The channel limiter is asked first, so that a send refused by
// its channel never spends a global token: a busy channel cannot starve
// the others. When the channel allows and the global limiter refuses, the
// channel token is handed back (best effort, see [Limiter.Allow]).
//
// Every limiter's state is one key (see [GlobalKey], [ChannelKey]) and
// every check touches exactly one key, so the keys may live on any Redis
// Cluster slot. Workers sharing a Redis must be given the same limits: each
// check uses the limit of the process that makes it.
//
// The package never waits: [Limiter.Allow] answers at once with the time
// until the next send may go, and the caller decides whether to wait or to
// come back later. It knows nothing of the provider or the task queue.
package ratelimit
