package mptest_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/mptest"
)

// page is a decoded engage query answer.
type page struct {
	Page      int    `json:"page"`
	PageSize  int    `json:"page_size"`
	SessionID string `json:"session_id"`
	Status    string `json:"status"`
	Total     int    `json:"total"`
	Results   []struct {
		DistinctID string         `json:"$distinct_id"`
		Properties map[string]any `json:"$properties"`
	} `json:"results"`
}

func (e *env) page(form url.Values) page {
	e.t.Helper()
	r := e.engageQuery(form)
	if r.code != 200 {
		e.t.Fatalf("engage query %v = %d %s", form, r.code, r.body)
	}
	var p page
	mustDecode(e.t, r.body, &p)
	return p
}

func TestEngageQueryPaging(t *testing.T) {
	e := newEnv(t, mptest.Options{PageSize: 10})
	e.fake.SeedProfiles(mptest.SampleProfiles(1, 25))
	p := e.page(url.Values{})
	if p.Page != 0 || p.PageSize != 10 || p.Status != "ok" || p.Total != 25 || p.SessionID == "" || len(p.Results) != 10 {
		t.Fatalf("page 0 = %+v", p)
	}
	var ids []string
	for n := 0; ; n++ {
		for _, r := range p.Results {
			ids = append(ids, r.DistinctID)
			if r.Properties["$email"] == nil {
				t.Errorf("profile %s lacks $email: %v", r.DistinctID, r.Properties)
			}
		}
		if len(p.Results) < p.PageSize {
			break
		}
		p = e.page(url.Values{"session_id": {p.SessionID}, "page": {fmt.Sprint(p.Page + 1)}})
		if n > 5 {
			t.Fatal("paging does not end")
		}
	}
	var want []string
	for k := range 25 {
		want = append(want, fmt.Sprintf("user-%d", k))
	}
	if diff := cmp.Diff(ids, want); diff != "" {
		t.Errorf("paged ids (-got +want):\n%s", diff)
	}
	// Exactly a multiple of the page size: one last, empty page.
	e2 := newEnv(t, mptest.Options{PageSize: 5})
	e2.fake.SeedProfiles(mptest.SampleProfiles(1, 10))
	p = e2.page(url.Values{})
	p = e2.page(url.Values{"session_id": {p.SessionID}, "page": {"1"}})
	p = e2.page(url.Values{"session_id": {p.SessionID}, "page": {"2"}})
	if len(p.Results) != 0 || p.Total != 10 {
		t.Errorf("page past the end = %+v, want no results", p)
	}
}

func TestEngageQueryFilters(t *testing.T) {
	e := newEnv(t, mptest.Options{})
	e.fake.SeedProfiles(`{"$distinct_id":"a","$properties":{"plan":"pro","credits":5,"$email":"a@x"}}
{"$distinct_id":"b","$properties":{"plan":"free","credits":50}}
{"$distinct_id":"c","$properties":{"plan":"pro","credits":500}}`)
	tests := []struct {
		name string
		form url.Values
		want []string
	}{
		{"all", url.Values{}, []string{"a", "b", "c"}},
		{"where", url.Values{"where": {`properties["plan"] == "pro" and properties["credits"] >= 10`}}, []string{"c"}},
		{"distinct_id", url.Values{"distinct_id": {"b"}}, []string{"b"}},
		{"distinct_ids", url.Values{"distinct_ids": {`["c","a","zz"]`}}, []string{"c", "a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, r := range e.page(tt.form).Results {
				got = append(got, r.DistinctID)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("ids (-got +want):\n%s", diff)
			}
		})
	}
	p := e.page(url.Values{"distinct_id": {"a"}, "output_properties": {`["plan"]`}})
	if diff := cmp.Diff(p.Results[0].Properties, map[string]any{"plan": "pro"}); diff != "" {
		t.Errorf("output_properties (-got +want):\n%s", diff)
	}
}

func TestEngageQuerySessions(t *testing.T) {
	e := newEnv(t, mptest.Options{PageSize: 2, SessionTTL: time.Minute})
	e.fake.SeedProfiles(mptest.SampleProfiles(1, 5))
	p := e.page(url.Values{})
	tests := []struct {
		name    string
		advance time.Duration
		form    url.Values
		code    int
		errText string
	}{
		{"page 1 without session", 0, url.Values{"page": {"1"}}, 400, "session_id is required when page is above 0"},
		{"bad page", 0, url.Values{"page": {"x"}}, 400, "page must be a non-negative integer"},
		{"live session", 59 * time.Second, url.Values{"session_id": {p.SessionID}, "page": {"1"}}, 200, ""},
		{"other params", 0, url.Values{"session_id": {p.SessionID}, "page": {"2"}, "where": {`properties["plan"] == "pro"`}}, 400,
			fmt.Sprintf(`request for page in uncached query for params where="properties[\"plan\"] == \"pro\"" distinct_id="" distinct_ids="" output_properties="" (session_id %q is unknown or expired; query page 0 again)`, p.SessionID)},
		{"expired session", 61 * time.Second, url.Values{"session_id": {p.SessionID}, "page": {"2"}}, 400,
			fmt.Sprintf(`request for page in uncached query for params where="" distinct_id="" distinct_ids="" output_properties="" (session_id %q is unknown or expired; query page 0 again)`, p.SessionID)},
		{"cohorts", 0, url.Values{"filter_by_cohort": {`{"id":1}`}}, 400, "filter_by_cohort is not supported by mptest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.clock.Advance(tt.advance)
			r := e.engageQuery(tt.form)
			if r.code != tt.code {
				t.Fatalf("status = %d %s, want %d", r.code, r.body, tt.code)
			}
			if tt.code != 200 {
				m := r.json(t)
				if m["error"] != tt.errText || !strings.HasPrefix(m["request"].(string), "/api/query/engage?") {
					t.Errorf("error body = %v, want error %q", m, tt.errText)
				}
			}
		})
	}
}

func TestEngageQueryAuth(t *testing.T) {
	e := newEnv(t, mptest.Options{})
	if r := e.engageQuery(url.Values{}, "Authorization:"); r.code != http.StatusUnauthorized {
		t.Errorf("no credentials = %d %s, want 401", r.code, r.body)
	}
	r := e.do("POST", "/api/query/engage?project_id=99", strings.NewReader(""), "Content-Type: application/x-www-form-urlencoded")
	if r.code != http.StatusForbidden {
		t.Errorf("another project = %d %s, want 403", r.code, r.body)
	}
	// project_id in the form body works as well.
	r = e.do("POST", "/api/query/engage", strings.NewReader("project_id="+mptest.DefaultProjectID), "Content-Type: application/x-www-form-urlencoded")
	if r.code != 200 {
		t.Errorf("project_id in the form = %d %s, want 200", r.code, r.body)
	}
}
