package exporter

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/mpdirect"
	"github.com/cebulk/cebulk/internal/mptest"
	"github.com/cebulk/cebulk/internal/secrets"
	"github.com/cebulk/cebulk/pkg/mixpanel"
)

// mpSecret is the Mixpanel emulator's service account.
type mpSecret struct{}

func (mpSecret) Get(context.Context) (secrets.Secret, error) {
	return secrets.Secret{ServiceAccountUser: mptest.DefaultUsername, ServiceAccountSecret: mptest.DefaultSecret, ProjectID: mptest.DefaultProjectID}, nil
}

func (s mpSecret) Refresh(ctx context.Context) (secrets.Secret, error) { return s.Get(ctx) }

// bulkyEvents yields n events on day (about 8 MiB for 2800), each with
// 3 KiB of random base64 (which gzip hardly shrinks, so that a few MiB of
// them make a multipart part).
func bulkyEvents(day time.Time, n int) mptest.Generator {
	rng := rand.New(rand.NewPCG(7, uint64(day.Unix())))
	evs := make([]mptest.Event, n)
	blob := make([]byte, 3<<10*3/4)
	for i := range evs {
		for j := range blob {
			blob[j] = byte(rng.Uint32())
		}
		evs[i] = mptest.Event{Name: "Blob", Time: day.Add(time.Duration(int64(i)*86400/int64(n)) * time.Second),
			DistinctID: fmt.Sprintf("user-%d", i%97), InsertID: fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64()),
			Props: []byte(`{"blob":"` + base64.StdEncoding.EncodeToString(blob) + `"}`)}
	}
	return func(from, to time.Time, yield func(mptest.Event) bool) {
		for _, ev := range evs {
			if !ev.Time.Before(from) && ev.Time.Before(to) && !yield(ev) {
				return
			}
		}
	}
}

// exportLines is what a Mixpanel export with gen serves for day.
func exportLines(t *testing.T, gen mptest.Generator, day string) []string {
	t.Helper()
	ref := mptest.NewFake(mptest.Options{ExportPerHour: -1})
	ref.SetGenerator(gen)
	q := url.Values{"project_id": {mptest.DefaultProjectID}, "from_date": {day}, "to_date": {day}}
	req := httptest.NewRequest(http.MethodGet, "/api/2.0/export?"+q.Encode(), nil)
	req.SetBasicAuth(mptest.DefaultUsername, mptest.DefaultSecret)
	rec := httptest.NewRecorder()
	ref.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("export of %s: %d", day, rec.Code)
	}
	return strings.Split(strings.TrimSuffix(rec.Body.String(), "\n"), "\n")
}

// A Mixpanel collect that checkpointed parts and is resumed after the
// day's export shrank below the checkpoint (events deleted meanwhile): the
// backend reports the job's result gone, the window starts again under a
// new job and the partition holds the new export, every event once.
//
// Before the fix the resumed export failed to skip to the checkpoint
// (unexpected EOF) and the attempt kept its checkpoint, so every later
// attempt failed alike until the day ended FAILED with nothing published.
func TestMixpanelResumeOfAShrunkExport(t *testing.T) {
	e := newEnv(t, cetest.Options{}, Config{Backend: "mixpanel"})
	day := e.day(-1)
	e.cfg.Start = day
	srv, mp := mptest.NewServer(t, mptest.Options{ExportPerHour: -1})
	before := bulkyEvents(dayStart(day), 2800)
	mp.SetGenerator(before)
	backend := mpdirect.NewExports(mpdirect.NewClient(mpSecret{}, mixpanel.WithBaseURL(srv.URL),
		mixpanel.WithRetry(1, time.Millisecond, time.Millisecond), mixpanel.WithRetryJitter(0, 0)))

	var continued []string
	e.cfg.Continue = func(_ context.Context, id string) error { continued = append(continued, id); return nil }
	// The first export stalls after more than one part's worth until the
	// invocation's work time is over: the collect checkpoints and
	// continues.
	ex := e.exporter(&stallOnce{CE: backend, n: 7 << 20}, nil)
	id := mustRun(t, ex, RunRequest{}).Started[0].JobID
	collect := func(timeout time.Duration) CollectResult {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		defer cancel()
		res, err := ex.Collect(WithInvocation(ctx), id)
		if err != nil {
			t.Fatalf("Collect: %v", err)
		}
		return res
	}
	if res := collect(20 * time.Second); res.Outcome != OutcomeContinued {
		t.Fatalf("first collect = %+v, want continued", res)
	}
	j := e.job(t, id)
	first, cp := j.CEJobID, readCheckpoint(j)
	if cp == nil || len(cp.Parts) == 0 || cp.Source.Offset == 0 {
		t.Fatalf("checkpoint %+v, want parts", cp)
	}

	after := bulkyEvents(dayStart(day), 1000) // a third of the day: shorter than the parts kept
	mp.SetGenerator(after)
	res := collect(time.Minute)
	j = e.job(t, id)
	if res.Outcome != OutcomeRestarted || j.Status != ledger.StatusPending || j.CEJobID == first || j.CEJobID == "" || j.Collect != nil {
		t.Fatalf("resumed collect = %+v; job %s, job %q (was %q), checkpoint %s; want restarted under a new job without a checkpoint",
			res, j.Status, j.CEJobID, first, j.Collect)
	}
	if res := collect(time.Minute); res.Outcome != OutcomeCollected {
		t.Fatalf("collect of the new job = %+v, want collected", res)
	}
	if j := e.job(t, id); j.Status != ledger.StatusDone || j.Attempts != 2 {
		t.Errorf("job %s after %d attempts, want DONE after 2", j.Status, j.Attempts)
	}
	m := e.checkPartition(t, "activities", "dt="+day, exportLines(t, after, day))
	if m.Backend != "mixpanel" || m.OutOfWindow != 0 {
		t.Errorf("manifest: backend %q, outOfWindow %d", m.Backend, m.OutOfWindow)
	}
	if n := e.multipartUploads(t); n != 0 {
		t.Errorf("%d multipart uploads left behind", n)
	}
	if n := mp.Count(mptest.RouteExport); n != 3 {
		t.Errorf("exports = %d, want 3 (the first, the resume that found it shorter, the new job's)", n)
	}
}
