//go:build race

package webhooks

// raceEnabled builds the worker under test with the race detector when the
// suite itself runs with -race.
const raceEnabled = true
