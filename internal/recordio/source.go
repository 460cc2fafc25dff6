package recordio

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// contentError is a problem with the file's bytes (as opposed to a failure
// of the reader they come from). Decoders turn it into a *FileError with
// the line they were at.
type contentError struct{ reason string }

func (e *contentError) Error() string { return e.reason }

// countingReader counts the bytes read from the source and remembers the
// first error other than io.EOF, so that a failure of the source can be
// told from corrupt data after it passed through gzip.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err // a failed stream never turns into a clean EOF
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

// gunzipReader decompresses, counts the output and enforces the limits.
type gunzipReader struct {
	zr    *gzip.Reader
	src   *countingReader
	n     int64 // decompressed bytes so far
	max   int64
	ratio int64
	err   error // sticky
}

func newGunzipReader(br *bufio.Reader, src *countingReader, opts Options) (*gunzipReader, error) {
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, gzipError(src, err)
	}
	return &gunzipReader{zr: zr, src: src, max: opts.MaxDecompressedBytes, ratio: int64(opts.MaxCompressionRatio)}, nil
}

func (g *gunzipReader) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.zr.Read(p)
	g.n += int64(n)
	switch {
	case g.n > g.max:
		g.err = &contentError{fmt.Sprintf("the file decompresses to more than %d bytes, the limit (a gzip bomb?)", g.max)}
		return 0, g.err
	case g.ratio > 0 && g.n > ratioGrace && g.n > g.ratio*g.src.n:
		g.err = &contentError{fmt.Sprintf("the file decompresses to more than %d times its compressed size, the limit (a gzip bomb?)", g.ratio)}
		return 0, g.err
	case err == io.EOF:
		g.err = io.EOF
	case err != nil:
		g.err = gzipError(g.src, err)
		return n, g.err
	}
	return n, err
}

// gzipError classifies an error from compress/gzip: a failure of the
// source is passed on as it is, anything else means the data is bad.
func gzipError(src *countingReader, err error) error {
	if src.err != nil {
		return src.err
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return &contentError{"the gzip data is cut short"}
	}
	return &contentError{fmt.Sprintf("the gzip data is corrupt (%v)", err)}
}

var utf8BOM = []byte{0xef, 0xbb, 0xbf}

// sniffed is what the first bytes of the content tell.
type sniffed struct {
	first     byte   // first byte that is not JSON whitespace
	firstLine int    // its 1-based line
	header    []byte // the first line (CSV header), possibly cut short
	skipped   int64  // bytes consumed: a byte-order mark
}

// magics are signatures of binary files people upload by mistake.
var magics = []struct {
	prefix, what string
}{
	{"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook? export it as CSV)"},
	{"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Excel .xls workbook (export it as CSV)"},
	{"\x1f\x8b", "gzip data inside gzip data (compressed twice?)"},
	{"BZh", "bzip2 data (only gzip is supported)"},
	{"\xfd7zXZ\x00", "xz data (only gzip is supported)"},
	{"\x28\xb5\x2f\xfd", "zstd data (only gzip is supported)"},
	{"%PDF-", "a PDF document"},
	{"PAR1", "a Parquet file"},
	{"Obj\x01", "an Avro file"},
	{"SQLite format 3\x00", "an SQLite database"},
	{"\x89PNG", "a PNG image"},
	{"\xff\xd8\xff", "a JPEG image"},
}

// sniff skips a UTF-8 byte-order mark, refuses content that is not UTF-8
// text, and finds the first significant byte. It consumes only the BOM.
func sniff(br *bufio.Reader) (sniffed, error) {
	peek, err := br.Peek(sniffSize)
	if !peekOK(peek, err) {
		return sniffed{}, err
	}
	atEOF := err != nil
	skipped := 0
	switch {
	case bytes.HasPrefix(peek, utf8BOM):
		if _, err := br.Discard(len(utf8BOM)); err != nil {
			return sniffed{}, err
		}
		peek = peek[len(utf8BOM):]
		skipped = len(utf8BOM)
	case bytes.HasPrefix(peek, []byte{0xff, 0xfe}), bytes.HasPrefix(peek, []byte{0xfe, 0xff}):
		return sniffed{}, &FileError{Reason: "the file is UTF-16 text; save it as UTF-8"}
	}
	if err := checkText(peek, atEOF); err != nil {
		return sniffed{}, err
	}

	sn := sniffed{header: peek, skipped: int64(skipped)}
	if i := bytes.IndexByte(peek, '\n'); i >= 0 {
		sn.header = peek[:i]
	}
	i := firstNonSpace(peek)
	if i < 0 && !atEOF {
		// Blank space beyond the sniff window: look as far as the buffer goes.
		peek, err = br.Peek(readBufferSize)
		if !peekOK(peek, err) {
			return sniffed{}, err
		}
		atEOF = err != nil
		if i = firstNonSpace(peek); i < 0 && !atEOF {
			return sniffed{}, &FileError{Reason: fmt.Sprintf("the first %d bytes of the file are blank", len(peek))}
		}
	}
	if i < 0 {
		if err != nil && err != io.EOF {
			return sniffed{}, err // bad gzip after blank space: say so
		}
		return sniffed{}, &FileError{Reason: "the file is empty"}
	}
	sn.first = peek[i]
	sn.firstLine = 1 + bytes.Count(peek[:i], []byte{'\n'})
	return sn, nil
}

// peekOK reports whether sniffing can go on after br.Peek returned b and
// err: yes at the end of the content, and when gzip data turns bad after
// some good bytes (the decoders meet the error again where it is, with a
// line number, because gunzipReader's errors are sticky).
func peekOK(b []byte, err error) bool {
	var ce *contentError
	switch {
	case err == nil, err == io.EOF, err == bufio.ErrBufferFull:
		return true
	case errors.As(err, &ce):
		return len(b) > 0
	}
	return false
}

// checkText refuses binary content: known signatures, NUL bytes, invalid
// UTF-8, or many control characters in the window w.
func checkText(w []byte, atEOF bool) error {
	for _, m := range magics {
		if bytes.HasPrefix(w, []byte(m.prefix)) {
			return &FileError{Reason: "the file is binary, not text: it looks like " + m.what}
		}
	}
	if i := bytes.IndexByte(w, 0); i >= 0 {
		return &FileError{Line: lineAt(w, i), Reason: "the file is binary, not text: it holds NUL bytes"}
	}
	if !atEOF {
		// Do not mistake a character cut by the window's end for an error.
		for i := len(w) - 1; i >= 0 && i >= len(w)-utf8.UTFMax; i-- {
			if utf8.RuneStart(w[i]) {
				if !utf8.FullRune(w[i:]) {
					w = w[:i]
				}
				break
			}
		}
	}
	if !utf8.Valid(w) {
		i := invalidUTF8(w)
		return &FileError{Line: lineAt(w, i), Reason: fmt.Sprintf(
			"the file is not UTF-8 text (byte 0x%02x); save it as UTF-8", w[i])}
	}
	controls := 0
	for _, c := range w {
		if (c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != '\v') || c == 0x7f {
			controls++
		}
	}
	if controls >= 3 && controls*100 >= len(w) {
		return &FileError{Reason: "the file is binary, not text: it holds many control characters"}
	}
	return nil
}

func invalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return 0
}

func lineAt(b []byte, i int) int { return 1 + bytes.Count(b[:i], []byte{'\n'}) }

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func firstNonSpace(b []byte) int {
	for i, c := range b {
		if !isSpace(c) {
			return i
		}
	}
	return -1
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// comma picks the CSV delimiter: the most frequent of ',', ';', TAB and
// '|' outside quotes in the header line, ',' when none or on a tie.
func (s sniffed) comma() rune {
	candidates := []byte{',', ';', '\t', '|'}
	var counts [4]int
	inQuote := false
	for _, c := range s.header {
		if c == '"' {
			inQuote = !inQuote
			continue
		}
		if inQuote {
			continue
		}
		if i := bytes.IndexByte(candidates, c); i >= 0 {
			counts[i]++
		}
	}
	best := 0
	for i := 1; i < len(counts); i++ {
		if counts[i] > counts[best] {
			best = i
		}
	}
	return rune(candidates[best])
}
