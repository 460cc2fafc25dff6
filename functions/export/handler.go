package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cebulk/cebulk/internal/exporter"
)

// pipeline is what the handler needs of *exporter.Exporter.
type pipeline interface {
	Run(ctx context.Context, req exporter.RunRequest) (exporter.RunResult, error)
	Collect(ctx context.Context, jobID string) (exporter.CollectResult, error)
	Sweep(ctx context.Context) (exporter.SweepResult, error)
}

// handler is the ExportFunction.
type handler struct {
	ex  pipeline
	log *slog.Logger
}

// event is every input the function accepts, in one shape: an EventBridge
// envelope (detail-type, time) or an action.
type event struct {
	DetailType string    `json:"detail-type"`
	Time       time.Time `json:"time"`

	Action  string   `json:"action"`
	JobID   string   `json:"jobId"`
	Objects []string `json:"objects"`
	From    string   `json:"from"`
	To      string   `json:"to"`
	RunID   string   `json:"runId"`
	By      string   `json:"by"`
}

// request is a parsed event.
type request struct {
	Action string // run, collect or sweep
	Run    exporter.RunRequest
	JobID  string
}

// scheduledEvent is the detail-type of an EventBridge schedule's envelope.
const scheduledEvent = "Scheduled Event"

// parseEvent reads an invocation payload:
//
//	an EventBridge envelope with "detail-type": "Scheduled Event" → run (At = its time)
//	{"action":"run"}                                                → run
//	{"action":"run","objects":[...],"from":"YYYY-MM-DD","to":"YYYY-MM-DD"} → backfill
//	{"action":"collect","jobId":"..."}                              → collect
//	{"action":"sweep"}                                              → sweep
func parseEvent(raw json.RawMessage) (request, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return request{}, errors.New("payload must be a JSON object")
	}
	var ev event
	if err := json.Unmarshal(raw, &ev); err != nil {
		return request{}, fmt.Errorf("decode payload: %v", err)
	}
	if ev.DetailType != "" {
		if ev.DetailType != scheduledEvent {
			return request{}, fmt.Errorf("unsupported EventBridge event %q: want %q", ev.DetailType, scheduledEvent)
		}
		return request{Action: "run", Run: exporter.RunRequest{At: ev.Time}}, nil
	}
	switch ev.Action {
	case "run":
		return request{Action: "run", Run: exporter.RunRequest{
			Objects: ev.Objects, From: ev.From, To: ev.To, At: ev.Time, RunID: ev.RunID, By: ev.By,
		}}, nil
	case "collect":
		if ev.JobID == "" {
			return request{}, errors.New(`collect needs "jobId"`)
		}
		return request{Action: "collect", JobID: ev.JobID}, nil
	case "sweep":
		return request{Action: "sweep"}, nil
	case "":
		return request{}, errors.New(`payload has no "action" and is not a scheduled event`)
	}
	return request{}, fmt.Errorf("unknown action %q: want run, collect or sweep", ev.Action)
}

// response is what an invocation returns.
type response struct {
	Action  string                  `json:"action"`
	Run     *exporter.RunResult     `json:"run,omitempty"`
	Collect *exporter.CollectResult `json:"collect,omitempty"`
	Sweep   *exporter.SweepResult   `json:"sweep,omitempty"`
}

// handle runs one invocation. It returns an error (so Lambda retries the
// asynchronous invocation, then sends it to the failure queue) only when
// the payload is bad or a failure left no record in the ledger. A failed
// collect that the ledger records (PENDING with one more attempt, or
// FAILED) succeeds: the sweep retries the job, and Lambda's retries would
// spend its attempts within three minutes. Every step is idempotent.
func (h *handler) handle(ctx context.Context, raw json.RawMessage) (any, error) {
	t0 := time.Now()
	ctx = exporter.WithInvocation(ctx)
	req, err := parseEvent(raw)
	if err != nil {
		h.log.ErrorContext(ctx, "bad payload", "err", err.Error())
		return nil, err
	}
	resp := response{Action: req.Action}
	attrs := []any{"action", req.Action}
	switch req.Action {
	case "run":
		res, rerr := h.ex.Run(ctx, req.Run)
		resp.Run, err = &res, rerr
		attrs = append(attrs, "backfill", req.Run.From != "", "started", len(res.Started), "skipped", len(res.Skipped), "deferred", res.Deferred)
	case "collect":
		res, cerr := h.ex.Collect(ctx, req.JobID)
		resp.Collect, err = &res, cerr
		attrs = append(attrs, "jobId", req.JobID, "outcome", res.Outcome, "records", res.Records, "bytes", res.Bytes)
	case "sweep":
		res, serr := h.ex.Sweep(ctx)
		resp.Sweep, err = &res, serr
		attrs = append(attrs, "checked", res.Checked, "collected", len(res.Collected), "failed", len(res.Failed), "expired", len(res.Expired))
	}
	attrs = append(attrs, "durationMs", time.Since(t0).Milliseconds())
	if err != nil && req.Action == "sweep" {
		// The next scheduled sweep is this one's retry: logged, not queued.
		h.log.ErrorContext(ctx, "export sweep failed; the next sweep tries again", append(attrs, "err", err.Error())...)
		return resp, nil
	}
	if err != nil {
		h.log.ErrorContext(ctx, "export "+req.Action+" failed", append(attrs, "err", err.Error())...)
		return nil, err
	}
	level := slog.LevelInfo
	if c := resp.Collect; c != nil && (c.Outcome == exporter.OutcomeIncomplete || c.Error != "") {
		// Published, but CE reported failed records; or the attempt failed
		// and the ledger holds it for the sweep.
		level = slog.LevelWarn
		if c.Error != "" {
			attrs = append(attrs, "err", c.Error)
		}
	}
	h.log.Log(ctx, level, "export "+req.Action+" done", attrs...)
	return resp, nil
}
