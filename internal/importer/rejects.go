package importer

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/cebulk/cebulk/internal/recordio"
	"github.com/cebulk/cebulk/internal/s3stream"
)

// span is the stretch of the file one chunk covers: its counts, and the
// rejects part its rejected rows stream into.
type span struct {
	r        *runner
	ctx      context.Context
	n        int // the chunk number this span makes
	records  int64
	valid    int64
	rejected int64
	line     int
	part     *rejectsPart // started at the first reject
	lineBuf  bytes.Buffer
	finished bool
}

// rejectLine is one line of rejects.jsonl.gz.
type rejectLine struct {
	Line      int             `json:"line"`
	Reason    string          `json:"reason"`
	Record    json.RawMessage `json:"record"`
	Truncated bool            `json:"truncated,omitempty"`
}

// reject writes a rejected row to the span's rejects part.
func (s *span) reject(it recordio.Item, reason string, format recordio.Format) error {
	s.rejected++
	if s.part == nil {
		key := partKey(s.r.rec.ID, len(s.r.rec.Import.RejectParts)+1)
		s.part = startPart(s.ctx, s.r.im.store, s.r.im.cfg.Bucket, key)
	}
	b, err := encodeReject(&s.lineBuf, it, reason, format)
	if err != nil {
		return err
	}
	return s.part.write(b)
}

// encodeReject renders a reject as one JSON line. The record is the row's
// original JSON (compacted to one line) when it is JSON, else its text as
// a JSON string (a CSV row, or text that is not JSON). A row longer than
// recordio.MaxRawBytes is cut and marked truncated.
func encodeReject(buf *bytes.Buffer, it recordio.Item, reason string, format recordio.Format) ([]byte, error) {
	raw := it.Raw
	rl := rejectLine{Line: it.Line, Reason: reason, Truncated: len(raw) >= recordio.MaxRawBytes}
	buf.Reset()
	switch {
	case format != recordio.FormatCSV && !rl.Truncated && json.Valid(raw):
		if err := json.Compact(buf, raw); err != nil {
			return nil, err
		}
		rl.Record = bytes.Clone(buf.Bytes())
	case raw == nil && it.Record != nil:
		b, err := json.Marshal(it.Record)
		if err != nil {
			return nil, fmt.Errorf("encode rejected record: %v", err)
		}
		rl.Record = b
	default:
		b, err := json.Marshal(string(bytes.ToValidUTF8(raw, []byte("\uFFFD"))))
		if err != nil {
			return nil, fmt.Errorf("encode rejected row: %v", err)
		}
		rl.Record = b
	}
	b, err := json.Marshal(rl)
	if err != nil {
		return nil, fmt.Errorf("encode reject: %v", err)
	}
	return append(b, '\n'), nil
}

// finish completes the span's rejects part and returns its key ("" when
// the span rejected nothing).
func (s *span) finish() (string, error) {
	s.finished = true
	if s.part == nil {
		return "", nil
	}
	if err := s.part.close(); err != nil {
		return "", err
	}
	return s.part.key, nil
}

// abort drops the span's rejects part, unless the span was finished.
func (s *span) abort() {
	if s.finished || s.part == nil {
		return
	}
	s.finished = true
	s.part.abort()
}

var errPartAborted = errors.New("rejects part abandoned")

// rejectsPart streams gzip JSON lines into one S3 object: the gzip writer
// feeds a pipe that a streaming multipart upload reads, so rejects are
// never held in memory whatever their number.
type rejectsPart struct {
	key  string
	pw   *io.PipeWriter
	bw   *bufio.Writer
	zw   *gzip.Writer
	done chan error
}

func startPart(ctx context.Context, store objectStore, bucket, key string) *rejectsPart {
	pr, pw := io.Pipe()
	p := &rejectsPart{key: key, pw: pw, bw: bufio.NewWriterSize(pw, 64<<10), done: make(chan error, 1)}
	p.zw = gzip.NewWriter(p.bw)
	go func() {
		// Not the work context: a span being committed near the deadline
		// must still complete its part.
		_, err := store.Put(context.WithoutCancel(ctx), bucket, key, pr, s3stream.PutOptions{ContentType: "application/gzip"})
		if err != nil {
			pr.CloseWithError(err) // unblock the writer
		}
		p.done <- err
	}()
	return p
}

func (p *rejectsPart) write(b []byte) error {
	if _, err := p.zw.Write(b); err != nil {
		return fmt.Errorf("write rejects %s: %w", p.key, err)
	}
	return nil
}

func (p *rejectsPart) close() error {
	err := p.zw.Close()
	if err == nil {
		err = p.bw.Flush()
	}
	if err != nil {
		p.pw.CloseWithError(err)
		<-p.done
		return fmt.Errorf("write rejects %s: %w", p.key, err)
	}
	p.pw.Close()
	if err := <-p.done; err != nil {
		return err
	}
	return nil
}

func (p *rejectsPart) abort() {
	p.pw.CloseWithError(errPartAborted)
	<-p.done
}
