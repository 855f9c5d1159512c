// Package guard is smsq's abuse guard: cluster-wide limits that keep SMS
// pumping (toll fraud over number ranges), floods of one victim's phone and
// runaway producers from spending the SMS budget.
//
// Before a task takes its reservation the worker asks Admit, which checks
// every rule and, when none blocks, counts the send in one Lua script: a
// flood of concurrent tasks cannot overshoot a limit, and a blocked send
// counts nothing. A task that then does not reach GenAuth (deduplicated,
// throttled, refused) gives its counts back with Refund, so that only real
// sends are counted.
//
// Rules: per phone across channels, per client IP, per number range (the
// E.164 number without its last four digits), per country (an allow-list
// and daily caps), a budget for all sends, and a conversion breaker per
// range and per country fed by Verified. Each rule is enforced, monitored
// (counted and reported, never blocking) or off.
//
// Every key sits in one Redis Cluster slot (hash tag {guard}): one script
// sees every rule at once, and at GenAuth's ceiling of 100 sends/s the
// slot's load is small. Keys and hash fields never hold a phone number,
// a range or an IP: they carry the keyed phone hash (dedupe.Hasher) of
// each. Masked labels sit beside the counts for operators.
//
// Time comes from Config.Now, not from Redis, so that a simulated clock
// drives hours of traffic in seconds; TTLs only clean up.
//
// The package knows nothing of asynq, tasks or GenAuth.
package guard
