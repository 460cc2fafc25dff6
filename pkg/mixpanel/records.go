package mixpanel

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// DefaultMaxRecordSize is the default limit on one line of a RecordReader.
// Mixpanel refuses events over 1 MB, so exported events are smaller.
const DefaultMaxRecordSize = 4 << 20

// RecordReader reads the events of an export stream (JSON lines) one at a
// time, without buffering the stream. It is not safe for concurrent use.
type RecordReader struct {
	br     *bufio.Reader
	limit  int
	line   int64 // lines read so far
	offset int64 // bytes consumed so far
	count  int64
	buf    []byte
	err    error // sticky
}

// NewRecordReader returns a reader of the JSON lines in r. maxRecord bounds
// one line in bytes; 0 or less means DefaultMaxRecordSize.
func NewRecordReader(r io.Reader, maxRecord int) *RecordReader {
	if maxRecord <= 0 {
		maxRecord = DefaultMaxRecordSize
	}
	return &RecordReader{br: bufio.NewReaderSize(r, 64<<10), limit: maxRecord}
}

// Next returns the next event as raw JSON, owned by the caller. Blank lines
// are skipped and a final line without its newline counts. It returns
// io.EOF after the last event. A line that is not one JSON object, a line
// over the size limit or a read error (a truncated gzip stream gives
// io.ErrUnexpectedEOF) is a *DecodeError naming the line. Errors are
// sticky.
func (rr *RecordReader) Next() (json.RawMessage, error) {
	if rr.err != nil {
		return nil, rr.err
	}
	for {
		start := rr.offset
		line, err := rr.readLine()
		if err == io.EOF && len(line) == 0 {
			rr.err = io.EOF
			return nil, io.EOF
		}
		rr.line++
		if err != nil && err != io.EOF {
			rr.err = &DecodeError{Line: rr.line, Offset: start, Err: err}
			return nil, rr.err
		}
		rec := bytes.TrimSpace(line)
		if len(rec) == 0 {
			if err == io.EOF {
				rr.err = io.EOF
				return nil, io.EOF
			}
			continue
		}
		if derr := checkObject(rec); derr != nil {
			rr.err = &DecodeError{Line: rr.line, Offset: start, Err: derr}
			return nil, rr.err
		}
		rr.count++
		return bytes.Clone(rec), nil
	}
}

// Count returns the number of events Next has returned.
func (rr *RecordReader) Count() int64 { return rr.count }

// readLine returns the next line without its newline, reading at most the
// size limit; the returned slice is valid until the next call.
func (rr *RecordReader) readLine() ([]byte, error) {
	rr.buf = rr.buf[:0]
	for {
		chunk, err := rr.br.ReadSlice('\n')
		rr.offset += int64(len(chunk))
		if len(rr.buf)+len(chunk) > rr.limit+2 { // +2: the "\r\n" is not part of the record
			return nil, ErrRecordTooLarge
		}
		rr.buf = append(rr.buf, chunk...)
		switch {
		case err == nil:
			return rr.buf[:len(rr.buf)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return rr.buf, err
		}
	}
}

// errNotObject is the cause of a line that is not one JSON object.
var errNotObject = errors.New("line is not one JSON object")

// checkObject reports whether rec is exactly one valid JSON object.
func checkObject(rec []byte) error {
	if rec[0] != '{' || !json.Valid(rec) {
		return errNotObject
	}
	return nil
}
