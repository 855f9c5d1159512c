package phone

import (
	"encoding/json"
	"strings"
	"time"
)

// MaskJSON masks the strings and long numbers of a decoded JSON value (as
// decoded with json.Decoder.UseNumber) in place with MaskText, and returns
// it. Timestamps stay readable (their nanoseconds are nine digits), and so
// do numbers under keys ending in "Ms", which are durations.
func MaskJSON(v any) any { return maskJSON("", v) }

func maskJSON(key string, v any) any {
	switch x := v.(type) {
	case string:
		if _, err := time.Parse(time.RFC3339Nano, x); err == nil {
			return x
		}
		return MaskText(x)
	case json.Number:
		if strings.HasSuffix(key, "Ms") || strings.HasSuffix(key, "MS") {
			return x
		}
		if s := MaskText(x.String()); s != x.String() {
			return s
		}
		return x
	case map[string]any:
		for k, e := range x {
			x[k] = maskJSON(k, e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = maskJSON(key, e)
		}
		return x
	default:
		return v
	}
}
