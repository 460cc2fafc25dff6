package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cebulk/cebulk/internal/httpapi"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/recordio"
	"github.com/cebulk/cebulk/internal/s3stream"
	"github.com/cebulk/cebulk/pkg/ce"
)

// errStopped is what a chunk's reader returns when the invocation is too
// close to its deadline to finish the chunk: the upload is abandoned before
// its body is complete, so CE cannot have created a job from it.
var errStopped = errors.New("stopped before the invocation's deadline")

// errLeaseLost reports that another worker took the import over.
var errLeaseLost = errors.New("lost the import's lease to another worker")

// runner processes one import for one invocation. It holds the import's
// lease: the record is UPLOADING and tag is its ETag.
type runner struct {
	im     *Importer
	rec    *importRecord
	tag    string
	val    validator
	body   io.ReadCloser // the source object's stream
	rd     *recordio.Reader
	fileFE *recordio.FileError // the file cannot be read past this
	atEnd  bool                // the reader returned io.EOF or a FileError
	// blankRows counts the blank CSV rows before where rd started.
	blankRows int64
	buf       []byte
	// throttle is CE's last 429/503 on an upload (nil after a chunk
	// went through); throttles counts them in a row, for the backoff.
	throttle  *ce.APIError
	throttles int
}

// spanResult says how a span ended.
type spanResult int

const (
	spanCommitted spanResult = iota // the span (and its chunk, if any) is checkpointed
	spanStopped                     // the deadline came first; nothing of the span was kept
	spanFatal                       // committed, and the import cannot go on (p.Fatal set)
	spanThrottled                   // CE refused the upload with 429/503: no job; nothing of the span was kept
)

// run processes the import from its checkpoint until the file ends, the
// deadline nears, or the chunk budget is spent.
func (im *Importer) run(ctx context.Context, rec *importRecord, tag string, opts []RunOption) (Result, error) {
	var o runOptions
	for _, opt := range opts {
		opt(&o)
	}
	r := &runner{im: im, rec: rec, tag: tag, val: newValidator(rec.Object, rec.Import.ValidateAt)}
	return r.process(ctx, o)
}

func (r *runner) process(ctx context.Context, o runOptions) (Result, error) {
	p := r.rec.Import
	if p.Done {
		return r.done(ctx)
	}
	if err := r.open(ctx); err != nil {
		var fe *recordio.FileError
		switch {
		case errors.Is(err, errGone):
			return r.done(ctx)
		case errors.As(err, &fe):
			p.FileError, p.FileErrorLine = fe.Reason, fe.Line
			return r.done(ctx)
		}
		return r.fail(ctx, err)
	}
	defer func() { r.body.Close() }() // r.body changes when a throttled chunk is read again

	// The work context ends SafetyMargin before the invocation's deadline
	// (at most a quarter of the time left now, so a short timeout still
	// leaves room for work).
	work, cancel := context.WithCancel(ctx)
	deadline, hasDeadline := ctx.Deadline()
	var stopAt time.Time
	if hasDeadline {
		margin := min(r.im.cfg.SafetyMargin, time.Until(deadline)/4)
		stopAt = deadline.Add(-margin)
		work, cancel = context.WithDeadline(ctx, stopAt)
	}
	defer cancel()

	chunks := 0
	var estimate time.Duration
	for {
		if o.maxChunks > 0 && chunks >= o.maxChunks {
			return r.checkpoint(ctx, "chunk budget of the invocation spent")
		}
		if hasDeadline && time.Until(stopAt) < estimate+estimate/2 {
			return r.checkpoint(ctx, "deadline near")
		}
		start := time.Now()
		res, chunked, err := r.span(ctx, work)
		if err != nil {
			return r.fail(ctx, err)
		}
		switch {
		case res == spanStopped:
			p.Stalls++ // reset by any commit
			if p.Stalls >= r.im.cfg.MaxAttempts {
				p.Fatal = fmt.Sprintf("chunk %d could not be uploaded within one invocation %d times in a row: lower IMPORT_CHUNK_RECORDS (now %d)",
					p.Chunks+1, p.Stalls, p.ChunkRecords)
				return r.done(ctx)
			}
			return r.checkpoint(ctx, "deadline near")
		case res == spanThrottled:
			wait := r.throttleWait()
			if hasDeadline && time.Until(stopAt) < wait+estimate+estimate/2 {
				return r.rateLimited(ctx, wait)
			}
			r.im.log.InfoContext(ctx, "CE rate limit: chunk sent again after a wait", "importId", r.rec.ID,
				"chunk", p.Chunks+1, "status", r.throttle.StatusCode, "refusals", r.throttles, "waitMs", wait.Milliseconds())
			if err := r.im.cfg.Sleep(work, wait); err != nil {
				if ctx.Err() != nil {
					return r.fail(ctx, ctx.Err())
				}
				return r.checkpoint(ctx, "deadline near")
			}
			// The span's records were read into the refused request: read
			// them again from the checkpoint.
			r.body.Close()
			if err := r.reopen(ctx); err != nil {
				return r.fail(ctx, err)
			}
			continue
		case res == spanFatal, r.atEnd:
			return r.done(ctx)
		}
		r.throttle, r.throttles = nil, 0
		if chunked {
			chunks++
		}
		estimate = time.Since(start)
	}
}

// throttleWait is how long to wait before sending a throttled chunk
// again: CE's Retry-After when it gave one, else Mixpanel's advice for 429
// and 503, 2 s doubling up to 60 s, plus 1–5 s of jitter.
func (r *runner) throttleWait() time.Duration {
	if r.throttle != nil {
		if d, ok := r.throttle.RetryAfter(r.im.cfg.Now()); ok {
			return d
		}
	}
	return MixpanelBackoff(r.throttles, r.im.cfg.Jitter)
}

// MixpanelBackoff is Mixpanel's advice after the n-th (from 1) 429 or 503
// in a row: 2 s doubling to 60 s, plus 1–5 s of jitter. jitter(n) returns a
// number in [0, n).
func MixpanelBackoff(n int, jitter func(int64) int64) time.Duration {
	base := httpapi.Doubling(2*time.Second, 60*time.Second, max(n, 1)-1)
	const spread = int64(4 * time.Second)
	return base + time.Second + time.Duration(jitter(spread+1))
}

// reopen opens the source again at the checkpoint, forgetting what was
// read past it.
func (r *runner) reopen(ctx context.Context) error {
	r.rd, r.fileFE, r.atEnd, r.blankRows = nil, nil, false, 0
	err := r.open(ctx)
	var fe *recordio.FileError
	if errors.Is(err, errGone) || errors.As(err, &fe) {
		return fmt.Errorf("reopen at the checkpoint after a rate limit: %w", err)
	}
	return err
}

// errGone means the source object is gone or was replaced; p.Fatal says
// which.
var errGone = errors.New("the source object is gone")

// open opens the source object and positions the reader at the
// checkpoint: with a ranged GET from its offset for a plain file; by
// decompressing from the start and skipping the bytes before it for a
// gzipped one (no decoding); or, for a checkpoint without a position
// (written before positions were kept), by reading the items before it
// again and dropping them. A *recordio.FileError says the file cannot be
// read; errGone that it no longer exists as it was (p.Fatal says why).
func (r *runner) open(ctx context.Context) error {
	p, src := r.rec.Import, r.rec.Source
	res := p.Resume
	var info s3stream.ObjectInfo
	var err error
	if ranged := res != nil && !res.Gzip && res.Offset > 0; ranged {
		r.body, info, err = r.im.store.OpenRange(ctx, src.Bucket, src.Key, res.Offset, src.ETag)
	} else {
		r.body, info, err = r.im.store.Open(ctx, src.Bucket, src.Key)
	}
	switch {
	case errors.Is(err, s3stream.ErrNotFound):
		p.Fatal = fmt.Sprintf("the object s3://%s/%s no longer exists", src.Bucket, src.Key)
		return errGone
	case errors.Is(err, s3stream.ErrPrecondition):
		p.Fatal = fmt.Sprintf("the object was replaced during the import (ETag %s no longer matches); the new version is imported on its own", src.ETag)
		return errGone
	case err != nil:
		return err
	}
	if got := strings.Trim(info.ETag, `"`); got != "" && got != src.ETag {
		r.body.Close()
		p.Fatal = fmt.Sprintf("the object was replaced during the import (ETag %s, now %s); the new version is imported on its own", src.ETag, got)
		return errGone
	}
	opts := recordio.Options{CSVShape: csvShape(r.rec.Object)}
	if res != nil {
		r.rd, err = recordio.OpenAt(r.body, src.Key, opts, *res)
		r.blankRows = p.BlankRows
	} else {
		r.rd, err = recordio.Open(r.body, src.Key, opts)
	}
	if err != nil {
		r.body.Close()
		return err
	}
	st := r.rd.Stats()
	p.Format, p.Gzip = string(st.Format), st.Gzip
	if res != nil || p.Records == 0 {
		return nil
	}
	for i := int64(0); i < p.Records; i++ {
		if _, err := r.rd.Next(); err != nil {
			r.body.Close()
			var fe *recordio.FileError
			if errors.As(err, &fe) || err == io.EOF {
				return fmt.Errorf("the file ends before the checkpoint (record %d of %d): it changed under the same ETag", i, p.Records)
			}
			return err
		}
	}
	return nil
}

// span reads the records of the next chunk: up to ChunkRecords valid
// records (fewer at the end of the file), and every rejected row among
// them. It uploads the chunk (or skips it when an earlier invocation did)
// and commits the span to the checkpoint. chunked reports whether the span
// made a chunk.
func (r *runner) span(ctx, work context.Context) (res spanResult, chunked bool, err error) {
	p := r.rec.Import
	sp := &span{r: r, ctx: ctx, n: p.Chunks + 1, index: !p.DryRun}
	defer sp.abort() // no-op once committed

	first, err := r.nextValid(sp, work)
	switch {
	case errors.Is(err, errStopped):
		// No valid record yet: what was read is rejects only, which can
		// be committed as they are.
		return spanCommitted, false, r.commit(ctx, sp, false)
	case err != nil:
		return 0, false, err
	case first == nil: // the end of the file: trailing rejects only
		return spanCommitted, false, r.commit(ctx, sp, false)
	}

	cr := &chunkReader{r: r, sp: sp, work: work, limit: p.ChunkRecords}
	if err := cr.setLine(first); err != nil {
		return 0, false, err
	}
	if p.DryRun {
		return r.drain(ctx, sp, cr, true)
	}
	plan, err := r.claimChunk(ctx, sp.n)
	if err != nil {
		return 0, false, err
	}
	if plan.skip != "" {
		r.im.log.InfoContext(ctx, "chunk already handled: skipping its records", "importId", r.rec.ID, "chunk", sp.n, "reason", plan.skip)
		return r.drain(ctx, sp, cr, true)
	}
	return r.upload(ctx, sp, cr, plan)
}

// drain reads the rest of a span without sending it (dry runs and chunks
// an earlier invocation handled), then commits it.
func (r *runner) drain(ctx context.Context, sp *span, cr *chunkReader, chunked bool) (spanResult, bool, error) {
	if _, err := io.Copy(io.Discard, cr); err != nil {
		if cr.stopped {
			return spanStopped, false, nil
		}
		return 0, false, err
	}
	return spanCommitted, chunked, r.commit(ctx, sp, chunked)
}

// chunkPlan says what to do with a chunk.
type chunkPlan struct {
	job   *ledger.Job
	tag   string
	token string // the callback token of this attempt
	skip  string // why the chunk is not sent, when it is not
}

// claimChunk creates the chunk's ledger record (If-None-Match) before its
// upload starts. When the record exists, an earlier invocation got there:
//   - with a CE job id, or FAILED: the chunk is done; skip its records;
//   - PENDING without a CE job id: an earlier upload was refused before CE
//     created a job; send it again (up to MaxAttempts);
//   - UPLOADING: the worker uploading it stopped without recording the
//     outcome, so CE may or may not have the chunk. It is marked FAILED
//     and never sent again: a chunk is never sent twice.
func (r *runner) claimChunk(ctx context.Context, n int) (chunkPlan, error) {
	id := ChunkID(r.rec.ID, n)
	token, hash := ledger.NewToken()
	now := r.im.cfg.Now().UTC()
	src := *r.rec.Source
	src.ImportID, src.Chunk = r.rec.ID, n
	j := &ledger.Job{
		ID: id, Kind: ledger.KindImport, Object: r.rec.Object, Status: ledger.StatusUploading,
		Attempts: 1, StartedAt: now, TokenHash: hash, Source: &src,
	}
	tag, err := r.im.jobs.Create(ctx, j)
	if err == nil {
		return chunkPlan{job: j, tag: tag, token: token}, nil
	}
	if !errors.Is(err, ledger.ErrExists) {
		return chunkPlan{}, err
	}
	j, tag, err = r.im.jobs.Get(ctx, id)
	if err != nil {
		return chunkPlan{}, err
	}
	switch {
	case j.CEJobID != "":
		return chunkPlan{skip: "uploaded as CE job " + j.CEJobID}, nil
	case j.Status == ledger.StatusFailed:
		return chunkPlan{skip: "failed: " + j.LastError}, nil
	case j.Status == ledger.StatusUploading:
		j.Status = ledger.StatusFailed
		j.LastError = "upload outcome unknown: the invocation uploading this chunk stopped without recording CE's answer; not sent again, so that no chunk is sent twice"
		if _, err := r.im.jobs.Update(ctx, j, tag); err != nil {
			return chunkPlan{}, err
		}
		r.im.log.WarnContext(ctx, "chunk upload outcome unknown: marked failed", "importId", r.rec.ID, "jobId", id)
		return chunkPlan{skip: j.LastError}, nil
	case j.Attempts >= r.im.cfg.MaxAttempts:
		j.Status = ledger.StatusFailed
		j.LastError = fmt.Sprintf("CE refused the upload %d times: %s", j.Attempts, j.LastError)
		if _, err := r.im.jobs.Update(ctx, j, tag); err != nil {
			return chunkPlan{}, err
		}
		return chunkPlan{skip: j.LastError}, nil
	}
	j.Status = ledger.StatusUploading
	j.Attempts++
	j.StartedAt = now
	j.TokenHash = hash
	tag, err = r.im.jobs.Update(ctx, j, tag)
	if err != nil {
		return chunkPlan{}, err
	}
	return chunkPlan{job: j, tag: tag, token: token}, nil
}

// upload streams the span's valid records into one CE bulk upload job and
// records the outcome in the chunk's ledger record.
func (r *runner) upload(ctx context.Context, sp *span, cr *chunkReader, plan chunkPlan) (spanResult, bool, error) {
	id := plan.job.ID
	reqCtx := ctx
	if d, ok := ctx.Deadline(); ok {
		// Keep a little time to record CE's answer.
		var cancel context.CancelFunc
		reqCtx, cancel = context.WithDeadline(ctx, d.Add(-min(r.im.cfg.SafetyMargin/4, time.Until(d)/8)))
		defer cancel()
	}
	opts := ce.UploadOptions{
		FileName:        id + ".json",
		Format:          "json",
		CallbackURL:     callbackURL(r.im.cfg.CallbackURL, id, plan.token),
		CallbackPayload: map[string]string{"jobId": id},
	}
	job, err := r.im.ce.Upload(reqCtx, r.rec.Object, cr, opts)
	outcome := classifyUpload(err, cr)
	j, tag := plan.job, plan.tag
	now := r.im.cfg.Now().UTC()
	log := r.im.log.With("importId", r.rec.ID, "jobId", id, "chunk", sp.n)
	switch outcome {
	case uploadSent:
		j.Status, j.CEJobID, j.StartedAt, j.LastError = ledger.StatusPending, job.ID, now, ""
		j.Result = &ledger.Result{Records: sp.valid}
		j.CE = &ledger.CEState{Status: string(job.Status), RecordsCount: job.RecordsCount,
			RecordsFailedCount: job.RecordsFailedCount, CheckedAt: now}
		j.Deadline = now.Add(r.im.cfg.JobDeadline)
		if _, err := r.recordChunk(ctx, j, tag); err != nil {
			// CE has the chunk; the record still says UPLOADING, which a
			// resume reads as "outcome unknown" and never sends again.
			log.ErrorContext(ctx, "chunk uploaded but not recorded", "ceJobId", job.ID, "err", err)
			return 0, false, err
		}
		log.InfoContext(ctx, "chunk uploaded", "ceJobId", job.ID, "records", sp.valid)
		return spanCommitted, true, r.commit(ctx, sp, true)

	case uploadStopped:
		j.Status, j.Attempts = ledger.StatusPending, j.Attempts-1 // not CE's doing: no attempt spent
		j.LastError = "abandoned before the invocation's deadline"
		if _, err := r.recordChunk(ctx, j, tag); err != nil {
			return 0, false, err
		}
		return spanStopped, false, nil

	case uploadThrottled:
		// A rate limit is not the chunk's fault: no attempt spent.
		j.Status, j.Attempts = ledger.StatusPending, j.Attempts-1
		j.LastError = "CE rate limit: " + err.Error()
		if _, rerr := r.recordChunk(ctx, j, tag); rerr != nil {
			return 0, false, rerr
		}
		errors.As(err, &r.throttle)
		r.throttles++
		return spanThrottled, false, nil

	case uploadNotSent:
		j.Status, j.LastError = ledger.StatusPending, err.Error()
		if _, rerr := r.recordChunk(ctx, j, tag); rerr != nil {
			return 0, false, rerr
		}
		return 0, false, fmt.Errorf("upload chunk %d: %w", sp.n, err)

	case uploadAmbiguous:
		j.Status = ledger.StatusFailed
		j.LastError = fmt.Sprintf("upload outcome unknown (%v): the chunk reached CE but its answer was lost; not sent again, so that no chunk is sent twice", err)
		j.Result = &ledger.Result{Records: sp.valid}
		if _, rerr := r.recordChunk(ctx, j, tag); rerr != nil {
			return 0, false, rerr
		}
		log.WarnContext(ctx, "chunk upload outcome unknown: marked failed", "err", err)
		return spanCommitted, true, r.commit(ctx, sp, true)
	}

	// Refused: CE will refuse the others too (bad request, forbidden, no
	// such object). Account for the rest of the span, then stop.
	if _, derr := io.Copy(io.Discard, cr); derr != nil && !cr.stopped {
		return 0, false, derr
	}
	j.Status, j.LastError = ledger.StatusFailed, "CE refused the upload: "+err.Error()
	j.Result = &ledger.Result{Records: sp.valid}
	if _, rerr := r.recordChunk(ctx, j, tag); rerr != nil {
		return 0, false, rerr
	}
	if cr.stopped {
		return spanStopped, false, nil
	}
	r.rec.Import.Fatal = fmt.Sprintf("CE refused the upload of chunk %d: %v", sp.n, err)
	log.ErrorContext(ctx, "chunk refused by CE: import stopped", "err", err)
	return spanFatal, true, r.commit(ctx, sp, true)
}

// recordChunk writes a chunk record, also when the invocation's context is
// ending: the outcome of an upload must not be lost.
func (r *runner) recordChunk(ctx context.Context, j *ledger.Job, tag string) (string, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return r.im.jobs.Update(ctx, j, tag)
}

type uploadOutcome int

const (
	uploadSent      uploadOutcome = iota
	uploadStopped                 // abandoned for the deadline; no job
	uploadNotSent                 // refused or failed before CE could create a job; may be retried
	uploadThrottled               // refused with 429/503 (a rate limit): no job; sent again after a wait
	uploadAmbiguous               // the body reached CE, the answer did not
	uploadRefused                 // CE refused it for good (4xx)
)

// classifyUpload decides, from Upload's error and how far the body got,
// whether CE can have created a job.
func classifyUpload(err error, cr *chunkReader) uploadOutcome {
	if err == nil {
		return uploadSent
	}
	var re interface{ Resendable() bool }
	if errors.As(err, &re) {
		if !re.Resendable() {
			// The backend says part of the chunk was applied and sending
			// it again could apply it twice, however far the body got.
			return uploadAmbiguous
		}
		if cr.stopped && !cr.delivered {
			return uploadStopped
		}
		// The backend skips what it answered before: sending the chunk
		// again cannot send a record twice.
		return uploadNotSent
	}
	if cr.stopped && !cr.delivered {
		return uploadStopped
	}
	var ae *ce.APIError
	if errors.As(err, &ae) {
		switch {
		case ae.Throttled():
			return uploadThrottled
		case ae.StatusCode == http.StatusUnauthorized: // credentials refreshed by the client: try again
			return uploadNotSent
		case ae.StatusCode >= 400 && ae.StatusCode < 500:
			return uploadRefused
		}
	}
	if !cr.delivered {
		// The body never reached its end, so CE saw a truncated multipart
		// request, from which it cannot create a job.
		return uploadNotSent
	}
	return uploadAmbiguous
}

// callbackURL returns base?job=<id>&token=<token>, or "" without a base.
func callbackURL(base, id, token string) string {
	if base == "" {
		return ""
	}
	u, err := url.Parse(base)
	if err != nil {
		return ""
	}
	q := u.Query()
	q.Set("job", id)
	q.Set("token", token)
	u.RawQuery = q.Encode()
	return u.String()
}

// nextValid returns the next valid record as a JSON line (without its line
// break; sp.line is then the source line it starts on), writing every
// rejected row before it to the span's rejects. It
// returns nil at the end of the file (or where the file cannot be read
// further), and errStopped when work ends first.
func (r *runner) nextValid(sp *span, work context.Context) ([]byte, error) {
	for i := 0; ; i++ {
		if i&1023 == 1023 && work.Err() != nil {
			return nil, errStopped
		}
		it, err := r.rd.Next()
		var fe *recordio.FileError
		switch {
		case err == io.EOF:
			r.atEnd = true
			return nil, nil
		case errors.As(err, &fe):
			r.atEnd, r.fileFE = true, fe
			return nil, nil
		case err != nil:
			return nil, err
		}
		sp.records++
		sp.line = it.Line
		if it.Err != nil {
			var re *recordio.RowError
			reason := it.Err.Error()
			if errors.As(it.Err, &re) {
				reason = re.Reason
			}
			if err := sp.reject(it, reason, r.rd.Format()); err != nil {
				return nil, err
			}
			continue
		}
		line, reason := r.val.normalize(it.Record)
		if reason != "" {
			if err := sp.reject(it, reason, r.rd.Format()); err != nil {
				return nil, err
			}
			continue
		}
		sp.valid++
		return line, nil
	}
}

// commit checkpoints a finished span: its rejects part is completed, then
// the import record moves past it (which also renews the lease).
func (r *runner) commit(ctx context.Context, sp *span, chunked bool) error {
	key, err := sp.finish()
	if err != nil {
		return err
	}
	p := r.rec.Import
	p.Failures, p.Stalls, p.RateLimited = 0, 0, false // progress: earlier failures were transient
	p.Records += sp.records
	p.Valid += sp.valid
	p.Rejected += sp.rejected
	p.Line = max(p.Line, sp.line)
	p.BlankRows = r.blankRows + r.rd.Stats().BlankRows
	if res, ok := r.rd.Checkpoint(); ok {
		p.Resume = &res
	} else {
		// The file ended (or broke): nothing to resume. Without a
		// position, a resume would still be right, by skipping Records
		// items; a stale one would read items twice.
		p.Resume = nil
	}
	if chunked {
		p.Chunks = sp.n
		if sp.lines != nil && p.LineIndexFrom == 0 {
			// The first chunk with a line index: every later one has
			// one too. Checkpoints of earlier versions lack it.
			p.LineIndexFrom = sp.n
		}
	}
	if key != "" {
		p.RejectParts = append(p.RejectParts, key)
	}
	if r.fileFE != nil {
		p.FileError, p.FileErrorLine = r.fileFE.Reason, r.fileFE.Line
	}
	return r.save(ctx)
}

// save writes the import record under the lease.
func (r *runner) save(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	tag, err := r.im.updateImport(ctx, r.rec, r.tag)
	if errors.Is(err, ledger.ErrConflict) {
		return errLeaseLost
	}
	if err != nil {
		return err
	}
	r.tag = tag
	return nil
}

// checkpoint releases the import and hands it to a resume invocation.
func (r *runner) checkpoint(ctx context.Context, why string) (Result, error) {
	r.rec.Status = ledger.StatusPending
	if err := r.save(ctx); err != nil {
		return Result{}, err
	}
	p := r.rec.Import
	r.im.log.InfoContext(ctx, "import checkpointed", "importId", r.rec.ID, "reason", why,
		"chunk", p.Chunks, "records", p.Records, "line", p.Line)
	if r.im.reinvoke == nil {
		return r.im.Resume(ctx, r.rec.ID)
	}
	if err := r.im.reinvoke(context.WithoutCancel(ctx), r.rec.ID); err != nil {
		// The import is released: a retry of this invocation, or the
		// sweep, resumes it.
		return Result{}, fmt.Errorf("re-invoke to resume %s: %w", r.rec.ID, err)
	}
	return resultOf(r.rec, StatusCheckpointed), nil
}

// rateLimited releases the import when CE's rate limit outlasts the
// invocation: no failure is counted and nothing re-invokes the function at
// once (a limit, or an outage answered 503, can last hours); the sweep
// resumes it (every 5 minutes), and the invocation succeeds with
// StatusRetry.
func (r *runner) rateLimited(ctx context.Context, wait time.Duration) (Result, error) {
	p := r.rec.Import
	p.RateLimited = true
	r.rec.Status = ledger.StatusPending
	r.rec.LastError = fmt.Sprintf("CE rate limit: %d refusals in a row (%v); next wait %v outlasts the invocation", r.throttles, r.throttle, wait)
	if err := r.save(ctx); err != nil {
		return Result{}, err
	}
	r.im.log.InfoContext(ctx, "CE rate limit outlasts the invocation: left for the sweep", "importId", r.rec.ID,
		"chunk", p.Chunks+1, "refusals", r.throttles, "waitMs", wait.Milliseconds())
	return resultOf(r.rec, StatusRetry), nil
}

// fail releases the import after an error worth retrying, and gives up
// (the import is then FAILED) after MaxAttempts such failures. Once the
// failure is saved in the import's record it returns StatusRetry and no
// error: the sweep resumes the import (see Sweep), and a retry of the
// invocation by Lambda would only count failures faster than an outage
// ends. Only a failure it could not save is returned.
func (r *runner) fail(ctx context.Context, cause error) (Result, error) {
	if errors.Is(cause, errLeaseLost) {
		return Result{}, fmt.Errorf("import %s: %w", r.rec.ID, cause)
	}
	p := r.rec.Import
	p.Failures++
	r.rec.LastError = cause.Error()
	r.rec.Status = ledger.StatusPending
	if p.Failures >= r.im.cfg.MaxAttempts {
		p.Fatal = fmt.Sprintf("gave up after %d failed attempts: %v", p.Failures, cause)
		return r.done(ctx)
	}
	if err := r.save(ctx); err != nil {
		return Result{}, errors.Join(cause, err)
	}
	r.im.log.WarnContext(ctx, "import failed; left for the sweep", "importId", r.rec.ID,
		"failures", p.Failures, "err", cause)
	return resultOf(r.rec, StatusRetry), nil
}

// done marks the file as read through and tries to finalize at once (a
// dry run, an import that sent nothing, or CE jobs that finished quickly).
func (r *runner) done(ctx context.Context) (Result, error) {
	p := r.rec.Import
	if !p.Done {
		p.Done, p.UploadedAt = true, r.im.cfg.Now().UTC()
	}
	r.rec.Status = ledger.StatusPending
	if err := r.save(ctx); err != nil {
		return Result{}, err
	}
	r.im.log.InfoContext(ctx, "import read through", "importId", r.rec.ID, "chunks", p.Chunks,
		"records", p.Records, "valid", p.Valid, "rejected", p.Rejected)
	return r.im.Finalize(ctx, r.rec.ID)
}

// chunkReader is the body of one chunk's upload: the span's valid records
// as JSON lines, pulled from the source as CE's request reads them, so a
// chunk is never held in memory.
type chunkReader struct {
	r     *runner
	sp    *span
	work  context.Context
	limit int
	sent  int
	line  []byte // what is left of the current line

	eof       bool // no more lines in this chunk
	delivered bool // io.EOF was returned: the whole chunk was handed over
	stopped   bool // the work context ended first
}

// setLine makes line, the record nextValid just returned, the next one
// the chunk sends, and adds its source line to the chunk's line index.
func (c *chunkReader) setLine(line []byte) error {
	if err := c.sp.send(c.sp.line); err != nil {
		return err
	}
	c.r.buf = append(append(c.r.buf[:0], line...), '\n')
	c.line = c.r.buf
	c.sent++
	return nil
}

func (c *chunkReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(c.line) == 0 {
			if c.eof || c.sent >= c.limit {
				c.eof = true
				if n > 0 {
					return n, nil
				}
				c.delivered = true
				return 0, io.EOF
			}
			if c.work.Err() != nil {
				c.stopped = true
				return n, errStopped
			}
			line, err := c.r.nextValid(c.sp, c.work)
			if errors.Is(err, errStopped) {
				c.stopped = true
				return n, err
			}
			if err != nil {
				return n, err
			}
			if line == nil {
				c.eof = true
				continue
			}
			if err := c.setLine(line); err != nil {
				return n, err
			}
		}
		k := copy(p[n:], c.line)
		c.line = c.line[k:]
		n += k
	}
	return n, nil
}
