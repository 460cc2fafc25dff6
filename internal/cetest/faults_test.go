package cetest_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cebulk/cebulk/internal/cetest"
)

func TestFailNext(t *testing.T) {
	type call struct{ method, path string }
	query := call{"POST", "/hubs/general/bulk/query?q=select%20*%20from%20users"}
	tests := []struct {
		name           string
		method, suffix string
		status         int
		retryAfter     string
		call           call
		wantFirst      int
	}{
		{"429 with Retry-After on bulk/query", "POST", "/bulk/query", 429, "3", query, 429},
		{"503 on any method", "", "bulk/query", 503, "", query, 503},
		{"500 on status", "GET", "/status", 500, "", call{"GET", "/bulk/1001/status"}, 500},
		{"429 with an HTTP date", "GET", "bulk/jobs", 429, "Wed, 21 Oct 2026 07:28:00 GMT", call{"GET", "/bulk/jobs"}, 429},
		{"other method not affected", "GET", "/bulk/query", 500, "", query, 200},
		{"other path not affected", "POST", "/bulk/download", 500, "", query, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, cetest.Options{})
			if tc.call.path != query.path {
				e.startQuery("q=select%20*%20from%20users") // job 1001
			}
			e.fake.FailNext(tc.method, tc.suffix, tc.status, tc.retryAfter)
			jobs := len(e.fake.Jobs())
			r := e.do(tc.call.method, tc.call.path, nil)
			if r.code != tc.wantFirst {
				t.Fatalf("first %s %s = %d %s, want %d", tc.call.method, tc.call.path, r.code, r.body, tc.wantFirst)
			}
			if r.code == 200 {
				return
			}
			checkErrorShape(t, r)
			if got := r.header.Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tc.retryAfter)
			}
			if got := len(e.fake.Jobs()); got != jobs {
				t.Errorf("a failed call changed the jobs: %d, want %d", got, jobs)
			}
			if r := e.do(tc.call.method, tc.call.path, nil); r.code != http.StatusOK {
				t.Errorf("retry %s %s = %d %s, want 200", tc.call.method, tc.call.path, r.code, r.body)
			}
		})
	}
	t.Run("queued failures", func(t *testing.T) {
		e := newEnv(t, cetest.Options{})
		e.fake.FailNext("GET", "/bulk/jobs", 429, "1")
		e.fake.FailNext("GET", "/bulk/jobs", 502, "")
		var got []int
		for range 3 {
			got = append(got, e.do("GET", "/bulk/jobs", nil).code)
		}
		if want := []int{429, 502, 200}; !equalInts(got, want) {
			t.Errorf("codes = %v, want %v", got, want)
		}
		if n := e.fake.Requests("GET /bulk/jobs"); n != 3 {
			t.Errorf("Requests = %d, want 3 (failed calls count)", n)
		}
	})
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// inMemoryGet sends an authorized GET through the Fake's Transport.
func inMemoryGet(ctx context.Context, f *cetest.Fake, path string) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", cetest.InMemoryBaseURL+path, nil)
	req.Header.Set("Authorization", authHeader)
	resp, err := (&http.Client{Transport: f.Transport()}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

func TestLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := cetest.NewFake(cetest.Options{Latency: 100 * time.Millisecond})
		f.SlowNext(5 * time.Second)
		var took []time.Duration
		for range 2 {
			start := time.Now()
			if code, err := inMemoryGet(t.Context(), f, "/bulk/jobs"); err != nil || code != 200 {
				t.Fatalf("GET bulk/jobs = %d, %v", code, err)
			}
			took = append(took, time.Since(start))
		}
		if took[0] != 5100*time.Millisecond || took[1] != 100*time.Millisecond {
			t.Errorf("request times = %v, want [5.1s 100ms]", took)
		}

		// A slow request ends when its context does.
		f.SlowNext(time.Hour)
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start := time.Now()
		if _, err := inMemoryGet(ctx, f, "/bulk/jobs"); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("slow request with a 1s deadline: err = %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("slow request gave up after %v, want 1s", d)
		}
	})
}

func TestTransportStreamsRequestBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := cetest.NewFake(cetest.Options{})
		// synctest's clock starts at 2000-01-01, so the event is from 1999.
		body, ct := multipartBody(t, `{"format":"json"}`, `{"event":"a","properties":{"time":946000000,"distinct_id":"u"}}`)
		req, _ := http.NewRequest("POST", cetest.InMemoryBaseURL+"/bulk/activities", io.NopCloser(body))
		req.Header.Set("Authorization", authHeader)
		req.Header.Set("Content-Type", ct)
		resp, err := (&http.Client{Transport: f.Transport()}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"status":"CREATED"`) {
			t.Fatalf("in-memory upload = %d %s", resp.StatusCode, b)
		}
		if got := len(f.Uploaded("activities")); got != 1 {
			t.Errorf("Uploaded = %d records, want 1", got)
		}
	})
}

func TestOutageLastsUntilEnded(t *testing.T) {
	e := newEnv(t, cetest.Options{})
	id := e.startQuery("q=select%20*%20from%20users")
	end := e.fake.Outage("GET", "/status", http.StatusServiceUnavailable)
	for range 3 {
		r := e.do("GET", "/bulk/"+id+"/status", nil)
		if r.code != http.StatusServiceUnavailable {
			t.Fatalf("status during the outage = %d %s, want 503", r.code, r.body)
		}
		checkErrorShape(t, r)
	}
	if r := e.do("GET", "/bulk/jobs", nil); r.code != http.StatusOK {
		t.Errorf("another route during the outage = %d, want 200", r.code)
	}
	end()
	if r := e.do("GET", "/bulk/"+id+"/status", nil); r.code != http.StatusOK {
		t.Errorf("status after the outage = %d %s, want 200", r.code, r.body)
	}
}
