package main

import "testing"

func TestHTTPConnCap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		want      int
		limit     uint64
		sendPath  int
		n         int
		wantShort bool
	}{
		{"unknown limit keeps the setting", 128, 0, 400, 128, false},
		{"room for all", 128, 1 << 20, 400, 128, false},
		{"lowered to what the send path leaves", 128, 500, 400, 100, false},
		{"exactly the floor", 128, 408, 400, minHTTPConns, false},
		{"below the floor is short", 128, 300, 400, minHTTPConns, true},
		{"a small setting stays small when short", 2, 300, 400, 2, true},
		{"a limit above the int range", 128, 1 << 63, 400, 128, false},
		{"unlimited (RLIM_INFINITY)", 128, ^uint64(0), 400, 128, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, short := httpConnCap(tt.want, tt.limit, tt.sendPath)
			if n != tt.n || short != tt.wantShort {
				t.Fatalf("httpConnCap(%d, %d, %d) = %d, %v; want %d, %v", tt.want, tt.limit, tt.sendPath, n, short, tt.n, tt.wantShort)
			}
		})
	}
}

func TestSendPathFiles(t *testing.T) {
	t.Parallel()
	// Both pools, the UI's, one GenAuth connection per task, the slack.
	base := mainPoolSize(100) + queuePoolSize(100, 1) + uiRedisPool + 100 + fileSlack
	if got := sendPathFiles(100, 1, false, false); got != base {
		t.Fatalf("sendPathFiles(100, 1) = %d, want %d", got, base)
	}
	// In-process servers hold the other end of their connections.
	if got := sendPathFiles(100, 1, true, true); got <= 2*base-2*fileSlack {
		t.Fatalf("sendPathFiles with the embedded Redis and the sandbox = %d, want both ends counted (> %d)", got, 2*base-2*fileSlack)
	}
}
