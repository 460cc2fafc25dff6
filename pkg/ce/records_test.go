package ce

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// readAll drains a RecordReader, returning the records and the final error.
func readAll(rr *RecordReader) ([]string, error) {
	var recs []string
	for {
		rec, err := rr.Next()
		if err != nil {
			return recs, err
		}
		recs = append(recs, string(rec))
	}
}

func TestRecordReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"array", `[{"a":1},{"b":[1,2]}]`, []string{`{"a":1}`, `{"b":[1,2]}`}},
		{"array with space", " \n[ {\"a\":1} ,\n {\"b\":2} ]\n ", []string{`{"a":1}`, `{"b":2}`}},
		{"empty array", `[]`, nil},
		{"JSON lines", "{\"a\":1}\n{\"b\":2}\n", []string{`{"a":1}`, `{"b":2}`}},
		{"JSON lines CRLF no final newline", "{\"a\":1}\r\n{\"b\":2}", []string{`{"a":1}`, `{"b":2}`}},
		{"concatenated objects", `{"a":1}{"b":2} {"c":3}`, []string{`{"a":1}`, `{"b":2}`, `{"c":3}`}},
		{"blank lines", "\n\n{\"a\":1}\n\n\n{\"b\":2}\n\n", []string{`{"a":1}`, `{"b":2}`}},
		{"byte order mark", "\xEF\xBB\xBF[{\"a\":1}]", []string{`{"a":1}`}},
		{"empty", ``, nil},
		{"only space", " \n\t\r\n", nil},
		{"pretty printed", "[\n  {\n    \"a\": 1\n  }\n]", []string{"{\n    \"a\": 1\n  }"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rr := NewRecordReader(strings.NewReader(tc.in))
			got, err := readAll(rr)
			if err != io.EOF {
				t.Fatalf("Next error = %v, want io.EOF", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("records (-want +got):\n%s", diff)
			}
			if rr.Count() != int64(len(tc.want)) {
				t.Errorf("Count() = %d, want %d", rr.Count(), len(tc.want))
			}
			if _, err := rr.Next(); err != io.EOF {
				t.Errorf("Next after EOF = %v, want io.EOF", err)
			}
		})
	}
}

func TestRecordReaderFixtures(t *testing.T) {
	for _, name := range []string{"download-activities.json", "download-activities.jsonl"} {
		t.Run(name, func(t *testing.T) {
			got, err := readAll(NewRecordReader(bytes.NewReader(fixture(t, name))))
			if err != io.EOF {
				t.Fatalf("Next error = %v", err)
			}
			var events []string
			for _, rec := range got {
				var v struct{ Event string }
				if err := json.Unmarshal([]byte(rec), &v); err != nil {
					t.Fatalf("record %s: %v", rec, err)
				}
				events = append(events, v.Event)
			}
			if diff := cmp.Diff([]string{"Signed Up", "Purchase"}, events); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRecordReaderErrors(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		wantN      int   // records before the error
		wantIndex  int64 // DecodeError.Index
		wantOffset int64 // DecodeError.Offset
		wantIs     error // optional
	}{
		{"truncated array mid record", `[{"a":1},{"b":`, 1, 1, 8, io.ErrUnexpectedEOF},
		{"array without closing bracket", `[{"a":1},{"b":2}`, 2, 2, 16, io.ErrUnexpectedEOF},
		{"array cut after comma", `[{"a":1},`, 1, 1, 8, nil},
		{"missing comma", `[{"a":1} {"b":2}]`, 1, 1, 9, nil},
		{"trailing comma", `[{"a":1},]`, 1, 1, 8, nil},
		{"non-object element", `[{"a":1},2]`, 1, 1, 8, nil},
		{"null element", `[null]`, 0, 0, 1, nil},
		{"garbage after array", `[{"a":1}] x`, 1, 1, 10, nil},
		{"second array", `[{"a":1}][]`, 1, 1, 9, nil}, // the offending byte
		{"broken JSON line", "{\"a\":1}\n{\"b\" 2}\n{\"c\":3}\n", 1, 1, 8, nil},
		{"truncated JSON line", "{\"a\":1}\n{\"b\":", 1, 1, 8, io.ErrUnexpectedEOF},
		{"array in JSON lines", "{\"a\":1}\n[1]\n", 1, 1, 8, nil},
		{"stray bracket in JSON lines", "{\"a\":1}\n]", 1, 1, 8, nil},
		{"leading space offset", "  \n{\"a\":1}\n{x", 1, 1, 11, nil},
		{"not JSON", `hello`, 0, 0, 0, nil},
		{"CSV given to the JSON reader", "a,b\n1,2\n", 0, 0, 0, nil},
		{"scalar", ` 42`, 0, 0, 1, nil},
		{"string", `"x"`, 0, 0, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rr := NewRecordReader(strings.NewReader(tc.in))
			got, err := readAll(rr)
			var decErr *DecodeError
			if !errors.As(err, &decErr) {
				t.Fatalf("Next error = %v (%T) after %d records, want *DecodeError", err, err, len(got))
			}
			if len(got) != tc.wantN {
				t.Errorf("records before the error = %d, want %d", len(got), tc.wantN)
			}
			if decErr.Index != tc.wantIndex || decErr.Offset != tc.wantOffset {
				t.Errorf("DecodeError = {Index: %d, Offset: %d} (%v), want {Index: %d, Offset: %d}",
					decErr.Index, decErr.Offset, decErr, tc.wantIndex, tc.wantOffset)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.wantIs)
			}
			if _, err2 := rr.Next(); err2 != err {
				t.Errorf("Next after an error = %v, want the same error %v", err2, err)
			}
		})
	}
}

func TestRecordReaderSourceError(t *testing.T) {
	errBroken := errors.New("connection reset")
	for _, prefix := range []string{``, `[{"a":1},`, "{\"a\":1}\n", `[`, "{\"a\":1}\n{\"b\""} {
		t.Run(prefix, func(t *testing.T) {
			// The source fails once and then claims a clean EOF: the reader
			// must still report the failure.
			src := io.MultiReader(strings.NewReader(prefix), &onceErrReader{err: errBroken})
			_, err := readAll(NewRecordReader(src))
			var decErr *DecodeError
			if !errors.As(err, &decErr) || !errors.Is(err, errBroken) {
				t.Errorf("Next error = %v, want a *DecodeError wrapping the source error", err)
			}
		})
	}
}

// onceErrReader returns err once, then io.EOF.
type onceErrReader struct {
	err  error
	done bool
}

func (o *onceErrReader) Read([]byte) (int, error) {
	if o.done {
		return 0, io.EOF
	}
	o.done = true
	return 0, o.err
}

func TestRecordReaderSizeLimit(t *testing.T) {
	big := `{"k":"` + strings.Repeat("v", 2000) + `"}`
	tests := []struct {
		name  string
		in    string
		wantN int
	}{
		{"array", `[{"a":1},` + big + `]`, 1},
		{"JSON lines", "{\"a\":1}\n" + big + "\n", 1},
		{"first record", big, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readAll(NewRecordReader(strings.NewReader(tc.in), WithMaxRecordSize(1000)))
			if !errors.Is(err, ErrRecordTooLarge) {
				t.Errorf("Next error = %v, want ErrRecordTooLarge", err)
			}
			var decErr *DecodeError
			if !errors.As(err, &decErr) || decErr.Index != int64(tc.wantN) {
				t.Errorf("Next error = %v, want a *DecodeError at index %d", err, tc.wantN)
			}
			if len(got) != tc.wantN {
				t.Errorf("records before the error = %d, want %d", len(got), tc.wantN)
			}
		})
	}
	// Records exactly under the limit pass, however many there are.
	var b strings.Builder
	for range 500 {
		b.WriteString(`{"k":"` + strings.Repeat("v", 990) + `"}` + "\n")
	}
	got, err := readAll(NewRecordReader(strings.NewReader(b.String()), WithMaxRecordSize(1000)))
	if err != io.EOF || len(got) != 500 {
		t.Errorf("500 records of 998 bytes with a 1000 byte limit: %d records, %v", len(got), err)
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestRecordReaderHugeRecordBoundedMemory(t *testing.T) {
	// A 1 GiB record against a 1 MiB limit: the reader stops after reading
	// little more than the limit instead of buffering the record.
	const huge = 1 << 30
	src := &countingReader{r: io.MultiReader(strings.NewReader(`[{"k":"`), &patternReader{size: huge})}
	_, err := readAll(NewRecordReader(src, WithMaxRecordSize(1<<20)))
	if !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("Next error = %v, want ErrRecordTooLarge", err)
	}
	if src.n > 2<<20 {
		t.Errorf("read %d bytes of a huge record, want at most ~1 MiB", src.n)
	}
}

func TestRecordReaderStreams(t *testing.T) {
	// The first record is available after reading a small prefix of a
	// large stream.
	src := &countingReader{r: io.MultiReader(strings.NewReader(`[{"a":1},`), endlessRecords{})}
	rr := NewRecordReader(src)
	for i := range 3 {
		if _, err := rr.Next(); err != nil {
			t.Fatalf("Next %d: %v", i, err)
		}
	}
	if src.n > 256<<10 {
		t.Errorf("read %d bytes for 3 records, want the stream not to be buffered", src.n)
	}
}

// endlessRecords yields `{"b":2},` forever.
type endlessRecords struct{}

func (endlessRecords) Read(p []byte) (int, error) {
	const rec = `{"b":2},`
	for i := range p {
		p[i] = rec[i%len(rec)]
	}
	return len(p) - len(p)%len(rec), nil
}

func TestCSVRecordReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{
			name: "users",
			in:   "$distinct_id,$email,$city\r\n12157,seven@example.com,Dallas\r\n12158,\"eight@example.com\",\"San Antonio, TX\"\r\n",
			want: []string{
				`{"$distinct_id":"12157","$email":"seven@example.com","$city":"Dallas"}`,
				`{"$distinct_id":"12158","$email":"eight@example.com","$city":"San Antonio, TX"}`,
			},
		},
		{
			name: "quotes, html and newlines",
			in:   "\xEF\xBB\xBFid,note\n1,\"say \"\"hi\"\" <b>\nbye</b>\"\n",
			want: []string{`{"id":"1","note":"say \"hi\" <b>\nbye</b>"}`},
		},
		{"header only", "a,b\n", nil},
		{"empty", "", nil},
		{"empty values", "a,b\n,\n", []string{`{"a":"","b":""}`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readAll(NewCSVRecordReader(strings.NewReader(tc.in)))
			if err != io.EOF {
				t.Fatalf("Next error = %v, want io.EOF", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("records (-want +got):\n%s", diff)
			}
			for _, rec := range got {
				if !json.Valid([]byte(rec)) {
					t.Errorf("record %s is not valid JSON", rec)
				}
			}
		})
	}
}

func TestCSVRecordReaderFixture(t *testing.T) {
	got, err := readAll(NewCSVRecordReader(bytes.NewReader(fixture(t, "download-users.csv"))))
	if err != io.EOF {
		t.Fatal(err)
	}
	want := []string{
		`{"$distinct_id":"12157","$email":"seven@example.com","$city":"Dallas","credits":"150"}`,
		`{"$distinct_id":"12158","$email":"eight@example.com","$city":"San Antonio, TX","credits":""}`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
}

func TestCSVRecordReaderErrors(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		opts      []RecordOption
		wantN     int
		wantIndex int64
		wantIs    error
	}{
		{"too few fields", "a,b\n1,2\n3\n", nil, 1, 1, nil},
		{"too many fields", "a,b\n1,2,3\n", nil, 0, 0, nil},
		{"duplicate header", "a,a\n1,2\n", nil, 0, 0, nil},
		{"bare quote", "a\n1\"x\n", nil, 0, 0, nil},
		{"row over the limit", "a\n1\n" + strings.Repeat("z", 5000) + "\n", []RecordOption{WithMaxRecordSize(1000)}, 1, 1, ErrRecordTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readAll(NewCSVRecordReader(strings.NewReader(tc.in), tc.opts...))
			var decErr *DecodeError
			if !errors.As(err, &decErr) {
				t.Fatalf("Next error = %v, want *DecodeError", err)
			}
			if len(got) != tc.wantN || decErr.Index != tc.wantIndex {
				t.Errorf("%d records, error index %d (%v); want %d and %d", len(got), decErr.Index, err, tc.wantN, tc.wantIndex)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.wantIs)
			}
		})
	}
}

func TestCSVRecordReaderHugeLineBoundedMemory(t *testing.T) {
	src := &countingReader{r: io.MultiReader(strings.NewReader("a\n"), &patternReader{size: 1 << 30})}
	_, err := readAll(NewCSVRecordReader(src, WithMaxRecordSize(1<<20)))
	if !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("Next error = %v, want ErrRecordTooLarge", err)
	}
	if src.n > 2<<20 {
		t.Errorf("read %d bytes of a huge line, want at most ~1 MiB", src.n)
	}
}

func FuzzRecordReader(f *testing.F) {
	for _, seed := range []string{
		`[{"a":1},{"b":[1,2,{"c":null}]}]`,
		"{\"a\":1}\n{\"b\":2}\n",
		`{"a":1}{"b":2}`,
		`[{"a":1},`,
		`[]`,
		``,
		"\xEF\xBB\xBF[]",
		`[{"a":"\u00e9\ud83d\ude00"}]`,
		`{"a":1e400}`,
		`[{"a":1}] [`,
		"{\"a\":1}\n]",
		`[[`,
		`{"a":` + strings.Repeat("[", 100),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rr := NewRecordReader(bytes.NewReader(data), WithMaxRecordSize(4096))
		for i := 0; ; i++ {
			rec, err := rr.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				var decErr *DecodeError
				if !errors.As(err, &decErr) {
					t.Fatalf("Next error %v (%T) is not a *DecodeError", err, err)
				}
				if decErr.Index != int64(i) || decErr.Offset < 0 || decErr.Offset > int64(len(data)) {
					t.Fatalf("DecodeError{Index: %d, Offset: %d} after %d records of %d bytes", decErr.Index, decErr.Offset, i, len(data))
				}
				return
			}
			if len(rec) == 0 || rec[0] != '{' || !json.Valid(rec) {
				t.Fatalf("record %d = %q: not a JSON object", i, rec)
			}
			out, err := json.Marshal(rec)
			if err != nil || !json.Valid(out) {
				t.Fatalf("re-marshal of record %d = %q, %v", i, out, err)
			}
			if int64(len(rec)) > 4096 {
				t.Fatalf("record %d has %d bytes, over the 4096 limit", i, len(rec))
			}
			if i > len(data) {
				t.Fatalf("more records (%d) than input bytes (%d)", i, len(data))
			}
		}
	})
}

func FuzzCSVRecordReader(f *testing.F) {
	for _, seed := range []string{"a,b\n1,2\n", "a\n\"x\"\"y\"\n", "", "a,a\n", "\xEF\xBB\xBFa\n\xff\n"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rr := NewCSVRecordReader(bytes.NewReader(data), WithMaxRecordSize(4096))
		for i := 0; ; i++ {
			rec, err := rr.Next()
			if err != nil {
				var decErr *DecodeError
				if err != io.EOF && !errors.As(err, &decErr) {
					t.Fatalf("Next error %v (%T) is neither io.EOF nor a *DecodeError", err, err)
				}
				return
			}
			if !json.Valid(rec) || rec[0] != '{' {
				t.Fatalf("record %d = %q: not a JSON object", i, rec)
			}
		}
	})
}
