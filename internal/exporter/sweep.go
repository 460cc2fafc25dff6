package exporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/pkg/ce"
)

// SweepResult reports a sweep.
type SweepResult struct {
	Checked   int             `json:"checked"`             // unfinished jobs looked at
	Started   []string        `json:"started,omitempty"`   // PENDING jobs whose CE job the sweep started
	Collected []CollectResult `json:"collected,omitempty"` // collects of completed CE jobs, whatever their outcome
	Restarted []string        `json:"restarted,omitempty"` // CE jobs ended ERROR/ABORTED/CANCELLED, retried
	Failed    []string        `json:"failed,omitempty"`    // jobs that ran out of attempts
	Expired   []string        `json:"expired,omitempty"`   // jobs with no news past their deadline
	Released  []string        `json:"released,omitempty"`  // COLLECTING jobs whose collector lost its lease
	Waiting   int             `json:"waiting,omitempty"`   // jobs still running on CE, or too young to poll
	Postponed []string        `json:"postponed,omitempty"` // left for the next sweep (MaxJobs reached)
	Errors    []string        `json:"errors,omitempty"`    // per-job problems; the next sweep tries again
}

// Sweep looks at every unfinished export job: it starts the CE jobs a run
// could not start, polls PENDING jobs whose callback never came (older than
// Config.PollAfter), collects the completed ones, restarts those CE ended
// with ERROR, ABORTED or CANCELLED (up to Config.MaxAttempts, then FAILED),
// expires and cancels those with no news past their deadline, and takes
// back COLLECTING jobs whose collector lost its lease. It starts at most
// Config.MaxJobs CE jobs. Per-job problems are reported in the result;
// the error is for failures to read the ledger.
func (e *Exporter) Sweep(ctx context.Context) (SweepResult, error) {
	var res SweepResult
	budget := e.cfg.MaxJobs
	for listed, err := range e.jobs.List(ctx, "export-") {
		if err != nil {
			return res, err
		}
		if listed.Kind != ledger.KindExport || listed.Status.Final() || listed.Window == nil {
			continue
		}
		res.Checked++
		if err := e.sweepJob(ctx, listed.ID, &res, &budget); err != nil {
			res.Errors = append(res.Errors, listed.ID+": "+err.Error())
			e.log.WarnContext(ctx, "sweep: job left for the next sweep", "jobId", listed.ID, "err", err.Error())
		}
		if ctx.Err() != nil {
			break
		}
	}
	if ctx.Err() == nil {
		started := e.cfg.MaxJobs - budget
		e.advanceRuns(ctx, &res, &started)
	}
	e.log.InfoContext(ctx, "sweep done",
		slog.Int("checked", res.Checked), slog.Int("started", len(res.Started)),
		slog.Int("collected", len(res.Collected)), slog.Int("restarted", len(res.Restarted)),
		slog.Int("failed", len(res.Failed)), slog.Int("expired", len(res.Expired)),
		slog.Int("waiting", res.Waiting), slog.Int("errors", len(res.Errors)))
	e.emitMetrics(ctx, e.cfg.Objects, nil)
	return res, nil
}

func (e *Exporter) sweepJob(ctx context.Context, id string, res *SweepResult, budget *int) error {
	job, etag, err := e.jobs.Get(ctx, id)
	if err != nil {
		return err
	}
	now := e.now()

	if job.Status == ledger.StatusCollecting {
		if !e.leaseExpired(job, now) {
			return nil // a collector is at work
		}
		// The collector died (a crash, killed at the time limit or out of
		// memory): count its attempt, so a job that always kills its
		// collector ends. Its checkpoint stays, and the collect below
		// continues from it.
		fail := job.Attempts >= e.cfg.MaxAttempts
		lease := job.LeaseUntil
		if lease.IsZero() {
			lease = job.UpdatedAt.Add(e.cfg.Lease)
		}
		job.LastError = fmt.Sprintf("collect did not finish within its lease (until %s)", lease.UTC().Format(time.RFC3339))
		job.LeaseUntil = time.Time{}
		abandoned := readCheckpoint(job)
		if fail {
			job.Status = ledger.StatusFailed
			job.Collect = nil
		} else {
			job.Status = ledger.StatusPending
			job.Attempts++
		}
		if etag, err = e.jobs.Update(ctx, job, etag); err != nil {
			return conflictOK(err)
		}
		res.Released = append(res.Released, job.ID)
		e.logJob(ctx, slog.LevelWarn, "sweep: collector lost its lease; job released", job)
		if fail {
			e.dropUpload(ctx, job, abandoned)
			res.Failed = append(res.Failed, job.ID)
			e.jobEnded(ctx, job)
			return nil
		}
	}
	if job.Status != ledger.StatusPending {
		return nil
	}

	if job.CEJobID == "" {
		switch {
		case !job.Deadline.IsZero() && now.After(job.Deadline):
			return e.expire(ctx, job, etag, res, "no CE job could be started before the deadline")
		case now.Sub(job.StartedAt) < startGrace:
			res.Waiting++ // the run that claimed it is starting it
			return nil
		case *budget <= 0:
			res.Postponed = append(res.Postponed, job.ID)
			return nil
		}
		g, err := e.takeTokens(ctx, job.Object)
		if err != nil {
			return err
		}
		if g == nil {
			res.Postponed = append(res.Postponed, job.ID) // the hour's query budget is spent
			return nil
		}
		token, hash := e.newToken()
		job.StartedAt, job.TokenHash = now, hash
		if etag, err = e.jobs.Update(ctx, job, etag); err != nil {
			e.refund(ctx, g)
			return conflictOK(err)
		}
		*budget--
		job, _, err = e.startCE(ctx, job, etag, token)
		if err != nil {
			return err
		}
		res.Started = append(res.Started, job.ID)
		return nil
	}

	if now.Sub(job.StartedAt) < e.cfg.PollAfter {
		res.Waiting++ // its callback may still come
		return nil
	}
	st, err := e.ce.Status(ctx, job.CEJobID)
	if errors.Is(err, ce.ErrNotFound) {
		st, err = &ce.Job{ID: job.CEJobID, Status: ce.StatusError, Error: "CE job not found"}, nil
	}
	if err != nil {
		return fmt.Errorf("read CE job status: %w", err)
	}
	switch {
	case st.Status == ce.StatusCompleted:
		cr, err := e.Collect(ctx, job.ID)
		if cr.Error == "" && err != nil {
			cr.Error = err.Error()
		}
		res.Collected = append(res.Collected, cr)
		switch cr.Outcome {
		case OutcomeFailed:
			res.Failed = append(res.Failed, job.ID)
		case OutcomeRestarted:
			res.Restarted = append(res.Restarted, job.ID)
		}
		return nil
	case st.Status.Failed():
		if job.Attempts < e.cfg.MaxAttempts && *budget <= 0 {
			res.Postponed = append(res.Postponed, job.ID)
			return nil
		}
		job.CE = ceState(st, now)
		cr, err := e.ceFailed(ctx, job, etag, false, st, CollectResult{JobID: job.ID})
		if err != nil {
			return conflictOK(err)
		}
		if cr.Outcome == OutcomeFailed {
			res.Failed = append(res.Failed, job.ID)
		} else {
			*budget--
			res.Restarted = append(res.Restarted, job.ID)
		}
		return nil
	case !job.Deadline.IsZero() && now.After(job.Deadline):
		job.CE = ceState(st, now)
		return e.expire(ctx, job, etag, res, fmt.Sprintf("CE job %s still %s past the deadline", job.CEJobID, st.Status))
	}
	res.Waiting++
	if job.CE == nil || job.CE.Status != string(st.Status) {
		job.CE = ceState(st, now)
		if _, err := e.jobs.Update(ctx, job, etag); err != nil {
			return conflictOK(err)
		}
	}
	return nil
}

// expire ends a PENDING job that had no news past its deadline, and cancels
// its CE job.
func (e *Exporter) expire(ctx context.Context, job *ledger.Job, etag string, res *SweepResult, reason string) error {
	abandoned := readCheckpoint(job)
	job.Status = ledger.StatusExpired
	job.LastError = reason
	job.Collect = nil
	if _, err := e.jobs.Update(ctx, job, etag); err != nil {
		return conflictOK(err)
	}
	e.dropUpload(ctx, job, abandoned)
	if job.CEJobID != "" {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := e.ce.Cancel(cctx, job.CEJobID); err != nil {
			e.logJob(ctx, slog.LevelWarn, "cancel expired CE job", job, slog.String("err", err.Error()))
		}
	}
	res.Expired = append(res.Expired, job.ID)
	e.jobEnded(ctx, job)
	return nil
}

// conflictOK turns a lost conditional write into no error: someone else
// moved the job, and the next sweep looks again.
func conflictOK(err error) error {
	if errors.Is(err, ledger.ErrConflict) {
		return nil
	}
	return err
}
