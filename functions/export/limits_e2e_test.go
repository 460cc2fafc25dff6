package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/internal/exporter"
	"github.com/cebulk/cebulk/internal/lambdatest"
)

// scheduled is an EventBridge schedule envelope for the event time at.
func scheduled(t *testing.T, at time.Time) map[string]any {
	t.Helper()
	var ev map[string]any
	if err := json.Unmarshal(testdata(t, "schedule-event.json"), &ev); err != nil {
		t.Fatal(err)
	}
	ev["time"] = at.UTC().Format(time.RFC3339)
	return ev
}

// TestE2ENightlyLookbackAfterLateEvents: the nightly run exports three
// days; late events then reach two of them; the next nightly event
// re-exports the look-back days, and each partition holds every event of
// its day exactly once, its manifest naming the revision it replaced.
func TestE2ENightlyLookbackAfterLateEvents(t *testing.T) {
	x := startE2E(t, map[string]string{"EXPORT_START": "", "EXPORT_LAG": "0s", "EXPORT_LOOKBACK": "2d"})
	byDay := x.seed(900, x.today.AddDate(0, 0, -3), x.today)
	night := scheduled(t, x.today.Add(-22*time.Hour))
	// Three days exported first (a backfill, DONE).
	first := x.invoke(t, map[string]any{"action": "run", "from": x.day(-3), "to": x.day(0)})
	if first.Run == nil || len(first.Run.Started) != 3 {
		t.Fatalf("backfill = %+v, want 3 days", first.Run)
	}
	x.invoke(t, testdata(t, "sweep.json"))
	// Late events reach the last two days. The nightly run finds
	// yesterday exported already (no new day) and re-exports the two
	// look-back days before its watermark.
	var late []json.RawMessage
	for i, d := range []int{-2, -1, -1} {
		at := x.today.AddDate(0, 0, d).Add(time.Duration(i+3) * time.Hour)
		rec := fmt.Sprintf(`{"event":"Late","properties":{"time":%d,"distinct_id":"late-%d","$insert_id":"late-%d"}}`, at.Unix(), i, i)
		late = append(late, json.RawMessage(rec))
		byDay[x.day(d)] = append(byDay[x.day(d)], rec)
	}
	x.fake.AddRecords("activities", late)
	run := x.invoke(t, night)
	want := []string{"export-activities-" + x.day(-2), "export-activities-" + x.day(-1)}
	if run.Run == nil || !slices.Equal(startedIDs(run.Run), want) {
		t.Fatalf("nightly run = %+v, want the look-back days %v", run.Run, want)
	}
	x.invoke(t, testdata(t, "sweep.json"))
	for _, d := range []int{-3, -2, -1} {
		m := x.checkPartitionRevision(t, "dt="+x.day(d), byDay[x.day(d)])
		wantRev := 2
		if d == -3 {
			wantRev = 1
		}
		if m.Revision != wantRev {
			t.Errorf("day %s: revision %d, want %d", x.day(d), m.Revision, wantRev)
		}
		if d == -1 && (m.Replaced == nil || m.Replaced.Records != m.Records-2) {
			t.Errorf("day %s: replaced %+v, want the revision with 2 events fewer than %d", x.day(d), m.Replaced, m.Records)
		}
	}
	// Lambda retries the same nightly event: nothing is exported again.
	if again := x.invoke(t, night); len(again.Run.Started) != 0 {
		t.Errorf("retried nightly event started %v", startedIDs(again.Run))
	}
}

// checkPartitionRevision is checkPartition for a partition that may have
// been replaced: the records, each once, and the manifest.
func (x *e2e) checkPartitionRevision(t *testing.T, partition string, want []string) exporter.Manifest {
	t.Helper()
	prefix := "exports/activities/" + partition + "/"
	if _, ok := x.read(t, prefix+"_SUCCESS"); !ok {
		t.Fatalf("%s_SUCCESS missing", prefix)
	}
	raw, _ := x.read(t, prefix+"_manifest.json")
	var m exporter.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	data, _ := x.read(t, m.Part)
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(plain), "\n"), "\n")
	slices.Sort(got)
	want = slices.Clone(want)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records of %s (-want +got):\n%s", prefix, diff)
	}
	return m
}

// TestE2EProjectTimeExport: a pre-2023 project in New York time, exported
// with EXPORT_TIME_BASIS=project across the 2026 spring-forward day: every
// record lands in the partition of its own New York day, exactly once.
func TestE2EProjectTimeExport(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	x := startE2EProject(t, map[string]string{"EXPORT_TIMEZONE": "America/New_York", "EXPORT_TIME_BASIS": "project", "EXPORT_LAG": "0s"},
		lambdatest.StackOptions{}, cetest.Options{ProjectTimezone: ny})
	var seed []json.RawMessage
	want := map[string][]string{} // New York day -> distinct ids
	for at, i := time.Date(2026, 3, 6, 3, 0, 0, 0, time.UTC), 0; at.Before(time.Date(2026, 3, 11, 6, 0, 0, 0, time.UTC)); at, i = at.Add(17*time.Minute), i+1 {
		id := fmt.Sprintf("r-%d", i)
		seed = append(seed, json.RawMessage(fmt.Sprintf(`{"event":"E","properties":{"time":%d,"distinct_id":%q,"$insert_id":%q}}`, at.Unix(), id, id)))
		if day := at.In(ny).Format(time.DateOnly); day >= "2026-03-07" && day < "2026-03-10" {
			want[day] = append(want[day], id)
		}
	}
	x.fake.Seed("activities", seed)
	run := x.invoke(t, map[string]any{"action": "run", "from": "2026-03-07", "to": "2026-03-10"})
	if run.Run == nil || len(run.Run.Started) != 3 {
		t.Fatalf("backfill = %+v", run.Run)
	}
	x.invoke(t, testdata(t, "sweep.json"))
	got := map[string][]string{}
	for day := range want {
		prefix := "exports/activities/dt=" + day + "/"
		raw, ok := x.read(t, prefix+"_manifest.json")
		if !ok {
			t.Fatalf("%s not published", prefix)
		}
		var m exporter.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		if m.TimeBasis != exporter.BasisProject || m.Timezone != "America/New_York" {
			t.Errorf("manifest of %s: basis %q, zone %q", day, m.TimeBasis, m.Timezone)
		}
		data, _ := x.read(t, m.Part)
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := io.ReadAll(zr)
		for line := range strings.SplitSeq(strings.TrimSpace(string(plain)), "\n") {
			var v struct {
				Properties struct {
					DistinctID string `json:"distinct_id"`
				} `json:"properties"`
			}
			if err := json.Unmarshal([]byte(line), &v); err != nil {
				t.Fatal(err)
			}
			got[day] = append(got[day], v.Properties.DistinctID)
		}
	}
	for day := range want {
		slices.Sort(want[day])
		slices.Sort(got[day])
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records by New York day (-want +got):\n%s", diff)
	}
	if n := len(want["2026-03-08"]); n != 23*60/17+1 && n != 23*60/17 {
		t.Errorf("the spring-forward day holds %d records, want 23 hours' worth", n)
	}
}
