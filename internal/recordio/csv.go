package recordio

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// csvReadAhead is how far encoding/csv's own bufio.Reader reads ahead of
// the record it parses.
const csvReadAhead = 4096

var errRecordTooLong = errors.New("record too long")

// windowReader feeds encoding/csv and keeps the bytes it delivered since
// the start of the current record, so that each record's original text is
// known and no record can grow past the limit: encoding/csv itself would
// buffer a 100 MB line, or a quoted field that never closes, whole.
type windowReader struct {
	r     io.Reader
	buf   []byte // delivered bytes; buf[start:] begin at absolute offset off
	start int
	off   int64
	limit int // most bytes buf[start:] may hold
	eof   bool
	err   error // sticky errRecordTooLong
}

func (w *windowReader) Read(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	room := w.limit - (len(w.buf) - w.start)
	if room <= 0 {
		w.err = errRecordTooLong
		return 0, w.err
	}
	if len(p) > room {
		p = p[:room]
	}
	n, err := w.r.Read(p)
	w.buf = append(w.buf, p[:n]...)
	if err == io.EOF {
		w.eof = true
	}
	return n, err
}

// slice returns the delivered bytes between two absolute offsets.
func (w *windowReader) slice(from, to int64) []byte {
	base := w.off - int64(w.start)
	return w.buf[from-base : to-base]
}

// release forgets the bytes before absolute offset to.
func (w *windowReader) release(to int64) {
	w.start += int(to - w.off)
	w.off = to
	if w.start > 64<<10 && w.start > len(w.buf)/2 {
		n := copy(w.buf, w.buf[w.start:])
		w.buf = w.buf[:n]
		w.start = 0
	}
}

// consumedAll reports whether the source is exhausted and everything it
// delivered up to offset end has been parsed.
func (w *windowReader) consumedAll(end int64) bool {
	return w.eof && end == w.off+int64(len(w.buf)-w.start)
}

type csvDecoder struct {
	win       *windowReader
	cr        *csv.Reader
	header    []string
	shape     func(map[string]any) map[string]any
	maxLine   int
	lines     int   // lines consumed by the records read so far
	off       int64 // input offset after the last record
	lineBase  int   // lines before the decoder's start (encoding/csv counts from 1 there)
	blankRows int64
}

func newCSVDecoder(br *bufio.Reader, comma rune, opts Options) (*csvDecoder, error) {
	d := baseCSVDecoder(br, comma, opts)
	if err := d.readHeader(); err != nil {
		return nil, err
	}
	return d, nil
}

// resumeCSVDecoder continues a CSV file at res (br starts at res.Offset).
func resumeCSVDecoder(br *bufio.Reader, res Resume, opts Options) *csvDecoder {
	d := baseCSVDecoder(br, res.Comma, opts)
	d.header = slices.Clone(res.Header)
	d.lines, d.lineBase = res.Line, res.Line
	return d
}

func baseCSVDecoder(br *bufio.Reader, comma rune, opts Options) *csvDecoder {
	d := &csvDecoder{
		win:     &windowReader{r: br, limit: opts.MaxLineBytes + csvReadAhead},
		shape:   opts.CSVShape,
		maxLine: opts.MaxLineBytes,
	}
	d.cr = csv.NewReader(d.win)
	d.cr.Comma = comma
	d.cr.FieldsPerRecord = -1 // checked per row against the header
	d.cr.ReuseRecord = true
	return d
}

func (d *csvDecoder) position() (int64, int, bool) { return d.off, d.lines, false }

func (d *csvDecoder) readHeader() error {
	rec, raw, err := d.read()
	if err == io.EOF {
		return &FileError{Reason: "the file is empty"}
	}
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &FileError{Line: pe.StartLine, Reason: "invalid CSV header: " + csvReason(pe)}
	}
	if err != nil {
		return err
	}
	if !utf8.Valid(raw) {
		return &FileError{Line: d.lines, Reason: "the header is not valid UTF-8"}
	}
	d.header = make([]string, len(rec))
	seen := make(map[string]int, len(rec))
	named := false
	for i, name := range rec {
		name = strings.TrimSpace(name)
		d.header[i] = name
		if name == "" {
			continue
		}
		named = true
		if j, dup := seen[name]; dup {
			return &FileError{Line: d.lines, Reason: fmt.Sprintf("the header names column %q twice (columns %d and %d)", name, j+1, i+1)}
		}
		seen[name] = i
	}
	if !named {
		return &FileError{Line: d.lines, Reason: "the header row has no column names"}
	}
	return nil
}

// read returns the next CSV record and its text. It turns a record that
// grew past the limit, or a quoted field left open at the end of the
// file, into a *FileError. A *csv.ParseError it returns counts lines from
// the file's start.
//
// The window overflows only when the record (with the blank lines before
// it) is longer than its limit, wherever encoding/csv's reads fall:
// encoding/csv reads more only while it has not seen the record's end, so
// everything in the window then belongs to the record. So a file resumed
// in the middle (see OpenAt) ends the same way as one read from the start.
func (d *csvDecoder) read() ([]string, []byte, error) {
	d.win.release(d.off)
	firstLine := d.lines + 1
	rec, err := d.cr.Read()
	if errors.Is(err, errRecordTooLong) {
		return nil, nil, &FileError{Line: firstLine, Reason: fmt.Sprintf(
			"a CSV record is longer than the %d-byte limit (or a quoted field is never closed)", d.maxLine)}
	}
	end := d.cr.InputOffset()
	raw := d.win.slice(d.off, end)
	d.lines += bytes.Count(raw, []byte{'\n'})
	if len(raw) > 0 && raw[len(raw)-1] != '\n' {
		d.lines++ // the last line has no line break
	}
	d.off = end
	var pe *csv.ParseError
	if errors.As(err, &pe) && d.lineBase > 0 {
		shifted := *pe
		shifted.StartLine += d.lineBase
		shifted.Line += d.lineBase
		pe, err = &shifted, &shifted
	}
	if pe != nil && pe.Err == csv.ErrQuote && d.win.consumedAll(end) && bytes.IndexByte(trimSpace(raw), '\n') >= 0 {
		return nil, nil, &FileError{Line: pe.StartLine, Reason: fmt.Sprintf(
			"the quoted field in the record that starts at line %d is never closed", pe.StartLine)}
	}
	if err != nil && pe == nil && err != io.EOF {
		return nil, nil, fileErr(firstLine, err)
	}
	return rec, trimLeadingBlankLines(raw), err
}

func (d *csvDecoder) next() (Item, error) {
	for {
		rec, raw, err := d.read()
		if err == io.EOF {
			return Item{}, io.EOF
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return rowErr(pe.StartLine, trimLineBreak(raw), "%s", csvReason(pe)), nil
		}
		if err != nil {
			return Item{}, err
		}
		line, _ := d.cr.FieldPos(0)
		line += d.lineBase
		raw = trimLineBreak(raw)
		if blank(rec) {
			d.blankRows++
			continue
		}
		if len(rec) != len(d.header) {
			return rowErr(line, raw, "the row has %d columns, the header has %d", len(rec), len(d.header)), nil
		}
		row := make(map[string]any, len(rec))
		for i, cell := range rec {
			if cell == "" {
				continue
			}
			name := d.header[i]
			if name == "" {
				return rowErr(line, raw, "column %d has a value but no name in the header", i+1), nil
			}
			if !utf8.ValidString(cell) {
				return rowErr(line, raw, "column %q is not valid UTF-8", name), nil
			}
			row[name] = TypeCell(cell)
		}
		if d.shape != nil {
			row = d.shape(row)
		}
		return Item{Line: line, Raw: capRaw(raw), Record: row}, nil
	}
}

func blank(rec []string) bool {
	for _, c := range rec {
		if c != "" {
			return false
		}
	}
	return true
}

func trimLeadingBlankLines(b []byte) []byte {
	for len(b) > 0 && (b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}

func trimLineBreak(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func csvReason(pe *csv.ParseError) string {
	switch pe.Err {
	case csv.ErrBareQuote:
		return fmt.Sprintf("a '\"' in an unquoted field (line %d, byte %d); quote the field and double the quote", pe.Line, pe.Column)
	case csv.ErrQuote:
		return fmt.Sprintf("a quoted field is not closed properly (line %d, byte %d); a '\"' inside a quoted field must be doubled", pe.Line, pe.Column)
	}
	return pe.Err.Error()
}

// TypeCell gives a non-empty CSV cell its JSON type: booleans for "true"
// and "false" in any case, json.Number for canonical integers and
// decimals of at most 15 digits, the string itself otherwise. See the
// package documentation for the exact rules.
func TypeCell(s string) any {
	switch {
	case strings.EqualFold(s, "true"):
		return true
	case strings.EqualFold(s, "false"):
		return false
	case isCSVNumber(s):
		return json.Number(s)
	}
	return s
}

// isCSVNumber reports whether s is -?(0|[1-9][0-9]*)(\.[0-9]+)? with at
// most 15 digits, and not "-0".
func isCSVNumber(s string) bool {
	if s == "" || s == "-0" {
		return false
	}
	if s[0] == '-' {
		s = s[1:]
	}
	intPart, frac, hasPoint := strings.Cut(s, ".")
	if intPart == "" || (len(intPart) > 1 && intPart[0] == '0') || !allDigits(intPart) {
		return false
	}
	if hasPoint && (frac == "" || !allDigits(frac)) {
		return false
	}
	return len(intPart)+len(frac) <= 15
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
