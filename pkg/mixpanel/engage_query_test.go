package mixpanel

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// pageServer answers engage queries from fixtures, one per page, and
// records the forms it received.
type pageServer struct {
	t      *testing.T
	pages  map[int]string // page -> fixture
	status map[int]int    // page -> error status instead of the fixture
	mu     sync.Mutex
	forms  []url.Values
}

func (s *pageServer) handle(w http.ResponseWriter, r *http.Request) {
	checkAuth(s.t, r)
	if got := r.Header.Get("Content-Type"); got != "application/x-www-form-urlencoded" {
		s.t.Errorf("Content-Type = %q", got)
	}
	if err := r.ParseForm(); err != nil {
		s.t.Error(err)
	}
	s.mu.Lock()
	s.forms = append(s.forms, r.PostForm)
	s.mu.Unlock()
	page := 0
	if p := r.PostForm.Get("page"); p != "" {
		json.Unmarshal([]byte(p), &page)
	}
	if code, ok := s.status[page]; ok {
		w.WriteHeader(code)
		w.Write(fixture(s.t, "query-error-session.json"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(fixture(s.t, s.pages[page]))
}

func collect(t *testing.T, c *Client, q ProfileQuery) ([]string, error) {
	t.Helper()
	var got []string
	for rec, err := range c.Profiles(t.Context(), q) {
		if err != nil {
			return got, err
		}
		got = append(got, string(rec))
	}
	return got, nil
}

func resultsOf(t *testing.T, names ...string) []string {
	var out []string
	for _, n := range names {
		p, err := DecodeEngagePage(fixture(t, n))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Results {
			out = append(out, string(r))
		}
	}
	return out
}

func TestProfilesPaging(t *testing.T) {
	c, mux, _, _ := setup(t)
	srv := &pageServer{t: t, pages: map[int]string{0: "engage-page0.json", 1: "engage-page1.json", 2: "engage-page2.json"}}
	mux.HandleFunc("POST /api/query/engage", srv.handle)
	yes := true
	got, err := collect(t, c, ProfileQuery{
		Where: `properties["plan"] == "pro"`, OutputProperties: []string{"$email", "plan"},
		FilterByCohort: "12345", IncludeAllUsers: &yes,
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, resultsOf(t, "engage-page0.json", "engage-page1.json", "engage-page2.json")); diff != "" {
		t.Errorf("profiles (-got +want):\n%s", diff)
	}
	base := url.Values{
		"where":             {`properties["plan"] == "pro"`},
		"output_properties": {`["$email","plan"]`},
		"filter_by_cohort":  {`{"id":12345}`},
		"include_all_users": {"true"},
	}
	with := func(session, page string) url.Values {
		v := url.Values{}
		for k, vs := range base {
			v[k] = vs
		}
		v.Set("session_id", session)
		v.Set("page", page)
		return v
	}
	want := []url.Values{base, with("1234567890-EXAMPL", "1"), with("1234567890-EXAMPL", "2")}
	if diff := cmp.Diff(srv.forms, want); diff != "" {
		t.Errorf("forms (-got +want):\n%s", diff)
	}
}

func TestProfilesEndConditions(t *testing.T) {
	tests := []struct {
		name      string
		pages     map[int]string
		wantPages int
		wantErr   bool
	}{
		{"single short page", map[int]string{0: "engage-page2.json"}, 1, false},
		{"full page then empty page", map[int]string{0: "engage-page0.json", 1: "empty"}, 2, false},
		{"no page_size: Mixpanel's 1000", map[int]string{0: "no-size"}, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mux, _, _ := setup(t)
			calls := 0
			mux.HandleFunc("POST /api/query/engage", func(w http.ResponseWriter, r *http.Request) {
				r.ParseForm()
				page := 0
				json.Unmarshal([]byte(r.PostForm.Get("page")), &page)
				calls++
				if tt.pages[page] == "no-size" {
					w.Write([]byte(`{"page":0,"session_id":"s","status":"ok","results":[{"$distinct_id":"a"},{"$distinct_id":"b"}]}`))
					return
				}
				if tt.pages[page] == "empty" {
					w.Write([]byte(`{"page":1,"page_size":2,"session_id":"1234567890-EXAMPL","status":"ok","total":2,"results":[]}`))
					return
				}
				w.Write(fixture(t, tt.pages[page]))
			})
			_, err := collect(t, c, ProfileQuery{})
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if calls != tt.wantPages {
				t.Errorf("pages requested = %d, want %d", calls, tt.wantPages)
			}
		})
	}
}

func TestProfilesStopEarly(t *testing.T) {
	c, mux, _, _ := setup(t)
	srv := &pageServer{t: t, pages: map[int]string{0: "engage-page0.json", 1: "engage-page1.json"}}
	mux.HandleFunc("POST /api/query/engage", srv.handle)
	n := 0
	for _, err := range c.Profiles(t.Context(), ProfileQuery{}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		break
	}
	if n != 1 || len(srv.forms) != 1 {
		t.Errorf("yielded %d, requested %d pages; want 1 and 1", n, len(srv.forms))
	}
}

func TestProfilesErrors(t *testing.T) {
	tests := []struct {
		name        string
		status      map[int]int
		wantPage    int
		wantYielded int64
		wantExpired bool
		wantIs      error
	}{
		{"session refused on page 1", map[int]int{1: 400}, 1, 2, true, ErrBadRequest},
		{"session gone on page 2", map[int]int{2: 410}, 2, 4, true, nil},
		{"unauthorized on page 1 is not expiry", map[int]int{1: 401}, 1, 2, false, ErrUnauthorized},
		{"rate limited on page 1 after retries", map[int]int{1: 429}, 1, 2, false, ErrRateLimited},
		{"bad query on page 0 is not expiry", map[int]int{0: 400}, 0, 0, false, ErrBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mux, _, _ := setup(t)
			srv := &pageServer{t: t, pages: map[int]string{0: "engage-page0.json", 1: "engage-page1.json", 2: "engage-page2.json"}, status: tt.status}
			mux.HandleFunc("POST /api/query/engage", srv.handle)
			got, err := collect(t, c, ProfileQuery{})
			var pe *PageError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a *PageError", err)
			}
			if pe.Page != tt.wantPage || pe.Yielded != tt.wantYielded || int64(len(got)) != tt.wantYielded {
				t.Errorf("PageError = page %d yielded %d (got %d profiles), want page %d yielded %d", pe.Page, pe.Yielded, len(got), tt.wantPage, tt.wantYielded)
			}
			if errors.Is(err, ErrSessionExpired) != tt.wantExpired {
				t.Errorf("errors.Is(%v, ErrSessionExpired) = %v, want %v", err, !tt.wantExpired, tt.wantExpired)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("err = %v, want it to match %v", err, tt.wantIs)
			}
			assertNoSecrets(t, "error", err.Error())
		})
	}
}

func TestProfilesBadAnswers(t *testing.T) {
	for name, body := range map[string]string{
		"status error":         `{"status":"error","error":"boom","results":[]}`,
		"result not object":    `{"page":0,"page_size":1000,"status":"ok","results":[1]}`,
		"full page no session": `{"page":0,"page_size":1,"status":"ok","results":[{"$distinct_id":"a"}]}`,
		"not json":             `<html>`,
	} {
		t.Run(name, func(t *testing.T) {
			c, mux, _, _ := setup(t)
			mux.HandleFunc("POST /api/query/engage", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(body)) })
			_, err := collect(t, c, ProfileQuery{})
			var pe *PageError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a *PageError", err)
			}
		})
	}
	c, _, _, _ := setup(t)
	if _, err := collect(t, c, ProfileQuery{FilterByCohort: "x"}); err == nil {
		t.Error("a non-numeric cohort ID was accepted")
	}
}
