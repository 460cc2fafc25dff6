package exporter

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/google/go-cmp/cmp"
)

func TestLookbackDays(t *testing.T) {
	for _, tc := range []struct {
		next string
		n    int
		want []string
	}{
		{"2026-03-02", 5, []string{"2026-02-25", "2026-02-26", "2026-02-27", "2026-02-28", "2026-03-01"}},
		{"2026-01-01", 2, []string{"2025-12-30", "2025-12-31"}},
		{"2026-01-01", 0, []string{}},
	} {
		got, err := LookbackDays(tc.next, tc.n)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("LookbackDays(%s, %d) (-want +got):\n%s", tc.next, tc.n, diff)
		}
	}
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{{"", 5, true}, {"5d", 5, true}, {"0d", 0, true}, {"3", 3, true}, {"32d", 0, false}, {"5h", 0, false}} {
		got, err := ParseLookback(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseLookback(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// TestNightlyLookbackAfterLateEvents: the nightly run exports the new day,
// then the last finished days again after late events reached them; each
// partition then holds every event of its day exactly once, and its
// manifest says which revision it replaced. A retry of the same nightly
// event re-exports nothing more.
func TestNightlyLookbackAfterLateEvents(t *testing.T) {
	e := newEnv(t, cetest.Options{}, Config{Lookback: 2})
	byDay := seedActivities(e.fake, 600, dayStart(e.day(-3)), dayStart(e.day(0)))
	ex := e.exporter(nil, nil)
	first := mustRun(t, ex, RunRequest{At: e.clock.Now()})
	if len(first.Started) != 3 {
		t.Fatalf("first night started %v, want days -3..-1", startedIDs(first))
	}
	mustSweep(t, ex)
	before := e.checkPartition(t, ObjectActivities, "dt="+e.day(-1), byDay[e.day(-1)])
	if before.Revision != 1 || before.Replaced != nil {
		t.Errorf("first export: revision %d, replaced %+v", before.Revision, before.Replaced)
	}

	// Late events land in the last two days; a day passes.
	var late []json.RawMessage
	for i, d := range []string{e.day(-2), e.day(-1), e.day(-1)} {
		rec := fmt.Sprintf(`{"event":"Late","properties":{"time":%d,"distinct_id":"late-%d","$insert_id":"late-%d"}}`, dayStart(d).Add(time.Duration(i+1)*time.Hour).Unix(), i, i)
		late = append(late, json.RawMessage(rec))
		byDay[d] = append(byDay[d], rec)
	}
	e.fake.AddRecords(ObjectActivities, late)
	e.clock.Add(24 * time.Hour)
	today := e.day(-1) // the new day
	at := e.clock.Now()
	night := mustRun(t, ex, RunRequest{At: at})
	want := []string{DayJobID(ObjectActivities, today), DayJobID(ObjectActivities, e.day(-3)), DayJobID(ObjectActivities, e.day(-2))}
	if diff := cmp.Diff(want, startedIDs(night)); diff != "" {
		t.Fatalf("second night started (-want +got): new day first, then the look-back\n%s", diff)
	}
	mustSweep(t, ex)
	for _, d := range []string{e.day(-4), e.day(-3), e.day(-2)} {
		e.checkPartition(t, ObjectActivities, "dt="+d, byDay[d])
	}
	after := e.checkPartition(t, ObjectActivities, "dt="+e.day(-2), byDay[e.day(-2)])
	if after.Revision != 2 || after.Replaced == nil || after.Replaced.Records != before.Records || after.Records != before.Records+2 {
		t.Errorf("re-export manifest: revision %d, replaced %+v, records %d; want 2, the %d records before, %d now",
			after.Revision, after.Replaced, after.Records, before.Records, before.Records+2)
	}
	// The same nightly event again (Lambda's retry): nothing re-exported.
	if again := mustRun(t, ex, RunRequest{At: at}); len(again.Started) != 0 {
		t.Errorf("retried nightly event started %v", startedIDs(again))
	}
}
