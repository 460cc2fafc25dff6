package importer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/s3stream"
)

// DefaultFullListingEvery is how often a sweep also lists every import
// record (Config.FullListingEvery).
const DefaultFullListingEvery = time.Hour

// openPrefix is where the open-import markers live: state/imports/open/
// <importId>, one for each import that is not final (and, briefly, for
// some that are: see doc.go).
const openPrefix = "state/imports/open/"

// sweepStateKey is the sweep's own state: when the last full listing of
// the import records started, and how far an unfinished one got.
const sweepStateKey = "state/sweeps/imports.json"

func openKey(importID string) string { return openPrefix + importID }

// openMarker is the body of a marker. Only CreatedAt is read (the age of a
// marker whose record is missing); the source helps whoever lists the
// markers by hand.
type openMarker struct {
	ImportID  string    `json:"importId"`
	Bucket    string    `json:"bucket"`
	Key       string    `json:"key"`
	ETag      string    `json:"etag"`
	CreatedAt time.Time `json:"createdAt"`
}

// markOpen creates the marker of an import (If-None-Match: a marker that
// is already there is kept). created reports whether this call made it.
func (im *Importer) markOpen(ctx context.Context, rec *importRecord) (created bool, err error) {
	b, err := json.Marshal(openMarker{
		ImportID: rec.ID, Bucket: rec.Source.Bucket, Key: rec.Source.Key, ETag: rec.Source.ETag,
		CreatedAt: im.cfg.Now().UTC(),
	})
	if err != nil {
		return false, fmt.Errorf("encode the marker of import %s: %v", rec.ID, err)
	}
	_, err = im.store.WriteSmall(ctx, im.cfg.Bucket, openKey(rec.ID), b, "application/json", s3stream.Condition{IfNoneMatch: true})
	switch {
	case errors.Is(err, s3stream.ErrPrecondition):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("mark import %s open: %w", rec.ID, err)
	}
	return true, nil
}

// unmarkOpen deletes the marker of an import whose record is final. A
// failure is only logged: the next sweep finds the final record behind the
// marker and deletes it then.
func (im *Importer) unmarkOpen(ctx context.Context, importID string) {
	if err := im.store.Delete(ctx, im.cfg.Bucket, openKey(importID)); err != nil {
		im.log.WarnContext(ctx, "delete the marker of a final import", "importId", importID, "key", openKey(importID), "err", err)
	}
}

// SweepResult counts what a sweep did.
type SweepResult struct {
	// Checked counts the open imports looked at.
	Checked   int `json:"checked"`
	Finalized int `json:"finalized"`
	Waiting   int `json:"waiting"`
	Resumed   int `json:"resumed"`
	// Unmarked counts the markers removed: of imports found final, and of
	// records that never came.
	Unmarked int `json:"unmarked,omitempty"`
	// Adopted counts the open imports the full listing found without a
	// marker (started by an earlier version), which it then marked.
	Adopted int `json:"adopted,omitempty"`
}

// sweep is one Sweep call.
type sweep struct {
	im          *Importer
	now         time.Time
	deadline    time.Time
	hasDeadline bool
	margin      time.Duration
	res         SweepResult
	errs        []error
	// marked holds the imports whose marker this sweep handled, so the
	// full listing does not handle them twice.
	marked map[string]bool
}

// late reports whether the sweep must stop, SafetyMargin (at most a
// quarter of the time left when it started) before the deadline.
func (s *sweep) late() bool {
	return s.hasDeadline && time.Until(s.deadline) < s.margin
}

// Sweep looks at every import that is not final: it finalizes those whose
// upload is over (when their CE jobs are terminal), and re-invokes those
// that stalled (no checkpoint for longer than the lease: a lost resume
// invocation or a worker that died) or whose last invocation failed
// (released with a failure counted, see StatusRetry).
//
// It finds them through their markers (state/imports/open/), so its cost
// follows the open imports, not the ledger's history. When its last full
// listing started Config.FullListingEvery ago or more (or one was left
// unfinished), it also lists every import record, as a safety net for
// imports without a marker (see doc.go, "Sweep").
func (im *Importer) Sweep(ctx context.Context) (SweepResult, error) {
	s := &sweep{im: im, now: im.cfg.Now(), margin: im.cfg.SafetyMargin, marked: map[string]bool{}}
	s.deadline, s.hasDeadline = ctx.Deadline()
	if s.hasDeadline {
		s.margin = min(s.margin, time.Until(s.deadline)/4)
	}
	if err := s.markers(ctx); err != nil {
		return s.res, errors.Join(append(s.errs, err)...)
	}
	if !s.late() && im.cfg.FullListingEvery > 0 {
		s.fullListing(ctx)
	}
	return s.res, errors.Join(s.errs...)
}

// markers handles the import of every marker.
func (s *sweep) markers(ctx context.Context) error {
	for info, err := range s.im.store.List(ctx, s.im.cfg.Bucket, openPrefix) {
		if err != nil {
			return err
		}
		if s.late() {
			s.im.log.WarnContext(ctx, "sweep stopped before the deadline", "checked", s.res.Checked)
			return nil
		}
		id := strings.TrimPrefix(info.Key, openPrefix)
		if !isImportID(id) {
			continue
		}
		s.marked[id] = true
		if err := s.marker(ctx, id, info); err != nil {
			s.errs = append(s.errs, err)
		}
	}
	return nil
}

func isImportID(id string) bool {
	return strings.HasPrefix(id, "import-") && !strings.Contains(id, "/") && !strings.Contains(id, "-chunk-")
}

// marker handles one marker: the open import behind it, or the marker
// itself when its import is final or its record never came.
func (s *sweep) marker(ctx context.Context, id string, info s3stream.ObjectInfo) error {
	im := s.im
	rec, _, err := im.getImport(ctx, id)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return s.orphan(ctx, id, info)
	case err != nil:
		return err
	case rec.Status.Final():
		// The worker that finalized it stopped before deleting the marker,
		// or a duplicate event made it again.
		if err := im.store.Delete(ctx, im.cfg.Bucket, openKey(id)); err != nil {
			return fmt.Errorf("delete the marker of final import %s: %w", id, err)
		}
		s.res.Unmarked++
		return nil
	}
	return s.open(ctx, rec)
}

// orphan handles a marker whose import record does not exist: its
// HandleObject is between the two writes, or stopped there (the event's
// retry, if any, makes the marker and then the record again). A marker
// younger than the lease is left alone; an older one is deleted, after
// which the record is looked for once more, and the marker put back if a
// late retry of the event created the record meanwhile.
func (s *sweep) orphan(ctx context.Context, id string, info s3stream.ObjectInfo) error {
	im := s.im
	key := openKey(id)
	b, _, err := im.store.ReadSmall(ctx, im.cfg.Bucket, key)
	if errors.Is(err, s3stream.ErrNotFound) {
		return nil // deleted meanwhile
	}
	if err != nil {
		return fmt.Errorf("read the marker of import %s: %w", id, err)
	}
	var m openMarker
	created := info.LastModified
	if json.Unmarshal(b, &m) == nil && !m.CreatedAt.IsZero() {
		created = m.CreatedAt
	}
	if s.now.Sub(created) < im.cfg.Lease {
		return nil
	}
	if err := im.store.Delete(ctx, im.cfg.Bucket, key); err != nil {
		return fmt.Errorf("delete the marker of import %s: %w", id, err)
	}
	rec, _, err := im.getImport(ctx, id)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		s.res.Unmarked++
		im.log.WarnContext(ctx, "marker without an import record removed: the event that made it never created the import",
			"importId", id, "bucket", m.Bucket, "key", m.Key, "created", created)
		return nil
	case err != nil:
		return err
	case rec.Status.Final():
		s.res.Unmarked++
		return nil
	}
	if _, err := im.markOpen(ctx, rec); err != nil {
		return err
	}
	return s.open(ctx, rec)
}

// open handles an import that is not final: it finalizes one whose upload
// is over, and resumes one that stalled.
func (s *sweep) open(ctx context.Context, rec *importRecord) error {
	im := s.im
	id := rec.ID
	s.res.Checked++
	stale := s.now.Sub(rec.UpdatedAt) >= im.cfg.Lease
	switch {
	case rec.Import.Done:
		if rec.Status == ledger.StatusCollecting && !stale {
			return nil
		}
		r, err := im.finalize(ctx, id)
		if err != nil {
			return err
		}
		switch r.Status {
		case StatusWaiting:
			s.res.Waiting++
		case StatusSucceeded, StatusPartial, StatusFailed:
			s.res.Finalized++
		}
	case stale, rec.Status == ledger.StatusPending && (rec.Import.Failures > 0 || rec.Import.RateLimited):
		// Stalled (no heartbeat for a lease), or released after a failure
		// or a rate limit that outlasted its invocation (its invocation
		// returned no error, so nothing else resumes it).
		im.log.WarnContext(ctx, "import stalled or failed: resuming it", "importId", id, "status", rec.Status,
			"heartbeat", rec.UpdatedAt, "failures", rec.Import.Failures, "lastError", rec.LastError)
		var err error
		if im.reinvoke != nil {
			err = im.reinvoke(ctx, id)
		} else {
			_, err = im.Resume(ctx, id)
		}
		if err != nil {
			return err
		}
		s.res.Resumed++
	}
	return nil
}

// sweepState is the object at sweepStateKey.
type sweepState struct {
	// Started is when the last full listing started.
	Started time.Time `json:"started"`
	// After is the last ledger key an unfinished listing handled; the
	// sweep that takes the listing over goes on after it.
	After string `json:"after,omitempty"`
	// Heartbeat is the last write of the sweep doing an unfinished
	// listing: other sweeps leave the listing to it for Config.Lease. Zero
	// when that sweep stopped at its deadline and released the listing.
	Heartbeat time.Time `json:"heartbeat,omitzero"`
	// Finished is when the listing that started at Started got through.
	Finished time.Time `json:"finished,omitzero"`
}

// Progress of a full listing is saved every listingSaveEvery records read
// or listingSaveInterval, whichever comes first: often enough to be a
// heartbeat well within the lease, and to lose little when the invocation
// dies.
const (
	listingSaveEvery    = 500
	listingSaveInterval = time.Minute
)

// fullListing lists every import record when a listing is due, as sweeps
// did before markers: it handles the open imports the markers did not
// name, and marks them. It saves its progress as it goes, and stops at the
// deadline, so the next sweep goes on where it stopped.
func (s *sweep) fullListing(ctx context.Context) {
	im := s.im
	st, tag, due, err := s.listingDue(ctx)
	if err != nil {
		s.errs = append(s.errs, err)
		return
	}
	if !due {
		return
	}
	if !st.Finished.IsZero() || st.Started.IsZero() {
		st = sweepState{Started: s.now.UTC()}
		im.log.InfoContext(ctx, "full listing of import records: starting")
	} else {
		im.log.InfoContext(ctx, "full listing of import records: going on", "started", st.Started, "after", st.After)
	}
	// Take the listing: of two sweeps reading the same state, one wins
	// this conditional write, and the other leaves the listing to it.
	st.Heartbeat = s.now.UTC()
	tag, err = s.saveState(ctx, st, tag)
	if errors.Is(err, s3stream.ErrPrecondition) {
		return
	}
	if err != nil {
		s.errs = append(s.errs, err)
		return
	}
	// save writes the progress; false when another sweep took the listing
	// over (this one's heartbeat had lapsed), which then goes on alone.
	read, savedAt, savedRead := 0, time.Now(), 0
	save := func(st sweepState) bool {
		var err error
		tag, err = s.saveState(ctx, st, tag)
		savedAt, savedRead = time.Now(), read
		if errors.Is(err, s3stream.ErrPrecondition) {
			im.log.WarnContext(ctx, "full listing taken over by another sweep", "after", st.After)
			return false
		}
		if err != nil {
			s.errs = append(s.errs, err)
		}
		return true
	}
	for info, err := range im.store.List(ctx, im.cfg.Bucket, ledger.Prefix+"import-") {
		if err != nil {
			s.errs = append(s.errs, err)
			st.Heartbeat = time.Time{}
			save(st)
			return
		}
		if info.Key <= st.After {
			continue
		}
		if s.late() {
			im.log.WarnContext(ctx, "full listing stopped before the deadline: the next sweep goes on", "after", st.After, "read", read)
			st.Heartbeat = time.Time{} // released
			save(st)
			return
		}
		if read-savedRead >= listingSaveEvery || time.Since(savedAt) >= listingSaveInterval {
			st.Heartbeat = im.cfg.Now().UTC()
			if !save(st) {
				return
			}
		}
		id, ok := strings.CutSuffix(strings.TrimPrefix(info.Key, ledger.Prefix), ".json")
		st.After = info.Key
		if !ok || !isImportID(id) || s.marked[id] {
			continue
		}
		read++
		rec, _, err := im.getImport(ctx, id)
		switch {
		case errors.Is(err, ledger.ErrNotFound): // expired meanwhile
			continue
		case err != nil:
			s.errs = append(s.errs, err)
			continue
		case rec.Status.Final():
			continue
		}
		created, err := im.markOpen(ctx, rec)
		if err != nil {
			s.errs = append(s.errs, err)
			continue
		}
		if created {
			s.res.Adopted++
			im.log.InfoContext(ctx, "open import without a marker: marked", "importId", id)
		}
		if err := s.open(ctx, rec); err != nil {
			s.errs = append(s.errs, err)
		}
	}
	save(sweepState{Started: st.Started, Finished: im.cfg.Now().UTC()})
	im.log.InfoContext(ctx, "full listing of import records: done", "started", st.Started, "read", read, "adopted", s.res.Adopted)
}

// listingDue reads the sweep's state and says whether this sweep should do
// (or go on with) a full listing: none was ever made (or the state is
// unreadable); the last one is unfinished and released, or its sweep's
// heartbeat is older than the lease; or it finished and started
// FullListingEvery ago or more. tag is the state's ETag ("" when there is
// none).
func (s *sweep) listingDue(ctx context.Context) (st sweepState, tag string, due bool, err error) {
	b, tag, err := s.im.store.ReadSmall(ctx, s.im.cfg.Bucket, sweepStateKey)
	if errors.Is(err, s3stream.ErrNotFound) {
		return sweepState{}, "", true, nil
	}
	if err != nil {
		return sweepState{}, "", false, fmt.Errorf("read the sweep's state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		s.im.log.WarnContext(ctx, "sweep state unreadable: starting a full listing", "key", sweepStateKey, "err", err)
		return sweepState{}, tag, true, nil
	}
	if st.Finished.IsZero() {
		return st, tag, s.now.Sub(st.Heartbeat) >= s.im.cfg.Lease, nil
	}
	return st, tag, s.now.Sub(st.Started) >= s.im.cfg.FullListingEvery, nil
}

// saveState writes the sweep's state if it still has tag (If-None-Match
// when tag is ""), and returns the new ETag; s3stream.ErrPrecondition when
// another sweep wrote it first.
func (s *sweep) saveState(ctx context.Context, st sweepState, tag string) (string, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return "", fmt.Errorf("encode the sweep's state: %v", err)
	}
	// Written also when the invocation's context is ending, so that the
	// next sweep goes on where this one stopped.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	cond := s3stream.Condition{IfMatch: tag, IfNoneMatch: tag == ""}
	newTag, err := s.im.store.WriteSmall(ctx, s.im.cfg.Bucket, sweepStateKey, b, "application/json", cond)
	if err != nil {
		return "", fmt.Errorf("write the sweep's state: %w", err)
	}
	return newTag, nil
}
