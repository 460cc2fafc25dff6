package ce

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// refRecords splits data into JSON records with encoding/json, the way the
// RecordReader did before it framed records itself: the reference the
// framer must agree with. It returns the records and the index of the
// record that failed (-1 for a clean end).
func refRecords(data []byte) ([]string, int) {
	data = bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF"))
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, -1
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	var recs []string
	object := func() bool {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return false
		}
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || raw[0] != '{' {
			return false
		}
		recs = append(recs, string(raw))
		return true
	}
	switch trimmed[0] {
	case '[':
		if _, err := dec.Token(); err != nil {
			return recs, len(recs)
		}
		for dec.More() {
			if !object() {
				return recs, len(recs)
			}
		}
		tok, err := dec.Token()
		if d, ok := tok.(json.Delim); err != nil || !ok || d != ']' {
			return recs, len(recs)
		}
		if _, err := dec.Token(); err != io.EOF {
			return recs, len(recs)
		}
		return recs, -1
	case '{':
		for dec.More() {
			if !object() {
				return recs, len(recs)
			}
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != io.EOF {
			return recs, len(recs)
		}
		return recs, -1
	}
	return nil, 0
}

// frameAll splits data with the RecordReader, reading it in pieces of
// chunk bytes so that records straddle reads.
func frameAll(data []byte, chunk int) ([]string, int, error) {
	rr := NewRecordReader(&chunkReader{b: data, n: chunk})
	var recs []string
	for {
		rec, err := rr.NextView()
		if err == io.EOF {
			return recs, -1, nil
		}
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				return recs, len(recs), fmt.Errorf("error %v (%T) is not a *DecodeError", err, err)
			}
			if de.Index != int64(len(recs)) || de.Offset < 0 || de.Offset > int64(len(data)) {
				return recs, len(recs), fmt.Errorf("DecodeError{Index: %d, Offset: %d} after %d records of %d bytes", de.Index, de.Offset, len(recs), len(data))
			}
			return recs, len(recs), nil
		}
		recs = append(recs, string(rec))
	}
}

// chunkReader yields b at most n bytes per Read.
type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.n)], c.b)
	c.b = c.b[n:]
	return n, nil
}

// FuzzRecordReaderAgreement checks the framer against encoding/json: the
// same inputs are valid, records split at the same places, byte for byte,
// and a failure is reported at the same record.
func FuzzRecordReaderAgreement(f *testing.F) {
	for _, seed := range []string{
		`[{"a":1},{"b":[1,2,{"c":null}]}]`,
		"{\"a\":1}\n{\"b\":2}\n",
		"{\"a\":1}\r\n{\"b\":\"x\\ny\"}",
		`{"a":1}{"b":2} {"c":-0.5e+7}`,
		`[{"a":1},`,
		`[ ]`,
		`[{"a":01}]`,
		`[{"a":"\u00e9\ud83d\ude00\/"}]`,
		"[{\"a\":\"\x01\"}]",
		`{"a":tru}`,
		`{"a":[true,false,null,"",{}]}`,
		`{"a":1e400}`,
		`[{"a":1}] [`,
		"{\"a\":1}\n]",
		`{"a":` + string(bytes.Repeat([]byte("["), 100)),
		"\xEF\xBB\xBF {\"\xff\":1}",
	} {
		f.Add([]byte(seed), uint8(7))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		want, wantFail := refRecords(data)
		got, gotFail, err := frameAll(data, int(chunk)+1)
		if err != nil {
			t.Fatal(err)
		}
		if gotFail != wantFail || len(got) != len(want) {
			t.Fatalf("framer: %d records, failed at %d; encoding/json: %d records, failed at %d\ninput %q", len(got), gotFail, len(want), wantFail, data)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("record %d = %q, encoding/json %q", i, got[i], want[i])
			}
		}
	})
}

func TestResumeRecordReader(t *testing.T) {
	for _, in := range []string{
		"\xEF\xBB\xBF [ {\"a\":1} ,\n{\"b\":2},{\"c\":[3]} ]\n",
		"{\"a\":1}\n{\"b\":2}\r\n\n{\"c\":3}",
		`[{"a":1},{"b":2},{"c":3}`, // not closed: the error survives a resume
		"{\"a\":1}\n{\"b\":2}\n{\"c\":",
	} {
		full, fullFail := refRecords([]byte(in))
		for k := 0; k <= len(full); k++ {
			rr := NewRecordReader(strings.NewReader(in))
			for range k {
				if _, err := rr.Next(); err != nil {
					t.Fatalf("%q: Next: %v", in, err)
				}
			}
			p := rr.Position()
			if p.Records != int64(k) {
				t.Fatalf("%q: Position().Records = %d, want %d", in, p.Records, k)
			}
			res := ResumeRecordReader(strings.NewReader(in[p.Offset:]), p)
			got, err := readAll(res)
			if diff := cmp.Diff(full[k:], got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("%q resumed at %+v (-want +got):\n%s", in, p, diff)
			}
			var de *DecodeError
			switch {
			case fullFail < 0 && err != io.EOF:
				t.Errorf("%q resumed at %+v: %v, want io.EOF", in, p, err)
			case fullFail >= 0 && (!errors.As(err, &de) || de.Index != int64(fullFail)):
				t.Errorf("%q resumed at %+v: %v, want a DecodeError at record %d", in, p, err, fullFail)
			}
		}
	}
}
