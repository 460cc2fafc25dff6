package ce

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// DefaultMaxRecordSize is the default limit on the size of one record in a
// RecordReader.
const DefaultMaxRecordSize = 16 << 20

// maxGuardedRead bounds each read a RecordReader makes from its source, so
// that a decoder buffer never grows much past the record size limit.
const maxGuardedRead = 64 << 10

// RecordOption configures a RecordReader.
type RecordOption func(*RecordReader)

// WithMaxRecordSize sets the largest record, in bytes, a RecordReader
// accepts (default DefaultMaxRecordSize). A larger record makes Next return
// a *DecodeError wrapping ErrRecordTooLarge; memory stays within a small
// multiple of the limit. White space between JSON records counts toward the
// limit, since the decoder buffers it too. n <= 0 keeps the default.
func WithMaxRecordSize(n int64) RecordOption {
	return func(rr *RecordReader) {
		if n > 0 {
			rr.limit = n
		}
	}
}

// RecordReader reads the records of a bulk file one at a time, without
// buffering the file. Build it with NewRecordReader (JSON),
// ResumeRecordReader (JSON, from a Position) or NewCSVRecordReader (CSV).
// It is not safe for concurrent use.
//
// JSON records are framed without being decoded: one pass over each
// record's bytes checks it against the JSON grammar (as strictly as
// encoding/json: the same inputs are valid and records split at the same
// places) and finds where it ends.
type RecordReader struct {
	src   io.Reader
	limit int64
	next  func() ([]byte, error) // nil until the stream is sniffed

	fr    *framer // JSON
	array bool    // JSON array framing (else JSON lines)
	state int     // array: arrayBefore, arrayFirst, arrayMore, arrayClosed
	end   int64   // stream offset after the last record returned

	index  int64 // records returned so far
	prefix int64 // bytes skipped before the decoder's input (space, BOM)
	err    error // sticky
}

// Array framing states.
const (
	arrayBefore = iota // '[' not read yet
	arrayFirst         // after '[': a record or ']'
	arrayMore          // after a record: ',' or ']'
	arrayClosed        // after ']'
)

// NewRecordReader returns a reader of the JSON records in r. On the first
// call to Next it looks at the first byte that is not white space (after an
// optional UTF-8 byte order mark):
//
//   - '[': a JSON array, streamed element by element;
//   - '{': JSON lines or concatenated JSON objects;
//   - end of input: no records;
//   - anything else: a *DecodeError.
//
// Every record must be a JSON object.
func NewRecordReader(r io.Reader, opts ...RecordOption) *RecordReader {
	rr := &RecordReader{src: r, limit: DefaultMaxRecordSize}
	for _, opt := range opts {
		if opt != nil {
			opt(rr)
		}
	}
	return rr
}

// Position is where a JSON RecordReader stands after a record: the stream
// offset just after it, the records read so far, and the stream's framing.
// A reader resumed there (ResumeRecordReader) reads exactly the records
// that follow.
type Position struct {
	Offset  int64 `json:"offset"`
	Records int64 `json:"records"`
	Array   bool  `json:"array,omitempty"`
}

// Position returns the reader's position after the last record Next or
// NextView returned (Offset 0 before the first).
func (rr *RecordReader) Position() Position {
	return Position{Offset: rr.end, Records: rr.index, Array: rr.array}
}

// ResumeRecordReader returns a JSON record reader for a stream that starts
// at p.Offset of the stream p came from: r yields the bytes from that
// offset on. Record indexes and offsets (in DecodeError and Position)
// continue from p. A zero Position is the same as NewRecordReader.
func ResumeRecordReader(r io.Reader, p Position, opts ...RecordOption) *RecordReader {
	rr := NewRecordReader(r, opts...)
	if p.Offset == 0 && p.Records == 0 {
		return rr
	}
	rr.index, rr.end, rr.array = p.Records, p.Offset, p.Array
	rr.fr = newFramer(&stickyReader{r: r}, rr.limit)
	rr.fr.base = p.Offset
	if rr.array {
		rr.state = arrayMore
		if p.Records == 0 {
			rr.state = arrayFirst
		}
		rr.next = rr.arrayNext
	} else {
		rr.next = rr.linesNext
	}
	return rr
}

// Next returns the next record as raw JSON, owned by the caller. It returns
// io.EOF after the last record of a well-formed stream. A syntax error, a
// truncated stream (including an array without its closing bracket), a
// record that is not an object, a record over the size limit or an error
// from the source is returned as a *DecodeError carrying the record index
// and the byte offset where decoding of that record began. Errors are
// sticky: every later call returns the same error.
func (rr *RecordReader) Next() (json.RawMessage, error) {
	rec, err := rr.NextView()
	if err != nil {
		return nil, err
	}
	return bytes.Clone(rec), nil
}

// NextView is Next without the copy: the record is a view of the reader's
// buffer, valid only until the next call to Next or NextView. It is the
// fast path for callers that write each record on at once.
func (rr *RecordReader) NextView() ([]byte, error) {
	if rr.err != nil {
		return nil, rr.err
	}
	if rr.next == nil {
		if err := rr.sniff(); err != nil {
			rr.err = err
			return nil, err
		}
	}
	rec, err := rr.next()
	if err != nil {
		rr.err = err
		return nil, err
	}
	rr.index++
	if rr.fr != nil {
		rr.end = rr.fr.offset()
	}
	return rec, nil
}

// Count returns the number of records Next has returned.
func (rr *RecordReader) Count() int64 { return rr.index }

// fail builds the DecodeError for the current record; offset is absolute
// for JSON streams.
func (rr *RecordReader) fail(offset int64, err error) error {
	if errors.Is(err, errGuardTripped) {
		err = ErrRecordTooLarge
	}
	if rr.fr == nil {
		offset += rr.prefix
	}
	return &DecodeError{Index: rr.index, Offset: offset, Err: err}
}

// sniff picks the framing from the first significant byte.
func (rr *RecordReader) sniff() error {
	rr.fr = newFramer(&stickyReader{r: rr.src}, rr.limit)
	fr := rr.fr
	for fr.w-fr.r < 3 && fr.fill(fr.r) {
	}
	if fr.w >= 3 && bytes.Equal(fr.buf[:3], []byte("\xEF\xBB\xBF")) {
		fr.r = 3
	}
	c, ok := fr.peek()
	if !ok {
		if err := fr.sourceErr(); err != nil {
			return &DecodeError{Offset: fr.offset(), Err: err}
		}
		rr.next = func() ([]byte, error) { return nil, io.EOF }
		return nil
	}
	rr.prefix = fr.offset()
	switch c {
	case '[':
		rr.array = true
		rr.next = rr.arrayNext
		return nil
	case '{':
		rr.next = rr.linesNext
		return nil
	}
	return &DecodeError{Offset: fr.offset(), Err: fmt.Errorf("unexpected first byte %q: want '[' or '{'", c)}
}

// endOfStream is the error for a stream that ended where start was read:
// the source's failure, or io.ErrUnexpectedEOF wrapped in what.
func (rr *RecordReader) endOfStream(start int64, what string) error {
	if err := rr.fr.sourceErr(); err != nil {
		return rr.fail(start, err)
	}
	return rr.fail(start, fmt.Errorf("%s: %w", what, io.ErrUnexpectedEOF))
}

// arrayNext returns the next element of a JSON array.
func (rr *RecordReader) arrayNext() ([]byte, error) {
	fr := rr.fr
	if rr.state == arrayClosed {
		return nil, io.EOF
	}
	if rr.state == arrayBefore {
		fr.peek() // '[' (sniffed)
		fr.r++
		rr.state = arrayFirst
	}
	start := fr.offset()
	c, ok := fr.peek()
	if ok && rr.state == arrayFirst {
		start = fr.offset()
	}
	if !ok {
		return nil, rr.endOfStream(fr.offset(), "array not closed")
	}
	switch {
	case c == ']':
		fr.r++
		rr.state = arrayClosed
		if c, ok := fr.peek(); ok {
			return nil, rr.fail(fr.offset(), fmt.Errorf("unexpected %q after the array", c))
		}
		if err := fr.sourceErr(); err != nil {
			return nil, rr.fail(fr.offset(), err)
		}
		return nil, io.EOF
	case rr.state == arrayMore && c == ',':
		start = fr.offset()
		fr.r++
		if c, ok = fr.peek(); !ok {
			return nil, rr.endOfStream(start, "array cut after a comma")
		}
	case rr.state == arrayMore:
		return nil, rr.fail(fr.offset(), fmt.Errorf("invalid character %q after array element", c))
	}
	rec, err := rr.record(c)
	if err != nil {
		return nil, rr.fail(start, err)
	}
	rr.state = arrayMore
	return rec, nil
}

// linesNext returns the next of a sequence of JSON objects separated by
// white space.
func (rr *RecordReader) linesNext() ([]byte, error) {
	fr := rr.fr
	c, ok := fr.peek()
	if !ok {
		if err := fr.sourceErr(); err != nil {
			return nil, rr.fail(fr.offset(), err)
		}
		return nil, io.EOF
	}
	start := fr.offset()
	rec, err := rr.record(c)
	if err != nil {
		return nil, rr.fail(start, err)
	}
	return rec, nil
}

// record frames the object that starts with c, the next unread byte.
func (rr *RecordReader) record(c byte) ([]byte, error) {
	if c != '{' {
		if _, err := rr.fr.value(); err != nil && err != ErrRecordTooLarge {
			return nil, err
		}
		return nil, errors.New("record is not a JSON object")
	}
	return rr.fr.value()
}

// errGuardTripped is returned by guardReader when the decoder holds more
// unconsumed bytes than the record limit.
var errGuardTripped = errors.New("ce: record size limit reached")

// guardReader stops feeding a decoder once the bytes it has read but not
// yet consumed (the record being decoded) exceed limit.
//
// It also makes the source's errors sticky: json.Decoder does not remember
// a read error seen while peeking, and a source that reports an error once
// and then io.EOF must not turn into a clean end of stream.
type guardReader struct {
	r        io.Reader
	limit    int64
	read     int64
	consumed func() int64 // the decoder's input offset
	err      error
}

func (g *guardReader) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	if g.consumed != nil && g.read-g.consumed() > g.limit {
		g.err = errGuardTripped
		return 0, g.err
	}
	if len(p) > maxGuardedRead {
		p = p[:maxGuardedRead]
	}
	n, err := g.r.Read(p)
	g.read += int64(n)
	if err != nil {
		g.err = err
	}
	return n, err
}

// NewCSVRecordReader returns a reader of the rows of a CSV file with a
// header row (CE's text/csv download). Each row becomes a JSON object
// mapping the header names to the row's values, all strings, in header
// order. A row with the wrong number of fields, a duplicate header name or
// a row over the size limit is a *DecodeError. An empty file has no
// records.
func NewCSVRecordReader(r io.Reader, opts ...RecordOption) *RecordReader {
	rr := &RecordReader{src: r, limit: DefaultMaxRecordSize}
	for _, opt := range opts {
		if opt != nil {
			opt(rr)
		}
	}
	rr.next = rr.csvNext()
	return rr
}

func (rr *RecordReader) csvNext() func() ([]byte, error) {
	var (
		cr     *csv.Reader
		header []string
		buf    bytes.Buffer
	)
	return func() ([]byte, error) {
		if cr == nil {
			br := bufio.NewReader(&stickyReader{r: rr.src})
			if b, err := br.Peek(3); err == nil && bytes.Equal(b, []byte("\xEF\xBB\xBF")) {
				br.Discard(3)
				rr.prefix = 3
			}
			guard := &guardReader{r: br, limit: rr.limit}
			cr = csv.NewReader(guard)
			guard.consumed = cr.InputOffset
			cr.ReuseRecord = true
		}
		offset := cr.InputOffset()
		row, err := cr.Read()
		if err == io.EOF {
			return nil, io.EOF
		}
		if err != nil {
			return nil, rr.fail(offset, err)
		}
		if header == nil {
			header = make([]string, len(row))
			seen := make(map[string]bool, len(row))
			for i, h := range row {
				if seen[h] {
					return nil, rr.fail(offset, fmt.Errorf("duplicate CSV header %q", h))
				}
				seen[h] = true
				header[i] = h
			}
			cr.FieldsPerRecord = len(header)
			offset = cr.InputOffset()
			if row, err = cr.Read(); err == io.EOF {
				return nil, io.EOF
			} else if err != nil {
				return nil, rr.fail(offset, err)
			}
		}
		buf.Reset()
		buf.WriteByte('{')
		for i, v := range row {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeJSONString(&buf, header[i])
			buf.WriteByte(':')
			writeJSONString(&buf, v)
		}
		buf.WriteByte('}')
		if int64(buf.Len()) > rr.limit {
			return nil, rr.fail(offset, ErrRecordTooLarge)
		}
		return bytes.Clone(buf.Bytes()), nil
	}
}

// writeJSONString writes s as a JSON string, without HTML escaping. Invalid
// UTF-8 becomes U+FFFD, as with encoding/json.
func writeJSONString(buf *bytes.Buffer, s string) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)           // never fails for a string
	buf.Truncate(buf.Len() - 1) // drop Encode's newline
}

// stickyReader repeats the first error of r (io.EOF included) forever, so
// that no buffering layer can lose a read error and mistake a broken stream
// for a clean end.
type stickyReader struct {
	r   io.Reader
	err error
}

func (s *stickyReader) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.r.Read(p)
	if err != nil {
		s.err = err
	}
	return n, err
}
