package batch

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/smsq/smsq"
	"github.com/smsq/smsq/internal/phone"
)

// Format is an input format.
type Format string

// Input formats.
const (
	FormatCSV   Format = "csv"
	FormatJSONL Format = "jsonl"
)

// ParseFormat accepts "csv" and "jsonl" (or its other name "ndjson").
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "csv":
		return FormatCSV, nil
	case "jsonl", "ndjson":
		return FormatJSONL, nil
	}
	return "", fmt.Errorf("format %q: want csv or jsonl", s)
}

// FormatForName picks the format from a file name's extension: .csv, or
// .jsonl, .ndjson and .json for JSON Lines. ok is false for any other name.
func FormatForName(name string) (f Format, ok bool) {
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		return "", false
	}
	switch strings.ToLower(name[i+1:]) {
	case "csv":
		return FormatCSV, true
	case "jsonl", "ndjson", "json":
		return FormatJSONL, true
	}
	return "", false
}

// Errors about the input as a whole; cmd/enqueue treats them as bad usage.
var (
	// ErrEmpty: the input holds nothing but white space.
	ErrEmpty = errors.New("input is empty")
	// ErrHeader: the CSV header row is missing a required column, names an
	// unknown one, or names one twice.
	ErrHeader = errors.New("bad CSV header")
)

// Sniff decides the format of br from its first byte that is not white
// space or a byte order mark: '{' is JSON Lines, anything else CSV. It
// consumes nothing.
func Sniff(br *bufio.Reader) (Format, error) {
	for n := 1; n <= br.Size(); n++ {
		b, err := br.Peek(n)
		if len(b) < n {
			if err == nil || errors.Is(err, io.EOF) {
				return "", ErrEmpty
			}
			return "", err
		}
		if len(b) < len(bom) && bytes.HasPrefix(bom, b) {
			continue // a byte order mark, perhaps
		}
		rest := bytes.TrimLeft(bytes.TrimPrefix(b, bom), " \t\r\n")
		if len(rest) > 0 {
			if rest[0] == '{' {
				return FormatJSONL, nil
			}
			return FormatCSV, nil
		}
	}
	return "", fmt.Errorf("the first %d bytes of input are all white space", br.Size())
}

var bom = []byte("\ufeff")

// field is one column of CSV input or one key of a JSON Lines object.
type field int

const (
	fChannel field = iota
	fPhone
	fCountryCode
	fClientIP
	fLang
	fIdempotencyKey
	fQueue
	fSendWithin
	fDelay
	fOnHeld
	numFields
)

// fieldNames are the documented snake_case names, also used in messages.
var fieldNames = [numFields]string{
	"channel", "phone", "country_code", "client_ip", "lang",
	"idempotency_key", "queue", "send_within", "delay", "on_held",
}

// aliases maps a name folded by foldName to its field: snake_case,
// camelCase and the task payload's own JSON names all fold to one key.
var aliases = map[string]field{
	"channel":          fChannel,
	"phone":            fPhone,
	"phonenumber":      fPhone,
	"countrycode":      fCountryCode,
	"phonecountrycode": fCountryCode,
	"clientip":         fClientIP,
	"lang":             fLang,
	"idempotencykey":   fIdempotencyKey,
	"queue":            fQueue,
	"sendwithin":       fSendWithin,
	"delay":            fDelay,
	"onheld":           fOnHeld,
}

// foldName lowers a name and drops '_' and '-', so that "phone_number",
// "phoneNumber" and "Phone-Number" name the same field.
func foldName(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	return strings.NewReplacer("_", "", "-", "").Replace(s)
}

func lookupField(name string) (field, bool) {
	f, ok := aliases[foldName(name)]
	return f, ok
}

// Record is one input line, parsed but not yet validated.
type Record struct {
	// Line is the line number in the input, counting from 1 as an editor
	// does: a CSV header is line 1, so its first data row is usually line 2.
	Line int

	Channel, Phone, CountryCode, ClientIP, Lang string
	IdempotencyKey, Queue, OnHeld               string
	SendWithin, Delay                           time.Duration
	// SendBy is an absolute deadline (the HTTP API's batch lines carry it).
	SendBy time.Time
	// Source names the producer (smsq.WithSource).
	Source string

	// Err is set when the line could not be parsed (wrong number of CSV
	// fields, broken JSON, a bad duration); the line is reported invalid.
	Err error
}

// Request returns the record's request.
func (r Record) Request() smsq.Request {
	return smsq.Request{Channel: r.Channel, Phone: r.Phone, CountryCode: r.CountryCode, ClientIP: r.ClientIP, Lang: r.Lang}
}

// Options returns the record's send options.
func (r Record) Options() []smsq.Option {
	var opts []smsq.Option
	if r.IdempotencyKey != "" {
		opts = append(opts, smsq.WithIdempotencyKey(r.IdempotencyKey))
	}
	if r.Queue != "" {
		opts = append(opts, smsq.WithQueue(r.Queue))
	}
	if r.Delay != 0 {
		opts = append(opts, smsq.WithDelay(r.Delay))
	}
	if r.SendWithin != 0 {
		opts = append(opts, smsq.WithSendWithin(r.SendWithin))
	}
	if !r.SendBy.IsZero() {
		opts = append(opts, smsq.WithSendBy(r.SendBy))
	}
	if r.Source != "" {
		opts = append(opts, smsq.WithSource(r.Source))
	}
	if r.OnHeld != "" {
		// Validated with the rest of the request: dedupe or defer.
		opts = append(opts, smsq.WithOnHeld(r.OnHeld))
	}
	return opts
}

// set stores one value; an error names the field.
func (r *Record) set(f field, v string) error {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil
	}
	switch f {
	case fChannel:
		r.Channel = v
	case fPhone:
		r.Phone = v
	case fCountryCode:
		r.CountryCode = v
	case fClientIP:
		r.ClientIP = v
	case fLang:
		r.Lang = v
	case fIdempotencyKey:
		r.IdempotencyKey = v
	case fQueue:
		r.Queue = v
	case fSendWithin, fDelay:
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%s: %q is not a duration such as 90s or 5m", fieldNames[f], v)
		}
		if f == fDelay {
			r.Delay = d
		} else {
			r.SendWithin = d
		}
	case fOnHeld:
		r.OnHeld = v
	}
	return nil
}

// Reader yields the records of an input one at a time; Read returns io.EOF
// after the last one. Any other error ends the input.
type Reader interface {
	Read() (Record, error)
}

// CSVReader reads CSV with a header row naming its columns.
type CSVReader struct {
	r    *csv.Reader
	cols []field
}

// NewCSVReader reads the header row of r. Column names follow fieldNames;
// camelCase and the payload's JSON names (phoneNumber, phoneCountryCode)
// are accepted too. channel and phone are required; an unknown or repeated
// column is an error wrapping ErrHeader that names it.
func NewCSVReader(r io.Reader) (*CSVReader, error) {
	cr := csv.NewReader(newCapReader(r, MaxLineBytes))
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, ErrEmpty
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHeader, err)
	}
	if len(header) == 1 && header[0] == tooLongMarker {
		return nil, fmt.Errorf("%w: the header row is longer than %d bytes", ErrHeader, MaxLineBytes)
	}
	header[0] = strings.TrimPrefix(header[0], string(bom))
	cols := make([]field, len(header))
	seen := map[field]string{}
	var unknown, twice []string
	for i, name := range header {
		f, ok := lookupField(name)
		if !ok {
			unknown = append(unknown, fmt.Sprintf("%q", name))
			continue
		}
		if prev, dup := seen[f]; dup {
			twice = append(twice, fmt.Sprintf("%q and %q", prev, name))
		}
		seen[f] = name
		cols[i] = f
	}
	var problems []string
	if len(unknown) > 0 {
		problems = append(problems, "unknown column "+strings.Join(unknown, ", ")+" (known: "+strings.Join(fieldNames[:], ", ")+")")
	}
	if len(twice) > 0 {
		problems = append(problems, "the same column twice: "+strings.Join(twice, ", "))
	}
	for _, f := range []field{fChannel, fPhone} {
		if _, ok := seen[f]; !ok {
			problems = append(problems, "missing column "+fieldNames[f])
		}
	}
	if len(problems) > 0 {
		// Masked: a file without a header row has data in the first line.
		return nil, fmt.Errorf("%w: %s", ErrHeader, phone.MaskText(strings.Join(problems, "; ")))
	}
	return &CSVReader{r: cr, cols: cols}, nil
}

// Read returns the next row. A row with the wrong number of fields, bad
// quoting or more than MaxLineBytes is returned as a Record with Err set.
func (c *CSVReader) Read() (Record, error) {
	row, err := c.r.Read()
	if errors.Is(err, io.EOF) {
		return Record{}, io.EOF
	}
	var perr *csv.ParseError
	if errors.As(err, &perr) {
		rec := Record{Line: perr.StartLine}
		switch {
		case len(row) == 1 && row[0] == tooLongMarker:
			rec.Err = fmt.Errorf("record longer than %d bytes", MaxLineBytes)
		case errors.Is(err, csv.ErrFieldCount):
			rec.Err = fmt.Errorf("%d fields, the header has %d", len(row), len(c.cols))
		default:
			rec.Err = perr.Err
		}
		return rec, nil
	}
	if err != nil {
		return Record{}, err
	}
	line, _ := c.r.FieldPos(0)
	rec := Record{Line: line}
	var errs []string
	for i, v := range row {
		if err := rec.set(c.cols[i], v); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		rec.Err = errors.New(strings.Join(errs, "; "))
	}
	return rec, nil
}

// Offset is how much input the rows read so far took (for progress).
func (c *CSVReader) Offset() int64 { return c.r.InputOffset() }

// MaxLineBytes bounds one JSON Lines line and one CSV record (which may
// span lines inside quotes); a longer one is reported invalid and skipped,
// without holding it in memory.
const MaxLineBytes = 64 << 10

// JSONLReader reads one JSON object per line. Keys are the task payload's
// JSON names (channel, phoneNumber, phoneCountryCode, clientIp, lang,
// idempotencyKey, onHeld) plus queue, sendWithin and delay; the snake_case
// column names of CSV input are accepted too. Values are strings (null is
// the same as absent); durations are strings such as "90s". Blank lines are
// skipped.
type JSONLReader struct {
	br     *bufio.Reader
	line   int
	any    bool
	buf    []byte
	offset int64
}

// Offset is how much input the lines read so far took (for progress).
func (j *JSONLReader) Offset() int64 { return j.offset }

// NewJSONLReader returns a reader of r.
func NewJSONLReader(r io.Reader) *JSONLReader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	return &JSONLReader{br: br}
}

// Read returns the next object. It returns ErrEmpty when the whole input is
// blank.
func (j *JSONLReader) Read() (Record, error) {
	for {
		line, tooLong, err := j.readLine()
		if err != nil {
			// bufio.Reader.ReadLine never returns data with an error.
			if errors.Is(err, io.EOF) && !j.any {
				return Record{}, ErrEmpty
			}
			return Record{}, err
		}
		j.line++
		if j.line == 1 {
			line = bytes.TrimPrefix(line, bom)
		}
		if tooLong {
			j.any = true
			return Record{Line: j.line, Err: fmt.Errorf("line longer than %d bytes", MaxLineBytes)}, nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		j.any = true
		return parseObject(j.line, line), nil
	}
}

// readLine returns the next line without its end of line, or tooLong when
// it exceeds MaxLineBytes (the rest of it is skipped).
func (j *JSONLReader) readLine() (line []byte, tooLong bool, err error) {
	j.buf = j.buf[:0]
	for {
		chunk, isPrefix, err := j.br.ReadLine()
		if err != nil {
			return j.buf, tooLong, err
		}
		j.offset += int64(len(chunk))
		if !isPrefix {
			j.offset++ // the line end, "\n" (or "\r\n": close enough)
		}
		if !tooLong {
			if len(j.buf)+len(chunk) > MaxLineBytes {
				tooLong = true
				j.buf = j.buf[:0]
			} else {
				j.buf = append(j.buf, chunk...)
			}
		}
		if !isPrefix {
			return j.buf, tooLong, nil
		}
	}
}

func parseObject(n int, line []byte) Record {
	rec := Record{Line: n}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil {
		rec.Err = fmt.Errorf("not a JSON object: %v", err)
		return rec
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var errs, unknown []string
	seen := map[field]string{}
	for _, k := range keys {
		f, ok := lookupField(k)
		if !ok {
			unknown = append(unknown, fmt.Sprintf("%q", k))
			continue
		}
		if prev, dup := seen[f]; dup {
			errs = append(errs, fmt.Sprintf("%q and %q are the same field", prev, k))
			continue
		}
		seen[f] = k
		raw := obj[k]
		if string(raw) == "null" {
			continue
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			errs = append(errs, fmt.Sprintf("%s: want a string", k))
			continue
		}
		if err := rec.set(f, s); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(unknown) > 0 {
		errs = append([]string{"unknown key " + strings.Join(unknown, ", ")}, errs...)
	}
	if len(errs) > 0 {
		rec.Err = errors.New(strings.Join(errs, "; "))
	}
	return rec
}
