package recordio

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// checkpointed is a full read of a file with the Reader's checkpoint
// before each item: Points[k] resumes after Rows[:k], and Blank[k] is the
// BlankRows count there.
type checkpointed struct {
	result
	Points []Resume
	Blank  []int64
	Total  int64 // BlankRows at the end
}

func readCheckpointed(t *testing.T, content []byte, name string, opts Options) checkpointed {
	t.Helper()
	rd, err := Open(bytes.NewReader(content), name, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	var c checkpointed
	for {
		res, ok := rd.Checkpoint()
		if !ok {
			t.Fatalf("Checkpoint after %d items: not ok", len(c.Rows))
		}
		c.Points = append(c.Points, res)
		c.Blank = append(c.Blank, rd.Stats().BlankRows)
		one := drainN(t, rd, 1)
		c.Rows = append(c.Rows, one.Rows...)
		if one.End != "" {
			c.End = one.End
			break
		}
	}
	if _, ok := rd.Checkpoint(); ok {
		t.Errorf("Checkpoint after %s: ok, want not ok", c.End)
	}
	c.Total = rd.Stats().BlankRows
	return c
}

// drainN reads up to n items (all when n < 0); End is set when the
// reader ended.
func drainN(t *testing.T, rd *Reader, n int) result {
	t.Helper()
	var res result
	for i := 0; n < 0 || i < n; i++ {
		it, err := rd.Next()
		if err != nil {
			res.End = endOf(t, err)
			return res
		}
		r := row{Line: it.Line, Record: it.Record, Raw: string(it.Raw)}
		if it.Err != nil {
			r.Reason = it.Err.(*RowError).Reason
		}
		res.Rows = append(res.Rows, r)
	}
	return res
}

// checkResume checks that resuming content at every checkpoint of an
// uninterrupted read yields exactly the rest of that read. gzipped says
// whether content is gzip data (then OpenAt gets the whole file, else the
// bytes from the offset on).
func checkResume(t *testing.T, content []byte, name string, opts Options, gzipped bool) {
	t.Helper()
	full := readCheckpointed(t, content, name, opts)
	for k, res := range full.Points {
		// Through JSON, as the importer's checkpoint stores it.
		b, err := json.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		var back Resume
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if back.Gzip != gzipped {
			t.Fatalf("checkpoint %d = %s: Gzip = %v, want %v", k, b, back.Gzip, gzipped)
		}
		src := content
		if !gzipped {
			src = content[back.Offset:]
		}
		rd, err := OpenAt(bytes.NewReader(src), name, opts, back)
		if err != nil {
			t.Fatalf("OpenAt(checkpoint %d = %s): %v", k, b, err)
		}
		got := drainN(t, rd, -1)
		want := result{Rows: full.Rows[k:], End: full.End}
		if len(want.Rows) == 0 {
			want.Rows = nil
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("resumed after %d items at %s (-uninterrupted +resumed):\n%s", k, b, diff)
		}
		if blank := full.Blank[k] + rd.Stats().BlankRows; blank != full.Total {
			t.Errorf("resumed after %d items: %d blank rows before + %d after, want %d in all", k, full.Blank[k], rd.Stats().BlankRows, full.Total)
		}
		if st := rd.Stats(); st.Format != full.Points[0].Format || st.Gzip != gzipped {
			t.Errorf("resumed Stats() = %+v, want format %s, gzip %v", st, full.Points[0].Format, gzipped)
		}
	}
}

// resumeCases are files with every feature a resume must carry over: a
// BOM, CRLF, quoted line breaks, blank rows and lines, rows that are
// rejected, lines over the limit, a last line without a line break, and
// files that end in a fatal error.
var resumeCases = []struct {
	name    string
	content string
	opts    Options
}{
	{"data.csv", "\xef\xbb\xbfevent ; time;note\r\n" +
		"A;1;\"two\r\nlines\"\r\n" +
		"\r\n" +
		";;\r\n" +
		"B;2;\"say \"\"hi\"\"\"\r\n" +
		"C;3;bad\"quote\r\n" +
		"D;4\r\n" +
		"E;5;\"x\"y\r\n" +
		"\n\n" +
		"F;true;\"multi\nline\n\"\n" +
		"G;007;last without a line break", Options{}},
	{"data.csv", "a,b\n1,2\n3,\"open\n4,5\n", Options{}},
	{"data.csv", "a,b\n1,2\n3," + strings.Repeat("x", 1500) + "\n5,6\n", Options{MaxLineBytes: 1000}},
	// Records over the limit by less than encoding/csv's read-ahead, and
	// by more, wherever reading starts.
	{"data.csv", "a,b\n" + strings.Repeat("1,2\n", 100) + "3," + strings.Repeat("x", 4500) + "\n" + strings.Repeat("5,6\n", 100) +
		"7," + strings.Repeat("y", 5500) + "\n9,9\n", Options{MaxLineBytes: 1000}},
	{"data.csv", "a,,c\n1,,3\n1,2,3\n,,\n", Options{Comma: ','}},
	{"data.jsonl", "\xef\xbb\xbf{\"a\":1}\n" +
		"{\"pad\":\"" + strings.Repeat("p", 70000) + "\"}\n" + // past the UTF-8 sniff and the read buffer
		"\n" +
		"  {\"b\":2}  \r\n" +
		"{\"c\":}\n" +
		"[1,2]\n" +
		"{\"long\":\"" + strings.Repeat("y", 200) + "\"}\n" +
		"\xff\xfe{}\n" +
		"{\"d\":4} {\"e\":5}\n" +
		"{\"f\":6}", Options{MaxLineBytes: 64}},
	{"data.jsonl", "{\"a\":1}\n{\"b\":2}\n\n\n", Options{}},
	{"data.json", "\xef\xbb\xbf[\n" +
		"  {\"a\":1},\n" +
		"  {\"b\":[1,{\"c\":\"]\\\"\"}]},\n" +
		"  42,,\n" +
		"  \"s\" , {\"long\":\"" + strings.Repeat("z", 200) + "\"},\n" +
		"  {\"d\":\n4}\n" +
		"]\n", Options{MaxLineBytes: 64}},
	{"data.json", "[{\"a\":1},{\"b\":2}] trailing", Options{}},
	{"data.json", "[{\"a\":1},{\"b\":2}", Options{}},
}

func TestResume(t *testing.T) {
	for _, tc := range resumeCases {
		t.Run(fmt.Sprintf("%s %.20q", tc.name, tc.content), func(t *testing.T) {
			checkResume(t, []byte(tc.content), tc.name, tc.opts, false)
			checkResume(t, gzipBytes(t, tc.content), tc.name+".gz", tc.opts, true)
		})
	}
}

// TestResumeRandom checks resumes of random files made of awkward rows.
func TestResumeRandom(t *testing.T) {
	// A first row of 9 KiB takes the invalid UTF-8 past the sniffed
	// window.
	csvPad := "P,0," + strings.Repeat("p", 9<<10) + "\n"
	csvRows := []string{
		"A,1,x", "J,8,\xff", "B,2,\"q,uoted\"", "C,3,\"line\nbreak\"", "D,4,\"crlf\r\nbreak\"", "", ",,", "E,5",
		"F,6,bad\"quote", "G,7,\"x\"y", "H,-0.5,TRUE", "I,\"" + strings.Repeat("w", 300) + "\",z", "\r",
	}
	jsonPad := `{"pad":"` + strings.Repeat("p", 70000) + `"}` + "\n" // over the limit and the read buffer
	jsonRows := []string{
		`{"a":1}`, `{"b":"x\ny"}`, "", "  ", `{"c":}`, `[1]`, `{"long":"` + strings.Repeat("v", 300) + `"}`,
		"\xff", `{"d":1}{"e":2}`, "{\"f\":\"\xe2\x82\xac\"}",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	build := func(header string, rows []string, crlf bool) string {
		var b strings.Builder
		if rng.IntN(3) == 0 {
			b.Write(utf8BOM)
		}
		b.WriteString(header)
		for range 5 + rng.IntN(30) {
			b.WriteString(rows[rng.IntN(len(rows))])
			if crlf && rng.IntN(2) == 0 {
				b.WriteString("\r\n")
			} else {
				b.WriteString("\n")
			}
		}
		s := b.String()
		if rng.IntN(3) == 0 {
			s = strings.TrimRight(s, "\r\n") // no line break at the end
		}
		return s
	}
	for i := range 40 {
		csv := build("event,n,note\n"+csvPad, csvRows, true)
		jsonl := build(jsonPad, jsonRows, true)
		for _, f := range []struct {
			name, content string
			opts          Options
		}{
			{"x.csv", csv, Options{MaxLineBytes: 10 << 10}},
			{"x.jsonl", jsonl, Options{MaxLineBytes: 256}},
		} {
			t.Run(fmt.Sprintf("%d/%s", i, f.name), func(t *testing.T) {
				checkResume(t, []byte(f.content), f.name, f.opts, false)
				checkResume(t, gzipBytes(t, f.content), f.name, f.opts, true)
			})
		}
	}
}

func TestOpenAtRefuses(t *testing.T) {
	csvRes := Resume{Format: FormatCSV, Offset: 4, Line: 1, Header: []string{"a"}, Comma: ','}
	tests := []struct {
		name    string
		content []byte
		res     Resume
		want    string
	}{
		{"gzip offset past the end", gzipBytes(t, "{}\n"), Resume{Format: FormatJSONLines, Gzip: true, Offset: 10}, "ends at byte 3, before the resume offset 10"},
		{"not gzip any more", []byte("{}\n"), Resume{Format: FormatJSONLines, Gzip: true, Offset: 1}, "no longer gzip"},
		{"CSV without its header", []byte("1\n"), Resume{Format: FormatCSV, Offset: 4, Comma: ','}, "header"},
		{"unknown format", []byte("1\n"), Resume{Format: "xml", Offset: 4}, "unknown format"},
		{"negative offset", []byte("1\n"), Resume{Format: FormatJSONLines, Offset: -1}, "negative"},
		{"source failure", nil, func() Resume { r := csvRes; r.Gzip = true; return r }(), "boom"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r io.Reader = bytes.NewReader(tc.content)
			if tc.content == nil {
				r = &failingReader{r: bytes.NewReader(nil), err: fmt.Errorf("boom")}
			}
			_, err := OpenAt(r, "x", Options{}, tc.res)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("OpenAt = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestCheckpointAtStart: before the first item, a JSON array can only be
// resumed from the start of the file, and OpenAt then reads it as Open
// does (with the checkpoint's format).
func TestCheckpointAtStart(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		want          Resume
	}{
		{"a.json", "  [\n{\"a\":1}]", Resume{Format: FormatJSONArray}},
		{"a.jsonl", "{\"a\":1}\n", Resume{Format: FormatJSONLines}},
		{"a.jsonl", "\xef\xbb\xbf{\"a\":1}\n", Resume{Format: FormatJSONLines, Offset: 3}},
		{"a.csv", "a;b\r\n1;2\n", Resume{Format: FormatCSV, Offset: 5, Line: 1, Header: []string{"a", "b"}, Comma: ';'}},
	} {
		rd, err := Open(strings.NewReader(tc.content), tc.name, Options{})
		if err != nil {
			t.Fatal(err)
		}
		got, ok := rd.Checkpoint()
		if !ok {
			t.Fatalf("%s: Checkpoint not ok", tc.name)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s %q: Checkpoint() (-want +got):\n%s", tc.name, tc.content, diff)
		}
	}
}
