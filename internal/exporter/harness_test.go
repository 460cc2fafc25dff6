package exporter

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cebulk/cebulk/internal/syncio"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/awstest"
	"github.com/cebulk/cebulk/internal/ceclient"
	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/mpdirect"
	"github.com/cebulk/cebulk/internal/s3stream"
	"github.com/cebulk/cebulk/pkg/ce"
)

// CE is the backend these tests run: CE bulk, the emulator's.
type CE = Backend

// The consumer-side interfaces are met by the real clients.
var (
	_ Backend     = (*ce.Client)(nil)
	_ Backend     = (*ceclient.Client)(nil)
	_ Backend     = (*mpdirect.Exports)(nil)
	_ ObjectStore = (*s3stream.Store)(nil)
)

// clock is a settable clock, started at the real time so that the ledger's
// own timestamps (UpdatedAt) stay comparable.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().UTC()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// syncBuffer collects log or metric lines from several goroutines.
type syncBuffer struct{ syncio.Buffer }

// lines decodes the JSON lines written so far.
func (s *syncBuffer) lines(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(s.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// env is one exporter wired to a CE emulator and a moto bucket.
type env struct {
	srv     *httptest.Server
	fake    *cetest.Fake
	client  *ce.Client
	s3      *s3stream.Store
	bucket  string
	jobs    *ledger.Store
	clock   *clock
	logs    *syncBuffer
	metrics *syncBuffer
	cfg     Config
}

// newEnv starts the emulator and a bucket; cfg fields left zero get test
// defaults (Start three days ago, UTC, no lag).
func newEnv(t testing.TB, opts cetest.Options, cfg Config) *env {
	t.Helper()
	awstest.Endpoint(t)
	srv, fake := cetest.NewServer(t, opts)
	client, err := ce.NewClient(cetest.BaseURL(srv), ce.Credentials{
		UserSecret: cetest.DefaultUserSecret, OrganizationSecret: cetest.DefaultOrgSecret, ElementToken: cetest.DefaultElementToken,
	}, ce.WithRetry(1, time.Millisecond, 5*time.Millisecond))
	if err != nil {
		t.Fatalf("ce.NewClient: %v", err)
	}
	e := &env{
		srv: srv, fake: fake, client: client,
		s3:      s3stream.New(awstest.S3(t)),
		bucket:  awstest.NewBucket(t),
		clock:   newClock(),
		logs:    &syncBuffer{},
		metrics: &syncBuffer{},
	}
	e.jobs = ledger.New(e.s3, e.bucket)
	cfg.Bucket = e.bucket
	if cfg.Objects == nil {
		cfg.Objects = []string{ObjectActivities}
	}
	if cfg.Start == "" {
		cfg.Start = e.day(-3)
	}
	cfg.Now = e.clock.Now
	cfg.Metrics = e.metrics
	e.cfg = cfg
	return e
}

// exporter returns an Exporter over api (nil: the real client) and store
// (nil: the moto store).
func (e *env) exporter(api CE, store ObjectStore) *Exporter {
	if api == nil {
		api = e.client
	}
	if store == nil {
		store = e.s3
	}
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return New(e.cfg, api, store, e.jobs, log)
}

// day returns the UTC day offset days from the clock's today.
func (e *env) day(offset int) string {
	return e.clock.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, offset).Format(dayLayout)
}

// dayStart returns midnight UTC of day.
func dayStart(day string) time.Time {
	t, err := time.Parse(dayLayout, day)
	if err != nil {
		panic(err)
	}
	return t
}

// seedActivities seeds n activities spread over [from, to) and returns the
// records by UTC day.
func seedActivities(fake *cetest.Fake, n int, from, to time.Time) map[string][]string {
	g := cetest.SampleActivities(42, n, from, to)
	fake.SeedGenerated(ObjectActivities, g)
	byDay := map[string][]string{}
	g.Records(func(r cetest.Record) bool {
		d := r.Time.UTC().Format(dayLayout)
		byDay[d] = append(byDay[d], string(r.JSON))
		return true
	})
	return byDay
}

func (e *env) get(t testing.TB, key string) ([]byte, bool) {
	t.Helper()
	b, _, err := e.s3.ReadSmall(t.Context(), e.bucket, key)
	if errors.Is(err, s3stream.ErrNotFound) {
		return nil, false
	}
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b, true
}

func (e *env) job(t testing.TB, id string) *ledger.Job {
	t.Helper()
	j, _, err := e.jobs.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("ledger Get(%s): %v", id, err)
	}
	return j
}

func (e *env) keys(t testing.TB, prefix string) []string {
	t.Helper()
	return awstest.Keys(t, e.bucket, prefix)
}

// checkPartition checks that the partition is published, holds exactly
// want (in any order) in its one part, and has a manifest that matches.
func (e *env) checkPartition(t testing.TB, object, partition string, want []string) Manifest {
	t.Helper()
	prefix := "exports/" + object + "/" + partition + "/"
	if _, ok := e.get(t, prefix+"_SUCCESS"); !ok {
		t.Fatalf("%s_SUCCESS missing; keys: %v", prefix, e.keys(t, "exports/"))
	}
	raw, ok := e.get(t, prefix+"_manifest.json")
	if !ok {
		t.Fatalf("%s_manifest.json missing", prefix)
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("manifest is not JSON: %v\n%s", err, raw)
	}
	var parts []string
	for _, k := range e.keys(t, prefix) {
		if strings.HasPrefix(k, prefix+"part-") {
			parts = append(parts, k)
		}
	}
	if diff := cmp.Diff([]string{m.Part}, parts); diff != "" {
		t.Errorf("parts of %s (-manifest +stored):\n%s", prefix, diff)
	}
	rc, info, err := e.s3.Open(t.Context(), e.bucket, m.Part)
	if err != nil {
		t.Fatalf("open part: %v", err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatalf("read part: %v", err)
	}
	got := gunzipLines(t, data)
	slices.Sort(got)
	want = slices.Clone(want)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records of %s (-want +got):\n%s", prefix, diff)
	}
	if m.Records != int64(len(want)) || m.Bytes != info.Size || m.Bytes != int64(len(data)) {
		t.Errorf("manifest records, bytes = %d, %d; want %d, %d", m.Records, m.Bytes, len(want), len(data))
	}
	if m.SHA256 != sha256Hex(data) {
		t.Errorf("manifest sha256 = %s, want %s", m.SHA256, sha256Hex(data))
	}
	if m.Object != object || m.Partition != partition || m.Format != "jsonl.gz" || m.Version != 1 || m.CreatedAt.IsZero() {
		t.Errorf("manifest = %+v", m)
	}
	if !strings.HasSuffix(m.Part, "/part-"+m.CEJobID+".jsonl.gz") {
		t.Errorf("manifest part %s is not named by its CE job %s", m.Part, m.CEJobID)
	}
	return m
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// checkUnpublished checks that a partition has no _SUCCESS, no manifest
// and no part.
func (e *env) checkUnpublished(t testing.TB, object, partition string) {
	t.Helper()
	if keys := e.keys(t, "exports/"+object+"/"+partition+"/"); len(keys) > 0 {
		t.Errorf("partition %s/%s has objects %v, want none", object, partition, keys)
	}
}

// ceFuncs wraps a CE with optional replacements, wtf-style.
type ceFuncs struct {
	CE
	startQuery func(ctx context.Context, q ce.QueryRequest) (*ce.Job, error)
	status     func(ctx context.Context, id string) (*ce.Job, error)
	download   func(ctx context.Context, id, object string) (io.ReadCloser, error)
}

func (c ceFuncs) StartQuery(ctx context.Context, q ce.QueryRequest) (*ce.Job, error) {
	if c.startQuery != nil {
		return c.startQuery(ctx, q)
	}
	return c.CE.StartQuery(ctx, q)
}

func (c ceFuncs) Status(ctx context.Context, id string) (*ce.Job, error) {
	if c.status != nil {
		return c.status(ctx, id)
	}
	return c.CE.Status(ctx, id)
}

func (c ceFuncs) Download(ctx context.Context, id, object string, opts ...ce.DownloadOption) (io.ReadCloser, error) {
	if c.download != nil {
		return c.download(ctx, id, object)
	}
	return c.CE.Download(ctx, id, object, opts...)
}

// storeFuncs wraps an ObjectStore with optional replacements.
type storeFuncs struct {
	ObjectStore
	uploadPart func(ctx context.Context, bucket, key, uploadID string, n int32, data []byte) (s3stream.Part, error)
	writeSmall func(ctx context.Context, bucket, key string, data []byte, ct string, cond s3stream.Condition) (string, error)
}

func (s storeFuncs) UploadPart(ctx context.Context, bucket, key, uploadID string, n int32, data []byte) (s3stream.Part, error) {
	if s.uploadPart != nil {
		return s.uploadPart(ctx, bucket, key, uploadID, n, data)
	}
	return s.ObjectStore.UploadPart(ctx, bucket, key, uploadID, n, data)
}

func (s storeFuncs) WriteSmall(ctx context.Context, bucket, key string, data []byte, ct string, cond s3stream.Condition) (string, error) {
	if s.writeSmall != nil {
		return s.writeSmall(ctx, bucket, key, data, ct, cond)
	}
	return s.ObjectStore.WriteSmall(ctx, bucket, key, data, ct, cond)
}
