package mixpanel

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// Mixpanel's per-request limits for /import and /engage.
const (
	// MaxBatchRecords is the most events or profile updates in one request.
	MaxBatchRecords = 2000
	// MaxBatchBytes is the most uncompressed bytes in one request: the
	// 2 MiB of the limit Mixpanel's OpenAPI file names in its 413 example
	// (its guide allows 10 MB; the smaller one is safe with both).
	MaxBatchBytes = 2 << 20
)

// Record is one event or profile update, with the caller's position for it
// (a line number, an index: anything that lets the caller find the record
// again). Data must be one JSON object; the client copies it while
// building a batch and keeps no reference to it.
type Record struct {
	Pos  int64
	Data json.RawMessage
}

// RecordError is one record that Mixpanel refused, or that the client
// refused before sending (Local).
type RecordError struct {
	Pos        int64  // the caller's position of the record; -1 when Mixpanel named no valid index
	Index      int    // the record's index in its batch as sent (Mixpanel's "index"), -1 for a local refusal
	InsertID   string // the "insert_id"/"$insert_id" Mixpanel named (events)
	DistinctID string // the "$distinct_id" Mixpanel named (profiles)
	Field      string // the field Mixpanel named, for example "properties.time"
	Message    string // Mixpanel's message, or the client's reason
	Local      bool   // refused by the client: not valid JSON, too large, wrong $token
}

// BatchResult is the outcome of one batch that Mixpanel answered.
type BatchResult struct {
	First, Last int64         // Pos of the batch's first and last record
	Records     int           // records in the batch, local refusals included
	Sent        int           // records sent to Mixpanel
	Imported    int64         // records Mixpanel accepted
	Failed      []RecordError // records refused, in the order Mixpanel listed them (local refusals first)
}

// BatchError reports a batch that failed as a whole: no answer, or an
// answer that was not a per-record one (401, 413, 429 after the retries,
// a 400 without failed_records). Its records were not confirmed. For a
// profile batch it may wrap an *UnknownOutcomeError: the batch may have
// been applied.
type BatchError struct {
	First, Last int64 // Pos of the batch's first and last record
	Records     int   // records in the batch
	Err         error // the cause: an *APIError, *UnknownOutcomeError, transport or context error
}

// Error returns a message such as
// "mixpanel: batch of 2000 records (positions 1 to 2000): mixpanel: POST import: 413 …".
func (e *BatchError) Error() string {
	return fmt.Sprintf("mixpanel: batch of %d records (positions %d to %d): %s", e.Records, e.First, e.Last, strings.TrimPrefix(fmt.Sprint(e.Err), "mixpanel: "))
}

// Unwrap returns the cause.
func (e *BatchError) Unwrap() error { return e.Err }

// Summary totals the batches of an Import or UpdateProfiles call that
// Mixpanel answered.
type Summary struct {
	Batches  int           // batches answered
	Records  int64         // records in those batches
	Imported int64         // records Mixpanel accepted
	Failures []RecordError // every refused record, batch by batch in the order batches were answered
}

func (s *Summary) add(r *BatchResult) {
	s.Batches++
	s.Records += int64(r.Records)
	s.Imported += r.Imported
	s.Failures = append(s.Failures, r.Failed...)
}

// IngestOptions tunes Import and UpdateProfiles.
type IngestOptions struct {
	// OnBatch, when set, is called once for every answered batch, one call
	// at a time, in the order the answers arrive (not necessarily the order
	// of the records, since several batches are in flight). An error stops
	// the call: no new batch is started and the error is returned.
	OnBatch func(*BatchResult) error
	// MaxRecords and MaxBytes bound a batch below Mixpanel's limits
	// (MaxBatchRecords, MaxBatchBytes); zero or more than the limit means
	// the limit.
	MaxRecords, MaxBytes int
}

func (o IngestOptions) limits() (records, bytes int) {
	records, bytes = MaxBatchRecords, MaxBatchBytes
	if o.MaxRecords > 0 && o.MaxRecords < records {
		records = o.MaxRecords
	}
	if o.MaxBytes > 0 && o.MaxBytes < bytes {
		bytes = o.MaxBytes
	}
	return records, bytes
}

// endpoint describes /import or /engage.
type endpoint struct {
	path  string
	query url.Values
	gzip  bool
	mode  retryMode
	// prepare checks a record and returns what to write: head then tail
	// (the record, possibly with "$token" spliced in), or a reason to
	// refuse it locally.
	prepare func(rec []byte) (head, tail []byte, refusal string)
}

func (c *Client) importEndpoint() *endpoint {
	return &endpoint{
		path:  importPath,
		query: url.Values{"strict": {"1"}},
		gzip:  true,
		mode:  resend,
		prepare: func(rec []byte) ([]byte, []byte, string) {
			if len(rec) == 0 || rec[0] != '{' || !json.Valid(rec) {
				return nil, nil, "not a JSON object"
			}
			return nil, rec, ""
		},
	}
}

func (c *Client) engageEndpoint() (*endpoint, error) {
	token := c.secrets.token
	if token == "" {
		return nil, errors.New("mixpanel: profile updates need Credentials.ProjectToken")
	}
	quoted, _ := json.Marshal(token)
	withComma := []byte(`{"$token":` + string(quoted) + `,`)
	alone := []byte(`{"$token":` + string(quoted))
	return &endpoint{
		path:  engagePath,
		query: url.Values{"strict": {"1"}, "verbose": {"1"}, "ip": {"0"}},
		mode:  unsentOnly,
		prepare: func(rec []byte) ([]byte, []byte, string) {
			var probe struct {
				Token *string `json:"$token"`
			}
			if len(rec) == 0 || rec[0] != '{' || json.Unmarshal(rec, &probe) != nil {
				return nil, nil, "not a JSON object"
			}
			switch {
			case probe.Token == nil:
				if rest := bytes.TrimLeft(rec[1:], " \t\r\n"); len(rest) > 0 && rest[0] == '}' {
					return alone, rest, ""
				}
				return withComma, rec[1:], ""
			case *probe.Token != token:
				return nil, nil, "$token is not the project token of the client"
			}
			return nil, rec, ""
		},
	}, nil
}

// batch is a request body being built, with the positions of its records.
type batch struct {
	pos         []int64 // positions of the records sent, by index in the body
	local       []RecordError
	first, last int64
	records     int
	raw         int // uncompressed body bytes so far, "[" included
	buf         bytes.Buffer
	zw          *gzip.Writer // nil for an uncompressed body
	w           io.Writer
}

var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	return zw
}}

func newBatch(compress bool) *batch {
	b := &batch{raw: 1}
	b.w = &b.buf
	if compress {
		b.zw = gzipWriters.Get().(*gzip.Writer)
		b.zw.Reset(&b.buf)
		b.w = b.zw
	}
	b.w.Write([]byte{'['})
	return b
}

// note records that the record at pos belongs to the batch.
func (b *batch) note(pos int64) {
	if b.records == 0 {
		b.first = pos
	}
	b.last = pos
	b.records++
}

// fits reports whether a record of n bytes fits: the comma before it and
// the closing "]" included.
func (b *batch) fits(n, maxRecords, maxBytes int) bool {
	return len(b.pos) < maxRecords && b.raw+1+n+1 <= maxBytes
}

func (b *batch) add(pos int64, head, tail []byte) {
	if len(b.pos) > 0 {
		b.w.Write([]byte{','})
		b.raw++
	}
	b.w.Write(head)
	b.w.Write(tail)
	b.raw += len(head) + len(tail)
	b.pos = append(b.pos, pos)
}

// body closes the JSON array and returns the request body.
func (b *batch) body() []byte {
	b.w.Write([]byte{']'})
	b.raw++
	if b.zw != nil {
		b.zw.Close()
		gzipWriters.Put(b.zw)
		b.zw = nil
	}
	return b.buf.Bytes()
}

// batcher cuts records into batches.
type batcher struct {
	ep                   *endpoint
	maxRecords, maxBytes int
	cur                  *batch
}

// push adds one record and returns the batch it completed, if any.
func (bt *batcher) push(r Record) (full *batch) {
	if bt.cur == nil {
		bt.cur = newBatch(bt.ep.gzip)
	}
	head, tail, refusal := bt.ep.prepare(bytes.TrimSpace(r.Data))
	n := len(head) + len(tail)
	if refusal == "" && n+2 > bt.maxBytes {
		refusal = fmt.Sprintf("record of %d bytes does not fit in a batch of %d bytes", n, bt.maxBytes)
	}
	if refusal == "" && !bt.cur.fits(n, bt.maxRecords, bt.maxBytes) {
		full, bt.cur = bt.cur, newBatch(bt.ep.gzip)
	}
	bt.cur.note(r.Pos)
	if refusal != "" {
		bt.cur.local = append(bt.cur.local, RecordError{Pos: r.Pos, Index: -1, Message: refusal, Local: true})
		return full
	}
	bt.cur.add(r.Pos, head, tail)
	return full
}

// flush returns the last batch, if it holds any record.
func (bt *batcher) flush() *batch {
	b := bt.cur
	bt.cur = nil
	if b == nil || b.records == 0 {
		return nil
	}
	return b
}

// Import sends events to /import in strict mode, in batches of at most
// MaxBatchRecords events and MaxBatchBytes uncompressed bytes, gzipped,
// with up to WithConcurrency batches in flight. It returns when records
// is exhausted and every batch is answered, or after the first batch that
// fails as a whole (then no new batch is started, the batches in flight
// finish, and the error joins every *BatchError).
//
// Mixpanel's 400 answer is a partial success: the valid events are
// ingested, and each refused one comes back in Summary.Failures (and in
// OnBatch's result) with the caller's Pos. Events that are not JSON objects
// or do not fit in a batch are refused locally, never sent. Batches are
// retried on 429, 502, 503, 504 and transport errors: Mixpanel dedupes
// events on (event, time, distinct_id, $insert_id), so every event should
// carry a $insert_id. A 401 (ErrUnauthorized) or 413 (ErrTooLarge) is not
// retried.
func (c *Client) Import(ctx context.Context, records iter.Seq2[Record, error], opts IngestOptions) (*Summary, error) {
	return c.ingest(ctx, c.importEndpoint(), records, opts)
}

// ImportBatch sends one batch of events to /import (strict mode, gzipped)
// and returns Mixpanel's answer per record. The records must fit in one
// batch (at most MaxBatchRecords events and MaxBatchBytes bytes); invalid
// ones are refused locally. Errors are as for Import, without the
// *BatchError wrapper.
func (c *Client) ImportBatch(ctx context.Context, records []Record) (*BatchResult, error) {
	return c.sendOne(ctx, c.importEndpoint(), records)
}

// UpdateProfiles sends profile updates to /engage with strict=1, verbose=1
// and ip=0, in batches of at most MaxBatchRecords updates, uncompressed
// (the endpoint takes no gzip), with up to WithConcurrency batches in
// flight. Each update is one JSON object such as
// {"$distinct_id":"13793","$set":{"plan":"pro"}}; the client adds the
// project's "$token" when it is missing and refuses an update whose
// "$token" is another one.
//
// Profile updates such as $add are not idempotent, so a batch is sent
// again only when it provably did not reach Mixpanel (the connection
// could not be established) or Mixpanel refused it (429,
// 503). When the answer is lost after the body went out, or a gateway
// answers 500, 502 or 504, the batch fails with a *BatchError wrapping an
// *UnknownOutcomeError and is not resent. A 200 answer of "0", or a verbose
// answer with status 0, refuses every update of the batch. Results and
// errors are otherwise as for Import.
func (c *Client) UpdateProfiles(ctx context.Context, records iter.Seq2[Record, error], opts IngestOptions) (*Summary, error) {
	ep, err := c.engageEndpoint()
	if err != nil {
		return nil, err
	}
	return c.ingest(ctx, ep, records, opts)
}

// UpdateProfileBatch sends one batch of profile updates to /engage, as
// UpdateProfiles does, and returns Mixpanel's answer per record.
func (c *Client) UpdateProfileBatch(ctx context.Context, records []Record) (*BatchResult, error) {
	ep, err := c.engageEndpoint()
	if err != nil {
		return nil, err
	}
	return c.sendOne(ctx, ep, records)
}

func (c *Client) sendOne(ctx context.Context, ep *endpoint, records []Record) (*BatchResult, error) {
	bt := &batcher{ep: ep, maxRecords: MaxBatchRecords, maxBytes: MaxBatchBytes}
	for _, r := range records {
		if bt.push(r) != nil {
			return nil, fmt.Errorf("mixpanel: %d records do not fit in one batch of %d records and %d bytes", len(records), MaxBatchRecords, MaxBatchBytes)
		}
	}
	b := bt.flush()
	if b == nil {
		return &BatchResult{}, nil
	}
	return c.send(ctx, ep, b)
}

// ingest runs the batches of records through c.concurrency senders.
func (c *Client) ingest(ctx context.Context, ep *endpoint, records iter.Seq2[Record, error], opts IngestOptions) (*Summary, error) {
	maxRecords, maxBytes := opts.limits()
	var (
		mu   sync.Mutex
		sum  = &Summary{}
		errs []error
		wg   sync.WaitGroup
		work = make(chan *batch)
	)
	// stop ends the production of batches; batches in flight go on with
	// ctx, so that no answer is lost by our own doing.
	stop, cancelStop := context.WithCancel(ctx)
	defer cancelStop()
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		cancelStop()
	}
	for range c.concurrency {
		wg.Go(func() {
			for b := range work {
				res, err := c.send(ctx, ep, b)
				if err != nil {
					fail(&BatchError{First: b.first, Last: b.last, Records: b.records, Err: err})
					continue
				}
				mu.Lock()
				sum.add(res)
				var cbErr error
				if opts.OnBatch != nil {
					cbErr = opts.OnBatch(res)
				}
				mu.Unlock()
				if cbErr != nil {
					fail(cbErr)
				}
			}
		})
	}
	hand := func(b *batch) bool {
		if b == nil {
			return true
		}
		select {
		case work <- b:
			return true
		case <-stop.Done():
			return false
		}
	}
	bt := &batcher{ep: ep, maxRecords: maxRecords, maxBytes: maxBytes}
	for r, err := range records {
		if err != nil {
			fail(fmt.Errorf("mixpanel: read records: %w", err))
			break
		}
		if stop.Err() != nil || !hand(bt.push(r)) {
			break
		}
	}
	if stop.Err() == nil {
		hand(bt.flush())
	}
	close(work)
	wg.Wait()
	if len(errs) == 0 && ctx.Err() != nil {
		errs = append(errs, fmt.Errorf("mixpanel: POST %s: %w", ep.path, ctx.Err()))
	}
	return sum, errors.Join(errs...)
}

// send posts one batch and maps Mixpanel's answer back to the records.
func (c *Client) send(ctx context.Context, ep *endpoint, b *batch) (*BatchResult, error) {
	res := &BatchResult{First: b.first, Last: b.last, Records: b.records, Sent: len(b.pos)}
	res.Failed = append(res.Failed, b.local...)
	body := b.body()
	if len(b.pos) == 0 {
		return res, nil
	}
	req, err := c.newRequest(ctx, http.MethodPost, c.ingestion, ep.path, cloneValues(ep.query), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if ep.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := c.bareDo(req, ep.mode, true)
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJSONResponse))
	drainAndClose(resp.Body)
	var ans *IngestAnswer
	if err == nil {
		ans, err = DecodeIngestAnswer(data)
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		err = fmt.Errorf("mixpanel: POST %s: read answer (status %d): %w", ep.path, resp.StatusCode, err)
		if ep.mode == unsentOnly {
			return nil, &UnknownOutcomeError{Err: err}
		}
		return nil, err
	}
	if resp.StatusCode == http.StatusBadRequest && len(ans.FailedRecords) == 0 {
		return nil, &APIError{
			StatusCode: resp.StatusCode, Method: http.MethodPost, Path: ep.path,
			Message: c.redact(ans.Error), Status: c.redact(ans.Status),
			Body: []byte(c.redact(string(data[:min(len(data), maxErrorBody)]))),
		}
	}
	c.mapAnswer(res, ans, b.pos)
	return res, nil
}

// mapAnswer fills res from the answer: per-record failures with the
// caller's positions, or the whole batch refused by a "0" answer.
func (c *Client) mapAnswer(res *BatchResult, ans *IngestAnswer, pos []int64) {
	sent := int64(len(pos))
	if ans.success() {
		res.Imported = sent
		if ans.Imported >= 0 {
			res.Imported = min(ans.Imported, sent)
		}
		return
	}
	if len(ans.FailedRecords) == 0 {
		msg := c.redact(ans.Error)
		if msg == "" {
			msg = "Mixpanel accepted none of the batch (answer " + c.redact(ans.Status) + ")"
		}
		for i, p := range pos {
			res.Failed = append(res.Failed, RecordError{Pos: p, Index: i, Message: msg})
		}
		return
	}
	refused := make(map[int]bool, len(ans.FailedRecords))
	for _, f := range ans.FailedRecords {
		e := RecordError{
			Pos: -1, Index: f.Index,
			InsertID: c.redact(f.InsertID), DistinctID: c.redact(f.DistinctID),
			Field: c.redact(f.Field), Message: c.redact(f.Message),
		}
		if f.Index >= 0 && f.Index < len(pos) {
			e.Pos = pos[f.Index]
			refused[f.Index] = true
		} else {
			e.Index = -1
		}
		res.Failed = append(res.Failed, e)
	}
	res.Imported = sent - int64(len(refused))
	if ans.Imported >= 0 {
		res.Imported = min(ans.Imported, sent)
	}
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
