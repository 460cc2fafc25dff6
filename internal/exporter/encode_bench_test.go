package exporter

import (
	"bytes"
	stdgzip "compress/gzip"
	"crypto/sha256"
	"io"
	"runtime"
	"testing"
	"time"

	kgzip "github.com/klauspost/compress/gzip"

	"github.com/cebulk/cebulk/internal/cetest"
)

// encodeBenchSize is the JSON lines BenchmarkEncode encodes.
const encodeBenchSize = 200 << 20

// sampleJSONL returns size bytes (about) of sample activities of one day as
// JSON lines, and the day.
func sampleJSONL(tb testing.TB, size int64) ([]byte, time.Time) {
	tb.Helper()
	day := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	buf.Grow(int(size) + 1<<20)
	cetest.SampleActivitiesBytes(1, size, day, day.AddDate(0, 0, 1)).Records(func(r cetest.Record) bool {
		buf.Write(r.JSON)
		buf.WriteByte('\n')
		return true
	})
	return buf.Bytes(), day
}

// hashWriter hashes what it is given and discards it, counting the bytes.
type hashWriter struct {
	h interface{ Write([]byte) (int, error) }
	n int64
}

func (w *hashWriter) Write(p []byte) (int, error) {
	w.h.Write(p)
	w.n += int64(len(p))
	return len(p), nil
}

// BenchmarkEncode measures the export encoder (framing, window filter, gzip
// members, SHA-256) over 200 MiB of activities in memory, output
// discarded, beside the baseline in the same run: the standard library's
// gzip at level 1 plus SHA-256 of its output, over the same bytes.
// x-gzip-copy is the encoder's throughput over the baseline's (goal ≥ 1).
func BenchmarkEncode(b *testing.B) {
	data, day := sampleJSONL(b, encodeBenchSize)
	baseline := func() (time.Duration, int64) {
		t0 := time.Now()
		hw := &hashWriter{h: sha256.New()}
		zw, _ := stdgzip.NewWriterLevel(hw, stdgzip.BestSpeed)
		if _, err := zw.Write(data); err != nil {
			b.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0), hw.n
	}
	encode := func() (time.Duration, int64) {
		t0 := time.Now()
		enc := &encoder{from: day, to: day.AddDate(0, 0, 1), sum: sha256.New()}
		if err := enc.encode(bytes.NewReader(data), io.Discard); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0), enc.bytes
	}
	var baseT, encT time.Duration
	var baseN, encN int64
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		t, n := baseline()
		baseT, baseN = baseT+t, n
		t, n = encode()
		encT, encN = encT+t, n
	}
	mb := func(t time.Duration) float64 { return float64(len(data)) * float64(b.N) / 1e6 / t.Seconds() }
	b.ReportMetric(mb(encT), "encode-MB/s")
	b.ReportMetric(mb(baseT), "gzip1-sha256-MB/s")
	b.ReportMetric(mb(encT)/mb(baseT), "x-gzip-copy")
	b.Logf("GOMAXPROCS=%d: encoder %.0f MB/s (%.2fx smaller), stdlib gzip-1 + SHA-256 %.0f MB/s (%.2fx smaller): %.2fx",
		runtime.GOMAXPROCS(0), mb(encT), float64(len(data))/float64(encN), mb(baseT), float64(len(data))/float64(baseN), mb(encT)/mb(baseT))
}

// BenchmarkGzipLevels compares the compressors the encoder could use on the
// same sample activities (single-threaded): MB/s of input and the ratio.
func BenchmarkGzipLevels(b *testing.B) {
	data, _ := sampleJSONL(b, 64<<20)
	type zw = io.WriteCloser
	cases := []struct {
		name string
		new  func(w io.Writer) zw
	}{
		{"stdlib-1", func(w io.Writer) zw { z, _ := stdgzip.NewWriterLevel(w, 1); return z }},
		{"stdlib-6", func(w io.Writer) zw { z, _ := stdgzip.NewWriterLevel(w, 6); return z }},
		{"klauspost-1", func(w io.Writer) zw { z, _ := kgzip.NewWriterLevel(w, 1); return z }},
		{"klauspost-2", func(w io.Writer) zw { z, _ := kgzip.NewWriterLevel(w, 2); return z }},
		{"klauspost-3", func(w io.Writer) zw { z, _ := kgzip.NewWriterLevel(w, 3); return z }},
		{"klauspost-6", func(w io.Writer) zw { z, _ := kgzip.NewWriterLevel(w, 6); return z }},
		{"klauspost-huffman", func(w io.Writer) zw { z, _ := kgzip.NewWriterLevel(w, kgzip.HuffmanOnly); return z }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			var n int64
			for range b.N {
				hw := &hashWriter{h: io.Discard}
				z := c.new(hw)
				if _, err := z.Write(data); err != nil {
					b.Fatal(err)
				}
				if err := z.Close(); err != nil {
					b.Fatal(err)
				}
				n = hw.n
			}
			b.ReportMetric(float64(len(data))/float64(n), "ratio")
		})
	}
}

// TestEncoderMembersMatchOneStream checks that the parallel encoder's
// output (concatenated gzip members) decompresses to the records, in
// order, whatever the number of workers.
func TestEncoderMembersMatchOneStream(t *testing.T) {
	data, day := sampleJSONL(t, 6<<20)
	var want []byte
	for _, workers := range []int{1, 3} {
		var out bytes.Buffer
		enc := &encoder{from: day, to: day.AddDate(0, 0, 1), workers: workers, sum: sha256.New()}
		if err := enc.encode(bytes.NewReader(data), &out); err != nil {
			t.Fatal(err)
		}
		zr, err := stdgzip.NewReader(&out)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		if want == nil {
			want = got
			if !bytes.Equal(got, data) {
				t.Fatalf("workers=%d: %d bytes out, want the %d bytes in", workers, len(got), len(data))
			}
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("workers=%d: output differs from workers=1", workers)
		}
	}
}
