package recordio

import (
	"bytes"
	"io"
	"testing"
)

const benchRecords = 100000

func generate(tb testing.TB, csv bool, n int) []byte {
	tb.Helper()
	b, err := io.ReadAll(&genReader{csv: csv, n: n})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// benchmarkRead reads content as name b.N times and reports records/s.
func benchmarkRead(b *testing.B, content []byte, name string) {
	b.SetBytes(int64(len(content)))
	b.ReportAllocs()
	records := 0
	for b.Loop() {
		rd, err := Open(bytes.NewReader(content), name, Options{})
		if err != nil {
			b.Fatal(err)
		}
		for {
			it, err := rd.Next()
			if err == io.EOF {
				break
			}
			if err != nil || it.Err != nil {
				b.Fatalf("Next() = %v, %v", err, it.Err)
			}
			records++
		}
	}
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkJSONL(b *testing.B) {
	benchmarkRead(b, generate(b, false, benchRecords), "bench.jsonl")
}

func BenchmarkJSONLGzip(b *testing.B) {
	benchmarkRead(b, gzipBytes(b, string(generate(b, false, benchRecords))), "bench.jsonl.gz")
}

func BenchmarkJSONArray(b *testing.B) {
	lines := bytes.Split(bytes.TrimSpace(generate(b, false, benchRecords)), []byte{'\n'})
	content := append(append([]byte("[\n"), bytes.Join(lines, []byte(",\n"))...), "\n]\n"...)
	benchmarkRead(b, content, "bench.json")
}

func BenchmarkCSV(b *testing.B) {
	benchmarkRead(b, generate(b, true, benchRecords), "bench.csv")
}

// BenchmarkResume measures what it costs to get back to the last record
// of a file of benchRecords records before reading on: decoding and
// dropping the records before it ("skip"), decompressing and dropping the
// content before it (gzip), or nothing (a plain file read from the
// offset, as an HTTP range delivers it). ns/op is the cost of one resume
// at record benchRecords.
func BenchmarkResume(b *testing.B) {
	for _, format := range []string{"jsonl", "csv"} {
		name := "bench." + format
		plain := generate(b, format == "csv", benchRecords)
		gz := gzipBytes(b, string(plain))
		// The checkpoint before the last record.
		rd, err := Open(bytes.NewReader(plain), name, Options{})
		if err != nil {
			b.Fatal(err)
		}
		for range benchRecords - 1 {
			if _, err := rd.Next(); err != nil {
				b.Fatal(err)
			}
		}
		at, _ := rd.Checkpoint()
		gzAt := at
		gzAt.Gzip = true

		last := func(b *testing.B, rd *Reader) {
			it, err := rd.Next()
			if err != nil || it.Err != nil || it.Record == nil {
				b.Fatalf("Next() = %+v, %v; want the last record", it, err)
			}
			if _, err := rd.Next(); err != io.EOF {
				b.Fatalf("Next() after the last record = %v, want io.EOF", err)
			}
		}
		b.Run(format+"/skip", func(b *testing.B) {
			for b.Loop() {
				rd, err := Open(bytes.NewReader(plain), name, Options{})
				if err != nil {
					b.Fatal(err)
				}
				for range benchRecords - 1 {
					if _, err := rd.Next(); err != nil {
						b.Fatal(err)
					}
				}
				last(b, rd)
			}
		})
		b.Run(format+"/gzip-skip", func(b *testing.B) {
			for b.Loop() {
				rd, err := Open(bytes.NewReader(gz), name, Options{})
				if err != nil {
					b.Fatal(err)
				}
				for range benchRecords - 1 {
					if _, err := rd.Next(); err != nil {
						b.Fatal(err)
					}
				}
				last(b, rd)
			}
		})
		b.Run(format+"/gzip-offset", func(b *testing.B) {
			for b.Loop() {
				rd, err := OpenAt(bytes.NewReader(gz), name, Options{}, gzAt)
				if err != nil {
					b.Fatal(err)
				}
				last(b, rd)
			}
		})
		b.Run(format+"/offset", func(b *testing.B) {
			for b.Loop() {
				rd, err := OpenAt(bytes.NewReader(plain[at.Offset:]), name, Options{}, at)
				if err != nil {
					b.Fatal(err)
				}
				last(b, rd)
			}
		})
	}
}
