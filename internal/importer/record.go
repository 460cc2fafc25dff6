package importer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/recordio"
	"github.com/cebulk/cebulk/internal/s3stream"
)

// importRecord is an import's ledger record: a ledger.Job (kind import,
// Source{bucket, key, etag}) with the import's progress in an extra
// "import" field (ledger.Job.Import keeps it verbatim for other readers, so
// the webhook's GET /jobs/{id} shows an import's progress). It is stored at
// ledger.Key(id); only the importer writes it, through the same conditional
// writes the ledger uses.
type importRecord struct {
	ledger.Job
	Import *progress `json:"import"`
}

// progress is the checkpoint of an import: everything needed to resume it
// after the last committed chunk, and to write its report.
type progress struct {
	Name         string `json:"name"`
	DryRun       bool   `json:"dryRun,omitempty"`
	Size         int64  `json:"size"`
	ChunkRecords int    `json:"chunkRecords"`
	// ValidateAt is the "now" of Mixpanel's time rules for this import,
	// fixed when it starts, so that a resumed import classifies every
	// record exactly as before and chunk boundaries do not move.
	ValidateAt time.Time `json:"validateAt"`
	Format     string    `json:"format,omitempty"`
	Gzip       bool      `json:"gzip,omitempty"`

	// Chunks counts the committed chunks; chunk n (1-based) is
	// ChunkID(id, n).
	Chunks int `json:"chunks"`
	Line   int `json:"line"` // the source line reached
	// Records counts the items (valid records and rows rejected, also
	// those that could not be decoded) read up to the end of the last
	// committed span.
	Records   int64 `json:"records"`
	Valid     int64 `json:"valid"`
	Rejected  int64 `json:"rejected"`
	BlankRows int64 `json:"blankRows,omitempty"`
	// Resume is where the reader stood at the end of the last committed
	// span: a resume continues there (recordio.OpenAt), through a ranged
	// GET when the file is not gzipped. Checkpoints written before it
	// existed lack it: their resume reads the first Records items again
	// and drops them.
	Resume *recordio.Resume `json:"resume,omitempty"`
	// RejectParts are the committed rejects parts, in order; finalize
	// concatenates them (gzip members) into rejects.jsonl.gz.
	RejectParts []string `json:"rejectParts,omitempty"`
	// LineIndexFrom, when not 0, is the first chunk with a line index
	// (lineIndexKey): it and every later chunk have one, written before
	// the chunk was committed. It is 1 for imports that began with line
	// indexes, later for imports resumed from a checkpoint written before
	// them, and 0 for dry runs and such imports' earlier chunks, whose CE
	// errors are then reported without lines.
	LineIndexFrom int `json:"lineIndexFrom,omitempty"`

	// Done: the whole file has been read (or could not be read further)
	// and every chunk handed to CE.
	Done bool `json:"done,omitempty"`
	// FileError says why the file could not be read (further), at
	// FileErrorLine; Fatal says why the import gave up otherwise. Either
	// makes the import FAILED.
	FileError     string `json:"fileError,omitempty"`
	FileErrorLine int    `json:"fileErrorLine,omitempty"`
	Fatal         string `json:"fatal,omitempty"`
	// Failures counts invocations that ended in an error, Stalls those
	// that reached their deadline inside a chunk, since the last commit.
	Failures int `json:"failures,omitempty"`
	Stalls   int `json:"stalls,omitempty"`
	// RateLimited is set when CE's 429/503 outlasted an invocation: the
	// import waits, released, for the sweep (no failure counted).
	RateLimited bool `json:"rateLimited,omitempty"`

	UploadedAt  time.Time `json:"uploadedAt,omitzero"`
	FinalizedAt time.Time `json:"finalizedAt,omitzero"`
	// Outcome is the report's status once it is written.
	Outcome string   `json:"outcome,omitempty"`
	Reports []string `json:"reports,omitempty"`
}

// createImport stores a new import record; ledger.ErrExists when the id is
// taken (a duplicate event).
func (im *Importer) createImport(ctx context.Context, rec *importRecord) (string, error) {
	now := im.cfg.Now().UTC()
	if rec.CreatedAt.IsZero() {
		rec.CreatedAt = now
	}
	rec.UpdatedAt = now
	b, err := json.Marshal(rec)
	if err != nil {
		return "", fmt.Errorf("encode import %s: %v", rec.ID, err)
	}
	tag, err := im.store.WriteSmall(ctx, im.cfg.Bucket, ledger.Key(rec.ID), b, "application/json", s3stream.Condition{IfNoneMatch: true})
	if errors.Is(err, s3stream.ErrPrecondition) {
		return "", fmt.Errorf("create import %s: %w", rec.ID, ledger.ErrExists)
	}
	if err != nil {
		return "", fmt.Errorf("create import %s: %w", rec.ID, err)
	}
	return tag, nil
}

// getImport reads an import record and its ETag.
func (im *Importer) getImport(ctx context.Context, id string) (*importRecord, string, error) {
	b, tag, err := im.store.ReadSmall(ctx, im.cfg.Bucket, ledger.Key(id))
	if errors.Is(err, s3stream.ErrNotFound) {
		return nil, "", fmt.Errorf("get import %s: %w", id, ledger.ErrNotFound)
	}
	if err != nil {
		return nil, "", fmt.Errorf("get import %s: %w", id, err)
	}
	var rec importRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, "", fmt.Errorf("decode import %s: %v", id, err)
	}
	if rec.Kind != ledger.KindImport || rec.Import == nil || rec.Source == nil {
		return nil, "", fmt.Errorf("get import %s: not an import record", id)
	}
	return &rec, tag, nil
}

// updateImport replaces the record if it still has tag (ledger.ErrConflict
// otherwise) and returns the new ETag. It is also the heartbeat of the
// worker holding the import.
func (im *Importer) updateImport(ctx context.Context, rec *importRecord, tag string) (string, error) {
	rec.UpdatedAt = im.cfg.Now().UTC()
	b, err := json.Marshal(rec)
	if err != nil {
		return "", fmt.Errorf("encode import %s: %v", rec.ID, err)
	}
	newTag, err := im.store.WriteSmall(ctx, im.cfg.Bucket, ledger.Key(rec.ID), b, "application/json", s3stream.Condition{IfMatch: tag})
	if errors.Is(err, s3stream.ErrPrecondition) {
		return "", fmt.Errorf("update import %s: %w", rec.ID, ledger.ErrConflict)
	}
	if err != nil {
		return "", fmt.Errorf("update import %s: %w", rec.ID, err)
	}
	return newTag, nil
}

// partKey names the rejects part of span n of an import. A span read again
// after a crash writes the same bytes under the same key, and only parts
// listed in the checkpoint are used.
func partKey(importID string, n int) string {
	return fmt.Sprintf("state/imports/%s/rejects-%04d.jsonl.gz", importID, n)
}
