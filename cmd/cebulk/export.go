package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // -timezone, whatever the machine carries

	"github.com/cebulk/cebulk/internal/syncio"

	"github.com/cebulk/cebulk/internal/backend"
	"github.com/cebulk/cebulk/internal/budget"
	"github.com/cebulk/cebulk/internal/exporter"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/s3stream"
)

// exportSettings are the export command's flags, after the environment
// defaults were applied and checked.
type exportSettings struct {
	objects      []string
	objectsGiven bool // -objects was given: the run exports exactly these
	from, to     string
	start        string
	location     *time.Location
	lag          time.Duration
	maxJobs      int
	perHour      int
	basis        exporter.TimeBasis
	lookback     int
	wait, poll   time.Duration
}

// runExport runs the export pipeline from this machine: exporter.Run (a
// backfill with -from/-to, else the scheduled run from the watermarks),
// then exporter.Sweep every -poll until every job it started is final or
// -wait has passed. It is the code the ExportFunction runs, configured by
// the same environment; the jobs get no callback URL, so the sweeps poll
// CE at once.
func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("objects", "", "comma-separated `objects` to export: activities and/or users\n(default $EXPORT_OBJECTS, else activities,users; a backfill without -objects exports activities only)")
	from := fs.String("from", "", "first `day` of a backfill, YYYY-MM-DD in -timezone (with -to)")
	to := fs.String("to", "", "the `day` after the last of a backfill (exclusive)")
	fs.String("start", "", "first `day` of an object without a watermark, for a run without -from/-to\n(default $EXPORT_START, else yesterday)")
	fs.String("timezone", "", "IANA `zone` the day partitions follow (default $EXPORT_TIMEZONE, else UTC)")
	fs.String("lag", "", "how long after a day ends before it is exported, as a `duration` (default $EXPORT_LAG, else 2h)")
	fs.String("max-jobs", "", "most CE jobs the run, and each sweep, starts: `n` from 1 to 60 (default $EXPORT_MAX_JOBS, else 60)")
	fs.String("queries-per-hour", "", "the deployment's query budget, shared with the ExportFunction: `n` from 1 to 60\n(default $EXPORT_QUERIES_PER_HOUR, else 50)")
	fs.String("lookback", "", "finished `days` a run without -from/-to exports again for late events, e.g. 5d (default $EXPORT_LOOKBACK, else 5d)")
	fs.String("time-basis", "", "what the project's event times count: `utc` or project (default $EXPORT_TIME_BASIS, else utc)")
	wait := fs.Duration("wait", 2*time.Hour, "how long to wait for the started jobs to end; 0 starts them and exits")
	poll := fs.Duration("poll", 15*time.Second, "how often to sweep (poll CE, collect, retry) while waiting")
	fs.String("log-level", "", "`level` of the pipeline's logs on stderr: debug, info, warn, error\n(default $LOG_LEVEL, else warn)")
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintln(w, "usage: cebulk export [flags]")
		fmt.Fprintln(w, "\nRuns the ExportFunction's pipeline from this machine: starts query jobs (a backfill of")
		fmt.Fprintln(w, "-from to -to, else the scheduled run from the watermarks), then sweeps until they are DONE,")
		fmt.Fprintln(w, "FAILED or EXPIRED. Configured like the functions: BACKEND (ce or mixpanel), CE_BASE_URL or")
		fmt.Fprintln(w, "MIXPANEL_REGION/MIXPANEL_BASE_URL, CE_SECRET_ID, DATA_BUCKET (and AWS_ENDPOINT_URL for a local")
		fmt.Fprintln(w, "stack). A collect has no deadline here and -wait never cuts")
		fmt.Fprintln(w, "one short: keep the command running until it ends. ctrl-C stops it (a collect in progress")
		fmt.Fprintln(w, "publishes nothing) and leaves unfinished jobs to the ExportFunction's sweep. Exit status 1")
		fmt.Fprintln(w, "when a job ends FAILED or EXPIRED, or the wait runs out.")
		fmt.Fprintln(w, "\nflags:")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	s, err := readExportFlags(fs, *from, *to, *wait, *poll)
	if err != nil {
		return err
	}
	common, err := opsEnv(fs)
	if err != nil {
		return err
	}
	errw := syncio.NewWriter(stderr)
	c, err := newOpsClients(ctx, common, errw)
	if err != nil {
		return err
	}
	b, err := budget.New(c.Store, common.Bucket, s.perHour)
	if err != nil {
		return err
	}
	be, err := backend.Exports(common, c)
	if err != nil {
		return err
	}
	ex := exporter.New(exporter.Config{
		Bucket:    common.Bucket,
		Backend:   common.Backend,
		Objects:   s.objects,
		Start:     s.start,
		Location:  s.location,
		Lag:       s.lag,
		MaxJobs:   s.maxJobs,
		Budget:    b,
		TimeBasis: s.basis,
		Lookback:  s.lookback,
		// No callback: the jobs are polled by this command's sweeps (at
		// once, as PollAfter is 0 without a callback URL), or by the
		// ExportFunction's sweeps if this command stops first.
		CallbackURL: "",
	}, be, c.Store, c.Jobs, c.Log)

	req := exporter.RunRequest{From: s.from, To: s.to, RunID: "cebulk-export-" + time.Now().UTC().Format("20060102T150405Z"), By: "cebulk export"}
	if s.objectsGiven {
		req.Objects = s.objects
	}
	describeRun(stdout, req, s)
	res, err := ex.Run(ctx, req)
	printRun(stdout, common.Bucket, res, s)
	if err != nil {
		return fmt.Errorf("export run: %w", err)
	}
	if res.RunID != "" && s.wait > 0 && res.Deferred > 0 {
		// A run longer than the budget allows at once: follow the run
		// (the sweeps start its other days hour by hour) with a progress
		// line. A run started whole is followed job by job below.
		p := &runProgress{ex: ex, store: c.Store, budget: b, bucket: common.Bucket, out: stdout, errw: errw, tty: isTerminal(stdout)}
		return p.wait(ctx, res.RunID, s.wait, s.poll)
	}
	switch {
	case len(res.Started) == 0 && res.Deferred > 0:
		fmt.Fprintf(stdout, "export: the query budget is spent for this hour: the ExportFunction's sweeps start the %s left\n", plural(res.Deferred, "day"))
		return nil
	case len(res.Started) == 0:
		fmt.Fprintln(stdout, "export: no job started")
		return nil
	case s.wait == 0:
		fmt.Fprintf(stdout, "export: not waiting (-wait 0): the ExportFunction's sweep collects the %s started\n", plural(len(res.Started), "job"))
		return nil
	}
	w := &exportWaiter{ex: ex, jobs: c.Jobs, bucket: common.Bucket, out: stdout, errw: errw}
	err = w.wait(ctx, res.Started, s.wait, s.poll)
	if ctx.Err() == nil {
		printWatermarks(ctx, stdout, c.Store, common.Bucket, res.Watermarks)
	}
	return err
}

// printWatermarks prints where the watermarks of a scheduled run's objects
// stand now (the collects move them over the days done).
func printWatermarks(ctx context.Context, w io.Writer, store *s3stream.Store, bucket string, planned map[string]string) {
	for _, o := range slices.Sorted(maps.Keys(planned)) {
		b, _, err := store.ReadSmall(ctx, bucket, exporter.WatermarkKey(o))
		var wm exporter.Watermark
		if err == nil {
			err = json.Unmarshal(b, &wm)
		}
		if err != nil {
			fmt.Fprintf(w, "watermark %s: unreadable: %v\n", o, err)
			continue
		}
		fmt.Fprintf(w, "watermark %s: first day not yet exported is now %s\n", o, wm.Next)
	}
}

// readExportFlags checks the flags and applies the environment defaults,
// reporting every problem at once.
func readExportFlags(fs *flag.FlagSet, from, to string, wait, poll time.Duration) (exportSettings, error) {
	s := exportSettings{from: from, to: to, wait: wait, poll: poll}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	objects, src := flagOrEnv(fs, "objects", "EXPORT_OBJECTS", exporter.DefaultObjects)
	s.objectsGiven = src == "-objects"
	var err error
	if s.objects, err = exporter.ParseObjects(objects); err != nil {
		bad("%s: %v", src, err)
	}

	switch {
	case (from == "") != (to == ""):
		bad("a backfill needs both -from and -to")
	case from != "":
		f, ferr := time.Parse(time.DateOnly, from)
		t, terr := time.Parse(time.DateOnly, to)
		if ferr != nil {
			bad("-from=%q: want a day like 2026-11-25", from)
		}
		if terr != nil {
			bad("-to=%q: want a day like 2026-11-26", to)
		}
		if ferr == nil && terr == nil && !f.Before(t) {
			bad("-to (%s) must come after -from (%s): -to is exclusive", to, from)
		}
		if ferr == nil && terr == nil && t.Sub(f) > exporter.MaxRunDays*24*time.Hour {
			bad("-from %s to -to %s is over %d days (three years)", from, to, exporter.MaxRunDays)
		}
	}

	start, src := flagOrEnv(fs, "start", "EXPORT_START", "")
	if err := exporter.ParseDay(start); err != nil {
		bad("%s=%v", src, err)
	}
	s.start = start
	tz, src := flagOrEnv(fs, "timezone", "EXPORT_TIMEZONE", "UTC")
	if s.location, err = exporter.ParseTimezone(tz); err != nil {
		bad("%s=%v", src, err)
	}
	lag, src := flagOrEnv(fs, "lag", "EXPORT_LAG", exporter.DefaultLag.String())
	if s.lag, err = exporter.ParseLag(lag); err != nil {
		bad("%s=%v", src, err)
	}
	maxJobs, src := flagOrEnv(fs, "max-jobs", "EXPORT_MAX_JOBS", strconv.Itoa(exporter.DefaultMaxJobs))
	if s.maxJobs, err = exporter.ParseMaxJobs(maxJobs); err != nil {
		bad("%s=%v", src, err)
	}
	perHour, src := flagOrEnv(fs, "queries-per-hour", "EXPORT_QUERIES_PER_HOUR", strconv.Itoa(exporter.DefaultQueriesPerHour))
	if s.perHour, err = exporter.ParseQueriesPerHour(perHour); err != nil {
		bad("%s=%v", src, err)
	}
	basis, src := flagOrEnv(fs, "time-basis", "EXPORT_TIME_BASIS", string(exporter.DefaultTimeBasis))
	if s.basis, err = exporter.ParseTimeBasis(basis); err != nil {
		bad("%s=%v", src, err)
	}
	lookback, src := flagOrEnv(fs, "lookback", "EXPORT_LOOKBACK", strconv.Itoa(exporter.DefaultLookback)+"d")
	if s.lookback, err = exporter.ParseLookback(lookback); err != nil {
		bad("%s=%v", src, err)
	}
	if err := checkWaitPoll("export", wait, poll); err != nil {
		problems = append(problems, strings.TrimPrefix(err.Error(), "export: "))
	}
	if len(problems) > 0 {
		return s, &usageError{errors.New("export: " + strings.Join(problems, "; "))}
	}
	return s, nil
}

// describeRun prints what the run is asked to do.
func describeRun(w io.Writer, req exporter.RunRequest, s exportSettings) {
	objects := strings.Join(s.objects, ",")
	if req.From != "" {
		if !s.objectsGiven {
			var days []string
			for _, o := range s.objects {
				if !exporter.Snapshot(o) {
					days = append(days, o)
				}
			}
			objects = strings.Join(days, ",")
		}
		fmt.Fprintf(w, "export %s: backfill of %s from %s to %s (exclusive), timezone %s\n", req.RunID, objects, req.From, req.To, s.location)
		return
	}
	fmt.Fprintf(w, "export %s: scheduled run of %s from the watermarks, timezone %s, lag %v\n", req.RunID, objects, s.location, s.lag)
}

// printRun prints the jobs a run started and the windows it left alone.
func printRun(w io.Writer, bucket string, res exporter.RunResult, s exportSettings) {
	for _, j := range res.Started {
		line := fmt.Sprintf("started %s  %s", j.JobID, partitionURL(bucket, j.Object, j.Partition))
		switch {
		case j.Error != "":
			line += "  CE job not started (" + j.Error + "): a sweep starts it after a minute"
		case j.CEJobID != "":
			line += "  CE job " + j.CEJobID
		}
		if j.Restarted {
			line += "  (exported before: replaced when done)"
		}
		fmt.Fprintln(w, line)
	}
	for _, id := range res.Skipped {
		fmt.Fprintf(w, "skipped %s: it already has a job (the ledger's state/jobs/%s.json)\n", id, id)
	}
	if res.Deferred > 0 {
		later := "the next run starts them"
		if res.RunID != "" {
			later = "sweeps start them as the budget allows (run " + res.RunID + ")"
		}
		fmt.Fprintf(w, "deferred: %s over the query budget (%d an hour) or -max-jobs %d; %s\n", plural(res.Deferred, "window"), s.perHour, s.maxJobs, later)
	}
	if len(res.NotReady) > 0 {
		fmt.Fprintf(w, "not ready: %s: ended less than %v (-lag) ago; left out\n", strings.Join(res.NotReady, ", "), s.lag)
	}
	for _, o := range slices.Sorted(maps.Keys(res.Watermarks)) {
		fmt.Fprintf(w, "watermark %s: the run planned from %s\n", o, res.Watermarks[o])
	}
}

// partitionURL is where a job's partition lands.
func partitionURL(bucket, object, partition string) string {
	return "s3://" + bucket + "/exports/" + object + "/" + partition + "/"
}

// exportWaiter sweeps until the jobs of one run are final.
type exportWaiter struct {
	ex     *exporter.Exporter
	jobs   *ledger.Store
	bucket string
	out    io.Writer
	errw   io.Writer
}

// wait runs exporter.Sweep every poll until every started job is DONE,
// FAILED or EXPIRED, or wait has passed, printing each job as it ends. A
// sweep is never cut short by wait: a collect in progress runs to its
// end, as it has no Lambda deadline here. When ctx ends (ctrl-C) a collect
// in progress stops, publishes nothing and leaves its job PENDING for the
// next sweep.
func (w *exportWaiter) wait(ctx context.Context, started []exporter.StartedJob, wait, poll time.Duration) error {
	pending := make([]string, 0, len(started))
	for _, j := range started {
		pending = append(pending, j.JobID)
	}
	last := map[string]*ledger.Job{}
	counts := map[ledger.Status]int{}
	var failed []string
	fmt.Fprintf(w.out, "waiting for %s: sweeping every %v for up to %v (ctrl-C leaves them to the ExportFunction's sweep)\n",
		plural(len(pending), "job"), poll, wait)
	deadline := time.Now().Add(wait)
	for len(pending) > 0 {
		if _, err := w.ex.Sweep(ctx); err != nil && ctx.Err() == nil {
			fmt.Fprintf(w.errw, "cebulk export: sweep: %v (trying again)\n", err)
		}
		if ctx.Err() != nil {
			break
		}
		still := pending[:0]
		for _, id := range pending {
			j, _, err := w.jobs.Get(ctx, id)
			switch {
			case err != nil:
				if ctx.Err() == nil {
					fmt.Fprintf(w.errw, "cebulk export: read job %s: %v\n", id, err)
				}
				still = append(still, id)
				continue
			case !j.Status.Final():
				last[id] = j
				still = append(still, id)
				continue
			}
			counts[j.Status]++
			if j.Status != ledger.StatusDone {
				failed = append(failed, id)
			}
			w.printJob(j)
		}
		pending = still
		if len(pending) == 0 || time.Now().After(deadline) || !sleep(ctx, poll) {
			break
		}
	}

	summary := fmt.Sprintf("export: %s:", plural(len(started), "job"))
	for _, st := range []ledger.Status{ledger.StatusDone, ledger.StatusFailed, ledger.StatusExpired} {
		if counts[st] > 0 {
			summary += fmt.Sprintf(" %d %s,", counts[st], st)
		}
	}
	if len(pending) > 0 {
		summary += fmt.Sprintf(" %d not final,", len(pending))
	}
	fmt.Fprintln(w.out, strings.TrimSuffix(summary, ","))

	var errs []error
	if len(failed) > 0 {
		errs = append(errs, fmt.Errorf("%s ended FAILED or EXPIRED: %s (their ledger records say why; re-run the days with -from/-to)",
			plural(len(failed), "job"), strings.Join(failed, ", ")))
	}
	if len(pending) > 0 {
		var states []string
		for _, id := range pending {
			st := id
			if j := last[id]; j != nil {
				st += " (" + string(j.Status)
				if j.CE != nil && j.CE.Status != "" {
					st += ", CE " + j.CE.Status
				}
				st += ")"
			}
			states = append(states, st)
		}
		why := fmt.Sprintf("the wait of %v ran out", wait)
		if ctx.Err() != nil {
			why = "interrupted"
		}
		errs = append(errs, fmt.Errorf("%s with %s not final: %s; the ExportFunction's sweep picks them up",
			why, plural(len(pending), "job"), strings.Join(states, ", ")))
	}
	if len(errs) > 0 {
		return fmt.Errorf("export: %w", errors.Join(errs...))
	}
	return nil
}

// printJob prints one job that ended.
func (w *exportWaiter) printJob(j *ledger.Job) {
	var records, failed int64
	if j.Result != nil {
		records, failed = j.Result.Records, j.Result.Failed
	}
	partition := ""
	if j.Window != nil {
		partition = partitionURL(w.bucket, j.Object, j.Window.Partition)
	}
	line := fmt.Sprintf("%-7s %s  records=%d  %s", j.Status, j.ID, records, partition)
	switch {
	case j.Status == ledger.StatusDone && failed > 0:
		line += fmt.Sprintf("  (incomplete: CE reported %d failed records)", failed)
	case j.Status != ledger.StatusDone && j.LastError != "":
		line += "  " + j.LastError
	}
	fmt.Fprintln(w.out, line)
}
