package mpdirect

import (
	"bytes"
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

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/mptest"
	"github.com/cebulk/cebulk/internal/s3stream"
	"github.com/cebulk/cebulk/internal/secrets"
	"github.com/cebulk/cebulk/pkg/ce"
	"github.com/cebulk/cebulk/pkg/mixpanel"
)

// memStore is the bucket's chunk state in memory.
type memStore struct {
	mu         sync.Mutex
	objs       map[string][]byte
	writes     int
	failWrites error // every write fails with it when set
}

var _ stateStore = (*memStore)(nil)

func (m *memStore) ReadSmall(_ context.Context, bucket, key string) ([]byte, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objs[bucket+"/"+key]
	if !ok {
		return nil, "", fmt.Errorf("read s3://%s/%s: %w", bucket, key, s3stream.ErrNotFound)
	}
	return slices.Clone(b), `"etag"`, nil
}

func (m *memStore) WriteSmall(_ context.Context, bucket, key string, data []byte, _ string, _ s3stream.Condition) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failWrites != nil {
		return "", m.failWrites
	}
	if m.objs == nil {
		m.objs = map[string][]byte{}
	}
	m.objs[bucket+"/"+key] = slices.Clone(data)
	m.writes++
	return `"etag"`, nil
}

// staticSecret serves one secret.
type staticSecret struct{ s secrets.Secret }

func (f staticSecret) Get(context.Context) (secrets.Secret, error)     { return f.s, nil }
func (f staticSecret) Refresh(context.Context) (secrets.Secret, error) { return f.s, nil }

func mixpanelSecret() secrets.Secret {
	return secrets.Secret{ServiceAccountUser: mptest.DefaultUsername, ServiceAccountSecret: mptest.DefaultSecret,
		ProjectID: mptest.DefaultProjectID, ProjectToken: mptest.DefaultToken}
}

// importEnv is an Imports sending to an mptest server over HTTP.
type importEnv struct {
	x     *Imports
	fake  *mptest.Fake
	url   string // the emulator's base URL
	store *memStore
}

type envOpts struct {
	batch       int // records per batch (Mixpanel's limit when 0)
	concurrency int // batches in flight (1 when 0)
	retries     int
	secret      *secrets.Secret
	httpClient  *http.Client
}

func newImportEnv(t *testing.T, o envOpts) *importEnv {
	t.Helper()
	srv, fake := mptest.NewServer(t, mptest.Options{})
	s := mixpanelSecret()
	if o.secret != nil {
		s = *o.secret
	}
	opts := []mixpanel.Option{
		mixpanel.WithBaseURL(srv.URL),
		mixpanel.WithRetry(o.retries, time.Millisecond, 5*time.Millisecond),
		mixpanel.WithRetryJitter(0, 0),
		mixpanel.WithConcurrency(max(o.concurrency, 1)),
	}
	if o.httpClient != nil {
		opts = append(opts, mixpanel.WithHTTPClient(o.httpClient))
	}
	store := &memStore{}
	x := NewImports(NewClient(staticSecret{s}, opts...), store, "data")
	x.batchRecords = o.batch
	return &importEnv{x: x, fake: fake, url: srv.URL, store: store}
}

// state reads a chunk's saved state.
func (e *importEnv) state(t *testing.T, chunk string) *chunkState {
	t.Helper()
	st, err := e.x.load(t.Context(), chunk)
	if err != nil || st == nil {
		t.Fatalf("state of %s = %v, %v", chunk, st, err)
	}
	return st
}

// errorEntry is what Errors yields, decoded.
type errorEntry struct {
	Index      int64  `json:"index"`
	Field      string `json:"field"`
	InsertID   string `json:"$insert_id"`
	DistinctID string `json:"$distinct_id"`
	Source     string `json:"source"`
}

func (e *importEnv) errorsOf(t *testing.T, jobID string) []errorEntry {
	t.Helper()
	var out []errorEntry
	for raw, err := range e.x.Errors(t.Context(), jobID, 200) {
		if err != nil {
			t.Fatalf("Errors(%s): %v", jobID, err)
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("error entry %s: %v", raw, err)
		}
		if m["message"] == "" || m["message"] == nil {
			t.Errorf("error entry %s has no message", raw)
		}
		var ee errorEntry
		if err := json.Unmarshal(raw, &ee); err != nil {
			t.Fatal(err)
		}
		out = append(out, ee)
	}
	return out
}

func indexes(es []errorEntry, source string) []int64 {
	var out []int64
	for _, e := range es {
		if e.Source == source {
			out = append(out, e.Index)
		}
	}
	return out
}

// event is a valid event line; insert ids are ins-<i>.
func event(i int) string {
	return fmt.Sprintf(`{"event":"E","properties":{"time":%d,"distinct_id":"d-%d","$insert_id":"ins-%d"}}`, 1764028800+i, i, i)
}

// update is a valid, non-idempotent profile update of user u-<i>.
func update(i int) string {
	return fmt.Sprintf(`{"$distinct_id":"u-%d","$add":{"n":1}}`, i)
}

func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

func importedIDs(t *testing.T, f *mptest.Fake) []string {
	t.Helper()
	var ids []string
	for _, raw := range f.Imported() {
		var ev struct {
			Properties struct {
				InsertID string `json:"$insert_id"`
			} `json:"properties"`
		}
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.Properties.InsertID)
	}
	slices.Sort(ids)
	return ids
}

// updatedIDs lists the distinct id of every update applied, once per
// application.
func updatedIDs(t *testing.T, f *mptest.Fake) []string {
	t.Helper()
	var ids []string
	for _, raw := range f.Updates() {
		var u struct {
			ID string `json:"$distinct_id"`
		}
		if err := json.Unmarshal(raw, &u); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.ID)
	}
	slices.Sort(ids)
	return ids
}

func idRange(prefix string, is ...int) []string {
	var out []string
	for _, i := range is {
		out = append(out, fmt.Sprintf("%s-%d", prefix, i))
	}
	slices.Sort(out)
	return out
}

func seq(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func without(all []int, drop ...int) []int {
	return slices.DeleteFunc(slices.Clone(all), func(i int) bool { return slices.Contains(drop, i) })
}

func upload(x *Imports, ctx context.Context, object, chunk string, r io.Reader) (*ce.Job, error) {
	return x.Upload(ctx, object, r, ce.UploadOptions{FileName: chunk + ".json", Format: "json"})
}

func TestUploadActivitiesStrictPartialSuccess(t *testing.T) {
	e := newImportEnv(t, envOpts{batch: 3, concurrency: 2})
	ls := make([]string, 10)
	for i := range ls {
		ls[i] = event(i)
	}
	// Refused by Mixpanel (strict): no $insert_id, nested too deep, a
	// placeholder distinct_id; refused by the client: not JSON.
	ls[1] = `{"event":"E","properties":{"time":1764028801,"distinct_id":"d-1"}}`
	ls[4] = `{"event":"E","properties":{"time":1764028804,"distinct_id":"d-4","$insert_id":"ins-4","p":{"a":{"b":{"c":1}}}}}`
	ls[5] = `{"event":"E","properties":{"time":1764028805,"distinct_id":"anon","$insert_id":"ins-5"}}`
	ls[8] = `{"event":"E","properties":`
	job, err := upload(e.x, t.Context(), ObjectActivities, "import-a-chunk-0001", strings.NewReader(lines(ls...)))
	if err != nil {
		t.Fatalf("Upload: %v", err)
	}
	want := &ce.Job{ID: "mp-chunk-import-a-chunk-0001", Status: ce.StatusCompleted, ObjectName: ObjectActivities,
		RecordsCount: 10, RecordsFailedCount: 4}
	if diff := cmp.Diff(want, job); diff != "" {
		t.Errorf("job (-want +got):\n%s", diff)
	}
	if got, err := e.x.Status(t.Context(), job.ID); err != nil || !cmp.Equal(got, want) {
		t.Errorf("Status = %+v, %v; want %+v", got, err, want)
	}
	if diff := cmp.Diff(idRange("ins", without(seq(0, 9), 1, 4, 5, 8)...), importedIDs(t, e.fake)); diff != "" {
		t.Errorf("events in Mixpanel (-want +got):\n%s", diff)
	}
	errs := e.errorsOf(t, job.ID)
	if diff := cmp.Diff([]int64{1, 4, 5}, indexes(errs, "mixpanel")); diff != "" {
		t.Errorf("Mixpanel's refusals (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int64{8}, indexes(errs, "client")); diff != "" {
		t.Errorf("the client's refusals (-want +got):\n%s", diff)
	}
	wantFields := []string{"properties.$insert_id", "properties.p", "properties.distinct_id", ""}
	var gotFields []string
	for _, x := range errs {
		gotFields = append(gotFields, x.Field)
	}
	if diff := cmp.Diff(wantFields, gotFields); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
	if errs[1].InsertID != "ins-4" {
		t.Errorf("refusal of index 4 names insert id %q, want ins-4", errs[1].InsertID)
	}
	for _, r := range e.fake.Requests(mptest.RouteImport) {
		if r.Query.Get("strict") != "1" || r.ContentEncoding != "gzip" {
			t.Errorf("import request %+v: want strict=1, gzip", r)
		}
	}

	// Sent again (a retried invocation): its outcome stands, nothing is sent.
	before := e.fake.Count(mptest.RouteImport)
	again, err := upload(e.x, t.Context(), ObjectActivities, "import-a-chunk-0001", strings.NewReader(lines(ls...)))
	if err != nil || !cmp.Equal(again, want) {
		t.Errorf("Upload again = %+v, %v; want %+v", again, err, want)
	}
	if got := e.fake.Count(mptest.RouteImport); got != before {
		t.Errorf("import requests %d -> %d for a chunk answered before", before, got)
	}
}

func TestUploadUsers(t *testing.T) {
	e := newImportEnv(t, envOpts{batch: 2, concurrency: 3})
	ls := make([]string, 7)
	for i := range ls {
		ls[i] = update(i)
	}
	// Refused by Mixpanel: two operations in one update.
	ls[3] = `{"$distinct_id":"u-3","$set":{"a":1},"$add":{"n":1}}`
	job, err := upload(e.x, t.Context(), ObjectUsers, "import-u-chunk-0001", strings.NewReader(lines(ls...)))
	if err != nil {
		t.Fatalf("Upload: %v", err)
	}
	if job.Status != ce.StatusCompleted || job.RecordsCount != 7 || job.RecordsFailedCount != 1 || job.ObjectName != ObjectUsers {
		t.Errorf("job = %+v, want COMPLETED users with 7 records, 1 failed", job)
	}
	if diff := cmp.Diff(idRange("u", without(seq(0, 6), 3)...), updatedIDs(t, e.fake)); diff != "" {
		t.Errorf("updates applied (-want +got):\n%s", diff)
	}
	errs := e.errorsOf(t, job.ID)
	if diff := cmp.Diff([]errorEntry{{Index: 3, Field: "$add", DistinctID: "u-3", Source: "mixpanel"}}, errs); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	for _, r := range e.fake.Requests(mptest.RouteEngage) {
		if r.Query.Get("strict") != "1" || r.Query.Get("verbose") != "1" || r.ContentEncoding != "" {
			t.Errorf("engage request %+v: want strict=1, verbose=1, no gzip", r)
		}
	}
}

// failingReader hands over its data, then fails (the importer's deadline).
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

var errDeadline = errors.New("stopped before the invocation's deadline")

// A chunk whose reader fails mid-way keeps what Mixpanel answered; sent
// again, it sends only the rest: no record twice.
func TestUploadInterruptedThenSentAgain(t *testing.T) {
	for _, object := range []string{ObjectActivities, ObjectUsers} {
		t.Run(object, func(t *testing.T) {
			e := newImportEnv(t, envOpts{batch: 3, concurrency: 2})
			line, route := event, mptest.RouteImport
			if object == ObjectUsers {
				line, route = update, mptest.RouteEngage
			}
			var ls []string
			for i := range 11 {
				ls = append(ls, line(i))
			}
			// The first 7 records, then the deadline: batches [0..2] and
			// [3..5] go out; record 6 waits in a batch that is never sent.
			first := &failingReader{r: strings.NewReader(lines(ls[:7]...)), err: errDeadline}
			job, err := upload(e.x, t.Context(), object, "import-r-chunk-0002", first)
			if !errors.Is(err, errDeadline) || job != nil {
				t.Fatalf("interrupted Upload = %+v, %v; want the reader's error", job, err)
			}
			var re interface{ Resendable() bool }
			if errors.As(err, &re) {
				t.Errorf("the reader's error %v is Resendable: the importer must see it as its own stop", err)
			}
			st := e.state(t, "import-r-chunk-0002")
			if st.Complete || st.Sends != 1 {
				t.Errorf("state after the stop = %+v", st)
			}
			if _, err := e.x.Status(t.Context(), jobOfChunk("import-r-chunk-0002")); err != nil {
				t.Errorf("Status of an interrupted chunk: %v", err)
			}
			sentFirst := e.fake.Count(route)
			if sentFirst != 2 {
				t.Errorf("requests before the stop = %d, want 2 batches", sentFirst)
			}

			job, err = upload(e.x, t.Context(), object, "import-r-chunk-0002", strings.NewReader(lines(ls...)))
			if err != nil {
				t.Fatalf("Upload again: %v", err)
			}
			if job.Status != ce.StatusCompleted || job.RecordsCount != 11 || job.RecordsFailedCount != 0 {
				t.Errorf("job = %+v, want COMPLETED with 11 records", job)
			}
			if got := e.fake.Count(route) - sentFirst; got != 2 {
				t.Errorf("requests of the second send = %d, want 2 (records 6..10 in batches of 3)", got)
			}
			if object == ObjectUsers {
				if diff := cmp.Diff(idRange("u", seq(0, 10)...), updatedIDs(t, e.fake)); diff != "" {
					t.Errorf("updates applied (-want +got):\n%s", diff)
				}
			} else {
				if diff := cmp.Diff(idRange("ins", seq(0, 10)...), importedIDs(t, e.fake)); diff != "" {
					t.Errorf("events stored (-want +got):\n%s", diff)
				}
				if accepted, dupes, _ := e.fake.ImportStats(); accepted != 11 || dupes != 0 {
					t.Errorf("import stats: %d accepted, %d duplicates; want 11, 0", accepted, dupes)
				}
			}
			if st := e.state(t, "import-r-chunk-0002"); st.Sends != 2 || !st.Complete {
				t.Errorf("state = %+v", st)
			}
		})
	}
}

// A profile batch whose answer is lost is never sent again: its records are
// reported as of unknown outcome.
func TestUploadLostProfileAnswer(t *testing.T) {
	tests := []struct {
		name  string
		fault mptest.Fault
		hc    *http.Client
	}{
		{name: "502 from a gateway", fault: mptest.Fault{Status: http.StatusBadGateway}},
		{name: "500", fault: mptest.Fault{Status: http.StatusInternalServerError}},
		// The answer takes longer than the client waits: the body was sent.
		{name: "timeout after the body", fault: mptest.Fault{Delay: 5 * time.Second}, hc: &http.Client{Timeout: 300 * time.Millisecond}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newImportEnv(t, envOpts{batch: 3, concurrency: 1, retries: 3, httpClient: tc.hc})
			e.fake.Fail(mptest.RouteEngage, mptest.Fault{}) // the first batch goes through
			e.fake.Fail(mptest.RouteEngage, tc.fault)       // the second one's answer is lost
			var ls []string
			for i := range 9 {
				ls = append(ls, update(i))
			}
			_, err := upload(e.x, t.Context(), ObjectUsers, "import-l-chunk-0001", strings.NewReader(lines(ls...)))
			var re interface{ Resendable() bool }
			if !errors.As(err, &re) || !re.Resendable() {
				t.Fatalf("Upload = %v, want a Resendable error", err)
			}
			var uo *mixpanel.UnknownOutcomeError
			if !errors.As(err, &uo) {
				t.Errorf("Upload = %v, want it to wrap the *mixpanel.UnknownOutcomeError", err)
			}
			if got := e.fake.Count(mptest.RouteEngage); got != 2 {
				t.Errorf("engage requests = %d, want 2 (the lost batch is not retried)", got)
			}

			job, err := upload(e.x, t.Context(), ObjectUsers, "import-l-chunk-0001", strings.NewReader(lines(ls...)))
			if err != nil {
				t.Fatalf("Upload again: %v", err)
			}
			if job.Status != ce.StatusCompleted || job.RecordsCount != 9 || job.RecordsFailedCount != 3 {
				t.Errorf("job = %+v, want COMPLETED, 9 records, 3 failed", job)
			}
			if got := e.fake.Count(mptest.RouteEngage); got != 3 {
				t.Errorf("engage requests = %d, want 3 (the second send skips the lost batch)", got)
			}
			if diff := cmp.Diff(idRange("u", 0, 1, 2, 6, 7, 8), updatedIDs(t, e.fake)); diff != "" {
				t.Errorf("updates applied (-want +got):\n%s", diff)
			}
			errs := e.errorsOf(t, job.ID)
			if diff := cmp.Diff([]int64{3, 4, 5}, indexes(errs, "unknown")); diff != "" || len(errs) != 3 {
				t.Errorf("unknown records (-want +got):\n%s\nall: %+v", diff, errs)
			}
		})
	}
}

// A batch sent again may span records whose outcome was lost before (the
// batch limits differ from the first send's): they stay unknown.
func TestUploadUnknownRecordsStayUnknown(t *testing.T) {
	// The first send: every batch refused for the rate limit except the
	// one holding u-3, whose answer is lost.
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		body, _ := io.ReadAll(r.Body)
		code := http.StatusTooManyRequests
		if bytes.Contains(body, []byte(`"u-3"`)) {
			code = http.StatusBadGateway
		} else {
			// Late, so that every batch is in flight before the first
			// failure stops the sending.
			time.Sleep(200 * time.Millisecond)
		}
		return &http.Response{StatusCode: code, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(strings.NewReader(`{"code":0,"error":"test","status":"x"}`)), Request: r}, nil
	})
	e := newImportEnv(t, envOpts{batch: 3, concurrency: 3, httpClient: &http.Client{Transport: rt}})
	var ls []string
	for i := range 9 {
		ls = append(ls, update(i))
	}
	_, err := upload(e.x, t.Context(), ObjectUsers, "import-o-chunk-0001", strings.NewReader(lines(ls...)))
	if err == nil {
		t.Fatal("first Upload succeeded")
	}
	st := e.state(t, "import-o-chunk-0001")
	if diff := cmp.Diff([]span{{3, 5}}, st.Unknown); diff != "" || len(st.Done) != 0 {
		t.Fatalf("state after the first send: done %v, unknown (-want +got):\n%s", st.Done, diff)
	}

	// Sent again with bigger batches, to Mixpanel: records 0..2 and 6..8
	// go in one batch.
	e.x.c = NewClient(staticSecret{mixpanelSecret()}, mixpanel.WithBaseURL(e.url), mixpanel.WithRetryJitter(0, 0))
	e.x.batchRecords = 6
	job, err := upload(e.x, t.Context(), ObjectUsers, "import-o-chunk-0001", strings.NewReader(lines(ls...)))
	if err != nil {
		t.Fatalf("Upload again: %v", err)
	}
	if job.RecordsCount != 9 || job.RecordsFailedCount != 3 {
		t.Errorf("job = %+v, want 9 records, 3 failed (unknown)", job)
	}
	if diff := cmp.Diff([]int64{3, 4, 5}, indexes(e.errorsOf(t, job.ID), "unknown")); diff != "" {
		t.Errorf("unknown records (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(idRange("u", 0, 1, 2, 6, 7, 8), updatedIDs(t, e.fake)); diff != "" {
		t.Errorf("updates applied (-want +got):\n%s", diff)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestUploadRateLimitedBeyondRetries(t *testing.T) {
	for _, object := range []string{ObjectActivities, ObjectUsers} {
		t.Run(object, func(t *testing.T) {
			e := newImportEnv(t, envOpts{batch: 2, concurrency: 1, retries: 2})
			line, route := event, mptest.RouteImport
			if object == ObjectUsers {
				line, route = update, mptest.RouteEngage
			}
			var ls []string
			for i := range 5 {
				ls = append(ls, line(i))
			}
			e.fake.Fail(route, mptest.Fault{})                                                              // batch [0..1] answered
			e.fake.Fail(route, mptest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "0", Times: 3}) // [2..3]: the first try and both retries
			_, err := upload(e.x, t.Context(), object, "import-t-chunk-0001", strings.NewReader(lines(ls...)))
			var ae *ce.APIError
			if !errors.As(err, &ae) || ae.StatusCode != http.StatusTooManyRequests || !ae.Throttled() {
				t.Fatalf("Upload = %v, want a *ce.APIError 429", err)
			}
			if got := e.fake.Count(route); got != 4 {
				t.Errorf("requests = %d, want 4 (one batch, then three tries of the next)", got)
			}
			job, err := upload(e.x, t.Context(), object, "import-t-chunk-0001", strings.NewReader(lines(ls...)))
			if err != nil || job.RecordsCount != 5 || job.RecordsFailedCount != 0 {
				t.Fatalf("Upload after the limit = %+v, %v", job, err)
			}
			if got := e.fake.Count(route); got != 6 {
				t.Errorf("requests = %d, want 6 (the answered batch is not sent again)", got)
			}
			if object == ObjectUsers {
				if diff := cmp.Diff(idRange("u", seq(0, 4)...), updatedIDs(t, e.fake)); diff != "" {
					t.Errorf("updates applied (-want +got):\n%s", diff)
				}
			} else if diff := cmp.Diff(idRange("ins", seq(0, 4)...), importedIDs(t, e.fake)); diff != "" {
				t.Errorf("events stored (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUploadUsersWithoutProjectToken(t *testing.T) {
	s := mixpanelSecret()
	s.ProjectToken = ""
	e := newImportEnv(t, envOpts{secret: &s})
	_, err := upload(e.x, t.Context(), ObjectUsers, "import-n-chunk-0001", strings.NewReader(lines(update(1))))
	var ae *ce.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest || !strings.Contains(ae.Message, "projectToken") {
		t.Fatalf("Upload = %v, want a *ce.APIError 400 naming projectToken", err)
	}
	var re interface{ Resendable() bool }
	if errors.As(err, &re) {
		t.Errorf("Upload = %v is Resendable; it can never succeed", err)
	}
	if got := e.fake.Count(""); got != 0 {
		t.Errorf("requests = %d, want none", got)
	}
	// Events need no token.
	if _, err := upload(e.x, t.Context(), ObjectActivities, "import-n-chunk-0002", strings.NewReader(lines(event(1)))); err != nil {
		t.Errorf("events without a project token: %v", err)
	}
}

func TestUploadRefusesBadInput(t *testing.T) {
	e := newImportEnv(t, envOpts{})
	for _, tc := range []struct{ object, file string }{
		{"accounts", "import-x-chunk-0001.json"},
		{ObjectUsers, ".json"},
		{ObjectUsers, "a/b.json"},
	} {
		if _, err := e.x.Upload(t.Context(), tc.object, strings.NewReader(lines(update(1))), ce.UploadOptions{FileName: tc.file}); err == nil {
			t.Errorf("Upload(%s, %q) succeeded", tc.object, tc.file)
		}
	}
	if got := e.fake.Count(""); got != 0 {
		t.Errorf("requests = %d, want none", got)
	}
}

func TestStatusAndErrorsOfUnknownJobs(t *testing.T) {
	e := newImportEnv(t, envOpts{})
	for _, id := range []string{"mp-chunk-nothing-here", "ce-123", "mp-chunk-"} {
		if _, err := e.x.Status(t.Context(), id); !errors.Is(err, ce.ErrNotFound) {
			t.Errorf("Status(%s) = %v, want ce.ErrNotFound", id, err)
		}
		for _, err := range e.x.Errors(t.Context(), id, 10) {
			if !errors.Is(err, ce.ErrNotFound) {
				t.Errorf("Errors(%s) = %v, want ce.ErrNotFound", id, err)
			}
		}
	}
}

// A refusal naming no record of the batch (an index out of range) is
// counted and reported without an index.
func TestUploadRefusalWithoutIndex(t *testing.T) {
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		_, _ = io.Copy(io.Discard, r.Body)
		return &http.Response{StatusCode: http.StatusBadRequest, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(strings.NewReader(`{"code":400,"error":"some data points in the request failed validation",` +
				`"failed_records":[{"index":99,"$insert_id":"ins-1","field":"properties.time","message":"bad"}],` +
				`"num_records_imported":1,"status":"Bad Request"}`)), Request: r}, nil
	})
	e := newImportEnv(t, envOpts{httpClient: &http.Client{Transport: rt}})
	job, err := upload(e.x, t.Context(), ObjectActivities, "import-i-chunk-0001", strings.NewReader(lines(event(0), event(1))))
	if err != nil {
		t.Fatalf("Upload: %v", err)
	}
	if job.RecordsCount != 2 || job.RecordsFailedCount != 1 {
		t.Errorf("job = %+v, want 2 records, 1 failed", job)
	}
	var raws []string
	for raw, err := range e.x.Errors(t.Context(), job.ID, 10) {
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, string(raw))
	}
	want := []string{`{"field":"properties.time","message":"bad","$insert_id":"ins-1","source":"mixpanel"}`}
	if diff := cmp.Diff(want, raws); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestSpanMinus(t *testing.T) {
	tests := []struct {
		s    span
		skip []span
		want []span
	}{
		{span{0, 9}, nil, []span{{0, 9}}},
		{span{0, 9}, []span{{3, 5}}, []span{{0, 2}, {6, 9}}},
		{span{0, 9}, []span{{0, 2}, {8, 12}}, []span{{3, 7}}},
		{span{3, 5}, []span{{0, 9}}, nil},
		{span{0, 9}, []span{{2, 2}, {4, 4}, {9, 9}}, []span{{0, 1}, {3, 3}, {5, 8}}},
		{span{5, 5}, []span{{0, 4}, {6, 7}}, []span{{5, 5}}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, tc.s.minus(tc.skip)); diff != "" {
			t.Errorf("%v minus %v (-want +got):\n%s", tc.s, tc.skip, diff)
		}
	}
}

// A send whose progress cannot be saved: profile batches were applied, so
// the chunk must not be sent again (Resendable false); events may be.
func TestUploadStateNotSaved(t *testing.T) {
	for _, tc := range []struct {
		object     string
		line       func(int) string
		resendable bool
	}{
		{ObjectUsers, update, false},
		{ObjectActivities, event, true},
	} {
		t.Run(tc.object, func(t *testing.T) {
			e := newImportEnv(t, envOpts{batch: 2})
			e.store.failWrites = errors.New("s3 is down")
			ls := make([]string, 5)
			for i := range ls {
				ls[i] = tc.line(i)
			}
			_, err := upload(e.x, t.Context(), tc.object, "import-s-chunk-0001", strings.NewReader(lines(ls...)))
			var re interface{ Resendable() bool }
			if !errors.As(err, &re) || re.Resendable() != tc.resendable || !strings.Contains(err.Error(), "s3 is down") {
				t.Fatalf("Upload error = %v; want Resendable() %v naming the cause", err, tc.resendable)
			}
		})
	}
}
