package ce

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The JSON record framer: it splits a stream of JSON records (an array or
// white-space separated objects) without decoding them. Each record is
// checked against the JSON grammar in one pass over its bytes (the checks
// encoding/json makes, without building anything) and handed out as a
// sub-slice of one buffer that is reused from record to record.

// maxNestingDepth is encoding/json's limit on nested arrays and objects.
const maxNestingDepth = 10000

// errIncomplete says the value runs past the bytes scanned so far.
var errIncomplete = errors.New("incomplete")

// syntaxError is a grammar violation; off is relative to the record start.
type syntaxError struct {
	msg string
	off int
}

func (e *syntaxError) Error() string { return e.msg }

func badChar(b []byte, i int, where string) error {
	return &syntaxError{msg: fmt.Sprintf("invalid character %q %s", b[i], where), off: i}
}

// strPlain marks the bytes that stand for themselves inside a string: not
// a quote, not a backslash, not a control character.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// special reports whether any of the 8 bytes of x is a quote, a backslash
// or below 0x20 (SWAR: the high bit of each matching byte lane is set).
func special(x uint64) bool {
	q := x ^ (ones * '"')
	s := x ^ (ones * '\\')
	hasZero := func(v uint64) uint64 { return (v - ones) &^ v & highs }
	lt := (x - ones*0x20) &^ x & highs
	return hasZero(q)|hasZero(s)|lt != 0
}

// scanString returns the index after the string that starts at b[i] (a
// quote).
func scanString(b []byte, i int) (int, error) {
	j := i + 1
	for {
		for j+8 <= len(b) && !special(binary.LittleEndian.Uint64(b[j:])) {
			j += 8
		}
		for j < len(b) && strPlain[b[j]] {
			j++
		}
		if j >= len(b) {
			return 0, errIncomplete
		}
		switch c := b[j]; c {
		case '"':
			return j + 1, nil
		case '\\':
			if j+1 >= len(b) {
				return 0, errIncomplete
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				for k := j + 2; k < j+6; k++ {
					if k >= len(b) {
						return 0, errIncomplete
					}
					if !isHex(b[k]) {
						return 0, badChar(b, k, "in \\u hexadecimal character escape")
					}
				}
				j += 6
			default:
				return 0, badChar(b, j+1, "in string escape code")
			}
		default:
			return 0, badChar(b, j, "in string literal")
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// scanNumber returns the index after the number at b[i]. A number that
// reaches the end of b is incomplete: more digits may follow.
func scanNumber(b []byte, i int) (int, error) {
	j := i
	if b[j] == '-' {
		j++
		if j >= len(b) {
			return 0, errIncomplete
		}
	}
	switch {
	case b[j] == '0':
		j++
	case '1' <= b[j] && b[j] <= '9':
		for j < len(b) && isDigit(b[j]) {
			j++
		}
	default:
		return 0, badChar(b, j, "in numeric literal")
	}
	if j >= len(b) {
		return 0, errIncomplete
	}
	var err error
	if b[j] == '.' {
		if j, err = digits(b, j+1, "after decimal point in numeric literal"); err != nil {
			return 0, err
		}
	}
	if b[j] == 'e' || b[j] == 'E' {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if j, err = digits(b, j, "in exponent of numeric literal"); err != nil {
			return 0, err
		}
	}
	return j, nil
}

// digits scans one or more digits from b[j] (which must not end the
// number: a number at the end of b is incomplete).
func digits(b []byte, j int, where string) (int, error) {
	if j >= len(b) {
		return 0, errIncomplete
	}
	if !isDigit(b[j]) {
		return 0, badChar(b, j, where)
	}
	for j < len(b) && isDigit(b[j]) {
		j++
	}
	if j >= len(b) {
		return 0, errIncomplete
	}
	return j, nil
}

func scanLiteral(b []byte, i int, lit string) (int, error) {
	for k := 0; k < len(lit); k++ {
		if i+k >= len(b) {
			return 0, errIncomplete
		}
		if b[i+k] != lit[k] {
			return 0, badChar(b, i+k, "in literal "+lit+" (expecting "+fmt.Sprintf("%q", lit[k])+")")
		}
	}
	return i + len(lit), nil
}

// scanValue returns the index after the JSON value that starts at b[i]
// (not white space), checking its grammar; errIncomplete when b ends first.
func scanValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return 0, errIncomplete
	}
	switch c := b[i]; {
	case c == '"':
		return scanString(b, i)
	case c == '{':
		return scanObject(b, i, depth+1)
	case c == '[':
		return scanArray(b, i, depth+1)
	case c == '-' || isDigit(c):
		return scanNumber(b, i)
	case c == 't':
		return scanLiteral(b, i, "true")
	case c == 'f':
		return scanLiteral(b, i, "false")
	case c == 'n':
		return scanLiteral(b, i, "null")
	}
	return 0, badChar(b, i, "looking for beginning of value")
}

// enter checks the nesting depth and steps past the opening bracket of
// the container at b[i] and the white space after it; empty is true (and j
// after the closing bracket) for an empty container.
func enter(b []byte, i, depth int, closing byte) (j int, empty bool, err error) {
	if depth > maxNestingDepth {
		return 0, false, &syntaxError{msg: "exceeded max depth", off: i}
	}
	j = skipWS(b, i+1)
	if j >= len(b) {
		return 0, false, errIncomplete
	}
	if b[j] == closing {
		return j + 1, true, nil
	}
	return j, false, nil
}

func scanObject(b []byte, i, depth int) (int, error) {
	j, empty, err := enter(b, i, depth, '}')
	if err != nil || empty {
		return j, err
	}
	for {
		if b[j] != '"' {
			return 0, badChar(b, j, "looking for beginning of object key string")
		}
		if j, err = scanString(b, j); err != nil {
			return 0, err
		}
		j = skipWS(b, j)
		if j >= len(b) {
			return 0, errIncomplete
		}
		if b[j] != ':' {
			return 0, badChar(b, j, "after object key")
		}
		j = skipWS(b, j+1)
		if j, err = scanValue(b, j, depth); err != nil {
			return 0, err
		}
		var end bool
		if j, end, err = member(b, j, '}', "after object key:value pair"); err != nil || end {
			return j, err
		}
		if j >= len(b) {
			return 0, errIncomplete
		}
	}
}

func scanArray(b []byte, i, depth int) (int, error) {
	j, empty, err := enter(b, i, depth, ']')
	if err != nil || empty {
		return j, err
	}
	for {
		if j, err = scanValue(b, j, depth); err != nil {
			return 0, err
		}
		var end bool
		if j, end, err = member(b, j, ']', "after array element"); err != nil || end {
			return j, err
		}
	}
}

// member steps over what follows a member of a container that ends with
// closing: end is true (j after the bracket) at the end, else j is where
// the next member starts, after the comma and white space.
func member(b []byte, j int, closing byte, where string) (int, bool, error) {
	j = skipWS(b, j)
	if j >= len(b) {
		return 0, false, errIncomplete
	}
	switch b[j] {
	case closing:
		return j + 1, true, nil
	case ',':
		return skipWS(b, j+1), false, nil
	}
	return 0, false, badChar(b, j, where)
}

// framer holds the bytes read from the source and not yet handed out.
type framer struct {
	src   io.Reader
	buf   []byte
	r, w  int   // buf[r:w] is unread
	base  int64 // stream offset of buf[0]
	limit int64 // largest record
	err   error // the source's first error (io.EOF included)
}

// frameChunk is the buffer's starting size, frameRead the most one read
// asks for.
const (
	frameChunk = 256 << 10
	frameRead  = 64 << 10
)

func newFramer(src io.Reader, limit int64) *framer {
	return &framer{src: src, limit: limit}
}

// offset is the stream offset of the next unread byte.
func (f *framer) offset() int64 { return f.base + int64(f.r) }

// fill reads more bytes, keeping buf[keep:] (keep <= r). It returns false
// when the source has ended or failed (f.err).
func (f *framer) fill(keep int) bool { return f.fillAtMost(keep, frameRead) }

// fillAtMost is fill with one read of at most n bytes.
func (f *framer) fillAtMost(keep, most int) bool {
	if f.err != nil {
		return false
	}
	if keep > 0 {
		n := copy(f.buf, f.buf[keep:f.w])
		f.base += int64(keep)
		f.r -= keep
		f.w = n
	}
	if len(f.buf)-f.w < frameChunk/4 {
		// Grow for a record larger than what is held; bounded by the
		// record limit (the caller stops before then).
		size := max(2*len(f.buf), frameChunk)
		nb := make([]byte, size)
		copy(nb, f.buf[:f.w])
		f.buf = nb
	}
	for {
		n, err := f.src.Read(f.buf[f.w:min(len(f.buf), f.w+max(most, 1))])
		f.w += n
		if err != nil {
			f.err = err
			return n > 0
		}
		if n > 0 {
			return true
		}
	}
}

// peek skips white space and returns the next byte; ok is false at the end
// of the stream or on a source error (f.err).
func (f *framer) peek() (byte, bool) {
	for {
		f.r = skipWS(f.buf[:f.w], f.r)
		if f.r < f.w {
			return f.buf[f.r], true
		}
		if !f.fill(f.r) {
			return 0, false
		}
	}
}

// value scans the value at the next unread byte (peek returned it) and
// returns it; the slice is valid until the next call. On errIncomplete it
// reads more, as long as the record stays within the limit.
func (f *framer) value() ([]byte, error) {
	for {
		end, err := scanValue(f.buf[f.r:f.w], 0, 0)
		if err == nil {
			rec := f.buf[f.r : f.r+end]
			if int64(len(rec)) > f.limit {
				return nil, ErrRecordTooLarge
			}
			f.r += end
			return rec, nil
		}
		if err != errIncomplete {
			return nil, err
		}
		if int64(f.w-f.r) > f.limit {
			return nil, ErrRecordTooLarge
		}
		room := f.limit + 1 - int64(f.w-f.r) // read no further than the limit
		if !f.fillAtMost(f.r, int(min(room, frameRead))) {
			if f.err == io.EOF {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, f.err
		}
	}
}

// sourceErr is the error to report when the stream ended: io.EOF or the
// source's failure.
func (f *framer) sourceErr() error {
	if f.err == nil || f.err == io.EOF {
		return nil
	}
	return f.err
}
