package cetest_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/cetest"
)

// checkErrorShape checks CE's error body: exactly requestId and message.
func checkErrorShape(t *testing.T, r response) {
	t.Helper()
	m := r.object(t)
	id, _ := m["requestId"].(string)
	msg, _ := m["message"].(string)
	if id == "" || msg == "" || len(m) != 2 {
		t.Errorf("error body = %s, want {\"requestId\": \"...\", \"message\": \"...\"}", r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type = %q, want application/json", ct)
	}
}

func TestAuthorization(t *testing.T) {
	e := newEnv(t, cetest.Options{})
	u, o, el := cetest.DefaultUserSecret, cetest.DefaultOrgSecret, cetest.DefaultElementToken
	tests := []struct {
		name string
		auth string
		want int
	}{
		{"all three", "User " + u + ", Organization " + o + ", Element " + el, http.StatusOK},
		{"element first", "Element " + el + ", User " + u + ", Organization " + o, http.StatusOK},
		{"organization first", "Organization " + o + ", User " + u + ", Element " + el, http.StatusOK},
		{"loose spacing", "  User " + u + " ,Organization " + o + ",   Element " + el + " ", http.StatusOK},
		{"lower-case schemes", "user " + u + ", organization " + o + ", element " + el, http.StatusOK},
		{"missing header", "", http.StatusUnauthorized},
		{"platform auth only", "User " + u + ", Organization " + o, http.StatusUnauthorized},
		{"no organization", "User " + u + ", Element " + el, http.StatusUnauthorized},
		{"wrong user", "User nope, Organization " + o + ", Element " + el, http.StatusUnauthorized},
		{"wrong organization", "User " + u + ", Organization nope, Element " + el, http.StatusUnauthorized},
		{"wrong element", "User " + u + ", Organization " + o + ", Element nope", http.StatusUnauthorized},
		{"duplicate part", "User " + u + ", User " + u + ", Organization " + o + ", Element " + el, http.StatusUnauthorized},
		{"unknown part", "Bearer x, User " + u + ", Organization " + o + ", Element " + el, http.StatusUnauthorized},
		{"values swapped", "User " + o + ", Organization " + u + ", Element " + el, http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("GET", "/hubs/general/bulk/jobs", nil, "Authorization: "+tc.auth)
			if r.code != tc.want {
				t.Fatalf("GET bulk/jobs with Authorization %q = %d %s, want %d", tc.auth, r.code, r.body, tc.want)
			}
			if r.code != http.StatusOK {
				checkErrorShape(t, r)
			}
		})
	}
}

func TestEveryRouteNeedsAuthorization(t *testing.T) {
	e := newEnv(t, cetest.Options{})
	id := e.startQuery("q=select%20*%20from%20activities")
	body, ct := multipartBody(t, `{"format":"json"}`, "")
	routes := []struct {
		method, path string
	}{
		{"POST", "/hubs/general/bulk/query?q=select%20*%20from%20activities"},
		{"POST", "/bulk/download"},
		{"GET", "/bulk/" + id + "/status"},
		{"GET", "/bulk/" + id + "/errors"},
		{"GET", "/bulk/" + id + "/activities"},
		{"PUT", "/bulk/" + id + "/cancel"},
		{"GET", "/bulk/jobs"},
		{"POST", "/bulk/activities"},
	}
	for _, rt := range routes {
		r := e.do(rt.method, rt.path, body, "Authorization:", "Content-Type: "+ct)
		if r.code != http.StatusUnauthorized {
			t.Errorf("%s %s without Authorization = %d, want 401", rt.method, rt.path, r.code)
		}
		checkErrorShape(t, r)
	}
	if got := len(e.fake.Jobs()); got != 1 {
		t.Errorf("jobs after unauthorized calls = %d, want 1", got)
	}
}

func TestRouteErrors(t *testing.T) {
	e := newEnv(t, cetest.Options{})
	e.fake.Seed("activities", []map[string]any{event("Login", e.clock.Now().Add(-time.Hour), "u1")})
	id := e.startQuery("q=select%20*%20from%20activities")
	e.status(id) // completes it
	tests := []struct {
		name         string
		method, path string
		headers      []string
		want         int
		wantAllow    string
	}{
		{"unknown job status", "GET", "/hubs/general/bulk/9999/status", nil, 404, ""},
		{"unknown job errors", "GET", "/bulk/9999/errors", nil, 404, ""},
		{"unknown job cancel", "PUT", "/bulk/9999/cancel", nil, 404, ""},
		{"unknown job download", "GET", "/bulk/9999/activities", nil, 404, ""},
		{"query with GET", "GET", "/hubs/general/bulk/query", nil, 405, "POST"},
		{"download v3 with GET", "GET", "/bulk/download", nil, 405, "POST"},
		{"jobs with POST", "POST", "/bulk/jobs", nil, 405, "GET"},
		{"upload with GET", "GET", "/bulk/activities", nil, 405, "POST"},
		{"status with DELETE", "DELETE", "/bulk/" + id + "/status", nil, 405, "GET"},
		{"cancel with POST", "POST", "/bulk/" + id + "/cancel", nil, 405, "PUT"},
		{"download with POST", "POST", "/bulk/" + id + "/activities", nil, 405, "GET"},
		{"query of unknown object", "POST", "/bulk/query?q=select%20*%20from%20widgets", nil, 400, ""},
		{"upload of unknown object", "POST", "/bulk/widgets", []string{"Content-Type: multipart/form-data; boundary=x"}, 400, ""},
		{"download of unknown object", "GET", "/bulk/" + id + "/widgets", nil, 400, ""},
		{"download of another object", "GET", "/bulk/" + id + "/users", nil, 400, ""},
		{"query without q", "POST", "/bulk/query", nil, 400, ""},
		{"query with field list", "POST", "/bulk/query?q=select%20event%20from%20activities", nil, 400, ""},
		{"query that is not CEQL", "POST", "/bulk/query?q=activities", nil, 400, ""},
		{"query with bad from", "POST", "/bulk/query?q=select%20*%20from%20activities&from=yesterday", nil, 400, ""},
		{"query with to before from", "POST", "/bulk/query?q=select%20*%20from%20activities&from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", nil, 400, ""},
		{"query with relative callback", "POST", "/bulk/query?q=select%20*%20from%20activities", []string{"Elements-Async-Callback-Url: /callbacks/ce"}, 400, ""},
		{"query with unsupported body", "POST", "/bulk/query?q=select%20*%20from%20activities", []string{"Content-Type: text/plain"}, 415, ""},
		{"errors with pageSize 0", "GET", "/bulk/" + id + "/errors?pageSize=0", nil, 400, ""},
		{"errors with bad token", "GET", "/bulk/" + id + "/errors?nextPage=garbage", nil, 400, ""},
		{"jobs with unsupported where", "GET", "/bulk/jobs?where=record_count%3E1", nil, 400, ""},
		{"download with unacceptable Accept", "GET", "/bulk/" + id + "/activities", []string{"Accept: application/xml"}, 406, ""},
		{"upload that is not multipart", "POST", "/bulk/activities", []string{"Content-Type: application/json"}, 415, ""},
		{"download v3 that is not JSON", "POST", "/bulk/download", []string{"Content-Type: text/plain"}, 415, ""},
		{"cancel of a completed job", "PUT", "/bulk/" + id + "/cancel", nil, 400, ""},
		{"other hub", "GET", "/hubs/crm/bulk/jobs", nil, 404, ""},
		{"not bulk", "GET", "/hubs/general/activities", nil, 404, ""},
		{"too deep", "GET", "/bulk/" + id + "/activities/data", nil, 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, strings.NewReader(""), tc.headers...)
			if r.code != tc.want {
				t.Fatalf("%s %s = %d %s, want %d", tc.method, tc.path, r.code, r.body, tc.want)
			}
			checkErrorShape(t, r)
			if got := r.header.Get("Allow"); got != tc.wantAllow {
				t.Errorf("%s %s: Allow = %q, want %q", tc.method, tc.path, got, tc.wantAllow)
			}
		})
	}
}

func TestPathOutsideAPIBase(t *testing.T) {
	srv, _ := cetest.NewServer(t, cetest.Options{})
	req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/bulk/jobs", nil)
	req.Header.Set("Authorization", authHeader)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /bulk/jobs (no /elements/api-v2) = %d, want 404", resp.StatusCode)
	}
}

func TestHubAndHubless(t *testing.T) {
	e := newEnv(t, cetest.Options{})
	id := e.startQuery("q=select%20*%20from%20users")
	for _, p := range []string{"/hubs/general/bulk/" + id + "/status", "/bulk/" + id + "/status"} {
		if r := e.do("GET", p, nil); r.code != http.StatusOK {
			t.Errorf("GET %s = %d %s, want 200", p, r.code, r.body)
		}
	}
	// A server mounted deeper still answers under .../elements/api-v2.
	srv, _ := cetest.NewServer(t, cetest.Options{})
	req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/proxy/elements/api-v2/bulk/jobs", nil)
	req.Header.Set("Authorization", authHeader)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /proxy/elements/api-v2/bulk/jobs = %d, want 200", resp.StatusCode)
	}
}

func TestLifecycle(t *testing.T) {
	e := newEnv(t, cetest.Options{CompletionDelay: 10 * time.Second})
	now := e.clock.Now()
	e.fake.Seed("activities", []map[string]any{
		event("Login", now.Add(-2*time.Hour), "u1"),
		event("Logout", now.Add(-time.Hour), "u1"),
	})

	r := e.do("POST", "/hubs/general/bulk/query?q=select%20*%20from%20activities", nil)
	if diff := cmp.Diff(map[string]any{"id": "1001", "status": "CREATED", "instanceId": float64(cetest.DefaultInstanceID)}, r.object(t)); diff != "" {
		t.Errorf("POST bulk/query body mismatch (-want +got):\n%s", diff)
	}
	if got := e.fake.Jobs()[0].Status; got != cetest.StatusCreated {
		t.Errorf("Jobs()[0].Status before any read = %q, want CREATED", got)
	}
	running := map[string]any{
		"id": "1001", "status": "RUNNING", "recordsCount": float64(0), "recordsFailedCount": float64(0),
		"object_name": "activities", "job_direction": "DOWNLOAD", "fileFormat": "json",
		"instanceId": float64(cetest.DefaultInstanceID), "bulk_start_time": "2026-11-26T12:00:00.000Z",
	}
	if diff := cmp.Diff(running, e.status("1001")); diff != "" {
		t.Errorf("status right after creation mismatch (-want +got):\n%s", diff)
	}
	if r := e.do("GET", "/bulk/1001/activities", nil); r.code != http.StatusBadRequest {
		t.Errorf("download of a RUNNING job = %d, want 400", r.code)
	}
	e.clock.Advance(9 * time.Second)
	if diff := cmp.Diff(running, e.status("1001")); diff != "" {
		t.Errorf("status after 9s mismatch (-want +got):\n%s", diff)
	}
	e.clock.Advance(time.Second)
	completed := map[string]any{
		"id": "1001", "status": "COMPLETED", "recordsCount": float64(2), "recordsFailedCount": float64(0),
		"object_name": "activities", "job_direction": "DOWNLOAD", "fileFormat": "json",
		"instanceId": float64(cetest.DefaultInstanceID), "bulk_start_time": "2026-11-26T12:00:00.000Z",
		"bulk_finish_time": "2026-11-26T12:00:10.000Z",
	}
	if diff := cmp.Diff(completed, e.status("1001")); diff != "" {
		t.Errorf("status after 10s mismatch (-want +got):\n%s", diff)
	}
	wantJob := cetest.Job{
		ID: "1001", Object: "activities", Direction: cetest.DirectionDownload, Status: cetest.StatusCompleted,
		RecordsCount: 2, Query: "select * from activities", Format: "json",
		Created: now, Finished: now.Add(10 * time.Second), QueryCost: 1,
	}
	if diff := cmp.Diff([]cetest.Job{wantJob}, e.fake.Jobs()); diff != "" {
		t.Errorf("Jobs() mismatch (-want +got):\n%s", diff)
	}
}

func TestZeroDelayCompletesOnFirstRead(t *testing.T) {
	e := newEnv(t, cetest.Options{})
	id := e.startQuery("q=select%20*%20from%20users")
	if got := e.status(id)["status"]; got != "COMPLETED" {
		t.Errorf("first status read = %v, want COMPLETED", got)
	}
}

func TestNextJobOutcome(t *testing.T) {
	for _, status := range []string{cetest.StatusError, cetest.StatusAborted} {
		t.Run(status, func(t *testing.T) {
			e := newEnv(t, cetest.Options{})
			e.fake.SetNextJobOutcome(status, "Mixpanel said no")
			id := e.startQuery("q=select%20*%20from%20activities")
			st := e.status(id)
			if st["status"] != status || st["error"] != "Mixpanel said no" {
				t.Errorf("status = %v, want status %s and error %q", st, status, "Mixpanel said no")
			}
			if r := e.do("GET", "/bulk/"+id+"/activities", nil); r.code != http.StatusBadRequest {
				t.Errorf("download of a %s job = %d, want 400", status, r.code)
			}
			next := e.startQuery("q=select%20*%20from%20activities")
			if got := e.status(next); got["status"] != "COMPLETED" || got["error"] != nil {
				t.Errorf("next job status = %v, want COMPLETED without error", got)
			}
		})
	}
}

func TestNextJobFailedRecords(t *testing.T) {
	e := newEnv(t, cetest.Options{})
	now := e.clock.Now()
	e.fake.Seed("activities", []map[string]any{
		event("Login", now.Add(-3*time.Hour), "u1"),
		event("Search", now.Add(-2*time.Hour), "u1"),
		event("Logout", now.Add(-time.Hour), "u1"),
	})
	e.fake.SetNextJobFailedRecords(2)
	// An upload does not consume it.
	up := e.upload("activities", `{"format":"json"}`, `{"event":"a","properties":{"time":1764000000,"distinct_id":"u"}}`)
	if st := e.status(up); st["recordsCount"] != float64(1) || st["recordsFailedCount"] != float64(0) {
		t.Errorf("upload status = %v, want 1 record, none failed", st)
	}

	id := e.startQuery("q=select%20*%20from%20activities")
	st := e.status(id)
	if st["status"] != "COMPLETED" || st["recordsCount"] != float64(5) || st["recordsFailedCount"] != float64(2) || st["error"] != nil {
		t.Errorf("status = %v, want COMPLETED, recordsCount 5 (3 written + 2 failed), recordsFailedCount 2, no error", st)
	}
	if r := e.do("GET", "/bulk/"+id+"/activities", nil, "Accept: application/jsonl"); r.code != http.StatusOK || strings.Count(string(r.body), "\n") != 3 {
		t.Errorf("download = %d %q, want 200 with the 3 records written", r.code, r.body)
	}
	page1, r1 := e.errors(id, "?pageSize=1")
	tok := r1.header.Get("Elements-Next-Page-Token")
	page2, r2 := e.errors(id, "?pageSize=1&nextPage="+tok)
	if tok == "" || r2.header.Get("Elements-Next-Page-Token") != "" {
		t.Errorf("error pages: tokens %q then %q, want one then none", tok, r2.header.Get("Elements-Next-Page-Token"))
	}
	errs := append(page1, page2...)
	if len(errs) != 2 || errs[0].Index != 3 || errs[1].Index != 4 || errs[0].Status == "" || string(errs[0].Record) != "null" {
		t.Errorf("errors = %+v, want 2 with indexes 3 and 4 (after the records written), a status and a null record", errs)
	}
	if all, _ := e.errors(id, ""); len(all) != 2 {
		t.Errorf("errors on one page = %d, want 2", len(all))
	}
	jobs := e.fake.Jobs()
	if j := jobs[len(jobs)-1]; j.ID != id || j.Status != cetest.StatusCompleted || j.RecordsCount != 5 || j.RecordsFailedCount != 2 {
		t.Errorf("Jobs() last = %+v, want job %s COMPLETED with 5 records, 2 failed", j, id)
	}
	r := e.do("GET", "/bulk/jobs?where=job_direction%3D'DOWNLOAD'", nil)
	items, _ := r.json(t).([]any)
	if len(items) != 1 || items[0].(map[string]any)["record_count"] != float64(5) || items[0].(map[string]any)["error_count"] != float64(2) {
		t.Errorf("GET bulk/jobs = %s, want one download with record_count 5 and error_count 2", r.body)
	}

	next := e.startQuery("q=select%20*%20from%20activities")
	if st := e.status(next); st["recordsCount"] != float64(3) || st["recordsFailedCount"] != float64(0) {
		t.Errorf("next job status = %v, want 3 records, none failed", st)
	}
	if errs, _ := e.errors(next, ""); len(errs) != 0 {
		t.Errorf("next job errors = %+v, want none", errs)
	}

	t.Run("outcome wins", func(t *testing.T) {
		e.fake.SetNextJobFailedRecords(4)
		e.fake.SetNextJobOutcome(cetest.StatusError, "Mixpanel said no")
		id := e.startQuery("q=select%20*%20from%20activities")
		if st := e.status(id); st["status"] != "ERROR" || st["recordsCount"] != float64(0) || st["recordsFailedCount"] != float64(0) {
			t.Errorf("status = %v, want ERROR with no counts", st)
		}
		if errs, _ := e.errors(id, ""); len(errs) != 0 {
			t.Errorf("errors of an ERROR job = %+v, want none", errs)
		}
	})
	t.Run("withdrawn", func(t *testing.T) {
		e.fake.SetNextJobFailedRecords(4)
		e.fake.SetNextJobFailedRecords(0)
		if st := e.status(e.startQuery("q=select%20*%20from%20activities")); st["recordsFailedCount"] != float64(0) {
			t.Errorf("status after SetNextJobFailedRecords(0) = %v, want none failed", st)
		}
		e.fake.SetNextJobFailedRecords(4)
		e.fake.Reset()
		if st := e.status(e.startQuery("q=select%20*%20from%20activities")); st["recordsFailedCount"] != float64(0) {
			t.Errorf("status after Reset = %v, want none failed", st)
		}
	})
	t.Run("negative", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Errorf("SetNextJobFailedRecords(-1) did not panic")
			}
		}()
		e.fake.SetNextJobFailedRecords(-1)
	})
}

func TestCancel(t *testing.T) {
	e := newEnv(t, cetest.Options{CompletionDelay: time.Minute})
	id := e.startQuery("q=select%20*%20from%20activities")
	r := e.do("PUT", "/hubs/general/bulk/"+id+"/cancel", nil)
	if r.code != http.StatusOK || r.object(t)["status"] != "CANCELLED" {
		t.Fatalf("PUT cancel = %d %s, want 200 with status CANCELLED", r.code, r.body)
	}
	e.clock.Advance(time.Hour)
	if got := e.status(id)["status"]; got != "CANCELLED" {
		t.Errorf("status after cancel = %v, want CANCELLED", got)
	}
	if r := e.do("PUT", "/bulk/"+id+"/cancel", nil); r.code != http.StatusBadRequest {
		t.Errorf("second cancel = %d, want 400", r.code)
	}
}

func TestJobsList(t *testing.T) {
	e := newEnv(t, cetest.Options{})
	e.startQuery("q=select%20*%20from%20activities")
	e.startQuery("q=select%20*%20from%20users")
	e.upload("activities", `{"format":"json"}`, "")

	r := e.do("GET", "/hubs/general/bulk/jobs", nil)
	items, _ := r.json(t).([]any)
	var ids []any
	for _, it := range items {
		ids = append(ids, it.(map[string]any)["id"])
	}
	if diff := cmp.Diff([]any{float64(1001), float64(1002), float64(1003)}, ids); diff != "" {
		t.Errorf("GET bulk/jobs ids (numbers) mismatch (-want +got):\n%s", diff)
	}
	first := items[0].(map[string]any)
	for _, k := range []string{"instanceId", "object_name", "job_direction", "status", "record_count", "error_count", "createdDate", "completion_time", "job_query"} {
		if _, ok := first[k]; !ok {
			t.Errorf("job item %v lacks %q", first, k)
		}
	}

	r = e.do("GET", "/bulk/jobs?where=job_direction%3D'UPLOAD'", nil)
	if diff := cmp.Diff(1, len(r.json(t).([]any))); diff != "" {
		t.Errorf("jobs where job_direction='UPLOAD' count mismatch (-want +got):\n%s", diff)
	}
	r = e.do("GET", "/bulk/jobs?where=object_name%3D'activities'%20and%20job_direction%3D'DOWNLOAD'", nil)
	if got := len(r.json(t).([]any)); got != 1 {
		t.Errorf("jobs where object_name and job_direction = %d items, want 1", got)
	}

	r = e.do("GET", "/bulk/jobs?pageSize=2", nil)
	tok := r.header.Get("Elements-Next-Page-Token")
	if got := len(r.json(t).([]any)); got != 2 || tok == "" || r.header.Get("Elements-Returned-Count") != "2" {
		t.Fatalf("jobs page 1 = %d items, token %q, returned-count %q; want 2 items and a token", got, tok, r.header.Get("Elements-Returned-Count"))
	}
	r = e.do("GET", "/bulk/jobs?pageSize=2&nextPage="+tok, nil)
	if got := len(r.json(t).([]any)); got != 1 || r.header.Get("Elements-Next-Page-Token") != "" {
		t.Errorf("jobs page 2 = %d items, token %q; want 1 item and no token", got, r.header.Get("Elements-Next-Page-Token"))
	}
}

func TestRequestsAndReset(t *testing.T) {
	e := newEnv(t, cetest.Options{})
	if got := e.fake.Requests(""); got != 0 {
		t.Fatalf("Requests(\"\") before any call = %d, want 0", got)
	}
	id := e.startQuery("q=select%20*%20from%20activities")
	e.status(id)
	e.status(id)
	e.do("GET", "/bulk/jobs", nil, "Authorization: nope")
	tests := []struct {
		suffix string
		want   int
	}{
		{"", 4},
		{"bulk/query", 1},
		{"POST /bulk/query", 1},
		{"GET /bulk/query", 0},
		{"/status", 2},
		{"/bulk/" + id + "/status", 2},
		{"bulk/jobs", 1},
		{"/errors", 0},
	}
	for _, tc := range tests {
		if got := e.fake.Requests(tc.suffix); got != tc.want {
			t.Errorf("Requests(%q) = %d, want %d", tc.suffix, got, tc.want)
		}
	}
	e.fake.Reset()
	if got, jobs := e.fake.Requests(""), e.fake.Jobs(); got != 0 || len(jobs) != 0 {
		t.Errorf("after Reset: Requests = %d, Jobs = %d; want 0 and 0", got, len(jobs))
	}
	if next := e.startQuery("q=select%20*%20from%20activities"); next == id {
		t.Errorf("job id after Reset = %s, want a new id", next)
	}
	if r := e.do("GET", "/bulk/"+id+"/status", nil); r.code != http.StatusNotFound {
		t.Errorf("status of a job forgotten by Reset = %d, want 404", r.code)
	}
}
