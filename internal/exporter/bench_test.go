package exporter

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/internal/s3stream"
	"github.com/cebulk/cebulk/pkg/ce"
)

// The benchmarks need the local stack (make bench). They compare the whole
// export of one day (Collect: ledger take, CE status, download, decode,
// window filter, gzip, SHA-256, multipart upload, manifest, _SUCCESS,
// ledger, watermark) with a baseline measured in the same run: the same
// bytes from the same emulator copied into the same S3 with nothing in
// between (ce.Download straight into s3stream.Put).
//
// Reported per size: MB/s (of the CE download), peak-heap-MiB (the most
// heap in use above what was live before, sampled every 2ms), and for the
// export the ratios to the baseline of the same size.

var benchSizes = []struct {
	name string
	size int64
}{
	{"10MiB", 10 << 20},
	{"100MiB", 100 << 20},
	{"1GiB", 1 << 30},
}

type benchResult struct {
	seconds float64
	peak    uint64
}

type benchEnv struct {
	*env
	from, to time.Time
	records  int64
}

func newBenchEnv(b *testing.B, size int64) *benchEnv {
	b.Helper()
	e := newEnv(b, cetest.Options{DownloadFormat: "jsonl"}, Config{})
	// The production client: default retries, no test shortcuts.
	client, err := ce.NewClient(cetest.BaseURL(e.srv), ce.Credentials{
		UserSecret: cetest.DefaultUserSecret, OrganizationSecret: cetest.DefaultOrgSecret, ElementToken: cetest.DefaultElementToken,
	})
	if err != nil {
		b.Fatal(err)
	}
	e.client = client
	day := dayStart(e.day(-2))
	g := cetest.SampleActivitiesBytes(1, size, day, day.AddDate(0, 0, 1))
	e.fake.SeedGenerated(ObjectActivities, g)
	return &benchEnv{env: e, from: day, to: day.AddDate(0, 0, 1), records: g.Count(time.Time{}, time.Time{})}
}

// heapPeak samples the heap in use until stop, and reports the most seen
// above the heap live at the start.
type heapPeak struct {
	base uint64
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

// readHeap returns the bytes of heap objects, live or not yet swept.
func readHeap() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func startHeapPeak() *heapPeak {
	runtime.GC()
	h := &heapPeak{base: readHeap(), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			if v := readHeap(); v > h.peak.Load() {
				h.peak.Store(v)
			}
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

func (h *heapPeak) Stop() uint64 {
	close(h.stop)
	<-h.done
	if p := h.peak.Load(); p > h.base {
		return p - h.base
	}
	return 0
}

func (r benchResult) mbps(size int64) float64 { return float64(size) / 1e6 / r.seconds }

func report(b *testing.B, size int64, r benchResult) {
	b.SetBytes(size)
	b.ReportMetric(float64(r.peak)/(1<<20), "peak-heap-MiB")
}

// BenchmarkExport measures the export of each size, and right before it,
// in the same emulator and bucket, the baseline copy the ratios compare it
// with (so that both see the same machine and the same moto).
func BenchmarkExport(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			be := newBenchEnv(b, s.size)
			base := be.baseline(b)
			r := be.export(b) // resets the timer: ns/op is the export's
			report(b, s.size, r)
			thr := r.mbps(s.size) / base.mbps(s.size)
			mem := float64(r.peak) / float64(max(base.peak, 1))
			b.ReportMetric(thr, "throughput-x-baseline")
			b.ReportMetric(mem, "peak-heap-x-baseline")
			b.Logf("%s: export %.1f MB/s, peak heap %.1f MiB; baseline copy %.1f MB/s, peak heap %.1f MiB; export/baseline: throughput %.2fx, peak heap %.2fx",
				s.name, r.mbps(s.size), float64(r.peak)/(1<<20), base.mbps(s.size), float64(base.peak)/(1<<20), thr, mem)
		})
	}
}

// BenchmarkBaselineCopy measures the baseline alone: the CE download copied
// into S3 with nothing in between.
func BenchmarkBaselineCopy(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			r := newBenchEnv(b, s.size).baseline(b)
			report(b, s.size, r)
		})
	}
}

// baseline copies the CE download into S3 b.N times; it returns the mean
// time and the largest peak.
func (be *benchEnv) baseline(b *testing.B) benchResult {
	ctx := context.Background()
	var total time.Duration
	var peak uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		job, err := be.client.StartQuery(ctx, ce.QueryRequest{Object: ObjectActivities, From: be.from, To: be.to})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := be.client.Wait(ctx, job.ID); err != nil {
			b.Fatal(err)
		}
		key := fmt.Sprintf("baseline/%s.json", job.ID)
		b.StartTimer()
		h := startHeapPeak()
		t0 := time.Now()
		body, err := be.client.Download(ctx, job.ID, ObjectActivities)
		if err != nil {
			b.Fatal(err)
		}
		_, err = be.s3.Put(ctx, be.bucket, key, body, s3stream.PutOptions{})
		body.Close()
		total += time.Since(t0)
		peak = max(peak, h.Stop())
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if err := be.s3.Delete(ctx, be.bucket, key); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	return benchResult{seconds: total.Seconds() / float64(b.N), peak: peak}
}

// export runs the whole export of the day b.N times (a backfill of that
// day, then its collect).
func (be *benchEnv) export(b *testing.B) benchResult {
	ctx := context.Background()
	ex := be.exporter(nil, nil)
	day := be.from.Format(dayLayout)
	var total time.Duration
	var peak uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		run, err := ex.Run(ctx, RunRequest{From: day, To: be.to.Format(dayLayout)})
		if err != nil || len(run.Started) != 1 || run.Started[0].CEJobID == "" {
			b.Fatalf("Run = %+v, %v", run, err)
		}
		b.StartTimer()
		h := startHeapPeak()
		t0 := time.Now()
		res, err := ex.Collect(ctx, run.Started[0].JobID)
		total += time.Since(t0)
		peak = max(peak, h.Stop())
		b.StopTimer()
		if err != nil || res.Outcome != OutcomeCollected || res.Records != be.records {
			b.Fatalf("Collect = %+v, %v; want %d records collected", res, err, be.records)
		}
		if i == 0 {
			b.Logf("%d records, part %.1f MiB", res.Records, float64(res.Bytes)/(1<<20))
		}
		for _, k := range be.keys(b, "exports/") {
			_ = be.s3.Delete(ctx, be.bucket, k)
		}
		b.StartTimer()
	}
	return benchResult{seconds: total.Seconds() / float64(b.N), peak: peak}
}

// memParts is an S3 whose multipart uploads are counted and dropped, so
// that an export's figure shows the pipeline's cost rather than moto's;
// everything else (ledger, manifest) goes to the wrapped store.
type memParts struct {
	ObjectStore
	bytes atomic.Int64
}

func (m *memParts) CreateMultipart(context.Context, string, string, s3stream.PutOptions) (string, error) {
	return "in-memory", nil
}

func (m *memParts) UploadPart(_ context.Context, _, _, _ string, n int32, data []byte) (s3stream.Part, error) {
	m.bytes.Add(int64(len(data)))
	return s3stream.Part{Number: n, ETag: fmt.Sprintf(`"%d"`, n), Size: int64(len(data))}, nil
}

func (m *memParts) CompleteMultipart(context.Context, string, string, string, []s3stream.Part) (string, error) {
	return `"complete"`, nil
}

func (m *memParts) AbortMultipart(context.Context, string, string, string) error { return nil }

// BenchmarkExportMemSink is BenchmarkExport with the part uploads dropped
// in memory, beside the same run's baseline: the CE download read into
// io.Discard (the emulator's and HTTP's own cost).
func BenchmarkExportMemSink(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			be := newBenchEnv(b, s.size)
			ctx := context.Background()
			// Baseline: download only.
			job, err := be.client.StartQuery(ctx, ce.QueryRequest{Object: ObjectActivities, From: be.from, To: be.to})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := be.client.Wait(ctx, job.ID); err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			body, err := be.client.Download(ctx, job.ID, ObjectActivities)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, body); err != nil {
				b.Fatal(err)
			}
			body.Close()
			base := benchResult{seconds: time.Since(t0).Seconds()}

			sink := &memParts{ObjectStore: be.s3}
			ex := be.exporter(nil, sink)
			day := be.from.Format(dayLayout)
			var total time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				run, err := ex.Run(ctx, RunRequest{From: day, To: be.to.Format(dayLayout)})
				if err != nil || len(run.Started) != 1 {
					b.Fatalf("Run = %+v, %v", run, err)
				}
				b.StartTimer()
				t0 := time.Now()
				res, err := ex.Collect(ctx, run.Started[0].JobID)
				total += time.Since(t0)
				if err != nil || res.Outcome != OutcomeCollected || res.Records != be.records {
					b.Fatalf("Collect = %+v, %v", res, err)
				}
			}
			r := benchResult{seconds: total.Seconds() / float64(b.N)}
			b.SetBytes(s.size)
			b.ReportMetric(r.mbps(s.size), "export-MB/s")
			b.ReportMetric(base.mbps(s.size), "download-only-MB/s")
			b.ReportMetric(r.mbps(s.size)/base.mbps(s.size), "x-download")
			b.Logf("%s: export to an in-memory sink %.1f MB/s; the download alone %.1f MB/s (%.2fx), GOMAXPROCS=%d",
				s.name, r.mbps(s.size), base.mbps(s.size), r.mbps(s.size)/base.mbps(s.size), runtime.GOMAXPROCS(0))
		})
	}
}
