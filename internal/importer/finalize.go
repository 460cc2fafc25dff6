package importer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/cebulk/cebulk/internal/lake"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/logging"
	"github.com/cebulk/cebulk/internal/s3stream"
	"github.com/cebulk/cebulk/pkg/ce"
)

// errorsPageSize is the page size used to read CE's per-record errors.
const errorsPageSize = 200

// summary is reports/imports/<object>/<name>/summary.json. CEErrors
// counts the lines of ce-errors.jsonl (CE's error elements),
// CEErrorsWithLine those of them mapped to a source line.
type summary struct {
	ImportID         string         `json:"importId,omitempty"`
	Source           summarySource  `json:"source"`
	Object           string         `json:"object,omitempty"`
	DryRun           bool           `json:"dryRun"`
	Format           string         `json:"format,omitempty"`
	Gzip             bool           `json:"gzip"`
	Status           string         `json:"status"`
	Reason           string         `json:"reason,omitempty"`
	Error            *summaryError  `json:"error,omitempty"`
	Records          int64          `json:"records"`
	Valid            int64          `json:"valid"`
	Rejected         int64          `json:"rejected"`
	BlankRows        int64          `json:"blankRows"`
	Sent             int64          `json:"sent"`
	Accepted         int64          `json:"accepted"`
	CEFailed         int64          `json:"ceFailed"`
	CEErrors         int64          `json:"ceErrors"`
	CEErrorsWithLine int64          `json:"ceErrorsWithLine"`
	NotSent          int64          `json:"notSent"`
	LineReached      int            `json:"lineReached"`
	ChunkRecords     int            `json:"chunkRecords,omitempty"`
	CEJobs           []summaryChunk `json:"ceJobs"`
	Reports          summaryReports `json:"reports"`
	Timings          summaryTimings `json:"timings"`
}

type summarySource struct {
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	ETag   string `json:"etag,omitempty"`
	Size   int64  `json:"size"`
}

// summaryError is why the file could not be read (further).
type summaryError struct {
	Reason string `json:"reason"`
	Line   int    `json:"line,omitempty"`
}

// summaryChunk is one chunk: its CE job and what CE made of it.
type summaryChunk struct {
	Chunk              int    `json:"chunk"`
	JobID              string `json:"jobId"`        // ledger id
	ID                 string `json:"id,omitempty"` // CE job id
	Status             string `json:"status"`       // CE's status, or FAILED/EXPIRED when CE never finished it
	Records            int64  `json:"records"`      // valid records in the chunk
	RecordsCount       int64  `json:"recordsCount"`
	RecordsFailedCount int64  `json:"recordsFailedCount"`
	Error              string `json:"error,omitempty"`
}

type summaryReports struct {
	Rejects  string `json:"rejects,omitempty"`
	CEErrors string `json:"ceErrors,omitempty"`
}

type summaryTimings struct {
	StartedAt     time.Time `json:"startedAt"`
	UploadedAt    time.Time `json:"uploadedAt,omitzero"`
	FinishedAt    time.Time `json:"finishedAt"`
	Invocations   int       `json:"invocations,omitempty"`
	UploadSeconds float64   `json:"uploadSeconds"`
	TotalSeconds  float64   `json:"totalSeconds"`
}

// Finalize writes the report of the import a ledger id belongs to (an
// import id, or one of its chunks' ids as the webhook sends), once every
// chunk's CE job is terminal. It is idempotent: a finished import is
// reported as it is, and an import whose CE jobs are still running is left
// for a later callback or sweep (status WAITING).
//
// A failure (CE's statuses or errors unreadable, a report not written)
// leaves the import read through and PENDING, which the sweep finalizes;
// once it is noted in the record (LastError), Finalize returns StatusRetry
// and no error, so that Lambda does not retry it too. Only a failure it
// could not note is returned.
func (im *Importer) Finalize(ctx context.Context, ledgerJobID string) (Result, error) {
	id := importIDOf(ledgerJobID)
	res, err := im.finalize(ctx, id)
	if err == nil {
		return res, nil
	}
	rec, tag, gerr := im.getImport(ctx, id)
	if gerr != nil || rec.Status != ledger.StatusPending || !rec.Import.Done {
		return res, err
	}
	rec.LastError = "finalize: " + err.Error()
	if _, uerr := im.updateImport(context.WithoutCancel(ctx), rec, tag); uerr != nil {
		return res, errors.Join(err, uerr)
	}
	im.log.WarnContext(ctx, "finalize failed; left for the sweep", "importId", id, "err", err)
	return resultOf(rec, StatusRetry), nil
}

func (im *Importer) finalize(ctx context.Context, id string) (Result, error) {
	rec, tag, err := im.getImport(ctx, id)
	if err != nil {
		return Result{}, err
	}
	p := rec.Import
	now := im.cfg.Now().UTC()
	switch {
	case rec.Status.Final():
		return resultOf(rec, p.Outcome), nil
	case !p.Done:
		return resultOf(rec, StatusRunning), nil // still uploading: its worker finalizes
	case rec.Status == ledger.StatusCollecting && now.Sub(rec.UpdatedAt) < im.cfg.Lease:
		return resultOf(rec, StatusRunning), nil
	}
	chunks, ready, err := im.chunkStates(ctx, rec)
	if err != nil {
		return Result{}, err
	}
	if !ready {
		return resultOf(rec, StatusWaiting), nil
	}

	// Take the import, so that a callback and a sweep racing here do not
	// both write the report.
	rec.Status = ledger.StatusCollecting
	if p.FinalizedAt.IsZero() {
		p.FinalizedAt = now
	}
	tag, err = im.updateImport(ctx, rec, tag)
	if errors.Is(err, ledger.ErrConflict) {
		return resultOf(rec, StatusRunning), nil
	}
	if err != nil {
		return Result{}, err
	}
	s, err := im.writeReports(ctx, rec, chunks)
	if err != nil {
		rec.Status = ledger.StatusPending // let the next finalize try again at once
		if _, uerr := im.updateImport(context.WithoutCancel(ctx), rec, tag); uerr != nil {
			err = errors.Join(err, uerr)
		}
		return Result{}, err
	}
	prefix := reportPrefix(rec.Source.Key)
	p.Outcome = s.Status
	p.Reports = []string{prefix + summaryFile, prefix + rejectsFile, prefix + ceErrorsFile}
	rec.Status = ledger.StatusDone
	if s.Status == StatusFailed {
		rec.Status = ledger.StatusFailed
		rec.LastError = s.Reason
	}
	rec.Result = &ledger.Result{Records: s.Accepted, Failed: s.Rejected + s.CEFailed + s.NotSent, Keys: p.Reports}
	if _, err := im.updateImport(ctx, rec, tag); err != nil {
		return Result{}, err
	}
	im.unmarkOpen(ctx, id)
	parts := slices.Clone(p.RejectParts)
	if p.LineIndexFrom > 0 {
		for n := p.LineIndexFrom; n <= p.Chunks; n++ {
			parts = append(parts, lineIndexKey(id, n))
		}
	}
	for _, key := range parts {
		if err := im.store.Delete(ctx, im.cfg.Bucket, key); err != nil {
			im.log.WarnContext(ctx, "delete state part", "importId", id, "key", key, "err", err)
		}
	}
	if s.Status == StatusFailed {
		im.metric(ctx, MetricJobsFailed)
	}
	im.rowMetrics(ctx, s)
	im.log.InfoContext(ctx, "import finished", "importId", id, "status", s.Status, "records", s.Records,
		"valid", s.Valid, "rejected", s.Rejected, "accepted", s.Accepted, "ceFailed", s.CEFailed, "summary", prefix+summaryFile)
	return resultOf(rec, s.Status), nil
}

// chunkState is what finalize knows of one chunk.
type chunkState struct {
	summaryChunk
	errors bool // CE has per-record errors to read
}

// chunkStates reads every chunk's ledger record and, for CE jobs not known
// to be terminal, CE's status, recording terminal states in the chunk
// records. ready is false while some CE job is still running.
func (im *Importer) chunkStates(ctx context.Context, rec *importRecord) ([]chunkState, bool, error) {
	if rec.Import.DryRun {
		return nil, true, nil // no chunk records, no CE jobs
	}
	states := make([]chunkState, 0, rec.Import.Chunks)
	now := im.cfg.Now().UTC()
	for n := 1; n <= rec.Import.Chunks; n++ {
		id := ChunkID(rec.ID, n)
		j, _, err := im.jobs.Get(ctx, id)
		if err != nil {
			return nil, false, err
		}
		st := chunkState{summaryChunk: summaryChunk{Chunk: n, JobID: id, ID: j.CEJobID}}
		if j.Result != nil {
			st.Records = j.Result.Records
		}
		if j.CEJobID == "" {
			if j.Status != ledger.StatusFailed {
				// Not sent and not failed: only possible while uploading.
				return nil, false, nil
			}
			st.Status, st.Error = StatusFailed, j.LastError
			states = append(states, st)
			continue
		}
		cs := j.CE
		if cs == nil || !ce.ParseStatus(cs.Status).Terminal() {
			if j.Status == ledger.StatusExpired {
				st.Status, st.Error = string(ledger.StatusExpired), j.LastError
				states = append(states, st)
				continue
			}
			job, err := im.ce.Status(ctx, j.CEJobID)
			gone := errors.Is(err, ce.ErrNotFound)
			if err != nil && !gone {
				return nil, false, fmt.Errorf("read the status of chunk %d (CE job %s): %w", n, j.CEJobID, err)
			}
			if gone || !job.Status.Terminal() {
				if !gone && (j.Deadline.IsZero() || now.Before(j.Deadline)) {
					return nil, false, nil
				}
				msg := "CE no longer knows the job (its records' outcome is unknown)"
				if !gone {
					msg = fmt.Sprintf("CE did not finish the job by %s (last status %s)", j.Deadline.Format(time.RFC3339), job.Status)
				}
				if _, err := im.jobs.Modify(ctx, id, func(j *ledger.Job) error {
					j.Status, j.LastError = ledger.StatusExpired, msg
					return nil
				}); err != nil {
					return nil, false, err
				}
				st.Status, st.Error = string(ledger.StatusExpired), msg
				states = append(states, st)
				continue
			}
			cs = &ledger.CEState{Status: string(job.Status), RecordsCount: job.RecordsCount,
				RecordsFailedCount: job.RecordsFailedCount, Error: firstNonEmpty(job.Error, job.Message), CheckedAt: now}
		}
		final := ledger.StatusDone
		if ce.ParseStatus(cs.Status).Failed() {
			final = ledger.StatusFailed
		}
		if j.Status != final {
			if _, err := im.jobs.Modify(ctx, id, func(j *ledger.Job) error {
				j.Status, j.CE = final, cs
				if final == ledger.StatusFailed {
					j.LastError = "CE job ended " + cs.Status + ": " + cs.Error
				}
				return nil
			}); err != nil {
				return nil, false, err
			}
		}
		st.Status, st.RecordsCount, st.RecordsFailedCount = string(ce.ParseStatus(cs.Status)), cs.RecordsCount, cs.RecordsFailedCount
		st.Error = cs.Error
		st.errors = cs.RecordsFailedCount > 0
		states = append(states, st)
	}
	return states, true, nil
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// writeReports writes ce-errors.jsonl, rejects.jsonl.gz and, last,
// summary.json. Every write replaces the whole object with content derived
// from the ledger and CE only, so writing them again gives the same files.
func (im *Importer) writeReports(ctx context.Context, rec *importRecord, chunks []chunkState) (summary, error) {
	p := rec.Import
	prefix := reportPrefix(rec.Source.Key)
	counts, err := im.writeCEErrors(ctx, prefix+ceErrorsFile, rec, chunks)
	if err != nil {
		return summary{}, err
	}
	if err := im.writeRejects(ctx, prefix+rejectsFile, p.RejectParts); err != nil {
		return summary{}, err
	}
	s := buildSummary(rec, chunks)
	s.CEErrors, s.CEErrorsWithLine = counts.total, counts.withLine
	s.Reports = summaryReports{Rejects: prefix + rejectsFile, CEErrors: prefix + ceErrorsFile}
	// One line: Athena's JSON SerDes read one object per line.
	b, err := json.Marshal(s)
	if err != nil {
		return summary{}, fmt.Errorf("encode summary: %v", err)
	}
	if _, err := im.store.Put(ctx, im.cfg.Bucket, prefix+summaryFile, bytes.NewReader(append(b, '\n')), s3stream.PutOptions{ContentType: "application/json"}); err != nil {
		return summary{}, err
	}
	// The lake's symlink tables: one file each naming this import's
	// summary and rejects, in the partition of the day it finished.
	day := rec.Import.FinalizedAt.UTC().Format(time.DateOnly)
	for table, key := range map[string]string{lake.ImportSummary: prefix + summaryFile, lake.ImportRejects: prefix + rejectsFile} {
		if _, err := im.store.WriteSmall(ctx, im.cfg.Bucket, lake.IndexKey(table, day, rec.ID), lake.Symlink(im.cfg.Bucket, key), "text/plain", s3stream.Condition{}); err != nil {
			return summary{}, fmt.Errorf("write the lake index of %s: %w", table, err)
		}
	}
	return s, nil
}

// buildSummary computes the report from the checkpoint and the chunks.
func buildSummary(rec *importRecord, chunks []chunkState) summary {
	p := rec.Import
	s := summary{
		ImportID:     rec.ID,
		Source:       summarySource{Bucket: rec.Source.Bucket, Key: rec.Source.Key, ETag: rec.Source.ETag, Size: p.Size},
		Object:       rec.Object,
		DryRun:       p.DryRun,
		Format:       p.Format,
		Gzip:         p.Gzip,
		Records:      p.Records,
		Valid:        p.Valid,
		Rejected:     p.Rejected,
		BlankRows:    p.BlankRows,
		LineReached:  p.Line,
		ChunkRecords: p.ChunkRecords,
		CEJobs:       []summaryChunk{},
		Timings: summaryTimings{
			StartedAt: rec.CreatedAt, UploadedAt: p.UploadedAt, FinishedAt: p.FinalizedAt,
			Invocations: rec.Attempts,
		},
	}
	if !p.UploadedAt.IsZero() {
		s.Timings.UploadSeconds = p.UploadedAt.Sub(rec.CreatedAt).Seconds()
	}
	s.Timings.TotalSeconds = p.FinalizedAt.Sub(rec.CreatedAt).Seconds()
	failedChunks := 0
	for _, c := range chunks {
		s.CEJobs = append(s.CEJobs, c.summaryChunk)
		switch {
		case c.ID == "":
			s.NotSent += c.Records
			failedChunks++
		case c.Status == string(ce.StatusCompleted):
			s.Sent += c.Records
			s.Accepted += max(0, c.RecordsCount-c.RecordsFailedCount)
			s.CEFailed += c.RecordsFailedCount
		default: // ERROR, ABORTED, CANCELLED, EXPIRED
			s.Sent += c.Records
			s.CEFailed += max(c.RecordsFailedCount, c.Records-max(0, c.RecordsCount-c.RecordsFailedCount))
			failedChunks++
		}
	}
	if p.FileError != "" {
		s.Error = &summaryError{Reason: p.FileError, Line: p.FileErrorLine}
	}
	s.Status, s.Reason = outcome(p, s, failedChunks)
	return s
}

// outcome decides the report's status: FAILED when the file cannot be
// read (through), the import gave up, or nothing was accepted; PARTIAL when
// some rows were rejected, CE failed some records or some chunk failed;
// SUCCEEDED otherwise.
func outcome(p *progress, s summary, failedChunks int) (status, reason string) {
	switch {
	case p.FileError != "" && p.Records > 0:
		return StatusFailed, fmt.Sprintf("the file cannot be read past line %d: %s", p.FileErrorLine, p.FileError)
	case p.FileError != "" && p.FileErrorLine > 0:
		return StatusFailed, fmt.Sprintf("the file cannot be read (line %d): %s", p.FileErrorLine, p.FileError)
	case p.FileError != "":
		return StatusFailed, "the file cannot be read: " + p.FileError
	case p.Fatal != "":
		return StatusFailed, p.Fatal
	case p.Records == 0:
		return StatusFailed, "the file holds no records"
	case p.Valid == 0:
		return StatusFailed, fmt.Sprintf("no valid record: all %d rows were rejected (see rejects.jsonl.gz)", p.Rejected)
	case !p.DryRun && s.Accepted == 0:
		return StatusFailed, "CE accepted none of the records (see ceJobs and ce-errors.jsonl)"
	}
	var parts []string
	if p.Rejected > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d rows rejected (see rejects.jsonl.gz)", p.Rejected, p.Records))
	}
	if s.CEFailed > 0 {
		parts = append(parts, fmt.Sprintf("%d records failed at CE (see ce-errors.jsonl)", s.CEFailed))
	}
	if failedChunks > 0 {
		parts = append(parts, fmt.Sprintf("%d chunks failed (see ceJobs)", failedChunks))
	}
	if len(parts) > 0 {
		return StatusPartial, strings.Join(parts, "; ")
	}
	if p.DryRun {
		return StatusSucceeded, fmt.Sprintf("dry run: all %d records are valid; nothing was sent", p.Valid)
	}
	return StatusSucceeded, fmt.Sprintf("all %d records accepted", s.Accepted)
}

// ceErrorLine is one line of ce-errors.jsonl: one element of a chunk's
// GET bulk/{id}/errors, verbatim in Error, with the record's position in
// the chunk's upload (Index, when the element names one) and the source
// line that record starts on (Line, when the chunk's line index knows it).
type ceErrorLine struct {
	Chunk   int             `json:"chunk"`
	JobID   string          `json:"jobId"`
	CEJobID string          `json:"ceJobId"`
	Line    int             `json:"line,omitempty"`
	Index   *int64          `json:"index,omitempty"`
	Error   json.RawMessage `json:"error"`
}

// writeCEErrors streams every chunk's CE errors, page by page, into
// ce-errors.jsonl, each with the source line of its record, looked up in
// the chunk's line index as the errors go (see chunkLines).
func (im *Importer) writeCEErrors(ctx context.Context, key string, rec *importRecord, chunks []chunkState) (ceErrorCounts, error) {
	var counts ceErrorCounts
	pr, pw := io.Pipe()
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		err := im.encodeCEErrors(ctx, pw, rec, chunks, &counts)
		pw.CloseWithError(err)
	}()
	_, err := im.store.Put(ctx, im.cfg.Bucket, key, pr, s3stream.PutOptions{ContentType: "application/x-ndjson"})
	pr.CloseWithError(errPartAborted) // stop the producer if Put gave up early
	<-produced
	return counts, err
}

// encodeCEErrors writes the lines of ce-errors.jsonl to w.
func (im *Importer) encodeCEErrors(ctx context.Context, w io.Writer, rec *importRecord, chunks []chunkState, counts *ceErrorCounts) error {
	enc := json.NewEncoder(w)
	from := rec.Import.LineIndexFrom
	for _, c := range chunks {
		if !c.errors {
			continue
		}
		var lines *chunkLines
		if from > 0 && c.Chunk >= from {
			lines = &chunkLines{open: im.openLineIndex(ctx, rec.ID, c.Chunk), limit: maxIndexInMemory, records: c.Records}
		}
		err := im.encodeChunkErrors(ctx, enc, c, lines, counts)
		if lines != nil {
			lines.close()
			if lines.warned != nil {
				im.log.WarnContext(ctx, "CE errors of a chunk reported without lines", "importId", rec.ID,
					"chunk", c.Chunk, "key", lineIndexKey(rec.ID, c.Chunk), "err", lines.warned)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (im *Importer) encodeChunkErrors(ctx context.Context, enc *json.Encoder, c chunkState, lines *chunkLines, counts *ceErrorCounts) error {
	for raw, err := range im.ce.Errors(ctx, c.ID, errorsPageSize) {
		if err != nil {
			return fmt.Errorf("read the errors of chunk %d (CE job %s): %w", c.Chunk, c.ID, err)
		}
		l := ceErrorLine{Chunk: c.Chunk, JobID: c.JobID, CEJobID: c.ID, Error: raw}
		if i, ok := ceErrorIndex(raw); ok {
			l.Index = &i
			if lines != nil {
				line, ok, err := lines.lineOf(i)
				if err != nil {
					return fmt.Errorf("chunk %d: %w", c.Chunk, err)
				}
				if ok {
					l.Line = line
					counts.withLine++
				}
			}
		}
		if err := enc.Encode(l); err != nil {
			return err
		}
		counts.total++
	}
	return nil
}

// writeRejects concatenates the rejects parts (each a complete gzip
// stream; concatenated members are one valid gzip file) into
// rejects.jsonl.gz, streaming one part at a time.
func (im *Importer) writeRejects(ctx context.Context, key string, parts []string) error {
	var body io.Reader
	if len(parts) == 0 {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		if err := zw.Close(); err != nil {
			return err
		}
		body = &b
	} else {
		pr := &partsReader{ctx: ctx, im: im, keys: parts}
		defer pr.Close()
		body = pr
	}
	_, err := im.store.Put(ctx, im.cfg.Bucket, key, body, s3stream.PutOptions{ContentType: "application/gzip"})
	return err
}

// partsReader reads S3 objects one after the other, opening each when the
// previous one ends.
type partsReader struct {
	ctx  context.Context
	im   *Importer
	keys []string
	cur  io.ReadCloser
}

func (r *partsReader) Read(p []byte) (int, error) {
	for {
		if r.cur == nil {
			if len(r.keys) == 0 {
				return 0, io.EOF
			}
			rc, _, err := r.im.store.Open(r.ctx, r.im.cfg.Bucket, r.keys[0])
			if err != nil {
				return 0, err
			}
			r.cur, r.keys = rc, r.keys[1:]
		}
		n, err := r.cur.Read(p)
		if err == io.EOF {
			r.cur.Close()
			r.cur = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (r *partsReader) Close() error {
	if r.cur != nil {
		return r.cur.Close()
	}
	return nil
}

// The metrics the importer emits in CloudWatch embedded metric format
// (namespace cebulk, dimension Function, and Object for the row counts), once
// per finished import that is not a dry run.
const (
	// MetricRowsSent counts the valid rows uploaded to CE.
	MetricRowsSent = "RowsSent"
	// MetricRowsRejected counts the rows rejected before upload
	// (rejects.jsonl.gz).
	MetricRowsRejected = "RowsRejected"
	// MetricRowsCERejected counts the rows CE failed (or never finished).
	MetricRowsCERejected = "RowsCERejected"
	// MetricJobsFailed counts imports that ended FAILED.
	MetricJobsFailed = "JobsFailed"
)

// MetricNames lists every metric the importer emits.
var MetricNames = []string{MetricRowsSent, MetricRowsRejected, MetricRowsCERejected, MetricJobsFailed}

// rowMetrics writes one EMF line with a finished import's row counts.
func (im *Importer) rowMetrics(ctx context.Context, s summary) {
	if s.DryRun {
		return
	}
	dims := []logging.Dimension{{Name: "Function", Value: im.cfg.Function}, {Name: "Object", Value: s.Object}}
	err := logging.Metrics(im.cfg.Metrics, dims, []logging.Value{
		{Name: MetricRowsSent, Unit: "Count", Value: float64(s.Sent)},
		{Name: MetricRowsRejected, Unit: "Count", Value: float64(s.Rejected)},
		{Name: MetricRowsCERejected, Unit: "Count", Value: float64(s.CEFailed)},
	}, im.cfg.Now())
	if err != nil {
		im.log.WarnContext(ctx, "write metric", "err", err)
	}
}

// metric writes one EMF count line.
func (im *Importer) metric(ctx context.Context, name string) {
	if err := logging.Metric(im.cfg.Metrics, im.cfg.Function, name, 1, im.cfg.Now()); err != nil {
		im.log.WarnContext(ctx, "write metric", "metric", name, "err", err)
	}
}
