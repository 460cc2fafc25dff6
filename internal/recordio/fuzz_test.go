package recordio

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzOpen: arbitrary bytes, under every name and forced format, plain and
// gzipped, never panic, never loop, and only ever end in io.EOF or a
// *FileError; and resuming at the checkpoint halfway through yields
// exactly the rest of the uninterrupted read.
func FuzzOpen(f *testing.F) {
	for _, seed := range []string{
		"event,time\nA,1\n\"B\",\"2\"\n",
		"a,b\n1,\"x\ny\"\n3,\"oops\n",
		"a;b\n1;2\n",
		"{\"event\":\"A\",\"properties\":{\"time\":1}}\n{\"a\":}\n[1]\n",
		"[{\"a\":1},{\"b\":[1,{\"c\":\"]\\\"\"}]},2,,]",
		"[{\"a\":[1}]",
		"[\"\\",
		"\xef\xbb\xbf{\"a\":1}",
		"\x1f\x8b\x08\x00\x00\x00\x00\x00",
		"PK\x03\x04",
		"",
		" \n ",
		"\xff\xfe",
	} {
		f.Add([]byte(seed))
	}
	type variant struct {
		name string
		opts Options
	}
	var variants []variant
	for _, name := range []string{"x.csv", "x.json", "x.jsonl", "x.ndjson", "x.csv.gz", "x.json.gz", "x", "x.txt"} {
		variants = append(variants, variant{name, Options{}}, variant{name, Options{MaxLineBytes: 64}})
	}
	for _, format := range []Format{FormatCSV, FormatJSONLines, FormatJSONArray} {
		variants = append(variants, variant{"x", Options{Format: format, MaxLineBytes: 64}})
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 32<<10 {
			t.Skip("big inputs only make each run slow; the limits are exercised with MaxLineBytes: 64")
		}
		for _, gz := range []bool{false, true} {
			content := data
			if gz {
				content = gzipBytes(t, string(data))
			}
			for _, v := range variants {
				rd, err := Open(bytes.NewReader(content), v.name, v.opts)
				var fe *FileError
				if err != nil {
					if !errors.As(err, &fe) {
						t.Fatalf("Open(%q, %q) = %v, want a *FileError", content, v.name, err)
					}
					continue
				}
				var full result
				var points []Resume
				for i := 0; ; i++ {
					if i > len(data)+1 {
						t.Fatalf("Open(%q, %q): Next returned %d items without ending", content, v.name, i)
					}
					cp, ok := rd.Checkpoint()
					if !ok {
						t.Fatalf("Open(%q, %q): no checkpoint after %d items", content, v.name, i)
					}
					points = append(points, cp)
					it, err := rd.Next()
					if err != nil {
						if err != io.EOF && !errors.As(err, &fe) {
							t.Fatalf("Open(%q, %q): Next() = %v, want io.EOF or a *FileError", content, v.name, err)
						}
						full.End = endOf(t, err)
						break
					}
					if it.Line < 1 || (it.Err == nil) == (it.Record == nil) || len(it.Raw) > MaxRawBytes {
						t.Fatalf("Open(%q, %q): Next() = %+v: bad item", content, v.name, it)
					}
					r := row{Line: it.Line, Record: it.Record, Raw: string(it.Raw)}
					if it.Err != nil {
						r.Reason = it.Err.Error()
					}
					full.Rows = append(full.Rows, r)
				}
				k := len(full.Rows) / 2
				cp := points[k]
				src := content
				if !cp.Gzip {
					src = content[cp.Offset:]
				}
				rd, err = OpenAt(bytes.NewReader(src), v.name, v.opts, cp)
				if err != nil {
					t.Fatalf("Open(%q, %q): OpenAt(%+v) = %v", content, v.name, cp, err)
				}
				var rest result
				for {
					it, err := rd.Next()
					if err != nil {
						rest.End = endOf(t, err)
						break
					}
					r := row{Line: it.Line, Record: it.Record, Raw: string(it.Raw)}
					if it.Err != nil {
						r.Reason = it.Err.Error()
					}
					rest.Rows = append(rest.Rows, r)
				}
				want := result{Rows: full.Rows[k:], End: full.End}
				if len(want.Rows) == 0 {
					want.Rows = nil
				}
				if diff := cmp.Diff(want, rest); diff != "" {
					t.Fatalf("Open(%q, %q): resumed after %d items at %+v (-uninterrupted +resumed):\n%s", content, v.name, k, cp, diff)
				}
			}
		}
	})
}
