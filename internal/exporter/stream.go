package exporter

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/s3stream"
	"github.com/cebulk/cebulk/pkg/ce"
)

// Output format of a part.
const (
	partFormat      = "jsonl.gz"
	partContentType = "application/gzip"
	// gzipLevel trades CPU for size. CPU is what bounds a collect (a
	// 1024 MB function has about 0.6 vCPU and 15 minutes): on Mixpanel
	// events level 1 compresses about 5x where level 6 reaches 6.5x, with a
	// third of the deflate time, and the whole export runs about 1.5x
	// faster (make bench).
	gzipLevel = gzip.BestSpeed
	// encodeBuffer batches gzip's small writes into few pipe hand-offs.
	encodeBuffer = 256 << 10
)

var noCondition s3stream.Condition

// errUploadStopped wakes the encoder when the upload stopped reading.
var errUploadStopped = errors.New("upload stopped")

// export streams the CE job's download into the job's part and publishes
// the partition. Reading from CE is bound to workCtx (the deadline minus the
// safety margin); S3 calls use ctx, so that a multipart upload cut short by
// workCtx is still aborted, and never half-published.
//
// The pipeline is: CE download → record decoder → window filter → gzip →
// SHA-256 and byte count → io.Pipe → multipart upload. Memory is the
// uploader's parts (part size × concurrency) plus a few small buffers,
// whatever the download's size.
//
// A partition published before (a backfill of a done day) stays published
// while the download runs. Only once every record is in and checked, and
// before the new part becomes visible, is its _SUCCESS withdrawn, so that a
// reader trusting _SUCCESS never sees the old and the new part side by
// side; it is written back if the replacement fails before its manifest is
// written.
func (e *Exporter) export(workCtx, ctx context.Context, job *ledger.Job, st *ce.Job) (*Manifest, error) {
	t0 := time.Now()
	body, err := e.ce.Download(workCtx, job.CEJobID, job.Object)
	if err != nil {
		return nil, fmt.Errorf("download: %w", err)
	}
	defer body.Close()

	withdrawn := false // _SUCCESS existed and was deleted
	enc := &encoder{
		from: job.Window.From,
		to:   job.Window.To,
		all:  Snapshot(job.Object),
		want: st.RecordsCount - st.RecordsFailedCount,
		sum:  sha256.New(),
		beforeCommit: func() error {
			_, _, err := e.store.ReadSmall(ctx, e.cfg.Bucket, successKey(job))
			if errors.Is(err, s3stream.ErrNotFound) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("check _SUCCESS: %w", err)
			}
			if err := e.store.Delete(ctx, e.cfg.Bucket, successKey(job)); err != nil {
				return fmt.Errorf("withdraw _SUCCESS: %w", err)
			}
			withdrawn = true
			return nil
		},
	}
	restore := func() {
		if !withdrawn {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		if _, err := e.store.WriteSmall(rctx, e.cfg.Bucket, successKey(job), nil, "application/octet-stream", noCondition); err != nil {
			e.logJob(ctx, slog.LevelError, "restore the old partition's _SUCCESS", job, slog.String("err", err.Error()))
		}
	}

	pr, pw := io.Pipe()
	encoded := make(chan error, 1)
	go func() {
		err := enc.encode(body, pw)
		pw.CloseWithError(err) // nil: the upload sees io.EOF and completes
		encoded <- err
	}()
	key := partKey(job)
	_, putErr := e.store.Put(ctx, e.cfg.Bucket, key, pr, s3stream.PutOptions{ContentType: partContentType})
	pr.CloseWithError(errUploadStopped) // the encoder may be blocked writing
	body.Close()                        // or reading
	encErr := <-encoded
	switch {
	case encErr != nil && !errors.Is(encErr, errUploadStopped):
		restore()
		return nil, encErr // the cause; the upload failed because of it
	case putErr != nil:
		restore()
		return nil, putErr
	case encErr != nil:
		restore()
		return nil, encErr
	}
	e.logJob(ctx, slog.LevelInfo, "part uploaded", job,
		slog.String("key", key),
		slog.Int64("records", enc.records), slog.Int64("outOfWindow", enc.outOfWindow),
		slog.Int64("bytes", enc.bytes), slog.Int64("downloadedBytes", enc.downloaded),
		slog.Int64("durationMs", time.Since(t0).Milliseconds()))

	m := &Manifest{
		Object:          job.Object,
		Window:          ManifestWindow{From: job.Window.From.UTC(), To: job.Window.To.UTC()},
		Partition:       job.Window.Partition,
		CEJobID:         job.CEJobID,
		LedgerJobID:     job.ID,
		Part:            key,
		Records:         enc.records,
		OutOfWindow:     enc.outOfWindow,
		CERecordsCount:  st.RecordsCount,
		CERecordsFailed: st.RecordsFailedCount,
		Complete:        st.RecordsFailedCount == 0,
		Bytes:           enc.bytes,
		SHA256:          hex.EncodeToString(enc.sum.Sum(nil)),
		Format:          partFormat,
		CreatedAt:       e.now(),
		Version:         1,
		TimeBasis:       e.basisOf(job),
		Timezone:        e.zoneOf(job),
	}
	t1 := time.Now()
	if err := e.publish(ctx, job, m, restore); err != nil {
		return nil, err
	}
	e.logJob(ctx, slog.LevelInfo, "partition published", job,
		slog.String("key", manifestKey(job)), slog.Int64("records", m.Records), slog.Int64("bytes", m.Bytes),
		slog.Int64("durationMs", time.Since(t1).Milliseconds()))
	return m, nil
}

// encoder turns a CE download into a gzip JSON-lines part, keeping the
// records whose own time falls in [from, to) (every record when all).
type encoder struct {
	from, to time.Time
	all      bool
	want     int64 // records CE says it delivered; fewer decoded is a truncation

	// beforeCommit, when set, runs once every record is in and checked,
	// before the end of the output is signalled (so before the upload can
	// complete); its error fails the encoding.
	beforeCommit func() error

	records, outOfWindow int64 // records written, records outside the window
	bytes, downloaded    int64 // bytes written (compressed), bytes read
	sum                  hash.Hash
}

func (c *encoder) encode(src io.Reader, dst io.Writer) error {
	in := &countingReader{r: src}
	rr := ce.NewRecordReader(in)
	out := &countingWriter{w: dst, h: c.sum}
	bw := bufio.NewWriterSize(out, encodeBuffer)
	gz, err := gzip.NewWriterLevel(bw, gzipLevel)
	if err != nil {
		return err
	}
	var scratch bytes.Buffer
	for {
		rec, err := rr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("decode the CE download: %w", err)
		}
		if !c.all && !c.inWindow(rec) {
			c.outOfWindow++
			continue
		}
		if bytes.ContainsAny(rec, "\r\n") {
			// One record per line: drop the white space between tokens
			// (strings cannot hold raw line breaks).
			scratch.Reset()
			if err := json.Compact(&scratch, rec); err != nil {
				return fmt.Errorf("decode the CE download: record %d: %v", rr.Count()-1, err)
			}
			rec = scratch.Bytes()
		}
		if _, err := gz.Write(rec); err != nil {
			return err
		}
		if _, err := gz.Write(newline); err != nil {
			return err
		}
		c.records++
	}
	c.downloaded = in.n
	if decoded := c.records + c.outOfWindow; c.want > 0 && decoded < c.want {
		return fmt.Errorf("truncated download: %d records decoded, CE reported %d: %w", decoded, c.want, io.ErrUnexpectedEOF)
	}
	if err := gz.Close(); err != nil {
		return err
	}
	err = bw.Flush()
	c.bytes = out.n
	if err == nil && c.beforeCommit != nil {
		err = c.beforeCommit()
	}
	return err
}

var newline = []byte{'\n'}

func (c *encoder) inWindow(rec []byte) bool {
	t, ok := eventTime(rec)
	return ok && !t.Before(c.from) && t.Before(c.to)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// countingWriter writes to w and hashes and counts what w accepted.
type countingWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}

// eventTime reads an activity's own time, properties.time: Unix seconds,
// or milliseconds when it is 1e11 or more (as Mixpanel does), as a JSON
// number or a string holding one; an RFC 3339 string is accepted too. It
// scans the record without decoding it: the record is valid JSON (the
// record reader checked it).
func eventTime(rec []byte) (time.Time, bool) {
	props, ok := jsonField(rec, "properties")
	if !ok {
		return time.Time{}, false
	}
	v, ok := jsonField(props, "time")
	if !ok || len(v) == 0 {
		return time.Time{}, false
	}
	if v[0] == '"' {
		var s string
		if json.Unmarshal(v, &s) != nil {
			return time.Time{}, false
		}
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t, true
		}
		v = []byte(s)
	}
	if n, ok := parseInt(v); ok {
		if n >= 1e11 || n <= -1e11 {
			return time.UnixMilli(n), true
		}
		return time.Unix(n, 0), true
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil {
		return time.Time{}, false
	}
	if f >= 1e11 || f <= -1e11 {
		f /= 1000
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true
}

// parseInt parses a decimal integer of at most 18 digits.
func parseInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// jsonField returns the raw value of member key of the JSON object obj (the
// last one when the key repeats, as encoding/json decides). obj must be
// valid JSON; anything unexpected gives false.
func jsonField(obj []byte, key string) ([]byte, bool) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, false
	}
	i++
	var found []byte
	ok := false
	for {
		i = skipSpace(obj, i)
		if i >= len(obj) {
			return nil, false
		}
		switch obj[i] {
		case '}':
			return found, ok
		case ',':
			i++
			continue
		case '"':
		default:
			return nil, false
		}
		ks := i
		ke, escaped := scanString(obj, i)
		if ke < 0 {
			return nil, false
		}
		i = skipSpace(obj, ke)
		if i >= len(obj) || obj[i] != ':' {
			return nil, false
		}
		i = skipSpace(obj, i+1)
		vs := i
		ve := skipValue(obj, i)
		if ve < 0 {
			return nil, false
		}
		if keyIs(obj[ks:ke], escaped, key) {
			found, ok = obj[vs:ve], true
		}
		i = ve
	}
}

func keyIs(raw []byte, escaped bool, key string) bool {
	if !escaped {
		return string(raw[1:len(raw)-1]) == key
	}
	var s string
	return json.Unmarshal(raw, &s) == nil && s == key
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString returns the index after the string starting at b[i] (a quote)
// and whether it holds escapes, or -1.
func scanString(b []byte, i int) (int, bool) {
	escaped := false
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j + 1, escaped
		}
	}
	return -1, false
}

// skipValue returns the index after the value starting at b[i], or -1.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		j, _ := scanString(b, i)
		return j
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				e, _ := scanString(b, j)
				if e < 0 {
					return -1
				}
				j = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return j
		}
		j++
	}
	return j
}
