package recordio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestOpenFormat(t *testing.T) {
	const (
		csvText   = "event,n\nA,1\n"
		linesText = "{\"event\":\"A\"}\n"
		arrayText = "[{\"event\":\"A\"}]"
	)
	tests := []struct {
		name    string
		content []byte
		want    Format
		gzip    bool
	}{
		{"data.csv", []byte(csvText), FormatCSV, false},
		{"data.CSV", []byte(csvText), FormatCSV, false},
		{"imports/users/data.csv.gz", gzipBytes(t, csvText), FormatCSV, true},
		{"data.csv.GZ", gzipBytes(t, csvText), FormatCSV, true},
		{"data.jsonl", []byte(linesText), FormatJSONLines, false},
		{"data.ndjson.gz", gzipBytes(t, linesText), FormatJSONLines, true},
		{"data.json", []byte(linesText), FormatJSONLines, false},
		{"data.json", []byte(arrayText), FormatJSONArray, false},
		{"data.jsonl", []byte("\n  " + arrayText), FormatJSONArray, false},
		{"data.json.gz", gzipBytes(t, arrayText), FormatJSONArray, true},
		// The content decides compression, whatever the name says.
		{"data.csv", gzipBytes(t, csvText), FormatCSV, true},
		{"data.csv.gz", []byte(csvText), FormatCSV, false},
		// Unknown names: the content decides the format.
		{"data", []byte(csvText), FormatCSV, false},
		{"data.txt", []byte(linesText), FormatJSONLines, false},
		{"data.tsv", []byte("a\tb\n1\t2\n"), FormatCSV, false},
		{"data.gz", gzipBytes(t, arrayText), FormatJSONArray, true},
		{"upload", gzipBytes(t, linesText), FormatJSONLines, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rd, err := Open(bytes.NewReader(tc.content), tc.name, Options{})
			if err != nil {
				t.Fatalf("Open(%q) = %v", tc.name, err)
			}
			if got := rd.Format(); got != tc.want {
				t.Errorf("Format() = %q, want %q", got, tc.want)
			}
			res := drain(t, rd, false)
			if len(res.Rows) != 1 || res.Rows[0].Reason != "" || res.End != "EOF" {
				t.Errorf("read: %+v, want one record and EOF", res)
			}
			st := rd.Stats()
			if st.Gzip != tc.gzip || st.BytesRead != int64(len(tc.content)) {
				t.Errorf("Stats() = %+v, want Gzip %v and BytesRead %d", st, tc.gzip, len(tc.content))
			}
		})
	}
}

func TestOpenForcedFormat(t *testing.T) {
	got := readAll(t, []byte("{\"a\":1}\n"), "x.csv", Options{Format: FormatJSONLines})
	want := result{Rows: []row{{Line: 1, Record: rec("a", json.Number("1"))}}, End: "EOF"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
}

func TestOpenRefuses(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		content []byte
		want    string
	}{
		{"empty", "x.csv", nil, "the file is empty"},
		{"empty jsonl", "x.jsonl", nil, "the file is empty"},
		{"blank", "x.json", []byte(" \n\r\n\t "), "the file is empty"},
		{"BOM only", "x.csv", []byte("\xef\xbb\xbf"), "the file is empty"},
		{"empty gzip", "x.csv.gz", gzipBytes(t, ""), "the file is empty"},
		{"lots of blank space", "x", bytes.Repeat([]byte(" "), 100000), "the first 65536 bytes of the file are blank"},
		{"xlsx", "x.csv", []byte("PK\x03\x04\x14\x00\x06\x00"), "the file is binary, not text: it looks like a ZIP archive (an Excel .xlsx workbook? export it as CSV)"},
		{"gzip in gzip", "x.gz", gzipBytes(t, string(gzipBytes(t, "a,b\n"))), "the file is binary, not text: it looks like gzip data inside gzip data (compressed twice?)"},
		{"pdf", "x", []byte("%PDF-1.7\n"), "the file is binary, not text: it looks like a PDF document"},
		{"NUL", "x.jsonl", []byte("{\"a\":1}\n{\"a\x00\":2}\n"), "line 2: the file is binary, not text: it holds NUL bytes"},
		{"UTF-16", "x.csv", []byte("\xff\xfea\x00,\x00b\x00"), "the file is UTF-16 text; save it as UTF-8"},
		{"Latin-1", "x.csv", []byte("name,city\nJos\xe9,M\xe1laga\n"), "line 2: the file is not UTF-8 text (byte 0xe9); save it as UTF-8"},
		{"control characters", "x", []byte("\x01\x02\x03\x04abc"), "the file is binary, not text: it holds many control characters"},
		{"not gzip after magic", "x.gz", []byte("\x1f\x8bnot really gzip"), "the gzip data is corrupt (gzip: invalid header)"},
		{"gzip header cut short", "x.gz", []byte("\x1f\x8b"), "the gzip data is cut short"},
		{"empty array file is fine but not an empty file", "x.json", []byte("  "), "the file is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(bytes.NewReader(tc.content), tc.file, Options{})
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("Open(%q) = %v, want a *FileError", tc.content, err)
			}
			if got := fe.Error(); got != tc.want {
				t.Errorf("Open(%q) = %q, want %q", tc.content, got, tc.want)
			}
		})
	}
}

func TestGzip(t *testing.T) {
	csvText := "event,n\nA,1\nB,2\n"
	whole := gzipBytes(t, csvText)
	tests := []struct {
		name    string
		content []byte
		opts    Options
		want    result
	}{
		{
			name:    "members are one stream",
			content: gzipBytes(t, "event,n\nA,1\n", "B,2\n"),
			want: result{Rows: []row{
				{Line: 2, Record: rec("event", "A", "n", json.Number("1"))},
				{Line: 3, Record: rec("event", "B", "n", json.Number("2"))},
			}, End: "EOF"},
		},
		{
			name:    "cut short",
			content: whole[:len(whole)-6],
			want: result{Rows: []row{
				{Line: 2, Record: rec("event", "A", "n", json.Number("1"))},
				{Line: 3, Record: rec("event", "B", "n", json.Number("2"))},
			}, End: "line 4: the gzip data is cut short"},
		},
		{
			name:    "bad checksum",
			content: append(append([]byte{}, whole[:len(whole)-8]...), 0, 0, 0, 0, whole[len(whole)-4], whole[len(whole)-3], whole[len(whole)-2], whole[len(whole)-1]),
			want: result{Rows: []row{
				{Line: 2, Record: rec("event", "A", "n", json.Number("1"))},
				{Line: 3, Record: rec("event", "B", "n", json.Number("2"))},
			}, End: "line 4: the gzip data is corrupt (gzip: invalid checksum)"},
		},
		{
			name:    "garbage after a member",
			content: append(append([]byte{}, whole...), "trailing garbage!"...),
			want: result{Rows: []row{
				{Line: 2, Record: rec("event", "A", "n", json.Number("1"))},
				{Line: 3, Record: rec("event", "B", "n", json.Number("2"))},
			}, End: "line 4: the gzip data is corrupt (gzip: invalid header)"},
		},
		{
			name:    "decompressed size limit",
			content: gzipBytes(t, "{\"a\":1}\n"+strings.Repeat(" ", 100000)+"\n{\"a\":2}\n"),
			opts:    Options{MaxDecompressedBytes: 50000},
			want: result{Rows: []row{{Line: 1, Record: rec("a", json.Number("1"))}},
				End: "line 2: the file decompresses to more than 50000 bytes, the limit (a gzip bomb?)"},
		},
		{
			name:    "ratio limit",
			content: gzipBytes(t, "{\"a\":1}\n"+strings.Repeat(" ", 3<<20)+"\n{\"a\":2}\n"),
			opts:    Options{MaxCompressionRatio: 100},
			want: result{Rows: []row{{Line: 1, Record: rec("a", json.Number("1"))}},
				End: "line 2: the file decompresses to more than 100 times its compressed size, the limit (a gzip bomb?)"},
		},
		{
			name:    "no ratio limit by default",
			content: gzipBytes(t, "{\"a\":1}\n"+strings.Repeat(strings.Repeat(" ", 99)+"\n", 32000)+"{\"a\":2}\n"),
			want: result{Rows: []row{
				{Line: 1, Record: rec("a", json.Number("1"))},
				{Line: 32002, Record: rec("a", json.Number("2"))},
			}, End: "EOF"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := readAll(t, tc.content, "x.gz", tc.opts)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// A failing source is not a bad file: its error comes back wrapped, not as
// a *FileError, so the caller can retry.
func TestSourceErrors(t *testing.T) {
	errNet := errors.New("connection reset")
	jsonl := []byte(strings.Repeat("{\"a\":1}\n", 20000))
	tests := []struct {
		name    string
		content []byte
		file    string
	}{
		{"jsonl", jsonl, "x.jsonl"},
		{"json array", append([]byte("["), bytes.Repeat([]byte("{\"a\":1},"), 20000)...), "x.json"},
		{"csv", append([]byte("a,b\n"), bytes.Repeat([]byte("1,2\n"), 40000)...), "x.csv"},
		{"gzip", gzipBytes(t, string(jsonl)+strings.Repeat("{\"b\":2}\n", 100000)), "x.jsonl.gz"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := &failingReader{r: bytes.NewReader(tc.content[:len(tc.content)*3/4]), err: errNet}
			rd, err := Open(src, tc.file, Options{})
			if err != nil {
				t.Fatalf("Open() = %v", err)
			}
			for {
				it, err := rd.Next()
				if err == nil {
					if it.Err != nil {
						t.Fatalf("Next() row error %v, want records then the source's error", it.Err)
					}
					continue
				}
				var fe *FileError
				if !errors.Is(err, errNet) || errors.As(err, &fe) {
					t.Fatalf("Next() = %v, want the source's error, not a *FileError", err)
				}
				return
			}
		})
	}
	t.Run("open", func(t *testing.T) {
		_, err := Open(iotest.ErrReader(errNet), "x.csv", Options{})
		if !errors.Is(err, errNet) {
			t.Errorf("Open() = %v, want %v", err, errNet)
		}
	})
}

func TestStats(t *testing.T) {
	content := gzipBytes(t, "a,b\n1,2\n,\nx,y,z\n")
	rd, err := Open(bytes.NewReader(content), "s.csv.gz", Options{})
	if err != nil {
		t.Fatal(err)
	}
	drain(t, rd, false)
	want := Stats{Format: FormatCSV, Gzip: true, BytesRead: int64(len(content)), BytesDecompressed: 16, Records: 1, RowErrors: 1, BlankRows: 1}
	if diff := cmp.Diff(want, rd.Stats()); diff != "" {
		t.Errorf("Stats() mismatch (-want +got):\n%s", diff)
	}
}

// A 100 MB line is refused without buffering it, and reading goes on.
func TestHugeLine(t *testing.T) {
	const size = 100 << 20
	tests := []struct {
		name   string
		file   string
		src    func() io.Reader
		want   result
		minRaw int
	}{
		{
			name: "jsonl",
			file: "x.jsonl",
			src: func() io.Reader {
				return newRepeatReader("{\"a\":1}\n{\"big\":\"", 'x', size, "\"}\n{\"a\":2}\n")
			},
			want: result{Rows: []row{
				{Line: 1, Record: rec("a", json.Number("1"))},
				{Line: 2, Reason: fmt.Sprintf("the line is %d bytes long, over the %d-byte limit", size+11, DefaultMaxLineBytes)},
				{Line: 3, Record: rec("a", json.Number("2"))},
			}, End: "EOF"},
		},
		{
			name: "json array",
			file: "x.json",
			src: func() io.Reader {
				return newRepeatReader("[{\"a\":1},{\"big\":\"", 'x', size, "\"},{\"a\":2}]")
			},
			want: result{Rows: []row{
				{Line: 1, Record: rec("a", json.Number("1"))},
				{Line: 1, Reason: fmt.Sprintf("the array element is %d bytes long, over the %d-byte limit", size+10, DefaultMaxLineBytes)},
				{Line: 1, Record: rec("a", json.Number("2"))},
			}, End: "EOF"},
		},
		{
			name: "csv",
			file: "x.csv",
			src: func() io.Reader {
				return newRepeatReader("a,b\n1,2\n3,", 'x', size, "\n5,6\n")
			},
			want: result{Rows: []row{{Line: 2, Record: rec("a", json.Number("1"), "b", json.Number("2"))}},
				End: fmt.Sprintf("line 3: a CSV record is longer than the %d-byte limit (or a quoted field is never closed)", DefaultMaxLineBytes)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			peak := peakHeap(t, func() {
				rd, err := Open(tc.src(), tc.file, Options{})
				if err != nil {
					t.Fatal(err)
				}
				got := drain(t, rd, false)
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("mismatch (-want +got):\n%s", diff)
				}
			})
			if peak > 16<<20 {
				t.Errorf("peak heap %d MiB reading a %d MiB line, want under 16 MiB", peak>>20, size>>20)
			}
		})
	}
}

// peakHeap runs f and returns about the most heap it had in use beyond
// what was in use before, sampling every millisecond.
func peakHeap(t *testing.T, f func()) uint64 {
	t.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	stop := make(chan struct{})
	done := make(chan uint64)
	go func() {
		var peak uint64
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > base && ms.HeapAlloc-base > peak {
				peak = ms.HeapAlloc - base
			}
			select {
			case <-stop:
				done <- peak
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	f()
	close(stop)
	return <-done
}

// genReader yields n generated JSON lines (or CSV rows) without holding them.
type genReader struct {
	csv  bool
	n, i int
	buf  []byte
}

func (g *genReader) Read(p []byte) (int, error) {
	for len(g.buf) == 0 {
		if g.i == g.n {
			return 0, io.EOF
		}
		if g.csv {
			if g.i == 0 {
				g.buf = append(g.buf, "event,time,distinct_id,plan,amount\n"...)
			}
			g.buf = fmt.Appendf(g.buf, "Purchase,%d,user-%d,pro,%d.99\n", 1700000000+g.i, g.i%1000, g.i%100)
		} else {
			g.buf = fmt.Appendf(g.buf, `{"event":"Purchase","properties":{"time":%d,"distinct_id":"user-%d","plan":"pro","amount":%d.99}}`+"\n",
				1700000000+g.i, g.i%1000, g.i%100)
		}
		g.i++
	}
	n := copy(p, g.buf)
	g.buf = g.buf[n:]
	return n, nil
}

// Memory stays flat as files grow: the peak for a big file is about the
// peak for a small one.
func TestFlatMemory(t *testing.T) {
	small, big := 2000, 200000
	if testing.Short() {
		big = 50000
	}
	for _, csv := range []bool{false, true} {
		name := "x.jsonl"
		if csv {
			name = "x.csv"
		}
		t.Run(name, func(t *testing.T) {
			measure := func(n int) uint64 {
				return peakHeap(t, func() {
					rd, err := Open(&genReader{csv: csv, n: n}, name, Options{})
					if err != nil {
						t.Fatal(err)
					}
					got := 0
					for {
						it, err := rd.Next()
						if err == io.EOF {
							break
						}
						if err != nil || it.Err != nil {
							t.Fatalf("Next() = %v, %v", err, it.Err)
						}
						got++
					}
					if got != n {
						t.Fatalf("read %d records, want %d", got, n)
					}
				})
			}
			ps, pb := measure(small), measure(big)
			t.Logf("peak heap: %d KiB for %d records, %d KiB for %d", ps>>10, small, pb>>10, big)
			if pb > 8<<20 {
				t.Errorf("peak heap %d KiB for %d records, want under 8 MiB", pb>>10, big)
			}
		})
	}
}
