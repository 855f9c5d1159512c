//go:build !unix

package main

// raiseFileLimit reports the limit as unknown (0) where there is no
// RLIMIT_NOFILE: the HTTP listener then gets SMSQ_HTTP_MAX_CONNS as set.
func raiseFileLimit() (uint64, error) { return 0, nil }
