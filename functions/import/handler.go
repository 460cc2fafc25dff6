package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/aws/aws-lambda-go/events"

	"github.com/cebulk/cebulk/internal/importer"
)

// The actions of the function's non-S3 payloads.
const (
	actionResume   = "resume"
	actionFinalize = "finalize"
	actionSweep    = "sweep"
)

// request is every payload the function accepts, decoded leniently:
//   - an S3 event (Records[].s3; keys arrive URL-encoded);
//   - {"action":"resume","importId":"import-…"}: continue a checkpointed import;
//   - {"action":"finalize","jobId":"import-…[-chunk-0001]"}: write the report
//     once every chunk's CE job is terminal (sent by the webhook);
//   - {"action":"sweep"} (or an EventBridge "Scheduled Event"): finalize
//     imports whose callbacks never came, resume stalled ones.
//
// maxChunks (optional, on an S3 event or a resume; AWS never sends it) caps
// the chunks this invocation uploads before it checkpoints and re-invokes
// itself: tests use it to force a checkpoint, operators to bound one run.
type request struct {
	Records    []s3Record `json:"Records,omitempty"`
	Action     string     `json:"action,omitempty"`
	ImportID   string     `json:"importId,omitempty"`
	JobID      string     `json:"jobId,omitempty"`
	MaxChunks  int        `json:"maxChunks,omitempty"`
	DetailType string     `json:"detail-type,omitempty"`
	Event      string     `json:"Event,omitempty"` // "s3:TestEvent"
}

// s3Record is the part of an S3 event record the function reads. Its time
// fields are left out: moto writes eventTime without a zone, which
// events.S3EventRecord refuses. events.S3Object decodes URLDecodedKey.
type s3Record struct {
	EventSource string          `json:"eventSource"`
	EventName   string          `json:"eventName"`
	S3          events.S3Entity `json:"s3"`
}

// response is what an invocation returns (for tests and manual invokes).
type response struct {
	Results []importer.Result     `json:"results,omitempty"`
	Sweep   *importer.SweepResult `json:"sweep,omitempty"`
}

// importRunner is what the handler needs of the importer.
type importRunner interface {
	HandleObject(ctx context.Context, bucket, key, etag string, size int64, opts ...importer.RunOption) (importer.Result, error)
	Resume(ctx context.Context, importID string, opts ...importer.RunOption) (importer.Result, error)
	Finalize(ctx context.Context, ledgerJobID string) (importer.Result, error)
	Sweep(ctx context.Context) (importer.SweepResult, error)
}

type handler struct {
	imp importRunner
	log *slog.Logger
}

// handle dispatches one invocation. Errors are logged once here and
// returned, so Lambda retries the invocation (then sends it to the failure
// queue); the importer's ledger makes every retry safe. The importer
// returns errors only for failures its records do not hold: one they hold
// comes back as StatusRetry, for the sweep. A sweep never fails the
// invocation: the next scheduled sweep is its retry, so its problems are
// logged, not queued.
func (h *handler) handle(ctx context.Context, raw json.RawMessage) (response, error) {
	var req request
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&req); err != nil {
		err = fmt.Errorf("decode payload: %v", err)
		h.log.ErrorContext(ctx, "invalid payload", "err", err)
		return response{}, err
	}
	var opts []importer.RunOption
	if req.MaxChunks > 0 {
		opts = append(opts, importer.MaxChunks(req.MaxChunks))
	}
	switch {
	case req.Records != nil:
		return h.objects(ctx, req.Records, opts)
	case req.Action == actionResume && req.ImportID != "":
		res, err := h.imp.Resume(ctx, req.ImportID, opts...)
		return h.one(ctx, res, err, "resume", "importId", req.ImportID)
	case req.Action == actionFinalize && req.JobID != "":
		res, err := h.imp.Finalize(ctx, req.JobID)
		return h.one(ctx, res, err, "finalize", "jobId", req.JobID)
	case req.Action == actionSweep, req.DetailType == "Scheduled Event":
		s, err := h.imp.Sweep(ctx)
		if err != nil {
			h.log.ErrorContext(ctx, "sweep failed; the next sweep tries again", "err", err, "checked", s.Checked,
				"finalized", s.Finalized, "waiting", s.Waiting, "resumed", s.Resumed)
			return response{Sweep: &s}, nil
		}
		h.log.InfoContext(ctx, "sweep done", "checked", s.Checked, "finalized", s.Finalized, "waiting", s.Waiting, "resumed", s.Resumed)
		return response{Sweep: &s}, nil
	case req.Event == "s3:TestEvent":
		h.log.InfoContext(ctx, "S3 test event ignored")
		return response{}, nil
	}
	err := errors.New(`unknown payload: want an S3 event, or {"action":"resume","importId":…}, {"action":"finalize","jobId":…} or {"action":"sweep"}`)
	h.log.ErrorContext(ctx, "invalid payload", "err", err, "action", req.Action)
	return response{}, err
}

// objects imports the objects of an S3 event, each on its own: one failure
// does not stop the others, and the retried event skips those done.
func (h *handler) objects(ctx context.Context, recs []s3Record, opts []importer.RunOption) (response, error) {
	var resp response
	var errs []error
	for _, r := range recs {
		bucket, key := r.S3.Bucket.Name, r.S3.Object.URLDecodedKey
		if !strings.HasPrefix(r.EventName, "ObjectCreated:") {
			h.log.InfoContext(ctx, "S3 event ignored", "eventName", r.EventName, "bucket", bucket, "key", key)
			continue
		}
		res, err := h.imp.HandleObject(ctx, bucket, key, r.S3.Object.ETag, r.S3.Object.Size, opts...)
		if err != nil {
			h.log.ErrorContext(ctx, "import failed", "bucket", bucket, "key", key, "err", err)
			errs = append(errs, fmt.Errorf("import s3://%s/%s: %w", bucket, key, err))
			continue
		}
		h.log.Log(ctx, levelOf(res), "import handled", "bucket", bucket, "key", key, "importId", res.ImportID, "status", res.Status)
		resp.Results = append(resp.Results, res)
	}
	return resp, errors.Join(errs...)
}

func (h *handler) one(ctx context.Context, res importer.Result, err error, what string, attrs ...any) (response, error) {
	if err != nil {
		h.log.ErrorContext(ctx, what+" failed", append(attrs, "err", err)...)
		return response{}, err
	}
	h.log.Log(ctx, levelOf(res), what+" done", append(attrs, "importId", res.ImportID, "status", res.Status)...)
	return response{Results: []importer.Result{res}}, nil
}

// levelOf is the log level of a handled result: warn for a failure left
// to the sweep.
func levelOf(res importer.Result) slog.Level {
	if res.Status == importer.StatusRetry {
		return slog.LevelWarn
	}
	return slog.LevelInfo
}
