package mpdirect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/mptest"
	"github.com/cebulk/cebulk/internal/secrets"
	"github.com/cebulk/cebulk/pkg/ce"
	"github.com/cebulk/cebulk/pkg/mixpanel"
)

// exportSecrets is a secret source whose Refresh moves on to the next
// secret of a list (the last one stays), counting the reads.
type exportSecrets struct {
	mu        sync.Mutex
	list      []secrets.Secret
	refreshes int
}

func (s *exportSecrets) Get(context.Context) (secrets.Secret, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.list[0], nil
}

func (s *exportSecrets) Refresh(context.Context) (secrets.Secret, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refreshes++
	if len(s.list) > 1 {
		s.list = s.list[1:]
	}
	return s.list[0], nil
}

// exportSecret is the service account of a default mptest project.
func exportSecret() secrets.Secret {
	return secrets.Secret{ServiceAccountUser: mptest.DefaultUsername, ServiceAccountSecret: mptest.DefaultSecret,
		ProjectID: mptest.DefaultProjectID, ProjectToken: mptest.DefaultToken}
}

// exportDays is the week the emulated project has events in.
var exportDays = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

// newExportsOn returns the export backend on a new emulator holding 400
// events a day for a week from exportDays and profiles profiles, with the
// given secrets (the emulator's own by default) and fast retries.
func newExportsOn(t *testing.T, profiles int, list ...secrets.Secret) (*Exports, *mptest.Fake, *exportSecrets) {
	t.Helper()
	srv, fake := mptest.NewServer(t, mptest.Options{ExportPerHour: -1, QueryPerHour: -1})
	fake.SetGenerator(mptest.SampleEvents(3, 400, 50, exportDays, exportDays.AddDate(0, 0, 7)))
	if profiles > 0 {
		fake.SeedProfiles(mptest.SampleProfiles(3, profiles))
	}
	if len(list) == 0 {
		list = []secrets.Secret{exportSecret()}
	}
	src := &exportSecrets{list: list}
	c := NewClient(src, mixpanel.WithBaseURL(srv.URL), mixpanel.WithRetry(1, time.Millisecond, time.Millisecond), mixpanel.WithRetryJitter(0, 0))
	return NewExports(c), fake, src
}

// servedExport is what the emulator's export answers for from_date..to_date,
// asked of it directly.
func servedExport(t *testing.T, fake *mptest.Fake, from, to string) string {
	t.Helper()
	q := url.Values{"project_id": {mptest.DefaultProjectID}, "from_date": {from}, "to_date": {to}}
	req := httptest.NewRequest(http.MethodGet, "/api/2.0/export?"+q.Encode(), nil)
	req.SetBasicAuth(mptest.DefaultUsername, mptest.DefaultSecret)
	rec := httptest.NewRecorder()
	fake.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Body.Len() == 0 {
		t.Fatalf("export %s..%s: %d %s", from, to, rec.Code, rec.Body)
	}
	return rec.Body.String()
}

func startJob(t *testing.T, x *Exports, q ce.QueryRequest) *ce.Job {
	t.Helper()
	j, err := x.StartQuery(t.Context(), q)
	if err != nil {
		t.Fatalf("StartQuery(%+v): %v", q, err)
	}
	return j
}

func downloadAll(t *testing.T, x *Exports, id, object string, opts ...ce.DownloadOption) string {
	t.Helper()
	body, err := x.Download(t.Context(), id, object, opts...)
	if err != nil {
		t.Fatalf("Download(%s): %v", id, err)
	}
	defer body.Close()
	b, err := io.ReadAll(body)
	if err != nil {
		t.Fatalf("read download of %s: %v", id, err)
	}
	return string(b)
}

// exportDates are the from_date..to_date of each export request.
func exportDates(fake *mptest.Fake) []string {
	var out []string
	for _, r := range fake.Requests(mptest.RouteExport) {
		out = append(out, r.Query.Get("from_date")+".."+r.Query.Get("to_date"))
	}
	return out
}

func TestStartQuery(t *testing.T) {
	x, fake, _ := newExportsOn(t, 0)
	day := exportDays.AddDate(0, 0, 2)
	for _, tc := range []struct {
		name    string
		q       ce.QueryRequest
		wantErr string
	}{
		{name: "day", q: ce.QueryRequest{Object: "activities", From: day, To: day.AddDate(0, 0, 1)}},
		{name: "snapshot", q: ce.QueryRequest{Object: "users"}},
		{name: "callback ignored", q: ce.QueryRequest{Object: "users", CallbackURL: "https://example.com/cb"}},
		{name: "CEQL", q: ce.QueryRequest{Object: "activities", From: day, To: day.AddDate(0, 0, 1), Query: "select * from activities"}, wantErr: "CEQL"},
		{name: "no window", q: ce.QueryRequest{Object: "activities"}, wantErr: "need a window"},
		{name: "empty window", q: ce.QueryRequest{Object: "activities", From: day, To: day}, wantErr: "need a window"},
		{name: "unknown object", q: ce.QueryRequest{Object: "contacts"}, wantErr: "unknown object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, err := x.StartQuery(t.Context(), tc.q)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("StartQuery = %+v, %v; want an error about %q", j, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if j.Status != ce.StatusCompleted || j.ObjectName != tc.q.Object || !strings.HasPrefix(j.ID, "mp-"+tc.q.Object+"-") {
				t.Errorf("StartQuery = %+v, want a COMPLETED %s job", j, tc.q.Object)
			}
			again := startJob(t, x, tc.q)
			if again.ID == j.ID {
				t.Errorf("two starts of %+v share the id %s: the attempts would share a part", tc.q, j.ID)
			}
			st, err := x.Status(t.Context(), j.ID)
			if err != nil || st.Status != ce.StatusCompleted || st.ObjectName != tc.q.Object || st.RecordsCount != 0 {
				t.Errorf("Status(%s) = %+v, %v; want COMPLETED, no count", j.ID, st, err)
			}
		})
	}
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("starting and reading jobs sent %d requests to Mixpanel, want none", n)
	}
}

func TestUnknownJobs(t *testing.T) {
	x, fake, _ := newExportsOn(t, 0)
	day := exportDays.AddDate(0, 0, 1)
	users := startJob(t, x, ce.QueryRequest{Object: "users"})
	acts := startJob(t, x, ce.QueryRequest{Object: "activities", From: day, To: day.AddDate(0, 0, 1)})
	for _, tc := range []struct{ id, object string }{
		{"1234", "activities"}, // a CE job id, from before a switch
		{"mp-activities-100-50-abcd", "activities"},
		{"mp-activities-x-100-abcd", "activities"},
		{"mp-users", "users"},
		{"mp-contacts-abcd", "contacts"},
		{users.ID, "activities"},
		{acts.ID, "users"},
	} {
		if _, err := x.Download(t.Context(), tc.id, tc.object); !errors.Is(err, ce.ErrNotFound) {
			t.Errorf("Download(%q, %s) error = %v, want ce.ErrNotFound", tc.id, tc.object, err)
		}
	}
	for _, id := range []string{"1234", "mp-activities-100-50-abcd", "mp-users", "mp-contacts-abcd"} {
		if _, err := x.Status(t.Context(), id); !errors.Is(err, ce.ErrNotFound) {
			t.Errorf("Status(%q) error = %v, want ce.ErrNotFound", id, err)
		}
	}
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("unknown jobs sent %d requests to Mixpanel, want none", n)
	}
}

func TestDownloadActivities(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	d := exportDays.AddDate(0, 0, 3)
	nyDay := time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, ny)
	for _, tc := range []struct {
		name     string
		from, to time.Time
		dates    string // from_date..to_date asked
	}{
		{"UTC day", d, d.AddDate(0, 0, 1), "2026-11-23..2026-11-23"},
		{"two UTC days", d, d.AddDate(0, 0, 2), "2026-11-23..2026-11-24"},
		// A New York day spans two UTC dates; the exporter drops what is
		// outside the window.
		{"New York day", nyDay, nyDay.AddDate(0, 0, 1), "2026-11-23..2026-11-24"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, fake, _ := newExportsOn(t, 0)
			j := startJob(t, x, ce.QueryRequest{Object: "activities", From: tc.from, To: tc.to})
			got := downloadAll(t, x, j.ID, "activities")
			if diff := cmp.Diff([]string{tc.dates}, exportDates(fake)); diff != "" {
				t.Fatalf("exports asked (-want +got):\n%s", diff)
			}
			from, to, _ := strings.Cut(tc.dates, "..")
			if want := servedExport(t, fake, from, to); got != want {
				t.Errorf("download: %d bytes, want the %d bytes the export serves", len(got), len(want))
			}
		})
	}
}

// recordEnds are the offsets just after each record of a JSON-lines
// stream, as ce.Position gives them.
func recordEnds(stream string) []int64 {
	var out []int64
	for i := range len(stream) {
		if stream[i] == '\n' {
			out = append(out, int64(i))
		}
	}
	return out
}

// A collect resumed at a checkpoint exports again and skips what it
// already has: the bytes from the offset on are the export's, and the
// range is reported as not served.
func TestDownloadFromOffset(t *testing.T) {
	x, fake, _ := newExportsOn(t, 1500)
	d := exportDays.AddDate(0, 0, 4)
	acts := startJob(t, x, ce.QueryRequest{Object: "activities", From: d, To: d.AddDate(0, 0, 1)})
	users := startJob(t, x, ce.QueryRequest{Object: "users"})
	for _, j := range []*ce.Job{acts, users} {
		t.Run(j.ObjectName, func(t *testing.T) {
			full := downloadAll(t, x, j.ID, j.ObjectName)
			ends := recordEnds(full)
			for _, off := range []int64{ends[0], ends[len(ends)/3], ends[len(ends)-1]} {
				rng := ce.RangeResult{Ranged: true}
				got := downloadAll(t, x, j.ID, j.ObjectName, ce.WithOffset(off, &rng))
				if got != full[off:] || rng.Ranged {
					t.Errorf("from %d: %d bytes (ranged %v), want the last %d bytes, not ranged", off, len(got), rng.Ranged, len(full)-int(off))
				}
			}
		})
	}
	if n := fake.Count(mptest.RouteExport); n != 4 {
		t.Errorf("exports = %d, want 4 (each download exports again)", n)
	}
}

// An export run again that ends before the offset is not the export the
// offset was taken in (events deleted since): the job's result is gone
// (ce.ErrNotFound), and the exporter starts the window again. A cut while
// skipping is a transient failure, and an export that grew is served from
// the offset (the exporter checks the record before its checkpoint).
func TestDownloadFromOffsetOfAnotherExport(t *testing.T) {
	x, fake, _ := newExportsOn(t, 0)
	d := exportDays.AddDate(0, 0, 4)
	j := startJob(t, x, ce.QueryRequest{Object: "activities", From: d, To: d.AddDate(0, 0, 1)})
	full := downloadAll(t, x, j.ID, "activities")
	ends := recordEnds(full)
	mid := ends[len(ends)/2]

	_, err := x.Download(t.Context(), j.ID, "activities", ce.WithOffset(int64(len(full))+10, nil))
	if !errors.Is(err, ce.ErrNotFound) || !errors.Is(err, errChanged) {
		t.Errorf("Download past the end: error %v, want the export changed (ce.ErrNotFound)", err)
	}
	fake.CutNextExport(mid / 2)
	if _, err := x.Download(t.Context(), j.ID, "activities", ce.WithOffset(mid, nil)); err == nil || errors.Is(err, ce.ErrNotFound) {
		t.Errorf("Download cut while skipping: error %v, want a read error that is not ce.ErrNotFound", err)
	}
	// The day's events before 18:00 deleted.
	gen := mptest.SampleEvents(3, 400, 50, exportDays, exportDays.AddDate(0, 0, 7))
	fake.SetGenerator(func(from, to time.Time, yield func(mptest.Event) bool) {
		if evening := d.Add(18 * time.Hour); from.Before(evening) {
			from = evening
		}
		gen(from, to, yield)
	})
	if _, err := x.Download(t.Context(), j.ID, "activities", ce.WithOffset(mid, nil)); !errors.Is(err, ce.ErrNotFound) {
		t.Errorf("Download after deletions: error %v, want ce.ErrNotFound", err)
	}
	fake.SetGenerator(gen)
	if got := downloadAll(t, x, j.ID, "activities", ce.WithOffset(mid, nil)); got != full[mid:] {
		t.Errorf("Download from %d of the same export again: %d bytes, want %d", mid, len(got), len(full)-int(mid))
	}
}

// A snapshot is every profile once, one JSON line each, in the engage
// query's shape, paged 1000 at a time.
func TestDownloadUsers(t *testing.T) {
	const n = 2300
	x, fake, _ := newExportsOn(t, n)
	j := startJob(t, x, ce.QueryRequest{Object: "users"})
	got := downloadAll(t, x, j.ID, "users")
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	profiles := map[string]map[string]any{}
	for _, l := range lines {
		var p struct {
			ID    string         `json:"$distinct_id"`
			Props map[string]any `json:"$properties"`
		}
		if err := json.Unmarshal([]byte(l), &p); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if _, dup := profiles[p.ID]; dup {
			t.Errorf("profile %s twice", p.ID)
		}
		profiles[p.ID] = p.Props
	}
	if diff := cmp.Diff(fake.Profiles(), profiles); diff != "" || len(lines) != n {
		t.Errorf("%d lines; profiles (-project +download):\n%s", len(lines), diff)
	}
	if pages := fake.Count(mptest.RouteEngageQuery); pages != 3 {
		t.Errorf("engage queries = %d, want 3 pages", pages)
	}

	// No profiles: an empty snapshot, not an error.
	empty, _, _ := newExportsOn(t, 0)
	if got := downloadAll(t, empty, startJob(t, empty, ce.QueryRequest{Object: "users"}).ID, "users"); got != "" {
		t.Errorf("snapshot of no profiles = %q", got)
	}
}

// A refusal of the export or of the first engage page is an error of
// Download; a stream cut later is an error of the read.
func TestDownloadFailures(t *testing.T) {
	d := exportDays.AddDate(0, 0, 5)
	day := ce.QueryRequest{Object: "activities", From: d, To: d.AddDate(0, 0, 1)}
	t.Run("export refused", func(t *testing.T) {
		x, fake, _ := newExportsOn(t, 0)
		fake.Fail(mptest.RouteExport, mptest.Fault{Status: http.StatusTooManyRequests, Times: 2})
		if _, err := x.Download(t.Context(), startJob(t, x, day).ID, "activities"); !errors.Is(err, mixpanel.ErrRateLimited) {
			t.Errorf("error %v, want mixpanel.ErrRateLimited", err)
		}
	})
	t.Run("snapshot refused", func(t *testing.T) {
		x, fake, _ := newExportsOn(t, 10)
		fake.Fail(mptest.RouteEngageQuery, mptest.Fault{Status: http.StatusTooManyRequests, Times: 2})
		if _, err := x.Download(t.Context(), startJob(t, x, ce.QueryRequest{Object: "users"}).ID, "users"); !errors.Is(err, mixpanel.ErrRateLimited) {
			t.Errorf("error %v, want mixpanel.ErrRateLimited", err)
		}
	})
	t.Run("export cut", func(t *testing.T) {
		x, fake, _ := newExportsOn(t, 0)
		fake.CutNextExport(10 << 10)
		body, err := x.Download(t.Context(), startJob(t, x, day).ID, "activities")
		if err != nil {
			t.Fatal(err)
		}
		defer body.Close()
		n, err := io.Copy(io.Discard, body)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("read %d bytes, error %v; want io.ErrUnexpectedEOF", n, err)
		}
	})
	t.Run("throttled once", func(t *testing.T) {
		x, fake, _ := newExportsOn(t, 0)
		fake.FailNext(mptest.RouteExport, http.StatusTooManyRequests, "0")
		got := downloadAll(t, x, startJob(t, x, day).ID, "activities")
		if want := servedExport(t, fake, "2026-11-25", "2026-11-25"); got != want {
			t.Errorf("download after a 429: %d bytes, want %d", len(got), len(want))
		}
	})
}

// A 401 re-reads the secret once: a rotated service account is used at
// once, an unchanged one is not tried again.
func TestDownloadRotatedSecret(t *testing.T) {
	stale := exportSecret()
	stale.ServiceAccountSecret = "the-secret-before-rotation"
	d := exportDays.AddDate(0, 0, 6)
	day := ce.QueryRequest{Object: "activities", From: d, To: d.AddDate(0, 0, 1)}
	for _, tc := range []struct {
		name    string
		list    []secrets.Secret
		wantErr error
		exports []int
	}{
		{"rotated", []secrets.Secret{stale, exportSecret()}, nil, []int{401, 200}},
		{"not rotated", []secrets.Secret{stale}, mixpanel.ErrUnauthorized, []int{401}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, fake, src := newExportsOn(t, 0, tc.list...)
			body, err := x.Download(t.Context(), startJob(t, x, day).ID, "activities")
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Download error %v, want %v", err, tc.wantErr)
			}
			if err == nil {
				b, _ := io.ReadAll(body)
				body.Close()
				if !bytes.Contains(b, []byte(`"$insert_id"`)) {
					t.Errorf("download after the rotation: %.80q", b)
				}
			} else if strings.Contains(err.Error(), stale.ServiceAccountSecret) {
				t.Errorf("error %q names the secret", err)
			}
			var got []int
			for _, r := range fake.Requests(mptest.RouteExport) {
				got = append(got, r.Status)
			}
			if !slices.Equal(got, tc.exports) || src.refreshes != 1 {
				t.Errorf("exports %v after %d refreshes, want %v after 1", got, src.refreshes, tc.exports)
			}
		})
	}
}
