package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/s3stream"
)

// WatermarkPrefix is where watermarks live in the data bucket.
const WatermarkPrefix = "state/watermarks/"

// WatermarkKey returns the key of object's watermark.
func WatermarkKey(object string) string { return WatermarkPrefix + object + ".json" }

// Watermark is the end of the last fully exported window of a day object:
// every day before Next has a DONE job.
type Watermark struct {
	Object    string    `json:"object"`
	Next      string    `json:"next"` // the first day not yet exported (YYYY-MM-DD)
	UpdatedAt time.Time `json:"updatedAt"`
}

// readWatermark returns object's watermark and ETag, or nil when there is
// none.
func (e *Exporter) readWatermark(ctx context.Context, object string) (*Watermark, string, error) {
	b, etag, err := e.store.ReadSmall(ctx, e.cfg.Bucket, WatermarkKey(object))
	if errors.Is(err, s3stream.ErrNotFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read watermark of %s: %w", object, err)
	}
	var wm Watermark
	if err := json.Unmarshal(b, &wm); err != nil {
		return nil, "", fmt.Errorf("decode watermark of %s: %v", object, err)
	}
	if _, err := parseDay(wm.Next); err != nil {
		return nil, "", fmt.Errorf("watermark of %s: next: %v", object, err)
	}
	return &wm, etag, nil
}

// ensureWatermark returns object's watermark, creating it at Config.Start
// (or yesterday) when there is none. Creation is conditional, so two runs
// agree on one.
func (e *Exporter) ensureWatermark(ctx context.Context, object string, now time.Time) (*Watermark, error) {
	for range 3 {
		wm, _, err := e.readWatermark(ctx, object)
		if err != nil || wm != nil {
			return wm, err
		}
		start, err := StartDay(e.cfg.Start, now, e.cfg.Location)
		if err != nil {
			return nil, fmt.Errorf("export start: %v", err)
		}
		wm = &Watermark{Object: object, Next: start.Format(dayLayout), UpdatedAt: now}
		b, _ := json.Marshal(wm)
		_, err = e.store.WriteSmall(ctx, e.cfg.Bucket, WatermarkKey(object), b, "application/json", s3stream.Condition{IfNoneMatch: true})
		if errors.Is(err, s3stream.ErrPrecondition) {
			continue // created meanwhile: read it
		}
		if err != nil {
			return nil, fmt.Errorf("create watermark of %s: %w", object, err)
		}
		e.log.InfoContext(ctx, "watermark created", "object", object, "next", wm.Next)
		return wm, nil
	}
	return nil, fmt.Errorf("create watermark of %s: it keeps changing", object)
}

// advanceWatermark moves object's watermark over every contiguous day whose
// job is DONE and returns the new next day ("" when there is no
// watermark). The write is conditional; a lost race is retried.
func (e *Exporter) advanceWatermark(ctx context.Context, object string) (string, error) {
	for range 5 {
		wm, etag, err := e.readWatermark(ctx, object)
		if err != nil || wm == nil {
			return "", err
		}
		next := wm.Next
		for range maxScanDays {
			j, _, err := e.jobs.Get(ctx, DayJobID(object, next))
			if errors.Is(err, ledger.ErrNotFound) {
				break
			}
			if err != nil {
				return "", err
			}
			if j.Status != ledger.StatusDone {
				break
			}
			if next, err = nextDay(next); err != nil {
				return "", err
			}
		}
		if next == wm.Next {
			return next, nil
		}
		from := wm.Next
		wm.Next, wm.UpdatedAt = next, e.now()
		b, _ := json.Marshal(wm)
		_, err = e.store.WriteSmall(ctx, e.cfg.Bucket, WatermarkKey(object), b, "application/json", s3stream.Condition{IfMatch: etag})
		if errors.Is(err, s3stream.ErrPrecondition) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("advance watermark of %s: %w", object, err)
		}
		e.log.InfoContext(ctx, "watermark advanced", "object", object, "from", from, "next", next)
		return next, nil
	}
	return "", fmt.Errorf("advance watermark of %s: it keeps changing", object)
}
