package batch

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
)

// hugeField is an io.Reader of a CSV input whose middle record holds one
// field of size bytes, made on the fly: the test itself never holds it.
type hugeField struct {
	head, tail string
	size       int64
	fill       byte // the field's bytes; '\n' inside quotes makes many lines
	quoted     bool
	n          int64 // bytes of the field given so far
	block      []byte
	stage      int
}

func (h *hugeField) Read(p []byte) (int, error) {
	switch h.stage {
	case 0:
		h.stage++
		s := h.head
		if h.quoted {
			s += `"`
		}
		return copy(p, s), nil // small enough for any p csv uses
	case 1:
		if h.n >= h.size {
			h.stage++
			return 0, nil
		}
		if h.block == nil {
			h.block = bytes.Repeat([]byte{h.fill}, 32<<10)
		}
		k := copy(p[:min(int64(len(p)), h.size-h.n)], h.block)
		h.n += int64(k)
		return k, nil
	case 2:
		h.stage++
		s := h.tail
		if h.quoted {
			s = `"` + s
		}
		return copy(p, s), nil
	}
	return 0, io.EOF
}

func TestCSVRecordIsCappedInBoundedMemory(t *testing.T) {
	// Not parallel: it measures the bytes allocated.
	for _, tt := range []struct {
		name     string
		size     int // 256 and 32 times the cap
		fill     byte
		quoted   bool
		nextLine int // the line after the huge record
	}{
		{"one long line", 16 << 20, 'a', false, 4},
		// Fewer bytes: csv.Reader skips each empty line one by one.
		{"quoted, many lines", 2 << 20, '\n', true, 4 + 2<<20},
	} {
		size := tt.size
		in := &hugeField{
			head: "channel,phone\nCHANNEL_LOGIN,+8613800138000\nCHANNEL_LOGIN,",
			tail: "\nCHANNEL_LOGIN,+8613800138001\n",
			size: int64(size), fill: tt.fill, quoted: tt.quoted,
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		r, err := NewCSVReader(in)
		if err != nil {
			t.Fatal(err)
		}
		recs := readAll(t, r)
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
			t.Errorf("%s: reading a %d MiB field allocated %d KiB, want at most 4 MiB", tt.name, size>>20, alloc>>10)
		}
		if len(recs) != 3 {
			t.Fatalf("%s: %d records, want 3: %+v", tt.name, len(recs), recs)
		}
		if recs[0].Line != 2 || recs[0].Err != nil || recs[0].Phone != "+8613800138000" {
			t.Errorf("%s: first record %+v", tt.name, recs[0])
		}
		if recs[1].Line != 3 || recs[1].Err == nil || recs[1].Err.Error() != fmt.Sprintf("record longer than %d bytes", MaxLineBytes) {
			t.Errorf("%s: huge record %+v, want line 3 invalid: record longer than %d bytes", tt.name, recs[1], MaxLineBytes)
		}
		if recs[2].Line != tt.nextLine || recs[2].Err != nil || recs[2].Phone != "+8613800138001" {
			t.Errorf("%s: record after the huge one %+v, want line %d valid", tt.name, recs[2], tt.nextLine)
		}
	}
}

func TestCSVHeaderTooLong(t *testing.T) {
	t.Parallel()
	_, err := NewCSVReader(strings.NewReader("channel,phone" + strings.Repeat(",x", MaxLineBytes) + "\n"))
	if !errors.Is(err, ErrHeader) || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("NewCSVReader = %v, want a header error saying it is too long", err)
	}
}

// Under the cap the reader must split records exactly as csv.Reader does,
// bad quoting included, or one bad line would swallow the lines after it
// into one "too long" record.
func TestCSVCapFollowsCSVRecordBoundaries(t *testing.T) {
	t.Parallel()
	rest := strings.Repeat("CHANNEL_LOGIN,+8613800138000\n", 4000) // > MaxLineBytes in all
	for _, bad := range []string{
		"CHANNEL_LOGIN,+86138\"00138000\n",    // a bare quote
		"\"CHANNEL_LOGIN\"x,+8613800138000\n", // text after a closing quote
		"\"CHANNEL_LOGIN\"\r,+8613800138000\n",
		"\"CHANNEL\nLOGIN\",\"+86\"\"138\"\r\n",  // quoted line end, "" and CRLF
		"CHANNEL_LOGIN,+8613800138000\r\n\r\n\n", // empty lines
		"\"\",\"\"\n",
	} {
		in := "channel,phone\n" + bad + rest + "\"open"
		got := readAll(t, mustCSV(t, in))
		plain := csv.NewReader(strings.NewReader(in))
		if _, err := plain.Read(); err != nil {
			t.Fatal(err)
		}
		var want []int
		for {
			_, err := plain.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			var perr *csv.ParseError
			if errors.As(err, &perr) {
				want = append(want, perr.StartLine)
				continue
			}
			line, _ := plain.FieldPos(0)
			want = append(want, line)
		}
		if len(got) != len(want) {
			t.Fatalf("input with %q: %d records, csv.Reader reads %d", bad, len(got), len(want))
		}
		for i := range want {
			if got[i].Line != want[i] || got[i].Err != nil && strings.Contains(got[i].Err.Error(), "longer than") {
				t.Fatalf("input with %q: record %d = line %d (%v), csv.Reader says line %d", bad, i, got[i].Line, got[i].Err, want[i])
			}
		}
	}
}

func mustCSV(t *testing.T, in string) *CSVReader {
	t.Helper()
	r, err := NewCSVReader(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	return r
}
