package mpdirect

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"slices"
	"strings"

	"github.com/cebulk/cebulk/internal/s3stream"
	"github.com/cebulk/cebulk/pkg/ce"
	"github.com/cebulk/cebulk/pkg/mixpanel"
)

// stateStore is the part of S3 the import backend keeps chunk state in
// (*s3stream.Store).
type stateStore interface {
	ReadSmall(ctx context.Context, bucket, key string) ([]byte, string, error)
	WriteSmall(ctx context.Context, bucket, key string, data []byte, contentType string, cond s3stream.Condition) (string, error)
}

// ChunkStatePrefix is where Imports keeps each chunk's progress, under the
// data bucket.
const ChunkStatePrefix = "state/mixpanel/chunks/"

// maxLine bounds one record of a chunk (Mixpanel refuses records over 1 MB;
// the importer's validation refuses them before).
const maxLine = 4 << 20

// Imports is the importer's backend over Mixpanel's /import (activities)
// and /engage (users). It is safe for concurrent use.
type Imports struct {
	c      *Client
	store  stateStore
	bucket string
	// batchRecords bounds the records of a batch below Mixpanel's limit
	// (tests); 0 means the limit.
	batchRecords int
}

// NewImports returns the import backend; chunk state is kept in bucket.
func NewImports(c *Client, store stateStore, bucket string) *Imports {
	return &Imports{c: c, store: store, bucket: bucket}
}

// span is a range of record indexes in a chunk, both ends included.
type span struct {
	First int64 `json:"first"`
	Last  int64 `json:"last"`
}

func inSpans(spans []span, i int64) bool {
	for _, s := range spans {
		if i >= s.First && i <= s.Last {
			return true
		}
	}
	return false
}

// minus returns the parts of s outside every span of skip, in order. A
// batch's [First, Last] covers the records skipped among its own (answered
// by an earlier send, or of unknown outcome); only the rest were sent in it.
func (s span) minus(skip []span) []span {
	out := []span{s}
	for _, k := range skip {
		var next []span
		for _, o := range out {
			if k.Last < o.First || k.First > o.Last {
				next = append(next, o)
				continue
			}
			if k.First > o.First {
				next = append(next, span{First: o.First, Last: k.First - 1})
			}
			if k.Last < o.Last {
				next = append(next, span{First: k.Last + 1, Last: o.Last})
			}
		}
		out = next
	}
	return out
}

// failure is a record Mixpanel (or the client, Local) refused.
type failure struct {
	Index      int64  `json:"index"`
	Field      string `json:"field,omitempty"`
	Message    string `json:"message"`
	InsertID   string `json:"insertId,omitempty"`
	DistinctID string `json:"distinctId,omitempty"`
	Local      bool   `json:"local,omitempty"`
}

// chunkState is a chunk's progress: which records Mixpanel answered for,
// and how.
type chunkState struct {
	Object string `json:"object"`
	// Done are the records of batches Mixpanel answered (accepted or
	// refused record by record): never sent again.
	Done []span `json:"done,omitempty"`
	// Unknown are the records of profile batches whose answer was lost
	// after they were sent: never sent again, reported as unknown.
	Unknown  []span    `json:"unknown,omitempty"`
	Imported int64     `json:"imported"`
	Failures []failure `json:"failures,omitempty"`
	// Records is the number of records in the chunk, known once it was
	// read to its end; Complete says every one was answered.
	Records  int64 `json:"records"`
	Complete bool  `json:"complete"`
	// Sends counts the Upload calls, for the logs and the tests.
	Sends int `json:"sends"`
}

func (s *chunkState) unknownCount() int64 {
	var n int64
	for _, u := range s.Unknown {
		for i := u.First; i <= u.Last; i++ {
			if !inSpans(s.Done, i) {
				n++
			}
		}
	}
	return n
}

func (s *chunkState) job(id string) *ce.Job {
	st := ce.StatusRunning
	if s.Complete {
		st = ce.StatusCompleted
	}
	return &ce.Job{ID: id, Status: st, ObjectName: s.Object, RecordsCount: s.Records,
		RecordsFailedCount: int64(len(s.Failures)) + s.unknownCount()}
}

// chunkKey and jobID map a chunk to its state object and its job id: the
// chunk's name is the upload's file name without ".json" (the importer's
// chunk ledger id).
func (x *Imports) chunkKey(chunk string) string { return ChunkStatePrefix + chunk + ".json" }

func jobOfChunk(chunk string) string { return jobPrefix + "chunk-" + chunk }

func chunkOfJob(id string) (string, error) {
	chunk, ok := strings.CutPrefix(id, jobPrefix+"chunk-")
	if !ok || chunk == "" || strings.ContainsAny(chunk, "/?#") {
		return "", fmt.Errorf("mixpanel backend: job %q: %w", id, ce.ErrNotFound)
	}
	return chunk, nil
}

func (x *Imports) load(ctx context.Context, chunk string) (*chunkState, error) {
	data, _, err := x.store.ReadSmall(ctx, x.bucket, x.chunkKey(chunk))
	if errors.Is(err, s3stream.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mixpanel backend: read the state of chunk %s: %w", chunk, err)
	}
	var s chunkState
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("mixpanel backend: state of chunk %s: %v", chunk, err)
	}
	return &s, nil
}

func (x *Imports) save(ctx context.Context, chunk string, s *chunkState) error {
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	// Written even when ctx is ending: the answers Mixpanel gave must not
	// be forgotten.
	ctx = context.WithoutCancel(ctx)
	if _, err := x.store.WriteSmall(ctx, x.bucket, x.chunkKey(chunk), data, "application/json", s3stream.Condition{}); err != nil {
		return fmt.Errorf("mixpanel backend: save the state of chunk %s: %w", chunk, err)
	}
	return nil
}

// ResendableError reports a chunk that was not wholly answered and may be
// sent again: the batches Mixpanel answered are skipped then.
type ResendableError struct{ Err error }

func (e *ResendableError) Error() string {
	return "mixpanel backend: chunk not wholly sent (sending it again skips what Mixpanel answered): " + e.Err.Error()
}
func (e *ResendableError) Unwrap() error { return e.Err }

// Resendable is true: see the importer's upload outcomes.
func (e *ResendableError) Resendable() bool { return true }

// UnsavedError reports profile batches Mixpanel answered whose progress
// could not be saved: the chunk must not be sent again.
type UnsavedError struct{ Err error }

func (e *UnsavedError) Error() string {
	return "mixpanel backend: profile batches were applied but their progress was not saved; not sent again: " + e.Err.Error()
}
func (e *UnsavedError) Unwrap() error { return e.Err }

// Resendable is false: see the importer's upload outcomes.
func (e *UnsavedError) Resendable() bool { return false }

// Upload sends the chunk in r (JSON lines: events for activities, profile
// updates for users) in batches, and returns its job, COMPLETED, once every
// record was answered. opts.FileName names the chunk; callbacks are not
// supported (nothing calls back).
//
// A chunk sent again (after a deadline, a rate limit or an error) skips the
// records of every batch Mixpanel answered before, and, for users, of every
// batch whose answer was lost. Errors: the read error of r when it failed
// (the importer's deadline), a *ce.APIError with status 429 when Mixpanel
// kept refusing for its rate limit, a *ce.APIError 400 when the chunk can
// never be sent (no project token for profile updates, a record too large
// for a request), else a *ResendableError.
func (x *Imports) Upload(ctx context.Context, object string, r io.Reader, opts ce.UploadOptions) (*ce.Job, error) {
	chunk := strings.TrimSuffix(opts.FileName, ".json")
	if chunk == "" || strings.ContainsAny(chunk, "/?#") {
		return nil, fmt.Errorf("mixpanel backend: upload file name %q does not name a chunk", opts.FileName)
	}
	if object != ObjectActivities && object != ObjectUsers {
		return nil, &ce.APIError{StatusCode: http.StatusBadRequest, Message: fmt.Sprintf("mixpanel backend: unknown object %q (activities, users)", object)}
	}
	st, err := x.load(ctx, chunk)
	if err != nil {
		return nil, &ResendableError{Err: err}
	}
	if st == nil {
		st = &chunkState{Object: object}
	}
	id := jobOfChunk(chunk)
	if st.Complete {
		// Answered whole before; its outcome stands.
		if _, err := io.Copy(io.Discard, r); err != nil {
			return nil, err
		}
		return st.job(id), nil
	}
	st.Sends++
	cl, err := x.c.client(ctx)
	if err != nil {
		return nil, &ResendableError{Err: err}
	}
	if object == ObjectUsers {
		if s, err := x.c.src.Get(ctx); err == nil && s.ProjectToken == "" {
			return nil, &ce.APIError{StatusCode: http.StatusBadRequest,
				Message: "mixpanel backend: the secret has no projectToken, which profile updates carry"}
		}
	}

	// skip is what earlier sends settled, read by the records iterator
	// while onBatch (on the client's senders) adds to st.
	skip := slices.Concat(st.Done, st.Unknown)
	doneBefore, unknownBefore := len(st.Done), len(st.Unknown)
	var readErr error
	var total int64
	records := func(yield func(mixpanel.Record, error) bool) {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 64<<10), maxLine)
		var i int64
		for ; sc.Scan(); i++ {
			line := sc.Bytes()
			if len(line) == 0 {
				i--
				continue
			}
			if inSpans(skip, i) {
				continue
			}
			if !yield(mixpanel.Record{Pos: i, Data: line}, nil) {
				return
			}
		}
		if err := sc.Err(); err != nil {
			readErr = err
			yield(mixpanel.Record{}, err)
			return
		}
		total = i
	}
	onBatch := func(b *mixpanel.BatchResult) error {
		st.Done = append(st.Done, span{First: b.First, Last: b.Last}.minus(skip)...)
		st.Imported += b.Imported
		for _, f := range b.Failed {
			// A failure whose index Mixpanel did not give (or gave out of
			// range) keeps Pos -1: counted, reported without an index.
			st.Failures = append(st.Failures, failure{Index: max(f.Pos, -1), Field: f.Field, Message: f.Message,
				InsertID: f.InsertID, DistinctID: f.DistinctID, Local: f.Local})
		}
		return nil
	}
	iopts := mixpanel.IngestOptions{OnBatch: onBatch, MaxRecords: x.batchRecords}
	if object == ObjectActivities {
		_, err = cl.Import(ctx, iter.Seq2[mixpanel.Record, error](records), iopts)
	} else {
		_, err = cl.UpdateProfiles(ctx, iter.Seq2[mixpanel.Record, error](records), iopts)
	}
	var be *mixpanel.BatchError
	for _, e := range flatten(err) {
		var uo *mixpanel.UnknownOutcomeError
		if errors.As(e, &be) && errors.As(be.Err, &uo) {
			st.Unknown = append(st.Unknown, span{First: be.First, Last: be.Last}.minus(skip)...)
		}
	}
	if err == nil && readErr == nil {
		st.Records, st.Complete = total, true
		slices.SortFunc(st.Failures, func(a, b failure) int { return cmp.Compare(a.Index, b.Index) })
	}
	answered := len(st.Done) > doneBefore || len(st.Unknown) > unknownBefore
	if serr := x.save(ctx, chunk, st); serr != nil {
		if object == ObjectUsers && answered {
			// Profile batches were applied in this send and nothing says
			// so: sending the chunk again would apply them twice. Its
			// outcome is lost, as a CE upload's whose answer was.
			return nil, &UnsavedError{Err: errors.Join(err, serr)}
		}
		if err == nil {
			// Mixpanel has every record but the state is not saved;
			// events may be sent again (Mixpanel de-duplicates them).
			return nil, &ResendableError{Err: serr}
		}
		return nil, &ResendableError{Err: errors.Join(err, serr)}
	}
	switch {
	case readErr != nil:
		return nil, readErr
	case err == nil:
		return st.job(id), nil
	case errors.Is(err, mixpanel.ErrRateLimited):
		return nil, &ce.APIError{StatusCode: http.StatusTooManyRequests, Message: "mixpanel backend: " + err.Error()}
	case errors.Is(err, mixpanel.ErrTooLarge):
		return nil, &ce.APIError{StatusCode: http.StatusRequestEntityTooLarge, Message: "mixpanel backend: " + err.Error()}
	case errors.Is(err, mixpanel.ErrUnauthorized):
		x.c.unauthorized(ctx, err)
		return nil, &ResendableError{Err: err}
	}
	return nil, &ResendableError{Err: err}
}

// flatten lists the errors errors.Join put together in err.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// Status reads the chunk's job from its state.
func (x *Imports) Status(ctx context.Context, jobID string) (*ce.Job, error) {
	chunk, err := chunkOfJob(jobID)
	if err != nil {
		return nil, err
	}
	st, err := x.load(ctx, chunk)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return nil, fmt.Errorf("mixpanel backend: job %s: %w", jobID, ce.ErrNotFound)
	}
	return st.job(jobID), nil
}

// recordError is one entry Errors yields, in the shape of a CE error page
// entry: the record's index in its chunk, the field and Mixpanel's message.
type recordError struct {
	Index      *int64 `json:"index,omitempty"` // nil when Mixpanel named no record`
	Field      string `json:"field,omitempty"`
	Message    string `json:"message"`
	InsertID   string `json:"$insert_id,omitempty"`
	DistinctID string `json:"$distinct_id,omitempty"`
	Source     string `json:"source"`
}

// Errors yields the chunk's refused records in index order: Mixpanel's
// refusals, the client's own ("local"), and the profile updates whose
// batch's answer was lost ("unknown").
func (x *Imports) Errors(ctx context.Context, jobID string, pageSize int) iter.Seq2[json.RawMessage, error] {
	return func(yield func(json.RawMessage, error) bool) {
		chunk, err := chunkOfJob(jobID)
		if err != nil {
			yield(nil, err)
			return
		}
		st, err := x.load(ctx, chunk)
		if err == nil && st == nil {
			err = fmt.Errorf("mixpanel backend: job %s: %w", jobID, ce.ErrNotFound)
		}
		if err != nil {
			yield(nil, err)
			return
		}
		var all []recordError
		for _, f := range st.Failures {
			src := "mixpanel"
			if f.Local {
				src = "client"
			}
			e := recordError{Field: f.Field, Message: f.Message, InsertID: f.InsertID, DistinctID: f.DistinctID, Source: src}
			if f.Index >= 0 {
				e.Index = &f.Index
			}
			all = append(all, e)
		}
		for _, u := range st.Unknown {
			for i := u.First; i <= u.Last; i++ {
				if !inSpans(st.Done, i) {
					all = append(all, recordError{Index: &i, Source: "unknown",
						Message: "profile update outcome unknown: its batch reached Mixpanel but the answer was lost; not sent again, because profile operations are not idempotent"})
				}
			}
		}
		at := func(e recordError) int64 {
			if e.Index == nil {
				return -1
			}
			return *e.Index
		}
		slices.SortStableFunc(all, func(a, b recordError) int { return cmp.Compare(at(a), at(b)) })
		for _, e := range all {
			raw, err := json.Marshal(e)
			if !yield(raw, err) || err != nil {
				return
			}
		}
	}
}
