package mixpanel_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cebulk/cebulk/internal/mptest"
	"github.com/cebulk/cebulk/pkg/mixpanel"
	"github.com/google/go-cmp/cmp"
)

// These flow tests run the client against the Mixpanel emulator
// (internal/mptest), which shares no code with the client: they catch drift
// between the client's reading of Mixpanel's documents and the emulator's.

var emuCreds = mixpanel.Credentials{
	ServiceAccountUser:   mptest.DefaultUsername,
	ServiceAccountSecret: mptest.DefaultSecret,
	ProjectID:            mptest.DefaultProjectID,
	ProjectToken:         mptest.DefaultToken,
}

// emulator starts an emulator and a client for it with short real retry
// waits.
func emulator(t *testing.T, opts mptest.Options, copts ...mixpanel.Option) (*mixpanel.Client, *mptest.Fake) {
	t.Helper()
	srv, f := mptest.NewServer(t, opts)
	c, err := mixpanel.NewClient(emuCreds, append([]mixpanel.Option{
		mixpanel.WithBaseURL(srv.URL),
		mixpanel.WithRetry(3, time.Millisecond, 20*time.Millisecond),
		mixpanel.WithRetryJitter(0, time.Millisecond),
	}, copts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c, f
}

func utcDay(s string) time.Time {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		panic(err)
	}
	return t
}

// exportAll reads every event of an export.
func exportAll(t *testing.T, c *mixpanel.Client, req mixpanel.ExportRequest) ([]json.RawMessage, error) {
	t.Helper()
	body, err := c.Export(t.Context(), req)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	rr := mixpanel.NewRecordReader(body, 0)
	var out []json.RawMessage
	for {
		rec, err := rr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, rec)
	}
}

type exported struct {
	Event      string `json:"event"`
	Properties struct {
		Time       int64  `json:"time"`
		DistinctID string `json:"distinct_id"`
		InsertID   string `json:"$insert_id"`
	} `json:"properties"`
}

func TestFlowExportInclusiveDays(t *testing.T) {
	c, f := emulator(t, mptest.Options{})
	f.SetGenerator(mptest.SampleEvents(7, 500, 100, utcDay("2026-11-20"), utcDay("2026-11-28")))
	events, err := exportAll(t, c, mixpanel.ExportRequest{From: utcDay("2026-11-22"), To: utcDay("2026-11-24")})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 3*500 {
		t.Errorf("exported %d events, want %d (three inclusive days)", len(events), 3*500)
	}
	lo, hi := utcDay("2026-11-22").Unix(), utcDay("2026-11-25").Unix()
	seen := map[string]bool{}
	for _, raw := range events {
		var e exported
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		if e.Properties.Time < lo || e.Properties.Time >= hi {
			t.Fatalf("event at %d outside the three days", e.Properties.Time)
		}
		seen[e.Properties.InsertID] = true
	}
	if len(seen) != len(events) {
		t.Errorf("%d distinct $insert_id in %d events", len(seen), len(events))
	}
	reqs := f.Requests(mptest.RouteExport)
	if len(reqs) != 1 || reqs[0].AcceptEncoding != "gzip" || reqs[0].Query.Get("project_id") != mptest.DefaultProjectID {
		t.Errorf("export requests = %+v, want one asking for gzip with the project id", reqs)
	}
}

func TestFlowExportFaults(t *testing.T) {
	t.Run("429 with Retry-After then the export", func(t *testing.T) {
		c, f := emulator(t, mptest.Options{})
		f.SetGenerator(mptest.SampleEvents(1, 50, 10, utcDay("2026-11-20"), utcDay("2026-11-28")))
		f.FailNext(mptest.RouteExport, 429, "1")
		events, err := exportAll(t, c, mixpanel.ExportRequest{From: utcDay("2026-11-22"), To: utcDay("2026-11-22")})
		if err != nil || len(events) != 50 {
			t.Fatalf("exported %d events, err %v; want 50", len(events), err)
		}
		if n := f.Count(mptest.RouteExport); n != 2 {
			t.Errorf("export requests = %d, want 2", n)
		}
	})
	t.Run("cut mid-stream", func(t *testing.T) {
		c, f := emulator(t, mptest.Options{})
		f.SetGenerator(mptest.SampleEvents(1, 2000, 10, utcDay("2026-11-20"), utcDay("2026-11-28")))
		f.CutNextExport(50_000)
		events, err := exportAll(t, c, mixpanel.ExportRequest{From: utcDay("2026-11-22"), To: utcDay("2026-11-22")})
		var derr *mixpanel.DecodeError
		if !errors.As(err, &derr) {
			t.Fatalf("err = %v after %d events, want a *DecodeError", err, len(events))
		}
		if len(events) == 0 || len(events) >= 2000 {
			t.Errorf("read %d events before the cut", len(events))
		}
	})
	t.Run("hourly limit", func(t *testing.T) {
		c, _ := emulator(t, mptest.Options{ExportPerHour: 1}, mixpanel.WithRetry(0, 0, 0))
		req := mixpanel.ExportRequest{From: utcDay("2026-11-22"), To: utcDay("2026-11-22")}
		if _, err := exportAll(t, c, req); err != nil {
			t.Fatal(err)
		}
		if _, err := exportAll(t, c, req); !errors.Is(err, mixpanel.ErrRateLimited) {
			t.Errorf("second export err = %v, want ErrRateLimited", err)
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		srv, _ := mptest.NewServer(t, mptest.Options{})
		creds := emuCreds
		creds.ServiceAccountSecret = "not-the-secret"
		c, err := mixpanel.NewClient(creds, mixpanel.WithBaseURL(srv.URL))
		if err != nil {
			t.Fatal(err)
		}
		_, err = exportAll(t, c, mixpanel.ExportRequest{From: utcDay("2026-11-22"), To: utcDay("2026-11-22")})
		if !errors.Is(err, mixpanel.ErrUnauthorized) || strings.Contains(err.Error(), "not-the-secret") {
			t.Errorf("err = %v, want ErrUnauthorized without the secret", err)
		}
	})
}

func TestFlowProfiles(t *testing.T) {
	c, f := emulator(t, mptest.Options{})
	f.SeedProfiles(mptest.SampleProfiles(3, 2500))
	seen := map[string]bool{}
	for rec, err := range c.Profiles(t.Context(), mixpanel.ProfileQuery{}) {
		if err != nil {
			t.Fatal(err)
		}
		var p struct {
			ID json.RawMessage `json:"$distinct_id"`
		}
		if err := json.Unmarshal(rec, &p); err != nil {
			t.Fatal(err)
		}
		seen[string(p.ID)] = true
	}
	if len(seen) != 2500 {
		t.Errorf("distinct profiles = %d, want 2500", len(seen))
	}
	if n := f.Count(mptest.RouteEngageQuery); n != 3 {
		t.Errorf("engage queries = %d, want 3 pages", n)
	}
}

// clock is a settable emulator clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestFlowProfilesSessionExpiry(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)}
	c, f := emulator(t, mptest.Options{Now: clk.now, PageSize: 10, SessionTTL: time.Minute})
	f.SeedProfiles(mptest.SampleProfiles(3, 25))
	var n int
	var err error
	for _, e := range c.Profiles(t.Context(), mixpanel.ProfileQuery{}) {
		if e != nil {
			err = e
			break
		}
		n++
		if n == 10 {
			clk.add(2 * time.Minute) // the reader stalls past the session's life
		}
	}
	var pe *mixpanel.PageError
	if !errors.Is(err, mixpanel.ErrSessionExpired) || !errors.As(err, &pe) || pe.Page != 1 || pe.Yielded != 10 {
		t.Fatalf("err = %v after %d profiles, want ErrSessionExpired on page 1 after 10", err, n)
	}
}

// mixed returns n events of which those at bad positions break one
// /import rule each, and the positions of the bad ones.
func mixed(n int, base time.Time) ([]json.RawMessage, map[int64]string) {
	breaks := []struct{ field, props string }{
		{"properties.time", `"time":10,"distinct_id":"u%[1]d","$insert_id":"bad-time-%[2]d"`},
		{"properties.distinct_id", `"time":%[3]d,"distinct_id":"anon","$insert_id":"bad-user-%[2]d"`},
		{"properties.$insert_id", `"time":%[3]d,"distinct_id":"u%[1]d","$insert_id":"not/valid/%[2]d"`},
	}
	var out []json.RawMessage
	bad := map[int64]string{}
	for i := range n {
		ts := base.Unix() + int64(i)
		if i%97 == 5 {
			b := breaks[i%len(breaks)]
			out = append(out, json.RawMessage(fmt.Sprintf(`{"event":"e","properties":{`+b.props+`}}`, i, i, ts)))
			bad[int64(i+1)] = b.field
			continue
		}
		out = append(out, json.RawMessage(fmt.Sprintf(`{"event":"e","properties":{"time":%d,"distinct_id":"u%d","$insert_id":"ok-%d"}}`, ts, i%50, i)))
	}
	return out, bad
}

func records(data []json.RawMessage) iter.Seq2[mixpanel.Record, error] {
	return func(yield func(mixpanel.Record, error) bool) {
		for i, d := range data {
			if !yield(mixpanel.Record{Pos: int64(i + 1), Data: d}, nil) {
				return
			}
		}
	}
}

func TestFlowImportMixedQuality(t *testing.T) {
	for _, key := range []string{"$insert_id", "insert_id"} {
		t.Run(key, func(t *testing.T) {
			now := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
			c, f := emulator(t, mptest.Options{InsertIDKey: key, Now: func() time.Time { return now }}, mixpanel.WithConcurrency(4))
			data, bad := mixed(5000, now.Add(-72*time.Hour))
			sum, err := c.Import(t.Context(), records(data), mixpanel.IngestOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got := map[int64]string{}
			for _, fr := range sum.Failures {
				got[fr.Pos] = fr.Field
				if fr.InsertID == "" {
					t.Errorf("failure at %d names no insert id", fr.Pos)
				}
			}
			if diff := cmp.Diff(got, bad); diff != "" {
				t.Errorf("refused positions and fields (-got +want):\n%s", diff)
			}
			valid := int64(len(data) - len(bad))
			if sum.Imported != valid || sum.Records != int64(len(data)) || sum.Batches != 3 {
				t.Errorf("summary = %d batches, %d records, %d imported; want 3, %d, %d", sum.Batches, sum.Records, sum.Imported, len(data), valid)
			}
			if n := int64(len(f.Imported())); n != valid {
				t.Errorf("emulator stored %d events, want %d", n, valid)
			}
			for _, r := range f.Requests(mptest.RouteImport) {
				if r.ContentEncoding != "gzip" || r.Query.Get("strict") != "1" {
					t.Errorf("import request %+v: want gzip and strict=1", r)
				}
			}
			// Sending everything again is harmless: Mixpanel dedupes on $insert_id.
			if _, err := c.Import(t.Context(), records(data), mixpanel.IngestOptions{}); err != nil {
				t.Fatal(err)
			}
			if n := int64(len(f.Imported())); n != valid {
				t.Errorf("after a resend the emulator holds %d events, want %d", n, valid)
			}
		})
	}
}

func TestFlowImportFaults(t *testing.T) {
	now := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	data, _ := mixed(10, now.Add(-time.Hour))
	data = data[:5] // all valid
	t.Run("429s then accepted", func(t *testing.T) {
		c, f := emulator(t, mptest.Options{Now: func() time.Time { return now }})
		f.Fail(mptest.RouteImport, mptest.Fault{Status: 429, Times: 2})
		sum, err := c.Import(t.Context(), records(data), mixpanel.IngestOptions{})
		if err != nil || sum.Imported != 5 {
			t.Fatalf("summary %+v, err %v", sum, err)
		}
		if n := f.Count(mptest.RouteImport); n != 3 {
			t.Errorf("import requests = %d, want 3", n)
		}
	})
	t.Run("413", func(t *testing.T) {
		c, _ := emulator(t, mptest.Options{Now: func() time.Time { return now }, MaxImportBytes: 200})
		_, err := c.Import(t.Context(), records(data), mixpanel.IngestOptions{})
		var be *mixpanel.BatchError
		if !errors.Is(err, mixpanel.ErrTooLarge) || !errors.As(err, &be) || be.First != 1 || be.Last != 5 {
			t.Errorf("err = %v, want a *BatchError for 1..5 matching ErrTooLarge", err)
		}
	})
}

func TestFlowUpdateProfiles(t *testing.T) {
	c, f := emulator(t, mptest.Options{})
	updates := []json.RawMessage{
		json.RawMessage(`{"$distinct_id":"13793","$set":{"plan":"pro","$email":"a@example.com"}}`),
		json.RawMessage(`{"$distinct_id":"13793","$add":{"logins":2}}`),
		json.RawMessage(`{"$distinct_id":"13794","$add":{"logins":"many"}}`),
		json.RawMessage(`{"$distinct_id":"13794","$set_once":{"first":"2026-12-01"}}`),
	}
	sum, err := c.UpdateProfiles(t.Context(), records(updates), mixpanel.IngestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Failures) != 1 || sum.Failures[0].Pos != 3 || sum.Imported != 3 {
		t.Errorf("summary %+v; want the non-numeric $add at position 3 refused and 3 applied", sum)
	}
	profiles := f.Profiles()
	if profiles["13793"]["plan"] != "pro" || profiles["13793"]["logins"] != 2.0 || profiles["13794"]["first"] != "2026-12-01" {
		t.Errorf("profiles = %v", profiles)
	}
	for _, r := range f.Requests(mptest.RouteEngage) {
		if r.ContentEncoding != "" {
			t.Errorf("/engage request with Content-Encoding %q", r.ContentEncoding)
		}
	}
}

func TestFlowUpdateProfilesNotResent(t *testing.T) {
	add := records([]json.RawMessage{json.RawMessage(`{"$distinct_id":"13793","$add":{"logins":1}}`)})
	t.Run("502 is an unknown outcome", func(t *testing.T) {
		c, f := emulator(t, mptest.Options{})
		f.FailNext(mptest.RouteEngage, 502, "")
		_, err := c.UpdateProfiles(t.Context(), add, mixpanel.IngestOptions{})
		var unknown *mixpanel.UnknownOutcomeError
		if !errors.As(err, &unknown) {
			t.Fatalf("err = %v, want an *UnknownOutcomeError", err)
		}
		if n := f.Count(mptest.RouteEngage); n != 1 {
			t.Errorf("engage requests = %d, want 1 (never resent)", n)
		}
	})
	t.Run("timeout after the body went", func(t *testing.T) {
		c, f := emulator(t, mptest.Options{})
		f.Fail(mptest.RouteEngage, mptest.Fault{Delay: time.Minute})
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		_, err := c.UpdateProfiles(ctx, add, mixpanel.IngestOptions{})
		var unknown *mixpanel.UnknownOutcomeError
		if !errors.As(err, &unknown) {
			t.Fatalf("err = %v, want an *UnknownOutcomeError", err)
		}
		if n := f.Count(mptest.RouteEngage); n != 1 {
			t.Errorf("engage requests = %d, want 1", n)
		}
	})
	t.Run("429 is a refusal: resent once, applied once", func(t *testing.T) {
		c, f := emulator(t, mptest.Options{})
		f.FailNext(mptest.RouteEngage, 429, "")
		if _, err := c.UpdateProfiles(t.Context(), add, mixpanel.IngestOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := f.Profiles()["13793"]["logins"]; got != 1.0 {
			t.Errorf("logins = %v, want 1", got)
		}
	})
}

func TestFlowImportThenExport(t *testing.T) {
	now := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	c, _ := emulator(t, mptest.Options{Now: func() time.Time { return now }})
	day := utcDay("2026-11-30")
	var data []json.RawMessage
	for i := range 300 {
		data = append(data, json.RawMessage(fmt.Sprintf(`{"event":"e","properties":{"time":%d,"distinct_id":"u%d","$insert_id":"rt-%d"}}`, day.Unix()+int64(i*60), i%7, i)))
	}
	if _, err := c.Import(t.Context(), records(data), mixpanel.IngestOptions{}); err != nil {
		t.Fatal(err)
	}
	events, err := exportAll(t, c, mixpanel.ExportRequest{From: day, To: day})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, raw := range events {
		var e exported
		json.Unmarshal(raw, &e)
		got[e.Properties.InsertID] = true
	}
	if len(got) != 300 || len(events) != 300 {
		t.Errorf("exported %d events (%d distinct), want the 300 imported", len(events), len(got))
	}
}

// BenchmarkFlowImport imports 100,000 valid events into the emulator (which
// validates every event as Mixpanel documents it, then discards it): the
// client and the counterparty together on this machine.
func BenchmarkFlowImport(b *testing.B) {
	now := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	srv, _ := mptest.NewServer(b, mptest.Options{Now: func() time.Time { return now }, DiscardImports: true})
	c, err := mixpanel.NewClient(emuCreds, mixpanel.WithBaseURL(srv.URL))
	if err != nil {
		b.Fatal(err)
	}
	const n = 100_000
	data := make([]json.RawMessage, n)
	var size int64
	for i := range data {
		data[i] = json.RawMessage(fmt.Sprintf(`{"event":"Purchase","properties":{"time":%d,"distinct_id":"user-%d","$insert_id":"4f1c9c1e-%012d","plan":"pro","Amount":%d.5}}`, now.Unix()-int64(i), i%5000, i, i%100))
		size += int64(len(data[i]))
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		sum, err := c.Import(b.Context(), records(data), mixpanel.IngestOptions{})
		if err != nil || sum.Imported != n {
			b.Fatalf("Import = %+v, %v", sum, err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
}

// inMemory returns an emulator and a client with the default retry policy
// that reaches it in memory, for synctest bubbles.
func inMemory(t *testing.T) (*mixpanel.Client, *mptest.Fake) {
	f := mptest.NewFake(mptest.Options{})
	c, err := mixpanel.NewClient(emuCreds, mixpanel.WithBaseURL(mptest.InMemoryBaseURL),
		mixpanel.WithHTTPClient(&http.Client{Transport: f.Transport()}))
	if err != nil {
		t.Fatal(err)
	}
	return c, f
}

// TestFlowDefaultRetriesInSynctest runs the client with its default retry
// policy (2s doubling to 60s plus 1s to 5s of jitter, 6 retries) against
// the emulator in memory inside a synctest bubble, so that the real waits
// cost no real time.
func TestFlowDefaultRetriesInSynctest(t *testing.T) {
	tests := []struct {
		name         string
		fault        mptest.Fault
		wantRequests int
		wantStatus   int // 0: success
		lo, hi       time.Duration
	}{
		{"three 429s", mptest.Fault{Status: 429, Times: 3}, 4, 0, 2*time.Second + 4*time.Second + 8*time.Second + 3*time.Second, 14*time.Second + 15*time.Second},
		{"429 with Retry-After 30", mptest.Fault{Status: 429, RetryAfter: "30", Times: 1}, 2, 0, 31 * time.Second, 35 * time.Second},
		{"Retry-After over the cap", mptest.Fault{Status: 503, RetryAfter: "3600", Times: 1}, 2, 0, 61 * time.Second, 65 * time.Second},
		{"503 until the retries are spent", mptest.Fault{Status: 503, Times: 10}, 7, 503, 122*time.Second + 6*time.Second, 122*time.Second + 30*time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c, f := inMemory(t)
				f.Fail(mptest.RouteImport, tt.fault)
				ts := time.Now().Add(-time.Hour).Unix()
				data := []json.RawMessage{json.RawMessage(fmt.Sprintf(`{"event":"e","properties":{"time":%d,"distinct_id":"u1","$insert_id":"st-1"}}`, ts))}
				began := time.Now()
				sum, err := c.Import(t.Context(), records(data), mixpanel.IngestOptions{})
				waited := time.Since(began)
				if tt.wantStatus == 0 && (err != nil || sum.Imported != 1) {
					t.Fatalf("summary %+v, err %v", sum, err)
				}
				var apiErr *mixpanel.APIError
				if tt.wantStatus != 0 && (!errors.As(err, &apiErr) || apiErr.StatusCode != tt.wantStatus) {
					t.Fatalf("err = %v, want status %d", err, tt.wantStatus)
				}
				if n := f.Count(mptest.RouteImport); n != tt.wantRequests {
					t.Errorf("requests = %d, want %d", n, tt.wantRequests)
				}
				if waited < tt.lo || waited > tt.hi {
					t.Errorf("waited %v of bubble time, want between %v and %v", waited, tt.lo, tt.hi)
				}
			})
		})
	}
}

// TestFlowProfileTimeoutInSynctest: through a transport that reports no
// write progress (the emulator's in-memory one), a profile batch held past
// the caller's deadline is still an unknown outcome, never resent.
func TestFlowProfileTimeoutInSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, f := inMemory(t)
		f.Fail(mptest.RouteEngage, mptest.Fault{Delay: time.Hour})
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		_, err := c.UpdateProfiles(ctx, records([]json.RawMessage{json.RawMessage(`{"$distinct_id":"a","$add":{"n":1}}`)}), mixpanel.IngestOptions{})
		var unknown *mixpanel.UnknownOutcomeError
		if !errors.As(err, &unknown) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want an *UnknownOutcomeError wrapping the deadline", err)
		}
		if n := f.Count(mptest.RouteEngage); n != 1 {
			t.Errorf("engage requests = %d, want 1", n)
		}
	})
}
