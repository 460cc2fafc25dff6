package importer_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cebulk/cebulk/internal/syncio"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/ceclient"
	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/internal/importer"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/mpdirect"
	"github.com/cebulk/cebulk/internal/s3stream"
	"github.com/cebulk/cebulk/pkg/ce"
)

const bucket = "data"

// t0 is the tests' "now"; event times below are before it.
var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// env wires an Importer to an in-memory S3, the CE emulator and a fake
// clock.
type env struct {
	t         *testing.T
	store     *memStore
	fake      *cetest.Fake
	ce        *ce.Client
	jobs      *ledger.Store
	clock     *fakeClock
	imp       *importer.Importer
	metrics   *syncio.Buffer
	mu        sync.Mutex
	reinvoked []string
}

type envOptions struct {
	cfg    importer.Config
	ce     cetest.Options
	wrapCE func(*ce.Client) ceAPI // wraps the CE client, to inject failures
	inline bool                   // resume in-process instead of recording re-invocations
}

// ceAPI is the backend these tests run: CE bulk, the emulator's.
type ceAPI = importer.Backend

// The backends meet the importer's consumer-side interface.
var (
	_ importer.Backend = (*ce.Client)(nil)
	_ importer.Backend = (*ceclient.Client)(nil)
	_ importer.Backend = (*mpdirect.Imports)(nil)
)

func setup(t *testing.T, o envOptions) *env {
	t.Helper()
	e := &env{t: t, store: newMemStore(), clock: &fakeClock{now: t0}, metrics: &syncio.Buffer{}}
	o.ce.Now = e.clock.Now
	srv, fake := cetest.NewServer(t, o.ce)
	e.fake = fake
	c, err := ce.NewClient(cetest.BaseURL(srv), ce.Credentials{
		UserSecret: cetest.DefaultUserSecret, OrganizationSecret: cetest.DefaultOrgSecret, ElementToken: cetest.DefaultElementToken,
	}, ce.WithRetry(1, time.Millisecond, time.Millisecond), ce.WithPollInterval(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	e.ce = c
	e.jobs = ledger.New(e.store, bucket)
	cfg := o.cfg
	cfg.Bucket = bucket
	cfg.Now = e.clock.Now
	cfg.Metrics = e.metrics
	if cfg.ChunkRecords == 0 {
		cfg.ChunkRecords = 3
	}
	var reinvoke func(context.Context, string) error
	if !o.inline {
		reinvoke = func(_ context.Context, id string) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.reinvoked = append(e.reinvoked, id)
			return nil
		}
	}
	var api ceAPI = c
	if o.wrapCE != nil {
		api = o.wrapCE(c)
	}
	e.imp = importer.New(cfg, api, e.store, e.jobs, reinvoke, nil)
	return e
}

func (e *env) reinvocations() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.reinvoked)
}

// upload stores a source object and returns its ETag.
func (e *env) upload(key string, data []byte) string {
	return strings.Trim(e.store.put(bucket, key, data), `"`)
}

// importFile uploads data under key and handles its ObjectCreated event.
func (e *env) importFile(key string, data []byte, opts ...importer.RunOption) importer.Result {
	e.t.Helper()
	etag := e.upload(key, data)
	res, err := e.imp.HandleObject(e.t.Context(), bucket, key, etag, int64(len(data)), opts...)
	if err != nil {
		e.t.Fatalf("HandleObject(%s): %v", key, err)
	}
	return res
}

// summaryOf reads a report's summary.json.
func (e *env) summaryOf(key string) map[string]any {
	e.t.Helper()
	b, ok := e.store.get(bucket, "reports/"+key+"/summary.json")
	if !ok {
		e.t.Fatalf("no summary for %s; keys: %v", key, e.store.keys(bucket, ""))
	}
	var s map[string]any
	if err := json.Unmarshal(b, &s); err != nil {
		e.t.Fatalf("summary of %s: %v", key, err)
	}
	return s
}

// reject is one line of rejects.jsonl.gz.
type reject struct {
	Line      int             `json:"line"`
	Reason    string          `json:"reason"`
	Record    json.RawMessage `json:"record"`
	Truncated bool            `json:"truncated"`
}

func (e *env) rejectsOf(key string) []reject {
	e.t.Helper()
	b, ok := e.store.get(bucket, "reports/"+key+"/rejects.jsonl.gz")
	if !ok {
		e.t.Fatalf("no rejects for %s", key)
	}
	return parseRejects(e.t, b)
}

func parseRejects(t *testing.T, b []byte) []reject {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("rejects are not gzip: %v", err)
	}
	var out []reject
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r reject
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("reject line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read rejects: %v", err)
	}
	return out
}

func rejectLines(rs []reject) []int {
	var lines []int
	for _, r := range rs {
		lines = append(lines, r.Line)
	}
	return lines
}

// uploadedIDs returns the distinct ids of the records CE accepted, in
// upload order.
func (e *env) uploadedIDs(object string) []string {
	e.t.Helper()
	var ids []string
	for _, raw := range e.fake.Uploaded(object) {
		ids = append(ids, idOf(e.t, raw))
	}
	return ids
}

// idOf returns a record's distinct id: $distinct_id of a profile update,
// properties.distinct_id of an event.
func idOf(t testing.TB, raw json.RawMessage) string {
	t.Helper()
	var r struct {
		DistinctID any `json:"$distinct_id"`
		Properties struct {
			DistinctID any `json:"distinct_id"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("uploaded record %s: %v", raw, err)
	}
	if r.DistinctID != nil {
		return fmt.Sprint(r.DistinctID)
	}
	return fmt.Sprint(r.Properties.DistinctID)
}

func (e *env) ledgerJob(id string) *ledger.Job {
	e.t.Helper()
	j, _, err := e.jobs.Get(e.t.Context(), id)
	if err != nil {
		e.t.Fatalf("ledger %s: %v", id, err)
	}
	return j
}

// activity renders one valid event whose distinct_id identifies it.
func activity(id string, sec int64) string {
	return fmt.Sprintf(`{"event":"Signed Up","properties":{"time":%d,"distinct_id":%q,"$insert_id":"ins-%s","plan":"pro"}}`, sec, id, id)
}

// goodFile returns n good events "good-1" ... "good-n", one per line.
func goodFile(n int) []byte {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		b.WriteString(activity(fmt.Sprintf("good-%d", i), 1764028800+int64(i)) + "\n")
	}
	return []byte(b.String())
}

// goodIDs returns "good-1" ... "good-n".
func goodIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("good-%d", i+1)
	}
	return ids
}

// jsonlFile makes n good events with bad rows after every third one; it
// returns the file and the lines of the bad rows.
func jsonlFile(n int) ([]byte, []int) {
	var b strings.Builder
	var bad []int
	line := 0
	for i := 1; i <= n; i++ {
		line++
		b.WriteString(activity(fmt.Sprintf("good-%d", i), 1764028800+int64(i)) + "\n")
		if i%3 == 0 {
			line++
			bad = append(bad, line)
			switch i % 9 {
			case 0:
				b.WriteString(`{"event":"Signed Up","properties":{"time":1764028800,` + "\n") // invalid JSON
			case 3:
				b.WriteString(`{"properties":{"time":1764028800,"distinct_id":"bad"}}` + "\n") // no event
			default:
				b.WriteString(`["not","an","object"]` + "\n")
			}
		}
	}
	return []byte(b.String()), bad
}

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestImportMixedFile(t *testing.T) {
	e := setup(t, envOptions{})
	data, bad := jsonlFile(10)
	key := "imports/activities/2026/mixed.jsonl"
	res := e.importFile(key, data)

	if res.Status != importer.StatusPartial {
		t.Errorf("status = %s, want PARTIAL", res.Status)
	}
	if diff := cmp.Diff(goodIDs(10), e.uploadedIDs("activities")); diff != "" {
		t.Errorf("uploaded records (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(bad, rejectLines(e.rejectsOf(key))); diff != "" {
		t.Errorf("reject lines (-want +got):\n%s", diff)
	}
	s := e.summaryOf(key)
	want := map[string]any{"status": "PARTIAL", "records": 13.0, "valid": 10.0, "rejected": 3.0, "accepted": 10.0, "sent": 10.0, "ceFailed": 0.0, "notSent": 0.0, "dryRun": false, "format": "jsonl", "object": "activities"}
	for k, v := range want {
		if !cmp.Equal(s[k], v) {
			t.Errorf("summary[%s] = %v, want %v", k, s[k], v)
		}
	}
	// 10 valid records in chunks of 3: 4 CE jobs.
	if jobs, _ := s["ceJobs"].([]any); len(jobs) != 4 {
		t.Errorf("summary has %d ceJobs, want 4: %v", len(jobs), s["ceJobs"])
	}
	if got := e.fake.Requests("POST /bulk/activities"); got != 4 {
		t.Errorf("upload requests = %d, want 4", got)
	}
	if b, ok := e.store.get(bucket, "reports/"+key+"/ce-errors.jsonl"); !ok || len(b) != 0 {
		t.Errorf("ce-errors.jsonl = %q (exists %v), want empty", b, ok)
	}
	// Rejects parts are cleaned up; the ledger records are final.
	if keys := e.store.keys(bucket, "state/imports/"); len(keys) != 0 {
		t.Errorf("rejects parts left: %v", keys)
	}
	if j := e.ledgerJob(res.ImportID); j.Status != ledger.StatusDone {
		t.Errorf("import record status = %s, want DONE", j.Status)
	}
	if j := e.ledgerJob(importer.ChunkID(res.ImportID, 1)); j.Status != ledger.StatusDone || j.CEJobID == "" || j.TokenHash == "" {
		t.Errorf("chunk 1 record = %+v, want DONE with a CE job id and a token hash", j)
	}
}

func TestImportFormats(t *testing.T) {
	jsonl, jsonlBad := jsonlFile(7)
	array := []byte("[\n" + activity("good-1", 1764028801) + ",\n" +
		`{"event":"","properties":{}},` + "\n" +
		activity("good-2", 1764028802) + ",\n" +
		"  42,\n" +
		activity("good-3", 1764028803) + "\n]\n")
	csv := []byte("event,time,distinct_id,$insert_id,plan\n" +
		"Signed Up,1764028801,good-1,ins-1,pro\n" +
		"Signed Up,1764028802,good-2,ins-2,\n" +
		"Signed Up,1764028803,\"bad\"quote\",ins-3,pro\n" +
		",1764028804,bad,ins-4,pro\n" +
		"Signed Up,1764028805,good-3,ins-5,basic\n")
	users := []byte("$distinct_id,$email,credits,vip\n" +
		"good-1,one@example.com,150,true\n" +
		",nobody@example.com,3,false\n" +
		"good-2,two@example.com,,\n")
	tests := []struct {
		name, key string
		data      []byte
		object    string
		wantIDs   []string
		wantLines []int
		format    string
	}{
		{"jsonl", "imports/activities/a.jsonl", jsonl, "activities", goodIDs(7), jsonlBad, "jsonl"},
		{"ndjson.gz", "imports/activities/a.ndjson.gz", gz(t, jsonl), "activities", goodIDs(7), jsonlBad, "jsonl"},
		{"json array", "imports/activities/a.json", array, "activities", goodIDs(3), []int{3, 5}, "json-array"},
		{"json array gzip without .gz", "imports/activities/a.json", gz(t, array), "activities", goodIDs(3), []int{3, 5}, "json-array"},
		{"csv", "imports/activities/a.csv", csv, "activities", goodIDs(3), []int{4, 5}, "csv"},
		{"csv.gz", "imports/activities/a.csv.gz", gz(t, csv), "activities", goodIDs(3), []int{4, 5}, "csv"},
		{"users csv", "imports/users/u.csv", users, "users", goodIDs(2), []int{3}, "csv"},
		{"no extension: sniffed", "imports/activities/export", jsonl, "activities", goodIDs(7), jsonlBad, "jsonl"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, envOptions{})
			res := e.importFile(tc.key, tc.data)
			if res.Status != importer.StatusPartial {
				t.Errorf("status = %s, want PARTIAL", res.Status)
			}
			if diff := cmp.Diff(tc.wantIDs, e.uploadedIDs(tc.object)); diff != "" {
				t.Errorf("uploaded (-want +got):\n%s", diff)
			}
			rejects := e.rejectsOf(tc.key)
			if diff := cmp.Diff(tc.wantLines, rejectLines(rejects)); diff != "" {
				t.Errorf("reject lines (-want +got):\n%s", diff)
			}
			for _, r := range rejects {
				if r.Reason == "" || len(r.Record) == 0 {
					t.Errorf("reject %+v lacks a reason or the record", r)
				}
			}
			if got := e.summaryOf(tc.key)["format"]; got != tc.format {
				t.Errorf("summary format = %v, want %s", got, tc.format)
			}
		})
	}
}

func TestDuplicateEventDoesNothing(t *testing.T) {
	e := setup(t, envOptions{})
	data, _ := jsonlFile(4)
	key := "imports/activities/dup.jsonl"
	first := e.importFile(key, data)
	requests := e.fake.Requests("")
	summary, _ := e.store.get(bucket, "reports/"+key+"/summary.json")

	etag := e.upload(key, data) // same bytes: same ETag
	second, err := e.imp.HandleObject(t.Context(), bucket, key, `"`+etag+`"`, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if second.Status != importer.StatusDuplicate || second.ImportID != first.ImportID {
		t.Errorf("second event = %+v, want DUPLICATE of %s", second, first.ImportID)
	}
	if got := e.fake.Requests(""); got != requests {
		t.Errorf("CE requests went from %d to %d on a duplicate event", requests, got)
	}
	if again, _ := e.store.get(bucket, "reports/"+key+"/summary.json"); !bytes.Equal(again, summary) {
		t.Errorf("summary rewritten by a duplicate event")
	}
}

func TestResumeAfterForcedCheckpoint(t *testing.T) {
	e := setup(t, envOptions{cfg: importer.Config{ChunkRecords: 2}})
	data, bad := jsonlFile(9) // 9 valid: chunks of 2 → 5 chunks
	key := "imports/activities/big.jsonl"
	res := e.importFile(key, data, importer.MaxChunks(2))
	if res.Status != importer.StatusCheckpointed || res.Chunks != 2 {
		t.Fatalf("first invocation = %+v, want CHECKPOINTED after 2 chunks", res)
	}
	if diff := cmp.Diff([]string{res.ImportID}, e.reinvocations()); diff != "" {
		t.Errorf("re-invocations (-want +got):\n%s", diff)
	}
	// A duplicate resume while nothing holds the import is harmless; the
	// real resume then finishes.
	for i := 0; i < 2; i++ {
		if _, err := e.imp.Resume(t.Context(), res.ImportID, importer.MaxChunks(2)); err != nil {
			t.Fatal(err)
		}
	}
	final, err := e.imp.Resume(t.Context(), res.ImportID)
	if err != nil {
		t.Fatal(err)
	}
	if final.Status != importer.StatusPartial || final.Chunks != 5 {
		t.Errorf("final = %+v, want PARTIAL with 5 chunks", final)
	}
	if diff := cmp.Diff(goodIDs(9), e.uploadedIDs("activities")); diff != "" {
		t.Errorf("uploaded (-want +got): a chunk was lost or sent twice\n%s", diff)
	}
	if got := e.fake.Requests("POST /bulk/activities"); got != 5 {
		t.Errorf("upload requests = %d, want 5", got)
	}
	if diff := cmp.Diff(bad, rejectLines(e.rejectsOf(key))); diff != "" {
		t.Errorf("reject lines (-want +got):\n%s", diff)
	}
	if got := e.summaryOf(key)["timings"].(map[string]any)["invocations"]; got != 3.0 {
		t.Errorf("invocations = %v, want 3", got)
	}
}

// TestCrashAfterUploadBeforeCheckpoint: the worker dies after CE accepted
// a chunk and the chunk record has its job id, but before the checkpoint.
// The next worker re-reads that span and skips the chunk.
func TestCrashAfterUploadBeforeCheckpoint(t *testing.T) {
	e := setup(t, envOptions{cfg: importer.Config{ChunkRecords: 2}})
	data, bad := jsonlFile(6)
	key := "imports/activities/crash.jsonl"
	etag := e.upload(key, data)
	id := importer.ImportID(bucket, key, etag)
	// Every write of the import record after its creation fails: the
	// checkpoint after chunk 1 (and the release after it) are lost.
	e.store.failWrite = func(k string, cond s3stream.Condition) error {
		if k == ledger.Key(id) && cond.IfMatch != "" {
			return errInjected
		}
		return nil
	}
	if _, err := e.imp.HandleObject(t.Context(), bucket, key, etag, int64(len(data))); !errors.Is(err, errInjected) {
		t.Fatalf("HandleObject = %v, want the injected failure", err)
	}
	if got := e.fake.Requests("POST /bulk/activities"); got != 1 {
		t.Fatalf("uploads before the crash = %d, want 1", got)
	}
	e.store.failWrite = nil

	// The record still says UPLOADING: a resume within the lease does nothing.
	if res, err := e.imp.Resume(t.Context(), id); err != nil || res.Status != importer.StatusRunning {
		t.Fatalf("Resume within the lease = %+v, %v; want RUNNING", res, err)
	}
	e.clock.Advance(importer.DefaultLease + time.Minute)
	res, err := e.imp.Resume(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != importer.StatusPartial || res.Chunks != 3 {
		t.Errorf("after takeover = %+v, want PARTIAL with 3 chunks", res)
	}
	if diff := cmp.Diff(goodIDs(6), e.uploadedIDs("activities")); diff != "" {
		t.Errorf("uploaded (-want +got):\n%s", diff)
	}
	if got := e.fake.Requests("POST /bulk/activities"); got != 3 {
		t.Errorf("uploads = %d, want 3 (chunk 1 not sent twice)", got)
	}
	if diff := cmp.Diff(bad, rejectLines(e.rejectsOf(key))); diff != "" {
		t.Errorf("reject lines (-want +got): rejects of the re-read span lost or doubled\n%s", diff)
	}
}

// ceWrapper injects failures into uploads.
type ceWrapper struct {
	*ce.Client
	upload func(ctx context.Context, object string, r io.Reader, opts ce.UploadOptions) (*ce.Job, error)
}

func (w ceWrapper) Upload(ctx context.Context, object string, r io.Reader, opts ce.UploadOptions) (*ce.Job, error) {
	return w.upload(ctx, object, r, opts)
}

func TestUploadOutcomes(t *testing.T) {
	refused := &ce.APIError{StatusCode: http.StatusTooManyRequests, Method: "POST", Path: "hubs/general/bulk/activities"}
	badRequest := &ce.APIError{StatusCode: http.StatusBadRequest, Method: "POST", Path: "hubs/general/bulk/activities", Message: "bad file"}
	tests := []struct {
		name string
		// fail is called for upload number n (1-based); ok=false means
		// pass the upload through.
		fail       func(n int, r io.Reader) (error, bool)
		wantErr    bool // the first invocation fails and leaves the import to the sweep (RETRY)
		wantStatus string
		wantIDs    []string
		chunk2     ledger.Status
	}{
		{
			name: "429 before the body: sent again after a wait, in the same invocation",
			fail: func(n int, r io.Reader) (error, bool) {
				if n == 2 {
					return refused, true
				}
				return nil, false
			},
			wantStatus: importer.StatusSucceeded, wantIDs: goodIDs(6), chunk2: ledger.StatusDone,
		},
		{
			name: "answer lost after the whole body: never sent again",
			fail: func(n int, r io.Reader) (error, bool) {
				if n == 2 {
					_, _ = io.Copy(io.Discard, r)
					return errors.New("connection reset by peer"), true
				}
				return nil, false
			},
			wantStatus: importer.StatusPartial, wantIDs: []string{"good-1", "good-2", "good-5", "good-6"}, chunk2: ledger.StatusFailed,
		},
		{
			name: "400: the import stops",
			fail: func(n int, r io.Reader) (error, bool) {
				if n == 2 {
					return badRequest, true
				}
				return nil, false
			},
			wantStatus: importer.StatusFailed, wantIDs: []string{"good-1", "good-2"}, chunk2: ledger.StatusFailed,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			n := 0
			noWait := func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
			e := setup(t, envOptions{cfg: importer.Config{ChunkRecords: 2, Sleep: noWait}, inline: true, wrapCE: func(c *ce.Client) ceAPI {
				return ceWrapper{Client: c, upload: func(ctx context.Context, object string, r io.Reader, opts ce.UploadOptions) (*ce.Job, error) {
					mu.Lock()
					n++
					k := n
					mu.Unlock()
					if err, ok := tc.fail(k, r); ok {
						return nil, err
					}
					return c.Upload(ctx, object, r, opts)
				}}
			}})
			var b strings.Builder
			for i := 1; i <= 6; i++ {
				b.WriteString(activity(fmt.Sprintf("good-%d", i), 1764028800+int64(i)) + "\n")
			}
			key := "imports/activities/outcomes.jsonl"
			etag := e.upload(key, []byte(b.String()))
			res, err := e.imp.HandleObject(t.Context(), bucket, key, etag, 0)
			if err != nil || (res.Status == importer.StatusRetry) != tc.wantErr {
				t.Fatalf("HandleObject = %+v, %v; want status RETRY %v and no error", res, err, tc.wantErr)
			}
			if res.Status == importer.StatusRetry {
				// The failure is recorded: the sweep resumes the import.
				s, err := e.imp.Sweep(t.Context())
				if err != nil || s.Resumed != 1 {
					t.Fatalf("Sweep = %+v, %v; want the import resumed", s, err)
				}
				if res, err = e.imp.Finalize(t.Context(), res.ImportID); err != nil {
					t.Fatal(err)
				}
			}
			if res.Status != tc.wantStatus {
				t.Errorf("status = %s, want %s", res.Status, tc.wantStatus)
			}
			if diff := cmp.Diff(tc.wantIDs, e.uploadedIDs("activities")); diff != "" {
				t.Errorf("uploaded (-want +got):\n%s", diff)
			}
			if j := e.ledgerJob(importer.ChunkID(res.ImportID, 2)); j.Status != tc.chunk2 {
				t.Errorf("chunk 2 = %s (%s), want %s", j.Status, j.LastError, tc.chunk2)
			}
		})
	}
}

func TestDryRunCallsNoCE(t *testing.T) {
	e := setup(t, envOptions{})
	data, bad := jsonlFile(5)
	key := "imports/activities/dry-run/check.jsonl"
	res := e.importFile(key, data)
	if res.Status != importer.StatusPartial || !res.DryRun {
		t.Errorf("result = %+v, want a PARTIAL dry run", res)
	}
	if got := e.fake.Requests(""); got != 0 {
		t.Errorf("CE requests = %d, want 0", got)
	}
	s := e.summaryOf(key)
	if s["dryRun"] != true || s["valid"] != 5.0 || s["rejected"] != 1.0 {
		t.Errorf("summary = %v", s)
	}
	if diff := cmp.Diff(bad, rejectLines(e.rejectsOf(key))); diff != "" {
		t.Errorf("reject lines (-want +got):\n%s", diff)
	}
	if keys := e.store.keys(bucket, ledger.Prefix); len(keys) != 1 {
		t.Errorf("ledger records = %v, want only the import's", keys)
	}
	// A clean file is SUCCEEDED.
	clean := e.importFile("imports/users/dry-run/ok.csv", []byte("distinct_id,name\nu1,Ann\nu2,Bob\n"))
	if clean.Status != importer.StatusSucceeded {
		t.Errorf("clean dry run = %+v, want SUCCEEDED", clean)
	}
}

func TestCEFailuresMakePartial(t *testing.T) {
	e := setup(t, envOptions{cfg: importer.Config{ChunkRecords: 4}})
	e.fake.FailRecordsMatching(func(object string, rec map[string]any) string {
		props, _ := rec["properties"].(map[string]any)
		if id, _ := props["distinct_id"].(string); id == "good-2" || id == "good-7" {
			return "74234: Invalid event for this project"
		}
		return ""
	})
	key := "imports/activities/ce-fail.jsonl"
	res := e.importFile(key, goodFile(8))
	if res.Status != importer.StatusPartial {
		t.Errorf("status = %s, want PARTIAL", res.Status)
	}
	raw, _ := e.store.get(bucket, "reports/"+key+"/ce-errors.jsonl")
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) != 2 {
		t.Fatalf("ce-errors.jsonl has %d lines, want 2:\n%s", len(lines), raw)
	}
	for i, l := range lines {
		var ce struct {
			Chunk   int             `json:"chunk"`
			CEJobID string          `json:"ceJobId"`
			Error   json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal([]byte(l), &ce); err != nil || ce.CEJobID == "" || !strings.Contains(string(ce.Error), "74234") {
			t.Errorf("ce-errors line %d = %s (%v)", i, l, err)
		}
		if ce.Chunk != i+1 {
			t.Errorf("ce-errors line %d is for chunk %d, want %d", i, ce.Chunk, i+1)
		}
	}
	s := e.summaryOf(key)
	if s["ceFailed"] != 2.0 || s["accepted"] != 6.0 {
		t.Errorf("summary ceFailed=%v accepted=%v, want 2 and 6", s["ceFailed"], s["accepted"])
	}
}

func TestCEJobErrorMakesPartial(t *testing.T) {
	e := setup(t, envOptions{cfg: importer.Config{ChunkRecords: 2}})
	e.fake.SetNextJobOutcome(cetest.StatusError, "rate limited by vendor")
	key := "imports/activities/ce-error.jsonl"
	res := e.importFile(key, goodFile(4))
	if res.Status != importer.StatusPartial {
		t.Errorf("status = %s, want PARTIAL", res.Status)
	}
	s := e.summaryOf(key)
	jobs := s["ceJobs"].([]any)
	if st := jobs[0].(map[string]any)["status"]; st != "ERROR" {
		t.Errorf("chunk 1 status = %v, want ERROR", st)
	}
	if diff := cmp.Diff([]string{"good-3", "good-4"}, e.uploadedIDs("activities")); diff != "" {
		t.Errorf("uploaded (-want +got):\n%s", diff)
	}
}

func TestUnreadableFiles(t *testing.T) {
	var cut bytes.Buffer
	cut.WriteString("[\n" + activity("good-1", 1764028801) + ",\n" + activity("good-2", 1764028802) + ",\n")
	badGzip := gz(t, []byte(activity("good-1", 1764028801)+"\n"))
	badGzip = badGzip[:len(badGzip)-10]
	tests := []struct {
		name, key string
		data      []byte
		wantLine  float64
		wantIDs   []string
	}{
		{"JSON array cut short", "imports/activities/cut.json", cut.Bytes(), 4, []string{"good-1", "good-2"}},
		// What was read before the break is sent; the summary says where it broke.
		{"truncated gzip", "imports/activities/t.jsonl.gz", badGzip, 2, []string{"good-1"}},
		{"binary", "imports/activities/p.csv", []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), 0, nil},
		{"empty", "imports/users/e.csv", nil, 0, nil},
		{"header only", "imports/users/h.csv", []byte("distinct_id,name\n"), 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, envOptions{})
			res := e.importFile(tc.key, tc.data)
			if res.Status != importer.StatusFailed {
				t.Errorf("status = %s, want FAILED", res.Status)
			}
			s := e.summaryOf(tc.key)
			reason, _ := s["reason"].(string)
			if reason == "" {
				t.Errorf("FAILED summary without a reason: %v", s)
			}
			if tc.wantLine > 0 {
				fe, _ := s["error"].(map[string]any)
				if fe == nil || fe["line"] != tc.wantLine {
					t.Errorf("summary error = %v, want line %v", s["error"], tc.wantLine)
				}
			}
			if diff := cmp.Diff(tc.wantIDs, e.uploadedIDs(objectOf(tc.key))); diff != "" {
				t.Errorf("uploaded (-want +got):\n%s", diff)
			}
			if !strings.Contains(e.metrics.String(), `"JobsFailed":1`) {
				t.Errorf("no JobsFailed metric for a FAILED import: %q", e.metrics.String())
			}
			t.Logf("reason: %s", reason)
		})
	}
}

func objectOf(key string) string { return strings.Split(key, "/")[1] }

func TestKeysThatAreNotImports(t *testing.T) {
	tests := []struct {
		key        string
		wantStatus string
		summary    string
	}{
		{"imports/orders/x.csv", importer.StatusFailed, "reports/imports/_invalid/imports/orders/x.csv/summary.json"},
		{"imports/x.csv", importer.StatusFailed, "reports/imports/_invalid/imports/x.csv/summary.json"},
		{"imports/activities/dry-run/", importer.StatusIgnored, ""},
		{"imports/activities/", importer.StatusIgnored, ""},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			e := setup(t, envOptions{})
			res, err := e.imp.HandleObject(t.Context(), bucket, tc.key, "abc", 0)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tc.wantStatus || res.Summary != tc.summary {
				t.Errorf("result = %+v, want %s with summary %q", res, tc.wantStatus, tc.summary)
			}
			if tc.summary != "" {
				b, _ := e.store.get(bucket, tc.summary)
				var s struct{ Status, Reason string }
				if err := json.Unmarshal(b, &s); err != nil || s.Status != "FAILED" || s.Reason == "" {
					t.Errorf("summary = %s (%v)", b, err)
				}
			}
			if got := e.fake.Requests(""); got != 0 {
				t.Errorf("CE requests = %d", got)
			}
		})
	}
}

func TestObjectReplacedDuringImport(t *testing.T) {
	e := setup(t, envOptions{})
	key := "imports/activities/r.jsonl"
	old := e.upload(key, []byte(activity("good-1", 1764028801)+"\n"))
	e.upload(key, []byte(activity("good-2", 1764028802)+"\n"))
	res, err := e.imp.HandleObject(t.Context(), bucket, key, old, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != importer.StatusFailed {
		t.Errorf("status = %s, want FAILED", res.Status)
	}
	if got := e.fake.Requests(""); got != 0 {
		t.Errorf("CE requests = %d, want 0", got)
	}
}

func TestFinalizeWaitsForCEAndIsIdempotent(t *testing.T) {
	e := setup(t, envOptions{ce: cetest.Options{CompletionDelay: time.Hour}})
	data, _ := jsonlFile(5)
	key := "imports/activities/slow.jsonl"
	res := e.importFile(key, data)
	if res.Status != importer.StatusWaiting {
		t.Fatalf("status = %s, want WAITING", res.Status)
	}
	if _, ok := e.store.get(bucket, "reports/"+key+"/summary.json"); ok {
		t.Fatal("summary written before CE finished")
	}
	// A callback for chunk 1 before CE finished: still waiting.
	if r, err := e.imp.Finalize(t.Context(), importer.ChunkID(res.ImportID, 1)); err != nil || r.Status != importer.StatusWaiting {
		t.Fatalf("Finalize = %+v, %v; want WAITING", r, err)
	}
	e.clock.Advance(2 * time.Hour)
	r, err := e.imp.Finalize(t.Context(), importer.ChunkID(res.ImportID, 2))
	if err != nil || r.Status != importer.StatusPartial {
		t.Fatalf("Finalize = %+v, %v; want PARTIAL", r, err)
	}
	first, _ := e.store.get(bucket, "reports/"+key+"/summary.json")
	statusCalls := e.fake.Requests("/status")
	r2, err := e.imp.Finalize(t.Context(), res.ImportID)
	if err != nil || r2.Status != importer.StatusPartial {
		t.Fatalf("second Finalize = %+v, %v", r2, err)
	}
	if again, _ := e.store.get(bucket, "reports/"+key+"/summary.json"); !bytes.Equal(first, again) {
		t.Errorf("summary changed on a second finalize")
	}
	if got := e.fake.Requests("/status"); got != statusCalls {
		t.Errorf("a finished import read CE statuses again")
	}
}

func TestSweep(t *testing.T) {
	e := setup(t, envOptions{cfg: importer.Config{ChunkRecords: 2}, ce: cetest.Options{CompletionDelay: time.Hour}})
	// An import waiting for CE, and one whose resume invocation was lost.
	waiting := e.importFile("imports/activities/w.jsonl", []byte(activity("good-1", 1764028801)+"\n"))
	data, _ := jsonlFile(6)
	stalled := e.importFile("imports/activities/s.jsonl", data, importer.MaxChunks(1))
	if waiting.Status != importer.StatusWaiting || stalled.Status != importer.StatusCheckpointed {
		t.Fatalf("setup: %+v, %+v", waiting, stalled)
	}
	e.mu.Lock()
	e.reinvoked = nil // lost
	e.mu.Unlock()

	res, err := e.imp.Sweep(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(importer.SweepResult{Checked: 2, Waiting: 1}, res); diff != "" {
		t.Errorf("first sweep (-want +got):\n%s", diff)
	}
	e.clock.Advance(2 * time.Hour) // CE finished, the checkpoint is stale
	res, err = e.imp.Sweep(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(importer.SweepResult{Checked: 2, Finalized: 1, Resumed: 1}, res); diff != "" {
		t.Errorf("second sweep (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{stalled.ImportID}, e.reinvocations()); diff != "" {
		t.Errorf("re-invocations (-want +got):\n%s", diff)
	}
	if s := e.summaryOf("imports/activities/w.jsonl"); s["status"] != "SUCCEEDED" {
		t.Errorf("waiting import = %v", s["status"])
	}
}

func TestParallelFinalizeWritesOnce(t *testing.T) {
	e := setup(t, envOptions{ce: cetest.Options{CompletionDelay: time.Hour}})
	res := e.importFile("imports/users/p.csv", []byte("distinct_id,name\nu1,Ann\n"))
	e.clock.Advance(2 * time.Hour)
	var wg sync.WaitGroup
	results := make([]importer.Result, 4)
	for i := range results {
		wg.Go(func() {
			r, err := e.imp.Finalize(context.Background(), res.ImportID)
			if err != nil {
				t.Error(err)
			}
			results[i] = r
		})
	}
	wg.Wait()
	done := 0
	for _, r := range results {
		if r.Status == importer.StatusSucceeded {
			done++
		} else if r.Status != importer.StatusRunning {
			t.Errorf("result %+v", r)
		}
	}
	if done == 0 {
		t.Errorf("no finalize succeeded: %+v", results)
	}
}

// TestCEJobsThatNeverFinishExpire: nothing is waited for forever.
func TestCEJobsThatNeverFinishExpire(t *testing.T) {
	e := setup(t, envOptions{ce: cetest.Options{CompletionDelay: 72 * time.Hour}})
	key := "imports/users/never.csv"
	res := e.importFile(key, []byte("distinct_id,name\nu1,Ann\nu2,Bob\n"))
	if res.Status != importer.StatusWaiting {
		t.Fatalf("status = %s, want WAITING", res.Status)
	}
	e.clock.Advance(importer.DefaultJobDeadline + time.Minute)
	sw, err := e.imp.Sweep(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if sw.Finalized != 1 {
		t.Errorf("sweep = %+v, want one import finalized", sw)
	}
	s := e.summaryOf(key)
	jobs := s["ceJobs"].([]any)
	if s["status"] != "FAILED" || jobs[0].(map[string]any)["status"] != "EXPIRED" {
		t.Errorf("summary status %v, chunk %v; want FAILED with an EXPIRED chunk", s["status"], jobs[0])
	}
}

// A finalize that cannot read CE's statuses (an outage) notes the failure
// in the import's record and returns RETRY with no error, so Lambda does
// not retry the webhook's hand-over; the sweep finalizes the import later.
func TestFinalizeFailureIsLeftToTheSweep(t *testing.T) {
	e := setup(t, envOptions{ce: cetest.Options{CompletionDelay: time.Hour}})
	key := "imports/activities/finalize-outage.jsonl"
	res := e.importFile(key, goodFile(4))
	if res.Status != importer.StatusWaiting {
		t.Fatalf("import = %+v, want WAITING for CE", res)
	}
	e.clock.Advance(2 * time.Hour)
	end := e.fake.Outage("GET", "/status", http.StatusServiceUnavailable)
	got, err := e.imp.Finalize(t.Context(), importer.ChunkID(res.ImportID, 1))
	if err != nil || got.Status != importer.StatusRetry {
		t.Fatalf("Finalize during the outage = %+v, %v; want RETRY and no error", got, err)
	}
	if j := e.ledgerJob(res.ImportID); j.Status != ledger.StatusPending || !strings.Contains(j.LastError, "finalize: ") {
		t.Errorf("import record = %s, %q; want PENDING with the finalize error noted", j.Status, j.LastError)
	}
	end()
	s, err := e.imp.Sweep(t.Context())
	if err != nil || s.Finalized != 1 {
		t.Fatalf("Sweep = %+v, %v; want the import finalized", s, err)
	}
	if sum := e.summaryOf(key); sum["status"] != importer.StatusSucceeded {
		t.Errorf("summary status = %v, want SUCCEEDED", sum["status"])
	}
}
