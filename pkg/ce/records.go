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
// buffering the file. Build it with NewRecordReader (JSON) or
// NewCSVRecordReader (CSV). It is not safe for concurrent use.
type RecordReader struct {
	src   io.Reader
	limit int64
	next  func() (json.RawMessage, error) // nil until the stream is sniffed
	guard *guardReader

	index  int64 // records returned so far
	prefix int64 // bytes skipped before the decoder's input (space, BOM)
	err    error // sticky
}

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

// Next returns the next record as raw JSON, owned by the caller. It returns
// io.EOF after the last record of a well-formed stream. A syntax error, a
// truncated stream (including an array without its closing bracket), a
// record that is not an object, a record over the size limit or an error
// from the source is returned as a *DecodeError carrying the record index
// and the byte offset where decoding of that record began. Errors are
// sticky: every later call returns the same error.
func (rr *RecordReader) Next() (json.RawMessage, error) {
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
	return rec, nil
}

// Count returns the number of records Next has returned.
func (rr *RecordReader) Count() int64 { return rr.index }

// fail builds the DecodeError for the current record.
func (rr *RecordReader) fail(offset int64, err error) error {
	if errors.Is(err, errGuardTripped) {
		err = ErrRecordTooLarge
	}
	return &DecodeError{Index: rr.index, Offset: rr.prefix + offset, Err: err}
}

// sniff picks the decoder from the first significant byte.
func (rr *RecordReader) sniff() error {
	br := bufio.NewReader(&stickyReader{r: rr.src})
	var skipped int64
	if b, err := br.Peek(3); err == nil && bytes.Equal(b, []byte("\xEF\xBB\xBF")) {
		br.Discard(3)
		skipped = 3
	}
	for {
		c, err := br.ReadByte()
		if err == io.EOF {
			rr.next = func() (json.RawMessage, error) { return nil, io.EOF }
			return nil
		}
		if err != nil {
			return &DecodeError{Offset: skipped, Err: err}
		}
		if isJSONSpace(c) {
			skipped++
			continue
		}
		_ = br.UnreadByte()
		rr.prefix = skipped
		switch c {
		case '[':
			rr.guard = &guardReader{r: br, limit: rr.limit}
			dec := json.NewDecoder(rr.guard)
			rr.guard.consumed = dec.InputOffset
			rr.next = rr.arrayNext(dec)
			return nil
		case '{':
			rr.guard = &guardReader{r: br, limit: rr.limit}
			dec := json.NewDecoder(rr.guard)
			rr.guard.consumed = dec.InputOffset
			rr.next = rr.linesNext(dec)
			return nil
		}
		return &DecodeError{Offset: skipped, Err: fmt.Errorf("unexpected first byte %q: want '[' or '{'", c)}
	}
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// arrayNext streams the elements of a JSON array.
func (rr *RecordReader) arrayNext(dec *json.Decoder) func() (json.RawMessage, error) {
	opened, closed := false, false
	return func() (json.RawMessage, error) {
		if !opened {
			if _, err := dec.Token(); err != nil { // '['
				return nil, rr.fail(dec.InputOffset(), err)
			}
			opened = true
		}
		if closed {
			return nil, io.EOF
		}
		if !dec.More() {
			// ']' or the end of a truncated stream.
			offset := dec.InputOffset()
			tok, err := dec.Token()
			if err == io.EOF {
				err = fmt.Errorf("array not closed: %w", io.ErrUnexpectedEOF)
			}
			if err != nil {
				return nil, rr.fail(offset, err)
			}
			if d, ok := tok.(json.Delim); !ok || d != ']' {
				return nil, rr.fail(offset, fmt.Errorf("unexpected %v in array", tok))
			}
			closed = true
			if err := expectEnd(dec); err != nil {
				return nil, rr.fail(dec.InputOffset(), err)
			}
			return nil, io.EOF
		}
		return rr.decodeObject(dec)
	}
}

// linesNext decodes a sequence of JSON objects separated by white space.
func (rr *RecordReader) linesNext(dec *json.Decoder) func() (json.RawMessage, error) {
	return func() (json.RawMessage, error) {
		if !dec.More() {
			// More is false at the end of input, and also on a stray ']'
			// or '}' or on a read error: Decode tells them apart.
			offset := dec.InputOffset()
			var raw json.RawMessage
			err := dec.Decode(&raw)
			if err == io.EOF {
				return nil, io.EOF
			}
			if err == nil {
				err = errors.New("unexpected value")
			}
			return nil, rr.fail(offset, err)
		}
		return rr.decodeObject(dec)
	}
}

// decodeObject decodes one value and checks that it is an object.
func (rr *RecordReader) decodeObject(dec *json.Decoder) (json.RawMessage, error) {
	offset := dec.InputOffset()
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, rr.fail(offset, err)
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, rr.fail(offset, errors.New("record is not a JSON object"))
	}
	if int64(len(raw)) > rr.limit {
		return nil, rr.fail(offset, ErrRecordTooLarge)
	}
	return raw, nil
}

// expectEnd checks that nothing but white space follows a closed array.
func expectEnd(dec *json.Decoder) error {
	tok, err := dec.Token()
	switch {
	case err == io.EOF:
		return nil
	case err != nil:
		return err
	}
	return fmt.Errorf("unexpected %v after the array", tok)
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

func (rr *RecordReader) csvNext() func() (json.RawMessage, error) {
	var (
		cr     *csv.Reader
		header []string
		buf    bytes.Buffer
	)
	return func() (json.RawMessage, error) {
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
