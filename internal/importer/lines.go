package importer

import (
	"bufio"
	"compress/flate"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"

	"github.com/cebulk/cebulk/internal/s3stream"
)

// A chunk's line index maps the position of each record in the chunk's
// upload (0-based, the index CE's per-record errors carry) to the source
// line the record starts on. It is one S3 object per chunk,
// lineIndexKey(importID, n): gzip of the lines as unsigned varints, each
// the difference from the previous record's line (the first from 0).
// Lines never decrease along a file (two JSON array elements may start on
// the same line: a difference of 0), so the differences are small: about
// one byte per record before compression, a few bytes per thousand
// records after it for a file without gaps.

// lineIndexKey names the line index of chunk n of an import. A chunk read
// again (a retry, or a span re-read after a crash) writes the same bytes
// under the same key.
func lineIndexKey(importID string, n int) string {
	return fmt.Sprintf("state/imports/%s/chunk-%04d.lines.gz", importID, n)
}

// lineIndexWriter encodes a chunk's line index into w, batching the
// varints so that w sees few, larger writes.
type lineIndexWriter struct {
	w    io.Writer
	buf  []byte
	prev int
	n    int64
}

func newLineIndexWriter(w io.Writer) *lineIndexWriter {
	return &lineIndexWriter{w: w, buf: make([]byte, 0, 4<<10)}
}

// add appends the line of the next record of the chunk.
func (x *lineIndexWriter) add(line int) error {
	if line < x.prev {
		// recordio reads forward: a record never starts before the one
		// read before it.
		return fmt.Errorf("line index: record %d starts on line %d, before line %d", x.n, line, x.prev)
	}
	x.buf = binary.AppendUvarint(x.buf, uint64(line-x.prev))
	x.prev = line
	x.n++
	if len(x.buf) > cap(x.buf)-binary.MaxVarintLen64 {
		return x.flush()
	}
	return nil
}

func (x *lineIndexWriter) flush() error {
	if len(x.buf) == 0 {
		return nil
	}
	_, err := x.w.Write(x.buf)
	x.buf = x.buf[:0]
	return err
}

// lineIndexReader decodes a line index (already decompressed).
type lineIndexReader struct {
	r    io.ByteReader
	line int
}

// next returns the line of the next record, io.EOF after the last one.
func (x *lineIndexReader) next() (int, error) {
	d, err := binary.ReadUvarint(x.r)
	switch {
	case err == io.EOF:
		return 0, io.EOF
	case err != nil:
		return 0, errCorruptIndex{err}
	case d > math.MaxInt32 || x.line > math.MaxInt32-int(d):
		return 0, errCorruptIndex{fmt.Errorf("line past %d", math.MaxInt32)}
	}
	x.line += int(d)
	return x.line, nil
}

// errCorruptIndex is a line index that cannot be decoded. S3 objects are
// written whole or not at all, so only a bug gives one; finalize then
// omits the lines of that chunk instead of failing the report for ever.
type errCorruptIndex struct{ err error }

func (e errCorruptIndex) Error() string { return "corrupt line index: " + e.err.Error() }

// corrupt says whether a read error comes from the index's bytes (gzip
// or varint framing), as opposed to the transport reading them.
func corrupt(err error) bool {
	var ci errCorruptIndex
	var fe flate.CorruptInputError
	return errors.As(err, &ci) || errors.As(err, &fe) ||
		errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum)
}

// maxIndexInMemory bounds the records of a chunk whose line index
// finalize may hold whole (as []int32: 4 MB at the bound) when CE lists
// its errors out of index order. Larger chunks (ChunkRecords above the
// bound) get lines for the errors that come in order only.
const maxIndexInMemory = 1_000_000

// chunkLines looks up source lines in one chunk's line index for
// finalize. CE lists errors in index order, so the index is streamed
// alongside them: a lookup at or after the last one reads forward. A
// lookup before it (errors out of order) reads the whole index into
// memory once, when the chunk has at most limit records; otherwise that
// error gets no line. The object is opened at the first lookup only, so a
// chunk whose errors carry no index costs no read.
type chunkLines struct {
	open  func() (io.ReadCloser, error) // opens the (compressed) index; s3stream.ErrNotFound when missing
	limit int64                         // the most records to hold in memory
	// records is the chunk's record count, from its ledger record; 0 when
	// unknown (then only the limit bounds the in-memory copy).
	records int64

	rc     io.ReadCloser
	rd     *lineIndexReader
	next   int64 // the position of the next line rd yields
	line   int   // the line of position next-1
	eof    bool
	all    []int32 // the whole index, once a lookup went backwards
	gone   bool    // no index: missing or corrupt
	warned error   // why gone, for one log line
}

// lineOf returns the source line of record i of the chunk. ok is false
// when it is not known: no index, i past the chunk's end, or out of order
// in a chunk too large to hold. err is for failures worth retrying (S3).
func (c *chunkLines) lineOf(i int64) (line int, ok bool, err error) {
	switch {
	case c.gone || i < 0:
		return 0, false, nil
	case c.all != nil:
		if i < int64(len(c.all)) {
			return int(c.all[i]), true, nil
		}
		return 0, false, nil
	case c.rd != nil && i < c.next-1:
		return c.backwards(i)
	}
	if c.rd == nil {
		if err := c.start(); err != nil || c.gone {
			return 0, false, err
		}
	}
	if i == c.next-1 {
		return c.line, true, nil
	}
	for !c.eof && c.next <= i {
		l, err := c.rd.next()
		if err == io.EOF {
			c.eof = true
			break
		}
		if err != nil {
			return 0, false, c.failed(err)
		}
		c.line = l
		c.next++
	}
	if c.next-1 == i {
		return c.line, true, nil
	}
	return 0, false, nil // past the chunk's last record
}

// backwards serves a lookup before the stream's position from the whole
// index, read again into memory when the chunk is small enough.
func (c *chunkLines) backwards(i int64) (int, bool, error) {
	if c.records > c.limit {
		return 0, false, nil
	}
	c.close()
	if err := c.start(); err != nil || c.gone {
		return 0, false, err
	}
	all := make([]int32, 0, min(max(c.records, 0), c.limit))
	for {
		l, err := c.rd.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, false, c.failed(err)
		}
		if int64(len(all)) >= c.limit {
			// More records than the ledger said: hold none of them.
			c.close()
			c.gone, c.warned = true, fmt.Errorf("the line index has more than %d records", c.limit)
			return 0, false, nil
		}
		all = append(all, int32(l))
	}
	c.close()
	c.all = all
	return c.lineOf(i)
}

// start opens the index from its beginning.
func (c *chunkLines) start() error {
	rc, err := c.open()
	if errors.Is(err, s3stream.ErrNotFound) {
		c.gone, c.warned = true, err
		return nil
	}
	if err != nil {
		return err
	}
	zr, err := gzip.NewReader(rc)
	if err != nil {
		rc.Close()
		return c.failed(err)
	}
	c.rc = rc
	c.rd = &lineIndexReader{r: bufio.NewReaderSize(zr, 4<<10)}
	c.next, c.line, c.eof = 0, 0, false
	return nil
}

// failed handles a read error: a corrupt index is given up (no lines),
// anything else is returned.
func (c *chunkLines) failed(err error) error {
	c.close()
	if corrupt(err) {
		c.gone, c.warned = true, err
		return nil
	}
	return fmt.Errorf("read line index: %w", err)
}

func (c *chunkLines) close() {
	if c.rc != nil {
		c.rc.Close()
	}
	c.rc, c.rd = nil, nil
}

// ceErrorIndex returns the record index a CE error element names: the
// 0-based position of the failed record in the uploaded file, as a
// non-negative integer in an object's "index" field (the emulator's) or,
// failing that, its "recordIndex" field (the same meaning under the name
// some bulk APIs use). String elements (the SW typing) and objects without
// either field have none. A "row" field is deliberately not read: whether
// a row counts from 0 or 1, and whether it counts a CSV header, is
// unknown, and a line off by one would send a user to the wrong record,
// which is worse than no line.
func ceErrorIndex(raw json.RawMessage) (int64, bool) {
	for _, b := range raw {
		if b == ' ' || b == '\t' || b == '\r' || b == '\n' {
			continue
		}
		if b != '{' {
			return 0, false
		}
		break
	}
	var v struct {
		Index       json.RawMessage `json:"index"`
		RecordIndex json.RawMessage `json:"recordIndex"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return 0, false
	}
	for _, f := range []json.RawMessage{v.Index, v.RecordIndex} {
		if i, ok := jsonIndex(f); ok {
			return i, true
		}
	}
	return 0, false
}

// jsonIndex reads a JSON number that is a non-negative integer (3, or
// 3.0 as some serialisers write it). Strings, fractions and null are not
// indexes.
func jsonIndex(raw json.RawMessage) (int64, bool) {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return 0, false
	}
	if i, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return i, i >= 0
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f < 0 || f != math.Trunc(f) || f > 1<<53 {
		return 0, false
	}
	return int64(f), true
}

// ceErrorCounts counts the lines of ce-errors.jsonl.
type ceErrorCounts struct {
	total    int64
	withLine int64
}

// openLineIndex returns the opener of chunk n's line index, for
// chunkLines.
func (im *Importer) openLineIndex(ctx context.Context, importID string, n int) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		rc, _, err := im.store.Open(ctx, im.cfg.Bucket, lineIndexKey(importID, n))
		return rc, err
	}
}
