package exporter_test

import (
	"testing"
	"time"

	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/internal/exporter"
	"github.com/google/go-cmp/cmp"
)

func newYork(t *testing.T) *time.Location {
	t.Helper()
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	return ny
}

func TestParseTimeBasis(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want exporter.TimeBasis
		ok   bool
	}{{"", exporter.BasisUTC, true}, {"utc", exporter.BasisUTC, true}, {"Project", exporter.BasisProject, true}, {"local", "", false}} {
		got, err := exporter.ParseTimeBasis(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseTimeBasis(%q) = %q, %v; want %q, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestDayWindowAcrossDST(t *testing.T) {
	ny := newYork(t)
	d := func(s string) time.Time { t, _ := time.Parse(time.DateOnly, s); return t }
	tests := []struct {
		basis         exporter.TimeBasis
		day           string
		from, to, end string
		hours         float64
	}{
		{exporter.BasisUTC, "2026-03-07", "2026-03-07T05:00:00Z", "2026-03-08T05:00:00Z", "2026-03-08T05:00:00Z", 24},
		{exporter.BasisUTC, "2026-03-08", "2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z", "2026-03-09T04:00:00Z", 23},
		{exporter.BasisUTC, "2026-11-01", "2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z", "2026-11-02T05:00:00Z", 25},
		{exporter.BasisProject, "2026-03-08", "2026-03-08T00:00:00Z", "2026-03-09T00:00:00Z", "2026-03-09T04:00:00Z", 24},
		{exporter.BasisProject, "2026-11-01", "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z", "2026-11-02T05:00:00Z", 24},
	}
	for _, tc := range tests {
		from, to, end := exporter.DayWindow(d(tc.day), ny, tc.basis)
		got := []any{from.Format(time.RFC3339), to.Format(time.RFC3339), end.UTC().Format(time.RFC3339), to.Sub(from).Hours()}
		want := []any{tc.from, tc.to, tc.end, tc.hours}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s %s: window mismatch (-want +got):\n%s", tc.basis, tc.day, diff)
		}
	}
}

// TestEveryRecordInExactlyOneDay places records at the edges of New York
// days around both 2026 DST changes, under both bases: each record's
// properties.time (UTC seconds, or wall-clock seconds for a project-time
// project) lies in the query window of exactly one day, the day RecordDay
// names, which is the record's own calendar day in New York.
func TestEveryRecordInExactlyOneDay(t *testing.T) {
	ny := newYork(t)
	var instants []time.Time
	for _, edge := range []time.Time{
		time.Date(2026, 3, 8, 5, 0, 0, 0, time.UTC),  // NY 03-08 00:00 EST
		time.Date(2026, 3, 8, 7, 0, 0, 0, time.UTC),  // spring forward: 02:00 EST -> 03:00 EDT
		time.Date(2026, 3, 9, 4, 0, 0, 0, time.UTC),  // NY 03-09 00:00 EDT
		time.Date(2026, 11, 1, 4, 0, 0, 0, time.UTC), // NY 11-01 00:00 EDT
		time.Date(2026, 11, 1, 6, 0, 0, 0, time.UTC), // fall back: 02:00 EDT -> 01:00 EST
		time.Date(2026, 11, 2, 5, 0, 0, 0, time.UTC), // NY 11-02 00:00 EST
	} {
		for _, off := range []time.Duration{-time.Hour, -time.Second, 0, time.Second, 30 * time.Minute, time.Hour} {
			instants = append(instants, edge.Add(off))
		}
	}
	days := []string{"2026-03-07", "2026-03-08", "2026-03-09", "2026-10-31", "2026-11-01", "2026-11-02"}
	for _, basis := range []exporter.TimeBasis{exporter.BasisUTC, exporter.BasisProject} {
		for _, at := range instants {
			value := at // what properties.time says
			if basis == exporter.BasisProject {
				value = time.Unix(cetest.WallClock(at, ny), 0)
			}
			own := at.In(ny).Format(time.DateOnly)
			if got := exporter.RecordDay(value, ny, basis); got != own {
				t.Errorf("%s: RecordDay(%s) = %s, want its New York day %s", basis, at.Format(time.RFC3339), got, own)
			}
			var in []string
			for _, day := range days {
				date, _ := time.Parse(time.DateOnly, day)
				from, to, _ := exporter.DayWindow(date, ny, basis)
				if !value.Before(from) && value.Before(to) {
					in = append(in, day)
				}
			}
			if diff := cmp.Diff([]string{own}, in); diff != "" {
				t.Errorf("%s: record at %s lies in the windows of (-want +got):\n%s", basis, at.Format(time.RFC3339), diff)
			}
		}
	}
}
