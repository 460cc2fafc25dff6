package cetest_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/google/go-cmp/cmp"
)

func TestThrottle(t *testing.T) {
	const query = "/hubs/general/bulk/query?q=select%20*%20from%20users"
	tests := []struct {
		name     string
		throttle cetest.Throttle
		// advance is how far the clock moves after each call.
		advance time.Duration
		want    []int // answers of consecutive POST bulk/query calls
		wantRA  string
	}{
		{"three calls, Retry-After", cetest.Throttle{Suffix: "/bulk/query", Calls: 3, RetryAfter: "7"}, 0, []int{429, 429, 429, 200, 200}, "7"},
		{"503 without Retry-After", cetest.Throttle{Status: 503, Calls: 1}, 0, []int{503, 200}, ""},
		{"for a period", cetest.Throttle{Method: "POST", For: 90 * time.Second}, 30 * time.Second, []int{429, 429, 429, 200}, ""},
		{"calls end first", cetest.Throttle{Calls: 2, For: time.Hour}, time.Second, []int{429, 429, 200}, ""},
		{"period ends first", cetest.Throttle{Calls: 10, For: time.Minute}, 40 * time.Second, []int{429, 429, 200}, ""},
		{"other method untouched", cetest.Throttle{Method: "GET", Calls: 5}, 0, []int{200}, ""},
		{"other path untouched", cetest.Throttle{Suffix: "/bulk/users", Calls: 5}, 0, []int{200}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, cetest.Options{})
			e.fake.Throttle(tc.throttle)
			var got []int
			for range tc.want {
				r := e.do("POST", query, nil)
				got = append(got, r.code)
				if r.code != http.StatusOK {
					checkErrorShape(t, r)
					if ra := r.header.Get("Retry-After"); ra != tc.wantRA {
						t.Errorf("Retry-After = %q, want %q", ra, tc.wantRA)
					}
				}
				e.clock.Advance(tc.advance)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("answers mismatch (-want +got):\n%s", diff)
			}
			refused := 0
			for _, c := range got {
				if c != http.StatusOK {
					refused++
				}
			}
			if jobs := len(e.fake.Jobs()); jobs != len(got)-refused {
				t.Errorf("%d jobs after %d accepted calls: a refused call created a job", jobs, len(got)-refused)
			}
			if n := e.fake.Requests("POST /bulk/query"); n != len(got) {
				t.Errorf("Requests = %d, want %d (refused calls count)", n, len(got))
			}
		})
	}
}

func TestThrottleNeverEnding(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Throttle without Calls or For did not panic")
		}
	}()
	cetest.NewFake(cetest.Options{}).Throttle(cetest.Throttle{})
}

func TestAddRecordsLateEvents(t *testing.T) {
	e := newEnv(t, cetest.Options{})
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	e.fake.Seed("activities", []map[string]any{event("first", day.Add(time.Hour), "u")})
	window := url.Values{"q": {"select * from activities"}, "from": {"2026-11-20T00:00:00Z"}, "to": {"2026-11-21T00:00:00Z"}}.Encode()
	before := e.startQuery(window)
	e.fake.AddRecords("activities", []map[string]any{
		event("late", day.Add(2*time.Hour), "u"),
		event("other day", day.Add(30*time.Hour), "u"),
	})
	after := e.startQuery(window)
	for _, tc := range []struct {
		id   string
		want []string
	}{{before, []string{"first"}}, {after, []string{"first", "late"}}} {
		e.status(tc.id)
		r := e.do("GET", "/hubs/general/bulk/"+tc.id+"/activities", nil, "Accept: application/jsonl")
		if diff := cmp.Diff(tc.want, eventNames(t, r.body)); diff != "" {
			t.Errorf("job %s events mismatch (-want +got):\n%s", tc.id, diff)
		}
	}
}

// TestWholeDaysAndProjectTime: with WholeDays a window selects whole UTC
// dates; with ProjectTimezone the dates are the project's and the time
// served is wall-clock seconds, across New York's 2026 DST changes.
func TestWholeDaysAndProjectTime(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	// Instants around 2026-03-08 (spring forward at 07:00Z) and 2026-11-01
	// (fall back at 06:00Z).
	seed := []time.Time{
		time.Date(2026, 3, 8, 4, 59, 59, 0, time.UTC),  // NY 2026-03-07 23:59:59 EST
		time.Date(2026, 3, 8, 5, 0, 0, 0, time.UTC),    // NY 2026-03-08 00:00 EST
		time.Date(2026, 3, 9, 3, 59, 59, 0, time.UTC),  // NY 2026-03-08 23:59:59 EDT
		time.Date(2026, 3, 9, 4, 0, 0, 0, time.UTC),    // NY 2026-03-09 00:00 EDT
		time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC),  // NY 01:30 EDT
		time.Date(2026, 11, 1, 6, 30, 0, 0, time.UTC),  // NY 01:30 EST (same reading)
		time.Date(2026, 11, 2, 4, 59, 59, 0, time.UTC), // NY 2026-11-01 23:59:59 EST
	}
	var recs []map[string]any
	for i, at := range seed {
		recs = append(recs, event(at.Format(time.RFC3339), at, "u"+string(rune('a'+i))))
	}
	tests := []struct {
		name     string
		opts     cetest.Options
		from, to string
		want     []string // event names (the real instants)
		wantTime []int64  // served properties.time
	}{
		{
			name: "UTC project, NY day window spans two UTC dates",
			opts: cetest.Options{WholeDays: true}, from: "2026-03-08T05:00:00Z", to: "2026-03-09T04:00:00Z",
			want:     []string{"2026-03-08T04:59:59Z", "2026-03-08T05:00:00Z", "2026-03-09T03:59:59Z", "2026-03-09T04:00:00Z"},
			wantTime: []int64{seed[0].Unix(), seed[1].Unix(), seed[2].Unix(), seed[3].Unix()},
		},
		{
			name: "project time, spring-forward day",
			opts: cetest.Options{ProjectTimezone: ny}, from: "2026-03-08T00:00:00Z", to: "2026-03-09T00:00:00Z",
			want: []string{"2026-03-08T05:00:00Z", "2026-03-09T03:59:59Z"},
			wantTime: []int64{
				time.Date(2026, 3, 8, 0, 0, 0, 0, time.UTC).Unix(),
				time.Date(2026, 3, 8, 23, 59, 59, 0, time.UTC).Unix(),
			},
		},
		{
			name: "project time, fall-back day keeps both 01:30",
			opts: cetest.Options{ProjectTimezone: ny}, from: "2026-11-01T00:00:00Z", to: "2026-11-02T00:00:00Z",
			want: []string{"2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z", "2026-11-02T04:59:59Z"},
			wantTime: []int64{
				time.Date(2026, 11, 1, 1, 30, 0, 0, time.UTC).Unix(),
				time.Date(2026, 11, 1, 1, 30, 0, 0, time.UTC).Unix(),
				time.Date(2026, 11, 1, 23, 59, 59, 0, time.UTC).Unix(),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.opts)
			e.fake.Seed("activities", recs)
			id := e.startQuery(url.Values{"q": {"select * from activities"}, "from": {tc.from}, "to": {tc.to}}.Encode())
			if got := e.status(id)["recordsCount"]; got != float64(len(tc.want)) {
				t.Errorf("recordsCount = %v, want %d", got, len(tc.want))
			}
			r := e.do("GET", "/hubs/general/bulk/"+id+"/activities", nil, "Accept: application/jsonl")
			if diff := cmp.Diff(tc.want, eventNames(t, r.body)); diff != "" {
				t.Errorf("events mismatch (-want +got):\n%s", diff)
			}
			var times []int64
			for _, line := range lines(r.body) {
				var v struct {
					Properties struct {
						Time       int64  `json:"time"`
						DistinctID string `json:"distinct_id"`
					} `json:"properties"`
				}
				if err := json.Unmarshal([]byte(line), &v); err != nil {
					t.Fatal(err)
				}
				if v.Properties.DistinctID == "" {
					t.Errorf("record %s lost its other properties", line)
				}
				times = append(times, v.Properties.Time)
			}
			if diff := cmp.Diff(tc.wantTime, times); diff != "" {
				t.Errorf("served time mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestQueryCost(t *testing.T) {
	e := newEnv(t, cetest.Options{})
	e.fake.SeedGenerated("users", cetest.SampleUsers(1, 2500))
	e.startQuery("q=select%20*%20from%20users")
	e.startQuery("q=select%20*%20from%20activities")
	e.fake.Seed("users", []map[string]any{})
	e.startQuery("q=select%20*%20from%20users")
	var costs []int
	for _, j := range e.fake.Jobs() {
		costs = append(costs, j.QueryCost)
	}
	if diff := cmp.Diff([]int{3, 1, 1}, costs); diff != "" {
		t.Errorf("QueryCost mismatch (-want +got):\n%s", diff)
	}
	now := e.clock.Now()
	if got := e.fake.QueryCost(now, now.Add(time.Hour)); got != 5 {
		t.Errorf("QueryCost(this hour) = %d, want 5", got)
	}
	if got := e.fake.QueryCost(now.Add(time.Hour), time.Time{}); got != 0 {
		t.Errorf("QueryCost(next hour) = %d, want 0", got)
	}
}
