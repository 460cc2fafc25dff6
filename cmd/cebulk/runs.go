package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cebulk/cebulk/internal/budget"
	"github.com/cebulk/cebulk/internal/exporter"
	"github.com/cebulk/cebulk/internal/s3stream"
)

// runProgress sweeps until a durable run is final, drawing its progress:
// one line redrawn in place on a terminal, a plain line per change
// otherwise.
type runProgress struct {
	ex     *exporter.Exporter
	store  *s3stream.Store
	budget *budget.Budget
	bucket string
	out    io.Writer
	errw   io.Writer
	tty    bool
}

func (p *runProgress) wait(ctx context.Context, id string, wait, poll time.Duration) error {
	fmt.Fprintf(p.out, "run %s: sweeping every %v for up to %v (ctrl-C leaves the run to the ExportFunction's sweeps)\n", id, poll, wait)
	deadline := time.Now().Add(wait)
	last := ""
	var r *exporter.Run
	for {
		if _, err := p.ex.Sweep(ctx); err != nil && ctx.Err() == nil {
			fmt.Fprintf(p.errw, "cebulk export: sweep: %v (trying again)\n", err)
		}
		if ctx.Err() != nil {
			break
		}
		var err error
		if r, _, err = exporter.ReadRun(ctx, p.store, p.bucket, id); err != nil {
			return fmt.Errorf("export: read run %s: %w", id, err)
		}
		u, err := p.budget.Usage(ctx)
		if err != nil {
			fmt.Fprintf(p.errw, "cebulk export: query budget: %v\n", err)
		}
		if line := progressLine(r.View(u)); line != last {
			if p.tty {
				fmt.Fprintf(p.out, "\r\033[K%s", line)
			} else {
				fmt.Fprintln(p.out, line)
			}
			last = line
		}
		if r.Status != exporter.RunRunning || time.Now().After(deadline) || !sleep(ctx, poll) {
			break
		}
	}
	if p.tty {
		fmt.Fprintln(p.out)
	}
	switch {
	case r == nil:
		return errors.New("export: interrupted")
	case r.Status == exporter.RunDone:
		fmt.Fprintf(p.out, "run %s: DONE\n", id)
		return nil
	case r.Status == exporter.RunPartial:
		return fmt.Errorf("export: run %s ended PARTIAL: failed days %s (their ledger records say why; re-run them with -from/-to)",
			id, strings.Join(r.Progress().FailedDays, ", "))
	}
	why := fmt.Sprintf("the wait of %v ran out", wait)
	if ctx.Err() != nil {
		why = "interrupted"
	}
	return fmt.Errorf("export: %s with run %s RUNNING: the ExportFunction's sweeps go on with it (cebulk runs %s)", why, id, id)
}

// progressLine is one line of a run's progress: days done/total, records,
// ETA.
func progressLine(v exporter.RunView) string {
	p := v.Progress
	line := fmt.Sprintf("%s %s: days %d/%d done, %d running, %d pending, %d failed; %d records",
		v.ID, v.Status, p.Done, p.Total, p.Started, p.Pending, p.Failed, p.Records)
	if v.ETA != nil {
		line += fmt.Sprintf("; ETA %s (at %d queries an hour)", v.ETA.UTC().Format(time.RFC3339), v.QueriesPerHour)
	}
	return line
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// runRuns lists the durable runs, or shows one.
func runRuns(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("runs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("queries-per-hour", "", "the budget to estimate with for runs that recorded none: `n` (default $EXPORT_QUERIES_PER_HOUR, else 50)")
	fs.String("log-level", "", "`level` of logs on stderr (default $LOG_LEVEL, else warn)")
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintln(w, "usage: cebulk runs [flags] [RUN_ID]")
		fmt.Fprintln(w, "\nLists the backfill runs (state/runs/ in DATA_BUCKET), or shows one as JSON: days done,")
		fmt.Fprintln(w, "running, pending and failed, records so far, and an ETA from the query budget.")
		fmt.Fprintln(w, "\nflags:")
		fs.PrintDefaults()
	}
	if err := parseFlagsAllowingArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return &usageError{errors.New("runs: at most one run id")}
	}
	perHour, src := flagOrEnv(fs, "queries-per-hour", "EXPORT_QUERIES_PER_HOUR", "")
	n, err := exporter.ParseQueriesPerHour(perHour)
	if err != nil {
		return &usageError{fmt.Errorf("runs: %s=%v", src, err)}
	}
	common, err := opsEnv(fs)
	if err != nil {
		return err
	}
	c, err := newOpsClients(ctx, common, stderr)
	if err != nil {
		return err
	}
	view := func(id string) (exporter.RunView, error) {
		r, _, err := exporter.ReadRun(ctx, c.Store, common.Bucket, id)
		if err != nil {
			return exporter.RunView{}, err
		}
		limit := r.QueriesPerHour
		if limit == 0 {
			limit = n
		}
		b, err := budget.New(c.Store, common.Bucket, limit)
		if err != nil {
			return exporter.RunView{}, err
		}
		u, err := b.Usage(ctx)
		if err != nil {
			return exporter.RunView{}, err
		}
		return r.View(u), nil
	}
	if id := fs.Arg(0); id != "" {
		if !exporter.ValidRunID(id) {
			return &usageError{fmt.Errorf("runs: %q is not a run id", id)}
		}
		v, err := view(id)
		if errors.Is(err, s3stream.ErrNotFound) {
			return fmt.Errorf("runs: no run %s in s3://%s/%s", id, common.Bucket, exporter.RunsPrefix)
		}
		if err != nil {
			return fmt.Errorf("runs: %w", err)
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	found := 0
	for info, err := range c.Store.List(ctx, common.Bucket, exporter.RunsPrefix) {
		if err != nil {
			return fmt.Errorf("runs: %w", err)
		}
		id, ok := strings.CutSuffix(strings.TrimPrefix(info.Key, exporter.RunsPrefix), ".json")
		if !ok || !exporter.ValidRunID(id) {
			continue
		}
		v, err := view(id)
		if err != nil {
			fmt.Fprintf(stdout, "%s: unreadable: %v\n", id, err)
			continue
		}
		found++
		fmt.Fprintf(stdout, "%s  %s..%s  by %s\n", progressLine(v), v.From, v.To, v.By)
	}
	if found == 0 {
		fmt.Fprintf(stdout, "no runs in s3://%s/%s\n", common.Bucket, exporter.RunsPrefix)
	}
	return nil
}
