package mptest_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/mptest"
)

// rateLimited is the documented 429 body.
var rateLimited = map[string]any{
	"code":   429.0,
	"error":  "Project exceeded rate limits. Please retry the request with exponential backoff.",
	"status": "Too Many Requests",
}

func TestHourlyLimits(t *testing.T) {
	tests := []struct {
		name string
		opts mptest.Options
		call func(e *env) response
	}{
		{"export", mptest.Options{ExportPerHour: 60, QueryPerHour: -1}, func(e *env) response { return e.export(day("2026-11-24")) }},
		{"engage query", mptest.Options{QueryPerHour: 60, ExportPerHour: -1}, func(e *env) response { return e.engageQuery(url.Values{}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.opts)
			for i := range 60 {
				if r := tt.call(e); r.code != 200 {
					t.Fatalf("call %d = %d %s, want 200", i+1, r.code, r.body)
				}
				e.clock.Advance(time.Second)
			}
			r := tt.call(e)
			if r.code != http.StatusTooManyRequests {
				t.Fatalf("call 61 within the hour = %d %s, want 429", r.code, r.body)
			}
			if diff := cmp.Diff(r.json(t), rateLimited); diff != "" {
				t.Errorf("429 body (-got +want):\n%s", diff)
			}
			// The window rolls: an hour after the first call, one more fits.
			e.clock.Advance(time.Hour - 60*time.Second)
			if r := tt.call(e); r.code != 200 {
				t.Errorf("call after the first one left the window = %d, want 200", r.code)
			}
			if r := tt.call(e); r.code != http.StatusTooManyRequests {
				t.Errorf("next call = %d, want 429 again", r.code)
			}
		})
	}
}

func TestExportPerSecondLimit(t *testing.T) {
	e := newEnv(t, mptest.Options{ExportPerHour: 60})
	for i := range 3 {
		if r := e.export(day("2026-11-24")); r.code != 200 {
			t.Fatalf("call %d = %d", i+1, r.code)
		}
	}
	if r := e.export(day("2026-11-24")); r.code != http.StatusTooManyRequests {
		t.Errorf("fourth call in one second = %d, want 429", r.code)
	}
	e.clock.Advance(time.Second)
	if r := e.export(day("2026-11-24")); r.code != 200 {
		t.Errorf("call a second later = %d, want 200", r.code)
	}
}

func TestFaults(t *testing.T) {
	e := newEnv(t, mptest.Options{})
	one := mustJSON(t, []any{ev("A", start.Unix(), "u1", "id-1")})

	e.fake.FailNext(mptest.RouteImport, 503, "7")
	r := e.importBody(one)
	if r.code != 503 || r.header.Get("Retry-After") != "7" {
		t.Errorf("injected 503 = %d, Retry-After %q", r.code, r.header.Get("Retry-After"))
	}
	if r := e.importBody(one); r.code != 200 {
		t.Errorf("next import = %d, want 200 (the fault was for one call)", r.code)
	}

	// Two 429s without Retry-After on the export, its other routes untouched.
	e.fake.Fail(mptest.RouteExport, mptest.Fault{Status: 429, Times: 2})
	for i := range 2 {
		r := e.export(day("2026-11-24"))
		if diff := cmp.Diff(r.json(t), rateLimited); r.code != 429 || r.header.Get("Retry-After") != "" || diff != "" {
			t.Errorf("export %d = %d %s", i+1, r.code, diff)
		}
	}
	if r := e.export(day("2026-11-24")); r.code != 200 {
		t.Errorf("third export = %d, want 200", r.code)
	}

	// A period: 502 until the clock passes Until.
	e.fake.Fail(mptest.RouteEngageQuery, mptest.Fault{Status: 502, Until: start.Add(time.Minute)})
	for range 3 {
		r := e.engageQuery(url.Values{})
		if r.code != 502 || !strings.HasPrefix(r.json(t)["request"].(string), "/api/query/engage") {
			t.Errorf("engage query during the outage = %d %s", r.code, r.body)
		}
	}
	e.clock.Advance(time.Minute)
	if r := e.engageQuery(url.Values{}); r.code != 200 {
		t.Errorf("engage query after the outage = %d, want 200", r.code)
	}
	if accepted, _, _ := e.fake.ImportStats(); accepted != 1 {
		t.Errorf("accepted %d events, want 1 (failed calls store nothing)", accepted)
	}

	// A timeout: the answer is held past the client's deadline.
	e.fake.Fail(mptest.RouteEngage, mptest.Fault{Delay: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", e.base+"/engage", strings.NewReader("[]"))
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("held /engage call: err = %v, want a deadline error", err)
	}

	// Requests are recorded without credentials.
	got := e.fake.Requests(mptest.RouteImport)
	if len(got) != 2 || got[0].Status != 503 || got[1].Status != 200 || got[0].Query.Get("strict") != "1" {
		t.Errorf("recorded imports = %+v", got)
	}
	if n := e.fake.Count(mptest.RouteExport); n != 3 {
		t.Errorf("Count(export) = %d, want 3", n)
	}
}

func TestCutNextExport(t *testing.T) {
	e := newEnv(t, mptest.Options{})
	first := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	e.fake.SetGenerator(mptest.SampleEvents(1, 1000, 50, first, first.AddDate(0, 0, 1)))
	e.fake.CutNextExport(5000)
	req, _ := http.NewRequestWithContext(t.Context(), "GET", e.base+"/api/2.0/export?project_id="+mptest.DefaultProjectID+"&from_date=2026-11-24&to_date=2026-11-24", nil)
	req.Header.Set("Authorization", saAuth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var n int
	buf := make([]byte, 4096)
	for {
		k, err := resp.Body.Read(buf)
		n += k
		if err != nil {
			if errors.Is(err, context.Canceled) || err.Error() == "EOF" {
				t.Fatalf("body ended cleanly after %d bytes, want a cut", n)
			}
			break
		}
	}
	if n != 5000 {
		t.Errorf("read %d bytes before the cut, want 5000", n)
	}
	if r := e.export(day("2026-11-24")); r.code != 200 || len(lines(t, r.body)) != 1000 {
		t.Errorf("next export = %d with %d lines, want the whole day", r.code, len(lines(t, r.body)))
	}
}

func TestExportConcurrency(t *testing.T) {
	e := newEnv(t, mptest.Options{ExportConcurrency: 1})
	entered, release := make(chan struct{}), make(chan struct{})
	e.fake.SetGenerator(func(from, to time.Time, yield func(mptest.Event) bool) {
		select {
		case entered <- struct{}{}:
			<-release // the first export waits here, in flight
		default:
		}
	})
	first := make(chan response, 1)
	go func() { first <- e.export(day("2026-11-24")) }()
	<-entered
	r := e.export(day("2026-11-24"))
	if diff := cmp.Diff(r.json(t), rateLimited); r.code != http.StatusTooManyRequests || diff != "" {
		t.Errorf("second concurrent export = %d %s", r.code, diff)
	}
	close(release)
	if r := <-first; r.code != 200 {
		t.Errorf("first export = %d, want 200", r.code)
	}
	if r := e.export(day("2026-11-24")); r.code != 200 {
		t.Errorf("export after the first ended = %d, want 200", r.code)
	}
}

// The ingestion limit counts the uncompressed bytes of /import and /engage
// bodies together over a rolling minute; past it, 429 and nothing stored.
func TestIngestBytesPerMinute(t *testing.T) {
	ev := fmt.Sprintf(`[{"event":"e","properties":{"time":%d,"distinct_id":"u1","$insert_id":"a1"}}]`, start.Add(-time.Hour).Unix())
	up := fmt.Sprintf(`[{"$token":%q,"$distinct_id":"u1","$set":{"plan":"pro"}}]`, mptest.DefaultToken)
	e := newEnv(t, mptest.Options{IngestBytesPerMinute: int64(len(ev) + len(up))})
	if r := e.importBody([]byte(ev), "Content-Encoding: gzip"); r.code != http.StatusBadRequest {
		// A body that is not gzip is refused before it counts.
		t.Fatalf("not-gzip body = %d %s, want 400", r.code, r.body)
	}
	if r := e.importBody(gzipped(t, []byte(ev)), "Content-Encoding: gzip"); r.code != 200 {
		t.Fatalf("import = %d %s, want 200", r.code, r.body)
	}
	if r := e.engage("?strict=1&verbose=1", up); r.code != 200 {
		t.Fatalf("engage = %d %s, want 200", r.code, r.body)
	}
	e.clock.Advance(30 * time.Second)
	r := e.engage("?strict=1&verbose=1", up)
	if r.code != http.StatusTooManyRequests {
		t.Fatalf("engage over the minute's bytes = %d %s, want 429", r.code, r.body)
	}
	if diff := cmp.Diff(r.json(t), rateLimited); diff != "" {
		t.Errorf("429 body (-got +want):\n%s", diff)
	}
	if r := e.importBody([]byte(ev)); r.code != http.StatusTooManyRequests {
		t.Errorf("import over the minute's bytes = %d, want 429", r.code)
	}
	if n := len(e.fake.Updates()); n != 1 {
		t.Errorf("updates applied = %d, want 1 (the refused one not applied)", n)
	}
	// A minute after the first body, it has left the window.
	e.clock.Advance(31 * time.Second)
	if r := e.importBody([]byte(ev)); r.code != 200 {
		t.Errorf("import after the window rolled = %d %s, want 200", r.code, r.body)
	}
}
