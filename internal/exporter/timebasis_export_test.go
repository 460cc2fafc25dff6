package exporter

import (
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/google/go-cmp/cmp"
)

// TestProjectTimeExportPlacesEveryRecord exports New York days around both
// 2026 DST changes from the emulator, under both bases: a UTC project
// (times in UTC seconds, whole UTC dates per query) with EXPORT_TIME_BASIS
// utc, and a pre-2023 project in New York time (wall-clock seconds, New York
// dates) with project. Every record of an exported day lands in exactly one
// partition, the one of its own New York day, also those near a day's edge
// that a neighbouring day's job returned too.
func TestProjectTimeExportPlacesEveryRecord(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	// Records every 20 minutes, and a second either side of each New York
	// midnight, over both DST weekends.
	var instants []time.Time
	for _, span := range [][2]time.Time{
		{time.Date(2026, 3, 6, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 11, 0, 0, 0, 0, time.UTC)},
		{time.Date(2026, 10, 30, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 4, 0, 0, 0, 0, time.UTC)},
	} {
		for at := span[0]; at.Before(span[1]); at = at.Add(20 * time.Minute) {
			instants = append(instants, at)
		}
		for d := span[0].In(ny); d.Before(span[1]); d = d.AddDate(0, 0, 1) {
			midnight := time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, ny)
			instants = append(instants, midnight.Add(-time.Second), midnight, midnight.Add(time.Second))
		}
	}
	var seed []json.RawMessage
	own := map[string]string{} // distinct_id -> its New York day
	for i, at := range instants {
		id := fmt.Sprintf("r-%d", i)
		own[id] = at.In(ny).Format(dayLayout)
		seed = append(seed, json.RawMessage(fmt.Sprintf(`{"event":"E","properties":{"time":%d,"distinct_id":%q,"$insert_id":%q}}`, at.Unix(), id, id)))
	}
	ranges := [][2]string{{"2026-03-07", "2026-03-10"}, {"2026-10-31", "2026-11-03"}}
	for _, tc := range []struct {
		name  string
		basis TimeBasis
		opts  cetest.Options
		// edges: the queries return records of neighbouring days, which
		// those days' own jobs place; misplaced: the wrong basis for the
		// project, shown to put records into the wrong day.
		edges, misplaced bool
	}{
		{"utc", BasisUTC, cetest.Options{WholeDays: true}, true, false},
		{"project", BasisProject, cetest.Options{ProjectTimezone: ny}, false, false},
		{"project-time project read as utc", BasisUTC, cetest.Options{ProjectTimezone: ny}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.opts, Config{Location: ny, TimeBasis: tc.basis})
			e.fake.Seed(ObjectActivities, seed)
			ex := e.exporter(nil, nil)
			want := map[string]string{}
			for _, r := range ranges {
				mustRun(t, ex, RunRequest{From: r[0], To: r[1]})
				for id, day := range own {
					if day >= r[0] && day < r[1] {
						want[id] = day
					}
				}
			}
			mustSweep(t, ex)
			got := map[string]string{}
			for _, r := range ranges {
				for d := dayStart(r[0]); d.Before(dayStart(r[1])); d = d.AddDate(0, 0, 1) {
					day := d.Format(dayLayout)
					raw, ok := e.get(t, "exports/activities/dt="+day+"/_manifest.json")
					if !ok {
						t.Fatalf("day %s not published", day)
					}
					var m Manifest
					if err := json.Unmarshal(raw, &m); err != nil {
						t.Fatal(err)
					}
					if m.TimeBasis != tc.basis || m.Timezone != "America/New_York" {
						t.Errorf("manifest of %s states %q %q", day, m.TimeBasis, m.Timezone)
					}
					rc, _, err := e.s3.Open(t.Context(), e.bucket, m.Part)
					if err != nil {
						t.Fatal(err)
					}
					data, err := io.ReadAll(rc)
					rc.Close()
					if err != nil {
						t.Fatal(err)
					}
					for _, line := range gunzipLines(t, data) {
						var v struct {
							Properties struct {
								DistinctID string `json:"distinct_id"`
							} `json:"properties"`
						}
						if err := json.Unmarshal([]byte(line), &v); err != nil {
							t.Fatal(err)
						}
						if prev, dup := got[v.Properties.DistinctID]; dup {
							t.Errorf("record %s in %s and %s", v.Properties.DistinctID, prev, day)
						}
						got[v.Properties.DistinctID] = day
					}
				}
			}
			if diff := cmp.Diff(want, got); (diff != "") != tc.misplaced {
				t.Errorf("record -> partition (-own day +exported to):\n%s", diff)
			}
			var out int64
			for _, j := range e.fake.Jobs() {
				out += j.RecordsCount
			}
			if edges := out > int64(len(got)); edges != tc.edges {
				t.Errorf("CE returned %d records for %d placed; want records of neighbouring days: %v", out, len(got), tc.edges)
			}
		})
	}
}
