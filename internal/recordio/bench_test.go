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
