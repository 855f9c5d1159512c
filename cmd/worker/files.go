package main

// The worker's open files. The send path's sockets (the Redis pools, the
// GenAuth connections) must find a free descriptor whatever the HTTP
// listener's clients do: thousands of idle connections to /healthz once
// took every descriptor, and every GenAuth dial failed with "too many open
// files". At start the worker raises its soft RLIMIT_NOFILE to the hard
// limit, sets aside what the send path can hold at once, and caps the HTTP
// listener within what is left.

// fileSlack covers the files outside the pools: standard streams, the
// poller, listeners, DNS look-ups, redials while a pool connection closes.
const fileSlack = 64

// minHTTPConns is the fewest connections the HTTP listener is given, even
// when the limit leaves less, so that probes can still get through.
const minHTTPConns = 8

// uiRedisPool is the web UI's own Redis pool (see redisURLOpt).
const uiRedisPool = 4

// mainPoolSize is the Redis pool of the handlers, the rate limiter and the
// HTTP surface.
func mainPoolSize(concurrency int) int { return concurrency + 20 }

// queuePoolSize is asynq's own Redis pool, shared by the fetch loops and
// the handlers' result writes.
func queuePoolSize(concurrency, fetchers int) int { return concurrency + 8*fetchers }

// sendPathFiles is the most files the send path holds at once: both Redis
// pools, the UI's, and one GenAuth connection per task in progress. The
// embedded Redis and the sandbox GenAuth live in this process, so their
// server ends count too. Against a Redis Cluster each pool is per node;
// the HTTP cap below the limit is what keeps room there.
func sendPathFiles(concurrency, fetchers int, embeddedRedis, sandbox bool) int {
	redisConns := mainPoolSize(concurrency) + queuePoolSize(concurrency, fetchers) + uiRedisPool
	genauthConns := concurrency
	if embeddedRedis {
		redisConns *= 2
	}
	if sandbox {
		genauthConns *= 2
	}
	return redisConns + genauthConns + fileSlack
}

// httpConnCap is how many connections the HTTP listener may hold at once:
// want (SMSQ_HTTP_MAX_CONNS), or less when the file limit leaves less
// beside the send path's share. short reports that the limit is below what
// the send path alone may need. A limit of 0 means unknown.
func httpConnCap(want int, limit uint64, sendPath int) (n int, short bool) {
	if limit == 0 {
		return want, false
	}
	// RLIM_INFINITY is the largest uint64: keep the subtraction in range.
	avail := int64(min(limit, 1<<62)) - int64(sendPath)
	if avail < minHTTPConns {
		return min(want, minHTTPConns), true
	}
	return int(min(int64(want), avail)), false
}
