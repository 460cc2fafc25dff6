package importer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/cebulk/cebulk/internal/httpapi"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/mixpanel"
	"github.com/cebulk/cebulk/internal/s3stream"
	"github.com/cebulk/cebulk/pkg/ce"
)

// Defaults for Config.
const (
	DefaultChunkRecords = 50000
	DefaultSafetyMargin = 2 * time.Minute
	DefaultMaxAttempts  = 3
	// DefaultLease is how long an import record held by a worker (UPLOADING
	// or COLLECTING) stays taken without a heartbeat: longer than the
	// longest Lambda invocation (15 minutes), so a live worker never loses
	// it.
	DefaultLease = 16 * time.Minute
	// DefaultJobDeadline is how long finalize waits for CE to finish the
	// chunks' jobs before it reports the unfinished ones as EXPIRED.
	DefaultJobDeadline = 24 * time.Hour
)

// Config configures an Importer.
type Config struct {
	// Bucket is the data bucket: ledger records, reports and rejects parts
	// are written there. Source objects may come from any bucket.
	Bucket string
	// ChunkRecords is the number of valid records per CE upload job
	// (default DefaultChunkRecords). It is fixed per import when the import
	// starts, so a configuration change never moves chunk boundaries under
	// a resumed import.
	ChunkRecords int
	// CallbackURL is the webhook's callback route; empty means poll only
	// (the sweep). Each chunk's CE job gets CallbackURL?job=<chunk ledger
	// id>&token=<token>.
	CallbackURL string
	// SafetyMargin is the time kept free before the invocation's deadline:
	// no chunk starts when less than SafetyMargin (plus the expected time
	// of one chunk) is left, and a chunk still being streamed when only
	// SafetyMargin is left is abandoned before CE could accept it (default
	// DefaultSafetyMargin).
	SafetyMargin time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// MaxAttempts bounds retries: uploads of one chunk that CE refused
	// without creating a job, and processing invocations of one import
	// that failed (default DefaultMaxAttempts).
	MaxAttempts int
	// Lease is how long a worker's hold on an import lasts without a
	// heartbeat (default DefaultLease).
	Lease time.Duration
	// JobDeadline is how long finalize waits for CE jobs (default
	// DefaultJobDeadline).
	JobDeadline time.Duration
	// Metrics receives CloudWatch embedded-metric-format lines (the
	// function's stdout); nil discards them.
	Metrics io.Writer
	// Function is the EMF "Function" dimension (default "import").
	Function string
	// FullListingEvery is how often a sweep also lists every import
	// record, besides the open-import markers (default
	// DefaultFullListingEvery; negative: never). See doc.go, "Sweep".
	FullListingEvery time.Duration
	// Sleep waits d before a chunk CE throttled (429/503) is sent again,
	// returning early with ctx's error (default: a timer).
	Sleep func(ctx context.Context, d time.Duration) error
	// Jitter returns a random number in [0, n) for the backoff (default
	// math/rand/v2).
	Jitter func(n int64) int64
}

func (c Config) withDefaults() Config {
	if c.ChunkRecords <= 0 {
		c.ChunkRecords = DefaultChunkRecords
	}
	if c.SafetyMargin <= 0 {
		c.SafetyMargin = DefaultSafetyMargin
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.Lease <= 0 {
		c.Lease = DefaultLease
	}
	if c.JobDeadline <= 0 {
		c.JobDeadline = DefaultJobDeadline
	}
	if c.Sleep == nil {
		c.Sleep = httpapi.Sleep
	}
	if c.Jitter == nil {
		c.Jitter = rand.Int64N
	}
	if c.Metrics == nil {
		c.Metrics = io.Discard
	}
	if c.Function == "" {
		c.Function = "import"
	}
	if c.FullListingEvery == 0 {
		c.FullListingEvery = DefaultFullListingEvery
	}
	return c
}

// Backend takes the chunks: it uploads a chunk, tells a chunk job's
// status and reads its per-record errors, in CE's job model. The CE backend
// is *ceclient.Client (the functions) or *ce.Client (tests); the Mixpanel
// backend is *mpdirect.Imports, which answers every chunk before Upload
// returns. An upload error with a Resendable() method returning true says
// the chunk may be sent again whole, however far its body got (the backend
// skips what was answered before).
type Backend interface {
	Upload(ctx context.Context, object string, r io.Reader, opts ce.UploadOptions) (*ce.Job, error)
	Status(ctx context.Context, jobID string) (*ce.Job, error)
	Errors(ctx context.Context, jobID string, pageSize int) iter.Seq2[json.RawMessage, error]
}

// objectStore is the part of s3stream.Store the importer uses.
type objectStore interface {
	Open(ctx context.Context, bucket, key string) (io.ReadCloser, s3stream.ObjectInfo, error)
	OpenRange(ctx context.Context, bucket, key string, offset int64, etag string) (io.ReadCloser, s3stream.ObjectInfo, error)
	Head(ctx context.Context, bucket, key string) (s3stream.ObjectInfo, error)
	Put(ctx context.Context, bucket, key string, r io.Reader, o s3stream.PutOptions) (s3stream.PutResult, error)
	ReadSmall(ctx context.Context, bucket, key string) ([]byte, string, error)
	WriteSmall(ctx context.Context, bucket, key string, data []byte, contentType string, cond s3stream.Condition) (string, error)
	Delete(ctx context.Context, bucket, key string) error
	List(ctx context.Context, bucket, prefix string) iter.Seq2[s3stream.ObjectInfo, error]
}

// Importer runs imports. It is safe for concurrent use; each import is
// serialised by its ledger record.
type Importer struct {
	cfg      Config
	ce       Backend
	store    objectStore
	jobs     *ledger.Store
	reinvoke func(ctx context.Context, importID string) error
	log      *slog.Logger
}

// New returns an Importer. ce may be nil when only dry runs are expected.
// reinvoke starts another invocation that resumes importID (an
// asynchronous Lambda invoke of the function itself); nil resumes in the
// same process. log may be nil.
func New(cfg Config, backend Backend, store objectStore, jobs *ledger.Store, reinvoke func(ctx context.Context, importID string) error, log *slog.Logger) *Importer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Importer{cfg: cfg.withDefaults(), ce: backend, store: store, jobs: jobs, reinvoke: reinvoke, log: log}
}

// Outcome statuses of a Result. SUCCEEDED, PARTIAL and FAILED are the
// report's final statuses; the others say where a non-final import stands.
const (
	StatusSucceeded = "SUCCEEDED"
	StatusPartial   = "PARTIAL"
	StatusFailed    = "FAILED"
	// StatusCheckpointed: the invocation stopped near its deadline (or
	// after its chunk budget) and handed the rest to a resume invocation.
	StatusCheckpointed = "CHECKPOINTED"
	// StatusWaiting: every chunk is uploaded; CE has not finished them all.
	StatusWaiting = "WAITING"
	// StatusRunning: another worker holds the import.
	StatusRunning = "RUNNING"
	// StatusDuplicate: the S3 event repeats one already handled.
	StatusDuplicate = "DUPLICATE"
	// StatusIgnored: the key is a folder placeholder, nothing to import.
	StatusIgnored = "IGNORED"
	// StatusRetry: the invocation failed, and the import's record holds the
	// failure with its checkpoint: the next sweep resumes (or finalizes)
	// it. The call returns no error, so that Lambda does not retry it too.
	StatusRetry = "RETRY"
)

// Result describes what one call did.
type Result struct {
	ImportID string `json:"importId,omitempty"`
	Status   string `json:"status"`
	// Summary is the key of summary.json once it is written.
	Summary  string `json:"summary,omitempty"`
	Chunks   int    `json:"chunks"`
	Records  int64  `json:"records"`
	Valid    int64  `json:"valid"`
	Rejected int64  `json:"rejected"`
	DryRun   bool   `json:"dryRun,omitempty"`
}

// RunOption tunes one processing call.
type RunOption func(*runOptions)

type runOptions struct {
	maxChunks int
}

// MaxChunks makes the call checkpoint and hand over to a resume invocation
// after n chunks (n <= 0: no limit). It forces the checkpoint path in tests
// and lets operators bound one invocation's work; the resume it starts has
// no limit.
func MaxChunks(n int) RunOption { return func(o *runOptions) { o.maxChunks = n } }

// ImportID returns the id of the import of one object version:
// "import-" and the first 16 hex digits of sha256("bucket/key/etag").
func ImportID(bucket, key, etag string) string {
	sum := sha256.Sum256([]byte(bucket + "/" + key + "/" + strings.Trim(etag, `"`)))
	return "import-" + hex.EncodeToString(sum[:8])
}

// ChunkID returns the ledger id of chunk n (1-based) of an import.
func ChunkID(importID string, n int) string { return fmt.Sprintf("%s-chunk-%04d", importID, n) }

// importIDOf returns the import id of a ledger id: the id itself, or the
// import part of a chunk id.
func importIDOf(ledgerID string) string {
	if i := strings.Index(ledgerID, "-chunk-"); i >= 0 {
		return ledgerID[:i]
	}
	return ledgerID
}

// Source is a parsed import key.
type Source struct {
	Object string // activities | users
	Name   string // the key below imports/<object>/ (dry-run/ removed)
	DryRun bool
}

// keyError says why a key is not an import.
type keyError struct{ reason string }

func (e *keyError) Error() string { return e.reason }

// ParseKey checks an S3 key against imports/<object>/<name> and
// imports/<object>/dry-run/<name>, the only keys the importer takes (any
// other gets a FAILED report saying why). `cebulk import` uses it to refuse
// such keys at once.
func ParseKey(key string) (Source, error) {
	rest, ok := strings.CutPrefix(key, "imports/")
	if !ok {
		return Source{}, &keyError{fmt.Sprintf("the key %q is not under imports/: upload files as imports/activities/<name> or imports/users/<name>", key)}
	}
	object, name, ok := strings.Cut(rest, "/")
	if !ok || object == "" {
		return Source{}, &keyError{fmt.Sprintf("the key %q names no object: upload files as imports/activities/<name> or imports/users/<name>", key)}
	}
	if object != string(mixpanel.Activities) && object != string(mixpanel.Users) {
		return Source{}, &keyError{fmt.Sprintf("unknown object %q in %q: the mixpanel element imports activities and users (lower case)", object, key)}
	}
	src := Source{Object: object, Name: name}
	if n, ok := strings.CutPrefix(name, "dry-run/"); ok {
		src.DryRun, src.Name = true, n
	}
	if src.Name == "" || strings.HasSuffix(src.Name, "/") {
		return Source{}, &keyError{fmt.Sprintf("the key %q names a folder, not a file", key)}
	}
	return src, nil
}

// reportPrefix is where the reports of an import go: "reports/" + the key
// + "/", which puts dry runs under reports/imports/<object>/dry-run/<name>/.
func reportPrefix(key string) string { return "reports/" + key + "/" }

// Report file names.
const (
	summaryFile  = "summary.json"
	rejectsFile  = "rejects.jsonl.gz"
	ceErrorsFile = "ce-errors.jsonl"
)

// HandleObject imports one S3 object version, from an ObjectCreated event.
// etag may be empty (the object's current ETag is then used). A key that
// is not an import gets a FAILED summary under reports/imports/_invalid/
// and no error, so Lambda does not retry it. A repeated event for the same
// version does nothing, unless it finds the import stalled, which it then
// resumes. opts apply to this invocation only.
//
// The returned error is for failures worth retrying (S3, the ledger, CE
// refusing an upload); the import's record keeps its progress, so a
// retried event resumes it.
func (im *Importer) HandleObject(ctx context.Context, bucket, key, etag string, size int64, opts ...RunOption) (Result, error) {
	src, err := ParseKey(key)
	if err != nil {
		if strings.HasSuffix(key, "/") && size == 0 {
			return Result{Status: StatusIgnored}, nil // a console "folder"
		}
		var ke *keyError
		if !errors.As(err, &ke) {
			return Result{}, err
		}
		return im.rejectKey(ctx, bucket, key, etag, size, ke.reason)
	}
	etag = strings.Trim(etag, `"`)
	if etag == "" {
		info, err := im.store.Head(ctx, bucket, key)
		if err != nil {
			return Result{}, fmt.Errorf("read the ETag of s3://%s/%s: %w", bucket, key, err)
		}
		etag, size = strings.Trim(info.ETag, `"`), info.Size
	}
	id := ImportID(bucket, key, etag)
	now := im.cfg.Now().UTC()
	rec := &importRecord{
		Job: ledger.Job{
			ID: id, Kind: ledger.KindImport, Object: src.Object, Status: ledger.StatusUploading,
			Attempts: 1, CreatedAt: now, StartedAt: now,
			Source: &ledger.Source{Bucket: bucket, Key: key, ETag: etag, ImportID: id},
		},
		Import: &progress{
			Name: src.Name, DryRun: src.DryRun, Size: size,
			ChunkRecords: im.cfg.ChunkRecords, ValidateAt: now,
		},
	}
	// The marker first: a marker without a record is harmless (the sweep
	// removes it), a record without a marker would be an open import the
	// sweep does not see.
	if _, err := im.markOpen(ctx, rec); err != nil {
		return Result{}, err
	}
	tag, err := im.createImport(ctx, rec)
	if errors.Is(err, ledger.ErrExists) {
		return im.resume(ctx, id, true, opts)
	}
	if err != nil {
		return Result{}, err
	}
	// A sweep removes a marker whose record has not come for a lease. An
	// earlier attempt at this event may have made the marker that long ago,
	// so it is made again if it is gone (see doc.go, "Sweep").
	if _, err := im.markOpen(ctx, rec); err != nil {
		im.log.WarnContext(ctx, "mark the import open again", "importId", id, "err", err)
	}
	im.log.InfoContext(ctx, "import started", "importId", id, "bucket", bucket, "key", key,
		"object", src.Object, "dryRun", src.DryRun, "bytes", size)
	return im.run(ctx, rec, tag, opts)
}

// Resume continues an import that checkpointed (the "resume" action).
func (im *Importer) Resume(ctx context.Context, importID string, opts ...RunOption) (Result, error) {
	return im.resume(ctx, importIDOf(importID), false, opts)
}

// resume takes the import's lease when it is free (released at a
// checkpoint, or held by a worker that stopped heartbeating) and continues
// it. Otherwise it reports where the import stands and does nothing.
func (im *Importer) resume(ctx context.Context, id string, duplicate bool, opts []RunOption) (Result, error) {
	rec, tag, err := im.getImport(ctx, id)
	if err != nil {
		return Result{}, err
	}
	p := rec.Import
	now := im.cfg.Now()
	switch {
	case rec.Status.Final():
		if duplicate {
			im.unmarkOpen(ctx, id) // HandleObject may just have made it again
		}
		return resultOf(rec, statusDuplicate(duplicate, p.Outcome)), nil
	case p.Done && rec.Status == ledger.StatusCollecting && now.Sub(rec.UpdatedAt) < im.cfg.Lease:
		return resultOf(rec, statusDuplicate(duplicate, StatusRunning)), nil
	case p.Done:
		if duplicate {
			return resultOf(rec, StatusDuplicate), nil
		}
		return im.finalize(ctx, id)
	case rec.Status == ledger.StatusUploading && now.Sub(rec.UpdatedAt) < im.cfg.Lease:
		return resultOf(rec, statusDuplicate(duplicate, StatusRunning)), nil
	}
	// Free: released at a checkpoint or after a failure (PENDING), or held
	// by a worker that died (UPLOADING past its lease).
	if rec.Status == ledger.StatusUploading {
		im.log.WarnContext(ctx, "import lease expired: taking over", "importId", id, "heartbeat", rec.UpdatedAt)
	}
	rec.Status = ledger.StatusUploading
	rec.Attempts++
	tag, err = im.updateImport(ctx, rec, tag)
	if errors.Is(err, ledger.ErrConflict) {
		return resultOf(rec, StatusRunning), nil // another worker took it first
	}
	if err != nil {
		return Result{}, err
	}
	im.log.InfoContext(ctx, "import resumed", "importId", id, "chunk", p.Chunks, "records", p.Records, "invocation", rec.Attempts)
	return im.run(ctx, rec, tag, opts)
}

func statusDuplicate(duplicate bool, status string) string {
	if duplicate {
		return StatusDuplicate
	}
	return status
}

func resultOf(rec *importRecord, status string) Result {
	p := rec.Import
	r := Result{ImportID: rec.ID, Status: status, Chunks: p.Chunks, Records: p.Records, Valid: p.Valid, Rejected: p.Rejected, DryRun: p.DryRun}
	if p.Outcome != "" {
		r.Summary = reportPrefix(rec.Source.Key) + summaryFile
	}
	return r
}

// rejectKey writes the FAILED summary of an object that is not an import.
func (im *Importer) rejectKey(ctx context.Context, bucket, key, etag string, size int64, reason string) (Result, error) {
	now := im.cfg.Now().UTC()
	s := summary{
		Source:  summarySource{Bucket: bucket, Key: key, ETag: strings.Trim(etag, `"`), Size: size},
		Status:  StatusFailed,
		Reason:  reason,
		CEJobs:  []summaryChunk{},
		Timings: summaryTimings{StartedAt: now, FinishedAt: now},
	}
	sumKey := "reports/imports/_invalid/" + key + "/" + summaryFile
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return Result{}, fmt.Errorf("encode summary: %v", err)
	}
	if _, err := im.store.WriteSmall(ctx, im.cfg.Bucket, sumKey, append(b, '\n'), "application/json", s3stream.Condition{}); err != nil {
		return Result{}, fmt.Errorf("write %s: %w", sumKey, err)
	}
	im.metric(ctx, "JobsFailed")
	im.log.WarnContext(ctx, "not an import", "bucket", bucket, "key", key, "reason", reason)
	return Result{Status: StatusFailed, Summary: sumKey}, nil
}
