package mptest_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/mptest"
)

func day(s string) url.Values {
	return url.Values{"from_date": {s}, "to_date": {s}}
}

func TestExportAuth(t *testing.T) {
	e := newEnv(t, mptest.Options{})
	plain := "Basic " + mptest.DefaultUsername + ":" + mptest.DefaultSecret
	wrong := "Basic " + base64.StdEncoding.EncodeToString([]byte(mptest.DefaultUsername+":nope"))
	tests := []struct {
		name, auth, project string
		code                int
		errText             string
	}{
		{"base64 credentials", saAuth, mptest.DefaultProjectID, 200, ""},
		{"plain-text credentials", plain, mptest.DefaultProjectID, 200, ""},
		{"no credentials", "", mptest.DefaultProjectID, 401, "Invalid credentials"},
		{"wrong secret", wrong, mptest.DefaultProjectID, 401, "Invalid credentials"},
		{"bearer scheme", "Bearer " + mptest.DefaultSecret, mptest.DefaultProjectID, 401, "Invalid credentials"},
		{"missing project_id", saAuth, "", 400, "project_id is required when authenticating with a service account"},
		{"non-numeric project_id", saAuth, "abc", 400, `invalid project_id "abc": must be an integer`},
		{"another project", saAuth, "42", 403, "service account does not have access to project 42"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := day("2026-11-24")
			q.Set("project_id", tt.project)
			if tt.project == "" {
				q.Del("project_id")
				q.Set("x", "1") // keep export() from adding the project
			}
			path := "/api/2.0/export?" + q.Encode()
			r := e.do("GET", path, nil, "Authorization: "+tt.auth)
			if r.code != tt.code {
				t.Fatalf("status = %d %s, want %d", r.code, r.body, tt.code)
			}
			if tt.code == 200 {
				return
			}
			want := map[string]any{"request": path, "error": tt.errText}
			if diff := cmp.Diff(r.json(t), want); diff != "" {
				t.Errorf("error body (-got +want):\n%s", diff)
			}
		})
	}
}

func TestExportInclusiveUTCDays(t *testing.T) {
	e := newEnv(t, mptest.Options{})
	first := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	e.fake.SetGenerator(mptest.SampleEvents(7, 24, 10, first, first.AddDate(0, 0, 5)))
	// Late events at both edges of 2026-11-24 and just outside.
	e.fake.AddEvents(fmt.Sprintf(`{"event":"Late","properties":{"time":%d,"distinct_id":"u1","$insert_id":"late-1"}}
{"event":"Late","properties":{"time":%d,"distinct_id":"u1","$insert_id":"late-2"}}
{"event":"Late","properties":{"time":%d,"distinct_id":"u1","$insert_id":"late-3"}}
{"event":"Late","properties":{"time":%d,"distinct_id":"u1","$insert_id":"late-4"}}`,
		time.Date(2026, 11, 23, 23, 59, 59, 0, time.UTC).Unix(),
		time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC).Unix(),
		time.Date(2026, 11, 24, 23, 59, 59, 0, time.UTC).UnixMilli(), // milliseconds
		time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC).Unix()))

	r := e.export(day("2026-11-24"))
	if r.code != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("export = %d %q %s", r.code, r.header.Get("Content-Type"), r.body)
	}
	evs := lines(t, r.body)
	lo, hi := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC).Unix(), time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC).Unix()
	var late []string
	for _, m := range evs {
		p := m["properties"].(map[string]any)
		sec := int64(p["time"].(float64))
		if sec < lo || sec >= hi {
			t.Errorf("event at %d outside [%d, %d): %v", sec, lo, hi, m)
		}
		if m["event"] == "Late" {
			late = append(late, p["$insert_id"].(string))
		}
		for _, k := range []string{"distinct_id", "$insert_id", "mp_processing_time_ms"} {
			if _, ok := p[k]; !ok {
				t.Errorf("event lacks %s: %v", k, m)
			}
		}
	}
	if len(evs) != 24+2 {
		t.Errorf("got %d events, want 24 generated + 2 late", len(evs))
	}
	if diff := cmp.Diff(late, []string{"late-2", "late-3"}); diff != "" {
		t.Errorf("late events (-got +want):\n%s", diff)
	}

	// Two days inclusive: both days' generated events, three late ones.
	q := url.Values{"from_date": {"2026-11-23"}, "to_date": {"2026-11-24"}}
	if n := len(lines(t, e.export(q).body)); n != 48+3 {
		t.Errorf("two-day export: %d events, want 51", n)
	}
	// The same day asked twice yields the same bytes.
	if again := e.export(day("2026-11-24")); !bytes.Equal(again.body, r.body) {
		t.Errorf("a second export of the same day differs")
	}
}

func TestExportLegacyProjectTime(t *testing.T) {
	la, err := time.LoadLocation("America/Los_Angeles")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	// 2026-11-24 07:30 UTC is 2026-11-23 23:30 in Los Angeles (PST, -8h).
	at := time.Date(2026, 11, 24, 7, 30, 0, 0, time.UTC)
	add := fmt.Sprintf(`{"event":"E","properties":{"time":%d,"distinct_id":"u","$insert_id":"i1"}}`, at.Unix())
	tests := []struct {
		name     string
		opts     mptest.Options
		day      string
		wantTime int64 // 0: the event is not in that day
	}{
		{"UTC project, UTC day", mptest.Options{Timezone: la}, "2026-11-24", at.Unix()},
		{"UTC project, previous day", mptest.Options{Timezone: la}, "2026-11-23", 0},
		{"legacy project, local day", mptest.Options{Timezone: la, LegacyTime: true}, "2026-11-23", at.Unix() - 8*3600},
		{"legacy project, next local day", mptest.Options{Timezone: la, LegacyTime: true}, "2026-11-24", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.opts)
			e.fake.AddEvents(add)
			evs := lines(t, e.export(day(tt.day)).body)
			if tt.wantTime == 0 {
				if len(evs) != 0 {
					t.Errorf("got %v, want no event", evs)
				}
				return
			}
			if len(evs) != 1 {
				t.Fatalf("got %d events, want 1", len(evs))
			}
			if got := int64(evs[0]["properties"].(map[string]any)["time"].(float64)); got != tt.wantTime {
				t.Errorf("properties.time = %d, want %d", got, tt.wantTime)
			}
		})
	}
}

func TestExportFilters(t *testing.T) {
	e := newEnv(t, mptest.Options{})
	base := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC).Unix()
	e.fake.AddEvents(fmt.Sprintf(`[
{"event":"Purchase","properties":{"time":%d,"distinct_id":"a","$insert_id":"p1","amount":5,"plan":"pro"}},
{"event":"Purchase","properties":{"time":%d,"distinct_id":"b","$insert_id":"p2","amount":50,"plan":"free"}},
{"event":"Login","properties":{"time":%d,"distinct_id":"a","$insert_id":"l1","plan":"pro"}},
{"event":"Search","properties":{"time":%d,"distinct_id":"c","$insert_id":"s1"}}]`, base, base+1, base+2, base+3))
	ids := func(r response) []string {
		var out []string
		for _, m := range lines(t, r.body) {
			out = append(out, m["properties"].(map[string]any)["$insert_id"].(string))
		}
		return out
	}
	tests := []struct {
		name   string
		params map[string]string
		want   []string
	}{
		{"no filter", nil, []string{"p1", "p2", "l1", "s1"}},
		{"event", map[string]string{"event": `["Purchase","Search"]`}, []string{"p1", "p2", "s1"}},
		{"where string", map[string]string{"where": `properties["plan"] == "pro"`}, []string{"p1", "l1"}},
		{"where number and", map[string]string{"where": `properties["amount"] > 10 and properties["plan"] != "pro"`}, []string{"p2"}},
		{"where defined", map[string]string{"where": `defined(properties["amount"])`}, []string{"p1", "p2"}},
		{"where not defined", map[string]string{"where": `not defined(properties["plan"])`}, []string{"s1"}},
		{"event and where", map[string]string{"event": `["Purchase"]`, "where": `properties["distinct_id"] == "a"`}, []string{"p1"}},
		{"limit", map[string]string{"limit": "2"}, []string{"p1", "p2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := day("2026-11-24")
			for k, v := range tt.params {
				q.Set(k, v)
			}
			if diff := cmp.Diff(ids(e.export(q)), tt.want); diff != "" {
				t.Errorf("exported ids (-got +want):\n%s", diff)
			}
		})
	}
	q := day("2026-11-24")
	q.Set("time_in_ms", "true")
	if got := lines(t, e.export(q).body)[0]["properties"].(map[string]any)["time"].(float64); int64(got) != base*1000 {
		t.Errorf("time_in_ms: time = %v, want %d", got, base*1000)
	}
}

func TestExportBadParameters(t *testing.T) {
	e := newEnv(t, mptest.Options{})
	tests := []struct {
		name   string
		params url.Values
		err    string
	}{
		{"no from_date", url.Values{"to_date": {"2026-11-24"}}, "from_date is a required parameter"},
		{"no to_date", url.Values{"from_date": {"2026-11-24"}}, "to_date is a required parameter"},
		{"bad date", url.Values{"from_date": {"2026/11/24"}, "to_date": {"2026-11-24"}}, `from_date: invalid date "2026/11/24", expected yyyy-mm-dd`},
		{"to before from", url.Values{"from_date": {"2026-11-24"}, "to_date": {"2026-11-23"}}, "to_date must not be before from_date"},
		{"limit zero", url.Values{"from_date": {"2026-11-24"}, "to_date": {"2026-11-24"}, "limit": {"0"}}, "limit must be an integer between 1 and 100000"},
		{"limit too big", url.Values{"from_date": {"2026-11-24"}, "to_date": {"2026-11-24"}, "limit": {"100001"}}, "limit must be an integer between 1 and 100000"},
		{"event not array", url.Values{"from_date": {"2026-11-24"}, "to_date": {"2026-11-24"}, "event": {"Purchase"}}, "event must be a JSON array of event names"},
		{"where unsupported", url.Values{"from_date": {"2026-11-24"}, "to_date": {"2026-11-24"}, "where": {`properties["a"] in ["x"]`}},
			`invalid where expression "properties[\"a\"] in [\"x\"]": expected a comparison after properties["a"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.export(tt.params)
			if r.code != http.StatusBadRequest {
				t.Fatalf("status = %d %s, want 400", r.code, r.body)
			}
			if got := r.json(t)["error"]; got != tt.err {
				t.Errorf("error = %q, want %q", got, tt.err)
			}
		})
	}
}

func TestExportGzip(t *testing.T) {
	e := newEnv(t, mptest.Options{})
	first := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	e.fake.SetGenerator(mptest.SampleEvents(1, 200, 20, first, first.AddDate(0, 0, 1)))
	plain := e.export(day("2026-11-24"))
	zipped := e.export(day("2026-11-24"), "Accept-Encoding: gzip")
	if zipped.header.Get("Content-Encoding") != "gzip" || plain.header.Get("Content-Encoding") != "" {
		t.Fatalf("Content-Encoding = %q (gzip asked) and %q (not asked)", zipped.header.Get("Content-Encoding"), plain.header.Get("Content-Encoding"))
	}
	if got := gunzip(t, zipped.body); !bytes.Equal(got, plain.body) || len(plain.body) < 1400 {
		t.Errorf("gunzipped body (%d bytes) differs from the plain one (%d bytes)", len(got), len(plain.body))
	}
	// At most 1400 bytes: not compressed even when asked.
	q := day("2026-11-24")
	q.Set("limit", "2")
	small := e.export(q, "Accept-Encoding: gzip, deflate")
	if small.header.Get("Content-Encoding") != "" || len(lines(t, small.body)) != 2 {
		t.Errorf("small export: Content-Encoding %q, body %q", small.header.Get("Content-Encoding"), small.body)
	}
}

// discardWriter is a ResponseWriter that keeps nothing and samples the heap.
type discardWriter struct {
	h         http.Header
	n, next   int64
	peak      uint64
	baseline  uint64
	sampleGap int64
}

func (d *discardWriter) Header() http.Header { return d.h }
func (d *discardWriter) WriteHeader(int)     {}
func (d *discardWriter) Write(p []byte) (int, error) {
	d.n += int64(len(p))
	if d.n >= d.next {
		d.next += d.sampleGap
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		d.peak = max(d.peak, ms.HeapAlloc)
	}
	return len(p), nil
}

func TestExportLargeDayStreamsWithFlatMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("large export")
	}
	f := mptest.NewFake(mptest.Options{Now: func() time.Time { return start }})
	first := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	const perDay = 300_000
	f.SetGenerator(mptest.SampleEvents(3, perDay, 5000, first, first.AddDate(0, 0, 1)))
	req, _ := http.NewRequest("GET", "/api/2.0/export?project_id="+mptest.DefaultProjectID+"&from_date=2026-11-24&to_date=2026-11-24", nil)
	req.Header.Set("Authorization", saAuth)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w := &discardWriter{h: http.Header{}, sampleGap: 16 << 20, next: 1 << 20, baseline: ms.HeapAlloc}
	f.ServeHTTP(w, req)
	if w.n < 40<<20 {
		t.Fatalf("export wrote %d bytes, want a day of %d events (> 40 MiB)", w.n, perDay)
	}
	growth := int64(w.peak) - int64(w.baseline)
	t.Logf("exported %d MiB; heap growth at most %d KiB", w.n>>20, growth>>10)
	if growth > 16<<20 {
		t.Errorf("heap grew by %d MiB while streaming %d MiB: the export is buffered", growth>>20, w.n>>20)
	}
}

func BenchmarkExportDay(b *testing.B) {
	f := mptest.NewFake(mptest.Options{ExportPerHour: -1})
	first := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	f.SetGenerator(mptest.SampleEvents(3, 100_000, 5000, first, first.AddDate(0, 0, 1)))
	req, _ := http.NewRequest("GET", "/api/2.0/export?project_id="+mptest.DefaultProjectID+"&from_date=2026-11-24&to_date=2026-11-24", nil)
	req.Header.Set("Authorization", saAuth)
	w := &discardWriter{h: http.Header{}, next: 1 << 62}
	b.ReportAllocs()
	for b.Loop() {
		f.ServeHTTP(w, req)
	}
	b.ReportMetric(float64(100_000*b.N)/b.Elapsed().Seconds(), "events/s")
}
