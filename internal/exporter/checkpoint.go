package exporter

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/s3stream"
	"github.com/cebulk/cebulk/pkg/ce"
)

// checkpoint is a collect's progress, kept in the ledger job
// (ledger.Job.Collect) after each part, so that the next invocation (or
// the sweep, after a collector died) continues where it stopped: the same
// multipart upload, the parts already in it, and the CE download from the
// byte after the last record those parts hold.
type checkpoint struct {
	CEJobID  string          `json:"ceJobId"`
	Key      string          `json:"key"`
	UploadID string          `json:"uploadId"`
	Parts    []s3stream.Part `json:"parts,omitempty"`
	// Source is the CE download's position after the last record in Parts.
	Source ce.Position `json:"source"`
	// Seam names the last record in Parts: a resume reads it again first
	// and starts over when it differs (the source changed).
	Seam        *seam `json:"seam,omitempty"`
	Records     int64 `json:"records"`
	OutOfWindow int64 `json:"outOfWindow"`
	Bytes       int64 `json:"bytes"`
	// SHA256 is the marshalled state (encoding.BinaryMarshaler) of the
	// SHA-256 of Parts' bytes.
	SHA256 []byte `json:"sha256State,omitempty"`
	// Invocations counts the invocations that worked on this upload.
	Invocations int `json:"invocations"`
	// Ranged counts the resumes CE served with a range (the others
	// re-downloaded and skipped).
	Ranged int `json:"ranged,omitempty"`
}

// readCheckpoint returns job's checkpoint, or nil.
func readCheckpoint(job *ledger.Job) *checkpoint {
	if len(job.Collect) == 0 {
		return nil
	}
	var cp checkpoint
	if json.Unmarshal(job.Collect, &cp) != nil || cp.UploadID == "" {
		return nil
	}
	return &cp
}

func setCheckpoint(job *ledger.Job, cp *checkpoint) {
	if cp == nil {
		job.Collect = nil
		return
	}
	b, _ := json.Marshal(cp) // plain data: never fails
	job.Collect = b
}

// held is a job this collector holds (COLLECTING) and its ETag.
type held struct {
	job  *ledger.Job
	etag string
}

// leaseGrace is added to an invocation's deadline to make a collector's
// lease: past it, the invocation is certainly over.
const leaseGrace = time.Minute

// leaseUntil is the lease a collector working under ctx takes: its
// invocation's deadline (the function's own timeout) plus a grace, or
// Config.Lease from now without a deadline.
func (e *Exporter) leaseUntil(ctx context.Context) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return e.now().Add(time.Until(dl) + leaseGrace)
	}
	return e.now().Add(e.cfg.Lease)
}

// leaseExpired reports whether a COLLECTING job's collector is presumed
// dead.
func (e *Exporter) leaseExpired(job *ledger.Job, now time.Time) bool {
	if !job.LeaseUntil.IsZero() {
		return now.After(job.LeaseUntil)
	}
	return now.Sub(job.UpdatedAt) >= e.cfg.Lease
}

// dropUpload aborts the multipart upload of a checkpoint that is being
// abandoned (the job ended, or its CE job was replaced). It runs after the
// ledger no longer points at the upload, on a fresh context; a failure is
// logged (the bucket's lifecycle rule removes what is left after 7 days).
func (e *Exporter) dropUpload(ctx context.Context, job *ledger.Job, cp *checkpoint) {
	if cp == nil {
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if err := e.store.AbortMultipart(actx, e.cfg.Bucket, cp.Key, cp.UploadID); err != nil {
		e.logJob(ctx, slog.LevelError, "abort an abandoned multipart upload", job,
			slog.String("key", cp.Key), slog.String("uploadId", cp.UploadID), slog.String("err", err.Error()))
		return
	}
	e.logJob(ctx, slog.LevelInfo, "abandoned multipart upload aborted", job, slog.String("key", cp.Key))
}

// exportRun is the outcome of one invocation's share of a collect.
type exportRun struct {
	manifest *Manifest
	// progressed is true when this invocation checkpointed at least one
	// part: a deadline then is a continuation, not a failure.
	progressed bool
}

// export streams the CE job's download into the job's part and publishes
// the partition, continuing from the job's checkpoint when it has one for
// this CE job. Reading from CE is bound to workCtx (the deadline minus the
// safety margin); S3 and ledger calls use ctx, so that a part being
// uploaded when workCtx ends is still uploaded and checkpointed.
//
// The pipeline is: CE download (from the checkpoint's byte offset) →
// record framer → window filter → gzip members (in parallel) → SHA-256
// and byte count → multipart parts of whole members, each checkpointed in
// the ledger. Memory is a few blocks per CPU and two parts, whatever the
// download's size.
//
// A partition published before (a backfill of a done day) stays published
// while the download runs. Only once every record is in and checked, and
// before the new part becomes visible, is its _SUCCESS withdrawn, so that a
// reader trusting _SUCCESS never sees the old and the new part side by
// side; it is written back if the replacement fails before its manifest is
// written.
func (e *Exporter) export(workCtx, ctx context.Context, h *held, st *ce.Job) (exportRun, error) {
	return e.exportFrom(workCtx, ctx, h, st, false)
}

// exportFrom is export; restarted is set when the checkpoint was dropped
// because the source changed under it.
func (e *Exporter) exportFrom(workCtx, ctx context.Context, h *held, st *ce.Job, restarted bool) (exportRun, error) {
	var out exportRun
	t0 := time.Now()
	job := h.job
	key := partKey(job)
	cp := readCheckpoint(job)
	if cp != nil && (cp.CEJobID != job.CEJobID || cp.Key != key) {
		// An upload of an earlier CE job: abandoned.
		old := cp
		if err := e.checkpoint(ctx, h, nil); err != nil {
			return out, err
		}
		e.dropUpload(ctx, job, old)
		cp = nil
	}
	if cp == nil {
		id, err := e.store.CreateMultipart(ctx, e.cfg.Bucket, key, s3stream.PutOptions{ContentType: partContentType})
		if err != nil {
			return out, err
		}
		cp = &checkpoint{CEJobID: job.CEJobID, Key: key, UploadID: id}
	}
	cp.Invocations++
	if err := e.checkpoint(ctx, h, cp); err != nil {
		return out, err
	}

	sum := sha256.New()
	if len(cp.SHA256) > 0 {
		if err := sum.(encoding.BinaryUnmarshaler).UnmarshalBinary(cp.SHA256); err != nil {
			return out, fmt.Errorf("checkpoint: restore SHA-256 state: %v", err)
		}
	}
	var rng ce.RangeResult
	from := cp.Source
	if cp.Seam != nil {
		from = cp.Seam.At // read the last record kept again, to check it
	}
	body, err := e.ce.Download(workCtx, job.CEJobID, job.Object, ce.WithOffset(from.Offset, &rng))
	if err != nil {
		return out, fmt.Errorf("download: %w", err)
	}
	defer body.Close()
	in := &countingReader{r: body}
	rr := ce.ResumeRecordReader(in, from)
	if cp.Seam != nil {
		rec, err := rr.NextView()
		if err != nil && !errors.Is(err, io.EOF) {
			return out, fmt.Errorf("download: read the checkpoint's last record again: %w", err)
		}
		if err != nil || !cp.Seam.matches(rec) || rr.Position() != cp.Source {
			// The source is not the one the parts were cut from (a live
			// export that changed, a file served differently): what
			// follows cannot be joined to them. Start the day over.
			body.Close()
			e.logJob(ctx, slog.LevelWarn, "the source changed under the collect's checkpoint: starting over", job,
				slog.Int64("offset", cp.Source.Offset), slog.Int("parts", len(cp.Parts)), slog.Bool("ranged", rng.Ranged))
			if err := e.checkpoint(ctx, h, nil); err != nil {
				return out, err
			}
			e.dropUpload(ctx, job, cp)
			if restarted {
				return out, errors.New("the source changed under the checkpoint twice in one collect")
			}
			return e.exportFrom(workCtx, ctx, h, st, true)
		}
	}
	if cp.Source.Offset > 0 {
		if rng.Ranged {
			cp.Ranged++
		}
		e.logJob(ctx, slog.LevelInfo, "collect resumed from its checkpoint", job,
			slog.Int64("offset", cp.Source.Offset), slog.Int("parts", len(cp.Parts)),
			slog.Bool("ranged", rng.Ranged), slog.Int("invocation", cp.Invocations))
	}

	enc := &encoder{
		from: job.Window.From, to: job.Window.To, all: Snapshot(job.Object),
		want:    st.RecordsCount - st.RecordsFailedCount,
		records: cp.Records, outOfWindow: cp.OutOfWindow, bytes: cp.Bytes,
		sum: sum,
	}
	var last s3stream.Part
	encErr := enc.run(ctx, rr, in, func(data []byte, at cut) error {
		part, err := e.store.UploadPart(ctx, e.cfg.Bucket, key, cp.UploadID, int32(len(cp.Parts)+1), data)
		if err != nil {
			return err
		}
		if at.last {
			// Every record is in and checked: the partition is published
			// below, with this part.
			last = part
			return nil
		}
		next := *cp
		next.Parts = append(append([]s3stream.Part(nil), cp.Parts...), part)
		next.Source, next.Seam = at.pos, at.seam
		next.Records, next.OutOfWindow, next.Bytes, next.SHA256 = at.records, at.outOfWindow, at.bytes, at.sum
		if err := e.checkpoint(ctx, h, &next); err != nil {
			return err
		}
		*cp = next
		out.progressed = true
		return nil
	})
	body.Close()
	if encErr != nil {
		return out, encErr
	}
	e.logJob(ctx, slog.LevelInfo, "download encoded", job,
		slog.Int64("records", enc.records), slog.Int64("outOfWindow", enc.outOfWindow),
		slog.Int64("downloadedBytes", in.n), slog.Int("parts", len(cp.Parts)+1),
		slog.Int64("durationMs", time.Since(t0).Milliseconds()))

	// Every record is in and checked: withdraw an old _SUCCESS, then make
	// the part visible.
	withdrawn, err := e.withdrawSuccess(ctx, job)
	if err != nil {
		return out, err
	}
	restore := func() {
		if !withdrawn {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		if _, err := e.store.WriteSmall(rctx, e.cfg.Bucket, successKey(job), nil, "application/octet-stream", noCondition); err != nil {
			e.logJob(ctx, slog.LevelError, "restore the old partition's _SUCCESS", job, slog.String("err", err.Error()))
		}
	}
	parts := append(append([]s3stream.Part(nil), cp.Parts...), last)
	if _, err := e.store.CompleteMultipart(ctx, e.cfg.Bucket, key, cp.UploadID, parts); err != nil {
		restore()
		return out, err
	}
	e.logJob(ctx, slog.LevelInfo, "part uploaded", job,
		slog.String("key", key),
		slog.Int64("records", enc.records), slog.Int64("outOfWindow", enc.outOfWindow),
		slog.Int64("bytes", enc.bytes), slog.Int("parts", len(parts)), slog.Int("invocations", cp.Invocations),
		slog.Int64("durationMs", time.Since(t0).Milliseconds()))

	m := &Manifest{
		Object:          job.Object,
		Backend:         e.cfg.Backend,
		Window:          ManifestWindow{From: job.Window.From.UTC(), To: job.Window.To.UTC()},
		Partition:       job.Window.Partition,
		CEJobID:         job.CEJobID,
		LedgerJobID:     job.ID,
		Part:            key,
		Records:         enc.records,
		OutOfWindow:     enc.outOfWindow,
		CERecordsCount:  st.RecordsCount,
		CERecordsFailed: st.RecordsFailedCount,
		Complete:        st.RecordsFailedCount == 0,
		Bytes:           enc.bytes,
		SHA256:          hex.EncodeToString(enc.sum.Sum(nil)),
		Format:          partFormat,
		CreatedAt:       e.now(),
		Version:         1,
		TimeBasis:       e.basisOf(job),
		Timezone:        e.zoneOf(job),
	}
	// The upload is complete: the checkpoint must not be resumed (nor
	// aborted) any more.
	if err := e.checkpoint(ctx, h, nil); err != nil {
		e.logJob(ctx, slog.LevelWarn, "clear the checkpoint", job, slog.String("err", err.Error()))
	}
	t1 := time.Now()
	if err := e.publish(ctx, h.job, m, restore); err != nil {
		return out, err
	}
	e.logJob(ctx, slog.LevelInfo, "partition published", h.job,
		slog.String("key", manifestKey(job)), slog.Int64("records", m.Records), slog.Int64("bytes", m.Bytes),
		slog.Int64("durationMs", time.Since(t1).Milliseconds()))
	out.manifest = m
	return out, nil
}

// withdrawSuccess deletes the partition's _SUCCESS when it exists and
// reports whether it did.
func (e *Exporter) withdrawSuccess(ctx context.Context, job *ledger.Job) (bool, error) {
	_, _, err := e.store.ReadSmall(ctx, e.cfg.Bucket, successKey(job))
	if errors.Is(err, s3stream.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check _SUCCESS: %w", err)
	}
	if err := e.store.Delete(ctx, e.cfg.Bucket, successKey(job)); err != nil {
		return false, fmt.Errorf("withdraw _SUCCESS: %w", err)
	}
	return true, nil
}

// checkpoint writes cp (nil clears it) into the held job, renewing the
// lease when there is no deadline to derive it from.
func (e *Exporter) checkpoint(ctx context.Context, h *held, cp *checkpoint) error {
	lease := h.job.LeaseUntil
	if _, ok := ctx.Deadline(); !ok {
		lease = e.leaseUntil(ctx)
	}
	j, tag, err := e.updateHeld(ctx, h.job, h.etag, func(j *ledger.Job) {
		setCheckpoint(j, cp)
		j.LeaseUntil = lease
	})
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	h.job, h.etag = j, tag
	return nil
}
