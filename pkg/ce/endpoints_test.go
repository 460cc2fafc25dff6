package ce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestStartQuery(t *testing.T) {
	est := time.FixedZone("EST", -5*60*60)
	tests := []struct {
		name        string
		req         QueryRequest
		fixture     string
		wantQuery   url.Values
		wantHeader  map[string]string
		wantMeta    string // metaData field; "" means no body
		wantJob     *Job
		wantNoCType bool
	}{
		{
			name:      "default query",
			req:       QueryRequest{Object: "activities"},
			fixture:   "query-created.json",
			wantQuery: url.Values{"q": {"select * from activities"}},
			wantJob:   &Job{ID: "42114492", Status: StatusCreated},
		},
		{
			name: "window in UTC",
			req: QueryRequest{
				Object: "activities",
				From:   time.Date(2026, 11, 24, 19, 0, 0, 0, est),
				To:     time.Date(2026, 11, 25, 19, 0, 0, 0, est),
			},
			fixture: "query-created.json",
			wantQuery: url.Values{
				"q":    {"select * from activities"},
				"from": {"2026-11-25T00:00:00Z"},
				"to":   {"2026-11-26T00:00:00Z"},
			},
			wantJob: &Job{ID: "42114492", Status: StatusCreated},
		},
		{
			name:      "from only",
			req:       QueryRequest{Object: "activities", From: time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)},
			fixture:   "query-created.json",
			wantQuery: url.Values{"q": {"select * from activities"}, "from": {"2026-11-25T00:00:00Z"}},
			wantJob:   &Job{ID: "42114492", Status: StatusCreated},
		},
		{
			name:      "custom CEQL and numeric id",
			req:       QueryRequest{Object: "users", Query: `select * from users where query = '(properties["$created"] > "2011-03-14T09:53:54")'`},
			fixture:   "query-created-numeric-id.json",
			wantQuery: url.Values{"q": {`select * from users where query = '(properties["$created"] > "2011-03-14T09:53:54")'`}},
			wantJob:   &Job{ID: "42114493", Status: StatusCreated},
		},
		{
			name: "callback URL and payload",
			req: QueryRequest{
				Object:          "users",
				CallbackURL:     "https://hooks.example.com/callbacks/ce?job=export-users-1&token=tok-SECRET-99",
				CallbackPayload: map[string]string{"job": "export-users-1"},
			},
			fixture:    "query-created.json",
			wantQuery:  url.Values{"q": {"select * from users"}},
			wantHeader: map[string]string{"Elements-Async-Callback-Url": "https://hooks.example.com/callbacks/ce?job=export-users-1&token=tok-SECRET-99"},
			wantMeta:   `{"callback-payload":{"job":"export-users-1"}}`,
			wantJob:    &Job{ID: "42114492", Status: StatusCreated},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, mux, _ := setup(t)
			mux.HandleFunc("/hubs/general/bulk/query", func(w http.ResponseWriter, r *http.Request) {
				testMethod(t, r, "POST")
				testAuth(t, r)
				testHeader(t, r, "Accept", "application/json")
				testQuery(t, r, tc.wantQuery)
				for h, v := range tc.wantHeader {
					testHeader(t, r, h, v)
				}
				if tc.wantHeader == nil {
					testHeader(t, r, "Elements-Async-Callback-Url", "")
				}
				if tc.wantMeta == "" {
					if b, _ := io.ReadAll(r.Body); len(b) != 0 {
						t.Errorf("request body = %q, want empty", b)
					}
				} else {
					if got := multipartFields(t, r); !cmp.Equal(got, map[string]string{"metaData": tc.wantMeta}) {
						t.Errorf("multipart fields = %v, want metaData=%s", got, tc.wantMeta)
					}
				}
				w.Write(fixture(t, tc.fixture))
			})
			job, err := c.StartQuery(t.Context(), tc.req)
			if err != nil {
				t.Fatalf("StartQuery: %v", err)
			}
			if diff := cmp.Diff(tc.wantJob, job); diff != "" {
				t.Errorf("StartQuery job (-want +got):\n%s", diff)
			}
		})
	}
}

// multipartFields parses a multipart/form-data request and returns its
// non-file fields.
func multipartFields(t *testing.T, r *http.Request) map[string]string {
	t.Helper()
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		t.Fatalf("Content-Type = %q, want multipart/form-data", r.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	got := map[string]string{}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatalf("NextPart: %v", err)
		}
		b, _ := io.ReadAll(p)
		got[p.FormName()] = string(b)
	}
}

func TestStartQueryValidation(t *testing.T) {
	c, _, _ := setup(t)
	tests := []struct {
		name string
		req  QueryRequest
	}{
		{"no object", QueryRequest{}},
		{"to before from", QueryRequest{Object: "activities", From: time.Unix(200, 0), To: time.Unix(100, 0)}},
		{"relative callback", QueryRequest{Object: "activities", CallbackURL: "/callbacks/ce?token=tok-SECRET-99"}},
		{"unencodable payload", QueryRequest{Object: "activities", CallbackPayload: func() {}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if job, err := c.StartQuery(t.Context(), tc.req); err == nil {
				t.Errorf("StartQuery(%+v) = %+v, want error", tc.req, job)
			} else {
				assertNoSecrets(t, err.Error())
			}
		})
	}
}

func TestStartQueryRetries(t *testing.T) {
	tests := []struct {
		name       string
		statuses   []int // responses before a success
		payload    bool
		wantCalls  int32
		wantStatus int // 0 means success
	}{
		{"503 is a refusal: retried", []int{503, 503}, false, 3, 0},
		{"429 is a refusal: retried", []int{429}, false, 2, 0},
		{"retried with the multipart body again", []int{503}, true, 2, 0},
		{"500 is ambiguous: not retried", []int{500}, false, 1, 500},
		{"502 is ambiguous: not retried", []int{502}, false, 1, 502},
		{"504 is ambiguous: not retried", []int{504}, false, 1, 504},
		{"400 not retried", []int{400}, false, 1, 400},
		{"refusals exhaust retries", []int{429, 429, 429, 429, 429}, false, 5, 429},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, mux, _ := setup(t)
			var calls atomic.Int32
			mux.HandleFunc("/hubs/general/bulk/query", func(w http.ResponseWriter, r *http.Request) {
				n := int(calls.Add(1))
				if tc.payload {
					if got := multipartFields(t, r)["metaData"]; got != `{"callback-payload":"p"}` {
						t.Errorf("attempt %d metaData = %q", n, got)
					}
				}
				if n <= len(tc.statuses) {
					w.WriteHeader(tc.statuses[n-1])
					return
				}
				w.Write(fixture(t, "query-created.json"))
			})
			req := QueryRequest{Object: "activities"}
			if tc.payload {
				req.CallbackPayload = "p"
			}
			_, err := c.StartQuery(t.Context(), req)
			if got := calls.Load(); got != tc.wantCalls {
				t.Errorf("calls = %d, want %d", got, tc.wantCalls)
			}
			var apiErr *APIError
			switch {
			case tc.wantStatus == 0 && err != nil:
				t.Errorf("StartQuery error = %v, want nil", err)
			case tc.wantStatus != 0 && (!errors.As(err, &apiErr) || apiErr.StatusCode != tc.wantStatus):
				t.Errorf("StartQuery error = %v, want APIError %d", err, tc.wantStatus)
			}
		})
	}
}

func TestStartQueryNotRetriedAfterSend(t *testing.T) {
	// The server reads the request and drops the connection without an
	// answer: the job may exist, so the client must not send it again.
	c, mux, _ := setup(t)
	var calls atomic.Int32
	mux.HandleFunc("/hubs/general/bulk/query", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Errorf("Hijack: %v", err)
			return
		}
		conn.Close()
	})
	_, err := c.StartQuery(t.Context(), QueryRequest{Object: "activities"})
	if err == nil {
		t.Fatal("StartQuery = nil error, want a transport error")
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("calls = %d, want 1", got)
	}
}

func TestStartQueryNoJobID(t *testing.T) {
	c, mux, _ := setup(t)
	mux.HandleFunc("/hubs/general/bulk/query", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"status":"CREATED"}`))
	})
	if _, err := c.StartQuery(t.Context(), QueryRequest{Object: "activities"}); err == nil {
		t.Error("StartQuery with no id in the response: want error")
	}
}

func TestStatus(t *testing.T) {
	tests := []struct {
		fixture string
		want    *Job
	}{
		{"status-v2-completed.json", &Job{ID: "42114492", Status: StatusCompleted, ObjectName: "activities", Direction: "DOWNLOAD", RecordsCount: 41}},
		{"status-v3-complete.json", &Job{ID: "1722", Status: StatusCompleted, ObjectName: "users", Direction: "DOWNLOAD", RecordsCount: 41, RecordsFailedCount: 2, Message: "Job completed"}},
		{"status-aborted.json", &Job{ID: "99", Status: StatusAborted, ObjectName: "users", Direction: "UPLOAD", RecordsCount: 1, RecordsFailedCount: 1, Error: "All prospects require either 'email' or 'id'"}},
		{"status-canceled.json", &Job{ID: "7", Status: StatusCancelled}},
		{"status-unknown.json", &Job{ID: "8", Status: "QUEUED_FOR_VENDOR"}},
	}
	for _, tc := range tests {
		t.Run(tc.fixture, func(t *testing.T) {
			c, mux, _ := setup(t)
			mux.HandleFunc("/hubs/general/bulk/"+tc.want.ID+"/status", func(w http.ResponseWriter, r *http.Request) {
				testMethod(t, r, "GET")
				testAuth(t, r)
				testHeader(t, r, "Accept", "application/json")
				testQuery(t, r, url.Values{})
				w.Write(fixture(t, tc.fixture))
			})
			got, err := c.Status(t.Context(), tc.want.ID)
			if err != nil {
				t.Fatalf("Status: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Status (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStatusFillsMissingID(t *testing.T) {
	c, mux, _ := setup(t)
	mux.HandleFunc("/hubs/general/bulk/55/status", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"status":"running"}`))
	})
	job, err := c.Status(t.Context(), "55")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&Job{ID: "55", Status: StatusRunning}, job); diff != "" {
		t.Errorf("Status (-want +got):\n%s", diff)
	}
}

// statusSequence serves the given status bodies in turn, repeating the last.
func statusSequence(t *testing.T, mux *http.ServeMux, id string, bodies ...string) *atomic.Int32 {
	t.Helper()
	var calls atomic.Int32
	mux.HandleFunc("/hubs/general/bulk/"+id+"/status", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, "GET")
		n := int(calls.Add(1))
		w.Write([]byte(bodies[min(n, len(bodies))-1]))
	})
	return &calls
}

func TestWait(t *testing.T) {
	tests := []struct {
		name      string
		bodies    []string
		wantJob   *Job
		wantErr   *JobError
		wantCalls int32
	}{
		{
			name: "completes through unknown states",
			bodies: []string{
				`{"id":"1","status":"CREATED"}`, `{"id":"1","status":"STARTED"}`, `{"id":"1","status":"Running"}`,
				`{"id":"1","status":"WAITING_FOR_VENDOR"}`, `{"id":"1","status":"COMPLETED","recordsCount":41}`,
			},
			wantJob:   &Job{ID: "1", Status: StatusCompleted, RecordsCount: 41},
			wantCalls: 5,
		},
		{
			name:      "completed with failed records is still completed",
			bodies:    []string{`{"id":"1","status":"complete","recordsCount":3,"recordsFailedCount":2}`},
			wantJob:   &Job{ID: "1", Status: StatusCompleted, RecordsCount: 3, RecordsFailedCount: 2},
			wantCalls: 1,
		},
		{
			name:      "error",
			bodies:    []string{`{"id":"1","status":"RUNNING"}`, `{"id":"1","status":"ERROR","error":"Mixpanel rate limit"}`},
			wantJob:   &Job{ID: "1", Status: StatusError, Error: "Mixpanel rate limit"},
			wantErr:   &JobError{JobID: "1", Status: StatusError, Message: "Mixpanel rate limit"},
			wantCalls: 2,
		},
		{
			name:      "aborted with a message",
			bodies:    []string{`{"id":"1","status":"ABORTED","message":"CE failure"}`},
			wantJob:   &Job{ID: "1", Status: StatusAborted, Message: "CE failure"},
			wantErr:   &JobError{JobID: "1", Status: StatusAborted, Message: "CE failure"},
			wantCalls: 1,
		},
		{
			name:      "canceled spelling",
			bodies:    []string{`{"id":"1","status":"CANCELLATION_PENDING"}`, `{"id":1,"jobStatus":"canceled"}`},
			wantJob:   &Job{ID: "1", Status: StatusCancelled},
			wantErr:   &JobError{JobID: "1", Status: StatusCancelled},
			wantCalls: 2,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, mux, rec := setup(t)
			calls := statusSequence(t, mux, "1", tc.bodies...)
			job, err := c.Wait(t.Context(), "1")
			if diff := cmp.Diff(tc.wantJob, job); diff != "" {
				t.Errorf("Wait job (-want +got):\n%s", diff)
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Errorf("Wait error = %v, want nil", err)
				}
			} else {
				var jobErr *JobError
				if !errors.As(err, &jobErr) {
					t.Fatalf("Wait error = %v, want *JobError", err)
				}
				if diff := cmp.Diff(tc.wantErr, jobErr); diff != "" {
					t.Errorf("JobError (-want +got):\n%s", diff)
				}
			}
			if got := calls.Load(); got != tc.wantCalls {
				t.Errorf("status calls = %d, want %d", got, tc.wantCalls)
			}
			if got := len(rec.recorded()); got != int(tc.wantCalls)-1 {
				t.Errorf("poll waits = %d, want %d", got, tc.wantCalls-1)
			}
		})
	}
}

func TestWaitPollIntervalGrowsToCap(t *testing.T) {
	c, mux, rec := setup(t, WithPollInterval(16*time.Second))
	bodies := make([]string, 12)
	for i := range bodies {
		bodies[i] = `{"id":"1","status":"RUNNING"}`
	}
	bodies = append(bodies, `{"id":"1","status":"COMPLETED"}`)
	statusSequence(t, mux, "1", bodies...)
	if _, err := c.Wait(t.Context(), "1"); err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{16 * time.Second, 20 * time.Second, 25 * time.Second, 31250 * time.Millisecond,
		39062500 * time.Microsecond, 48828125 * time.Microsecond, 61035156250 * time.Nanosecond}
	for len(want) < 12 {
		want = append(want, 64*time.Second)
	}
	if diff := cmp.Diff(want, rec.recorded()); diff != "" {
		t.Errorf("poll intervals (-want +got):\n%s", diff)
	}
}

func TestWaitContextCanceled(t *testing.T) {
	c, mux, _ := setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	var calls atomic.Int32
	mux.HandleFunc("/hubs/general/bulk/1/status", func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 3 {
			cancel()
		}
		w.Write([]byte(`{"id":"1","status":"RUNNING"}`))
	})
	job, err := c.Wait(ctx, "1")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Wait error = %v, want context.Canceled", err)
	}
	if job == nil || job.Status != StatusRunning {
		t.Errorf("Wait job = %+v, want the last RUNNING status", job)
	}
	if got := calls.Load(); got != 3 {
		t.Errorf("status calls = %d, want 3", got)
	}
}

func TestWaitStatusError(t *testing.T) {
	c, mux, _ := setup(t)
	mux.HandleFunc("/hubs/general/bulk/1/status", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"message":"no such job"}`, http.StatusNotFound)
	})
	if _, err := c.Wait(t.Context(), "1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Wait error = %v, want ErrNotFound", err)
	}
}

func TestCancel(t *testing.T) {
	c, mux, _ := setup(t)
	var calls atomic.Int32
	mux.HandleFunc("/hubs/general/bulk/77/cancel", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, "PUT")
		testAuth(t, r)
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable) // PUT cancel is idempotent: retried
			return
		}
		w.Write([]byte(`{"id":"77","status":"CANCELLATION_PENDING"}`))
	})
	if err := c.Cancel(t.Context(), "77"); err != nil {
		t.Errorf("Cancel: %v", err)
	}
	if got := calls.Load(); got != 2 {
		t.Errorf("calls = %d, want 2", got)
	}
	if err := c.Cancel(t.Context(), "78"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Cancel(unknown) error = %v, want ErrNotFound", err)
	}
}

func TestJobs(t *testing.T) {
	c, mux, _ := setup(t)
	var calls atomic.Int32
	mux.HandleFunc("/hubs/general/bulk/jobs", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, "GET")
		testAuth(t, r)
		switch calls.Add(1) {
		case 1:
			testQuery(t, r, url.Values{"where": {"job_direction='UPLOAD'"}, "pageSize": {"200"}})
			w.Header().Set("Elements-Next-Page-Token", "page-2-token")
			w.Write(fixture(t, "jobs-page1.json"))
		default:
			testQuery(t, r, url.Values{"where": {"job_direction='UPLOAD'"}, "pageSize": {"200"}, "nextPage": {"page-2-token"}})
			w.Write(fixture(t, "jobs-page2.json"))
		}
	})
	var got []*Job
	for job, err := range c.Jobs(t.Context(), "job_direction='UPLOAD'") {
		if err != nil {
			t.Fatalf("Jobs: %v", err)
		}
		got = append(got, job)
	}
	want := []*Job{
		{ID: "1722", Status: StatusCompleted, ObjectName: "activities", Direction: "DOWNLOAD", RecordsCount: 41},
		{ID: "1723", Status: StatusError, ObjectName: "users", Direction: "UPLOAD", RecordsCount: 10, RecordsFailedCount: 10},
		{ID: "1724", Status: StatusRunning, ObjectName: "users", Direction: "DOWNLOAD"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Jobs (-want +got):\n%s", diff)
	}
}

func TestErrors(t *testing.T) {
	c, mux, _ := setup(t)
	var calls atomic.Int32
	mux.HandleFunc("/hubs/general/bulk/5/errors", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, "GET")
		testAuth(t, r)
		switch calls.Add(1) {
		case 1:
			testQuery(t, r, url.Values{"pageSize": {"2"}})
			w.Header().Set("elements-next-page-token", "tok+/=1")
			w.Write(fixture(t, "errors-page1.json"))
		case 2:
			testQuery(t, r, url.Values{"pageSize": {"2"}, "nextPage": {"tok+/=1"}})
			w.Header().Set("elements-next-page-token", "tok2")
			w.Write(fixture(t, "errors-page2.json"))
		case 3:
			testQuery(t, r, url.Values{"pageSize": {"2"}, "nextPage": {"tok2"}})
			w.Write([]byte(`[]`))
		default:
			t.Error("request after the last page")
		}
	})
	var got []string
	for raw, err := range c.Errors(t.Context(), "5", 2) {
		if err != nil {
			t.Fatalf("Errors: %v", err)
		}
		got = append(got, string(raw))
	}
	want := []string{
		`{"status": "74234: Invalid prospect email address", "record": {"$distinct_id": "12157"}}`,
		`"Record 2: properties.time is required"`,
		`{"status": "Duplicate $insert_id"}`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Errors (-want +got):\n%s", diff)
	}
}

func TestErrorsDefaultPageSizeAndEarlyBreak(t *testing.T) {
	c, mux, _ := setup(t)
	var calls atomic.Int32
	mux.HandleFunc("/hubs/general/bulk/5/errors", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		testQuery(t, r, url.Values{"pageSize": {"200"}})
		w.Header().Set("elements-next-page-token", "more")
		w.Write([]byte(`[{"status":"a"},{"status":"b"}]`))
	})
	for raw, err := range c.Errors(t.Context(), "5", 0) {
		if err != nil {
			t.Fatal(err)
		}
		if string(raw) != `{"status":"a"}` {
			t.Errorf("first error = %s", raw)
		}
		break
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("calls = %d, want 1 (no page after break)", got)
	}
}

func TestErrorsFailures(t *testing.T) {
	tests := []struct {
		name    string
		handler func(n int32, w http.ResponseWriter)
		wantN   int // elements yielded before the error
		check   func(error) bool
	}{
		{
			name: "second page fails after retries",
			handler: func(n int32, w http.ResponseWriter) {
				if n == 1 {
					w.Header().Set("elements-next-page-token", "t")
					w.Write([]byte(`["e1"]`))
					return
				}
				w.WriteHeader(http.StatusInternalServerError)
			},
			wantN: 1,
			check: func(err error) bool { var e *APIError; return errors.As(err, &e) && e.StatusCode == 500 },
		},
		{
			name: "paging does not advance",
			handler: func(n int32, w http.ResponseWriter) {
				w.Header().Set("elements-next-page-token", "same")
				w.Write([]byte(`["e"]`))
			},
			wantN: 2,
			check: func(err error) bool { return strings.Contains(err.Error(), "paging did not advance") },
		},
		{
			name: "not an array",
			handler: func(n int32, w http.ResponseWriter) {
				w.Write([]byte(`{"message":"weird"}`))
			},
			wantN: 0,
			check: func(err error) bool { return strings.Contains(err.Error(), "read response") },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, mux, _ := setup(t)
			var calls atomic.Int32
			mux.HandleFunc("/hubs/general/bulk/5/errors", func(w http.ResponseWriter, r *http.Request) {
				tc.handler(calls.Add(1), w)
			})
			n, errs := 0, 0
			for _, err := range c.Errors(t.Context(), "5", 10) {
				if err != nil {
					errs++
					if !tc.check(err) {
						t.Errorf("Errors error = %v", err)
					}
					continue
				}
				n++
			}
			if n != tc.wantN || errs != 1 {
				t.Errorf("Errors yielded %d elements and %d errors, want %d and 1", n, errs, tc.wantN)
			}
		})
	}
}

func TestJobJSONRoundTrip(t *testing.T) {
	want := &Job{ID: "9", Status: StatusError, ObjectName: "users", Direction: "UPLOAD", RecordsCount: 3, RecordsFailedCount: 1, Error: "bad", Message: "m"}
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got := new(Job)
	if err := json.Unmarshal(b, got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("round trip of %s (-want +got):\n%s", b, diff)
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		in           string
		want         Status
		wantTerminal bool
	}{
		{"CREATED", StatusCreated, false},
		{"started", StatusStarted, false},
		{" Running ", StatusRunning, false},
		{"COMPLETED", StatusCompleted, true},
		{"Complete", StatusCompleted, true},
		{"ABORTED", StatusAborted, true},
		{"error", StatusError, true},
		{"CANCELLED", StatusCancelled, true},
		{"canceled", StatusCancelled, true},
		{"cancellation_pending", StatusCancellationPending, false},
		{"SOMETHING_NEW", "SOMETHING_NEW", false},
		{"", "", false},
	}
	for _, tc := range tests {
		got := ParseStatus(tc.in)
		if got != tc.want || got.Terminal() != tc.wantTerminal {
			t.Errorf("ParseStatus(%q) = %q (terminal %v), want %q (terminal %v)", tc.in, got, got.Terminal(), tc.want, tc.wantTerminal)
		}
	}
}

func TestJobUnmarshalLenient(t *testing.T) {
	tests := []struct {
		in      string
		want    Job
		wantErr bool
	}{
		{`{"id":"1","recordsCount":"41","recordsFailedCount":"0"}`, Job{ID: "1", RecordsCount: 41}, false},
		{`{"id":1e3,"recordCount":41.0}`, Job{ID: "1000", RecordsCount: 41}, false},
		{`{"id":12345678901234567890}`, Job{ID: "12345678901234567890"}, false},
		{`{"id":null,"status":null,"recordsCount":null}`, Job{}, false},
		{`{"status":"RUNNING","jobStatus":"COMPLETED"}`, Job{Status: StatusRunning}, false},
		{`{"status":"","jobStatus":"COMPLETED"}`, Job{Status: StatusCompleted}, false},
		{`{"error":{"code":7}}`, Job{Error: `{"code":7}`}, false},
		{`{"recordsCount":"x"}`, Job{}, true},
		{`{"recordsCount":4.5}`, Job{}, true},
		{`{"recordsCount":true}`, Job{}, true},
		{`[]`, Job{}, true},
	}
	for _, tc := range tests {
		var got Job
		err := json.Unmarshal([]byte(tc.in), &got)
		if (err != nil) != tc.wantErr {
			t.Errorf("Unmarshal(%s) error = %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if diff := cmp.Diff(tc.want, got); !tc.wantErr && diff != "" {
			t.Errorf("Unmarshal(%s) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestJobErrorMessage(t *testing.T) {
	err := error(&JobError{JobID: "12", Status: StatusError, Message: "vendor throttled"})
	if got, want := err.Error(), "ce: job 12 ended ERROR: vendor throttled"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	wrapped := fmt.Errorf("collect: %w", err)
	var jobErr *JobError
	if !errors.As(wrapped, &jobErr) || jobErr.Status != StatusError {
		t.Errorf("errors.As(wrapped JobError) failed: %v", wrapped)
	}
}
