package batch

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// readAll reads every record of r.
func readAll(t *testing.T, r Reader) []Record {
	t.Helper()
	var out []Record
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		out = append(out, rec)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestCSVHeader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		wantErr  error
		wantMsg  string // substring of the error
	}{
		{"empty", "", ErrEmpty, "empty"},
		{"unknown column named", "channel,phone,colour,size\n", ErrHeader, `unknown column "colour", "size"`},
		{"missing phone", "channel,lang\n", ErrHeader, "missing column phone"},
		{"same column twice", "channel,phone,phoneNumber\n", ErrHeader, `"phone" and "phoneNumber"`},
		{"aliases", "Channel,phoneNumber,phoneCountryCode,clientIp,idempotencyKey,send-within,on_held\n", nil, ""},
		{"byte order mark", "\ufeffchannel,phone\n", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewCSVReader(strings.NewReader(tt.in))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("NewCSVReader error = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(errText(err), tt.wantMsg) {
				t.Fatalf("error %q does not contain %q", err, tt.wantMsg)
			}
		})
	}
}

func TestCSVRows(t *testing.T) {
	t.Parallel()
	in := "channel,phone,country_code,lang,idempotency_key,queue,send_within,delay,on_held\n" +
		"CHANNEL_LOGIN,138 0013 8000,+86,en-US,k1,low,90s,2s,defer\n" +
		"\n" + // blank lines are skipped and still counted
		"CHANNEL_LOGIN,13800138000\n" +
		"CHANNEL_LOGIN,\"13800\n138000\",,,,,,,\n" + // a quoted newline: the record starts on line 5
		"CHANNEL_LOGIN,13800138000,,,,,soon,,dedupe\n" +
		"CHANNEL_LOGIN,138\"00,,,,,,,\n" + // a bare quote spoils only its own row
		"CHANNEL_LOGIN,+8613800138000,,,,,,,\n"
	r, err := NewCSVReader(strings.NewReader(in))
	if err != nil {
		t.Fatalf("NewCSVReader: %v", err)
	}
	got := readAll(t, r)
	want := []Record{
		{Line: 2, Channel: "CHANNEL_LOGIN", Phone: "138 0013 8000", CountryCode: "+86", Lang: "en-US", IdempotencyKey: "k1", Queue: "low", SendWithin: 90 * time.Second, Delay: 2 * time.Second, OnHeld: "defer"},
		{Line: 4},
		{Line: 5, Channel: "CHANNEL_LOGIN", Phone: "13800\n138000"},
		{Line: 7, Channel: "CHANNEL_LOGIN", Phone: "13800138000", OnHeld: "dedupe"},
		{Line: 8},
		{Line: 9, Channel: "CHANNEL_LOGIN", Phone: "+8613800138000"},
	}
	wantErr := []string{"", "2 fields, the header has 9", "", `send_within: "soon" is not a duration such as 90s or 5m`, `bare " in non-quoted-field`, ""}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g := got[i]
		gotErr := errText(g.Err)
		g.Err = nil
		if g.Line == 4 || g.Line == 8 { // fields of a malformed row are not kept
			g = Record{Line: g.Line}
		}
		if g.Line == 7 {
			g.SendWithin = 0
		}
		if g != want[i] || gotErr != wantErr[i] {
			t.Fatalf("record %d = %+v (err %q), want %+v (err %q)", i, got[i], gotErr, want[i], wantErr[i])
		}
	}
}

func TestJSONL(t *testing.T) {
	t.Parallel()
	long := `{"channel":"` + strings.Repeat("x", MaxLineBytes) + `"}`
	in := "\ufeff" + `{"channel":"CHANNEL_LOGIN","phoneNumber":"13800138000","phoneCountryCode":"+86","idempotencyKey":"k1","sendWithin":"1m","onHeld":"defer"}` + "\n" +
		`{"channel":"CHANNEL_LOGIN","phone":"+8613800138000","client_ip":"10.0.0.1","lang":null}` + "\r\n" +
		"   \n" +
		`{"channel":"CHANNEL_LOGIN","phone":13800138000,"colour":"red"}` + "\n" +
		`not json` + "\n" +
		long + "\n" +
		`{"phone":"1","phoneNumber":"2"}` // no final newline
	got := readAll(t, NewJSONLReader(strings.NewReader(in)))
	want := []struct {
		rec Record
		err string
	}{
		{Record{Line: 1, Channel: "CHANNEL_LOGIN", Phone: "13800138000", CountryCode: "+86", IdempotencyKey: "k1", SendWithin: time.Minute, OnHeld: "defer"}, ""},
		{Record{Line: 2, Channel: "CHANNEL_LOGIN", Phone: "+8613800138000", ClientIP: "10.0.0.1"}, ""},
		{Record{Line: 4, Channel: "CHANNEL_LOGIN"}, `unknown key "colour"; phone: want a string`},
		{Record{Line: 5}, "not a JSON object: invalid character 'o' in literal null (expecting 'u')"},
		{Record{Line: 6}, "line longer than 65536 bytes"},
		{Record{Line: 7, Phone: "1"}, `"phone" and "phoneNumber" are the same field`},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		gotErr := errText(g.Err)
		g.Err = nil
		if g != w.rec || gotErr != w.err {
			t.Fatalf("record %d = %+v (err %q), want %+v (err %q)", i, g, gotErr, w.rec, w.err)
		}
	}
}

func TestJSONLEmpty(t *testing.T) {
	t.Parallel()
	_, err := NewJSONLReader(strings.NewReader("\n  \n")).Read()
	if !errors.Is(err, ErrEmpty) {
		t.Fatalf("Read of blank input = %v, want ErrEmpty", err)
	}
}

func TestSniff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Format
		wantErr error
	}{
		{`{"channel":"x"}`, FormatJSONL, nil},
		{"\ufeff \n\t{}", FormatJSONL, nil},
		{"channel,phone\n", FormatCSV, nil},
		{"", "", ErrEmpty},
		{" \n\n", "", ErrEmpty},
	}
	for _, tt := range tests {
		br := bufio.NewReader(strings.NewReader(tt.in))
		got, err := Sniff(br)
		if got != tt.want || !errors.Is(err, tt.wantErr) {
			t.Fatalf("Sniff(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if tt.wantErr == nil {
			rest, _ := io.ReadAll(br)
			if string(rest) != tt.in {
				t.Fatalf("Sniff consumed input: %q left of %q", rest, tt.in)
			}
		}
	}
}

func TestFormatForName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		want Format
		ok   bool
	}{
		{"codes.csv", FormatCSV, true},
		{"codes.CSV", FormatCSV, true},
		{"codes.jsonl", FormatJSONL, true},
		{"codes.ndjson", FormatJSONL, true},
		{"codes.txt", "", false},
		{"-", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := FormatForName(tt.name)
		if got != tt.want || ok != tt.ok {
			t.Fatalf("FormatForName(%q) = %q, %v; want %q, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}
