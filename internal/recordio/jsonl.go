package recordio

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// jsonLinesDecoder reads one JSON object per line. Blank lines are skipped.
type jsonLinesDecoder struct {
	br      *bufio.Reader
	maxLine int
	line    int    // lines read so far
	off     int64  // bytes read so far
	buf     []byte // a line that did not fit the bufio buffer, at most maxLine bytes
	obj     objectDecoder
}

func newJSONLinesDecoder(br *bufio.Reader, opts Options) *jsonLinesDecoder {
	return &jsonLinesDecoder{br: br, maxLine: opts.MaxLineBytes}
}

func (d *jsonLinesDecoder) next() (Item, error) {
	for {
		text, n, err := d.readLine()
		if err == io.EOF {
			return Item{}, io.EOF
		}
		if err != nil {
			return Item{}, fileErr(d.line+1, err)
		}
		d.line++
		d.off += int64(n)
		if n > d.maxLine {
			return rowErr(d.line, text, "the line is %d bytes long, over the %d-byte limit", n, d.maxLine), nil
		}
		text = trimSpace(text)
		if len(text) == 0 {
			continue
		}
		rec, reason := d.obj.decode(text)
		if reason != "" {
			return rowErr(d.line, text, "%s", reason), nil
		}
		return Item{Line: d.line, Raw: capRaw(text), Record: rec}, nil
	}
}

func (d *jsonLinesDecoder) position() (int64, int, bool) { return d.off, d.line, false }

// readLine returns the next line (with its line break), at most maxLine
// bytes of it, and its full length n; the rest of a longer line is read
// and dropped. It returns io.EOF only when no bytes are left.
func (d *jsonLinesDecoder) readLine() (line []byte, n int, err error) {
	chunk, err := d.br.ReadSlice('\n')
	n = len(chunk)
	if err == nil && n <= d.maxLine {
		return chunk, n, nil // the common case: no copy
	}
	d.buf = append(d.buf[:0], chunk[:min(n, d.maxLine)]...)
	for err == bufio.ErrBufferFull {
		chunk, err = d.br.ReadSlice('\n')
		n += len(chunk)
		if room := d.maxLine - len(d.buf); room > 0 {
			d.buf = append(d.buf, chunk[:min(room, len(chunk))]...)
		}
	}
	switch {
	case err == io.EOF && n == 0:
		return nil, 0, io.EOF
	case err == io.EOF:
		return d.buf, n, nil // a last line without a line break
	}
	return d.buf, n, err
}

// objectDecoder decodes one JSON object at a time, numbers as
// json.Number. It reuses one json.Decoder (and its buffer) across records
// as long as they decode cleanly, which halves the allocations.
type objectDecoder struct {
	feed feedReader
	dec  *json.Decoder
}

// feedReader hands the json.Decoder one record, then io.EOF.
type feedReader struct{ b []byte }

func (f *feedReader) Read(p []byte) (int, error) {
	if len(f.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, f.b)
	f.b = f.b[n:]
	return n, nil
}

// decode decodes b, which holds one JSON object and no surrounding blank
// space. On failure it returns the reason, for people.
func (o *objectDecoder) decode(b []byte) (map[string]any, string) {
	if b[0] != '{' {
		return nil, "expected a JSON object, found " + describeJSON(b)
	}
	if !utf8.Valid(b) {
		i := invalidUTF8(b)
		return nil, fmt.Sprintf("the text is not valid UTF-8 (byte 0x%02x at byte %d)", b[i], i+1)
	}
	if o.dec == nil {
		o.dec = json.NewDecoder(&o.feed)
		o.dec.UseNumber()
	}
	o.feed.b = b
	start := o.dec.InputOffset()
	var rec map[string]any
	if err := o.dec.Decode(&rec); err != nil {
		o.dec = nil // its state is spoilt
		return nil, "invalid JSON: " + jsonReason(err, start)
	}
	if used := int(o.dec.InputOffset() - start); used < len(b) {
		o.dec = nil // it may hold the rest
		return nil, fmt.Sprintf("unexpected data after the JSON object at byte %d", used+1+firstNonSpace(b[used:]))
	}
	return rec, ""
}

// describeJSON names the kind of JSON value b starts with.
func describeJSON(b []byte) string {
	switch c := b[0]; {
	case c == '[':
		return "an array"
	case c == '"':
		return "a string"
	case c == '-' || c >= '0' && c <= '9':
		return "a number"
	case bytes.HasPrefix(b, []byte("true")), bytes.HasPrefix(b, []byte("false")):
		return "a boolean"
	case bytes.HasPrefix(b, []byte("null")):
		return "null"
	default:
		return "text that is not JSON (starting with " + quoteByte(c) + ")"
	}
}

// jsonReason explains a json.Decoder error; start is the decoder's input
// offset at the start of the record (its syntax error offsets count from
// the start of its stream).
func jsonReason(err error, start int64) string {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("%s at byte %d", se.Error(), se.Offset-start)
	case err == io.ErrUnexpectedEOF || err == io.EOF:
		return "the object is not closed (a JSON lines file needs each record on one line)"
	}
	return err.Error()
}
