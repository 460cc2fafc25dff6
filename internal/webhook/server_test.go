package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/apigwhttp"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/secrets"
	"github.com/cebulk/cebulk/pkg/ce"
)

const (
	testKey   = "test-signature-key"
	testToken = "tok-0123456789abcdefghijklmnopqrstuvwxyzABCD"
)

var testNow = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pendingJob(id, kind string) ledger.Job {
	return ledger.Job{ID: id, Kind: ledger.Kind(kind), Object: "activities", Status: ledger.StatusPending, CEJobID: "4242", TokenHash: ledger.HashToken(testToken)}
}

type harness struct {
	srv     http.Handler
	jobs    *fakeJobs
	ce      *fakeCE
	invoker *fakeInvoker
	store   *fakeStore
	logs    *bytes.Buffer
}

func newHarness(t *testing.T, key string, jobs ...ledger.Job) *harness {
	t.Helper()
	h := &harness{jobs: newFakeJobs(jobs...), ce: &fakeCE{status: ce.StatusCompleted}, invoker: &fakeInvoker{}, store: newFakeStore(), logs: &bytes.Buffer{}}
	h.srv = NewServer(Config{Bucket: "data", ExportFunction: "cebulk-export", ImportFunction: "cebulk-import", MaxExportDays: 31, Now: func() time.Time { return testNow }},
		Deps{Jobs: h.jobs, CE: h.ce, Secrets: fakeSecrets{key: key}, Invoker: h.invoker, Store: h.store, Log: slog.New(slog.NewJSONHandler(h.logs, nil))})
	return h
}

func (h *harness) do(t *testing.T, method, target string, body []byte, headers map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.srv.ServeHTTP(rec, req)
	return rec
}

func TestCallbackStatuses(t *testing.T) {
	body := fixture(t, "bulk-completed.json")
	sig := string(fixture(t, "bulk-completed.sig"))
	other := fixture(t, "bulk-other-job.json")
	otherSig := string(fixture(t, "bulk-other-job.sig"))
	url := "/callbacks/ce?job=export-activities-2026-11-25&token=" + testToken
	signed := map[string]string{"Elements-Webhook-Signature": sig, "Content-Type": "application/json"}

	for _, tc := range []struct {
		name       string
		key        string
		job        ledger.Job
		target     string
		body       []byte
		headers    map[string]string
		ceStatus   ce.Status
		ceErr      error
		wantStatus int
		wantInvoke []invocation
	}{
		{name: "valid export callback", key: testKey, job: pendingJob("export-activities-2026-11-25", "export"), target: url, body: body, headers: signed,
			wantStatus: 200, wantInvoke: []invocation{{"cebulk-export", `{"action":"collect","jobId":"export-activities-2026-11-25"}`}}},
		{name: "valid import callback", key: testKey, job: pendingJob("export-activities-2026-11-25", "import"), target: url, body: body, headers: signed,
			wantStatus: 200, wantInvoke: []invocation{{"cebulk-import", `{"action":"finalize","jobId":"export-activities-2026-11-25"}`}}},
		{name: "CE job failed is handed over too", key: testKey, job: pendingJob("export-activities-2026-11-25", "export"), target: url, body: body, headers: signed, ceStatus: ce.StatusError,
			wantStatus: 200, wantInvoke: []invocation{{"cebulk-export", `{"action":"collect","jobId":"export-activities-2026-11-25"}`}}},
		{name: "no signature key configured", key: "", job: pendingJob("export-activities-2026-11-25", "export"), target: url, body: body,
			wantStatus: 200, wantInvoke: []invocation{{"cebulk-export", `{"action":"collect","jobId":"export-activities-2026-11-25"}`}}},
		{name: "forged signature", key: testKey, job: pendingJob("export-activities-2026-11-25", "export"), target: url, body: body,
			headers: map[string]string{"Elements-Webhook-Signature": "sha256=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}, wantStatus: 401},
		{name: "missing signature", key: testKey, job: pendingJob("export-activities-2026-11-25", "export"), target: url, body: body, wantStatus: 401},
		{name: "body altered after signing", key: testKey, job: pendingJob("export-activities-2026-11-25", "export"), target: url,
			body: bytes.Replace(body, []byte("120"), []byte("121"), 1), headers: signed, wantStatus: 401},
		{name: "re-serialised body", key: testKey, job: pendingJob("export-activities-2026-11-25", "export"), target: url,
			body: append(append([]byte{}, body...), '\n'), headers: signed, wantStatus: 401},
		{name: "wrong token", key: testKey, job: pendingJob("export-activities-2026-11-25", "export"),
			target: "/callbacks/ce?job=export-activities-2026-11-25&token=other", body: body, headers: signed, wantStatus: 401},
		{name: "missing token", key: testKey, job: pendingJob("export-activities-2026-11-25", "export"),
			target: "/callbacks/ce?job=export-activities-2026-11-25", body: body, headers: signed, wantStatus: 401},
		{name: "unknown job", key: testKey, job: pendingJob("export-activities-2026-11-25", "export"),
			target: "/callbacks/ce?job=export-activities-1999-01-01&token=" + testToken, body: body, headers: signed, wantStatus: 404},
		{name: "replayed for another CE job", key: testKey, job: pendingJob("export-activities-2026-11-25", "export"), target: url, body: other,
			headers: map[string]string{"Elements-Webhook-Signature": otherSig}, wantStatus: 409},
		{name: "oversized", key: testKey, job: pendingJob("export-activities-2026-11-25", "export"), target: url,
			body: bytes.Repeat([]byte("x"), DefaultMaxBody+1), headers: signed, wantStatus: 413},
		{name: "empty body", key: "", job: pendingJob("export-activities-2026-11-25", "export"), target: url, body: nil, wantStatus: 400},
		{name: "non-JSON body", key: "", job: pendingJob("export-activities-2026-11-25", "export"), target: url, body: []byte("id=4242&status=COMPLETED"), wantStatus: 400},
		{name: "job already done", key: testKey, job: func() ledger.Job {
			j := pendingJob("export-activities-2026-11-25", "export")
			j.Status = ledger.StatusDone
			return j
		}(),
			target: url, body: body, headers: signed, wantStatus: 200},
		{name: "CE still running", key: testKey, job: pendingJob("export-activities-2026-11-25", "export"), target: url, body: body, headers: signed, ceStatus: ce.StatusRunning, wantStatus: 202},
		// CE's status and newer job shapes send the id as a JSON number,
		// even in exponent form: the same job (4242) as the string "4242".
		{name: "id as a string", job: pendingJob("export-activities-2026-11-25", "export"), target: url, body: []byte(`{"id":"4242","status":"COMPLETED"}`),
			wantStatus: 200, wantInvoke: []invocation{{"cebulk-export", `{"action":"collect","jobId":"export-activities-2026-11-25"}`}}},
		{name: "id as a number", job: pendingJob("export-activities-2026-11-25", "export"), target: url, body: []byte(`{"id":4242,"status":"COMPLETED"}`),
			wantStatus: 200, wantInvoke: []invocation{{"cebulk-export", `{"action":"collect","jobId":"export-activities-2026-11-25"}`}}},
		{name: "id as an exponent number", job: pendingJob("export-activities-2026-11-25", "export"), target: url, body: []byte(`{"id":4.242E3,"jobStatus":"COMPLETED"}`),
			wantStatus: 200, wantInvoke: []invocation{{"cebulk-export", `{"action":"collect","jobId":"export-activities-2026-11-25"}`}}},
		{name: "id as a float number", job: pendingJob("export-activities-2026-11-25", "export"), target: url, body: []byte(`{"id":4242.0,"status":"COMPLETED"}`),
			wantStatus: 200, wantInvoke: []invocation{{"cebulk-export", `{"action":"collect","jobId":"export-activities-2026-11-25"}`}}},
		{name: "id of another job as an exponent number", job: pendingJob("export-activities-2026-11-25", "export"), target: url, body: []byte(`{"id":4.2114492E7,"status":"COMPLETED"}`),
			wantStatus: 409},
		{name: "id with a malformed count", job: pendingJob("export-activities-2026-11-25", "export"), target: url, body: []byte(`{"id":4.242e3,"recordsCount":"many"}`),
			wantStatus: 200, wantInvoke: []invocation{{"cebulk-export", `{"action":"collect","jobId":"export-activities-2026-11-25"}`}}},
		{name: "CE unreachable", key: testKey, job: pendingJob("export-activities-2026-11-25", "export"), target: url, body: body, headers: signed, ceErr: errors.New("dial tcp: refused"), wantStatus: 202},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.key, tc.job)
			if tc.ceStatus != "" {
				h.ce.status = tc.ceStatus
			}
			h.ce.err = tc.ceErr
			before := h.jobs.job(tc.job.ID)
			rec := h.do(t, "POST", tc.target, tc.body, tc.headers)
			if rec.Code != tc.wantStatus {
				t.Errorf("POST %s = %d %s, want %d", tc.name, rec.Code, rec.Body, tc.wantStatus)
			}
			if diff := cmp.Diff(tc.wantInvoke, h.invoker.calls); diff != "" {
				t.Errorf("invocations (-want +got):\n%s", diff)
			}
			if rec.Code >= 400 {
				var eb errorBody
				if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error == "" || eb.RequestID == "" {
					t.Errorf("error answer %s is not {error, requestId}", rec.Body)
				}
				if diff := cmp.Diff(before, h.jobs.job(tc.job.ID)); diff != "" {
					t.Errorf("a refused callback changed the job (-before +after):\n%s", diff)
				}
			}
			for _, secret := range []string{testToken, testKey, ledger.HashToken(testToken)} {
				if strings.Contains(rec.Body.String(), secret) || strings.Contains(h.logs.String(), secret) {
					t.Errorf("answer or logs contain a secret or token")
				}
			}
		})
	}
}

func TestDuplicateCallbackHandsOverOnce(t *testing.T) {
	h := newHarness(t, testKey, pendingJob("export-activities-2026-11-25", "export"))
	url := "/callbacks/ce?job=export-activities-2026-11-25&token=" + testToken
	headers := map[string]string{"Elements-Webhook-Signature": string(fixture(t, "bulk-completed.sig"))}
	for i := range 3 {
		if rec := h.do(t, "POST", url, fixture(t, "bulk-completed.json"), headers); rec.Code != 200 {
			t.Fatalf("callback %d = %d %s", i, rec.Code, rec.Body)
		}
	}
	if n := len(h.invoker.calls); n != 1 {
		t.Errorf("3 identical callbacks made %d hand-overs, want 1", n)
	}
	j := h.jobs.job("export-activities-2026-11-25")
	if j.Handoff == nil || j.Handoff.CEJobID != "4242" || j.Handoff.CEStatus != "COMPLETED" {
		t.Errorf("hand-off not recorded: %+v", j.Handoff)
	}
}

func TestFailedInvokeReleasesTheClaim(t *testing.T) {
	h := newHarness(t, "", pendingJob("export-activities-2026-11-25", "export"))
	url := "/callbacks/ce?job=export-activities-2026-11-25&token=" + testToken
	h.invoker.err = errors.New("throttled")
	if rec := h.do(t, "POST", url, fixture(t, "bulk-completed.json"), nil); rec.Code != 500 {
		t.Fatalf("callback with failing invoke = %d, want 500", rec.Code)
	}
	if rec := h.do(t, "POST", url, fixture(t, "bulk-completed.json"), nil); rec.Code != 500 {
		t.Fatalf("retried callback with failing invoke = %d, want 500", rec.Code)
	}
	h.invoker.err = nil
	if rec := h.do(t, "POST", url, fixture(t, "bulk-completed.json"), nil); rec.Code != 200 {
		t.Fatalf("callback after recovery = %d %s, want 200", rec.Code, rec.Body)
	}
	if n := len(h.invoker.calls); n != 1 {
		t.Errorf("hand-overs = %d, want 1", n)
	}
	if strings.Contains(h.logs.String(), "throttled") == false {
		t.Errorf("internal failure was not logged")
	}
}

func TestExportsLogsTheCaller(t *testing.T) {
	h := newHarness(t, "")
	caller := apigwhttp.Caller{UserARN: "arn:aws:iam::123456789012:user/alice", CallerID: "AIDAEXAMPLE", AccountID: "123456789012"}
	req := httptest.NewRequest("POST", "/exports", strings.NewReader(`{"objects":["activities"],"from":"2026-11-01","to":"2026-11-02"}`))
	req = req.WithContext(apigwhttp.WithCaller(req.Context(), caller))
	rec := httptest.NewRecorder()
	h.srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("POST /exports = %d %s", rec.Code, rec.Body)
	}
	var started map[string]any
	for _, line := range strings.Split(strings.TrimSpace(h.logs.String()), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil && l["msg"] == "export run started" {
			started = l
		}
	}
	if started["callerArn"] != caller.UserARN || started["callerId"] != caller.CallerID || started["callerAccount"] != caller.AccountID {
		t.Errorf("export run started log = %v, want the caller %+v", started, caller)
	}
	// The run records who asked.
	if len(h.invoker.calls) != 1 {
		t.Fatalf("invocations = %+v, want one run", h.invoker.calls)
	}
	var run struct{ By string }
	if err := json.Unmarshal([]byte(h.invoker.calls[0].Payload), &run); err != nil || !strings.Contains(run.By, caller.UserARN) {
		t.Errorf("run payload %s: by = %q, want it to name %s (%v)", h.invoker.calls[0].Payload, run.By, caller.UserARN, err)
	}
}

func TestExports(t *testing.T) {
	for _, tc := range []struct {
		name       string
		body       string
		wantStatus int
		wantErr    string
		wantJobs   []string
	}{
		{name: "watermark run", body: `{"objects":["activities","users"]}`, wantStatus: 202},
		{name: "backfill", body: `{"objects":["activities"],"from":"2026-11-01","to":"2026-11-04"}`, wantStatus: 202,
			wantJobs: []string{"export-activities-2026-11-01", "export-activities-2026-11-02", "export-activities-2026-11-03"}},
		{name: "unknown object", body: `{"objects":["funnels"]}`, wantStatus: 400, wantErr: `unknown object "funnels"`},
		{name: "no objects", body: `{}`, wantStatus: 400, wantErr: `"objects" is required`},
		{name: "bad date", body: `{"objects":["activities"],"from":"2026-13-01","to":"2026-11-04"}`, wantStatus: 400, wantErr: `"from" must be a day`},
		{name: "to not after from", body: `{"objects":["activities"],"from":"2026-11-04","to":"2026-11-04"}`, wantStatus: 400, wantErr: `"to" must be after "from"`},
		{name: "from without to", body: `{"objects":["activities"],"from":"2026-11-04"}`, wantStatus: 400, wantErr: `go together`},
		{name: "range too long", body: `{"objects":["activities"],"from":"2026-01-01","to":"2026-11-01"}`, wantStatus: 400, wantErr: `over the limit of 31`},
		{name: "unknown field", body: `{"objects":["activities"],"form":"2026-11-01"}`, wantStatus: 400, wantErr: `body must be a JSON object`},
		{name: "not json", body: `objects=activities`, wantStatus: 400, wantErr: `body must be a JSON object`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "")
			rec := h.do(t, "POST", "/exports", []byte(tc.body), nil)
			if rec.Code != tc.wantStatus {
				t.Fatalf("POST /exports %s = %d %s, want %d", tc.body, rec.Code, rec.Body, tc.wantStatus)
			}
			if tc.wantErr != "" {
				var eb errorBody
				_ = json.Unmarshal(rec.Body.Bytes(), &eb)
				if !strings.Contains(eb.Error, tc.wantErr) {
					t.Errorf("error = %q, want it to mention %q", eb.Error, tc.wantErr)
				}
				if len(h.invoker.calls) != 0 {
					t.Errorf("a refused request invoked the export function")
				}
				return
			}
			var got exportAccepted
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || !strings.HasPrefix(got.RunID, "run-") {
				t.Fatalf("answer %s has no run id", rec.Body)
			}
			if diff := cmp.Diff(tc.wantJobs, got.Jobs); diff != "" {
				t.Errorf("jobs (-want +got):\n%s", diff)
			}
			if len(h.invoker.calls) != 1 || h.invoker.calls[0].Function != "cebulk-export" || !strings.Contains(h.invoker.calls[0].Payload, `"action":"run"`) {
				t.Errorf("invocations = %+v, want one run of cebulk-export", h.invoker.calls)
			}
		})
	}
}

func TestExportsIdempotencyKey(t *testing.T) {
	h := newHarness(t, "")
	body := []byte(`{"objects":["activities"],"from":"2026-11-01","to":"2026-11-02"}`)
	key := map[string]string{"Idempotency-Key": "backfill-nov-1"}
	first := h.do(t, "POST", "/exports", body, key)
	second := h.do(t, "POST", "/exports", body, key)
	if first.Code != 202 || second.Code != 202 {
		t.Fatalf("statuses = %d, %d; want 202, 202", first.Code, second.Code)
	}
	if diff := cmp.Diff(first.Body.String(), second.Body.String()); diff != "" {
		t.Errorf("same key, different answers (-first +second):\n%s", diff)
	}
	if second.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay not marked")
	}
	if n := len(h.invoker.calls); n != 1 {
		t.Errorf("same key twice started %d runs, want 1", n)
	}
	other := h.do(t, "POST", "/exports", []byte(`{"objects":["users"]}`), key)
	if other.Code != 422 {
		t.Errorf("same key, other body = %d, want 422", other.Code)
	}
	// A key whose first run could not start is retried by the next request.
	h.invoker.err = errors.New("throttled")
	if rec := h.do(t, "POST", "/exports", body, map[string]string{"Idempotency-Key": "k2"}); rec.Code != 500 {
		t.Fatalf("failing invoke = %d, want 500", rec.Code)
	}
	h.invoker.err = nil
	if rec := h.do(t, "POST", "/exports", body, map[string]string{"Idempotency-Key": "k2"}); rec.Code != 202 {
		t.Fatalf("retry after failed invoke = %d %s, want 202", rec.Code, rec.Body)
	}
	if n := len(h.invoker.calls); n != 2 {
		t.Errorf("runs = %d, want 2", n)
	}
}

func TestJobsAndHealth(t *testing.T) {
	j := pendingJob("export-activities-2026-11-25", "export")
	h := newHarness(t, "", j)
	rec := h.do(t, "GET", "/jobs/export-activities-2026-11-25", nil, nil)
	if rec.Code != 200 {
		t.Fatalf("GET job = %d %s", rec.Code, rec.Body)
	}
	if strings.Contains(rec.Body.String(), "tokenHash") || strings.Contains(rec.Body.String(), j.TokenHash) {
		t.Errorf("job answer leaks the token hash: %s", rec.Body)
	}
	var got ledger.Job
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.ID != j.ID || got.CEJobID != "4242" {
		t.Errorf("job answer = %s", rec.Body)
	}
	for _, tc := range []struct {
		target string
		want   int
	}{
		{"/jobs/nope", 404},
		{"/jobs/..%2Fsecrets", 404},
		{"/healthz", 200},
		{"/nothing-here", 404},
	} {
		if rec := h.do(t, "GET", tc.target, nil, nil); rec.Code != tc.want {
			t.Errorf("GET %s = %d, want %d", tc.target, rec.Code, tc.want)
		}
	}
	for _, tc := range []struct{ method, target, allow string }{
		{"DELETE", "/jobs/export-activities-2026-11-25", "GET"},
		{"GET", "/callbacks/ce", "POST"},
		{"PUT", "/exports", "POST"},
		{"POST", "/healthz", "GET"},
	} {
		rec := h.do(t, tc.method, tc.target, nil, nil)
		var eb errorBody
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != tc.allow || json.Unmarshal(rec.Body.Bytes(), &eb) != nil || eb.Error == "" {
			t.Errorf("%s %s = %d (Allow %q) %s, want a JSON 405 allowing %s", tc.method, tc.target, rec.Code, rec.Header().Get("Allow"), rec.Body, tc.allow)
		}
	}
	_ = io.Discard
}

// With a backend that never calls back, a callback is refused before the
// secret is read and changes nothing.
func TestCallbackWithoutCallbacks(t *testing.T) {
	jobs := newFakeJobs(pendingJob("export-activities-2026-11-25", "export"))
	invoker := &fakeInvoker{}
	srv := NewServer(Config{Bucket: "data", ExportFunction: "cebulk-export", ImportFunction: "cebulk-import", NoCallbacks: true},
		Deps{Jobs: jobs, CE: &fakeCE{status: ce.StatusCompleted}, Secrets: failingSecrets{}, Invoker: invoker, Store: newFakeStore(), Log: slog.New(slog.DiscardHandler)})
	req := httptest.NewRequest(http.MethodPost, "/callbacks/ce?job=export-activities-2026-11-25&token="+testToken, bytes.NewReader(fixture(t, "bulk-completed.json")))
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "BACKEND=mixpanel") {
		t.Errorf("callback = %d %s; want 404 naming the backend", rec.Code, rec.Body)
	}
	if len(invoker.calls) != 0 {
		t.Errorf("invocations %v; want none", invoker.calls)
	}
}

// failingSecrets fails the test's purpose if read.
type failingSecrets struct{}

func (failingSecrets) Secret(context.Context) (secrets.Secret, error) {
	return secrets.Secret{}, errors.New("the secret was read")
}
