package redistest

import "testing"

func TestSlot(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key  string
		want uint16
	}{
		{"123456789", 12739}, // CRC-16/XMODEM check value 0x31C3
		{"foo", 12182},
		{"bar", 5061},
		{"{bar}.anything", 5061},
		{"smsq:resv:{bar}:CHANNEL_LOGIN", 5061},
		{"foo{}{bar}", Slot("foo{}{bar}")}, // an empty tag hashes the whole key
	}
	for _, tt := range tests {
		if got := Slot(tt.key); got != tt.want {
			t.Fatalf("Slot(%q) = %d, want %d", tt.key, got, tt.want)
		}
	}
	if Slot("foo{}{bar}") == Slot("bar") {
		t.Fatalf("Slot(%q) used the second tag; Redis hashes the whole key when the first tag is empty", "foo{}{bar}")
	}
}
