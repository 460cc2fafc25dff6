package exporter

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the zones below, whatever the machine has

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/ledger"
)

func mustLoad(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("LoadLocation(%q): %v", name, err)
	}
	return loc
}

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// day builds the expected planned job of a day window.
func day(object, d, from, to string, a Action) PlannedJob {
	return PlannedJob{
		ID: DayJobID(object, d), Object: object, Day: d, Action: a,
		Window: ledger.Window{From: ts(from), To: ts(to), Partition: "dt=" + d},
	}
}

func utcDay(d string) PlannedJob {
	from, _ := time.Parse(dayLayout, d)
	return day(ObjectActivities, d, from.Format(time.RFC3339), from.AddDate(0, 0, 1).Format(time.RFC3339), ActionCreate)
}

func TestPlan(t *testing.T) {
	ny := mustLoad(t, "America/New_York")
	berlin := mustLoad(t, "Europe/Berlin")
	act := []string{ObjectActivities}
	tests := []struct {
		name string
		req  PlanRequest
		want PlanResult
	}{
		{
			name: "watermark to the last finished day",
			req: PlanRequest{Objects: act, Now: ts("2026-11-23T03:00:00Z"), Lag: 2 * time.Hour, MaxJobs: 6,
				Watermarks: map[string]string{"activities": "2026-11-20"}},
			want: PlanResult{Jobs: []PlannedJob{utcDay("2026-11-20"), utcDay("2026-11-21"), utcDay("2026-11-22")}},
		},
		{
			name: "lag holds back the day that just ended",
			req: PlanRequest{Objects: act, Now: ts("2026-11-23T01:59:59Z"), Lag: 2 * time.Hour, MaxJobs: 6,
				Watermarks: map[string]string{"activities": "2026-11-20"}},
			want: PlanResult{Jobs: []PlannedJob{utcDay("2026-11-20"), utcDay("2026-11-21")}},
		},
		{
			name: "lag exactly passed",
			req: PlanRequest{Objects: act, Now: ts("2026-11-23T02:00:00Z"), Lag: 2 * time.Hour, MaxJobs: 6,
				Watermarks: map[string]string{"activities": "2026-11-22"}},
			want: PlanResult{Jobs: []PlannedJob{utcDay("2026-11-22")}},
		},
		{
			name: "watermark already caught up",
			req: PlanRequest{Objects: act, Now: ts("2026-11-23T05:00:00Z"), Lag: 2 * time.Hour, MaxJobs: 6,
				Watermarks: map[string]string{"activities": "2026-11-23"}},
			want: PlanResult{},
		},
		{
			name: "no watermark starts yesterday",
			req:  PlanRequest{Objects: act, Now: ts("2026-11-23T05:00:00Z"), Lag: 2 * time.Hour, MaxJobs: 6},
			want: PlanResult{Jobs: []PlannedJob{utcDay("2026-11-22")}},
		},
		{
			name: "no watermark starts at Start",
			req:  PlanRequest{Objects: act, Now: ts("2026-11-23T05:00:00Z"), Lag: 2 * time.Hour, MaxJobs: 6, Start: "2026-11-21"},
			want: PlanResult{Jobs: []PlannedJob{utcDay("2026-11-21"), utcDay("2026-11-22")}},
		},
		{
			name: "watermark wins over Start",
			req: PlanRequest{Objects: act, Now: ts("2026-11-23T05:00:00Z"), MaxJobs: 6, Start: "2026-01-01",
				Watermarks: map[string]string{"activities": "2026-11-22"}},
			want: PlanResult{Jobs: []PlannedJob{utcDay("2026-11-22")}},
		},
		{
			name: "yesterday is in the project's timezone",
			req:  PlanRequest{Objects: act, Location: ny, Now: ts("2026-11-26T03:00:00Z"), MaxJobs: 6},
			// 03:00Z is 22:00 on the 25th in New York: yesterday is the 24th.
			want: PlanResult{Jobs: []PlannedJob{
				day("activities", "2026-11-24", "2026-11-24T05:00:00Z", "2026-11-25T05:00:00Z", ActionCreate),
			}},
		},
		{
			name: "watermark gaps: days with jobs are skipped, missing ones planned",
			req: PlanRequest{Objects: act, Now: ts("2026-11-26T03:00:00Z"), MaxJobs: 6,
				Watermarks: map[string]string{"activities": "2026-11-20"},
				Jobs: map[string]ledger.Status{
					"export-activities-2026-11-20": ledger.StatusFailed,
					"export-activities-2026-11-22": ledger.StatusDone,
					"export-activities-2026-11-23": ledger.StatusPending,
				}},
			want: PlanResult{Jobs: []PlannedJob{utcDay("2026-11-21"), utcDay("2026-11-24"), utcDay("2026-11-25")}},
		},
		{
			name: "max jobs defers the rest",
			req: PlanRequest{Objects: act, Now: ts("2026-11-26T03:00:00Z"), MaxJobs: 2,
				Watermarks: map[string]string{"activities": "2026-11-20"}},
			want: PlanResult{Jobs: []PlannedJob{utcDay("2026-11-20"), utcDay("2026-11-21")}, Deferred: 4},
		},
		{
			name: "objects take turns under max jobs",
			req: PlanRequest{Objects: []string{"activities", "users"}, Now: ts("2026-11-26T03:10:00Z"), MaxJobs: 2,
				Watermarks: map[string]string{"activities": "2026-11-20"}, SnapshotAt: ts("2026-11-26T02:00:00Z")},
			want: PlanResult{Jobs: []PlannedJob{
				utcDay("2026-11-20"),
				{ID: "export-users-20261126T020000Z", Object: "users", Action: ActionCreate,
					Window: ledger.Window{From: ts("2026-11-26T02:00:00Z"), To: ts("2026-11-26T02:00:00Z"), Partition: "snapshot=2026-11-26T020000Z"}},
			}, Deferred: 5},
		},
		{
			name: "users snapshot named by the hour of now",
			req:  PlanRequest{Objects: []string{"users"}, Now: ts("2026-11-26T02:59:59Z"), MaxJobs: 1},
			want: PlanResult{Jobs: []PlannedJob{
				{ID: "export-users-20261126T020000Z", Object: "users", Action: ActionCreate,
					Window: ledger.Window{From: ts("2026-11-26T02:00:00Z"), To: ts("2026-11-26T02:00:00Z"), Partition: "snapshot=2026-11-26T020000Z"}},
			}},
		},
		{
			name: "users snapshot already taken this hour",
			req: PlanRequest{Objects: []string{"users"}, Now: ts("2026-11-26T04:00:00Z"), MaxJobs: 1, SnapshotAt: ts("2026-11-26T02:30:00Z"),
				Jobs: map[string]ledger.Status{"export-users-20261126T020000Z": ledger.StatusDone}},
			want: PlanResult{Skipped: []string{"export-users-20261126T020000Z"}},
		},
		{
			name: "New York spring forward day is 23 hours",
			req: PlanRequest{Objects: act, Location: ny, Now: ts("2026-03-10T00:00:00Z"), MaxJobs: 6,
				Watermarks: map[string]string{"activities": "2026-03-07"}},
			want: PlanResult{Jobs: []PlannedJob{
				day("activities", "2026-03-07", "2026-03-07T05:00:00Z", "2026-03-08T05:00:00Z", ActionCreate),
				day("activities", "2026-03-08", "2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z", ActionCreate),
			}},
		},
		{
			name: "New York fall back day is 25 hours",
			req: PlanRequest{Objects: act, Location: ny, Now: ts("2026-11-03T00:00:00Z"), MaxJobs: 6,
				Watermarks: map[string]string{"activities": "2026-11-01"}},
			want: PlanResult{Jobs: []PlannedJob{
				day("activities", "2026-11-01", "2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z", ActionCreate),
			}},
		},
		{
			name: "New York lag counts from the local midnight",
			req: PlanRequest{Objects: act, Location: ny, Now: ts("2026-11-26T06:59:59Z"), Lag: 2 * time.Hour, MaxJobs: 6,
				Watermarks: map[string]string{"activities": "2026-11-25"}},
			want: PlanResult{},
		},
		{
			name: "Berlin spring forward day is 23 hours",
			req: PlanRequest{Objects: act, Location: berlin, Now: ts("2026-10-27T00:00:00Z"), MaxJobs: 2,
				From: "2026-03-29", To: "2026-03-30"},
			want: PlanResult{Jobs: []PlannedJob{
				day("activities", "2026-03-29", "2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z", ActionCreate),
			}},
		},
		{
			name: "Berlin fall back day is 25 hours",
			req: PlanRequest{Objects: act, Location: berlin, Now: ts("2026-10-26T12:00:00Z"), MaxJobs: 2,
				Watermarks: map[string]string{"activities": "2026-10-25"}},
			want: PlanResult{Jobs: []PlannedJob{
				day("activities", "2026-10-25", "2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z", ActionCreate),
			}},
		},
		{
			name: "backfill of three days",
			req: PlanRequest{Objects: act, Now: ts("2026-11-26T03:00:00Z"), MaxJobs: 6, From: "2026-11-01", To: "2026-11-04",
				Watermarks: map[string]string{"activities": "2026-11-25"}},
			want: PlanResult{Jobs: []PlannedJob{utcDay("2026-11-01"), utcDay("2026-11-02"), utcDay("2026-11-03")}},
		},
		{
			name: "backfill restarts final jobs and leaves running ones",
			req: PlanRequest{Objects: act, Now: ts("2026-11-26T03:00:00Z"), MaxJobs: 6, From: "2026-11-01", To: "2026-11-05",
				Jobs: map[string]ledger.Status{
					"export-activities-2026-11-01": ledger.StatusDone,
					"export-activities-2026-11-02": ledger.StatusPending,
					"export-activities-2026-11-03": ledger.StatusCollecting,
					"export-activities-2026-11-04": ledger.StatusExpired,
				}},
			want: PlanResult{
				Jobs: []PlannedJob{
					day("activities", "2026-11-01", "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z", ActionRestart),
					day("activities", "2026-11-04", "2026-11-04T00:00:00Z", "2026-11-05T00:00:00Z", ActionRestart),
				},
				Skipped: []string{"export-activities-2026-11-02", "export-activities-2026-11-03"},
			},
		},
		{
			name: "backfill under max jobs",
			req:  PlanRequest{Objects: act, Now: ts("2026-11-26T03:00:00Z"), MaxJobs: 2, From: "2026-11-01", To: "2026-11-04"},
			want: PlanResult{Jobs: []PlannedJob{utcDay("2026-11-01"), utcDay("2026-11-02")}, Deferred: 1},
		},
		{
			name: "backfill leaves out days not ended lag ago",
			req:  PlanRequest{Objects: act, Now: ts("2026-11-26T01:00:00Z"), Lag: 2 * time.Hour, MaxJobs: 6, From: "2026-11-24", To: "2026-11-27"},
			want: PlanResult{
				Jobs:     []PlannedJob{utcDay("2026-11-24")},
				NotReady: []string{"export-activities-2026-11-25", "export-activities-2026-11-26"},
			},
		},
		{
			name: "backfill with users takes a snapshot too",
			req: PlanRequest{Objects: []string{"activities", "users"}, Now: ts("2026-11-26T03:00:00Z"), MaxJobs: 6,
				From: "2026-11-01", To: "2026-11-03", SnapshotAt: ts("2026-11-26T02:10:00Z")},
			want: PlanResult{Jobs: []PlannedJob{
				utcDay("2026-11-01"),
				{ID: "export-users-20261126T020000Z", Object: "users", Action: ActionCreate,
					Window: ledger.Window{From: ts("2026-11-26T02:00:00Z"), To: ts("2026-11-26T02:00:00Z"), Partition: "snapshot=2026-11-26T020000Z"}},
				utcDay("2026-11-02"),
			}},
		},
		{
			name: "backfill in New York across the fall back",
			req:  PlanRequest{Objects: act, Location: ny, Now: ts("2026-11-26T03:00:00Z"), MaxJobs: 6, From: "2026-10-31", To: "2026-11-02"},
			want: PlanResult{Jobs: []PlannedJob{
				day("activities", "2026-10-31", "2026-10-31T04:00:00Z", "2026-11-01T04:00:00Z", ActionCreate),
				day("activities", "2026-11-01", "2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z", ActionCreate),
			}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Plan(tc.req)
			if err != nil {
				t.Fatalf("Plan() error: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Plan() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlanBadInput(t *testing.T) {
	now := ts("2026-11-26T03:00:00Z")
	act := []string{ObjectActivities}
	tests := []struct {
		name string
		req  PlanRequest
	}{
		{"no objects", PlanRequest{Now: now, MaxJobs: 1}},
		{"zero max jobs", PlanRequest{Objects: act, Now: now}},
		{"negative lag", PlanRequest{Objects: act, Now: now, MaxJobs: 1, Lag: -time.Hour}},
		{"object twice", PlanRequest{Objects: []string{"activities", "activities"}, Now: now, MaxJobs: 1}},
		{"bad object name", PlanRequest{Objects: []string{"../x"}, Now: now, MaxJobs: 1}},
		{"from without to", PlanRequest{Objects: act, Now: now, MaxJobs: 1, From: "2026-11-01"}},
		{"to without from", PlanRequest{Objects: act, Now: now, MaxJobs: 1, To: "2026-11-01"}},
		{"to before from", PlanRequest{Objects: act, Now: now, MaxJobs: 1, From: "2026-11-03", To: "2026-11-01"}},
		{"empty range", PlanRequest{Objects: act, Now: now, MaxJobs: 1, From: "2026-11-03", To: "2026-11-03"}},
		{"bad day", PlanRequest{Objects: act, Now: now, MaxJobs: 1, From: "2026-11-3", To: "2026-11-05"}},
		{"not a date", PlanRequest{Objects: act, Now: now, MaxJobs: 1, From: "2026-02-30", To: "2026-03-05"}},
		{"huge range", PlanRequest{Objects: act, Now: now, MaxJobs: 1, From: "1990-01-01", To: "2026-01-01"}},
		{"bad start", PlanRequest{Objects: act, Now: now, MaxJobs: 1, Start: "yesterday"}},
		{"bad watermark", PlanRequest{Objects: act, Now: now, MaxJobs: 1, Watermarks: map[string]string{"activities": "2026/11/01"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Plan(tc.req)
			if !errors.Is(err, ErrBadPlan) {
				t.Errorf("Plan() = %+v, %v; want an error wrapping ErrBadPlan", got, err)
			}
		})
	}
}

// TestPlanWindowsChain checks, over two years in zones with daylight saving
// (one of which once skipped midnight itself), that consecutive day windows
// meet exactly and last 23, 24 or 25 hours.
func TestPlanWindowsChain(t *testing.T) {
	for _, zone := range []string{"UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "America/Sao_Paulo", "Asia/Kolkata"} {
		t.Run(zone, func(t *testing.T) {
			loc := mustLoad(t, zone)
			got, err := Plan(PlanRequest{
				Objects: []string{ObjectActivities}, Location: loc, Now: ts("2020-01-02T00:00:00Z"), MaxJobs: 1000,
				From: "2018-01-01", To: "2019-12-31",
			})
			if err != nil {
				t.Fatalf("Plan() error: %v", err)
			}
			if len(got.Jobs) != 729 {
				t.Fatalf("Plan() planned %d days, want 729", len(got.Jobs))
			}
			for i, j := range got.Jobs {
				if d := j.Window.To.Sub(j.Window.From); d < 23*time.Hour || d > 25*time.Hour {
					t.Errorf("%s lasts %v", j.Day, d)
				}
				if i > 0 && !got.Jobs[i-1].Window.To.Equal(j.Window.From) {
					t.Errorf("%s starts at %v, the day before ends at %v", j.Day, j.Window.From, got.Jobs[i-1].Window.To)
				}
			}
		})
	}
}

// TestValidNames checks the written-out name checks against the regular
// expressions they replace, on the edges and on every byte.
func TestValidNames(t *testing.T) {
	for _, tc := range []struct {
		name  string
		re    string
		valid func(string) bool
	}{
		{"object", `^[a-z][a-z0-9_]{0,63}$`, validObject},
		{"run id", `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`, ValidRunID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			re := regexp.MustCompile(tc.re)
			names := []string{"", "a", "activities", "users", "a_1", "1a", "_a", "A", "aB", "a-b", "a.b", "a b", "é",
				"-a", ".a", "Z9", "a" + strings.Repeat("b", 63), "a" + strings.Repeat("b", 64),
				"a" + strings.Repeat("b", 127), "a" + strings.Repeat("b", 128)}
			for c := range 256 {
				names = append(names, string([]byte{byte(c)}), "a"+string([]byte{byte(c)}))
			}
			for _, n := range names {
				if got, want := tc.valid(n), re.MatchString(n); got != want {
					t.Errorf("%q: %v, the regular expression says %v", n, got, want)
				}
			}
		})
	}
}
