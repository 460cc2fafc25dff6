package importer

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/s3stream"
)

// encodeLines returns the gzipped line index of lines.
func encodeLines(t *testing.T, lines []int) []byte {
	t.Helper()
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed)
	x := newLineIndexWriter(zw)
	for _, l := range lines {
		if err := x.add(l); err != nil {
			t.Fatal(err)
		}
	}
	if err := x.flush(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// opener serves data and counts the opens.
type opener struct {
	data  []byte
	err   error
	opens int
}

func (o *opener) open() (io.ReadCloser, error) {
	o.opens++
	if o.err != nil {
		return nil, o.err
	}
	return io.NopCloser(bytes.NewReader(o.data)), nil
}

func TestLineIndexRoundTrip(t *testing.T) {
	// Equal lines (JSON array elements on one line), gaps of every varint
	// length, and many records (several flushes of the writer's buffer).
	lines := []int{1, 1, 1, 2, 130, 20000, 3_000_000, 3_000_000}
	for i := 0; i < 20000; i++ {
		lines = append(lines, lines[len(lines)-1]+1+i%3)
	}
	zr, err := gzip.NewReader(bytes.NewReader(encodeLines(t, lines)))
	if err != nil {
		t.Fatal(err)
	}
	rd := &lineIndexReader{r: newByteReader(zr)}
	var got []int
	for {
		l, err := rd.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, l)
	}
	if diff := cmp.Diff(lines, got); diff != "" {
		t.Errorf("decoded lines (-want +got):\n%s", diff)
	}
}

func newByteReader(r io.Reader) io.ByteReader {
	b, _ := io.ReadAll(r)
	return bytes.NewReader(b)
}

func TestLineIndexWriterRefusesLinesGoingBack(t *testing.T) {
	x := newLineIndexWriter(io.Discard)
	if err := x.add(5); err != nil {
		t.Fatal(err)
	}
	if err := x.add(4); err == nil {
		t.Error("add(4) after add(5) = nil, want an error")
	}
}

func TestChunkLinesLookups(t *testing.T) {
	lines := []int{2, 3, 5, 8, 13, 21, 34}
	data := encodeLines(t, lines)
	tests := []struct {
		name    string
		limit   int64
		records int64
		lookups []int64
		want    []int // 0: no line
		opens   int
	}{
		{"in order", 10, 7, []int64{0, 2, 2, 6}, []int{2, 5, 5, 34}, 1},
		{"past the end", 10, 7, []int64{5, 7, 100, 6}, []int{21, 0, 0, 34}, 1},
		{"out of order: read whole", 10, 7, []int64{4, 1, 6, 0, 9}, []int{13, 3, 34, 2, 0}, 2},
		{"out of order over the limit", 6, 7, []int64{4, 1, 5}, []int{13, 0, 21}, 1},
		{"ledger count wrong, index over the limit", 6, 3, []int64{4, 1, 5}, []int{13, 0, 0}, 2},
		{"negative", 10, 7, []int64{-1}, []int{0}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := &opener{data: data}
			c := &chunkLines{open: o.open, limit: tc.limit, records: tc.records}
			var got []int
			for _, i := range tc.lookups {
				l, ok, err := c.lineOf(i)
				if err != nil {
					t.Fatalf("lineOf(%d): %v", i, err)
				}
				if ok != (l > 0) {
					t.Fatalf("lineOf(%d) = %d, %v", i, l, ok)
				}
				got = append(got, l)
			}
			c.close()
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("lines of %v (-want +got):\n%s", tc.lookups, diff)
			}
			if o.opens != tc.opens {
				t.Errorf("opens = %d, want %d", o.opens, tc.opens)
			}
		})
	}
}

func TestChunkLinesWithoutIndex(t *testing.T) {
	good := encodeLines(t, []int{1, 2, 3})
	tests := []struct {
		name    string
		o       *opener
		wantErr bool
	}{
		{"missing", &opener{err: fmt.Errorf("get: %w", s3stream.ErrNotFound)}, false},
		{"not gzip", &opener{data: []byte("not gzip at all")}, false},
		{"bad checksum", &opener{data: append(bytes.Clone(good[:len(good)-8]), 0, 0, 0, 0, 3, 0, 0, 0)}, false},
		{"S3 fails: retry", &opener{err: errors.New("connection reset")}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &chunkLines{open: tc.o.open, limit: 10, records: 3}
			for i := int64(0); i <= 3; i++ { // 3: past the end, which reads the checksum
				l, ok, err := c.lineOf(i)
				if (err != nil) != tc.wantErr {
					t.Fatalf("lineOf(%d) error = %v, want error %v", i, err, tc.wantErr)
				}
				if tc.wantErr {
					return
				}
				// A bad checksum shows only at the end of the data: the
				// lines read before it may be served.
				if ok && tc.name != "bad checksum" {
					t.Errorf("lineOf(%d) = %d, want no line", i, l)
				}
			}
			if !c.gone || c.warned == nil {
				t.Errorf("chunkLines not given up (gone %v, warned %v)", c.gone, c.warned)
			}
		})
	}
}

func TestCEErrorIndex(t *testing.T) {
	tests := []struct {
		raw    string
		want   int64
		wantOK bool
	}{
		{`{"index":0,"status":"x"}`, 0, true},
		{` {"index": 41, "status":"x","record":{"index":7}}`, 41, true},
		{`{"recordIndex":3}`, 3, true},
		{`{"index":null,"recordIndex":3}`, 3, true},
		{`{"index":2.0}`, 2, true},
		{`{"index":"2"}`, 0, false},
		{`{"index":-1}`, 0, false},
		{`{"index":1.5}`, 0, false},
		{`{"row":3}`, 0, false},
		{`{"status":"74234: Invalid prospect email address"}`, 0, false},
		{`"74234: Invalid prospect email address"`, 0, false},
		{`[1]`, 0, false},
		{`{"index":`, 0, false},
	}
	for _, tc := range tests {
		got, ok := ceErrorIndex(json.RawMessage(tc.raw))
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("ceErrorIndex(%s) = %d, %v; want %d, %v", tc.raw, got, ok, tc.want, tc.wantOK)
		}
	}
}
