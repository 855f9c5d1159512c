package tasks

import (
	"slices"
	"testing"
)

func TestFetchLoops(t *testing.T) {
	for _, tc := range []struct{ concurrency, want int }{
		{1, 1}, {100, 1}, {101, 2}, {200, 2}, {250, 3}, {0, 1},
	} {
		if got := FetchLoops(tc.concurrency); got != tc.want {
			t.Errorf("FetchLoops(%d) = %d, want %d", tc.concurrency, got, tc.want)
		}
	}
}

func TestSplitConcurrency(t *testing.T) {
	for _, tc := range []struct {
		concurrency, loops int
		want               []int
	}{
		{200, 2, []int{100, 100}},
		{250, 3, []int{84, 83, 83}},
		{5, 5, []int{1, 1, 1, 1, 1}},
		{7, 1, []int{7}},
	} {
		got := SplitConcurrency(tc.concurrency, tc.loops)
		if !slices.Equal(got, tc.want) {
			t.Errorf("SplitConcurrency(%d, %d) = %v, want %v", tc.concurrency, tc.loops, got, tc.want)
		}
	}
}
