package importer_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cebulk/cebulk/internal/awstest"
	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/internal/importer"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/s3stream"
	"github.com/cebulk/cebulk/pkg/ce"
)

// Benchmarks (make bench runs them with -benchtime 1x):
//
//   - BenchmarkValidate: validate + normalise 1e6 activities and users, CSV
//     and JSON lines, through the real pipeline as a dry run (no CE, S3 in
//     memory, the file read from local disk): records/s.
//   - BenchmarkImport and BenchmarkBaselineStream: the same object in moto S3
//     sent to the same CE emulator endpoint, by the importer (validate,
//     chunk, ledger, reports) and by a plain stream of the bytes
//     (GetObject -> ce.Upload), at 10 MiB and 100 MiB (1 GiB with
//     CEBULK_BENCH_LARGE=1): MB/s, records/s and peak heap, sampled from
//     runtime/metrics.
//
// Generated files are kept in CEBULK_BENCH_DIR when it is set (so
// scripts/bench-peer/run.sh can feed the same bytes to mixpanel-import),
// else in a temporary directory removed at the end.

const benchRecords = 1_000_000

// benchFrom and benchTo bound the generated events' times.
var (
	benchFrom = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	benchTo   = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
)

var (
	benchDirOnce sync.Once
	benchDir     string
	benchFiles   sync.Map // path -> *sync.Once
)

func benchDirectory(b *testing.B) string {
	benchDirOnce.Do(func() {
		if d := os.Getenv("CEBULK_BENCH_DIR"); d != "" {
			benchDir = d
			_ = os.MkdirAll(d, 0o755)
			return
		}
		d, err := os.MkdirTemp("", "cebulk-bench-")
		if err != nil {
			panic(err)
		}
		benchDir = d
	})
	return benchDir
}

// TestMain removes the generated benchmark files.
func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" && os.Getenv("CEBULK_BENCH_DIR") == "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// benchFile returns the path of a generated file of n records of object in
// format ("jsonl" or "csv"), creating it on first use.
func benchFile(b *testing.B, object, format string, n int) string {
	b.Helper()
	path := filepath.Join(benchDirectory(b), fmt.Sprintf("%s-%d.%s", object, n, format))
	once, _ := benchFiles.LoadOrStore(path, new(sync.Once))
	var err error
	once.(*sync.Once).Do(func() {
		if _, serr := os.Stat(path); serr == nil {
			return
		}
		err = writeBenchFile(path, object, format, n)
	})
	if err != nil {
		b.Fatal(err)
	}
	return path
}

var (
	activityColumns = []string{"event", "time", "distinct_id", "$insert_id", "mp_processing_time_ms", "$browser",
		"$browser_version", "$os", "$device_id", "$city", "$region", "mp_country_code", "$timezone", "mp_lib", "plan",
		"$current_url", "query", "amount", "currency"}
	userColumns = []string{"$distinct_id", "$email", "$name", "$first_name", "$last_name", "$city", "$region",
		"$country_code", "$timezone", "$created", "$last_seen", "plan", "credits"}
)

// writeBenchFile writes the emulator's sample records: events as Mixpanel
// exports them, profiles as profile updates ($set).
func writeBenchFile(path, object, format string, n int) error {
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	var gen cetest.Generator
	columns := activityColumns
	if object == "activities" {
		gen = cetest.SampleActivities(1, n, benchFrom, benchTo)
	} else {
		gen = cetest.SampleUsers(1, n)
		columns = userColumns
	}
	var cw *csv.Writer
	if format == "csv" {
		cw = csv.NewWriter(w)
		if err := cw.Write(columns); err != nil {
			return err
		}
	}
	row := make([]string, len(columns))
	gen.Records(func(r cetest.Record) bool {
		line := r.JSON
		if object == "users" {
			line = bytes.Replace(line, []byte(`"$properties":`), []byte(`"$set":`), 1)
		}
		if cw == nil {
			_, err = w.Write(append(line, '\n'))
			return err == nil
		}
		var rec map[string]any
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		if err = dec.Decode(&rec); err != nil {
			return false
		}
		flat := map[string]any{}
		for k, v := range rec {
			if m, ok := v.(map[string]any); ok {
				for k2, v2 := range m {
					flat[k2] = v2
				}
			} else {
				flat[k] = v
			}
		}
		for i, c := range columns {
			row[i] = ""
			if v, ok := flat[c]; ok {
				row[i] = fmt.Sprint(v)
			}
		}
		err = cw.Write(row)
		return err == nil
	})
	if err != nil {
		return err
	}
	if cw != nil {
		cw.Flush()
		if err := cw.Error(); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// fileStore serves source objects from local files; everything else is in
// memory.
type fileStore struct {
	*memStore
	files map[string]string // key -> path
}

func (f fileStore) Open(ctx context.Context, bucket, key string) (io.ReadCloser, s3stream.ObjectInfo, error) {
	path, ok := f.files[key]
	if !ok {
		return f.memStore.Open(ctx, bucket, key)
	}
	file, err := os.Open(path)
	if err != nil {
		return nil, s3stream.ObjectInfo{}, err
	}
	st, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, s3stream.ObjectInfo{}, err
	}
	return file, s3stream.ObjectInfo{Key: key, Size: st.Size(), ETag: "bench"}, nil
}

func (f fileStore) OpenRange(ctx context.Context, bucket, key string, offset int64, etag string) (io.ReadCloser, s3stream.ObjectInfo, error) {
	if _, ok := f.files[key]; !ok {
		return f.memStore.OpenRange(ctx, bucket, key, offset, etag)
	}
	rc, info, err := f.Open(ctx, bucket, key)
	if err != nil {
		return nil, info, err
	}
	if _, err := rc.(*os.File).Seek(offset, io.SeekStart); err != nil {
		rc.Close()
		return nil, info, err
	}
	return rc, info, nil
}

func BenchmarkValidate(b *testing.B) {
	for _, object := range []string{"activities", "users"} {
		for _, format := range []string{"csv", "jsonl"} {
			b.Run(object+"/"+format, func(b *testing.B) {
				path := benchFile(b, object, format, benchRecords)
				st, err := os.Stat(path)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(st.Size())
				b.ResetTimer()
				var elapsed time.Duration
				var peak uint64
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					key := fmt.Sprintf("imports/%s/dry-run/bench-%d.%s", object, i, format)
					mem := newMemStore()
					fs := fileStore{memStore: mem, files: map[string]string{key: path}}
					imp := importer.New(importer.Config{Bucket: bucket}, nil, fs, ledger.New(fs, bucket), nil, nil)
					stop := heapPeak()
					b.StartTimer()
					start := time.Now()
					res, err := imp.HandleObject(context.Background(), bucket, key, "bench", st.Size())
					elapsed += time.Since(start)
					b.StopTimer()
					peak = max(peak, stop())
					b.StartTimer()
					if err != nil {
						b.Fatal(err)
					}
					if res.Valid != benchRecords || res.Rejected != 0 {
						b.Fatalf("dry run = %+v, want %d valid records", res, benchRecords)
					}
				}
				b.ReportMetric(float64(benchRecords)*float64(b.N)/elapsed.Seconds(), "records/s")
				b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			})
		}
	}
}

// benchSizes are the end-to-end sizes; 1 GiB only with CEBULK_BENCH_LARGE=1.
func benchSizes() []int64 {
	sizes := []int64{10 << 20, 100 << 20}
	if os.Getenv("CEBULK_BENCH_LARGE") != "" {
		sizes = append(sizes, 1<<30)
	}
	return sizes
}

func sizeName(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%dGiB", n>>30)
	}
	return fmt.Sprintf("%dMiB", n>>20)
}

// benchStack is moto S3 plus a CE emulator that validates and counts
// uploads without keeping them.
type benchStack struct {
	s3     *s3.Client
	store  *s3stream.Store
	bucket string
	fake   *cetest.Fake
	ce     *ce.Client
	mu     sync.Mutex
	source map[int64]benchSource
}

type benchSource struct {
	key     string
	size    int64
	records int64
}

var (
	stackOnce sync.Once
	stack     *benchStack
)

func benchEnv(b *testing.B) *benchStack {
	b.Helper()
	awstest.Endpoint(b)
	stackOnce.Do(func() {
		c := awstest.S3(b)
		name := awstest.UniqueName("cebulk-bench")
		if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &name}); err != nil {
			b.Fatal(err)
		}
		fake := cetest.NewFake(cetest.Options{DiscardUploads: true})
		srv := httptest.NewServer(fake) // lives as long as the test binary
		cl, err := ce.NewClient(cetest.BaseURL(srv), ce.Credentials{
			UserSecret: cetest.DefaultUserSecret, OrganizationSecret: cetest.DefaultOrgSecret, ElementToken: cetest.DefaultElementToken,
		})
		if err != nil {
			b.Fatal(err)
		}
		stack = &benchStack{s3: c, store: s3stream.New(c), bucket: name, fake: fake, ce: cl, source: map[int64]benchSource{}}
	})
	if stack == nil {
		b.Fatal("benchmark stack failed to start")
	}
	return stack
}

// sourceOf uploads (once) a JSON lines file of about size bytes of events.
func (s *benchStack) sourceOf(b *testing.B, size int64) benchSource {
	b.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if src, ok := s.source[size]; ok {
		return src
	}
	gen := cetest.SampleActivitiesBytes(2, size, benchFrom, benchTo)
	pr, pw := io.Pipe()
	var records atomic.Int64
	go func() {
		w := bufio.NewWriterSize(pw, 1<<20)
		gen.Records(func(r cetest.Record) bool {
			records.Add(1)
			_, err := w.Write(append(r.JSON, '\n'))
			return err == nil
		})
		pw.CloseWithError(w.Flush())
	}()
	key := "bench/source-" + sizeName(size) + ".jsonl"
	cr := &countingReader{r: pr}
	if _, err := s.store.Put(context.Background(), s.bucket, key, cr, s3stream.PutOptions{}); err != nil {
		b.Fatal(err)
	}
	src := benchSource{key: key, size: cr.n, records: records.Load()}
	s.source[size] = src
	return src
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// heapPeak samples the live heap every 2ms until stopped and returns the
// highest value seen, in bytes.
func heapPeak() (stop func() uint64) {
	runtime.GC()
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(samples)
			if v := samples[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		return peak.Load()
	}
}

func BenchmarkImport(b *testing.B) {
	for _, size := range benchSizes() {
		b.Run(sizeName(size), func(b *testing.B) {
			s := benchEnv(b)
			src := s.sourceOf(b, size)
			b.SetBytes(src.size)
			b.ResetTimer()
			jobs := ledger.New(s.store, s.bucket)
			imp := importer.New(importer.Config{Bucket: s.bucket}, s.ce, s.store, jobs, nil, nil)
			var elapsed time.Duration
			var peak uint64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				key := fmt.Sprintf("imports/activities/bench-%s-%d-%d.jsonl", sizeName(size), time.Now().UnixNano(), i)
				out, err := s.s3.CopyObject(context.Background(), &s3.CopyObjectInput{
					Bucket: &s.bucket, Key: &key, CopySource: stringPtr(s.bucket + "/" + src.key),
				})
				if err != nil {
					b.Fatal(err)
				}
				stop := heapPeak()
				b.StartTimer()
				start := time.Now()
				res, err := imp.HandleObject(context.Background(), s.bucket, key, *out.CopyObjectResult.ETag, src.size)
				elapsed += time.Since(start)
				b.StopTimer()
				peak = max(peak, stop())
				if err != nil {
					b.Fatal(err)
				}
				if res.Status != importer.StatusSucceeded || res.Valid != src.records {
					b.Fatalf("import = %+v, want SUCCEEDED with %d records", res, src.records)
				}
			}
			b.ReportMetric(float64(src.records)*float64(b.N)/elapsed.Seconds(), "records/s")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		})
	}
}

func BenchmarkBaselineStream(b *testing.B) {
	for _, size := range benchSizes() {
		b.Run(sizeName(size), func(b *testing.B) {
			s := benchEnv(b)
			src := s.sourceOf(b, size)
			b.SetBytes(src.size)
			b.ResetTimer()
			var elapsed time.Duration
			var peak uint64
			for i := 0; i < b.N; i++ {
				stop := heapPeak()
				start := time.Now()
				out, err := s.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: &s.bucket, Key: &src.key})
				if err != nil {
					b.Fatal(err)
				}
				job, err := s.ce.Upload(context.Background(), "activities", out.Body, ce.UploadOptions{Format: "json"})
				out.Body.Close()
				elapsed += time.Since(start)
				b.StopTimer()
				peak = max(peak, stop())
				b.StartTimer()
				if err != nil {
					b.Fatal(err)
				}
				if job.ID == "" {
					b.Fatal("no job")
				}
			}
			b.ReportMetric(float64(src.records)*float64(b.N)/elapsed.Seconds(), "records/s")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		})
	}
}

func stringPtr(s string) *string { return &s }
