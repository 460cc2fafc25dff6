package recordio

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzOpen: arbitrary bytes, under every name and forced format, plain and
// gzipped, never panic, never loop, and only ever end in io.EOF or a
// *FileError.
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
				for i := 0; ; i++ {
					if i > len(data)+1 {
						t.Fatalf("Open(%q, %q): Next returned %d items without ending", content, v.name, i)
					}
					it, err := rd.Next()
					if err != nil {
						if err != io.EOF && !errors.As(err, &fe) {
							t.Fatalf("Open(%q, %q): Next() = %v, want io.EOF or a *FileError", content, v.name, err)
						}
						break
					}
					if it.Line < 1 || (it.Err == nil) == (it.Record == nil) || len(it.Raw) > MaxRawBytes {
						t.Fatalf("Open(%q, %q): Next() = %+v: bad item", content, v.name, it)
					}
				}
			}
		}
	})
}
