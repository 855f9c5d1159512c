//go:build race

package batch

// raceDetector: the race detector makes the bounded-memory test about 20
// times slower, so it reads fewer lines.
const raceDetector = true
