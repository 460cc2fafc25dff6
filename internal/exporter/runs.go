package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cebulk/cebulk/internal/budget"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/s3stream"
)

// RunsPrefix is where durable runs live in the data bucket:
// state/runs/<runId>.json.
const RunsPrefix = "state/runs/"

// OpenRunsPrefix holds one empty marker per RUNNING run
// (state/runs/open/<runId>): what the sweeps list, so their cost follows
// the open runs, not every run ever made.
const OpenRunsPrefix = RunsPrefix + "open/"

// MaxRunDays is the longest range a run accepts: three years.
const MaxRunDays = 3*365 + 1

// RunStatus is a durable run's place in its life.
type RunStatus string

// Run statuses.
const (
	RunRunning RunStatus = "RUNNING" // days left to start or to finish
	RunDone    RunStatus = "DONE"    // every day DONE
	RunPartial RunStatus = "PARTIAL" // every day final, some FAILED (named in the run)
)

// DayState is the state of one day of a run.
type DayState string

// Day states.
const (
	DayPending DayState = "PENDING" // not started: waits for the query budget
	DayStarted DayState = "STARTED" // its ledger job is in flight
	DayDone    DayState = "DONE"
	DayFailed  DayState = "FAILED" // its ledger job ended FAILED or EXPIRED
)

// Run is a durable backfill: what was asked, by whom, and the state of each
// of its days. Sweeps start its PENDING days, oldest first, as the query
// budget allows, until every day is final.
type Run struct {
	ID        string    `json:"id"`
	By        string    `json:"by,omitempty"` // who asked (an IAM principal, "cebulk", ...)
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	Objects   []string  `json:"objects"`
	From      string    `json:"from"` // YYYY-MM-DD
	To        string    `json:"to"`   // YYYY-MM-DD, exclusive
	Status    RunStatus `json:"status"`
	// QueriesPerHour is the budget's limit when the run was made, for the
	// estimate of the time left.
	QueriesPerHour int      `json:"queriesPerHour,omitempty"`
	NotReady       []string `json:"notReady,omitempty"` // days left out: not ended Lag ago at the request
	Days           []RunDay `json:"days"`
}

// RunDay is one window of a run.
type RunDay struct {
	Object  string   `json:"object"`
	Day     string   `json:"day"`
	State   DayState `json:"state"`
	Records int64    `json:"records,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// JobID is the ledger id of the day's window.
func (d RunDay) JobID() string { return DayJobID(d.Object, d.Day) }

// ValidRunID reports whether id can name a run:
// ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$.
func ValidRunID(id string) bool {
	return validName(id, 128, isAlnum, func(c byte) bool { return isAlnum(c) || c == '.' || c == '_' || c == '-' })
}

// RunKey is the object of run id.
func RunKey(id string) string { return RunsPrefix + id + ".json" }

// NewRun plans a durable run of the day objects among objects over
// [from, to): every day that has ended lag ago at now is PENDING, in start
// order (oldest first, the objects of one day side by side); the others
// are listed in NotReady. It is pure.
func NewRun(id, by string, objects []string, from, to string, now time.Time, loc *time.Location, basis TimeBasis, lag time.Duration) (Run, error) {
	if !ValidRunID(id) {
		return Run{}, fmt.Errorf("%w: invalid run id %q", ErrBadPlan, id)
	}
	f, t, err := parseRange(from, to)
	if err != nil {
		return Run{}, err
	}
	if days := int(t.Sub(f) / (24 * time.Hour)); days > MaxRunDays {
		return Run{}, fmt.Errorf("%w: %d days is over the limit of %d (three years)", ErrBadPlan, days, MaxRunDays)
	}
	if loc == nil {
		loc = time.UTC
	}
	r := Run{ID: id, By: by, CreatedAt: now, UpdatedAt: now, From: from, To: to, Status: RunRunning, Days: []RunDay{}}
	for _, o := range objects {
		if !Snapshot(o) {
			r.Objects = append(r.Objects, o)
		}
	}
	if len(r.Objects) == 0 {
		return Run{}, fmt.Errorf("%w: a run needs a day object (activities)", ErrBadPlan)
	}
	for d := f; d.Before(t); d = d.AddDate(0, 0, 1) {
		for _, o := range r.Objects {
			w, end := dayWindow(o, d, loc, basis)
			if end.Add(lag).After(now) {
				r.NotReady = append(r.NotReady, w.ID)
				continue
			}
			r.Days = append(r.Days, RunDay{Object: o, Day: w.Day, State: DayPending})
		}
	}
	r.settle()
	return r, nil
}

// RunProgress sums up a run.
type RunProgress struct {
	Total      int      `json:"total"`
	Done       int      `json:"done"`
	Started    int      `json:"started"`
	Pending    int      `json:"pending"`
	Failed     int      `json:"failed"`
	Records    int64    `json:"records"`
	FailedDays []string `json:"failedDays,omitempty"` // ledger ids
}

// Progress counts the run's days by state.
func (r *Run) Progress() RunProgress {
	p := RunProgress{Total: len(r.Days)}
	for _, d := range r.Days {
		p.Records += d.Records
		switch d.State {
		case DayDone:
			p.Done++
		case DayStarted:
			p.Started++
		case DayPending:
			p.Pending++
		case DayFailed:
			p.Failed++
			p.FailedDays = append(p.FailedDays, d.JobID())
		}
	}
	return p
}

// NextDays returns the indexes of the first n PENDING days, oldest first.
func (r *Run) NextDays(n int) []int {
	var idx []int
	for i, d := range r.Days {
		if len(idx) >= n {
			break
		}
		if d.State == DayPending {
			idx = append(idx, i)
		}
	}
	return idx
}

// settle sets the run's status from its days.
func (r *Run) settle() {
	p := r.Progress()
	switch {
	case p.Pending+p.Started > 0:
		r.Status = RunRunning
	case p.Failed > 0:
		r.Status = RunPartial
	default:
		r.Status = RunDone
	}
}

// dayOf maps a ledger job to the state of its run day.
func dayOf(j *ledger.Job) (DayState, int64, string) {
	switch j.Status {
	case ledger.StatusDone:
		var n int64
		if j.Result != nil {
			n = j.Result.Records
		}
		return DayDone, n, ""
	case ledger.StatusFailed, ledger.StatusExpired:
		return DayFailed, 0, j.LastError
	}
	return DayStarted, 0, ""
}

// errRunConflict is a run written by someone else meanwhile.
var errRunConflict = errors.New("run changed concurrently")

// ReadRun reads run id with its ETag.
func ReadRun(ctx context.Context, store interface {
	ReadSmall(ctx context.Context, bucket, key string) ([]byte, string, error)
}, bucket, id string) (*Run, string, error) {
	data, etag, err := store.ReadSmall(ctx, bucket, RunKey(id))
	if err != nil {
		return nil, "", err
	}
	var r Run
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, "", fmt.Errorf("run %s: %v", id, err)
	}
	return &r, etag, nil
}

func (e *Exporter) writeRun(ctx context.Context, r *Run, etag string) (string, error) {
	r.UpdatedAt = e.now()
	r.settle()
	data, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return "", err
	}
	cond := s3stream.Condition{IfMatch: etag}
	if etag == "" {
		cond = s3stream.Condition{IfNoneMatch: true}
	}
	if etag == "" && r.Status == RunRunning {
		// The marker first: no RUNNING run exists without one.
		if err := e.markRun(ctx, r.ID, true); err != nil {
			return "", err
		}
	}
	tag, err := e.store.WriteSmall(ctx, e.cfg.Bucket, RunKey(r.ID), data, "application/json", cond)
	if errors.Is(err, s3stream.ErrPrecondition) {
		return "", errRunConflict
	}
	if err == nil && r.Status != RunRunning {
		if merr := e.markRun(ctx, r.ID, false); merr != nil {
			e.log.WarnContext(ctx, "run ended; its open marker stays until the next sweep", "runId", r.ID, "err", merr.Error())
		}
	}
	return tag, err
}

// markRun creates (open) or deletes the open marker of run id.
func (e *Exporter) markRun(ctx context.Context, id string, open bool) error {
	key := OpenRunsPrefix + id
	if !open {
		return e.store.Delete(ctx, e.cfg.Bucket, key)
	}
	_, err := e.store.WriteSmall(ctx, e.cfg.Bucket, key, nil, "application/octet-stream", s3stream.Condition{IfNoneMatch: true})
	if errors.Is(err, s3stream.ErrPrecondition) {
		return nil
	}
	return err
}

// startRun records a backfill as a durable run (or finds the one a retry
// of the same request made) and starts what the budget allows now.
func (e *Exporter) startRun(ctx context.Context, req RunRequest, objects []string, res *RunResult) error {
	r, err := NewRun(req.RunID, req.By, objects, req.From, req.To, e.now(), e.cfg.Location, e.cfg.TimeBasis, e.cfg.Lag)
	if err != nil {
		return err
	}
	if e.cfg.Budget != nil {
		r.QueriesPerHour = e.cfg.Budget.Limit()
	}
	res.RunID, res.NotReady = r.ID, r.NotReady
	etag, err := e.writeRun(ctx, &r, "")
	if errors.Is(err, errRunConflict) {
		// A retried request: carry on with the run it made.
		return e.advanceRun(ctx, req.RunID, res, new(int))
	}
	if err != nil {
		return fmt.Errorf("record run %s: %w", r.ID, err)
	}
	e.log.InfoContext(ctx, "run recorded", "runId", r.ID, "days", len(r.Days), "from", r.From, "to", r.To, "notReady", len(r.NotReady))
	started := 0
	return e.advance(ctx, &r, etag, res, &started)
}

// advanceRun reads run id and advances it.
func (e *Exporter) advanceRun(ctx context.Context, id string, res *RunResult, started *int) error {
	r, etag, err := ReadRun(ctx, e.store, e.cfg.Bucket, id)
	if err != nil {
		return err
	}
	if r.Status != RunRunning {
		return e.markRun(ctx, id, false) // a marker left by a failed delete
	}
	return e.advance(ctx, r, etag, res, started)
}

// advance brings the STARTED days of r up to date from the ledger, then
// starts PENDING days, oldest first, while the query budget and the
// invocation's cap (Config.MaxJobs, counted in started) allow, and writes
// the run back (If-Match: a run advanced by someone else meanwhile is left
// to them and the next sweep).
func (e *Exporter) advance(ctx context.Context, r *Run, etag string, res *RunResult, started *int) error {
	changed := false
	for i := range r.Days {
		d := &r.Days[i]
		if d.State != DayStarted {
			continue
		}
		j, _, err := e.jobs.Get(ctx, d.JobID())
		if errors.Is(err, ledger.ErrNotFound) {
			d.State, changed = DayPending, true
			continue
		}
		if err != nil {
			return err
		}
		if st, n, msg := dayOf(j); st != d.State {
			d.State, d.Records, d.Error, changed = st, n, msg, true
		}
	}
	for _, i := range r.NextDays(len(r.Days)) {
		if *started >= e.cfg.MaxJobs || ctx.Err() != nil {
			break
		}
		d := &r.Days[i]
		p, _ := dayWindow(d.Object, mustDay(d.Day), e.cfg.Location, e.cfg.TimeBasis)
		j, _, err := e.jobs.Get(ctx, p.ID)
		switch {
		case errors.Is(err, ledger.ErrNotFound):
			p.Action = ActionCreate
		case err != nil:
			return err
		case j.Status.Final() && j.Run == r.ID:
			// Ours, finished (a write of the run lost before).
			d.State, d.Records, d.Error = dayOf(j)
			changed = true
			continue
		case j.Status.Final():
			p.Action = ActionRestart
		default:
			d.State, changed = DayStarted, true // in flight for someone else: wait for it
			res.Skipped = append(res.Skipped, p.ID)
			continue
		}
		g, err := e.takeTokens(ctx, p.Object)
		if err != nil {
			return err
		}
		if g == nil {
			break // the hour's budget is spent: the next sweep goes on
		}
		sj, did, err := e.startPlanned(ctx, p, r.ID)
		if err != nil {
			e.refund(ctx, g)
			return err
		}
		d.State, changed = DayStarted, true
		if !did {
			e.refund(ctx, g) // someone else started the window first
			res.Skipped = append(res.Skipped, p.ID)
			continue
		}
		*started++
		res.Started = append(res.Started, sj)
	}
	res.Deferred += len(r.NextDays(len(r.Days)))
	if !changed {
		return nil
	}
	if _, err := e.writeRun(ctx, r, etag); err != nil && !errors.Is(err, errRunConflict) {
		return fmt.Errorf("write run %s: %w", r.ID, err)
	}
	return nil
}

// advanceRuns advances every RUNNING run (those with an open marker), from
// a sweep: the scheduled runs' deferred days (nightly-…) first, so that a
// long backfill never holds back the nightly export, then the backfills
// in the order they were asked for.
func (e *Exporter) advanceRuns(ctx context.Context, res *SweepResult, started *int) {
	type open struct {
		id      string
		nightly bool
		marked  time.Time // the marker is written just before its run
	}
	var runs []open
	for info, err := range e.store.List(ctx, e.cfg.Bucket, OpenRunsPrefix) {
		if err != nil {
			res.Errors = append(res.Errors, "list runs: "+err.Error())
			return
		}
		id := strings.TrimPrefix(info.Key, OpenRunsPrefix)
		if !ValidRunID(id) {
			continue
		}
		runs = append(runs, open{id: id, nightly: strings.HasPrefix(id, "nightly-"), marked: info.LastModified})
	}
	slices.SortStableFunc(runs, func(a, b open) int {
		if a.nightly != b.nightly {
			if a.nightly {
				return -1
			}
			return 1
		}
		return a.marked.Compare(b.marked)
	})
	for _, o := range runs {
		id, info := o.id, s3stream.ObjectInfo{LastModified: o.marked}
		var rr RunResult
		err := e.advanceRun(ctx, id, &rr, started)
		if errors.Is(err, s3stream.ErrNotFound) && e.now().Sub(info.LastModified) > time.Hour {
			// The request that made the marker never wrote its run.
			err = e.markRun(ctx, id, false)
		}
		if errors.Is(err, s3stream.ErrNotFound) {
			continue // its request may still be writing it
		}
		if err != nil {
			res.Errors = append(res.Errors, "run "+id+": "+err.Error())
			e.log.WarnContext(ctx, "sweep: run left for the next sweep", "runId", id, "err", err.Error())
			continue
		}
		for _, sj := range rr.Started {
			res.Started = append(res.Started, sj.JobID)
		}
	}
}

func mustDay(day string) time.Time {
	t, _ := parseDay(day)
	return t
}

// RunView is what GET /runs/{id} and `cebulk runs ID` show.
type RunView struct {
	ID        string      `json:"id"`
	By        string      `json:"by,omitempty"`
	Status    RunStatus   `json:"status"`
	Objects   []string    `json:"objects"`
	From      string      `json:"from"`
	To        string      `json:"to"`
	CreatedAt time.Time   `json:"createdAt"`
	UpdatedAt time.Time   `json:"updatedAt"`
	NotReady  []string    `json:"notReady,omitempty"`
	Progress  RunProgress `json:"progress"`
	// QueriesPerHour is the budget the estimate assumes.
	QueriesPerHour int `json:"queriesPerHour,omitempty"`
	// StartsBy is the start of the clock hour by which every PENDING day
	// can have been started at the budget's limit, if the run were the
	// budget's only user (absent when nothing is pending or there is no
	// budget); ETA adds an hour for the last CE jobs to finish and be
	// collected by the sweeps.
	StartsBy *time.Time `json:"startsBy,omitempty"`
	ETA      *time.Time `json:"eta,omitempty"`
}

// View sums the run up with an estimate from u, the budget's current hour.
func (r *Run) View(u budget.Usage) RunView {
	v := RunView{
		ID: r.ID, By: r.By, Status: r.Status, Objects: r.Objects, From: r.From, To: r.To,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, NotReady: r.NotReady,
		Progress: r.Progress(), QueriesPerHour: u.Limit,
	}
	if v.Progress.Pending > 0 && u.Limit > 0 {
		starts := budget.Ready(v.Progress.Pending, u)
		eta := starts.Add(time.Hour)
		v.StartsBy, v.ETA = &starts, &eta
	}
	return v
}

// NewRunID returns a fresh run id: run-20261202T021500Z-1a2b3c4d.
func NewRunID(now time.Time) string {
	_, hash := ledger.NewToken()
	return "run-" + now.UTC().Format(snapshotIDLayout) + "-" + hash[:8]
}

// takeTokens takes from the budget what starting a query job of object
// costs. It returns nil (and no error) when the hour's budget is spent; a
// zero grant when there is no budget.
func (e *Exporter) takeTokens(ctx context.Context, object string) (*budget.Grant, error) {
	if e.cfg.Budget == nil {
		return &budget.Grant{}, nil
	}
	cost := 1
	if Snapshot(object) {
		n, err := e.snapshotCost(ctx, object)
		if err != nil {
			return nil, err
		}
		cost = n
	}
	g, err := e.cfg.Budget.Claim(ctx, cost)
	if err != nil {
		return nil, fmt.Errorf("query budget: %w", err)
	}
	if g.Tokens == 0 {
		return nil, nil
	}
	return &g, nil
}

// refund gives back the tokens of a query job that was not started.
func (e *Exporter) refund(ctx context.Context, g *budget.Grant) {
	if e.cfg.Budget == nil || g == nil || g.Tokens == 0 {
		return
	}
	if err := e.cfg.Budget.Refund(ctx, *g, g.Tokens); err != nil {
		e.log.WarnContext(ctx, "query budget: refund failed", "tokens", g.Tokens, "err", err.Error())
	}
}

// snapshotCost is what the next snapshot of object costs: CE pages
// Mixpanel's Engage query 1000 profiles at a time, one query each, so
// ⌈profiles of the last DONE snapshot / 1000⌉, at least 1.
func (e *Exporter) snapshotCost(ctx context.Context, object string) (int, error) {
	var ids []string
	for info, err := range e.store.List(ctx, e.cfg.Bucket, ledger.Prefix+jobIDPrefix(object)) {
		if err != nil {
			return 0, fmt.Errorf("list snapshots of %s: %w", object, err)
		}
		if id, ok := strings.CutSuffix(strings.TrimPrefix(info.Key, ledger.Prefix), ".json"); ok {
			ids = append(ids, id)
		}
	}
	for i := len(ids) - 1; i >= 0 && i >= len(ids)-48; i-- { // newest first; two days of hourly snapshots at most
		j, _, err := e.jobs.Get(ctx, ids[i])
		if errors.Is(err, ledger.ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if j.Status == ledger.StatusDone && j.Result != nil {
			return SnapshotCost(j.Result.Records), nil
		}
	}
	return 1, nil
}

// SnapshotCost is the query cost of a snapshot of profiles profiles:
// ⌈profiles/1000⌉, at least 1.
func SnapshotCost(profiles int64) int {
	return max(1, int((profiles+999)/1000))
}

// deferScheduled records the day windows a scheduled run could not start
// for want of budget as the run id (nightly-<event hour>), which the sweeps
// advance before any backfill. Snapshots are left to the next scheduled
// run. A run already recorded by an earlier try of the same event stays.
func (e *Exporter) deferScheduled(ctx context.Context, id string, jobs []PlannedJob) error {
	r := Run{ID: id, By: "schedule", CreatedAt: e.now(), Days: []RunDay{}}
	seen := map[string]bool{}
	for _, p := range jobs {
		if p.Day == "" {
			continue
		}
		if !seen[p.Object] {
			seen[p.Object] = true
			r.Objects = append(r.Objects, p.Object)
		}
		r.Days = append(r.Days, RunDay{Object: p.Object, Day: p.Day, State: DayPending})
		if r.From == "" || p.Day < r.From {
			r.From = p.Day
		}
		if next, err := nextDay(p.Day); err == nil && next > r.To {
			r.To = next
		}
	}
	if len(r.Days) == 0 {
		return nil
	}
	if e.cfg.Budget != nil {
		r.QueriesPerHour = e.cfg.Budget.Limit()
	}
	r.settle()
	if _, err := e.writeRun(ctx, &r, ""); err != nil && !errors.Is(err, errRunConflict) {
		return fmt.Errorf("record the deferred days of %s: %w", id, err)
	}
	return nil
}
