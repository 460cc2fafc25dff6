package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/awstest"
	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/internal/importer"
	"github.com/cebulk/cebulk/internal/lambdalocal"
	"github.com/cebulk/cebulk/internal/lambdatest"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/s3stream"
)

// e2e runs the real ImportFunction bootstrap under the Lambda runtime
// emulator, with moto for S3 and Secrets Manager, the CE emulator, a Lambda
// Invoke API stand-in for its self re-invocations, and a callback receiver
// standing in for the webhook (it verifies the token, then invokes
// finalize as the webhook does).
type e2e struct {
	fn     *lambdatest.Function
	stack  *lambdatest.Stack
	invoke *lambdalocal.InvokeAPI
	// endpoint serves invoke to the AWS services that invoke the function
	// (S3, EventBridge); name is the function's name.
	endpoint, name string
	fake           *cetest.Fake
	clock          *e2eClock
	s3             *s3.Client
	jobs           *ledger.Store
	bucket         string

	mu        sync.Mutex
	callbacks []*url.URL
}

type e2eClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *e2eClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *e2eClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func startE2E(t *testing.T) *e2e {
	t.Helper()
	awstest.Endpoint(t)
	bootstrap := lambdatest.Build(t, "./functions/import")
	e := &e2e{clock: &e2eClock{now: time.Now()}, s3: awstest.S3(t)}
	// CE jobs finish an hour after they start, on the test's clock: the
	// function's first pass leaves them WAITING, the callbacks finish them.
	srv, fake := cetest.NewServer(t, cetest.Options{Now: e.clock.Now, CompletionDelay: time.Hour})
	e.fake = fake
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		e.mu.Lock()
		e.callbacks = append(e.callbacks, r.URL)
		e.mu.Unlock()
	}))
	t.Cleanup(receiver.Close)
	secret := awstest.NewSecret(t, fmt.Sprintf(`{"userSecret":%q,"organizationSecret":%q,"elementToken":%q}`,
		cetest.DefaultUserSecret, cetest.DefaultOrgSecret, cetest.DefaultElementToken))
	// The function runs with exactly ImportFunction's role from
	// template.yaml; its self re-invocations go through the same proxy.
	st := lambdatest.NewStack(t, lambdatest.StackOptions{SecretARN: secret})
	e.stack, e.bucket, e.invoke, e.name = st, st.Bucket, st.Invoke, st.FunctionName("import")
	// What S3 and EventBridge call: the Lambda service itself.
	invokeSrv := httptest.NewServer(st.Invoke)
	t.Cleanup(invokeSrv.Close)
	e.endpoint = invokeSrv.URL
	e.fn = st.Start(t, "ImportFunction", bootstrap, lambdatest.Options{
		Timeout: 60 * time.Second,
		Env: map[string]string{
			"CE_BASE_URL":          cetest.BaseURL(srv),
			"CALLBACK_URL":         receiver.URL + "/callbacks/ce",
			"IMPORT_CHUNK_RECORDS": "3",
			"LOG_LEVEL":            "debug",
		},
	})
	st.Invoke.Register(st.FunctionName("import"), e.fn.Function)
	store := s3stream.New(e.s3)
	e.jobs = ledger.New(store, e.bucket)
	return e
}

// put uploads a file with the SDK and returns its S3 event, built from the
// real ETag on the AWS event fixture (key URL-encoded as S3 does).
func (e *e2e) put(t *testing.T, key string, data []byte, extra map[string]any) map[string]any {
	t.Helper()
	out, err := e.s3.PutObject(t.Context(), &s3.PutObjectInput{Bucket: &e.bucket, Key: &key, Body: bytes.NewReader(data)})
	if err != nil {
		t.Fatalf("PutObject(%s): %v", key, err)
	}
	var ev map[string]any
	if err := json.Unmarshal(fixture(t, "s3-put-event.json"), &ev); err != nil {
		t.Fatal(err)
	}
	rec := ev["Records"].([]any)[0].(map[string]any)["s3"].(map[string]any)
	rec["bucket"].(map[string]any)["name"] = e.bucket
	obj := rec["object"].(map[string]any)
	obj["key"] = url.QueryEscape(key)
	obj["eTag"] = strings.Trim(*out.ETag, `"`)
	obj["size"] = len(data)
	for k, v := range extra {
		ev[k] = v
	}
	return ev
}

// invoke runs one invocation and returns the function's results.
func (e *e2e) invokeFn(t *testing.T, payload any) []importer.Result {
	t.Helper()
	var resp response
	if err := json.Unmarshal(e.fn.MustInvoke(t, payload), &resp); err != nil {
		t.Fatal(err)
	}
	return resp.Results
}

// settle lets CE finish its jobs, delivers their callbacks, and hands each
// to the function as the webhook would: token checked, then finalize.
func (e *e2e) settle(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	if err := e.invoke.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Hour)
	for _, d := range e.fake.DeliverCallbacks(ctx) {
		if !d.OK() {
			t.Errorf("callback for CE job %s: %d %s", d.JobID, d.StatusCode, d.Err)
		}
	}
	e.mu.Lock()
	cbs := e.callbacks
	e.callbacks = nil
	e.mu.Unlock()
	for _, u := range cbs {
		id, token := u.Query().Get("job"), u.Query().Get("token")
		j, _, err := e.jobs.Get(ctx, id)
		if err != nil {
			t.Fatalf("callback for %s: %v", id, err)
		}
		if !j.CheckToken(token) {
			t.Errorf("callback token for %s does not match its ledger record", id)
		}
		e.invokeFn(t, map[string]string{"action": "finalize", "jobId": id})
	}
}

func (e *e2e) object(t *testing.T, key string) []byte {
	t.Helper()
	out, err := e.s3.GetObject(t.Context(), &s3.GetObjectInput{Bucket: &e.bucket, Key: &key})
	if err != nil {
		t.Fatalf("GetObject(%s): %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type summaryDoc struct {
	Status   string `json:"status"`
	Reason   string `json:"reason"`
	Records  int64  `json:"records"`
	Valid    int64  `json:"valid"`
	Rejected int64  `json:"rejected"`
	Accepted int64  `json:"accepted"`
	CEFailed int64  `json:"ceFailed"`
	DryRun   bool   `json:"dryRun"`
	CEJobs   []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	} `json:"ceJobs"`
}

func (e *e2e) summary(t *testing.T, key string) summaryDoc {
	t.Helper()
	var s summaryDoc
	if err := json.Unmarshal(e.object(t, "reports/"+key+"/summary.json"), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// rejectLines reads rejects.jsonl.gz and returns the line of each reject.
func (e *e2e) rejectLines(t *testing.T, key string) []int {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(e.object(t, "reports/"+key+"/rejects.jsonl.gz")))
	if err != nil {
		t.Fatal(err)
	}
	var lines []int
	sc := bufio.NewScanner(zr)
	for sc.Scan() {
		var r struct {
			Line   int             `json:"line"`
			Reason string          `json:"reason"`
			Record json.RawMessage `json:"record"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.Reason == "" || len(r.Record) == 0 {
			t.Errorf("reject %s: %v", sc.Text(), err)
		}
		lines = append(lines, r.Line)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// uploadedIDs returns the distinct ids CE accepted for object.
func (e *e2e) uploadedIDs(t *testing.T, object string) []string {
	t.Helper()
	var ids []string
	for _, raw := range e.fake.Uploaded(object) {
		var r struct {
			DistinctID any `json:"$distinct_id"`
			Properties struct {
				DistinctID any `json:"distinct_id"`
			} `json:"properties"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatal(err)
		}
		id := r.DistinctID
		if id == nil {
			id = r.Properties.DistinctID
		}
		ids = append(ids, fmt.Sprint(id))
	}
	return ids
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i+1)
	}
	return out
}

func TestEndToEnd(t *testing.T) {
	e := startE2E(t)

	t.Run("mixed files", func(t *testing.T) {
		tests := []struct {
			fixture, key, object string
			wantIDs              []string
			wantLines            []int
		}{
			{"mixed-activities.csv", "imports/activities/2026/mixed rows.csv", "activities", ids("good", 7), []int{3, 5, 6, 8, 12, 13, 15, 16}},
			{"mixed-activities.json", "imports/activities/mixed.json", "activities", ids("good", 3), []int{3, 8, 9}},
			{"mixed-activities.jsonl", "imports/activities/mixed.jsonl", "activities", ids("good", 5), []int{2, 5, 6, 8, 10, 11}},
			{"mixed-users.ndjson.gz", "imports/users/mixed.ndjson.gz", "users", ids("good", 4), []int{2, 4, 6, 7}},
		}
		for _, tc := range tests {
			t.Run(tc.fixture, func(t *testing.T) {
				e.fake.Reset()
				data, err := os.ReadFile("testdata/" + tc.fixture)
				if err != nil {
					t.Fatal(err)
				}
				res := e.invokeFn(t, e.put(t, tc.key, data, nil))
				if len(res) != 1 || res[0].Status != importer.StatusWaiting {
					t.Fatalf("first invocation = %+v, want WAITING for CE", res)
				}
				e.settle(t)
				if diff := cmp.Diff(tc.wantIDs, e.uploadedIDs(t, tc.object)); diff != "" {
					t.Errorf("records in CE (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(tc.wantLines, e.rejectLines(t, tc.key)); diff != "" {
					t.Errorf("reject lines (-want +got):\n%s", diff)
				}
				s := e.summary(t, tc.key)
				if s.Status != importer.StatusPartial || s.Valid != int64(len(tc.wantIDs)) || s.Rejected != int64(len(tc.wantLines)) {
					t.Errorf("summary = %+v", s)
				}
			})
		}
	})

	t.Run("duplicate event does nothing", func(t *testing.T) {
		e.fake.Reset()
		data, _ := os.ReadFile("testdata/mixed-activities.jsonl")
		ev := e.put(t, "imports/activities/dup.jsonl", data, nil)
		e.invokeFn(t, ev)
		e.settle(t)
		requests := e.fake.Requests("")
		res := e.invokeFn(t, ev)
		if len(res) != 1 || res[0].Status != importer.StatusDuplicate {
			t.Errorf("duplicate = %+v, want DUPLICATE", res)
		}
		if got := e.fake.Requests(""); got != requests {
			t.Errorf("CE requests %d -> %d on a duplicate event", requests, got)
		}
	})

	t.Run("resume after a forced checkpoint sends no chunk twice", func(t *testing.T) {
		e.fake.Reset()
		var b strings.Builder
		for i := 1; i <= 14; i++ {
			fmt.Fprintf(&b, `{"event":"E","properties":{"time":%d,"distinct_id":"good-%d"}}`+"\n", 1764028800+i, i)
		}
		key := "imports/activities/resume.jsonl"
		res := e.invokeFn(t, e.put(t, key, []byte(b.String()), map[string]any{"maxChunks": 1}))
		if len(res) != 1 || res[0].Status != importer.StatusCheckpointed || res[0].Chunks != 1 {
			t.Fatalf("first invocation = %+v, want CHECKPOINTED after one chunk", res)
		}
		if err := e.invoke.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		recs := e.invoke.Records()
		if len(recs) == 0 || !strings.Contains(string(recs[len(recs)-1].Payload), `"action":"resume"`) {
			t.Fatalf("no resume invocation: %+v", recs)
		}
		// A stray resume after the import is read through does nothing.
		e.invokeFn(t, map[string]string{"action": "resume", "importId": res[0].ImportID})
		e.settle(t)
		if diff := cmp.Diff(ids("good", 14), e.uploadedIDs(t, "activities")); diff != "" {
			t.Errorf("records in CE (-want +got):\n%s", diff)
		}
		if got := e.fake.Requests("POST /bulk/activities"); got != 5 {
			t.Errorf("uploads = %d, want 5 (14 records in chunks of 3)", got)
		}
		if s := e.summary(t, key); s.Status != importer.StatusSucceeded || len(s.CEJobs) != 5 {
			t.Errorf("summary = %+v", s)
		}
	})

	t.Run("three 429s in a row on uploads: imported exactly once in one invocation", func(t *testing.T) {
		e.fake.Reset()
		var b strings.Builder
		for i := 1; i <= 7; i++ {
			fmt.Fprintf(&b, `{"event":"E","properties":{"time":%d,"distinct_id":"good-%d"}}`+"\n", 1764028800+i, i)
		}
		key := "imports/activities/throttled.jsonl"
		asyncBefore := len(e.invoke.Records())
		// Retry-After keeps the test short; without it the function waits
		// Mixpanel's 2 s, 4 s, 8 s plus jitter (internal/importer tests).
		e.fake.Throttle(cetest.Throttle{Suffix: "/bulk/activities", Calls: 3, RetryAfter: "1"})
		res := e.invokeFn(t, e.put(t, key, []byte(b.String()), nil))
		if len(res) != 1 || res[0].Status != importer.StatusWaiting || res[0].Chunks != 3 {
			t.Fatalf("invocation = %+v, want every chunk sent and WAITING for CE", res)
		}
		if err := e.invoke.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := e.invoke.Records()[asyncBefore:]; len(got) != 0 {
			t.Errorf("async invocations %+v, want none: the limit was waited out in the one invocation", got)
		}
		e.settle(t)
		if diff := cmp.Diff(ids("good", 7), e.uploadedIDs(t, "activities")); diff != "" {
			t.Errorf("records in CE (-want +got):\n%s", diff)
		}
		if got := e.fake.Requests("POST /bulk/activities"); got != 3+3 {
			t.Errorf("upload requests = %d, want 6 (3 refused, 3 chunks)", got)
		}
		if s := e.summary(t, key); s.Status != importer.StatusSucceeded || len(s.CEJobs) != 3 {
			t.Errorf("summary = %+v", s)
		}
	})

	t.Run("dry run calls CE zero times", func(t *testing.T) {
		e.fake.Reset()
		data, _ := os.ReadFile("testdata/mixed-activities.csv")
		key := "imports/activities/dry-run/check.csv"
		res := e.invokeFn(t, e.put(t, key, data, nil))
		if len(res) != 1 || res[0].Status != importer.StatusPartial {
			t.Errorf("dry run = %+v, want PARTIAL at once", res)
		}
		if got := e.fake.Requests(""); got != 0 {
			t.Errorf("CE requests = %d, want 0", got)
		}
		if diff := cmp.Diff([]int{3, 5, 6, 8, 12, 13, 15, 16}, e.rejectLines(t, key)); diff != "" {
			t.Errorf("reject lines (-want +got):\n%s", diff)
		}
		if s := e.summary(t, key); !s.DryRun || s.Valid != 7 {
			t.Errorf("summary = %+v", s)
		}
	})

	t.Run("CE-side failures are reported and make it PARTIAL", func(t *testing.T) {
		e.fake.Reset()
		e.fake.FailRecordsMatching(func(object string, rec map[string]any) string {
			if rec["$distinct_id"] == "good-2" {
				return "74234: profile update refused"
			}
			return ""
		})
		defer e.fake.FailRecordsMatching(nil)
		data := []byte(`{"$distinct_id":"good-1","$set":{"a":1}}` + "\n" + `{"$distinct_id":"good-2","$set":{"a":2}}` + "\n")
		key := "imports/users/ce-errors.jsonl"
		e.invokeFn(t, e.put(t, key, data, nil))
		e.settle(t)
		s := e.summary(t, key)
		if s.Status != importer.StatusPartial || s.CEFailed != 1 || s.Accepted != 1 || s.Rejected != 0 {
			t.Errorf("summary = %+v", s)
		}
		lines := strings.Split(strings.TrimSpace(string(e.object(t, "reports/"+key+"/ce-errors.jsonl"))), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], "74234") {
			t.Errorf("ce-errors.jsonl = %q", lines)
		}
		// The failed record is named by its line in the uploaded file.
		var ceErr struct {
			Line int `json:"line"`
		}
		if err := json.Unmarshal([]byte(lines[0]), &ceErr); err != nil || ceErr.Line != 2 {
			t.Errorf("ce-errors.jsonl line = %d (%v), want 2 (good-2's line)", ceErr.Line, err)
		}
	})

	t.Run("unreadable file is FAILED", func(t *testing.T) {
		e.fake.Reset()
		key := "imports/users/broken.csv.gz"
		res := e.invokeFn(t, e.put(t, key, []byte("\x1f\x8b\x08\x00garbage that is not deflate"), nil))
		if len(res) != 1 || res[0].Status != importer.StatusFailed {
			t.Errorf("result = %+v, want FAILED", res)
		}
		if s := e.summary(t, key); s.Status != importer.StatusFailed || !strings.Contains(s.Reason, "gzip") {
			t.Errorf("summary = %+v", s)
		}
		if !strings.Contains(e.fn.Logs(), `"JobsFailed":1`) {
			t.Errorf("no JobsFailed metric in the function's output")
		}
	})

	t.Run("sweep finalizes an import whose callbacks never came", func(t *testing.T) {
		e.fake.Reset()
		key := "imports/users/no-callback.csv"
		res := e.invokeFn(t, e.put(t, key, []byte("distinct_id,plan\nu1,pro\nu2,free\n"), nil))
		if len(res) != 1 || res[0].Status != importer.StatusWaiting {
			t.Fatalf("first invocation = %+v, want WAITING", res)
		}
		e.clock.Advance(2 * time.Hour) // CE finished; its callbacks are lost
		var resp response
		if err := json.Unmarshal(e.fn.MustInvoke(t, map[string]string{"action": "sweep"}), &resp); err != nil {
			t.Fatal(err)
		}
		if resp.Sweep == nil || resp.Sweep.Finalized != 1 {
			t.Errorf("sweep = %+v, want one import finalized", resp.Sweep)
		}
		if s := e.summary(t, key); s.Status != importer.StatusSucceeded || s.Accepted != 2 {
			t.Errorf("summary = %+v", s)
		}
		if keys := awstest.Keys(t, e.bucket, "state/imports/"); len(keys) != 0 {
			t.Errorf("rejects parts left behind: %v", keys)
		}
	})
}
