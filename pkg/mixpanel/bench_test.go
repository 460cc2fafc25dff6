package mixpanel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
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
