package exporter

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cebulk/cebulk/internal/awstest"
	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/pkg/ce"
)

// stallOnce is a CE whose first download stalls after n bytes until its
// context ends (an invocation running out of time).
type stallOnce struct {
	CE
	n    int
	mu   sync.Mutex
	done bool
}

func (s *stallOnce) Download(ctx context.Context, id, object string, opts ...ce.DownloadOption) (io.ReadCloser, error) {
	body, err := s.CE.Download(ctx, id, object, opts...)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || s.done {
		return body, err
	}
	s.done = true
	return &stallingBody{ctx: ctx, r: body, n: s.n}, nil
}

// multipartUploads lists the bucket's unfinished multipart uploads.
func (e *env) multipartUploads(t *testing.T) int {
	t.Helper()
	out, err := awstest.S3(t).ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: &e.bucket})
	if err != nil {
		t.Fatal(err)
	}
	return len(out.Uploads)
}

// partialCollect seeds a bulky day, starts its job and runs a collect that
// checkpoints some parts before its invocation's deadline: the job is
// PENDING with a checkpoint, and continued once.
func partialCollect(t *testing.T, e *env) (id string, want []string) {
	t.Helper()
	day := e.day(-1)
	e.cfg.Start = day
	g := cetest.BulkyActivities(3, 16<<20, dayStart(day))
	e.fake.SeedGenerated(ObjectActivities, g)
	g.Records(func(r cetest.Record) bool { want = append(want, string(r.JSON)); return true })

	var continued []string
	e.cfg.Continue = func(_ context.Context, id string) error { continued = append(continued, id); return nil }
	// The first download stalls after more than one part's worth (5 MiB
	// compressed is about 7 MiB of these records) until the invocation's
	// work time (three quarters of 20s) is over.
	ex := e.exporter(&stallOnce{CE: e.client, n: 9 << 20}, nil)
	id = mustRun(t, ex, RunRequest{}).Started[0].JobID
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	res, err := ex.Collect(WithInvocation(ctx), id)
	if err != nil || res.Outcome != OutcomeContinued || len(continued) != 1 || continued[0] != id {
		t.Fatalf("Collect = %+v, %v, continuations %v; want continued once", res, err, continued)
	}
	j := e.job(t, id)
	cp := readCheckpoint(j)
	if j.Status != ledger.StatusPending || j.Attempts != 1 || cp == nil || len(cp.Parts) == 0 || cp.Source.Offset == 0 {
		t.Fatalf("job %s %s, attempts %d, checkpoint %+v; want PENDING, 1, parts checkpointed", id, j.Status, j.Attempts, cp)
	}
	e.checkUnpublished(t, "activities", "dt="+day)
	return id, want
}

func TestKilledCollectIsResumedBySweepAfterItsLease(t *testing.T) {
	e := newEnv(t, cetest.Options{}, Config{})
	id, want := partialCollect(t, e)
	before := readCheckpoint(e.job(t, id))

	// A collector takes the job in an invocation of 2 minutes and is
	// killed: the job stays COLLECTING with the lease it took.
	j, etag, err := e.jobs.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	j.Status = ledger.StatusCollecting
	j.LeaseUntil = e.clock.Now().Add(2*time.Minute + leaseGrace)
	if _, err := e.jobs.Update(t.Context(), j, etag); err != nil {
		t.Fatal(err)
	}
	ex := e.exporter(nil, nil)
	if s, err := ex.Sweep(t.Context()); err != nil || len(s.Released) != 0 || len(s.Collected) != 0 {
		t.Fatalf("sweep within the lease = %+v, %v; want the job left alone", s, err)
	}
	e.clock.Add(3*time.Minute + time.Second)
	s, err := ex.Sweep(t.Context())
	if err != nil || len(s.Released) != 1 || len(s.Collected) != 1 || s.Collected[0].Outcome != OutcomeCollected {
		t.Fatalf("sweep after the lease = %+v, %v; want the job released and collected", s, err)
	}
	j = e.job(t, id)
	if j.Status != ledger.StatusDone || j.Attempts != 2 || len(j.Collect) != 0 || !j.LeaseUntil.IsZero() {
		t.Errorf("job %s, attempts %d, checkpoint %s; want DONE after 2 attempts (the kill counts), no checkpoint", j.Status, j.Attempts, j.Collect)
	}
	e.checkPartition(t, "activities", "dt="+e.day(-1), want)
	resumed := false
	for _, l := range e.logs.lines(t) {
		if l["msg"] == "collect resumed from its checkpoint" && l["jobId"] == id {
			resumed = l["ranged"] == true && l["offset"] == float64(before.Source.Offset)
		}
	}
	if !resumed {
		t.Errorf("no ranged resume from offset %d in the logs", before.Source.Offset)
	}
	if n := e.multipartUploads(t); n != 0 {
		t.Errorf("%d multipart uploads left behind", n)
	}
}

func TestAbandonedUploadIsAborted(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(t *testing.T, e *env, id string)
		want ledger.Status
	}{
		{"last attempt fails", func(t *testing.T, e *env, id string) {
			if _, err := e.jobs.Modify(t.Context(), id, func(j *ledger.Job) error { j.Attempts = 3; return nil }); err != nil {
				t.Fatal(err)
			}
			e.fake.CutNextDownload(4096)
			if res, _ := e.exporter(nil, nil).Collect(t.Context(), id); res.Outcome != OutcomeFailed {
				t.Fatalf("Collect = %+v; want failed", res)
			}
		}, ledger.StatusFailed},
		{"CE job replaced", func(t *testing.T, e *env, id string) {
			j := e.job(t, id)
			e.fake.SetNextJobOutcome("ERROR", "gone")
			st := &ce.Job{ID: j.CEJobID, Status: ce.StatusError, Error: "gone"}
			_, etag, _ := e.jobs.Get(t.Context(), id)
			if _, err := e.exporter(nil, nil).ceFailed(t.Context(), j, etag, false, st, CollectResult{JobID: id}); err != nil {
				t.Fatal(err)
			}
		}, ledger.StatusPending},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, cetest.Options{}, Config{})
			id, _ := partialCollect(t, e)
			if n := e.multipartUploads(t); n != 1 {
				t.Fatalf("%d multipart uploads after the partial collect, want 1", n)
			}
			tc.end(t, e, id)
			j := e.job(t, id)
			if j.Status != tc.want || len(j.Collect) != 0 {
				t.Errorf("job %s, checkpoint %s; want %s without checkpoint", j.Status, j.Collect, tc.want)
			}
			if n := e.multipartUploads(t); n != 0 {
				t.Errorf("%d multipart uploads left behind", n)
			}
			if keys := e.keys(t, "exports/"); len(keys) != 0 && !strings.Contains(strings.Join(keys, ","), "_SUCCESS") {
				t.Errorf("objects left: %v", keys)
			}
		})
	}
}

// lateRecord is a CE whose downloads, from the first one asked from an
// offset on, hold one more record at the start: a source that changed
// under a checkpoint (a live export asked again after a late event). It
// serves no ranges: it downloads from the start and skips, as a backend
// without ranges does.
type lateRecord struct {
	CE
	extra   string
	mu      sync.Mutex
	changed bool
}

func (l *lateRecord) Download(ctx context.Context, id, object string, opts ...ce.DownloadOption) (io.ReadCloser, error) {
	set := ce.ReadDownloadOptions(opts...)
	l.mu.Lock()
	if set.Offset > 0 {
		l.changed = true
	}
	changed := l.changed
	l.mu.Unlock()
	body, err := l.CE.Download(ctx, id, object, ce.WithAccept(set.Accept))
	if err != nil || !changed {
		if err == nil && set.Offset > 0 {
			_, err = io.CopyN(io.Discard, body, set.Offset)
		}
		return body, err
	}
	first := make([]byte, 1)
	if _, err := io.ReadFull(body, first); err != nil {
		return nil, err
	}
	var head string
	if first[0] == '[' {
		head = "[" + l.extra + ","
	} else {
		head = l.extra + "\n" + string(first)
	}
	r := io.MultiReader(strings.NewReader(head), body)
	if _, err := io.CopyN(io.Discard, r, set.Offset); err != nil {
		return nil, err
	}
	if set.Ranges != nil {
		set.Ranges.Ranged = false
	}
	return struct {
		io.Reader
		io.Closer
	}{r, body}, nil
}

// TestResumeStartsOverWhenTheSourceChanged: a resume that finds the
// checkpoint's last record changed (the source shifted under it) drops the
// checkpoint and collects the day again from the start, so no record is
// lost or doubled at the seam.
func TestResumeStartsOverWhenTheSourceChanged(t *testing.T) {
	e := newEnv(t, cetest.Options{}, Config{})
	id, want := partialCollect(t, e)
	extra := strings.Replace(want[0], `"distinct_id":"`, `"distinct_id":"late-`, 1)
	if extra == want[0] {
		t.Fatalf("cannot make a late record from %s", want[0])
	}
	ex := e.exporter(&lateRecord{CE: e.client, extra: extra}, nil)
	res, err := ex.Collect(t.Context(), id)
	if err != nil || res.Outcome != OutcomeCollected {
		t.Fatalf("Collect = %+v, %v; want collected", res, err)
	}
	e.checkPartition(t, "activities", "dt="+e.day(-1), append([]string{extra}, want...))
	started := false
	for _, l := range e.logs.lines(t) {
		if l["msg"] == "the source changed under the collect's checkpoint: starting over" && l["jobId"] == id {
			started = true
		}
	}
	if !started {
		t.Error("no start-over logged")
	}
	if n := e.multipartUploads(t); n != 0 {
		t.Errorf("%d multipart uploads left behind", n)
	}
}
