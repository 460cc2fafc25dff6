package cetest_test

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/cetest"
)

func collect(g cetest.Generator) []cetest.Record {
	var out []cetest.Record
	g.Records(func(r cetest.Record) bool {
		r.JSON = append(json.RawMessage(nil), r.JSON...) // the generator reuses its buffer
		out = append(out, r)
		return true
	})
	return out
}

var insertIDRE = regexp.MustCompile(`^[A-Za-z0-9-]{1,36}$`)

func TestSampleActivities(t *testing.T) {
	from := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	to := from.AddDate(0, 0, 3)
	recs := collect(cetest.SampleActivities(1, 5000, from, to))
	if len(recs) != 5000 {
		t.Fatalf("SampleActivities(1, 5000) yielded %d records", len(recs))
	}
	if again := collect(cetest.SampleActivities(1, 5000, from, to)); !sameRecords(recs, again) {
		t.Errorf("SampleActivities is not deterministic")
	}
	if other := collect(cetest.SampleActivities(2, 5000, from, to)); sameRecords(recs, other) {
		t.Errorf("SampleActivities ignores its seed")
	}
	perDay := map[string]int{}
	users := map[string]bool{}
	insertIDs := map[string]bool{}
	var last int64
	for i, r := range recs {
		var ev struct {
			Event      string         `json:"event"`
			Properties map[string]any `json:"properties"`
		}
		if err := json.Unmarshal(r.JSON, &ev); err != nil {
			t.Fatalf("record %d %s: %v", i, r.JSON, err)
		}
		p := ev.Properties
		for _, k := range []string{"time", "distinct_id", "$insert_id", "mp_processing_time_ms", "$browser", "$city", "mp_country_code", "plan", "$os"} {
			if _, ok := p[k]; !ok {
				t.Fatalf("record %d lacks properties.%s: %s", i, k, r.JSON)
			}
		}
		sec := int64(p["time"].(float64))
		if !r.Time.Equal(time.Unix(sec, 0)) {
			t.Errorf("record %d: Time %v differs from properties.time %d", i, r.Time, sec)
		}
		if r.Time.Before(from) || !r.Time.Before(to) || sec < last {
			t.Errorf("record %d: time %v out of [%v, %v) or out of order", i, r.Time, from, to)
		}
		last = sec
		id := p["$insert_id"].(string)
		if !insertIDRE.MatchString(id) || insertIDs[id] {
			t.Errorf("record %d: $insert_id %q is invalid or repeated", i, id)
		}
		insertIDs[id] = true
		if p["mp_processing_time_ms"].(float64) < float64(sec*1000) {
			t.Errorf("record %d: processed before it happened", i)
		}
		if ev.Event == "" || strings.ContainsAny(string(r.JSON), "\n\r") {
			t.Errorf("record %d is not one line with an event: %s", i, r.JSON)
		}
		perDay[r.Time.UTC().Format(time.DateOnly)]++
		users[p["distinct_id"].(string)] = true
	}
	if diff := cmp.Diff(map[string]int{"2026-11-23": 1667, "2026-11-24": 1667, "2026-11-25": 1666}, perDay); diff != "" {
		t.Errorf("events per day mismatch (-want +got):\n%s", diff)
	}
	if len(users) < 400 || len(users) > 500 {
		t.Errorf("%d distinct users among 5000 events, want close to 500", len(users))
	}
}

func TestSampleActivitiesCount(t *testing.T) {
	from := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	g := cetest.SampleActivities(1, 1000, from, from.Add(10*time.Hour))
	recs := collect(g)
	windows := [][2]time.Time{
		{},
		{from, from.Add(time.Hour)},
		{from.Add(90 * time.Minute), from.Add(4*time.Hour + 500*time.Millisecond)},
		{from.Add(9 * time.Hour), {}},
		{{}, from.Add(time.Second)},
		{from.Add(-time.Hour), from},
	}
	for _, w := range windows {
		var want int64
		for _, r := range recs {
			if (w[0].IsZero() || !r.Time.Before(w[0])) && (w[1].IsZero() || r.Time.Before(w[1])) {
				want++
			}
		}
		if got := g.Count(w[0], w[1]); got != want {
			t.Errorf("Count(%v, %v) = %d, want %d", w[0], w[1], got, want)
		}
	}
	if got := collect(cetest.SampleActivities(1, 10, from, from)); len(got) != 0 {
		t.Errorf("SampleActivities over an empty window yielded %d records", len(got))
	}
}

func TestSampleUsers(t *testing.T) {
	recs := collect(cetest.SampleUsers(1, 500))
	if len(recs) != 500 {
		t.Fatalf("SampleUsers(1, 500) yielded %d records", len(recs))
	}
	if again := collect(cetest.SampleUsers(1, 500)); !sameRecords(recs, again) {
		t.Errorf("SampleUsers is not deterministic")
	}
	for i, r := range recs {
		var u struct {
			DistinctID string         `json:"$distinct_id"`
			Properties map[string]any `json:"$properties"`
		}
		if err := json.Unmarshal(r.JSON, &u); err != nil {
			t.Fatalf("profile %d %s: %v", i, r.JSON, err)
		}
		if want := "user-" + strconv.Itoa(i); u.DistinctID != want {
			t.Errorf("profile %d: $distinct_id %q, want %q", i, u.DistinctID, want)
		}
		for _, k := range []string{"$email", "$name", "$city", "$created", "$last_seen", "plan"} {
			if _, ok := u.Properties[k]; !ok {
				t.Fatalf("profile %d lacks $properties.%s: %s", i, k, r.JSON)
			}
		}
		created, err1 := time.Parse("2006-01-02T15:04:05", u.Properties["$created"].(string))
		seen, err2 := time.Parse("2006-01-02T15:04:05", u.Properties["$last_seen"].(string))
		if err1 != nil || err2 != nil || seen.Before(created) || created.Year() < 2023 || created.Year() > 2025 {
			t.Errorf("profile %d: $created %v, $last_seen %v", i, created, seen)
		}
	}
}

// sameRecords compares records cheaply (cmp's slice diff is quadratic on
// thousands of differing elements).
func sameRecords(a, b []cetest.Record) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i].JSON, b[i].JSON) || !a[i].Time.Equal(b[i].Time) {
			return false
		}
	}
	return true
}

// TestSamplesPassUploadValidation uploads the samples back: Mixpanel's rules
// (as the emulator applies them) accept every event, and every profile once
// its $properties become a $set.
func TestSamplesPassUploadValidation(t *testing.T) {
	e := newEnv(t, cetest.Options{DiscardUploads: true})
	now := e.clock.Now()
	var file strings.Builder
	cetest.SampleActivities(9, 2000, now.AddDate(0, 0, -30), now.Add(time.Hour)).Records(func(r cetest.Record) bool {
		file.Write(r.JSON)
		file.WriteByte('\n')
		return true
	})
	id := e.upload("activities", `{"format":"json"}`, file.String())
	if st := e.status(id); st["recordsCount"] != float64(2000) || st["recordsFailedCount"] != float64(0) {
		t.Errorf("upload of sample activities: %v, want 2000 records, none failed", st)
	}

	file.Reset()
	cetest.SampleUsers(9, 300).Records(func(r cetest.Record) bool {
		file.WriteString(strings.Replace(string(r.JSON), `"$properties"`, `"$set"`, 1) + "\n")
		return true
	})
	id = e.upload("users", `{"format":"json"}`, file.String())
	if st := e.status(id); st["recordsCount"] != float64(300) || st["recordsFailedCount"] != float64(0) {
		t.Errorf("upload of sample users: %v, want 300 records, none failed", st)
	}
}

func TestSampleActivitiesBytes(t *testing.T) {
	from := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	for _, size := range []int64{1 << 20, 10 << 20} {
		var n int64
		cetest.SampleActivitiesBytes(1, size, from, from.AddDate(0, 0, 1)).Records(func(r cetest.Record) bool {
			n += int64(len(r.JSON)) + 1
			return true
		})
		if n < size*97/100 || n > size*103/100 {
			t.Errorf("SampleActivitiesBytes(%d) = %d bytes of JSON lines, want within 3%%", size, n)
		}
	}
	var total, count int64
	cetest.SampleActivities(1, 5000, from, from.AddDate(0, 0, 1)).Records(func(r cetest.Record) bool {
		total += int64(len(r.JSON)) + 1
		count++
		return true
	})
	if avg := total / count; avg < cetest.AverageActivityBytes*9/10 || avg > cetest.AverageActivityBytes*11/10 {
		t.Errorf("average activity = %d bytes, AverageActivityBytes = %d", avg, cetest.AverageActivityBytes)
	}
}

func TestBulkyActivitiesCount(t *testing.T) {
	day := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	g := cetest.BulkyActivities(1, 2<<20, day)
	var n, in int64
	var size int64
	g.Records(func(r cetest.Record) bool {
		n++
		size += int64(len(r.JSON)) + 1
		if !r.Time.Before(day.Add(time.Hour)) && r.Time.Before(day.Add(2*time.Hour)) {
			in++
		}
		return true
	})
	if got := g.Count(time.Time{}, time.Time{}); got != n || size < 2<<20 || size > 2<<20+2048 {
		t.Errorf("Count() = %d, generated %d records of %d bytes; want equal, about 2 MiB", got, n, size)
	}
	if got := g.Count(day.Add(time.Hour), day.Add(2*time.Hour)); got != in {
		t.Errorf("Count(1h, 2h) = %d, want %d", got, in)
	}
}
