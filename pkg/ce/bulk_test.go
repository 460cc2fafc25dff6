package ce_test

// Flow tests: the real *ce.Client against the cetest emulator, over real
// HTTP (cetest.NewServer), or in memory under testing/synctest where the
// time logic itself is under test (STYLE S38, S39, S44). Poll and retry
// waits are 1ms, so no test sleeps for real.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/pkg/ce"
)

// flowNow is the emulator's clock in tests that need a fixed "now" (upload
// validation refuses events more than an hour in the future).
var flowNow = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// flowDay0 is the first of the three seeded days of activities.
var flowDay0 = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

// stepClock advances by step on every reading, so that a job with a
// CompletionDelay finishes after a few emulator observations, without any
// goroutine or sleep. It is safe for concurrent use.
type stepClock struct {
	start time.Time
	step  time.Duration
	n     atomic.Int64
}

func (c *stepClock) Now() time.Time { return c.start.Add(time.Duration(c.n.Add(1)) * c.step) }

// flowCreds returns the credentials the emulator accepts, as ce.Credentials.
func flowCreds(f *cetest.Fake) ce.Credentials {
	c := f.Credentials()
	return ce.Credentials{UserSecret: c.UserSecret, OrganizationSecret: c.OrganizationSecret, ElementToken: c.ElementToken}
}

// newFlowEnv starts an emulator behind a real HTTP server and returns a
// client for it with 1ms polls and retry waits of 1–5ms (4 retries); opts
// come after those defaults and may override them.
func newFlowEnv(t *testing.T, opts cetest.Options, copts ...ce.Option) (*ce.Client, *cetest.Fake) {
	t.Helper()
	srv, f := cetest.NewServer(t, opts)
	return newFlowClient(t, cetest.BaseURL(srv), flowCreds(f), copts...), f
}

func newFlowClient(t *testing.T, baseURL string, creds ce.Credentials, opts ...ce.Option) *ce.Client {
	t.Helper()
	all := append([]ce.Option{
		ce.WithRetry(4, time.Millisecond, 5*time.Millisecond),
		ce.WithPollInterval(time.Millisecond),
	}, opts...)
	c, err := ce.NewClient(baseURL, creds, all...)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

// newInMemoryClient returns a client that reaches f through f.Transport(),
// for tests inside a synctest bubble (which forbids real network). It keeps
// the client's default poll and retry settings unless opts change them.
func newInMemoryClient(t *testing.T, f *cetest.Fake, opts ...ce.Option) *ce.Client {
	t.Helper()
	all := append([]ce.Option{ce.WithHTTPClient(&http.Client{Transport: f.Transport()})}, opts...)
	c, err := ce.NewClient(cetest.InMemoryBaseURL, flowCreds(f), all...)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

// logRecorder is a slog.Handler keeping every record, for assertions on
// the client's retry and polling logs.
type logRecorder struct {
	mu   sync.Mutex
	recs []loggedRecord
}

type loggedRecord struct {
	Level slog.Level
	Msg   string
	Attrs map[string]string
}

type recordingHandler struct {
	r     *logRecorder
	attrs []slog.Attr
}

func (h recordingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h recordingHandler) Handle(_ context.Context, r slog.Record) error {
	rec := loggedRecord{Level: r.Level, Msg: r.Message, Attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.Attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs[a.Key] = a.Value.String()
		return true
	})
	h.r.mu.Lock()
	h.r.recs = append(h.r.recs, rec)
	h.r.mu.Unlock()
	return nil
}

func (h recordingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return recordingHandler{r: h.r, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h recordingHandler) WithGroup(string) slog.Handler { return h }

func (r *logRecorder) logger() *slog.Logger { return slog.New(recordingHandler{r: r}) }

// messages returns the records whose message is msg.
func (r *logRecorder) messages(msg string) []loggedRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []loggedRecord
	for _, rec := range r.recs {
		if rec.Msg == msg {
			out = append(out, rec)
		}
	}
	return out
}

func (r *logRecorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprint(r.recs)
}

// activity is the part of a Mixpanel event the download tests compare.
type activity struct {
	Event      string
	DistinctID string
	InsertID   string
	Time       int64
}

func activityOf(t *testing.T, raw json.RawMessage) activity {
	t.Helper()
	var v struct {
		Event      string `json:"event"`
		Properties struct {
			Time       json.Number `json:"time"`
			DistinctID string      `json:"distinct_id"`
			InsertID   string      `json:"$insert_id"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("record %s: %v", raw, err)
	}
	sec, err := v.Properties.Time.Int64()
	if err != nil {
		t.Fatalf("record %s: properties.time: %v", raw, err)
	}
	return activity{Event: v.Event, DistinctID: v.Properties.DistinctID, InsertID: v.Properties.InsertID, Time: sec}
}

// activityOfCSV reads a row of the CSV download, as NewCSVRecordReader
// turns it into JSON: flattened column names, string values.
func activityOfCSV(t *testing.T, raw json.RawMessage) activity {
	t.Helper()
	var row map[string]string
	if err := json.Unmarshal(raw, &row); err != nil {
		t.Fatalf("CSV row %s: %v", raw, err)
	}
	sec, err := strconv.ParseInt(row["properties.time"], 10, 64)
	if err != nil {
		t.Fatalf("CSV row %s: properties.time: %v", raw, err)
	}
	return activity{Event: row["event"], DistinctID: row["properties.distinct_id"], InsertID: row["properties.$insert_id"], Time: sec}
}

// generated returns copies of the records of g that keep accepts.
func generated(g cetest.Generator, keep func(json.RawMessage) bool) []json.RawMessage {
	var out []json.RawMessage
	g.Records(func(r cetest.Record) bool {
		if keep == nil || keep(r.JSON) {
			out = append(out, bytes.Clone(r.JSON))
		}
		return true
	})
	return out
}

// readRecords reads rr to its end. It returns the records read and the
// error that ended the stream (nil for a clean io.EOF).
func readRecords(rr *ce.RecordReader) ([]json.RawMessage, error) {
	var out []json.RawMessage
	for {
		rec, err := rr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, rec)
	}
}

// download downloads and decodes a job's records, failing the test on any
// error.
func download(ctx context.Context, t *testing.T, c *ce.Client, jobID, object, accept string) []json.RawMessage {
	t.Helper()
	var opts []ce.DownloadOption
	if accept != "" {
		opts = append(opts, ce.WithAccept(accept))
	}
	body, err := c.Download(ctx, jobID, object, opts...)
	if err != nil {
		t.Fatalf("Download(%s, %s) error = %v", jobID, object, err)
	}
	defer body.Close()
	rr := ce.NewRecordReader(body)
	if accept == ce.AcceptCSV {
		rr = ce.NewCSVRecordReader(body)
	}
	recs, err := readRecords(rr)
	if err != nil {
		t.Fatalf("reading download of job %s: %v (after %d records)", jobID, err, len(recs))
	}
	return recs
}

// startAndWait creates a download job and waits for it to complete.
func startAndWait(ctx context.Context, t *testing.T, c *ce.Client, q ce.QueryRequest) *ce.Job {
	t.Helper()
	created, err := c.StartQuery(ctx, q)
	if err != nil {
		t.Fatalf("StartQuery(%s) error = %v", q.Object, err)
	}
	if created.ID == "" || created.Status != ce.StatusCreated {
		t.Fatalf("StartQuery(%s) = %+v, want an id and status CREATED", q.Object, created)
	}
	job, err := c.Wait(ctx, created.ID)
	if err != nil {
		t.Fatalf("Wait(%s) error = %v", created.ID, err)
	}
	return job
}

func strs(raws []json.RawMessage) []string {
	out := make([]string, len(raws))
	for i, r := range raws {
		out[i] = string(r)
	}
	return out
}

// TestFlowDownloadActivities seeds three days of activities, downloads one
// day and checks that exactly that day's records arrive, in every framing
// the emulator serves.
func TestFlowDownloadActivities(t *testing.T) {
	gen := cetest.SampleActivities(42, 600, flowDay0, flowDay0.Add(72*time.Hour))
	from, to := flowDay0.Add(24*time.Hour), flowDay0.Add(48*time.Hour)
	inDay := func(raw json.RawMessage) bool {
		var v struct {
			Properties struct {
				Time int64 `json:"time"`
			} `json:"properties"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("seeded record %s: %v", raw, err)
		}
		return v.Properties.Time >= from.Unix() && v.Properties.Time < to.Unix()
	}
	wantRaw := generated(gen, inDay)
	if len(wantRaw) != 200 {
		t.Fatalf("test setup: %d seeded records in the day, want 200", len(wantRaw))
	}
	var want []activity
	for _, raw := range wantRaw {
		want = append(want, activityOf(t, raw))
	}

	tests := []struct {
		name           string
		downloadFormat string // cetest.Options.DownloadFormat
		accept         string // "" = the client's default
		wantRaw        bool   // the records arrive byte for byte (JSON framings)
	}{
		{name: "json array", downloadFormat: "array", wantRaw: true},
		{name: "json lines labelled application/json", downloadFormat: "jsonl", wantRaw: true},
		{name: "accept application/jsonl", downloadFormat: "array", accept: ce.AcceptJSONL, wantRaw: true},
		{name: "accept text/csv", downloadFormat: "array", accept: ce.AcceptCSV},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			c, f := newFlowEnv(t, cetest.Options{DownloadFormat: tc.downloadFormat})
			f.SeedGenerated("activities", gen)

			job := startAndWait(ctx, t, c, ce.QueryRequest{Object: "activities", From: from, To: to})
			wantJob := &ce.Job{ID: job.ID, Status: ce.StatusCompleted, ObjectName: "activities", Direction: "DOWNLOAD", RecordsCount: int64(len(want))}
			if diff := cmp.Diff(wantJob, job); diff != "" {
				t.Errorf("Wait job mismatch (-want +got):\n%s", diff)
			}
			jobs := f.Jobs()
			if len(jobs) != 1 || !jobs[0].From.Equal(from) || !jobs[0].To.Equal(to) {
				t.Errorf("emulator jobs = %+v, want one job with window [%v, %v)", jobs, from, to)
			}

			recs := download(ctx, t, c, job.ID, "activities", tc.accept)
			if int64(len(recs)) != job.RecordsCount {
				t.Errorf("downloaded %d records, want the job's recordsCount %d", len(recs), job.RecordsCount)
			}
			var got []activity
			for _, raw := range recs {
				a := activityOf
				if tc.accept == ce.AcceptCSV {
					a = activityOfCSV
				}
				got = append(got, a(t, raw))
			}
			for i, a := range got {
				if at := time.Unix(a.Time, 0); at.Before(from) || !at.Before(to) {
					t.Errorf("record %d at %v, outside [%v, %v)", i, at.UTC(), from, to)
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("downloaded activities mismatch (-want +got):\n%s", diff)
			}
			if tc.wantRaw {
				if diff := cmp.Diff(strs(wantRaw), strs(recs)); diff != "" {
					t.Errorf("downloaded records mismatch (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestFlowDownloadWindowBoundaries checks the edges of [from, to) and that a
// window given in another time zone selects the same instants.
func TestFlowDownloadWindowBoundaries(t *testing.T) {
	ctx := t.Context()
	from, to := flowDay0.Add(24*time.Hour), flowDay0.Add(48*time.Hour)
	at := []time.Time{from.Add(-time.Second), from, from.Add(time.Hour), to.Add(-time.Second), to, to.Add(time.Hour)}
	var seed []map[string]any
	for i, ts := range at {
		seed = append(seed, map[string]any{"event": "Edge", "properties": map[string]any{
			"time": ts.Unix(), "distinct_id": fmt.Sprintf("b-%d", i), "$insert_id": fmt.Sprintf("edge-%d", i),
		}})
	}
	c, f := newFlowEnv(t, cetest.Options{})
	f.Seed("activities", seed)

	pst := time.FixedZone("PST", -8*60*60)
	job := startAndWait(ctx, t, c, ce.QueryRequest{Object: "activities", From: from.In(pst), To: to.In(pst)})
	var got []activity
	for _, raw := range download(ctx, t, c, job.ID, "activities", "") {
		got = append(got, activityOf(t, raw))
	}
	want := []activity{
		{Event: "Edge", DistinctID: "b-1", InsertID: "edge-1", Time: at[1].Unix()},
		{Event: "Edge", DistinctID: "b-2", InsertID: "edge-2", Time: at[2].Unix()},
		{Event: "Edge", DistinctID: "b-3", InsertID: "edge-3", Time: at[3].Unix()},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("window [from, to) mismatch (-want +got):\n%s", diff)
	}
	if job.RecordsCount != int64(len(want)) {
		t.Errorf("job recordsCount = %d, want %d", job.RecordsCount, len(want))
	}
}

// TestFlowDownloadUsers downloads people profiles: all of them (from and to
// do not apply to users), a CEQL where subset, and CSV.
func TestFlowDownloadUsers(t *testing.T) {
	gen := cetest.SampleUsers(7, 60)
	plan := func(raw json.RawMessage) string {
		var v struct {
			Props struct {
				Plan string `json:"plan"`
			} `json:"$properties"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("seeded user %s: %v", raw, err)
		}
		return v.Props.Plan
	}
	all := generated(gen, nil)
	pro := generated(gen, func(raw json.RawMessage) bool { return plan(raw) == "pro" })
	if len(pro) == 0 || len(pro) == len(all) {
		t.Fatalf("test setup: %d of %d users on pro, want a proper subset", len(pro), len(all))
	}
	distinctIDs := func(raws []json.RawMessage, key string) []string {
		var out []string
		for _, raw := range raws {
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatalf("user %s: %v", raw, err)
			}
			id, _ := m[key].(string)
			out = append(out, id)
		}
		return out
	}

	tests := []struct {
		name   string
		query  ce.QueryRequest
		accept string
		want   []json.RawMessage
	}{
		{
			name:  "all users, window ignored",
			query: ce.QueryRequest{Object: "users", From: flowDay0, To: flowDay0.Add(time.Hour)},
			want:  all,
		},
		{
			name:  "where plan is pro",
			query: ce.QueryRequest{Object: "users", Query: `select * from users where query = '(properties["plan"] == "pro")'`},
			want:  pro,
		},
		{
			name:   "csv",
			query:  ce.QueryRequest{Object: "users"},
			accept: ce.AcceptCSV,
			want:   all,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			c, f := newFlowEnv(t, cetest.Options{})
			f.SeedGenerated("users", gen)
			job := startAndWait(ctx, t, c, tc.query)
			wantJob := &ce.Job{ID: job.ID, Status: ce.StatusCompleted, ObjectName: "users", Direction: "DOWNLOAD", RecordsCount: int64(len(tc.want))}
			if diff := cmp.Diff(wantJob, job); diff != "" {
				t.Errorf("Wait job mismatch (-want +got):\n%s", diff)
			}
			got := download(ctx, t, c, job.ID, "users", tc.accept)
			if tc.accept == ce.AcceptCSV {
				if diff := cmp.Diff(distinctIDs(tc.want, "$distinct_id"), distinctIDs(got, "$distinct_id")); diff != "" {
					t.Errorf("CSV $distinct_id column mismatch (-want +got):\n%s", diff)
				}
				return
			}
			if diff := cmp.Diff(strs(tc.want), strs(got)); diff != "" {
				t.Errorf("downloaded users mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFlowWaitCompletionDelay runs a job that takes a while on the
// emulator's clock: Wait must see RUNNING, keep polling and return at
// COMPLETED. The clock steps one second per reading, so nothing sleeps.
func TestFlowWaitCompletionDelay(t *testing.T) {
	ctx := t.Context()
	clk := &stepClock{start: flowNow, step: time.Second}
	var logs logRecorder
	c, f := newFlowEnv(t, cetest.Options{Now: clk.Now, CompletionDelay: 5 * time.Second}, ce.WithLogger(logs.logger()))
	f.Seed("activities", []map[string]any{
		{"event": "Login", "properties": map[string]any{"time": flowDay0.Unix(), "distinct_id": "u-1"}},
	})
	job := startAndWait(ctx, t, c, ce.QueryRequest{Object: "activities"})
	if job.Status != ce.StatusCompleted || job.RecordsCount != 1 {
		t.Errorf("Wait = %+v, want COMPLETED with 1 record", job)
	}
	var seen []string
	for _, rec := range logs.messages("ce: job not finished") {
		seen = append(seen, rec.Attrs["status"])
	}
	if len(seen) == 0 {
		t.Fatalf("Wait logged no unfinished poll, want RUNNING before COMPLETED; logs: %s", logs.String())
	}
	for i, s := range seen {
		if s != string(ce.StatusRunning) {
			t.Errorf("poll %d saw %q, want RUNNING", i, s)
		}
	}
	if got, want := f.Requests("GET /bulk/"+job.ID+"/status"), len(seen)+1; got != want {
		t.Errorf("status requests = %d, want %d (one per unfinished poll plus the final one)", got, want)
	}
}

// TestFlowWaitCompletionDelaySynctest runs the same lifecycle in a synctest
// bubble with the client's default 15s poll interval: Wait must return on
// the first poll after the one-minute CompletionDelay, at exactly the time
// the documented interval growth (a quarter per poll) predicts.
func TestFlowWaitCompletionDelaySynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := cetest.NewFake(cetest.Options{CompletionDelay: time.Minute})
		f.Seed("activities", []map[string]any{
			{"event": "Login", "properties": map[string]any{"time": time.Now().Add(-time.Hour).Unix(), "distinct_id": "u-1"}},
		})
		var logs logRecorder
		c := newInMemoryClient(t, f, ce.WithLogger(logs.logger()))
		start := time.Now()
		created, err := c.StartQuery(t.Context(), ce.QueryRequest{Object: "activities"})
		if err != nil {
			t.Fatalf("StartQuery error = %v", err)
		}
		job, err := c.Wait(t.Context(), created.ID)
		if err != nil {
			t.Fatalf("Wait error = %v", err)
		}
		// Polls at 0, 15s, 33.75s, 57.1875s (all before the 60s delay), then 86.484375s.
		if got, want := time.Since(start), 86484375*time.Microsecond; got != want {
			t.Errorf("Wait returned after %v, want %v", got, want)
		}
		wantJob := &ce.Job{ID: created.ID, Status: ce.StatusCompleted, ObjectName: "activities", Direction: "DOWNLOAD", RecordsCount: 1}
		if diff := cmp.Diff(wantJob, job); diff != "" {
			t.Errorf("Wait job mismatch (-want +got):\n%s", diff)
		}
		var seen []string
		for _, rec := range logs.messages("ce: job not finished") {
			seen = append(seen, rec.Attrs["status"])
		}
		if diff := cmp.Diff([]string{"RUNNING", "RUNNING", "RUNNING", "RUNNING"}, seen); diff != "" {
			t.Errorf("statuses seen before COMPLETED mismatch (-want +got):\n%s", diff)
		}
	})
}

// TestFlowJobFailures checks that every failed terminal state reaches the
// caller as a *ce.JobError with the job's status and CE's message.
func TestFlowJobFailures(t *testing.T) {
	startDownload := func(ctx context.Context, c *ce.Client) (*ce.Job, error) {
		return c.StartQuery(ctx, ce.QueryRequest{Object: "activities"})
	}
	startUpload := func(ctx context.Context, c *ce.Client) (*ce.Job, error) {
		line := fmt.Sprintf(`{"event":"Login","properties":{"time":%d,"distinct_id":"u-1"}}`, flowDay0.Unix())
		return c.Upload(ctx, "activities", strings.NewReader(line+"\n"), ce.UploadOptions{})
	}
	cancel := func(ctx context.Context, t *testing.T, c *ce.Client, id string) {
		t.Helper()
		st, err := c.Status(ctx, id)
		if err != nil {
			t.Fatalf("Status(%s) error = %v", id, err)
		}
		if st.Status != ce.StatusRunning {
			t.Fatalf("Status(%s) = %s before cancel, want RUNNING", id, st.Status)
		}
		if err := c.Cancel(ctx, id); err != nil {
			t.Fatalf("Cancel(%s) error = %v", id, err)
		}
	}
	// A frozen clock with a long delay keeps jobs RUNNING until cancelled.
	running := cetest.Options{Now: fixedClock(flowNow), CompletionDelay: time.Hour}
	const (
		vendorMsg = "Mixpanel export failed: 400 to_date is in the future"
		ceMsg     = "All prospects require either 'email' or 'id'"
	)

	tests := []struct {
		name    string
		opts    cetest.Options
		outcome [2]string // SetNextJobOutcome(status, message) when set
		start   func(context.Context, *ce.Client) (*ce.Job, error)
		act     func(context.Context, *testing.T, *ce.Client, string)
		want    ce.JobError // JobID filled in from the created job
	}{
		{
			name:    "download ERROR",
			opts:    cetest.Options{Now: fixedClock(flowNow)},
			outcome: [2]string{"ERROR", vendorMsg},
			start:   startDownload,
			want:    ce.JobError{Status: ce.StatusError, Message: vendorMsg},
		},
		{
			name:    "download ABORTED",
			opts:    cetest.Options{Now: fixedClock(flowNow)},
			outcome: [2]string{"ABORTED", ceMsg},
			start:   startDownload,
			want:    ce.JobError{Status: ce.StatusAborted, Message: ceMsg},
		},
		{
			name:    "upload ERROR",
			opts:    cetest.Options{Now: fixedClock(flowNow)},
			outcome: [2]string{"ERROR", vendorMsg},
			start:   startUpload,
			want:    ce.JobError{Status: ce.StatusError, Message: vendorMsg},
		},
		{
			name:  "download CANCELLED",
			opts:  running,
			start: startDownload,
			act:   cancel,
			want:  ce.JobError{Status: ce.StatusCancelled},
		},
		{
			name:  "upload CANCELLED",
			opts:  running,
			start: startUpload,
			act:   cancel,
			want:  ce.JobError{Status: ce.StatusCancelled},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			c, f := newFlowEnv(t, tc.opts)
			f.Seed("activities", []map[string]any{
				{"event": "Login", "properties": map[string]any{"time": flowDay0.Unix(), "distinct_id": "u-1"}},
			})
			if tc.outcome[0] != "" {
				f.SetNextJobOutcome(tc.outcome[0], tc.outcome[1])
			}
			created, err := tc.start(ctx, c)
			if err != nil {
				t.Fatalf("start error = %v", err)
			}
			if tc.act != nil {
				tc.act(ctx, t, c, created.ID)
			}
			job, err := c.Wait(ctx, created.ID)
			var jobErr *ce.JobError
			if !errors.As(err, &jobErr) {
				t.Fatalf("Wait(%s) error = %v, want a *ce.JobError", created.ID, err)
			}
			want := tc.want
			want.JobID = created.ID
			if diff := cmp.Diff(want, *jobErr); diff != "" {
				t.Errorf("Wait JobError mismatch (-want +got):\n%s", diff)
			}
			if job == nil || job.Status != tc.want.Status {
				t.Errorf("Wait job = %+v, want status %s", job, tc.want.Status)
			}
			if got := f.Uploaded("activities"); len(got) != 0 {
				t.Errorf("Uploaded(activities) = %s, want nothing from a failed job", got)
			}
			// A failed job has no file: Download must fail, not stream.
			if body, err := c.Download(ctx, created.ID, "activities"); err == nil {
				body.Close()
				t.Errorf("Download of a %s job succeeded, want an error", tc.want.Status)
			} else if apiErr := (*ce.APIError)(nil); !errors.As(err, &apiErr) || apiErr.StatusCode/100 != 4 {
				t.Errorf("Download of a %s job error = %v, want a 4xx *ce.APIError", tc.want.Status, err)
			}
			// Cancelling a terminal job is refused.
			var apiErr *ce.APIError
			if err := c.Cancel(ctx, created.ID); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest {
				t.Errorf("Cancel of a %s job error = %v, want a 400 *ce.APIError", tc.want.Status, err)
			}
		})
	}
}

// uploadRecord is one line of an upload test file and what the emulator
// should make of it.
type uploadRecord struct {
	line    string
	bad     bool   // the record must be reported as failed
	field   string // the failing field reported in /errors
	status  string // the exact error message, when the test decides it
	notJSON bool   // only fits a JSON lines file
}

// recordError is the part of a /errors element the tests compare.
type recordError struct {
	Index  int64  `json:"index"`
	Field  string `json:"field"`
	Status string `json:"status"`
}

// TestFlowUpload uploads files mixing good and bad records and checks the
// counts, the paged per-record errors and the records Mixpanel received.
func TestFlowUpload(t *testing.T) {
	const blockedMsg = "blocked by vendor: user is opted out"
	ts := flowDay0.Add(10 * time.Hour).Unix()
	activities := []uploadRecord{
		{line: fmt.Sprintf(`{"event": "Signed Up", "properties": {"time": %d, "distinct_id": "u-1", "$insert_id": "ins-0001", "plan": "pro"}}`, ts)},
		{line: `{"event":"Login","properties":{"distinct_id":"u-2","$insert_id":"ins-0002"}}`, bad: true, field: "properties.time"},
		{line: fmt.Sprintf(`{"event":"Purchase","properties":{"time":%d,"distinct_id":"u-3","amount":12.5}}`, ts+60)},
		{line: fmt.Sprintf(`{"event":"Login","properties":{"time":%d,"distinct_id":"u-4","$insert_id":"bad id!"}}`, ts+120), bad: true, field: "properties.$insert_id"},
		{line: fmt.Sprintf(`{"event":"Login","properties":{"time":%d,"distinct_id":"u-blocked"}}`, ts+180), bad: true, status: blockedMsg},
		{line: `{"event":"Broken","properties":`, bad: true, notJSON: true},
		{line: fmt.Sprintf(`{"properties":{"time":%d,"distinct_id":"u-5"}}`, ts), bad: true, field: "event"},
		{line: fmt.Sprintf(`{"event":"Login","properties":{"time":%d,"distinct_id":"u-6"}}`, flowNow.Add(2*time.Hour).Unix()), bad: true, field: "properties.time"},
		{line: fmt.Sprintf(`{"event":"Logout","properties":{"time":%d,"distinct_id":"u-1"}}`, ts+240)},
	}
	users := []uploadRecord{
		{line: `{"$distinct_id":"u-1","$set":{"plan":"pro","$email":"ada@example.com"}}`},
		{line: `{"$set":{"plan":"free"}}`, bad: true, field: "$distinct_id"},
		{line: `{"$distinct_id":"u-2"}`, bad: true},
		{line: `{"$distinct_id":"u-blocked","$set":{"plan":"pro"}}`, bad: true, status: blockedMsg},
		{line: `{"$distinct_id":"u-3","$unset":["plan"]}`},
		{line: `{"$distinct_id":"u-4","$add":{"credits":5}}`},
	}
	hook := func(object string, rec map[string]any) string {
		id := rec["$distinct_id"]
		if props, ok := rec["properties"].(map[string]any); ok {
			id = props["distinct_id"]
		}
		if id == "u-blocked" {
			return blockedMsg
		}
		return ""
	}

	tests := []struct {
		name     string
		object   string
		records  []uploadRecord
		array    bool // send a JSON array instead of JSON lines
		pageSize int
	}{
		{name: "activities json lines", object: "activities", records: activities, pageSize: 2},
		{name: "activities json array", object: "activities", records: activities, array: true, pageSize: 3},
		{name: "users json lines", object: "users", records: users, pageSize: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			c, f := newFlowEnv(t, cetest.Options{Now: fixedClock(flowNow)})
			f.FailRecordsMatching(hook)

			var (
				lines      []string
				wantErrs   []recordError
				wantStored []string
				failed     int64
			)
			for _, r := range tc.records {
				if tc.array && r.notJSON {
					continue // a broken element fails a whole array file
				}
				index := int64(len(lines))
				lines = append(lines, r.line)
				if r.bad {
					failed++
					wantErrs = append(wantErrs, recordError{Index: index, Field: r.field, Status: r.status})
					continue
				}
				var buf bytes.Buffer
				if err := json.Compact(&buf, []byte(r.line)); err != nil {
					t.Fatalf("test setup: good record %s: %v", r.line, err)
				}
				wantStored = append(wantStored, buf.String())
			}
			file := strings.Join(lines, "\n") + "\n"
			if tc.array {
				file = "[\n" + strings.Join(lines, ",\n") + "\n]\n"
			}

			created, err := c.Upload(ctx, tc.object, strings.NewReader(file), ce.UploadOptions{})
			if err != nil {
				t.Fatalf("Upload error = %v", err)
			}
			if created.ID == "" || created.Status != ce.StatusCreated {
				t.Errorf("Upload = %+v, want an id and status CREATED", created)
			}
			job, err := c.Wait(ctx, created.ID)
			if err != nil {
				t.Fatalf("Wait(%s) error = %v", created.ID, err)
			}
			wantJob := &ce.Job{
				ID: created.ID, Status: ce.StatusCompleted, ObjectName: tc.object, Direction: "UPLOAD",
				RecordsCount: int64(len(lines)), RecordsFailedCount: failed,
			}
			if diff := cmp.Diff(wantJob, job); diff != "" {
				t.Errorf("Wait job mismatch (-want +got):\n%s", diff)
			}

			var gotErrs []recordError
			for raw, err := range c.Errors(ctx, created.ID, tc.pageSize) {
				if err != nil {
					t.Fatalf("Errors(%s, %d) error = %v", created.ID, tc.pageSize, err)
				}
				var e recordError
				if err := json.Unmarshal(raw, &e); err != nil {
					t.Fatalf("error element %s: %v", raw, err)
				}
				if e.Status == "" {
					t.Errorf("error element %s has no status message", raw)
				}
				gotErrs = append(gotErrs, e)
			}
			// Compare messages only where the test decided them.
			for i := range gotErrs {
				if i < len(wantErrs) && wantErrs[i].Status == "" {
					gotErrs[i].Status = ""
				}
			}
			if diff := cmp.Diff(wantErrs, gotErrs); diff != "" {
				t.Errorf("per-record errors mismatch (-want +got):\n%s", diff)
			}
			pages := (len(wantErrs) + tc.pageSize - 1) / tc.pageSize
			if got := f.Requests("GET /bulk/" + created.ID + "/errors"); got != pages {
				t.Errorf("error page requests = %d, want %d (%d errors, pageSize %d)", got, pages, len(wantErrs), tc.pageSize)
			}
			if diff := cmp.Diff(wantStored, strs(f.Uploaded(tc.object))); diff != "" {
				t.Errorf("Uploaded(%s) mismatch (-want +got):\n%s", tc.object, diff)
			}
		})
	}
}

// TestFlowRetries injects one or more failures with FailNext before a call
// and checks which calls the client retries (idempotent requests and
// refusals of job-creating POSTs), and which it returns at once.
func TestFlowRetries(t *testing.T) {
	type op func(ctx context.Context, c *ce.Client, jobID string) error
	status := func(ctx context.Context, c *ce.Client, id string) error {
		_, err := c.Status(ctx, id)
		return err
	}
	startQuery := func(ctx context.Context, c *ce.Client, _ string) error {
		_, err := c.StartQuery(ctx, ce.QueryRequest{Object: "activities"})
		return err
	}
	downloadAll := func(ctx context.Context, c *ce.Client, id string) error {
		body, err := c.Download(ctx, id, "activities")
		if err != nil {
			return err
		}
		defer body.Close()
		_, err = readRecords(ce.NewRecordReader(body))
		return err
	}
	upload := func(ctx context.Context, c *ce.Client, _ string) error {
		line := fmt.Sprintf(`{"event":"Login","properties":{"time":%d,"distinct_id":"u-1"}}`, flowDay0.Unix())
		_, err := c.Upload(ctx, "activities", strings.NewReader(line+"\n"), ce.UploadOptions{})
		return err
	}
	errorsAll := func(ctx context.Context, c *ce.Client, id string) error {
		for _, err := range c.Errors(ctx, id, 10) {
			if err != nil {
				return err
			}
		}
		return nil
	}
	jobsAll := func(ctx context.Context, c *ce.Client, _ string) error {
		for _, err := range c.Jobs(ctx, "") {
			if err != nil {
				return err
			}
		}
		return nil
	}

	tests := []struct {
		name       string
		method     string
		suffix     string // FailNext path suffix; "{id}" is the setup job's id
		status     int
		retryAfter string
		times      int // failures queued (default 1)
		call       op
		count      string // Requests key; "{id}" is the setup job's id
		wantReqs   int
		wantStatus int  // 0: the call succeeds; else the *ce.APIError status
		wantNewJob int  // jobs the call must create
		rateLimit  bool // the error must match ce.ErrRateLimited
	}{
		{name: "status 429 Retry-After 0", method: "GET", suffix: "/status", status: 429, retryAfter: "0", call: status, count: "GET /bulk/{id}/status", wantReqs: 2},
		{name: "status 429 Retry-After 1 capped by maxWait", method: "GET", suffix: "/status", status: 429, retryAfter: "1", call: status, count: "GET /bulk/{id}/status", wantReqs: 2},
		{name: "status 503 retried", method: "GET", suffix: "/status", status: 503, call: status, count: "GET /bulk/{id}/status", wantReqs: 2},
		{name: "status 500 retried", method: "GET", suffix: "/status", status: 500, call: status, count: "GET /bulk/{id}/status", wantReqs: 2},
		{name: "status 502 twice retried", method: "GET", suffix: "/status", status: 502, times: 2, call: status, count: "GET /bulk/{id}/status", wantReqs: 3},
		{name: "status 501 not retried", method: "GET", suffix: "/status", status: 501, call: status, count: "GET /bulk/{id}/status", wantReqs: 1, wantStatus: 501},
		{name: "status 400 not retried", method: "GET", suffix: "/status", status: 400, call: status, count: "GET /bulk/{id}/status", wantReqs: 1, wantStatus: 400},
		{name: "status 503 retries exhausted", method: "GET", suffix: "/status", status: 503, times: 5, call: status, count: "GET /bulk/{id}/status", wantReqs: 5, wantStatus: 503},
		{name: "status 429 retries exhausted", method: "GET", suffix: "/status", status: 429, retryAfter: "0", times: 5, call: status, count: "GET /bulk/{id}/status", wantReqs: 5, wantStatus: 429, rateLimit: true},
		{name: "start query 429 refusal retried", method: "POST", suffix: "/bulk/query", status: 429, retryAfter: "0", call: startQuery, count: "POST /bulk/query", wantReqs: 2, wantNewJob: 1},
		{name: "start query 503 refusal retried", method: "POST", suffix: "/bulk/query", status: 503, call: startQuery, count: "POST /bulk/query", wantReqs: 2, wantNewJob: 1},
		{name: "start query 500 not retried", method: "POST", suffix: "/bulk/query", status: 500, call: startQuery, count: "POST /bulk/query", wantReqs: 1, wantStatus: 500},
		{name: "start query 502 not retried", method: "POST", suffix: "/bulk/query", status: 502, call: startQuery, count: "POST /bulk/query", wantReqs: 1, wantStatus: 502},
		{name: "download 502 retried", method: "GET", suffix: "/{id}/activities", status: 502, call: downloadAll, count: "GET /bulk/{id}/activities", wantReqs: 2},
		{name: "download 429 retried", method: "GET", suffix: "/{id}/activities", status: 429, retryAfter: "0", call: downloadAll, count: "GET /bulk/{id}/activities", wantReqs: 2},
		{name: "errors page 503 retried", method: "GET", suffix: "/errors", status: 503, call: errorsAll, count: "GET /bulk/{id}/errors", wantReqs: 2},
		{name: "jobs 500 retried", method: "GET", suffix: "/bulk/jobs", status: 500, call: jobsAll, count: "GET /bulk/jobs", wantReqs: 2},
		{name: "upload 429 not retried (stream)", method: "POST", suffix: "/bulk/activities", status: 429, retryAfter: "0", call: upload, count: "POST /bulk/activities", wantReqs: 1, wantStatus: 429, rateLimit: true},
		{name: "upload 500 not retried", method: "POST", suffix: "/bulk/activities", status: 500, call: upload, count: "POST /bulk/activities", wantReqs: 1, wantStatus: 500},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			var logs logRecorder
			c, f := newFlowEnv(t, cetest.Options{Now: fixedClock(flowNow)}, ce.WithLogger(logs.logger()))
			f.Seed("activities", []map[string]any{
				{"event": "Login", "properties": map[string]any{"time": flowDay0.Unix(), "distinct_id": "u-1"}},
			})
			setup := startAndWait(ctx, t, c, ce.QueryRequest{Object: "activities"})
			expand := func(s string) string { return strings.ReplaceAll(s, "{id}", setup.ID) }
			count := expand(tc.count)
			before, jobsBefore := f.Requests(count), len(f.Jobs())
			for range max(1, tc.times) {
				f.FailNext(tc.method, expand(tc.suffix), tc.status, tc.retryAfter)
			}

			err := tc.call(ctx, c, setup.ID)

			if got := f.Requests(count) - before; got != tc.wantReqs {
				t.Errorf("%s requests = %d, want %d", count, got, tc.wantReqs)
			}
			if got := len(f.Jobs()) - jobsBefore; got != tc.wantNewJob {
				t.Errorf("jobs created = %d, want %d", got, tc.wantNewJob)
			}
			if retries := len(logs.messages("ce: retrying request")); retries != tc.wantReqs-1 {
				t.Errorf("retry log records = %d, want %d", retries, tc.wantReqs-1)
			}
			if tc.wantStatus == 0 {
				if err != nil {
					t.Errorf("call error = %v, want success after retry", err)
				}
				return
			}
			var apiErr *ce.APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("call error = %v, want a *ce.APIError %d", err, tc.wantStatus)
			}
			if apiErr.StatusCode != tc.wantStatus {
				t.Errorf("APIError.StatusCode = %d, want %d", apiErr.StatusCode, tc.wantStatus)
			}
			if apiErr.Method != tc.method || strings.Contains(apiErr.Path, "?") || !strings.HasSuffix(apiErr.Path, expand(tc.suffix)) {
				t.Errorf("APIError method, path = %q, %q, want %s and a path ending in %s without a query", apiErr.Method, apiErr.Path, tc.method, expand(tc.suffix))
			}
			if apiErr.Message == "" || apiErr.RequestID == "" {
				t.Errorf("APIError = %+v, want CE's message and requestId decoded", apiErr)
			}
			if got := errors.Is(err, ce.ErrRateLimited); got != tc.rateLimit {
				t.Errorf("errors.Is(err, ErrRateLimited) = %v, want %v", got, tc.rateLimit)
			}
		})
	}
}

// TestFlowRetryAfterSynctest measures, on synctest's clock, how long the
// client waits after a 429: Retry-After is honoured and capped by the
// retry policy's maxWait; without it the backoff applies.
func TestFlowRetryAfterSynctest(t *testing.T) {
	tests := []struct {
		name       string
		retryAfter func() string // evaluated inside the bubble
		retry      ce.Option     // nil: the client's defaults (4, 500ms, 30s)
		want       time.Duration
	}{
		{name: "0 seconds", retryAfter: func() string { return "0" }, retry: ce.WithRetry(4, time.Millisecond, 5*time.Millisecond), want: 0},
		{name: "1 second capped at 5ms", retryAfter: func() string { return "1" }, retry: ce.WithRetry(4, time.Millisecond, 5*time.Millisecond), want: 5 * time.Millisecond},
		{name: "1 second with defaults", retryAfter: func() string { return "1" }, want: time.Second},
		{name: "120 seconds capped at the default 30s", retryAfter: func() string { return "120" }, want: 30 * time.Second},
		{name: "HTTP date 3s ahead", retryAfter: func() string { return time.Now().Add(3 * time.Second).UTC().Format(http.TimeFormat) }, want: 3 * time.Second},
		{name: "absent: backoff minWait", retryAfter: func() string { return "" }, retry: ce.WithRetry(4, time.Millisecond, 5*time.Millisecond), want: time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := cetest.NewFake(cetest.Options{})
				c := newInMemoryClient(t, f, tc.retry)
				created, err := c.StartQuery(t.Context(), ce.QueryRequest{Object: "activities"})
				if err != nil {
					t.Fatalf("StartQuery error = %v", err)
				}
				f.FailNext("GET", "/status", http.StatusTooManyRequests, tc.retryAfter())
				start := time.Now()
				if _, err := c.Status(t.Context(), created.ID); err != nil {
					t.Fatalf("Status error = %v, want success after one retry", err)
				}
				if got := time.Since(start); got != tc.want {
					t.Errorf("Status took %v, want %v", got, tc.want)
				}
				if got := f.Requests("/status"); got != 2 {
					t.Errorf("status requests = %d, want 2", got)
				}
			})
		})
	}
}

// TestFlowUnauthorized uses wrong credentials: every call fails with
// ErrUnauthorized at once, and no error or log shows a secret.
func TestFlowUnauthorized(t *testing.T) {
	wrong := ce.Credentials{
		UserSecret:         "wrong-usr-SECRET-4b1d",
		OrganizationSecret: "wrong-org-SECRET-93aa",
		ElementToken:       "wrong-elm-TOKEN-77e0",
	}
	tests := []struct {
		name  string
		count string
		call  func(context.Context, *ce.Client) error
	}{
		{name: "start query", count: "POST /bulk/query", call: func(ctx context.Context, c *ce.Client) error {
			_, err := c.StartQuery(ctx, ce.QueryRequest{Object: "activities"})
			return err
		}},
		{name: "status", count: "GET /bulk/1001/status", call: func(ctx context.Context, c *ce.Client) error {
			_, err := c.Status(ctx, "1001")
			return err
		}},
		{name: "wait", count: "GET /bulk/1001/status", call: func(ctx context.Context, c *ce.Client) error {
			_, err := c.Wait(ctx, "1001")
			return err
		}},
		{name: "download", count: "GET /bulk/1001/activities", call: func(ctx context.Context, c *ce.Client) error {
			body, err := c.Download(ctx, "1001", "activities")
			if err == nil {
				body.Close()
			}
			return err
		}},
		{name: "upload", count: "POST /bulk/activities", call: func(ctx context.Context, c *ce.Client) error {
			_, err := c.Upload(ctx, "activities", strings.NewReader(`{"event":"x","properties":{}}`+"\n"), ce.UploadOptions{})
			return err
		}},
		{name: "jobs", count: "GET /bulk/jobs", call: func(ctx context.Context, c *ce.Client) error {
			for _, err := range c.Jobs(ctx, "") {
				if err != nil {
					return err
				}
			}
			return nil
		}},
		{name: "cancel", count: "PUT /bulk/1001/cancel", call: func(ctx context.Context, c *ce.Client) error {
			return c.Cancel(ctx, "1001")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, f := cetest.NewServer(t, cetest.Options{})
			var logs logRecorder
			c := newFlowClient(t, cetest.BaseURL(srv), wrong, ce.WithLogger(logs.logger()))

			err := tc.call(t.Context(), c)
			if !errors.Is(err, ce.ErrUnauthorized) {
				t.Fatalf("error = %v, want ce.ErrUnauthorized", err)
			}
			var apiErr *ce.APIError
			if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized {
				t.Errorf("error = %#v, want a 401 *ce.APIError", err)
			}
			if got := f.Requests(tc.count); got != 1 {
				t.Errorf("%s requests = %d, want 1 (401 is never retried)", tc.count, got)
			}
			text := err.Error() + fmt.Sprintf(" %+v ", err) + logs.String()
			if apiErr != nil {
				text += string(apiErr.Body) + apiErr.Message
			}
			for _, secret := range []string{wrong.UserSecret, wrong.OrganizationSecret, wrong.ElementToken} {
				if strings.Contains(text, secret) {
					t.Errorf("error or logs contain the credential %q: %s", secret, text)
				}
			}
		})
	}
}

// TestFlowClientErrors checks the errors of calls CE refuses: unknown jobs
// (ErrNotFound) and a download in a format CE cannot produce.
func TestFlowClientErrors(t *testing.T) {
	const unknown = "999999"
	tests := []struct {
		name       string
		count      string
		call       func(ctx context.Context, c *ce.Client, jobID string) error
		wantStatus int
		notFound   bool
	}{
		{name: "status of unknown job", count: "GET /bulk/" + unknown + "/status", wantStatus: 404, notFound: true,
			call: func(ctx context.Context, c *ce.Client, _ string) error { _, err := c.Status(ctx, unknown); return err }},
		{name: "wait for unknown job", count: "GET /bulk/" + unknown + "/status", wantStatus: 404, notFound: true,
			call: func(ctx context.Context, c *ce.Client, _ string) error { _, err := c.Wait(ctx, unknown); return err }},
		{name: "download of unknown job", count: "GET /bulk/" + unknown + "/activities", wantStatus: 404, notFound: true,
			call: func(ctx context.Context, c *ce.Client, _ string) error {
				body, err := c.Download(ctx, unknown, "activities")
				if err == nil {
					body.Close()
				}
				return err
			}},
		{name: "cancel of unknown job", count: "PUT /bulk/" + unknown + "/cancel", wantStatus: 404, notFound: true,
			call: func(ctx context.Context, c *ce.Client, _ string) error { return c.Cancel(ctx, unknown) }},
		{name: "errors of unknown job", count: "GET /bulk/" + unknown + "/errors", wantStatus: 404, notFound: true,
			call: func(ctx context.Context, c *ce.Client, _ string) error {
				for _, err := range c.Errors(ctx, unknown, 0) {
					if err != nil {
						return err
					}
				}
				return nil
			}},
		{name: "download with an unsupported Accept", count: "/activities", wantStatus: 406,
			call: func(ctx context.Context, c *ce.Client, id string) error {
				body, err := c.Download(ctx, id, "activities", ce.WithAccept("application/xml"))
				if err == nil {
					body.Close()
				}
				return err
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			c, f := newFlowEnv(t, cetest.Options{})
			setup := startAndWait(ctx, t, c, ce.QueryRequest{Object: "activities"})
			err := tc.call(ctx, c, setup.ID)
			var apiErr *ce.APIError
			if !errors.As(err, &apiErr) || apiErr.StatusCode != tc.wantStatus {
				t.Fatalf("error = %v, want a *ce.APIError %d", err, tc.wantStatus)
			}
			if got := errors.Is(err, ce.ErrNotFound); got != tc.notFound {
				t.Errorf("errors.Is(err, ErrNotFound) = %v, want %v", got, tc.notFound)
			}
			if got := f.Requests(tc.count); got != 1 {
				t.Errorf("%s requests = %d, want 1 (a 4xx is never retried)", tc.count, got)
			}
		})
	}
}

// TestFlowCutDownload cuts the download connection: reading must end in an
// error, never in a clean but short stream, including when the cut comes
// after the last byte of the body.
func TestFlowCutDownload(t *testing.T) {
	gen := cetest.SampleActivities(3, 60, flowDay0, flowDay0.Add(72*time.Hour))
	total := len(generated(gen, nil))
	tests := []struct {
		name           string
		downloadFormat string
		accept         string
		reader         string // "raw", "json" or "csv"
		cut            int64
	}{
		{name: "raw body", downloadFormat: "array", reader: "raw", cut: 1000},
		{name: "json array", downloadFormat: "array", reader: "json", cut: 1000},
		{name: "json lines", downloadFormat: "jsonl", reader: "json", cut: 1000},
		{name: "csv", downloadFormat: "array", accept: ce.AcceptCSV, reader: "csv", cut: 1000},
		{name: "json array cut after its end", downloadFormat: "array", reader: "json", cut: 1 << 30},
		{name: "json lines cut after its end", downloadFormat: "jsonl", reader: "json", cut: 1 << 30},
		{name: "csv cut after its end", downloadFormat: "array", accept: ce.AcceptCSV, reader: "csv", cut: 1 << 30},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			c, f := newFlowEnv(t, cetest.Options{DownloadFormat: tc.downloadFormat})
			f.SeedGenerated("activities", gen)
			job := startAndWait(ctx, t, c, ce.QueryRequest{Object: "activities"})
			f.CutNextDownload(tc.cut)

			var opts []ce.DownloadOption
			if tc.accept != "" {
				opts = append(opts, ce.WithAccept(tc.accept))
			}
			body, err := c.Download(ctx, job.ID, "activities", opts...)
			if err != nil {
				t.Fatalf("Download error = %v, want the headers to arrive", err)
			}
			defer body.Close()

			switch tc.reader {
			case "raw":
				n, err := io.Copy(io.Discard, body)
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("reading the body: error = %v, want io.ErrUnexpectedEOF", err)
				}
				if n != tc.cut {
					t.Errorf("read %d bytes before the error, want the %d sent", n, tc.cut)
				}
			default:
				rr := ce.NewRecordReader(body)
				if tc.reader == "csv" {
					rr = ce.NewCSVRecordReader(body)
				}
				recs, err := readRecords(rr)
				var decErr *ce.DecodeError
				if !errors.As(err, &decErr) {
					t.Fatalf("reading records: error = %v after %d records, want a *ce.DecodeError", err, len(recs))
				}
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("reading records: error = %v, want it to wrap io.ErrUnexpectedEOF", err)
				}
				if decErr.Index != int64(len(recs)) {
					t.Errorf("DecodeError.Index = %d, want %d (the record after the last one read)", decErr.Index, len(recs))
				}
				if tc.cut < 1<<30 && len(recs) >= total {
					t.Errorf("read %d records from a body cut at %d bytes, want fewer than %d", len(recs), tc.cut, total)
				}
				if tc.cut >= 1<<30 && len(recs) != total {
					t.Errorf("read %d records before the error, want all %d", len(recs), total)
				}
			}
		})
	}
}

// TestFlowSlowNext delays CE's answer past the caller's deadline over real
// HTTP: the call fails with context.DeadlineExceeded and is not retried.
func TestFlowSlowNext(t *testing.T) {
	tests := []struct {
		name  string
		count string
		call  func(ctx context.Context, c *ce.Client, jobID string) error
	}{
		{name: "start query", count: "POST /bulk/query", call: func(ctx context.Context, c *ce.Client, _ string) error {
			_, err := c.StartQuery(ctx, ce.QueryRequest{Object: "activities"})
			return err
		}},
		{name: "download", count: "GET /bulk/{id}/activities", call: func(ctx context.Context, c *ce.Client, id string) error {
			body, err := c.Download(ctx, id, "activities")
			if err == nil {
				body.Close()
			}
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, f := newFlowEnv(t, cetest.Options{})
			setup := startAndWait(t.Context(), t, c, ce.QueryRequest{Object: "activities"})
			count := strings.ReplaceAll(tc.count, "{id}", setup.ID)
			before := f.Requests(count)
			f.SlowNext(time.Minute)
			ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
			defer cancel()
			err := tc.call(ctx, c, setup.ID)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error = %v, want context.DeadlineExceeded", err)
			}
			// At most one: on a loaded machine the deadline may pass before
			// the request reaches the emulator. TestFlowSlowNextSynctest
			// checks exactly one.
			if got := f.Requests(count) - before; got > 1 {
				t.Errorf("%s requests = %d, want at most 1 (no retry after the deadline)", count, got)
			}
		})
	}
}

// TestFlowSlowNextSynctest is TestFlowSlowNext on synctest's clock, for
// every call shape: the call returns exactly at the deadline.
func TestFlowSlowNextSynctest(t *testing.T) {
	tests := []struct {
		name  string
		count string
		call  func(ctx context.Context, c *ce.Client, jobID string) error
	}{
		{name: "start query", count: "POST /bulk/query", call: func(ctx context.Context, c *ce.Client, _ string) error {
			_, err := c.StartQuery(ctx, ce.QueryRequest{Object: "activities"})
			return err
		}},
		{name: "status", count: "/status", call: func(ctx context.Context, c *ce.Client, id string) error {
			_, err := c.Status(ctx, id)
			return err
		}},
		{name: "wait", count: "/status", call: func(ctx context.Context, c *ce.Client, id string) error {
			_, err := c.Wait(ctx, id)
			return err
		}},
		{name: "download", count: "/activities", call: func(ctx context.Context, c *ce.Client, id string) error {
			body, err := c.Download(ctx, id, "activities")
			if err == nil {
				body.Close()
			}
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := cetest.NewFake(cetest.Options{})
				c := newInMemoryClient(t, f)
				created, err := c.StartQuery(t.Context(), ce.QueryRequest{Object: "activities"})
				if err != nil {
					t.Fatalf("StartQuery error = %v", err)
				}
				before := f.Requests(tc.count)
				f.SlowNext(time.Hour)
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				defer cancel()
				start := time.Now()
				err = tc.call(ctx, c, created.ID)
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("error = %v, want context.DeadlineExceeded", err)
				}
				if got := time.Since(start); got != 30*time.Second {
					t.Errorf("returned after %v, want the 30s deadline", got)
				}
				if got := f.Requests(tc.count) - before; got != 1 {
					t.Errorf("%s requests = %d, want 1", tc.count, got)
				}
			})
		})
	}
}

// callbackReceiver records the callbacks CE sends.
type callbackReceiver struct {
	mu  sync.Mutex
	got []receivedCallback
}

type receivedCallback struct {
	method, uri string
	header      http.Header
	body        []byte
}

func (r *callbackReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.got = append(r.got, receivedCallback{method: req.Method, uri: req.RequestURI, header: req.Header.Clone(), body: body})
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *callbackReceiver) received() []receivedCallback {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receivedCallback(nil), r.got...)
}

// TestFlowCallbacks registers a callback URL on a download and an upload,
// delivers the completion callbacks, and checks them with the client's
// own ValidateSignature and Job decoder.
func TestFlowCallbacks(t *testing.T) {
	const key = "MySecretEventSignatureKey"
	ts := flowDay0.Add(time.Hour).Unix()
	file := fmt.Sprintf(`{"event":"Login","properties":{"time":%d,"distinct_id":"u-1"}}`+"\n"+
		`{"event":"Login","properties":{"distinct_id":"u-2"}}`+"\n", ts)
	payload := map[string]any{"run": "r-2026-11-26", "attempt": 1}

	tests := []struct {
		name  string
		start func(ctx context.Context, c *ce.Client, url string) (*ce.Job, error)
	}{
		{name: "download", start: func(ctx context.Context, c *ce.Client, url string) (*ce.Job, error) {
			return c.StartQuery(ctx, ce.QueryRequest{Object: "activities", CallbackURL: url, CallbackPayload: payload})
		}},
		{name: "upload", start: func(ctx context.Context, c *ce.Client, url string) (*ce.Job, error) {
			return c.Upload(ctx, "activities", strings.NewReader(file), ce.UploadOptions{CallbackURL: url, CallbackPayload: payload})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			recv := &callbackReceiver{}
			hook := httptest.NewServer(recv)
			t.Cleanup(hook.Close)
			c, f := newFlowEnv(t, cetest.Options{Now: fixedClock(flowNow), SignatureKey: key})
			f.Seed("activities", []map[string]any{
				{"event": "Login", "properties": map[string]any{"time": ts, "distinct_id": "u-1"}},
				{"event": "Logout", "properties": map[string]any{"time": ts + 60, "distinct_id": "u-1"}},
			})
			callbackURL := hook.URL + "/hooks/ce-bulk?token=tok-5ec12e7"

			created, err := tc.start(ctx, c, callbackURL)
			if err != nil {
				t.Fatalf("start error = %v", err)
			}
			job, err := c.Wait(ctx, created.ID)
			if err != nil {
				t.Fatalf("Wait(%s) error = %v", created.ID, err)
			}
			deliveries := f.DeliverCallbacks(ctx)
			if len(deliveries) != 1 || !deliveries[0].OK() {
				t.Fatalf("DeliverCallbacks = %+v, want one successful delivery", deliveries)
			}
			got := recv.received()
			if len(got) != 1 {
				t.Fatalf("receiver got %d callbacks, want 1", len(got))
			}
			cb := got[0]
			if cb.method != http.MethodPost || cb.uri != "/hooks/ce-bulk?token=tok-5ec12e7" {
				t.Errorf("callback request = %s %s, want POST to the registered URL", cb.method, cb.uri)
			}
			if ct := cb.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("callback Content-Type = %q, want application/json", ct)
			}

			sig := cb.header.Get(ce.SignatureHeader)
			if err := ce.ValidateSignature(sig, cb.body, []byte(key)); err != nil {
				t.Errorf("ValidateSignature(received) = %v, want nil", err)
			}
			if got, want := ce.Sign(cb.body, []byte(key)), cetest.Sign(cb.body, key); got != want || got != sig {
				t.Errorf("ce.Sign = %q, cetest.Sign = %q, header = %q, want all equal", got, want, sig)
			}
			tampered := bytes.Replace(cb.body, []byte(`"COMPLETED"`), []byte(`"ERROR"`), 1)
			if bytes.Equal(tampered, cb.body) {
				t.Fatalf("test setup: callback body %s has no COMPLETED status to tamper with", cb.body)
			}
			for name, err := range map[string]error{
				"tampered body": ce.ValidateSignature(sig, tampered, []byte(key)),
				"extra space":   ce.ValidateSignature(sig, append(bytes.Clone(cb.body), ' '), []byte(key)),
				"wrong key":     ce.ValidateSignature(sig, cb.body, []byte(key+"x")),
			} {
				if !errors.Is(err, ce.ErrSignatureMismatch) || !errors.Is(err, ce.ErrSignatureInvalid) {
					t.Errorf("ValidateSignature(%s) = %v, want ErrSignatureMismatch (and ErrSignatureInvalid)", name, err)
				}
			}

			var fromCallback ce.Job
			if err := json.Unmarshal(cb.body, &fromCallback); err != nil {
				t.Fatalf("decoding callback %s into ce.Job: %v", cb.body, err)
			}
			if diff := cmp.Diff(*job, fromCallback); diff != "" {
				t.Errorf("callback job differs from the status Wait returned (-status +callback):\n%s", diff)
			}
			if fromCallback.ID != created.ID || fromCallback.Status != ce.StatusCompleted {
				t.Errorf("callback job = %+v, want id %s COMPLETED", fromCallback, created.ID)
			}
			wantCounts := [2]int64{2, 0}
			if tc.name == "upload" {
				wantCounts = [2]int64{2, 1}
			}
			if got := [2]int64{fromCallback.RecordsCount, fromCallback.RecordsFailedCount}; got != wantCounts {
				t.Errorf("callback counts = %v, want %v", got, wantCounts)
			}
			var echoed struct {
				Payload map[string]any `json:"callback-payload"`
			}
			if err := json.Unmarshal(cb.body, &echoed); err != nil {
				t.Fatalf("callback body %s: %v", cb.body, err)
			}
			wantPayload := map[string]any{"run": "r-2026-11-26", "attempt": float64(1)}
			if diff := cmp.Diff(wantPayload, echoed.Payload); diff != "" {
				t.Errorf("callback-payload mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// collectJobs lists the jobs matching where.
func collectJobs(ctx context.Context, t *testing.T, c *ce.Client, where string) []ce.Job {
	t.Helper()
	var out []ce.Job
	for job, err := range c.Jobs(ctx, where) {
		if err != nil {
			t.Fatalf("Jobs(%q) error = %v", where, err)
		}
		out = append(out, *job)
	}
	return out
}

// TestFlowJobs lists jobs with and without where clauses. Each listed job
// (CE's numeric-id list shape) must decode to the same ce.Job as its status
// (the v2 status shape), apart from the error text the list does not carry.
func TestFlowJobs(t *testing.T) {
	ctx := t.Context()
	c, f := newFlowEnv(t, cetest.Options{Now: fixedClock(flowNow)})
	f.SeedGenerated("activities", cetest.SampleActivities(5, 90, flowDay0, flowDay0.Add(72*time.Hour)))
	f.SeedGenerated("users", cetest.SampleUsers(5, 9))

	day := startAndWait(ctx, t, c, ce.QueryRequest{Object: "activities", From: flowDay0, To: flowDay0.Add(24 * time.Hour)})
	f.SetNextJobOutcome("ERROR", "Mixpanel export failed")
	failed, err := c.StartQuery(ctx, ce.QueryRequest{Object: "activities"})
	if err != nil {
		t.Fatalf("StartQuery error = %v", err)
	}
	if _, err := c.Wait(ctx, failed.ID); err == nil {
		t.Fatalf("Wait(%s) = nil error, want the injected ERROR", failed.ID)
	}
	users := startAndWait(ctx, t, c, ce.QueryRequest{Object: "users"})
	file := fmt.Sprintf(`{"event":"Login","properties":{"time":%d,"distinct_id":"u-1"}}`+"\n"+`{"event":"Login"}`+"\n", flowDay0.Unix())
	created, err := c.Upload(ctx, "activities", strings.NewReader(file), ce.UploadOptions{})
	if err != nil {
		t.Fatalf("Upload error = %v", err)
	}
	upload, err := c.Wait(ctx, created.ID)
	if err != nil {
		t.Fatalf("Wait(%s) error = %v", created.ID, err)
	}

	byStatus := map[string]ce.Job{}
	for _, id := range []string{day.ID, failed.ID, users.ID, upload.ID} {
		st, err := c.Status(ctx, id)
		if err != nil {
			t.Fatalf("Status(%s) error = %v", id, err)
		}
		st.Error, st.Message = "", ""
		byStatus[id] = *st
	}
	if j := byStatus[day.ID]; j.RecordsCount != 30 {
		t.Errorf("one-day download recordsCount = %d, want 30", j.RecordsCount)
	}
	if j := byStatus[upload.ID]; j.RecordsCount != 2 || j.RecordsFailedCount != 1 {
		t.Errorf("upload counts = %d/%d, want 2/1", j.RecordsCount, j.RecordsFailedCount)
	}

	tests := []struct {
		where string
		want  []string
	}{
		{where: "", want: []string{day.ID, failed.ID, users.ID, upload.ID}},
		{where: "job_direction='UPLOAD'", want: []string{upload.ID}},
		{where: "job_direction='DOWNLOAD'", want: []string{day.ID, failed.ID, users.ID}},
		{where: "object_name='users'", want: []string{users.ID}},
		{where: "job_status='ERROR'", want: []string{failed.ID}},
		{where: "object_name='activities' and job_direction='DOWNLOAD'", want: []string{day.ID, failed.ID}},
	}
	for _, tc := range tests {
		t.Run(tc.where, func(t *testing.T) {
			var want []ce.Job
			for _, id := range tc.want {
				want = append(want, byStatus[id])
			}
			got := collectJobs(ctx, t, c, tc.where)
			for i := range got {
				got[i].Error, got[i].Message = "", ""
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Jobs(%q) mismatch (-want from Status +got):\n%s", tc.where, diff)
			}
		})
	}
}

// TestFlowJobsPaging lists more jobs than one page (CE's default page size
// is 200) and follows the next-page token.
func TestFlowJobsPaging(t *testing.T) {
	ctx := t.Context()
	c, f := newFlowEnv(t, cetest.Options{})
	const n = 205
	var want []string
	for range n {
		job, err := c.StartQuery(ctx, ce.QueryRequest{Object: "users"})
		if err != nil {
			t.Fatalf("StartQuery error = %v", err)
		}
		want = append(want, job.ID)
	}
	var got []string
	for _, job := range collectJobs(ctx, t, c, "") {
		got = append(got, job.ID)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Jobs ids mismatch (-want +got):\n%s", diff)
	}
	if got := f.Requests("GET /bulk/jobs"); got != 2 {
		t.Errorf("jobs page requests = %d, want 2", got)
	}
}

// TestFlowUploadCSV uploads CSV files (metaData without format, the file
// part as text/csv) and checks the counts, the per-row errors (rows counted
// from 0 after the header) and the records Mixpanel received, in the JSON
// shape the rows stand for.
func TestFlowUploadCSV(t *testing.T) {
	ts := flowDay0.Add(10 * time.Hour).Unix()
	tests := []struct {
		name       string
		object     string
		file       string
		wantJob    ce.Job // ID filled in from the created job
		wantErrs   []recordError
		wantStored []string
	}{
		{
			name:   "users",
			object: "users",
			file: strings.Join([]string{
				"$distinct_id,$email,$city,credits,plan,zip",
				"u-1,ada@example.com,Dallas,150,pro,02134",
				",nobody@example.com,Austin,0,free,",
				`u-2,grace@example.com,"New York, NY",7,free,`,
				"u-3,katherine@example.com",
				"12157,,,,,",
			}, "\n") + "\n",
			wantJob: ce.Job{Status: ce.StatusCompleted, ObjectName: "users", Direction: "UPLOAD", RecordsCount: 5, RecordsFailedCount: 2},
			wantErrs: []recordError{
				{Index: 1, Field: "$distinct_id", Status: "'$distinct_id' is required"},
				{Index: 3, Status: "row has 2 fields, the header has 6"},
			},
			wantStored: []string{
				`{"$distinct_id":"u-1","$set":{"$email":"ada@example.com","$city":"Dallas","credits":150,"plan":"pro","zip":"02134"}}`,
				`{"$distinct_id":"u-2","$set":{"$email":"grace@example.com","$city":"New York, NY","credits":7,"plan":"free"}}`,
				`{"$distinct_id":"12157","$set":{}}`,
			},
		},
		{
			name:   "activities",
			object: "activities",
			file: strings.Join([]string{
				"event,time,distinct_id,$insert_id,amount",
				fmt.Sprintf("Purchase,%d,u-1,ins-0001,12.50", ts),
				"Purchase,,u-2,ins-0002,3",
				fmt.Sprintf("Login,%d,u-3,,", ts+60),
			}, "\r\n"),
			wantJob: ce.Job{Status: ce.StatusCompleted, ObjectName: "activities", Direction: "UPLOAD", RecordsCount: 3, RecordsFailedCount: 1},
			wantErrs: []recordError{
				{Index: 1, Field: "properties.time", Status: "'properties.time' is required"},
			},
			wantStored: []string{
				fmt.Sprintf(`{"event":"Purchase","properties":{"time":%d,"distinct_id":"u-1","$insert_id":"ins-0001","amount":12.50}}`, ts),
				fmt.Sprintf(`{"event":"Login","properties":{"time":%d,"distinct_id":"u-3"}}`, ts+60),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			c, f := newFlowEnv(t, cetest.Options{Now: fixedClock(flowNow)})
			// A plain io.Reader, as an S3 object body would be.
			csvReader := io.MultiReader(strings.NewReader(tc.file))
			created, err := c.Upload(ctx, tc.object, csvReader, ce.UploadOptions{Format: "csv"})
			if err != nil {
				t.Fatalf("Upload(%s, csv) error = %v", tc.object, err)
			}
			job, err := c.Wait(ctx, created.ID)
			if err != nil {
				t.Fatalf("Wait(%s) error = %v", created.ID, err)
			}
			want := tc.wantJob
			want.ID = created.ID
			if diff := cmp.Diff(&want, job); diff != "" {
				t.Errorf("Wait job mismatch (-want +got):\n%s", diff)
			}
			if jobs := f.Jobs(); len(jobs) != 1 || jobs[0].Format != "csv" {
				t.Errorf("emulator jobs = %+v, want one job with format csv", jobs)
			}

			var gotErrs []recordError
			for raw, err := range c.Errors(ctx, created.ID, 1) {
				if err != nil {
					t.Fatalf("Errors(%s) error = %v", created.ID, err)
				}
				var e recordError
				if err := json.Unmarshal(raw, &e); err != nil {
					t.Fatalf("error element %s: %v", raw, err)
				}
				gotErrs = append(gotErrs, e)
			}
			if diff := cmp.Diff(tc.wantErrs, gotErrs); diff != "" {
				t.Errorf("per-row errors mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantStored, strs(f.Uploaded(tc.object))); diff != "" {
				t.Errorf("Uploaded(%s) mismatch (-want +got):\n%s", tc.object, diff)
			}
		})
	}
}

// TestFlowUploadJSONSentAsCSV checks that the emulator, like CE, reads a
// file whose metaData has no format as CSV: JSON records sent that way are
// refused, so a client that forgot format json would be caught.
func TestFlowUploadJSONSentAsCSV(t *testing.T) {
	c, f := newFlowEnv(t, cetest.Options{Now: fixedClock(flowNow)})
	line := fmt.Sprintf(`{"event":"Login","properties":{"time":%d,"distinct_id":"u-1"}}`, flowDay0.Unix())
	_, err := c.Upload(t.Context(), "activities", strings.NewReader(line+"\n"), ce.UploadOptions{Format: "csv"})
	var apiErr *ce.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest {
		t.Fatalf("Upload of JSON records as CSV error = %v, want a 400 *ce.APIError", err)
	}
	if jobs := f.Jobs(); len(jobs) != 0 {
		t.Errorf("emulator jobs = %+v, want none", jobs)
	}
}

// TestFlowDownloadFailedRecords covers the partial success of a download:
// CE ends the job COMPLETED with recordsFailedCount > 0 (reference §2.3).
// Wait returns the job without error, the file holds the records written,
// and Errors yields one element per failed record.
func TestFlowDownloadFailedRecords(t *testing.T) {
	ctx := t.Context()
	const failed = 3
	c, f := newFlowEnv(t, cetest.Options{})
	gen := cetest.SampleActivities(11, 40, flowDay0, flowDay0.Add(24*time.Hour))
	f.SeedGenerated("activities", gen)
	f.SetNextJobFailedRecords(failed)

	created, err := c.StartQuery(ctx, ce.QueryRequest{Object: "activities"})
	if err != nil {
		t.Fatalf("StartQuery error = %v", err)
	}
	job, err := c.Wait(ctx, created.ID)
	if err != nil {
		t.Fatalf("Wait(%s) error = %v, want nil for a COMPLETED job with failed records", created.ID, err)
	}
	want := &ce.Job{ID: created.ID, Status: ce.StatusCompleted, ObjectName: "activities", Direction: "DOWNLOAD", RecordsCount: 40 + failed, RecordsFailedCount: failed}
	if diff := cmp.Diff(want, job); diff != "" {
		t.Errorf("Wait job mismatch (-want +got):\n%s", diff)
	}
	if recs := download(ctx, t, c, job.ID, "activities", ""); int64(len(recs)) != job.RecordsCount-job.RecordsFailedCount {
		t.Errorf("downloaded %d records, want recordsCount - recordsFailedCount = %d", len(recs), job.RecordsCount-job.RecordsFailedCount)
	}
	n := 0
	for raw, err := range c.Errors(ctx, job.ID, 2) {
		if err != nil {
			t.Fatalf("Errors(%s) error = %v", job.ID, err)
		}
		var e recordError
		if err := json.Unmarshal(raw, &e); err != nil || e.Status == "" {
			t.Errorf("error element %s: want an object with a status (%v)", raw, err)
		}
		n++
	}
	if n != failed {
		t.Errorf("Errors yielded %d elements, want %d", n, failed)
	}
	if got := f.Requests("GET /bulk/" + job.ID + "/errors"); got != 2 {
		t.Errorf("error page requests = %d, want 2 (%d errors, pageSize 2)", got, failed)
	}

	// Only that job: the next one is whole.
	next := startAndWait(ctx, t, c, ce.QueryRequest{Object: "activities"})
	if next.RecordsCount != 40 || next.RecordsFailedCount != 0 {
		t.Errorf("next job counts = %d/%d, want 40/0", next.RecordsCount, next.RecordsFailedCount)
	}
}
