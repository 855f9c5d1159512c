package batch

import (
	"bytes"
	"io"
)

// encoding/csv holds a whole record in memory however long it is: one
// 200 MB field takes a gigabyte. capReader sits between the input and
// csv.Reader and passes every record of at most max bytes as it is, but
// replaces a longer one by a line holding only tooLongMarker, followed by
// as many empty lines as the record had line ends beyond its last, so that
// csv.Reader (which skips empty lines but counts them) still numbers the
// following lines as an editor does. Memory stays within a few times max.
//
// To know where a record ends it follows csv.Reader's own rules for its
// default settings (comma ',', no comment character, strict quotes): a
// quote opens a quoted field only at the start of a field; inside one, ""
// is a quote and a line end is data; a quote that is not followed by a
// comma or a line end, or a quote inside an unquoted field, is an error
// that ends the record with its line.
type capReader struct {
	src io.Reader
	max int

	buf      []byte // input read but not scanned yet: buf[pos:end]
	pos, end int
	srcErr   error

	st       csvState
	rec      []byte // the current record, while it fits in max
	skipping bool   // the current record is longer than max
	lineEnds int    // line ends in the current record, while skipping

	out     []byte // records ready for csv.Reader: out[outPos:]
	outPos  int
	blankNL int // empty lines to give after out
}

// tooLongMarker is the one field of the line that stands for a record
// longer than MaxLineBytes. NUL bytes keep it from meaning anything else.
const tooLongMarker = "\x00smsq: record too long\x00"

type csvState uint8

const (
	fieldStart csvState = iota
	unquoted
	quoted
	quoteSeen   // a quote inside a quoted field: its end, or half of ""
	quoteSeenCR // a quote, then \r: its end when \n follows
	badLine     // a quote error: the record ends with the line
)

func newCapReader(src io.Reader, max int) *capReader {
	return &capReader{src: src, max: max, buf: make([]byte, 32<<10)}
}

var blankLines = bytes.Repeat([]byte{'\n'}, 4<<10)

func (c *capReader) Read(p []byte) (int, error) {
	for c.outPos == len(c.out) && c.blankNL == 0 {
		c.out, c.outPos = c.out[:0], 0
		if c.pos == c.end {
			if c.srcErr != nil {
				if len(c.rec) > 0 || c.skipping {
					c.endRecord() // the input ended inside a record
					continue
				}
				return 0, c.srcErr
			}
			c.pos = 0
			c.end, c.srcErr = c.src.Read(c.buf)
			continue
		}
		c.scan()
	}
	if c.outPos < len(c.out) {
		n := copy(p, c.out[c.outPos:])
		c.outPos += n
		return n, nil
	}
	n := copy(p, blankLines[:min(c.blankNL, len(blankLines))])
	c.blankNL -= n
	return n, nil
}

// scan moves the scanned bytes up to the end of the buffer, or up to the
// end of a record replaced by the marker (whose empty lines must come
// before whatever follows), into out.
func (c *capReader) scan() {
	for c.pos < c.end {
		if c.skipping {
			// Jump to the next byte that can change the state.
			seg := c.buf[c.pos:c.end]
			i := 0
			switch c.st {
			case quoted:
				i = bytes.IndexByte(seg, '"')
			case unquoted:
				i = bytes.IndexAny(seg, ",\n\"")
			case badLine:
				i = bytes.IndexByte(seg, '\n')
			}
			if i < 0 {
				i = len(seg)
			}
			c.lineEnds += bytes.Count(seg[:i], []byte{'\n'})
			if c.pos += i; c.pos == c.end {
				return
			}
		}
		b := c.buf[c.pos]
		c.pos++
		if c.skipping {
			if b == '\n' {
				c.lineEnds++
			}
		} else {
			c.rec = append(c.rec, b)
			if len(c.rec) > c.max {
				c.skipping = true
				c.lineEnds = bytes.Count(c.rec, []byte{'\n'})
				c.rec = c.rec[:0]
			}
		}
		if c.step(b) {
			if c.endRecord() {
				return
			}
		}
	}
}

// step advances the state by one byte and reports whether the record ended.
func (c *capReader) step(b byte) bool {
	switch c.st {
	case fieldStart, unquoted:
		switch {
		case b == '\n':
			return true
		case b == ',':
			c.st = fieldStart
		case b == '"' && c.st == fieldStart:
			c.st = quoted
		case b == '"':
			c.st = badLine // a bare quote
		default:
			c.st = unquoted
		}
	case quoted:
		if b == '"' {
			c.st = quoteSeen
		}
	case quoteSeen:
		switch b {
		case '"':
			c.st = quoted
		case ',':
			c.st = fieldStart
		case '\n':
			return true
		case '\r':
			c.st = quoteSeenCR
		default:
			c.st = badLine
		}
	case quoteSeenCR:
		if b == '\n' {
			return true
		}
		c.st = badLine
	case badLine:
		return b == '\n'
	}
	return false
}

// endRecord hands out the record that just ended and reports whether it
// was replaced by the marker.
func (c *capReader) endRecord() bool {
	c.st = fieldStart
	if !c.skipping {
		c.out = append(c.out, c.rec...)
		c.rec = c.rec[:0]
		return false
	}
	c.out = append(c.out, tooLongMarker+"\n"...)
	c.blankNL = max(c.lineEnds-1, 0)
	c.skipping, c.lineEnds = false, 0
	return true
}
