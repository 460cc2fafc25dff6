package mixpanel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"
)

// benchEvents returns n events of about 230 bytes, like a typical export line.
func benchEvents(n int) []json.RawMessage {
	out := make([]json.RawMessage, n)
	for i := range out {
		out[i] = json.RawMessage(fmt.Sprintf(`{"event":"Purchase","properties":{"time":%d,"distinct_id":"user-%d","$insert_id":"4f1c9c1e-%012d","plan":"pro","Amount":%d.5,"$browser":"Chrome","mp_lib":"web"}}`, 1764115200+i, i%5000, i, i%100))
	}
	return out
}

// BenchmarkImport sends 100,000 events through Import to a local server
// that reads (and discards) every gzipped body: the client's own cost of
// validating, batching and compressing, and of the HTTP round trips.
func BenchmarkImport(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"code":200,"status":"OK"}`)
	}))
	defer srv.Close()
	c, err := NewClient(testCreds, WithBaseURL(srv.URL))
	if err != nil {
		b.Fatal(err)
	}
	events := benchEvents(100_000)
	var size int64
	for _, e := range events {
		size += int64(len(e))
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		sum, err := c.Import(b.Context(), seq(1, events...), IngestOptions{})
		if err != nil || sum.Imported != int64(len(events)) {
			b.Fatalf("Import = %+v, %v", sum, err)
		}
	}
	b.ReportMetric(float64(len(events)*b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRecordReader decodes an export stream of 100,000 events.
func BenchmarkRecordReader(b *testing.B) {
	var buf bytes.Buffer
	for _, e := range benchEvents(100_000) {
		buf.Write(e)
		buf.WriteByte('\n')
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		rr := NewRecordReader(bytes.NewReader(data), 0)
		for {
			if _, err := rr.Next(); err != nil {
				if err != io.EOF {
					b.Fatal(err)
				}
				break
			}
		}
	}
	b.ReportMetric(float64(100_000*b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkImportPeakHeap streams 1,000,000 generated events (never held
// together) through Import with the default 10 batches in flight, and
// reports the peak heap in use, sampled every millisecond: it stays near
// the batches in flight, whatever the number of events.
func BenchmarkImportPeakHeap(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"code":200,"status":"OK"}`)
	}))
	defer srv.Close()
	c, err := NewClient(testCreds, WithBaseURL(srv.URL))
	if err != nil {
		b.Fatal(err)
	}
	const n = 1_000_000
	gen := func(yield func(Record, error) bool) {
		buf := make([]byte, 0, 512)
		for i := range n {
			buf = fmt.Appendf(buf[:0], `{"event":"Purchase","properties":{"time":%d,"distinct_id":"user-%d","$insert_id":"4f1c9c1e-%012d","plan":"pro","Amount":%d.5}}`, 1764115200+i, i%5000, i, i%100)
			if !yield(Record{Pos: int64(i + 1), Data: buf}, nil) {
				return
			}
		}
	}
	var peak uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	runtime.GC()
	go func() {
		defer close(done)
		var ms runtime.MemStats
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
		}
	}()
	for b.Loop() {
		sum, err := c.Import(b.Context(), gen, IngestOptions{})
		if err != nil || sum.Imported != n {
			b.Fatalf("Import = %+v, %v", sum, err)
		}
	}
	close(stop)
	<-done
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}
