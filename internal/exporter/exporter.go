package exporter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/cebulk/cebulk/internal/budget"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/logging"
	"github.com/cebulk/cebulk/internal/s3stream"
	"github.com/cebulk/cebulk/pkg/ce"
)

// Backend is where the exporter's records come from, in CE's job model:
// start a query job for a day window or a snapshot, read its status,
// download its records (from an offset, to resume), cancel it. The CE
// backend is *ceclient.Client (or *ce.Client); the Mixpanel backend,
// *mpdirect.Exports, answers a start with a job already COMPLETED and runs
// the export when it is downloaded.
type Backend interface {
	StartQuery(ctx context.Context, q ce.QueryRequest) (*ce.Job, error)
	Status(ctx context.Context, jobID string) (*ce.Job, error)
	Download(ctx context.Context, jobID, object string, opts ...ce.DownloadOption) (io.ReadCloser, error)
	Cancel(ctx context.Context, jobID string) error
}

// ObjectStore is the part of S3 the exporter uses. *s3stream.Store
// implements it.
type ObjectStore interface {
	CreateMultipart(ctx context.Context, bucket, key string, o s3stream.PutOptions) (string, error)
	UploadPart(ctx context.Context, bucket, key, uploadID string, n int32, data []byte) (s3stream.Part, error)
	CompleteMultipart(ctx context.Context, bucket, key, uploadID string, parts []s3stream.Part) (string, error)
	AbortMultipart(ctx context.Context, bucket, key, uploadID string) error
	ReadSmall(ctx context.Context, bucket, key string) ([]byte, string, error)
	WriteSmall(ctx context.Context, bucket, key string, data []byte, contentType string, cond s3stream.Condition) (string, error)
	Delete(ctx context.Context, bucket, key string) error
	List(ctx context.Context, bucket, prefix string) iter.Seq2[s3stream.ObjectInfo, error]
}

// Budget is the deployment's query budget (*budget.Budget): every CE query
// job started takes tokens from it first.
type Budget interface {
	Limit() int
	Claim(ctx context.Context, n int) (budget.Grant, error)
	Refund(ctx context.Context, g budget.Grant, n int) error
	Usage(ctx context.Context) (budget.Usage, error)
}

// Config configures an Exporter. Zero fields take the defaults noted.
type Config struct {
	// Bucket is the data bucket (exports/ and state/). Required.
	Bucket string
	// Backend names the backend in manifests and logs ("ce").
	Backend string
	// Objects are the CE objects a scheduled run exports (activities,users).
	Objects []string
	// Start is the first day (YYYY-MM-DD) of an object without a watermark;
	// "" means yesterday in Location.
	Start string
	// Location aligns day windows (UTC).
	Location *time.Location
	// TimeBasis says what properties.time counts (BasisUTC).
	TimeBasis TimeBasis
	// Lookback is how many finished days before the watermark a scheduled
	// run exports again, after the new days, replacing each partition
	// whole (0: none).
	Lookback int
	// Lag is how long after a day ends before it is exported (0).
	Lag time.Duration
	// MaxJobs is the most CE jobs one invocation (a run or a sweep) starts
	// (60); the query budget is the limit across invocations.
	MaxJobs int
	// Budget, when set, is charged for every CE query job started: one
	// token for a day window, ⌈profiles of the last snapshot / 1000⌉ (at
	// least 1) for a snapshot. Work that finds it spent waits for a later
	// sweep.
	Budget Budget
	// CallbackURL is the webhook's callback route; "" means poll only.
	CallbackURL string
	// MaxAttempts bounds the tries of one window: CE jobs started and
	// collects attempted (3).
	MaxAttempts int
	// JobDeadline is how long a CE job may run with no result before the
	// sweep expires it and cancels it on CE (6h).
	JobDeadline time.Duration
	// SafetyMargin is the time kept free before the invocation's deadline:
	// a collect stops reading that long before it and releases the job (30s).
	SafetyMargin time.Duration
	// MinCollect is the least time, after SafetyMargin, a collect needs to
	// be started; with less it leaves the job to the next sweep (10s).
	MinCollect time.Duration
	// Lease is how long a COLLECTING job belongs to a collector that runs
	// without a deadline (the CLI), counted from its last checkpoint; past
	// it the sweep takes the job back (15m). A collector with a deadline
	// (a Lambda invocation) holds the job until that deadline plus a
	// minute: the lease follows the function's own timeout.
	Lease time.Duration
	// Continue queues another invocation of the collect of jobID; a
	// collect that reaches its deadline after checkpointing progress calls
	// it and ends. nil leaves the job to the next sweep.
	Continue func(ctx context.Context, jobID string) error
	// PollAfter is how old a CE job must be before the sweep polls it, to
	// give its callback time to arrive (1m with a CallbackURL, else 0).
	PollAfter time.Duration
	// Metrics receives CloudWatch embedded-metric-format lines, one per job
	// that ends FAILED or EXPIRED (the function's stdout; nil discards).
	Metrics io.Writer
	// Now is the clock (time.Now).
	Now func() time.Time
}

// Defaults.
const (
	// DefaultBackend is the backend's name when Config.Backend is empty.
	DefaultBackend      = "ce"
	defaultMaxAttempts  = 3
	defaultJobDeadline  = 6 * time.Hour
	defaultSafetyMargin = 30 * time.Second
	defaultMinCollect   = 10 * time.Second
	defaultLease        = 15 * time.Minute
	defaultPollAfter    = time.Minute
	// startGrace is how long a PENDING job without a CE job id is left to
	// the run that claimed it before the sweep starts its CE job itself.
	startGrace = time.Minute
	// releaseTimeout bounds the ledger write that releases a job after a
	// failed or interrupted collect (on a fresh context).
	releaseTimeout = 10 * time.Second
)

// Exporter runs the export pipeline. It is safe for concurrent use; every
// piece of state lives in the bucket.
type Exporter struct {
	cfg   Config
	ce    Backend
	store ObjectStore
	jobs  *ledger.Store
	log   *slog.Logger
}

// New returns an Exporter. api is the CE client, store the S3 store and jobs
// the ledger in cfg.Bucket; log may be nil (discard).
func New(cfg Config, api Backend, store ObjectStore, jobs *ledger.Store, log *slog.Logger) *Exporter {
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	if cfg.Backend == "" {
		cfg.Backend = DefaultBackend
	}
	if cfg.TimeBasis == "" {
		cfg.TimeBasis = DefaultTimeBasis
	}
	if cfg.MaxJobs <= 0 {
		cfg.MaxJobs = DefaultMaxJobs
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = defaultMaxAttempts
	}
	if cfg.JobDeadline <= 0 {
		cfg.JobDeadline = defaultJobDeadline
	}
	if cfg.SafetyMargin <= 0 {
		cfg.SafetyMargin = defaultSafetyMargin
	}
	if cfg.MinCollect <= 0 {
		cfg.MinCollect = defaultMinCollect
	}
	if cfg.Lease <= 0 {
		cfg.Lease = defaultLease
	}
	if cfg.PollAfter <= 0 && cfg.CallbackURL != "" {
		cfg.PollAfter = defaultPollAfter
	}
	if cfg.Metrics == nil {
		cfg.Metrics = io.Discard
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.Objects) == 0 {
		cfg.Objects = []string{ObjectActivities, ObjectUsers}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Exporter{cfg: cfg, ce: api, store: store, jobs: jobs, log: log}
}

func (e *Exporter) now() time.Time { return e.cfg.Now().UTC() }

// basisOf and zoneOf are what a day job's manifest states about its
// window ("" for a snapshot).
func (e *Exporter) basisOf(job *ledger.Job) TimeBasis {
	if Snapshot(job.Object) {
		return ""
	}
	return e.cfg.TimeBasis
}

func (e *Exporter) zoneOf(job *ledger.Job) string {
	if Snapshot(job.Object) {
		return ""
	}
	return e.cfg.Location.String()
}

// RunRequest asks for a run. Without From and To it is the scheduled run;
// with them a backfill of exactly those days.
type RunRequest struct {
	// Objects to export; empty means Config.Objects (without snapshot
	// objects for a backfill). A snapshot object listed in a backfill gets
	// one snapshot, as in a scheduled run.
	Objects []string
	// From and To (YYYY-MM-DD, To exclusive) make a backfill.
	From, To string
	// At names the users snapshot (the EventBridge event's time, stable
	// across Lambda's retries of one event); zero means now. It is
	// truncated to the hour.
	At time.Time
	// RunID ties the jobs of one operator request together (ledger Run)
	// and names a backfill's durable run (state/runs/<RunID>.json); a
	// backfill without one gets a fresh id.
	RunID string
	// By says who asked, for the run record.
	By string
}

// RunResult reports a run.
type RunResult struct {
	RunID      string            `json:"runId,omitempty"` // a backfill's durable run
	Started    []StartedJob      `json:"started"`
	Skipped    []string          `json:"skipped,omitempty"`    // windows with a job, left alone
	Deferred   int               `json:"deferred,omitempty"`   // windows over MaxJobs, for a later run
	NotReady   []string          `json:"notReady,omitempty"`   // backfill days that have not ended Lag ago
	Watermarks map[string]string `json:"watermarks,omitempty"` // object → first day not yet exported
}

// StartedJob is one window a run started.
type StartedJob struct {
	JobID     string    `json:"jobId"`
	Object    string    `json:"object"`
	Partition string    `json:"partition"`
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	CEJobID   string    `json:"ceJobId,omitempty"`
	Restarted bool      `json:"restarted,omitempty"`
	// Error is set when the CE job could not be started; the job stays
	// PENDING and the sweep starts it.
	Error string `json:"error,omitempty"`
}

// Run plans the windows to export and starts one CE bulk query job for
// each, recording it in the ledger first: creating the record with
// If-None-Match: * claims the window, so a retried run never starts a
// second CE job for it.
//
// A scheduled run first makes sure each day object has a watermark
// (created at Config.Start) and moves it over the days already DONE, then
// plans from it. A backfill restarts the days of its range whose jobs are
// final and leaves running ones alone; it never moves a watermark itself.
func (e *Exporter) Run(ctx context.Context, req RunRequest) (RunResult, error) {
	now := e.now()
	backfill := req.From != "" || req.To != ""
	objects := req.Objects
	if len(objects) == 0 {
		for _, o := range e.cfg.Objects {
			if !backfill || !Snapshot(o) {
				objects = append(objects, o)
			}
		}
	}
	pr := PlanRequest{
		Objects:    objects,
		Location:   e.cfg.Location,
		Basis:      e.cfg.TimeBasis,
		Now:        now,
		Lag:        e.cfg.Lag,
		MaxJobs:    e.cfg.MaxJobs,
		Start:      e.cfg.Start,
		From:       req.From,
		To:         req.To,
		SnapshotAt: req.At,
		Jobs:       map[string]ledger.Status{},
	}
	// Check the request before touching the bucket.
	if _, err := Plan(pr); err != nil {
		return RunResult{}, err
	}

	res := RunResult{Started: []StartedJob{}}
	if backfill {
		// Day objects become a durable run, worked off by this and later
		// invocations as the budget allows; a snapshot object listed gets
		// its one snapshot below, as in a scheduled run.
		var days, snaps []string
		for _, o := range objects {
			if Snapshot(o) {
				snaps = append(snaps, o)
			} else {
				days = append(days, o)
			}
		}
		if len(days) > 0 {
			if req.RunID == "" {
				req.RunID = NewRunID(now)
			}
			if err := e.startRun(ctx, req, days, &res); err != nil {
				return res, err
			}
		}
		if len(snaps) == 0 {
			e.emitMetrics(ctx, e.cfg.Objects, nil)
			return res, nil
		}
		objects, pr.Objects = snaps, snaps
	}
	if !backfill {
		pr.Watermarks = map[string]string{}
		res.Watermarks = map[string]string{}
		for _, o := range objects {
			if Snapshot(o) {
				continue
			}
			wm, err := e.ensureWatermark(ctx, o, now)
			if err != nil {
				return res, err
			}
			next, err := e.advanceWatermark(ctx, o)
			if err != nil {
				return res, err
			}
			if next == "" {
				next = wm.Next
			}
			pr.Watermarks[o], res.Watermarks[o] = next, next
		}
	}
	for _, o := range objects {
		if err := e.existingJobs(ctx, o, pr, backfill); err != nil {
			return res, err
		}
	}
	plan, err := Plan(pr)
	if err != nil {
		return res, err
	}
	if !backfill && e.cfg.Lookback > 0 {
		// Late events: the last finished days again, after the new ones,
		// from the same budget and cap.
		more, err := e.lookback(ctx, objects, pr, req.At)
		if err != nil {
			return res, err
		}
		room := max(0, e.cfg.MaxJobs-len(plan.Jobs))
		plan.Jobs = append(plan.Jobs, more[:min(room, len(more))]...)
		plan.Deferred += len(more) - min(room, len(more))
	}
	res.Skipped, res.Deferred, res.NotReady = plan.Skipped, plan.Deferred, plan.NotReady
	if len(plan.NotReady) > 0 {
		e.log.WarnContext(ctx, "backfill days not exportable yet were left out",
			"days", len(plan.NotReady), "first", plan.NotReady[0], "lag", e.cfg.Lag.String())
	}
	for i, p := range plan.Jobs {
		g, err := e.takeTokens(ctx, p.Object)
		if err != nil {
			return res, err
		}
		if g == nil {
			res.Deferred += len(plan.Jobs) - i
			e.log.InfoContext(ctx, "query budget spent: windows left for a later run", "deferred", len(plan.Jobs)-i)
			// The sweeps start a deferred snapshot (claimed in the ledger
			// now, named by this run's event) and the scheduled run's
			// deferred days before any backfill's, as the budget allows.
			runID := req.RunID
			if !backfill && runID == "" {
				runID = lookbackTag(req.At, now)
			}
			snaps, err := e.deferSnapshots(ctx, runID, plan.Jobs[i:])
			if err != nil {
				return res, err
			}
			if len(snaps) > 0 {
				e.log.InfoContext(ctx, "query budget spent: snapshot left for the sweeps", "jobIds", snaps)
			}
			if !backfill {
				if err := e.deferScheduled(ctx, lookbackTag(req.At, now), plan.Jobs[i:]); err != nil {
					return res, err
				}
				res.RunID = lookbackTag(req.At, now)
			}
			break
		}
		runID := req.RunID
		if !backfill && runID == "" {
			runID = lookbackTag(req.At, now)
		}
		sj, started, err := e.startPlanned(ctx, p, runID)
		if err != nil {
			e.refund(ctx, g)
			return res, err
		}
		if !started {
			e.refund(ctx, g)
			res.Skipped = append(res.Skipped, p.ID)
			continue
		}
		res.Started = append(res.Started, sj)
	}
	e.log.InfoContext(ctx, "export run planned",
		slog.Bool("backfill", backfill),
		slog.Any("objects", objects),
		slog.Int("started", len(res.Started)),
		slog.Int("skipped", len(res.Skipped)),
		slog.Int("deferred", res.Deferred))
	e.emitMetrics(ctx, e.cfg.Objects, nil)
	return res, nil
}

// existingJobs fills pr.Jobs with the jobs of object that exist. A
// scheduled run only needs to know which ids exist (one listing); a
// backfill needs the status of those in its range.
func (e *Exporter) existingJobs(ctx context.Context, object string, pr PlanRequest, backfill bool) error {
	if Snapshot(object) {
		id := SnapshotJobID(object, pr.snapshotAt())
		j, _, err := e.jobs.Get(ctx, id)
		switch {
		case errors.Is(err, ledger.ErrNotFound):
			return nil
		case err != nil:
			return err
		}
		pr.Jobs[id] = j.Status
		return nil
	}
	prefix := ledger.Prefix + jobIDPrefix(object)
	for info, err := range e.store.List(ctx, e.cfg.Bucket, prefix) {
		if err != nil {
			return fmt.Errorf("list jobs of %s: %w", object, err)
		}
		id := strings.TrimSuffix(strings.TrimPrefix(info.Key, ledger.Prefix), ".json")
		day := dayOfJobID(object, id)
		if day == "" {
			continue
		}
		if !backfill {
			pr.Jobs[id] = ""
			continue
		}
		if day < pr.From || day >= pr.To {
			continue
		}
		j, _, err := e.jobs.Get(ctx, id)
		if errors.Is(err, ledger.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		pr.Jobs[id] = j.Status
	}
	return nil
}

// startPlanned claims a planned window in the ledger and starts its CE job.
// started is false when the window was claimed by someone else first.
func (e *Exporter) startPlanned(ctx context.Context, p PlannedJob, runID string) (sj StartedJob, started bool, err error) {
	now := e.now()
	sj = StartedJob{JobID: p.ID, Object: p.Object, Partition: p.Window.Partition, From: p.Window.From, To: p.Window.To}
	token, hash := e.newToken()
	var (
		job  *ledger.Job
		etag string
	)
	switch p.Action {
	case ActionCreate:
		job = e.newJob(p, runID, now)
		job.TokenHash = hash
		etag, err = e.jobs.Create(ctx, job)
		if errors.Is(err, ledger.ErrExists) {
			return sj, false, nil
		}
		if err != nil {
			return sj, false, err
		}
	case ActionRestart:
		job, etag, err = e.jobs.Get(ctx, p.ID)
		if err != nil {
			return sj, false, err
		}
		if !job.Status.Final() {
			return sj, false, nil
		}
		w := p.Window
		job.Status = ledger.StatusPending
		job.CEJobID = ""
		job.Attempts = 1
		job.StartedAt = now
		job.Deadline = now.Add(e.cfg.JobDeadline)
		job.TokenHash = hash
		job.Window = &w
		job.CE, job.Result, job.LastError = nil, nil, ""
		job.Collect, job.LeaseUntil = nil, time.Time{}
		job.Run = runID
		etag, err = e.jobs.Update(ctx, job, etag)
		if errors.Is(err, ledger.ErrConflict) {
			return sj, false, nil
		}
		if err != nil {
			return sj, false, err
		}
		sj.Restarted = true
	default:
		return sj, false, fmt.Errorf("unknown plan action %q", p.Action)
	}
	job, _, err = e.startCE(ctx, job, etag, token)
	if err != nil {
		if errors.Is(err, errStart) {
			sj.Error = job.LastError
			return sj, true, nil
		}
		return sj, true, err
	}
	sj.CEJobID = job.CEJobID
	return sj, true, nil
}

// newJob is the ledger record that claims planned window p: PENDING, no CE
// job yet, attempt 1, due by JobDeadline.
func (e *Exporter) newJob(p PlannedJob, runID string, now time.Time) *ledger.Job {
	w := p.Window
	return &ledger.Job{
		ID:        p.ID,
		Kind:      ledger.KindExport,
		Object:    p.Object,
		Status:    ledger.StatusPending,
		Attempts:  1,
		StartedAt: now,
		Deadline:  now.Add(e.cfg.JobDeadline),
		Window:    &w,
		Run:       runID,
	}
}

// deferSnapshots claims, for the sweeps, the new snapshots among the jobs a
// scheduled run could not start for want of budget: each becomes a PENDING
// ledger record without a CE job, which the next sweep with budget starts
// (sweeps start such jobs before any run's days), under the snapshot name
// of the scheduled event. It returns the ids claimed.
func (e *Exporter) deferSnapshots(ctx context.Context, runID string, jobs []PlannedJob) ([]string, error) {
	var ids []string
	for _, p := range jobs {
		if p.Day != "" || p.Action != ActionCreate {
			continue
		}
		_, err := e.jobs.Create(ctx, e.newJob(p, runID, e.now()))
		if errors.Is(err, ledger.ErrExists) {
			continue
		}
		if err != nil {
			return ids, fmt.Errorf("claim the deferred snapshot %s: %w", p.ID, err)
		}
		ids = append(ids, p.ID)
	}
	return ids, nil
}

// errStart marks a CE job that could not be started; the ledger record
// stays PENDING without a CE job id, for the sweep.
var errStart = errors.New("CE job not started")

// startCE starts the CE job of a claimed PENDING job (CEJobID empty,
// StartedAt and TokenHash fresh) and records its id. When CE refuses, the
// record keeps the error and an error wrapping errStart is returned.
func (e *Exporter) startCE(ctx context.Context, job *ledger.Job, etag, token string) (*ledger.Job, string, error) {
	t0 := time.Now()
	q := ce.QueryRequest{Object: job.Object}
	if !Snapshot(job.Object) && job.Window != nil {
		q.From, q.To = job.Window.From, job.Window.To
	}
	if e.cfg.CallbackURL != "" {
		u, err := callbackURL(e.cfg.CallbackURL, job.ID, token)
		if err != nil {
			return job, etag, err
		}
		q.CallbackURL = u
		q.CallbackPayload = map[string]string{"jobId": job.ID}
	}
	cj, err := e.ce.StartQuery(ctx, q)
	if err != nil {
		job.LastError = "start CE job: " + err.Error()
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		tag, uerr := e.jobs.Update(uctx, job, etag)
		if uerr == nil {
			etag = tag
		}
		e.logJob(ctx, slog.LevelWarn, "CE job not started; the sweep will start it", job,
			slog.Int64("durationMs", time.Since(t0).Milliseconds()), slog.String("err", err.Error()))
		return job, etag, fmt.Errorf("%w: %v", errStart, err)
	}
	now := e.now()
	job.CEJobID = cj.ID
	job.CE = &ledger.CEState{Status: string(cj.Status), CheckedAt: now}
	tag, err := e.jobs.Update(ctx, job, etag)
	if errors.Is(err, ledger.ErrConflict) {
		// Nobody else writes a PENDING job without a CE job id inside the
		// start grace, but be sure: write again only if it is still ours.
		fresh, ftag, gerr := e.jobs.Get(ctx, job.ID)
		if gerr == nil && fresh.Status == ledger.StatusPending && fresh.CEJobID == "" && fresh.TokenHash == job.TokenHash {
			fresh.CEJobID, fresh.CE = cj.ID, job.CE
			job = fresh
			tag, err = e.jobs.Update(ctx, job, ftag)
		}
	}
	if err != nil {
		// The CE job runs but nothing points at it: cancel it rather than
		// leave a second job for the window.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		_ = e.ce.Cancel(cctx, cj.ID)
		return job, etag, fmt.Errorf("record CE job %s of %s: %w", cj.ID, job.ID, err)
	}
	e.logJob(ctx, slog.LevelInfo, "CE job started", job, slog.Int64("durationMs", time.Since(t0).Milliseconds()))
	if cj.Status == ce.StatusCompleted && e.cfg.Continue != nil {
		// A synchronous backend (Mixpanel's export) has nothing to wait
		// for and nobody calls back: collect at once. Should queueing
		// fail, the next sweep collects it.
		if err := e.cfg.Continue(ctx, job.ID); err != nil {
			e.logJob(ctx, slog.LevelWarn, "collect not queued; the sweep will collect", job, slog.String("err", err.Error()))
		}
	}
	return job, tag, nil
}

// newToken returns a callback token and its hash, or nothing when there is
// no callback URL.
func (e *Exporter) newToken() (token, hash string) {
	if e.cfg.CallbackURL == "" {
		return "", ""
	}
	return ledger.NewToken()
}

// callbackURL returns base?job=<id>&token=<token>, keeping base's own query.
func callbackURL(base, id, token string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", errors.New("invalid callback URL: want an absolute http or https URL")
	}
	q := u.Query()
	q.Set("job", id)
	q.Set("token", token)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// logJob logs one step of a job with its identifying attributes.
func (e *Exporter) logJob(ctx context.Context, level slog.Level, msg string, job *ledger.Job, attrs ...slog.Attr) {
	base := []slog.Attr{slog.String("jobId", job.ID), slog.String("object", job.Object)}
	if w := job.Window; w != nil {
		base = append(base, slog.String("window", formatWindow(w)), slog.String("partition", w.Partition))
	}
	if job.CEJobID != "" {
		base = append(base, slog.String("ceJobId", job.CEJobID))
	}
	base = append(base, slog.Int("attempt", job.Attempts), slog.String("status", string(job.Status)))
	e.log.LogAttrs(ctx, level, msg, slices.Concat(base, attrs)...)
}

// formatWindow writes a window as an ISO 8601 interval.
func formatWindow(w *ledger.Window) string {
	return w.From.UTC().Format(time.RFC3339) + "/" + w.To.UTC().Format(time.RFC3339)
}

// jobEnded emits the JobsFailed metric for a job that ended FAILED or
// EXPIRED.
func (e *Exporter) jobEnded(ctx context.Context, job *ledger.Job) {
	if err := logging.Metric(e.cfg.Metrics, "export", MetricJobsFailed, 1, e.now()); err != nil {
		e.log.WarnContext(ctx, "write metric", "err", err.Error())
	}
	e.logJob(ctx, slog.LevelError, "export job ended "+string(job.Status), job, slog.String("lastError", job.LastError))
}

// lookback plans the re-export of the Config.Lookback days before each day
// object's watermark that are DONE, once per scheduled event: every job a
// scheduled run starts carries the run id nightly-<event hour>, so a
// retried event does not export the days a second time.
func (e *Exporter) lookback(ctx context.Context, objects []string, pr PlanRequest, at time.Time) ([]PlannedJob, error) {
	tag := lookbackTag(at, pr.Now)
	var out []PlannedJob
	for _, o := range objects {
		next, ok := pr.Watermarks[o]
		if Snapshot(o) || !ok {
			continue
		}
		days, err := LookbackDays(next, e.cfg.Lookback)
		if err != nil {
			return nil, err
		}
		for _, day := range days {
			j, _, err := e.jobs.Get(ctx, DayJobID(o, day))
			if errors.Is(err, ledger.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if j.Status != ledger.StatusDone || j.Run == tag {
				continue
			}
			p, _ := dayWindow(o, mustDay(day), pr.Location, pr.Basis)
			p.Action = ActionRestart
			out = append(out, p)
		}
	}
	return out, nil
}

// lookbackTag is the run id of the jobs a scheduled event starts.
func lookbackTag(at, now time.Time) string {
	if at.IsZero() {
		at = now
	}
	return "nightly-" + at.UTC().Truncate(time.Hour).Format(snapshotIDLayout)
}
