package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/cebulk/cebulk/internal/syncio"

	"github.com/cebulk/cebulk/internal/backend"
	"github.com/cebulk/cebulk/internal/importer"
	"github.com/cebulk/cebulk/internal/s3stream"
)

// importAttempts is how many times the command runs an import that failed
// with an error worth retrying, as Lambda retries an asynchronous
// invocation; the importer itself gives up (FAILED) after as many.
const importAttempts = importer.DefaultMaxAttempts

// runImport imports one object already in S3 with the ImportFunction's
// pipeline: importer.HandleObject, then importer.Resume in a loop while it
// checkpoints (instead of a Lambda re-invocation), then importer.Finalize
// every -poll until the report is written or -wait has passed.
func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyFlag := fs.String("key", "", "the object's `key` in DATA_BUCKET, instead of an s3:// URL")
	object := fs.String("object", "", "activities or users: check that the key is under imports/<`object`>/")
	dryRun := fs.Bool("dry-run", false, "check that the key is a dry run (imports/<object>/dry-run/...): validated and reported, nothing sent")
	fs.String("chunk-records", "", "`n` valid records per CE upload job (default $IMPORT_CHUNK_RECORDS, else 50000)")
	maxChunks := fs.Int("max-chunks", 0, "checkpoint and resume after every `n` chunks, as an invocation near the Lambda deadline does (0: no limit)")
	wait := fs.Duration("wait", 2*time.Hour, "how long to wait for CE to finish the upload jobs and the report to be written; 0 exits after the upload")
	poll := fs.Duration("poll", 15*time.Second, "how often to check the upload jobs while waiting")
	strict := fs.Bool("strict", false, "exit with status 1 for a PARTIAL import too (rows rejected, failed at CE or not sent)")
	fs.String("log-level", "", "`level` of the pipeline's logs on stderr: debug, info, warn, error\n(default $LOG_LEVEL, else warn)")
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintln(w, "usage: cebulk import [flags] s3://<bucket>/imports/<object>/<name>")
		fmt.Fprintln(w, "       cebulk import [flags] -key imports/<object>/<name>")
		fmt.Fprintln(w, "\nImports an object already in S3 with the ImportFunction's pipeline, as its upload event would,")
		fmt.Fprintln(w, "and waits for the report under reports/ in DATA_BUCKET. The key decides the object and whether it")
		fmt.Fprintln(w, "is a dry run (imports/<object>/dry-run/...), as in the function. Configured like the functions:")
		fmt.Fprintln(w, "BACKEND (ce or mixpanel), CE_BASE_URL or MIXPANEL_REGION/MIXPANEL_BASE_URL, CE_SECRET_ID,")
		fmt.Fprintln(w, "DATA_BUCKET (and AWS_ENDPOINT_URL for a local stack). The same object")
		fmt.Fprintln(w, "version (bucket, key, ETag) is imported once: running the command again resumes an unfinished")
		fmt.Fprintln(w, "import, or shows the report of a finished one. Exit status 1 when the import is FAILED.")
		fmt.Fprintln(w, "\nflags:")
		fs.PrintDefaults()
	}
	pos, err := parseWithPositional(fs, args)
	if err != nil {
		return err
	}
	bucket, key, err := importLocation(pos, *keyFlag)
	if err != nil {
		return err
	}
	obj, isDryRun, err := checkImportKey(key, *object, *dryRun)
	if err != nil {
		return err
	}
	chunkRecords, src := flagOrEnv(fs, "chunk-records", "IMPORT_CHUNK_RECORDS", strconv.Itoa(importer.DefaultChunkRecords))
	n, err := importer.ParseChunkRecords(chunkRecords)
	switch {
	case err != nil:
		return &usageError{fmt.Errorf("import: %s=%v", src, err)}
	case *maxChunks < 0:
		return &usageError{errors.New("import: -max-chunks must not be negative")}
	}
	if err := checkWaitPoll("import", *wait, *poll); err != nil {
		return err
	}
	common, err := opsEnv(fs)
	if err != nil {
		return err
	}
	if bucket == "" {
		bucket = common.Bucket
	}
	errw := syncio.NewWriter(stderr)
	c, err := newOpsClients(ctx, common, errw)
	if err != nil {
		return err
	}
	info, err := c.Store.Head(ctx, bucket, key)
	if errors.Is(err, s3stream.ErrNotFound) {
		return fmt.Errorf("import: s3://%s/%s: no such object", bucket, key)
	}
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	etag := strings.Trim(info.ETag, `"`)

	// The importer hands a checkpointed import to its reinvoke function;
	// here that does nothing, so HandleObject and Resume return
	// CHECKPOINTED and the loop in process resumes it in this process.
	resumeHere := func(context.Context, string) error { return nil }
	be, err := backend.Imports(common, c)
	if err != nil {
		return err
	}
	im := importer.New(importer.Config{
		Bucket:       common.Bucket,
		ChunkRecords: n,
		CallbackURL:  "", // poll only: Finalize below, or the ImportFunction's sweep
	}, be, c.Store, c.Jobs, resumeHere, c.Log)

	r := &importRun{
		im: im, store: c.Store, dataBucket: common.Bucket,
		bucket: bucket, key: key, etag: etag, size: info.Size,
		id:  importer.ImportID(bucket, key, etag),
		out: stdout, errw: errw,
	}
	if *maxChunks > 0 {
		r.opts = []importer.RunOption{importer.MaxChunks(*maxChunks)}
	}
	mode := ""
	if isDryRun {
		mode = ", dry run: validated only"
	}
	fmt.Fprintf(stdout, "import %s: s3://%s/%s (%s, %d bytes, ETag %s%s)\n", r.id, bucket, key, obj, info.Size, etag, mode)
	res, err := r.process(ctx, *poll)
	if err != nil {
		return err
	}
	res, err = r.finalize(ctx, res, *wait, *poll)
	if err != nil {
		return err
	}
	return r.report(ctx, res, *strict)
}

// importLocation reads the object to import from the positional argument
// (s3://bucket/key, or a key in DATA_BUCKET) or -key. bucket is "" for
// DATA_BUCKET.
func importLocation(pos, keyFlag string) (bucket, key string, err error) {
	switch {
	case pos != "" && keyFlag != "":
		return "", "", &usageError{errors.New("import: give the object either as an argument or with -key, not both")}
	case pos == "" && keyFlag == "":
		return "", "", &usageError{errors.New("import: which object? give s3://<bucket>/imports/<object>/<name> or -key imports/<object>/<name>")}
	case keyFlag != "":
		return "", keyFlag, nil
	}
	rest, ok := strings.CutPrefix(pos, "s3://")
	if !ok {
		return "", pos, nil
	}
	bucket, key, _ = strings.Cut(rest, "/")
	if bucket == "" || key == "" {
		return "", "", &usageError{fmt.Errorf("import: %q: want s3://<bucket>/<key>", pos)}
	}
	return bucket, key, nil
}

// checkImportKey checks that key is an import (importer.ParseKey), that it
// matches -object and, with -dry-run, that it is a dry run. The function would write a FAILED report
// for any other key; an operator gets the reason at once instead.
func checkImportKey(key, wantObject string, wantDryRun bool) (object string, dryRun bool, err error) {
	src, err := importer.ParseKey(key)
	switch {
	case err != nil:
		return "", false, &usageError{fmt.Errorf("import: %v", err)}
	case wantObject != "" && wantObject != src.Object:
		return "", false, &usageError{fmt.Errorf("import: -object %s, but the key %q is under imports/%s/", wantObject, key, src.Object)}
	case wantDryRun && !src.DryRun:
		return "", false, &usageError{fmt.Errorf("import: -dry-run, but the key %q is not under imports/%s/dry-run/: the key decides a dry run, as in the ImportFunction", key, src.Object)}
	}
	return src.Object, src.DryRun, nil
}

// importRun is one import driven by the command.
type importRun struct {
	im                *importer.Importer
	store             *s3stream.Store
	dataBucket        string
	bucket, key, etag string
	size              int64
	id                string
	opts              []importer.RunOption
	out, errw         io.Writer
}

// process runs the import until the file is read through: HandleObject,
// then Resume for as long as it checkpoints. An error worth retrying (S3,
// the ledger, CE refusing an upload) runs it again after poll, up to
// importAttempts times, as Lambda retries an invocation.
func (r *importRun) process(ctx context.Context, poll time.Duration) (importer.Result, error) {
	res, err := r.im.HandleObject(ctx, r.bucket, r.key, r.etag, r.size, r.opts...)
	failures := 0
	for {
		switch {
		case ctx.Err() != nil:
			return res, r.interrupted()
		case err != nil:
			failures++
			if failures >= importAttempts {
				return res, fmt.Errorf("import %s: %w (its progress is kept in the ledger: run the command again to resume it)", r.id, err)
			}
			fmt.Fprintf(r.errw, "cebulk import: %v; trying again in %v\n", err, poll)
			if !sleep(ctx, poll) {
				return res, r.interrupted()
			}
			res, err = r.im.HandleObject(ctx, r.bucket, r.key, r.etag, r.size, r.opts...)
		case res.Status == importer.StatusCheckpointed:
			failures = 0
			fmt.Fprintf(r.out, "checkpoint after chunk %d (%d records read): resuming\n", res.Chunks, res.Records)
			res, err = r.im.Resume(ctx, r.id, r.opts...)
		default:
			if res.Status == importer.StatusDuplicate || res.Status == importer.StatusRunning {
				fmt.Fprintln(r.out, "this object version was imported before, or is being imported elsewhere: waiting for its report")
			} else {
				done := "sent to CE"
				if res.DryRun {
					done = "validated"
				}
				fmt.Fprintf(r.out, "read through: %d records, %d valid, %d rejected; %s %s\n",
					res.Records, res.Valid, res.Rejected, plural(res.Chunks, "chunk"), done)
			}
			return res, nil
		}
	}
}

func (r *importRun) interrupted() error {
	return fmt.Errorf("import %s: interrupted: its progress is checkpointed in the ledger; run the command again to resume it "+
		"(the ImportFunction's sweep resumes it once its %v lease has passed, and writes its report)", r.id, importer.DefaultLease)
}

// finalStatus reports whether an import's report is written.
func finalStatus(status string) bool {
	return status == importer.StatusSucceeded || status == importer.StatusPartial || status == importer.StatusFailed
}

// finalize calls importer.Finalize every poll until the report is written
// (every chunk's CE job ended) or wait has passed.
func (r *importRun) finalize(ctx context.Context, res importer.Result, wait, poll time.Duration) (importer.Result, error) {
	if res.Status == importer.StatusDuplicate || res.Status == importer.StatusRunning {
		// Where does the import stand? Finalize says, and reports a
		// finished one as it is.
		if next, err := r.im.Finalize(ctx, r.id); err == nil {
			res = next
		}
	}
	if finalStatus(res.Status) {
		return res, nil
	}
	summary := "s3://" + r.dataBucket + "/reports/" + r.key + "/summary.json"
	if wait == 0 {
		fmt.Fprintf(r.out, "not waiting (-wait 0): the ImportFunction's sweep writes the report to %s\n", summary)
		return res, nil
	}
	fmt.Fprintf(r.out, "waiting for CE to finish the upload jobs: checking every %v for up to %v\n", poll, wait)
	deadline := time.Now().Add(wait)
	for !finalStatus(res.Status) {
		if time.Now().After(deadline) {
			return res, fmt.Errorf("import %s: the wait of %v ran out (%s); the ImportFunction's sweep writes the report to %s",
				r.id, wait, res.Status, summary)
		}
		if !sleep(ctx, poll) {
			return res, fmt.Errorf("import %s: interrupted while waiting for CE (%s); the ImportFunction's sweep writes the report to %s",
				r.id, res.Status, summary)
		}
		next, err := r.im.Finalize(ctx, r.id)
		if err != nil {
			if ctx.Err() == nil {
				fmt.Fprintf(r.errw, "cebulk import: finalize: %v (trying again)\n", err)
			}
			continue
		}
		res = next
	}
	return res, nil
}

// importSummary is the part of summary.json the command prints.
type importSummary struct {
	Status   string `json:"status"`
	Reason   string `json:"reason"`
	DryRun   bool   `json:"dryRun"`
	Records  int64  `json:"records"`
	Valid    int64  `json:"valid"`
	Rejected int64  `json:"rejected"`
	Sent     int64  `json:"sent"`
	Accepted int64  `json:"accepted"`
	CEFailed int64  `json:"ceFailed"`
	NotSent  int64  `json:"notSent"`
	Error    *struct {
		Reason string `json:"reason"`
		Line   int    `json:"line"`
	} `json:"error"`
	Reports struct {
		Rejects  string `json:"rejects"`
		CEErrors string `json:"ceErrors"`
	} `json:"reports"`
}

// report prints the import's summary and maps its status to the exit
// status: FAILED is an error, PARTIAL too with strict.
func (r *importRun) report(ctx context.Context, res importer.Result, strict bool) error {
	if !finalStatus(res.Status) {
		return nil // -wait 0
	}
	b, _, err := r.store.ReadSmall(ctx, r.dataBucket, res.Summary)
	if err != nil {
		return fmt.Errorf("import %s: read the summary: %w", r.id, err)
	}
	var s importSummary
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("import %s: decode s3://%s/%s: %v", r.id, r.dataBucket, res.Summary, err)
	}
	fmt.Fprintf(r.out, "status %s: %d records: %d valid, %d rejected", s.Status, s.Records, s.Valid, s.Rejected)
	if s.DryRun {
		fmt.Fprintln(r.out, " (dry run: nothing sent)")
	} else {
		fmt.Fprintf(r.out, "; %d sent: CE accepted %d, failed %d; %d not sent\n", s.Sent, s.Accepted, s.CEFailed, s.NotSent)
	}
	if s.Reason != "" {
		fmt.Fprintf(r.out, "reason:    %s\n", s.Reason)
	}
	if s.Error != nil {
		fmt.Fprintf(r.out, "file:      %s (line %d)\n", s.Error.Reason, s.Error.Line)
	}
	url := func(key string) string { return "s3://" + r.dataBucket + "/" + key }
	fmt.Fprintf(r.out, "summary:   %s\n", url(res.Summary))
	if s.Reports.Rejects != "" {
		fmt.Fprintf(r.out, "rejects:   %s\n", url(s.Reports.Rejects))
	}
	if s.Reports.CEErrors != "" {
		fmt.Fprintf(r.out, "CE errors: %s\n", url(s.Reports.CEErrors))
	}
	switch {
	case s.Status == importer.StatusFailed:
		reason := s.Reason
		if reason == "" && s.Error != nil {
			reason = s.Error.Reason
		}
		return fmt.Errorf("import %s FAILED: %s", r.id, reason)
	case s.Status == importer.StatusPartial && strict:
		return fmt.Errorf("import %s PARTIAL (-strict): %d rejected, %d failed at CE, %d not sent", r.id, s.Rejected, s.CEFailed, s.NotSent)
	}
	return nil
}
