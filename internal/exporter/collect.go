package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/s3stream"
	"github.com/cebulk/cebulk/pkg/ce"
)

// Outcome says what a collect did.
type Outcome string

// Collect outcomes.
const (
	// OutcomeCollected: the partition was published and the job is DONE.
	OutcomeCollected Outcome = "collected"
	// OutcomeIncomplete: the partition was published and the job is DONE,
	// but CE reported failed records: the partition lacks them (its
	// manifest says "complete": false).
	OutcomeIncomplete Outcome = "collected-incomplete"
	// OutcomeFinal: the job was already DONE, FAILED or EXPIRED; nothing done.
	OutcomeFinal Outcome = "already-final"
	// OutcomeNotReady: the CE job has not finished (or not started) yet.
	OutcomeNotReady Outcome = "not-ready"
	// OutcomeBusy: another collector holds the job.
	OutcomeBusy Outcome = "busy"
	// OutcomeDeferred: too little time was left before the invocation's
	// deadline; the job stays PENDING for the next sweep.
	OutcomeDeferred Outcome = "deferred"
	// OutcomeRetry: the attempt failed; the job is PENDING again.
	OutcomeRetry Outcome = "retry"
	// OutcomeRestarted: CE ended the job with ERROR, ABORTED or CANCELLED;
	// a new CE job was started (or will be, by the sweep).
	OutcomeRestarted Outcome = "restarted"
	// OutcomeFailed: no attempts are left; the job is FAILED.
	OutcomeFailed Outcome = "failed"
	// OutcomeContinued: the invocation's deadline came after the collect
	// checkpointed progress; the job is PENDING with its checkpoint and
	// another invocation continues it (no attempt is counted).
	OutcomeContinued Outcome = "continued"
)

// CollectResult reports a collect.
type CollectResult struct {
	JobID       string        `json:"jobId"`
	Object      string        `json:"object,omitempty"`
	Outcome     Outcome       `json:"outcome"`
	Status      ledger.Status `json:"status,omitempty"` // the job's status afterwards
	CEJobID     string        `json:"ceJobId,omitempty"`
	Partition   string        `json:"partition,omitempty"`
	Part        string        `json:"part,omitempty"`
	Records     int64         `json:"records,omitempty"`
	OutOfWindow int64         `json:"outOfWindow,omitempty"`
	CEFailed    int64         `json:"ceRecordsFailed,omitempty"`
	Bytes       int64         `json:"bytes,omitempty"`
	Error       string        `json:"error,omitempty"`
}

// errLost reports that a collector's job changed hands while it held it.
var errLost = errors.New("the job was taken over by another collector")

// Collect downloads the completed CE job of ledger job id into its
// partition. It takes the job first (PENDING → COLLECTING with If-Match),
// so two collectors never both run, and it is a no-op for a final job.
//
// When the CE job is not finished the job is released; when CE ended it
// with ERROR, ABORTED or CANCELLED a new CE job is started (or the job is
// FAILED after Config.MaxAttempts). When the download, the decoding or the
// upload fails, or the invocation's deadline comes, nothing is published:
// the multipart upload is aborted and the job goes back to PENDING with one
// more attempt (or FAILED), and the result carries the error.
//
// The error is only for failures the ledger does not record (the record
// could not be read or written): Lambda's retries of an asynchronous
// invocation are for those. A failure recorded in the ledger returns no
// error, since the sweep retries the job within Config.MaxAttempts; were
// Lambda to retry it too, a blip of a few minutes would spend every attempt.
func (e *Exporter) Collect(ctx context.Context, id string) (CollectResult, error) {
	res := CollectResult{JobID: id}
	job, etag, err := e.jobs.Get(ctx, id)
	if err != nil {
		return res, err
	}
	res.Object, res.Status, res.CEJobID = job.Object, job.Status, job.CEJobID
	if job.Kind != ledger.KindExport || job.Window == nil {
		return res, fmt.Errorf("job %s is not an export job", id)
	}
	res.Partition = job.Window.Partition
	switch {
	case job.Status.Final():
		res.Outcome = OutcomeFinal
		e.logJob(ctx, slog.LevelInfo, "collect: job already final", job)
		return res, nil
	case job.Status == ledger.StatusCollecting:
		res.Outcome = OutcomeBusy
		e.logJob(ctx, slog.LevelInfo, "collect: job held by another collector", job)
		return res, nil
	case job.CEJobID == "":
		res.Outcome = OutcomeNotReady
		e.logJob(ctx, slog.LevelInfo, "collect: CE job not started yet", job)
		return res, nil
	}

	workCtx, cancel, ok := e.workContext(ctx)
	if !ok {
		res.Outcome = OutcomeDeferred
		e.logJob(ctx, slog.LevelWarn, "collect: too close to the deadline, left for the sweep", job)
		return res, nil
	}
	defer cancel()

	job, etag, ok, err = e.take(ctx, job, etag)
	if err != nil {
		return res, err
	}
	if !ok {
		res.Outcome, res.Status = OutcomeBusy, job.Status
		if job.Status.Final() {
			res.Outcome = OutcomeFinal
		}
		return res, nil
	}
	res.Status, res.CEJobID = job.Status, job.CEJobID
	e.logJob(ctx, slog.LevelInfo, "collect: job taken", job)

	st, err := e.ce.Status(workCtx, job.CEJobID)
	if err != nil && !errors.Is(err, ce.ErrNotFound) {
		err = fmt.Errorf("collect %s: read CE job status: %w", id, err)
		job, rerr := e.release(ctx, job, etag, err)
		res.Status = job.Status
		if rerr != nil {
			return res, errors.Join(err, rerr)
		}
		// Recorded (LastError, PENDING): the sweep polls the job again.
		res.Outcome, res.Error = OutcomeRetry, err.Error()
		e.logJob(ctx, slog.LevelWarn, "collect: CE job status unavailable; left for the sweep", job, slog.String("err", err.Error()))
		return res, nil
	}
	if errors.Is(err, ce.ErrNotFound) {
		// CE no longer knows the job (its files are kept three days).
		st = &ce.Job{ID: job.CEJobID, Status: ce.StatusError, Error: "CE job not found"}
	}
	job.CE = ceState(st, e.now())
	switch {
	case !st.Status.Terminal():
		job, err = e.release(ctx, job, etag, nil)
		res.Outcome, res.Status = OutcomeNotReady, job.Status
		if err == nil {
			e.logJob(ctx, slog.LevelInfo, "collect: CE job not finished yet", job)
		}
		return res, err
	case st.Status.Failed():
		return e.ceFailed(ctx, job, etag, true, st, res)
	}

	t0 := time.Now()
	h := &held{job: job, etag: etag}
	run, err := e.export(workCtx, ctx, h, st)
	job, etag = h.job, h.etag
	if errors.Is(err, ce.ErrNotFound) {
		// The CE job's file is gone (CE keeps it three days): only a new
		// CE job can help.
		gone := &ce.Job{ID: job.CEJobID, Status: ce.StatusError, Error: "CE result file not found: " + err.Error()}
		job.CE = ceState(gone, e.now())
		return e.ceFailed(ctx, job, etag, true, gone, res)
	}
	if err != nil {
		stopped := workCtx.Err() != nil && ctx.Err() == nil
		if stopped && run.progressed {
			return e.continueLater(ctx, job, etag, res)
		}
		if stopped {
			err = fmt.Errorf("stopped %v before the invocation's deadline: %w", e.margin(ctx), err)
		}
		job, outcome, ferr := e.failAttempt(ctx, job, etag, "collect: "+err.Error())
		res.Outcome, res.Status, res.Error = outcome, job.Status, job.LastError
		e.logJob(ctx, slog.LevelWarn, "collect failed; nothing published", job,
			slog.Int64("durationMs", time.Since(t0).Milliseconds()), slog.String("err", err.Error()))
		if ferr != nil {
			return res, fmt.Errorf("collect %s: %w", id, errors.Join(err, ferr))
		}
		// The failed attempt is in the ledger and the sweep retries the
		// job: a retry of this invocation would only spend another attempt.
		return res, nil
	}
	m := run.manifest
	res.Part, res.Records, res.OutOfWindow, res.Bytes, res.CEFailed = m.Part, m.Records, m.OutOfWindow, m.Bytes, m.CERecordsFailed

	done := func(j *ledger.Job) {
		j.Status = ledger.StatusDone
		j.Collect, j.LeaseUntil = nil, time.Time{}
		j.CE = job.CE
		j.LastError = ""
		j.Result = &ledger.Result{
			Records:     m.Records,
			OutOfWindow: m.OutOfWindow,
			Failed:      m.CERecordsFailed,
			Bytes:       m.Bytes,
			Keys:        []string{m.Part, manifestKey(job), successKey(job)},
		}
	}
	job, _, err = e.updateHeld(ctx, job, etag, done)
	if err != nil {
		return res, fmt.Errorf("collect %s: published, but marking it DONE failed: %w", id, err)
	}
	res.Outcome, res.Status = OutcomeCollected, job.Status
	level, msg := slog.LevelInfo, "export job done"
	if !m.Complete {
		res.Outcome = OutcomeIncomplete
		level, msg = slog.LevelWarn, "export job done, but CE reported failed records"
	}
	e.logJob(ctx, level, msg, job,
		slog.Int64("records", m.Records), slog.Int64("outOfWindow", m.OutOfWindow),
		slog.Int64("ceRecordsFailed", m.CERecordsFailed), slog.Int64("bytes", m.Bytes),
		slog.Int64("durationMs", time.Since(t0).Milliseconds()))

	if !Snapshot(job.Object) {
		if _, err := e.advanceWatermark(ctx, job.Object); err != nil {
			// The next run catches up; the partition is published.
			e.logJob(ctx, slog.LevelWarn, "watermark not advanced", job, slog.String("err", err.Error()))
		}
	}
	e.emitMetrics(ctx, []string{job.Object}, &res)
	return res, nil
}

// workContext returns the context a collect works under: the invocation's
// deadline minus the safety margin. ok is false when less than MinCollect
// would be left. Without a deadline (the CLI) it is ctx itself.
func (e *Exporter) workContext(ctx context.Context) (context.Context, context.CancelFunc, bool) {
	dl, has := ctx.Deadline()
	if !has {
		c, cancel := context.WithCancel(ctx)
		return c, cancel, true
	}
	end := dl.Add(-e.margin(ctx))
	if time.Until(end) < e.scaled(ctx, e.cfg.MinCollect) {
		return nil, nil, false
	}
	c, cancel := context.WithDeadline(ctx, end)
	return c, cancel, true
}

type invocationKey struct{}

// WithInvocation marks ctx as one whole invocation (of a Lambda function):
// the time from now to its deadline is the function's timeout. Safety
// margins are then at most a quarter of it, so that a short timeout still
// leaves time to work.
func WithInvocation(ctx context.Context) context.Context {
	dl, ok := ctx.Deadline()
	if !ok {
		return ctx
	}
	return context.WithValue(ctx, invocationKey{}, time.Until(dl))
}

// scaled returns d, at most a quarter of the invocation's length.
func (e *Exporter) scaled(ctx context.Context, d time.Duration) time.Duration {
	if total, ok := ctx.Value(invocationKey{}).(time.Duration); ok {
		return min(d, total/4)
	}
	return d
}

// margin is the safety margin of an invocation.
func (e *Exporter) margin(ctx context.Context) time.Duration {
	return e.scaled(ctx, e.cfg.SafetyMargin)
}

// continueLater ends an invocation whose deadline came after the collect
// checkpointed progress: the job goes back to PENDING with its checkpoint,
// without counting an attempt, and another invocation is queued (without
// Config.Continue, or when queueing fails, the sweep resumes it).
func (e *Exporter) continueLater(ctx context.Context, job *ledger.Job, etag string, res CollectResult) (CollectResult, error) {
	j, err := e.release(ctx, job, etag, nil)
	if err != nil {
		return res, fmt.Errorf("collect %s: release for the next invocation: %w", job.ID, err)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	res.Outcome, res.Status = OutcomeContinued, j.Status
	attrs := []slog.Attr{}
	if cp := readCheckpoint(j); cp != nil {
		attrs = append(attrs, slog.Int("parts", len(cp.Parts)), slog.Int64("offset", cp.Source.Offset), slog.Int64("records", cp.Records))
	}
	if e.cfg.Continue == nil {
		e.logJob(ctx, slog.LevelInfo, "collect checkpointed at the deadline; the sweep continues it", j, attrs...)
		return res, nil
	}
	if err := e.cfg.Continue(rctx, j.ID); err != nil {
		e.logJob(ctx, slog.LevelWarn, "collect checkpointed at the deadline; queueing its continuation failed, the sweep continues it", j,
			append(attrs, slog.String("err", err.Error()))...)
		return res, nil
	}
	e.logJob(ctx, slog.LevelInfo, "collect checkpointed at the deadline; continues in a new invocation", j, attrs...)
	return res, nil
}

// take moves a PENDING job to COLLECTING with a conditional write. ok is
// false when someone else holds it or it is final; the returned job is then
// the latest seen.
func (e *Exporter) take(ctx context.Context, job *ledger.Job, etag string) (*ledger.Job, string, bool, error) {
	for range 3 {
		if job.Status != ledger.StatusPending || job.CEJobID == "" {
			return job, etag, false, nil
		}
		job.Status = ledger.StatusCollecting
		job.LeaseUntil = e.leaseUntil(ctx)
		tag, err := e.jobs.Update(ctx, job, etag)
		if err == nil {
			return job, tag, true, nil
		}
		if !errors.Is(err, ledger.ErrConflict) {
			return job, etag, false, err
		}
		// Someone wrote first: another collector, or the webhook recording
		// a callback. Look again.
		if job, etag, err = e.jobs.Get(ctx, job.ID); err != nil {
			return job, etag, false, err
		}
	}
	return job, etag, false, nil
}

// updateHeld writes a change to a job this collector holds (COLLECTING).
// The webhook may have written the record meanwhile (a callback's
// hand-off), so on a lost race the change is applied again to the latest
// record, as long as it is still this collector's: COLLECTING, same CE job,
// same attempt.
func (e *Exporter) updateHeld(ctx context.Context, job *ledger.Job, etag string, change func(*ledger.Job)) (*ledger.Job, string, error) {
	ceJobID, attempts := job.CEJobID, job.Attempts
	for range 4 {
		next := *job
		change(&next)
		tag, err := e.jobs.Update(ctx, &next, etag)
		if err == nil {
			return &next, tag, nil
		}
		if !errors.Is(err, ledger.ErrConflict) {
			return job, etag, err
		}
		fresh, ftag, err := e.jobs.Get(ctx, job.ID)
		if err != nil {
			return job, etag, err
		}
		if fresh.Status != ledger.StatusCollecting || fresh.CEJobID != ceJobID || fresh.Attempts != attempts {
			return fresh, ftag, fmt.Errorf("update job %s: %w", job.ID, errLost)
		}
		job, etag = fresh, ftag
	}
	return job, etag, fmt.Errorf("update job %s: it keeps changing", job.ID)
}

// release puts a held job back to PENDING without counting an attempt (the
// CE job is not finished, or CE could not be asked), on a fresh context so
// that it happens even when ctx is done.
func (e *Exporter) release(ctx context.Context, job *ledger.Job, etag string, cause error) (*ledger.Job, error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	j, _, err := e.updateHeld(rctx, job, etag, func(j *ledger.Job) {
		j.Status = ledger.StatusPending
		j.LeaseUntil = time.Time{}
		j.CE = job.CE
		if cause != nil {
			j.LastError = cause.Error()
		}
	})
	if err != nil {
		e.logJob(ctx, slog.LevelError, "release job", job, slog.String("err", err.Error()))
	}
	return j, err
}

// failAttempt records a failed collect: back to PENDING with one more
// attempt, or FAILED when none is left. It writes on a fresh context; the
// error says the failure could not be recorded.
func (e *Exporter) failAttempt(ctx context.Context, job *ledger.Job, etag, reason string) (*ledger.Job, Outcome, error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	outcome := OutcomeRetry
	fail := job.Attempts >= e.cfg.MaxAttempts
	if fail {
		outcome = OutcomeFailed
	}
	j, _, err := e.updateHeld(rctx, job, etag, func(j *ledger.Job) {
		j.CE = job.CE
		j.LastError = reason
		j.LeaseUntil = time.Time{}
		if fail {
			j.Status = ledger.StatusFailed
			j.Collect = nil
			return
		}
		// The checkpoint stays: the next attempt resumes from it.
		j.Status = ledger.StatusPending
		j.Attempts++
	})
	if err != nil {
		e.logJob(ctx, slog.LevelError, "release job after a failed collect", job, slog.String("err", err.Error()))
		return j, outcome, err
	}
	if fail {
		e.dropUpload(ctx, j, readCheckpoint(job))
		e.jobEnded(ctx, j)
	}
	return j, outcome, nil
}

// ceFailed handles a CE job that ended ERROR, ABORTED or CANCELLED: a new
// CE job while attempts are left, else FAILED with CE's error kept. held
// says whether the job is COLLECTING by this caller.
func (e *Exporter) ceFailed(ctx context.Context, job *ledger.Job, etag string, held bool, st *ce.Job, res CollectResult) (CollectResult, error) {
	msg := st.Error
	if msg == "" {
		msg = st.Message
	}
	reason := fmt.Sprintf("CE job %s ended %s", st.ID, st.Status)
	if msg != "" {
		reason += ": " + msg
	}
	write := func(change func(*ledger.Job)) (*ledger.Job, string, error) {
		if held {
			return e.updateHeld(ctx, job, etag, change)
		}
		next := *job
		change(&next)
		tag, err := e.jobs.Update(ctx, &next, etag)
		if err != nil {
			return job, etag, err
		}
		return &next, tag, nil
	}
	ceState := job.CE
	// The CE job is over: an upload of its download is abandoned.
	abandoned := readCheckpoint(job)
	if job.Attempts >= e.cfg.MaxAttempts {
		j, _, err := write(func(j *ledger.Job) {
			j.Status = ledger.StatusFailed
			j.CE = ceState
			j.LastError = reason
			j.Collect, j.LeaseUntil = nil, time.Time{}
		})
		if err != nil {
			return res, err
		}
		e.dropUpload(ctx, j, abandoned)
		res.Outcome, res.Status, res.Error = OutcomeFailed, j.Status, reason
		e.jobEnded(ctx, j)
		return res, nil
	}
	token, hash := e.newToken()
	now := e.now()
	j, tag, err := write(func(j *ledger.Job) {
		j.Status = ledger.StatusPending
		j.CE = ceState
		j.LastError = reason
		j.Attempts++
		j.CEJobID = ""
		j.StartedAt = now
		j.Deadline = now.Add(e.cfg.JobDeadline)
		j.TokenHash = hash
		j.Collect, j.LeaseUntil = nil, time.Time{}
	})
	if err != nil {
		return res, err
	}
	e.dropUpload(ctx, j, abandoned)
	e.logJob(ctx, slog.LevelWarn, "CE job failed; starting a new one", j, slog.String("reason", reason))
	res.Outcome, res.Status, res.Error = OutcomeRestarted, j.Status, reason
	g, err := e.takeTokens(ctx, j.Object)
	if err != nil || g == nil {
		// The job waits PENDING without a CE job for a sweep with budget.
		e.logJob(ctx, slog.LevelInfo, "query budget spent: the sweep starts the new CE job", j)
		return res, nil
	}
	j, _, err = e.startCE(ctx, j, tag, token)
	res.CEJobID = j.CEJobID
	if err != nil && !errors.Is(err, errStart) {
		return res, err
	}
	return res, nil
}

// ceState converts a CE job status for the ledger.
func ceState(st *ce.Job, now time.Time) *ledger.CEState {
	msg := st.Error
	if msg == "" && st.Status.Failed() {
		msg = st.Message
	}
	return &ledger.CEState{
		Status:             string(st.Status),
		RecordsCount:       st.RecordsCount,
		RecordsFailedCount: st.RecordsFailedCount,
		Error:              msg,
		CheckedAt:          now,
	}
}

// Manifest describes a published partition. It is written to
// _manifest.json after the part and before _SUCCESS.
type Manifest struct {
	Object string `json:"object"`
	// Backend is where the records came from: "ce" (CE bulk) or
	// "mixpanel" (Mixpanel's own export API).
	Backend         string         `json:"backend"`
	Window          ManifestWindow `json:"window"`
	Partition       string         `json:"partition"`
	CEJobID         string         `json:"ceJobId"`
	LedgerJobID     string         `json:"ledgerJobId"`
	Part            string         `json:"part"` // the key of the one data object
	Records         int64          `json:"records"`
	OutOfWindow     int64          `json:"outOfWindow"`
	CERecordsCount  int64          `json:"ceRecordsCount"`
	CERecordsFailed int64          `json:"ceRecordsFailed"`
	// Complete is false when CE reported failed records: the partition
	// holds what CE delivered, which is not everything.
	Complete  bool      `json:"complete"`
	Bytes     int64     `json:"bytes"`  // size of the part object
	SHA256    string    `json:"sha256"` // hex SHA-256 of the part object
	Format    string    `json:"format"` // "jsonl.gz"
	CreatedAt time.Time `json:"createdAt"`
	Version   int       `json:"version"`
	// TimeBasis (utc or project) and Timezone say how a day object's
	// window was cut: under project, Window holds wall-clock readings of
	// Timezone written as UTC, as properties.time counts them.
	TimeBasis TimeBasis `json:"timeBasis,omitempty"`
	Timezone  string    `json:"timezone,omitempty"`
	// Revision counts the exports of the partition: 1 for the first, one
	// more for each that replaced it (a backfill or a look-back
	// re-export). Replaced sums up the revision this one replaced, so a
	// reader can see that a day grew (late events).
	Revision int               `json:"revision"`
	Replaced *ReplacedRevision `json:"replaced,omitempty"`
}

// ReplacedRevision is what a manifest says of the revision it replaced.
type ReplacedRevision struct {
	Revision       int       `json:"revision"`
	Records        int64     `json:"records"`
	CERecordsCount int64     `json:"ceRecordsCount"`
	CEJobID        string    `json:"ceJobId"`
	CreatedAt      time.Time `json:"createdAt"`
}

// ManifestWindow is the job's window, [From, To). A snapshot has From == To.
type ManifestWindow struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// partitionPrefix returns exports/<object>/<partition>/.
func partitionPrefix(job *ledger.Job) string {
	return "exports/" + job.Object + "/" + job.Window.Partition + "/"
}

// partKey returns the key of the data object the current CE job of job writes.
func partKey(job *ledger.Job) string {
	return partitionPrefix(job) + "part-" + job.CEJobID + ".jsonl.gz"
}

func manifestKey(job *ledger.Job) string { return partitionPrefix(job) + "_manifest.json" }
func successKey(job *ledger.Job) string  { return partitionPrefix(job) + "_SUCCESS" }

// publish writes the manifest, then _SUCCESS, then removes the partition's
// other parts. When the manifest or _SUCCESS cannot be written, it removes
// what it wrote (best effort), so the partition holds nothing of this
// attempt, and calls restore while the old manifest is still in place; the
// attempt is retried.
func (e *Exporter) publish(ctx context.Context, job *ledger.Job, m *Manifest, restore func()) error {
	m.Revision = 1
	switch raw, _, err := e.store.ReadSmall(ctx, e.cfg.Bucket, manifestKey(job)); {
	case errors.Is(err, s3stream.ErrNotFound):
	case err != nil:
		restore()
		return fmt.Errorf("read the manifest replaced: %w", err)
	default:
		var prev Manifest
		if json.Unmarshal(raw, &prev) == nil && prev.CEJobID != m.CEJobID {
			m.Revision = max(prev.Revision, 1) + 1
			m.Replaced = &ReplacedRevision{Revision: max(prev.Revision, 1), Records: prev.Records,
				CERecordsCount: prev.CERecordsCount, CEJobID: prev.CEJobID, CreatedAt: prev.CreatedAt}
		} else if prev.CEJobID == m.CEJobID {
			// A collect of the same CE job again: the same revision.
			m.Revision, m.Replaced = max(prev.Revision, 1), prev.Replaced
		}
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest: %v", err)
	}
	undo := func(keys ...string) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		for _, k := range keys {
			if err := e.store.Delete(cctx, e.cfg.Bucket, k); err != nil {
				e.logJob(ctx, slog.LevelWarn, "remove an unpublished object", job, slog.String("key", k), slog.String("err", err.Error()))
			}
		}
	}
	if _, err := e.store.WriteSmall(ctx, e.cfg.Bucket, manifestKey(job), append(b, '\n'), "application/json", noCondition); err != nil {
		undo(m.Part)
		restore()
		return fmt.Errorf("write manifest: %w", err)
	}
	if _, err := e.store.WriteSmall(ctx, e.cfg.Bucket, successKey(job), nil, "application/octet-stream", noCondition); err != nil {
		undo(manifestKey(job), m.Part)
		return fmt.Errorf("write _SUCCESS: %w", err)
	}
	for info, err := range e.store.List(ctx, e.cfg.Bucket, partitionPrefix(job)+"part-") {
		if err != nil {
			return fmt.Errorf("list older parts: %w", err)
		}
		if info.Key == m.Part || strings.Contains(strings.TrimPrefix(info.Key, partitionPrefix(job)), "/") {
			continue
		}
		if err := e.store.Delete(ctx, e.cfg.Bucket, info.Key); err != nil {
			return fmt.Errorf("delete older part: %w", err)
		}
	}
	return nil
}
