package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/s3stream"
	"github.com/cebulk/cebulk/pkg/ce"
)

func startedIDs(r RunResult) []string {
	var ids []string
	for _, s := range r.Started {
		ids = append(ids, s.JobID)
	}
	return ids
}

func collectedIDs(r SweepResult, o Outcome) []string {
	var ids []string
	for _, c := range r.Collected {
		if c.Outcome == o {
			ids = append(ids, c.JobID)
		}
	}
	return ids
}

func mustRun(t *testing.T, ex *Exporter, req RunRequest) RunResult {
	t.Helper()
	res, err := ex.Run(t.Context(), req)
	if err != nil {
		t.Fatalf("Run(%+v): %v", req, err)
	}
	return res
}

func mustSweep(t *testing.T, ex *Exporter) SweepResult {
	t.Helper()
	res, err := ex.Sweep(t.Context())
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if len(res.Errors) > 0 {
		t.Errorf("Sweep errors: %v", res.Errors)
	}
	return res
}

func (e *env) watermark(t *testing.T, object string) string {
	t.Helper()
	b, ok := e.get(t, WatermarkKey(object))
	if !ok {
		return ""
	}
	var wm Watermark
	if err := json.Unmarshal(b, &wm); err != nil {
		t.Fatalf("watermark: %v", err)
	}
	return wm.Next
}

func TestRunAndSweepExportEachRecordOnce(t *testing.T) {
	e := newEnv(t, cetest.Options{}, Config{})
	days := []string{e.day(-3), e.day(-2), e.day(-1)}
	byDay := seedActivities(e.fake, 3000, dayStart(e.day(-4)).Add(12*time.Hour), dayStart(e.day(0)).Add(12*time.Hour))
	ex := e.exporter(nil, nil)

	run := mustRun(t, ex, RunRequest{})
	want := []string{DayJobID("activities", days[0]), DayJobID("activities", days[1]), DayJobID("activities", days[2])}
	if diff := cmp.Diff(want, startedIDs(run)); diff != "" {
		t.Fatalf("Run started (-want +got):\n%s", diff)
	}
	for _, s := range run.Started {
		if s.CEJobID == "" || s.Error != "" {
			t.Errorf("started %+v, want a CE job and no error", s)
		}
	}
	// CE was asked for exactly the windows.
	for i, j := range e.fake.Jobs() {
		from := dayStart(days[i])
		if !j.From.Equal(from) || !j.To.Equal(from.AddDate(0, 0, 1)) || j.Object != "activities" {
			t.Errorf("CE job %s: %s [%v, %v), want activities [%v, %v)", j.ID, j.Object, j.From, j.To, from, from.AddDate(0, 0, 1))
		}
	}

	sweep := mustSweep(t, ex)
	if diff := cmp.Diff(want, collectedIDs(sweep, OutcomeCollected)); diff != "" {
		t.Fatalf("Sweep collected (-want +got):\n%s\n%+v", diff, sweep)
	}
	total := 0
	for _, d := range days {
		m := e.checkPartition(t, "activities", "dt="+d, byDay[d])
		total += len(byDay[d])
		if m.OutOfWindow != 0 || !m.Complete || m.CERecordsCount != int64(len(byDay[d])) || m.LedgerJobID != DayJobID("activities", d) {
			t.Errorf("manifest of %s = %+v", d, m)
		}
		from := dayStart(d)
		if !m.Window.From.Equal(from) || !m.Window.To.Equal(from.AddDate(0, 0, 1)) {
			t.Errorf("manifest window of %s = %+v", d, m.Window)
		}
		j := e.job(t, DayJobID("activities", d))
		if j.Status != ledger.StatusDone || j.Result == nil || j.Result.Records != int64(len(byDay[d])) || j.Attempts != 1 {
			t.Errorf("job %s = %+v, result %+v", j.ID, j, j.Result)
		}
	}
	if total < 2000 {
		t.Fatalf("only %d records in the exported days; the seed is wrong", total)
	}
	if got, want := e.watermark(t, "activities"), e.day(0); got != want {
		t.Errorf("watermark = %s, want %s", got, want)
	}

	// A repeat run and sweep do nothing new.
	again := mustRun(t, ex, RunRequest{})
	if len(again.Started) != 0 {
		t.Errorf("repeat Run started %v, want nothing", startedIDs(again))
	}
	if s := mustSweep(t, ex); s.Checked != 0 {
		t.Errorf("repeat Sweep checked %d jobs, want 0", s.Checked)
	}
	if got := e.fake.Requests("POST /bulk/query"); got != 3 {
		t.Errorf("CE jobs started = %d, want 3", got)
	}
	if got := e.fake.Requests("GET /activities"); got != 3 {
		t.Errorf("downloads = %d, want 3", got)
	}
}

func TestConcurrentRunsStartOneJobPerWindow(t *testing.T) {
	e := newEnv(t, cetest.Options{}, Config{})
	seedActivities(e.fake, 100, dayStart(e.day(-3)), dayStart(e.day(0)))
	var wg sync.WaitGroup
	results := make([]RunResult, 3)
	errs := make([]error, 3)
	for i := range results {
		wg.Go(func() { results[i], errs[i] = e.exporter(nil, nil).Run(t.Context(), RunRequest{}) })
	}
	wg.Wait()
	var all []string
	for i := range results {
		if errs[i] != nil {
			t.Fatalf("Run %d: %v", i, errs[i])
		}
		all = append(all, startedIDs(results[i])...)
	}
	slices.Sort(all)
	want := []string{DayJobID("activities", e.day(-3)), DayJobID("activities", e.day(-2)), DayJobID("activities", e.day(-1))}
	if diff := cmp.Diff(want, all); diff != "" {
		t.Errorf("windows started over three runs (-want +got):\n%s", diff)
	}
	if got := e.fake.Requests("POST /bulk/query"); got != 3 {
		t.Errorf("CE jobs started = %d, want 3", got)
	}
}

func TestConcurrentCollectsPublishOnce(t *testing.T) {
	e := newEnv(t, cetest.Options{}, Config{Start: ""})
	e.cfg.Start = e.day(-1)
	byDay := seedActivities(e.fake, 500, dayStart(e.day(-1)), dayStart(e.day(0)))
	ex := e.exporter(nil, nil)
	id := mustRun(t, ex, RunRequest{}).Started[0].JobID

	var wg sync.WaitGroup
	outcomes := make([]Outcome, 4)
	for i := range outcomes {
		wg.Go(func() {
			res, err := e.exporter(nil, nil).Collect(t.Context(), id)
			if err != nil {
				t.Errorf("Collect: %v", err)
			}
			outcomes[i] = res.Outcome
		})
	}
	wg.Wait()
	if n := slices.Index(outcomes, OutcomeCollected); n < 0 || slices.Contains(outcomes[n+1:], OutcomeCollected) {
		t.Errorf("outcomes = %v, want exactly one %q", outcomes, OutcomeCollected)
	}
	e.checkPartition(t, "activities", "dt="+e.day(-1), byDay[e.day(-1)])
	if got := e.fake.Requests("GET /activities"); got != 1 {
		t.Errorf("downloads = %d, want 1", got)
	}

	// Collecting a DONE job again is a no-op.
	res, err := ex.Collect(t.Context(), id)
	if err != nil || res.Outcome != OutcomeFinal {
		t.Errorf("Collect(DONE job) = %+v, %v; want outcome %q", res, err, OutcomeFinal)
	}
	if got := e.fake.Requests("GET /activities"); got != 1 {
		t.Errorf("downloads after a repeat collect = %d, want 1", got)
	}
}

// stallingBody hands out the first n bytes of r, then blocks until ctx ends.
type stallingBody struct {
	ctx context.Context
	r   io.ReadCloser
	n   int
}

func (s *stallingBody) Read(p []byte) (int, error) {
	if s.n <= 0 {
		<-s.ctx.Done()
		return 0, s.ctx.Err()
	}
	p = p[:min(len(p), s.n)]
	n, err := s.r.Read(p)
	s.n -= n
	return n, err
}

func (s *stallingBody) Close() error { return s.r.Close() }

func TestCollectFailuresPublishNothing(t *testing.T) {
	errS3 := errors.New("S3 is down")
	tests := []struct {
		name string
		// setup returns the CE and store the failing collect uses.
		setup func(e *env) (CE, ObjectStore)
		is    error
	}{
		{
			name:  "download cut in the middle",
			setup: func(e *env) (CE, ObjectStore) { e.fake.CutNextDownload(4096); return nil, nil },
			is:    io.ErrUnexpectedEOF,
		},
		{
			name: "bad record stream",
			setup: func(e *env) (CE, ObjectStore) {
				return ceFuncs{CE: e.client, download: func(context.Context, string, string) (io.ReadCloser, error) {
					return io.NopCloser(strings.NewReader(`[{"event":"a","properties":{"time":1}}, 42]`)), nil
				}}, nil
			},
		},
		{
			name: "fewer records than CE reported",
			setup: func(e *env) (CE, ObjectStore) {
				return ceFuncs{CE: e.client, status: func(ctx context.Context, id string) (*ce.Job, error) {
					j, err := e.client.Status(ctx, id)
					if j != nil {
						j.RecordsCount += 5
					}
					return j, err
				}}, nil
			},
			is: io.ErrUnexpectedEOF,
		},
		{
			name: "S3 upload fails",
			setup: func(e *env) (CE, ObjectStore) {
				return nil, storeFuncs{ObjectStore: e.s3, uploadPart: func(context.Context, string, string, string, int32, []byte) (s3stream.Part, error) {
					return s3stream.Part{}, errS3
				}}
			},
			is: errS3,
		},
		{
			name: "manifest write fails",
			setup: func(e *env) (CE, ObjectStore) {
				return nil, storeFuncs{ObjectStore: e.s3, writeSmall: func(ctx context.Context, bucket, key string, data []byte, ct string, cond s3stream.Condition) (string, error) {
					if strings.HasSuffix(key, "/_manifest.json") {
						return "", errS3
					}
					return e.s3.WriteSmall(ctx, bucket, key, data, ct, cond)
				}}
			},
			is: errS3,
		},
		{
			name: "_SUCCESS write fails",
			setup: func(e *env) (CE, ObjectStore) {
				return nil, storeFuncs{ObjectStore: e.s3, writeSmall: func(ctx context.Context, bucket, key string, data []byte, ct string, cond s3stream.Condition) (string, error) {
					if strings.HasSuffix(key, "/_SUCCESS") {
						return "", errS3
					}
					return e.s3.WriteSmall(ctx, bucket, key, data, ct, cond)
				}}
			},
			is: errS3,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, cetest.Options{}, Config{})
			e.cfg.Start = e.day(-1)
			day := e.day(-1)
			byDay := seedActivities(e.fake, 800, dayStart(day).Add(-time.Hour), dayStart(e.day(0)).Add(time.Hour))
			id := mustRun(t, e.exporter(nil, nil), RunRequest{}).Started[0].JobID

			api, store := tc.setup(e)
			// The failure is in the ledger (and the result), so Collect
			// succeeds: the sweep retries it, not Lambda.
			res, err := e.exporter(api, store).Collect(t.Context(), id)
			if err != nil || res.Error == "" {
				t.Fatalf("Collect = %+v, %v; want the failure in the result and no error", res, err)
			}
			if tc.is != nil && !strings.Contains(res.Error, tc.is.Error()) {
				t.Errorf("Collect error %q, want one naming %v", res.Error, tc.is)
			}
			if res.Outcome != OutcomeRetry {
				t.Errorf("Collect outcome = %q, want %q", res.Outcome, OutcomeRetry)
			}
			j := e.job(t, id)
			if j.Status != ledger.StatusPending || j.Attempts != 2 || j.LastError == "" {
				t.Errorf("job after a failed collect: status %s, attempts %d, lastError %q; want PENDING, 2, an error", j.Status, j.Attempts, j.LastError)
			}
			e.checkUnpublished(t, "activities", "dt="+day)

			// The job is collectable again, and the result is exact.
			res, err = e.exporter(nil, nil).Collect(t.Context(), id)
			if err != nil || res.Outcome != OutcomeCollected {
				t.Fatalf("second Collect = %+v, %v; want collected", res, err)
			}
			e.checkPartition(t, "activities", "dt="+day, byDay[day])
		})
	}
}

func TestCollectRestartsWhenCEFileIsGone(t *testing.T) {
	e := newEnv(t, cetest.Options{}, Config{})
	e.cfg.Start = e.day(-1)
	day := e.day(-1)
	byDay := seedActivities(e.fake, 300, dayStart(day), dayStart(e.day(0)))
	ex := e.exporter(nil, nil)
	id := mustRun(t, ex, RunRequest{}).Started[0].JobID
	first := e.job(t, id).CEJobID
	e.fake.FailNext("GET", "/"+first+"/activities", 404, "")
	res, err := ex.Collect(t.Context(), id)
	if err != nil || res.Outcome != OutcomeRestarted || res.CEJobID == first || res.CEJobID == "" {
		t.Fatalf("Collect = %+v, %v; want a new CE job", res, err)
	}
	if j := e.job(t, id); j.Status != ledger.StatusPending || j.Attempts != 2 || !strings.Contains(j.LastError, "not found") {
		t.Errorf("job = %+v", j)
	}
	e.checkUnpublished(t, "activities", "dt="+day)
	if res, err := ex.Collect(t.Context(), id); err != nil || res.Outcome != OutcomeCollected {
		t.Fatalf("second Collect = %+v, %v", res, err)
	}
	e.checkPartition(t, "activities", "dt="+day, byDay[day])
}

func TestCollectRecordsCEFailedRecords(t *testing.T) {
	e := newEnv(t, cetest.Options{}, Config{})
	e.cfg.Start = e.day(-1)
	day := e.day(-1)
	byDay := seedActivities(e.fake, 300, dayStart(day), dayStart(e.day(0)))
	// CE ends the download job COMPLETED with 2 failed records, counted in
	// recordsCount (reference §2.3).
	e.fake.SetNextJobFailedRecords(2)
	id := mustRun(t, e.exporter(nil, nil), RunRequest{}).Started[0].JobID
	res, err := e.exporter(nil, nil).Collect(t.Context(), id)
	if err != nil || res.Outcome != OutcomeIncomplete || res.CEFailed != 2 {
		t.Fatalf("Collect = %+v, %v; want %q with 2 CE failures", res, err, OutcomeIncomplete)
	}
	m := e.checkPartition(t, "activities", "dt="+day, byDay[day])
	if m.Complete || m.CERecordsFailed != 2 || m.CERecordsCount != int64(len(byDay[day])+2) {
		t.Errorf("manifest complete %v, ceRecordsFailed %d, ceRecordsCount %d; want false, 2, %d", m.Complete, m.CERecordsFailed, m.CERecordsCount, len(byDay[day])+2)
	}
	j := e.job(t, id)
	if j.Status != ledger.StatusDone || j.Result.Failed != 2 || j.CE.RecordsFailedCount != 2 {
		t.Errorf("job = %+v, result %+v; want DONE with 2 failed", j, j.Result)
	}
	warned := false
	for _, l := range e.logs.lines(t) {
		if l["level"] == "WARN" && l["jobId"] == id && strings.Contains(fmt.Sprint(l["msg"]), "failed records") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no warn log about CE's failed records:\n%s", e.logs.String())
	}
}

func TestCollectCountsRecordsOutsideTheWindow(t *testing.T) {
	e := newEnv(t, cetest.Options{}, Config{})
	e.cfg.Start = e.day(-2)
	e.cfg.MaxJobs = 1
	day := e.day(-2)
	byDay := seedActivities(e.fake, 900, dayStart(e.day(-3)), dayStart(e.day(0)))
	// A CE that ignores the window, as a day-granular Mixpanel export in
	// another timezone would.
	api := ceFuncs{CE: e.client, startQuery: func(ctx context.Context, q ce.QueryRequest) (*ce.Job, error) {
		q.From, q.To = time.Time{}, time.Time{}
		return e.client.StartQuery(ctx, q)
	}}
	ex := e.exporter(api, nil)
	id := mustRun(t, ex, RunRequest{}).Started[0].JobID
	res, err := ex.Collect(t.Context(), id)
	if err != nil || res.Outcome != OutcomeCollected {
		t.Fatalf("Collect = %+v, %v", res, err)
	}
	m := e.checkPartition(t, "activities", "dt="+day, byDay[day])
	if want := int64(900 - len(byDay[day])); m.OutOfWindow != want {
		t.Errorf("manifest outOfWindow = %d, want %d", m.OutOfWindow, want)
	}
}

func TestCollectRespectsTheDeadline(t *testing.T) {
	t.Run("too little time to start", func(t *testing.T) {
		e := newEnv(t, cetest.Options{}, Config{})
		e.cfg.Start = e.day(-1)
		seedActivities(e.fake, 100, dayStart(e.day(-1)), dayStart(e.day(0)))
		ex := e.exporter(nil, nil)
		id := mustRun(t, ex, RunRequest{}).Started[0].JobID
		ctx, cancel := context.WithTimeout(t.Context(), defaultSafetyMargin+defaultMinCollect/2)
		defer cancel()
		res, err := ex.Collect(ctx, id)
		if err != nil || res.Outcome != OutcomeDeferred {
			t.Errorf("Collect = %+v, %v; want deferred", res, err)
		}
		if j := e.job(t, id); j.Status != ledger.StatusPending || j.Attempts != 1 {
			t.Errorf("job status %s, attempts %d; want PENDING, 1", j.Status, j.Attempts)
		}
		if got := e.fake.Requests("GET /activities"); got != 0 {
			t.Errorf("downloads = %d, want 0", got)
		}
	})
	t.Run("deadline comes mid-download", func(t *testing.T) {
		// The invocation has 6.5s; the collect must stop reading 5s before,
		// which leaves a slow machine time to release the job.
		e := newEnv(t, cetest.Options{}, Config{SafetyMargin: 5 * time.Second, MinCollect: 100 * time.Millisecond})
		e.cfg.Start = e.day(-1)
		day := e.day(-1)
		byDay := seedActivities(e.fake, 400, dayStart(day), dayStart(e.day(0)))
		id := mustRun(t, e.exporter(nil, nil), RunRequest{}).Started[0].JobID
		api := ceFuncs{CE: e.client, download: func(ctx context.Context, id, object string) (io.ReadCloser, error) {
			body, err := e.client.Download(ctx, id, object)
			if err != nil {
				return nil, err
			}
			return &stallingBody{ctx: ctx, r: body, n: 8 << 10}, nil
		}}
		ctx, cancel := context.WithTimeout(t.Context(), 6500*time.Millisecond)
		defer cancel()
		// The upload runs on the invocation's context, not the shorter work
		// context, so that an upload cut by the work deadline is aborted.
		var putDeadline time.Time
		store := storeFuncs{ObjectStore: e.s3, uploadPart: func(ctx context.Context, bucket, key, id string, n int32, data []byte) (s3stream.Part, error) {
			putDeadline, _ = ctx.Deadline()
			return e.s3.UploadPart(ctx, bucket, key, id, n, data)
		}}
		t0 := time.Now()
		res, err := e.exporter(api, store).Collect(ctx, id)
		if err != nil || !strings.Contains(res.Error, context.DeadlineExceeded.Error()) || res.Outcome != OutcomeRetry {
			t.Fatalf("Collect = %+v, %v; want a retry after the work deadline", res, err)
		}
		if ctx.Err() != nil {
			t.Errorf("Collect returned after the invocation's deadline (%v)", time.Since(t0))
		}
		if dl, _ := ctx.Deadline(); !putDeadline.IsZero() && !putDeadline.Equal(dl) {
			t.Errorf("upload deadline %v, want the invocation's %v", putDeadline, dl)
		}
		if j := e.job(t, id); j.Status != ledger.StatusPending || j.Attempts != 2 {
			t.Errorf("job status %s, attempts %d; want PENDING, 2", j.Status, j.Attempts)
		}
		e.checkUnpublished(t, "activities", "dt="+day)
		if res, err := e.exporter(nil, nil).Collect(t.Context(), id); err != nil || res.Outcome != OutcomeCollected {
			t.Fatalf("second Collect = %+v, %v", res, err)
		}
		e.checkPartition(t, "activities", "dt="+day, byDay[day])
	})
}

func TestSweepRetriesCEErrorsThenFails(t *testing.T) {
	e := newEnv(t, cetest.Options{}, Config{})
	e.cfg.Start = e.day(-1)
	seedActivities(e.fake, 100, dayStart(e.day(-1)), dayStart(e.day(0)))
	ex := e.exporter(nil, nil)
	const msg = "Mixpanel export rate limit exceeded"
	e.fake.SetNextJobOutcome("ERROR", msg)
	id := mustRun(t, ex, RunRequest{}).Started[0].JobID
	for attempt := 2; attempt <= 3; attempt++ {
		e.fake.SetNextJobOutcome("ERROR", msg)
		s := mustSweep(t, ex)
		if diff := cmp.Diff([]string{id}, s.Restarted); diff != "" {
			t.Fatalf("sweep %d restarted (-want +got):\n%s", attempt-1, diff)
		}
		if j := e.job(t, id); j.Status != ledger.StatusPending || j.Attempts != attempt || !strings.Contains(j.LastError, msg) {
			t.Errorf("job after sweep %d: %s, attempts %d, lastError %q", attempt-1, j.Status, j.Attempts, j.LastError)
		}
	}
	s := mustSweep(t, ex)
	if diff := cmp.Diff([]string{id}, s.Failed); diff != "" {
		t.Fatalf("last sweep failed (-want +got):\n%s", diff)
	}
	j := e.job(t, id)
	if j.Status != ledger.StatusFailed || !strings.Contains(j.LastError, msg) || j.CE == nil || j.CE.Error != msg || j.CE.Status != "ERROR" {
		t.Errorf("job = %+v, CE %+v; want FAILED with CE's error", j, j.CE)
	}
	if got := e.fake.Requests("POST /bulk/query"); got != 3 {
		t.Errorf("CE jobs = %d, want 3", got)
	}
	e.checkUnpublished(t, "activities", "dt="+e.day(-1))
	checkFailedMetric(t, e, 1)

	// A FAILED job is left alone by later sweeps.
	if s := mustSweep(t, ex); s.Checked != 0 {
		t.Errorf("sweep after FAILED checked %d", s.Checked)
	}
}

func checkFailedMetric(t *testing.T, e *env, n int) {
	t.Helper()
	var lines []map[string]any
	for _, m := range e.metrics.lines(t) {
		if _, ok := m[MetricJobsFailed]; ok {
			lines = append(lines, m)
		}
	}
	if len(lines) != n {
		t.Fatalf("metric lines = %d, want %d:\n%s", len(lines), n, e.metrics.String())
	}
	for _, m := range lines {
		aws, _ := m["_aws"].(map[string]any)
		cwm, _ := aws["CloudWatchMetrics"].([]any)
		if m["Function"] != "export" || m["JobsFailed"] != float64(1) || len(cwm) != 1 || aws["Timestamp"] == nil {
			t.Errorf("metric line = %v", m)
		}
	}
}

func TestSweepExpiresJobsWithNoNews(t *testing.T) {
	e := newEnv(t, cetest.Options{CompletionDelay: 24 * time.Hour}, Config{JobDeadline: 6 * time.Hour})
	e.cfg.Start = e.day(-1)
	ex := e.exporter(nil, nil)
	id := mustRun(t, ex, RunRequest{}).Started[0].JobID
	if s := mustSweep(t, ex); s.Waiting != 1 || len(s.Expired) != 0 {
		t.Errorf("first sweep = %+v, want one waiting job", s)
	}
	if j := e.job(t, id); j.CE == nil || j.CE.Status != "RUNNING" {
		t.Errorf("job CE state = %+v, want RUNNING recorded", j.CE)
	}
	e.clock.Add(6*time.Hour + time.Minute)
	s := mustSweep(t, ex)
	if diff := cmp.Diff([]string{id}, s.Expired); diff != "" {
		t.Fatalf("sweep expired (-want +got):\n%s", diff)
	}
	if j := e.job(t, id); j.Status != ledger.StatusExpired {
		t.Errorf("job status = %s, want EXPIRED", j.Status)
	}
	if jobs := e.fake.Jobs(); jobs[0].Status != cetest.StatusCancelled {
		t.Errorf("CE job status = %s, want CANCELLED", jobs[0].Status)
	}
	checkFailedMetric(t, e, 1)
}

func TestSweepStartsJobsARunCouldNotStart(t *testing.T) {
	e := newEnv(t, cetest.Options{}, Config{})
	e.cfg.Start = e.day(-1)
	day := e.day(-1)
	byDay := seedActivities(e.fake, 200, dayStart(day), dayStart(e.day(0)))
	ex := e.exporter(nil, nil)
	e.fake.FailNext("POST", "/bulk/query", 400, "")
	run := mustRun(t, ex, RunRequest{})
	if len(run.Started) != 1 || run.Started[0].CEJobID != "" || run.Started[0].Error == "" {
		t.Fatalf("Run = %+v, want one window claimed without a CE job", run)
	}
	id := run.Started[0].JobID
	if j := e.job(t, id); j.Status != ledger.StatusPending || j.CEJobID != "" || j.LastError == "" {
		t.Errorf("job = %+v, want PENDING without a CE job and with the error", j)
	}
	// A retried run does not start it (the window is claimed).
	if again := mustRun(t, ex, RunRequest{}); len(again.Started) != 0 {
		t.Errorf("repeat Run started %v", startedIDs(again))
	}
	// The sweep leaves it to its run for a minute, then starts it.
	if s := mustSweep(t, ex); len(s.Started) != 0 {
		t.Errorf("early sweep started %v", s.Started)
	}
	e.clock.Add(2 * time.Minute)
	if s := mustSweep(t, ex); !slices.Equal(s.Started, []string{id}) {
		t.Fatalf("sweep started %v, want [%s]", s.Started, id)
	}
	if s := mustSweep(t, ex); !slices.Equal(collectedIDs(s, OutcomeCollected), []string{id}) {
		t.Fatalf("sweep = %+v, want %s collected", s, id)
	}
	e.checkPartition(t, "activities", "dt="+day, byDay[day])
}

func TestSweepTakesBackAbandonedCollects(t *testing.T) {
	e := newEnv(t, cetest.Options{}, Config{})
	e.cfg.Start = e.day(-1)
	day := e.day(-1)
	byDay := seedActivities(e.fake, 200, dayStart(day), dayStart(e.day(0)))
	ex := e.exporter(nil, nil)
	id := mustRun(t, ex, RunRequest{}).Started[0].JobID
	if _, err := e.jobs.Modify(t.Context(), id, func(j *ledger.Job) error { j.Status = ledger.StatusCollecting; return nil }); err != nil {
		t.Fatal(err)
	}
	if s := mustSweep(t, ex); len(s.Released)+len(s.Collected) != 0 {
		t.Errorf("sweep during the lease = %+v, want the job left alone", s)
	}
	if res, err := ex.Collect(t.Context(), id); err != nil || res.Outcome != OutcomeBusy {
		t.Errorf("Collect during the lease = %+v, %v; want busy", res, err)
	}
	e.clock.Add(16 * time.Minute)
	s := mustSweep(t, ex)
	if !slices.Equal(s.Released, []string{id}) || !slices.Equal(collectedIDs(s, OutcomeCollected), []string{id}) {
		t.Fatalf("sweep = %+v, want %s released and collected", s, id)
	}
	if j := e.job(t, id); j.Status != ledger.StatusDone || j.Attempts != 2 {
		t.Errorf("job status %s, attempts %d; want DONE, 2", j.Status, j.Attempts)
	}
	e.checkPartition(t, "activities", "dt="+day, byDay[day])
}

func TestCallbacksAndTheirGrace(t *testing.T) {
	const hook = "https://hooks.example.test/callbacks/ce"
	e := newEnv(t, cetest.Options{}, Config{CallbackURL: hook})
	e.cfg.Start = e.day(-1)
	day := e.day(-1)
	byDay := seedActivities(e.fake, 200, dayStart(day), dayStart(e.day(0)))
	ex := e.exporter(nil, nil)
	id := mustRun(t, ex, RunRequest{}).Started[0].JobID

	cj := e.fake.Jobs()[0]
	u, err := url.Parse(cj.CallbackURL)
	if err != nil {
		t.Fatalf("callback URL: %v", err)
	}
	token := u.Query().Get("token")
	if got := u.Scheme + "://" + u.Host + u.Path; got != hook || u.Query().Get("job") != id || token == "" {
		t.Errorf("callback URL = %s?job=%s&token=…, want %s?job=%s&token=…", got, u.Query().Get("job"), hook, id)
	}
	if j := e.job(t, id); j.TokenHash != ledger.HashToken(token) || strings.Contains(j.TokenHash, token) {
		t.Errorf("ledger token hash does not match the callback token")
	}
	if diff := cmp.Diff(`{"jobId":"`+id+`"}`, string(cj.CallbackPayload)); diff != "" {
		t.Errorf("callback payload (-want +got):\n%s", diff)
	}

	// Within a minute the sweep leaves the job to its callback.
	if s := mustSweep(t, ex); s.Waiting != 1 || e.fake.Requests("/status") != 0 {
		t.Errorf("early sweep = %+v with %d status reads; want it to wait", s, e.fake.Requests("/status"))
	}
	e.clock.Add(61 * time.Second)
	if s := mustSweep(t, ex); !slices.Equal(collectedIDs(s, OutcomeCollected), []string{id}) {
		t.Fatalf("sweep = %+v, want %s collected", s, id)
	}
	e.checkPartition(t, "activities", "dt="+day, byDay[day])

	// Logs: JSON lines, one per step, without the token or the secrets.
	logs := e.logs.String()
	for _, secret := range []string{token, cetest.DefaultUserSecret, cetest.DefaultOrgSecret, cetest.DefaultElementToken} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain a secret %q", secret[:4])
		}
	}
	var done map[string]any
	for _, l := range e.logs.lines(t) {
		if l["msg"] == "export job done" {
			done = l
		}
	}
	for _, k := range []string{"jobId", "object", "window", "partition", "ceJobId", "records", "bytes", "durationMs"} {
		if _, ok := done[k]; !ok {
			t.Errorf("log line %v has no %s", done, k)
		}
	}
}

func TestBackfill(t *testing.T) {
	e := newEnv(t, cetest.Options{}, Config{})
	byDay := seedActivities(e.fake, 2000, dayStart(e.day(-8)), dayStart(e.day(0)))
	ex := e.exporter(nil, nil)

	// Three days, long before any watermark: three partitions, no watermark.
	run := mustRun(t, ex, RunRequest{From: e.day(-7), To: e.day(-4)})
	want := []string{DayJobID("activities", e.day(-7)), DayJobID("activities", e.day(-6)), DayJobID("activities", e.day(-5))}
	if diff := cmp.Diff(want, startedIDs(run)); diff != "" {
		t.Fatalf("backfill started (-want +got):\n%s", diff)
	}
	mustSweep(t, ex)
	for _, d := range []string{e.day(-7), e.day(-6), e.day(-5)} {
		e.checkPartition(t, "activities", "dt="+d, byDay[d])
	}
	if wm := e.watermark(t, "activities"); wm != "" {
		t.Errorf("backfill created a watermark at %s", wm)
	}

	// Backfilling an exported day replaces its partition whole.
	before := e.checkPartition(t, "activities", "dt="+e.day(-6), byDay[e.day(-6)])
	again := mustRun(t, ex, RunRequest{From: e.day(-6), To: e.day(-5)})
	if len(again.Started) != 1 || !again.Started[0].Restarted {
		t.Fatalf("backfill of a done day = %+v, want it restarted", again)
	}
	if j := e.job(t, again.Started[0].JobID); j.Status != ledger.StatusPending || j.Attempts != 1 || j.Result != nil {
		t.Errorf("restarted job = %+v", j)
	}
	// A second identical request while it runs starts nothing.
	if dup := mustRun(t, ex, RunRequest{From: e.day(-6), To: e.day(-5)}); len(dup.Started) != 0 || len(dup.Skipped) != 1 {
		t.Errorf("duplicate backfill = %+v, want the running day skipped", dup)
	}
	id := again.Started[0].JobID

	// Failed re-exports leave the old partition published as it was.
	e.fake.CutNextDownload(2048)
	if res, err := ex.Collect(t.Context(), id); err != nil || res.Outcome != OutcomeRetry {
		t.Fatalf("Collect with a cut download = %+v, %v; want a recorded retry", res, err)
	}
	if m := e.checkPartition(t, "activities", "dt="+e.day(-6), byDay[e.day(-6)]); m != before {
		t.Errorf("manifest after a failed re-export = %+v, want the old one %+v", m, before)
	}
	failManifest := storeFuncs{ObjectStore: e.s3, writeSmall: func(ctx context.Context, bucket, key string, data []byte, ct string, cond s3stream.Condition) (string, error) {
		if strings.HasSuffix(key, "/_manifest.json") {
			return "", errors.New("S3 is down")
		}
		return e.s3.WriteSmall(ctx, bucket, key, data, ct, cond)
	}}
	if res, err := e.exporter(nil, failManifest).Collect(t.Context(), id); err != nil || res.Outcome != OutcomeRetry {
		t.Fatalf("Collect with a failing manifest write = %+v, %v; want a recorded retry", res, err)
	}
	if m := e.checkPartition(t, "activities", "dt="+e.day(-6), byDay[e.day(-6)]); m != before {
		t.Errorf("manifest after a failed re-export = %+v, want the old one %+v", m, before)
	}

	mustSweep(t, ex)
	after := e.checkPartition(t, "activities", "dt="+e.day(-6), byDay[e.day(-6)])
	if after.CEJobID == before.CEJobID || after.Part == before.Part {
		t.Errorf("re-export kept the old CE job %s", before.CEJobID)
	}
	if j := e.job(t, id); j.Status != ledger.StatusDone || j.Attempts != 3 {
		t.Errorf("job status %s, attempts %d; want DONE, 3", j.Status, j.Attempts)
	}
}

func TestWatermarkWaitsAtAGap(t *testing.T) {
	e := newEnv(t, cetest.Options{}, Config{MaxAttempts: 1})
	byDay := seedActivities(e.fake, 900, dayStart(e.day(-3)), dayStart(e.day(0)))
	gap := e.day(-2)
	var failing sync.Map
	failing.Store(gap, true)
	api := ceFuncs{CE: e.client, startQuery: func(ctx context.Context, q ce.QueryRequest) (*ce.Job, error) {
		if _, ok := failing.LoadAndDelete(q.From.UTC().Format(dayLayout)); ok {
			e.fake.SetNextJobOutcome("ERROR", "vendor error")
		}
		return e.client.StartQuery(ctx, q)
	}}
	ex := e.exporter(api, nil)
	mustRun(t, ex, RunRequest{})
	s := mustSweep(t, ex)
	if !slices.Equal(s.Failed, []string{DayJobID("activities", gap)}) {
		t.Fatalf("sweep = %+v, want the gap day failed", s)
	}
	if got := e.watermark(t, "activities"); got != gap {
		t.Errorf("watermark = %s, want it to wait at %s", got, gap)
	}
	// The next scheduled run does not redo the failed day by itself.
	if r := mustRun(t, ex, RunRequest{}); len(r.Started) != 0 {
		t.Errorf("run started %v", startedIDs(r))
	}
	// A backfill of the gap closes it, and the watermark moves over it.
	mustRun(t, ex, RunRequest{From: gap, To: e.day(-1)})
	mustSweep(t, ex)
	e.checkPartition(t, "activities", "dt="+gap, byDay[gap])
	if got := e.watermark(t, "activities"); got != e.day(0) {
		t.Errorf("watermark = %s, want %s", got, e.day(0))
	}
	checkFailedMetric(t, e, 1)
}

func TestUsersSnapshot(t *testing.T) {
	e := newEnv(t, cetest.Options{DownloadFormat: "jsonl"}, Config{Objects: []string{ObjectUsers}})
	g := cetest.SampleUsers(7, 250)
	e.fake.SeedGenerated(ObjectUsers, g)
	var users []string
	g.Records(func(r cetest.Record) bool { users = append(users, string(r.JSON)); return true })
	ex := e.exporter(nil, nil)
	at := time.Date(2026, 11, 26, 2, 0, 7, 0, time.UTC)
	run := mustRun(t, ex, RunRequest{At: at})
	if diff := cmp.Diff([]string{"export-users-20261126T020000Z"}, startedIDs(run)); diff != "" {
		t.Fatalf("Run started (-want +got):\n%s", diff)
	}
	if j := e.fake.Jobs()[0]; !j.From.IsZero() || !j.To.IsZero() || j.Object != "users" {
		t.Errorf("CE job = %+v, want users without a window", j)
	}
	mustSweep(t, ex)
	m := e.checkPartition(t, "users", "snapshot=2026-11-26T020000Z", users)
	if m.OutOfWindow != 0 || !m.Window.From.Equal(at.Truncate(time.Hour)) {
		t.Errorf("manifest = %+v", m)
	}
	// Lambda retrying the same event, or a second run that hour: nothing new.
	if again := mustRun(t, ex, RunRequest{At: at.Add(40 * time.Minute)}); len(again.Started) != 0 {
		t.Errorf("second run in the hour started %v", startedIDs(again))
	}
	if _, ok := e.get(t, WatermarkKey(ObjectUsers)); ok {
		t.Errorf("users got a watermark")
	}
}

// A collect whose failure cannot be recorded (the ledger write is refused)
// returns an error, so Lambda retries the invocation: nothing else would.
func TestCollectFailureNotRecordedIsAnError(t *testing.T) {
	e := newEnv(t, cetest.Options{}, Config{})
	e.cfg.Start = e.day(-1)
	seedActivities(e.fake, 50, dayStart(e.day(-1)), dayStart(e.day(0)))
	id := mustRun(t, e.exporter(nil, nil), RunRequest{}).Started[0].JobID
	e.fake.CutNextDownload(512)
	// The ledger accepts the take (PENDING → COLLECTING), then refuses.
	writes := 0
	ledgerStore := storeFuncs{ObjectStore: e.s3, writeSmall: func(ctx context.Context, bucket, key string, data []byte, ct string, cond s3stream.Condition) (string, error) {
		if strings.HasPrefix(key, ledger.Prefix) {
			if writes++; writes > 1 {
				return "", errors.New("S3 is down")
			}
		}
		return e.s3.WriteSmall(ctx, bucket, key, data, ct, cond)
	}}
	ex := New(e.cfg, e.client, e.s3, ledger.New(ledgerStore, e.cfg.Bucket), nil)
	res, err := ex.Collect(t.Context(), id)
	if err == nil || !strings.Contains(err.Error(), "S3 is down") {
		t.Fatalf("Collect = %+v, %v; want an error naming the unrecorded failure", res, err)
	}
}
