package importer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"

	"github.com/cebulk/cebulk/internal/recordio"
	"github.com/cebulk/cebulk/internal/s3stream"
)

// span is the stretch of the file one chunk covers: its counts, the
// rejects part its rejected rows stream into, and the line index of the
// records its chunk sends.
type span struct {
	r        *runner
	ctx      context.Context
	n        int // the chunk number this span makes
	records  int64
	valid    int64
	rejected int64
	line     int
	part     *gzipPart // started at the first reject
	lineBuf  bytes.Buffer
	// index says whether the chunk's records get a line index (not in
	// dry runs: nothing is sent, so CE reports no errors).
	index    bool
	lines    *gzipPart // started at the first record sent
	linesEnc *lineIndexWriter
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
		s.part = startPart(s.ctx, s.r.im.store, s.r.im.cfg.Bucket, key, gzip.DefaultCompression)
	}
	b, err := encodeReject(&s.lineBuf, it, reason, format)
	if err != nil {
		return err
	}
	_, err = s.part.Write(b)
	return err
}

// send adds the source line of the chunk's next record to the chunk's
// line index.
func (s *span) send(line int) error {
	if !s.index {
		return nil
	}
	if s.lines == nil {
		// Differences of lines compress to almost nothing even at the
		// fastest level.
		s.lines = startPart(s.ctx, s.r.im.store, s.r.im.cfg.Bucket, lineIndexKey(s.r.rec.ID, s.n), gzip.BestSpeed)
		s.linesEnc = newLineIndexWriter(s.lines)
	}
	return s.linesEnc.add(line)
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

// finish completes the span's line index and rejects part, and returns
// the rejects part's key ("" when the span rejected nothing).
func (s *span) finish() (string, error) {
	s.finished = true
	if s.lines != nil {
		err := s.linesEnc.flush()
		if err != nil {
			s.lines.abort()
		} else {
			err = s.lines.close()
		}
		if err != nil {
			if s.part != nil {
				s.part.abort()
			}
			return "", err
		}
	}
	if s.part == nil {
		return "", nil
	}
	if err := s.part.close(); err != nil {
		return "", err
	}
	return s.part.key, nil
}

// abort drops the span's parts, unless the span was finished.
func (s *span) abort() {
	if s.finished {
		return
	}
	s.finished = true
	if s.part != nil {
		s.part.abort()
	}
	if s.lines != nil {
		s.lines.abort()
	}
}

var errPartAborted = errors.New("upload abandoned")

// gzipPart streams gzip data into one S3 object: the gzip writer feeds a
// pipe that a streaming multipart upload reads, so a part is never held in
// memory whatever its size. Rejects parts and line indexes are gzipParts.
type gzipPart struct {
	key  string
	pw   *io.PipeWriter
	bw   *bufio.Writer
	zw   *gzip.Writer
	done chan error
}

// startPart starts the upload of key. level is the gzip compression level.
func startPart(ctx context.Context, store objectStore, bucket, key string, level int) *gzipPart {
	pr, pw := io.Pipe()
	p := &gzipPart{key: key, pw: pw, bw: bufio.NewWriterSize(pw, 64<<10), done: make(chan error, 1)}
	p.zw, _ = gzip.NewWriterLevel(p.bw, level) // only an invalid level fails
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

// Write compresses b into the part.
func (p *gzipPart) Write(b []byte) (int, error) {
	n, err := p.zw.Write(b)
	if err != nil {
		return n, fmt.Errorf("write %s: %w", p.key, err)
	}
	return n, nil
}

func (p *gzipPart) close() error {
	err := p.zw.Close()
	if err == nil {
		err = p.bw.Flush()
	}
	if err != nil {
		p.pw.CloseWithError(err)
		<-p.done
		return fmt.Errorf("write %s: %w", p.key, err)
	}
	p.pw.Close()
	if err := <-p.done; err != nil {
		return err
	}
	return nil
}

func (p *gzipPart) abort() {
	p.pw.CloseWithError(errPartAborted)
	<-p.done
}
