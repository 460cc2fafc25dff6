// Package ledger keeps the job ledger: one JSON object per unit of work under
// state/jobs/<id>.json in the data bucket.
//
// Ids are ours and deterministic (export-activities-2026-11-25,
// import-<hash>-chunk-0003), and records are created with If-None-Match: *
// and moved with If-Match: <etag>. So a retried run or a duplicate event
// cannot start a second CE job for the same unit of work, and a callback and a
// sweep racing on one job cannot both take it: the loser gets ErrConflict.
package ledger

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/cebulk/cebulk/internal/s3stream"
)

// Prefix is where job records live in the data bucket.
const Prefix = "state/jobs/"

// Sentinel errors, matched with errors.Is.
var (
	ErrExists   = errors.New("ledger: job already exists")
	ErrNotFound = errors.New("ledger: job not found")
	ErrConflict = errors.New("ledger: job changed concurrently")
	// ErrInvalidID is returned for ids that cannot name a job (empty, too
	// long, or with path characters).
	ErrInvalidID = errors.New("ledger: invalid job id")
)

// Kind says which function owns a job.
type Kind string

// Job kinds.
const (
	KindExport Kind = "export"
	KindImport Kind = "import"
)

// Status is a job's place in its lifecycle.
type Status string

// Job statuses. PENDING waits for CE; COLLECTING (export) or UPLOADING
// (import) is taken by one worker; the rest are final.
const (
	StatusPending    Status = "PENDING"
	StatusUploading  Status = "UPLOADING"
	StatusCollecting Status = "COLLECTING"
	StatusDone       Status = "DONE"
	StatusFailed     Status = "FAILED"
	StatusExpired    Status = "EXPIRED"
)

// Final reports whether no further work happens on a job in status s.
func (s Status) Final() bool {
	return s == StatusDone || s == StatusFailed || s == StatusExpired
}

// Window is the slice of time an export job covers, [From, To).
type Window struct {
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	Partition string    `json:"partition"` // "dt=2026-11-25" or "snapshot=20261126T020000Z"
}

// Source is the S3 object (and chunk) an import job reads.
type Source struct {
	Bucket   string `json:"bucket"`
	Key      string `json:"key"`
	ETag     string `json:"etag"`
	ImportID string `json:"importId,omitempty"`
	Chunk    int    `json:"chunk,omitempty"`
}

// CEState is the last thing CE said about the job's current CE job.
type CEState struct {
	Status             string    `json:"status"`
	RecordsCount       int64     `json:"recordsCount"`
	RecordsFailedCount int64     `json:"recordsFailedCount"`
	Error              string    `json:"error,omitempty"`
	CheckedAt          time.Time `json:"checkedAt"`
}

// Result is what a finished job produced.
type Result struct {
	Records     int64    `json:"records"`
	OutOfWindow int64    `json:"outOfWindow,omitempty"`
	Failed      int64    `json:"failed,omitempty"`
	Bytes       int64    `json:"bytes,omitempty"`
	Keys        []string `json:"keys,omitempty"`
}

// Job is one ledger record.
type Job struct {
	ID        string    `json:"id"`
	Kind      Kind      `json:"kind"`
	Object    string    `json:"object"`
	Status    Status    `json:"status"`
	CEJobID   string    `json:"ceJobId,omitempty"`
	Attempts  int       `json:"attempts"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	// StartedAt is when the current CE job was started.
	StartedAt time.Time `json:"startedAt,omitzero"`
	// Deadline is when a PENDING job with no news expires.
	Deadline time.Time `json:"deadline,omitzero"`
	// TokenHash is hex(sha256(callback token)); the token itself is never stored.
	TokenHash string   `json:"tokenHash,omitempty"`
	Window    *Window  `json:"window,omitempty"`
	Source    *Source  `json:"source,omitempty"`
	CE        *CEState `json:"ce,omitempty"`
	Result    *Result  `json:"result,omitempty"`
	LastError string   `json:"lastError,omitempty"`
	// Run ties jobs started by one operator request together.
	Run string `json:"run,omitempty"`
	// Handoff records the verified CE callback that handed the job to its
	// owner, so a duplicate callback hands nothing over twice.
	Handoff *Handoff `json:"handoff,omitempty"`
	// Import is an import record's checkpoint (see internal/importer). The
	// ledger keeps it verbatim, so any writer preserves it and operators
	// see an import's progress in GET /jobs/{id}.
	Import json.RawMessage `json:"import,omitempty"`
	// Collect is an export collect's checkpoint (see internal/exporter):
	// its multipart upload and how far it got. Kept verbatim like Import.
	Collect json.RawMessage `json:"collect,omitempty"`
	// LeaseUntil is when a COLLECTING job's collector is presumed dead
	// (its invocation's deadline plus a grace); zero means UpdatedAt plus
	// the owner's default lease.
	LeaseUntil time.Time `json:"leaseUntil,omitzero"`
}

// Handoff is the webhook's record of a CE callback for a job.
type Handoff struct {
	CEJobID   string    `json:"ceJobId"`   // the CE job the callback was about
	CEStatus  string    `json:"ceStatus"`  // the status re-read from CE
	At        time.Time `json:"at"`        // when the owner was invoked
	Callbacks int       `json:"callbacks"` // verified callbacks received for this CE job
}

// Public returns a copy without the callback token hash, for operators.
func (j *Job) Public() *Job {
	c := *j
	c.TokenHash = ""
	return &c
}

// objectStore is the part of s3stream.Store the ledger needs.
type objectStore interface {
	ReadSmall(ctx context.Context, bucket, key string) ([]byte, string, error)
	WriteSmall(ctx context.Context, bucket, key string, data []byte, contentType string, cond s3stream.Condition) (string, error)
	List(ctx context.Context, bucket, prefix string) iter.Seq2[s3stream.ObjectInfo, error]
}

// Store reads and writes job records in one bucket.
type Store struct {
	s      objectStore
	bucket string
	now    func() time.Time
}

// New returns a ledger in bucket.
func New(s objectStore, bucket string) *Store {
	return &Store{s: s, bucket: bucket, now: time.Now}
}

// Key returns the object key of job id.
func Key(id string) string { return Prefix + id + ".json" }

// Create stores a new job; it fails with ErrExists when the id is taken.
func (s *Store) Create(ctx context.Context, j *Job) (string, error) {
	if err := validID(j.ID); err != nil {
		return "", err
	}
	now := s.now().UTC()
	if j.CreatedAt.IsZero() {
		j.CreatedAt = now
	}
	j.UpdatedAt = now
	b, err := json.Marshal(j)
	if err != nil {
		return "", fmt.Errorf("encode job %s: %v", j.ID, err)
	}
	etag, err := s.s.WriteSmall(ctx, s.bucket, Key(j.ID), b, "application/json", s3stream.Condition{IfNoneMatch: true})
	if errors.Is(err, s3stream.ErrPrecondition) {
		return "", fmt.Errorf("create job %s: %w", j.ID, ErrExists)
	}
	if err != nil {
		return "", fmt.Errorf("create job %s: %w", j.ID, err)
	}
	return etag, nil
}

// Get reads job id and its ETag.
func (s *Store) Get(ctx context.Context, id string) (*Job, string, error) {
	if err := validID(id); err != nil {
		return nil, "", err
	}
	b, etag, err := s.s.ReadSmall(ctx, s.bucket, Key(id))
	if errors.Is(err, s3stream.ErrNotFound) {
		return nil, "", fmt.Errorf("get job %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, "", fmt.Errorf("get job %s: %w", id, err)
	}
	var j Job
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, "", fmt.Errorf("decode job %s: %v", id, err)
	}
	return &j, etag, nil
}

// Update replaces job j if it still has etag; a concurrent change makes it
// fail with ErrConflict. It returns the new ETag.
func (s *Store) Update(ctx context.Context, j *Job, etag string) (string, error) {
	j.UpdatedAt = s.now().UTC()
	b, err := json.Marshal(j)
	if err != nil {
		return "", fmt.Errorf("encode job %s: %v", j.ID, err)
	}
	newTag, err := s.s.WriteSmall(ctx, s.bucket, Key(j.ID), b, "application/json", s3stream.Condition{IfMatch: etag})
	if errors.Is(err, s3stream.ErrPrecondition) {
		return "", fmt.Errorf("update job %s: %w", j.ID, ErrConflict)
	}
	if err != nil {
		return "", fmt.Errorf("update job %s: %w", j.ID, err)
	}
	return newTag, nil
}

// Modify reads job id, applies fn and writes it back, retrying on a lost
// race up to a few times. fn returning an error aborts without writing.
func (s *Store) Modify(ctx context.Context, id string, fn func(*Job) error) (*Job, error) {
	for attempt := 0; ; attempt++ {
		j, etag, err := s.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := fn(j); err != nil {
			return j, err
		}
		if _, err := s.Update(ctx, j, etag); err != nil {
			if errors.Is(err, ErrConflict) && attempt < 4 {
				continue
			}
			return nil, err
		}
		return j, nil
	}
}

// List yields every job whose id starts with idPrefix.
func (s *Store) List(ctx context.Context, idPrefix string) iter.Seq2[*Job, error] {
	return func(yield func(*Job, error) bool) {
		for info, err := range s.s.List(ctx, s.bucket, Prefix+idPrefix) {
			if err != nil {
				yield(nil, err)
				return
			}
			id, ok := strings.CutSuffix(strings.TrimPrefix(info.Key, Prefix), ".json")
			if !ok {
				continue
			}
			j, _, err := s.Get(ctx, id)
			if errors.Is(err, ErrNotFound) {
				continue // deleted between list and get
			}
			if !yield(j, err) {
				return
			}
		}
	}
}

func validID(id string) error {
	if id == "" || len(id) > 200 || strings.ContainsAny(id, "/\\ ?#%") || strings.Contains(id, "..") {
		return fmt.Errorf("%w %q", ErrInvalidID, id)
	}
	return nil
}

// NewToken returns a fresh callback token and the hash to store for it.
func NewToken() (token, hash string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand never fails on supported platforms
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, HashToken(token)
}

// HashToken returns hex(sha256(token)).
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// CheckToken reports, in constant time, whether token matches j's stored hash.
func (j *Job) CheckToken(token string) bool {
	if j.TokenHash == "" || token == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(HashToken(token)), []byte(j.TokenHash)) == 1
}
