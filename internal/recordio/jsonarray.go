package recordio

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// maxDepth bounds the nesting of brackets in one array element, as
// encoding/json does.
const maxDepth = 10000

// jsonArrayDecoder reads the elements of one top-level JSON array without
// holding more than one element: it finds each element's end by tracking
// strings and brackets, keeps at most maxLine bytes of it, and decodes it
// on its own. So a malformed element is a per-row error and reading goes
// on; only unbalanced brackets, a missing ']' or data after the array stop
// the file.
type jsonArrayDecoder struct {
	br      *bufio.Reader
	maxLine int
	line    int   // line of the next unread byte
	off     int64 // bytes consumed
	state   int
	elem    []byte // the current element, at most maxLine bytes
	stack   []byte // closers expected inside the current element
	obj     objectDecoder
}

const (
	arrayFirst = iota // after '[': an element or ']'
	arrayAfter        // after an element: ',' or ']'
	arrayDone
)

func newJSONArrayDecoder(br *bufio.Reader, opts Options) (*jsonArrayDecoder, error) {
	d := &jsonArrayDecoder{br: br, maxLine: opts.MaxLineBytes, line: 1}
	c, err := d.skipSpace()
	if err != nil {
		return nil, d.cutShort(err)
	}
	if c != '[' {
		return nil, &FileError{Line: d.line, Reason: "a JSON array must start with '[', found " + quoteByte(c)}
	}
	d.discard(1)
	return d, nil
}

func (d *jsonArrayDecoder) next() (Item, error) {
	switch d.state {
	case arrayDone:
		return Item{}, io.EOF
	case arrayFirst:
		c, err := d.skipSpace()
		if err != nil {
			return Item{}, d.cutShort(err)
		}
		if c == ']' {
			d.discard(1)
			return d.end()
		}
		return d.element()
	}
	c, err := d.skipSpace()
	if err != nil {
		return Item{}, d.cutShort(err)
	}
	switch c {
	case ']':
		d.discard(1)
		return d.end()
	case ',':
		d.discard(1)
		c, err := d.skipSpace()
		if err != nil {
			return Item{}, d.cutShort(err)
		}
		if c == ']' { // a trailing comma loses nothing: tolerate it
			d.discard(1)
			return d.end()
		}
		return d.element()
	}
	return Item{}, &FileError{Line: d.line, Reason: "expected ',' or ']' after an array element, found " + quoteByte(c)}
}

// end checks that nothing but blank space follows the array.
func (d *jsonArrayDecoder) end() (Item, error) {
	d.state = arrayDone
	c, err := d.skipSpace()
	switch {
	case err == io.EOF:
		return Item{}, io.EOF
	case err != nil:
		return Item{}, fileErr(d.line, err)
	}
	return Item{}, &FileError{Line: d.line, Reason: "unexpected data after the end of the JSON array, starting with " + quoteByte(c)}
}

func (d *jsonArrayDecoder) cutShort(err error) error {
	if err == io.EOF {
		return &FileError{Line: d.line, Reason: "the JSON array is cut short: the file ends before its closing ']'"}
	}
	return fileErr(d.line, err)
}

// buffered returns the buffered bytes, reading more when there are none.
func (d *jsonArrayDecoder) buffered() ([]byte, error) {
	if d.br.Buffered() == 0 {
		if _, err := d.br.Peek(1); err != nil {
			return nil, err
		}
	}
	b, _ := d.br.Peek(d.br.Buffered())
	return b, nil
}

// discard consumes n bytes; n <= Buffered(), so it cannot fail.
func (d *jsonArrayDecoder) discard(n int) {
	_, _ = d.br.Discard(n)
	d.off += int64(n)
}

// position is resumable after an element (state arrayAfter); before the
// first one, only the file's start is.
func (d *jsonArrayDecoder) position() (int64, int, bool) {
	return d.off, d.line - 1, d.state == arrayFirst
}

// skipSpace consumes blank space and returns the next byte, unconsumed.
func (d *jsonArrayDecoder) skipSpace() (byte, error) {
	for {
		buf, err := d.buffered()
		if err != nil {
			return 0, err
		}
		for i, c := range buf {
			if !isSpace(c) {
				d.discard(i)
				return c, nil
			}
			if c == '\n' {
				d.line++
			}
		}
		d.discard(len(buf))
	}
}

const (
	modeContainer = iota + 1
	modeString
	modeScalar
)

// element reads one array element, which starts at the next byte.
func (d *jsonArrayDecoder) element() (Item, error) {
	start := d.line
	d.elem = d.elem[:0]
	d.stack = d.stack[:0]
	mode := 0
	inString, escaped := false, false
	n := 0
	for done := false; !done; {
		buf, err := d.buffered()
		if err == io.EOF {
			return Item{}, &FileError{Line: d.line, Reason: fmt.Sprintf(
				"the JSON array is cut short: the file ends inside the element that starts at line %d", start)}
		}
		if err != nil {
			return Item{}, fileErr(d.line, err)
		}
		i := 0
		if mode == 0 {
			switch buf[0] {
			case '{', '[':
				mode = modeContainer
			case '"':
				mode = modeString
			default:
				mode = modeScalar
			}
		}
		if mode == modeScalar {
			for ; i < len(buf); i++ {
				if c := buf[i]; isSpace(c) || c == ',' || c == ']' {
					done = true
					break
				}
			}
		} else {
			quote, backslash := -1, -1 // cached positions of the next '"' and '\\' in buf
		scan:
			for i < len(buf) {
				if inString {
					if escaped {
						escaped = false
						i++
						continue
					}
					if quote < i {
						if quote = bytes.IndexByte(buf[i:], '"'); quote >= 0 {
							quote += i
						} else {
							quote = len(buf)
						}
					}
					if backslash < i {
						if backslash = bytes.IndexByte(buf[i:], '\\'); backslash >= 0 {
							backslash += i
						} else {
							backslash = len(buf)
						}
					}
					j := min(quote, backslash)
					if j == len(buf) {
						i = j
						break
					}
					i = j + 1
					if buf[j] == '\\' {
						escaped = true
						continue
					}
					inString = false
					if len(d.stack) == 0 && mode == modeString {
						done = true
						break
					}
					continue
				}
				switch c := buf[i]; c {
				case '"':
					inString = true
				case '{':
					d.stack = append(d.stack, '}')
				case '[':
					d.stack = append(d.stack, ']')
				case '}', ']':
					if len(d.stack) == 0 || d.stack[len(d.stack)-1] != c {
						return Item{}, &FileError{Line: d.line + bytes.Count(buf[:i], []byte{'\n'}), Reason: fmt.Sprintf(
							"invalid JSON in the array element that starts at line %d: unexpected %s", start, quoteByte(c))}
					}
					d.stack = d.stack[:len(d.stack)-1]
					if len(d.stack) == 0 {
						i++
						done = true
						break scan
					}
				}
				i++
				if len(d.stack) > maxDepth {
					return Item{}, &FileError{Line: d.line, Reason: fmt.Sprintf(
						"the array element that starts at line %d is nested more than %d levels deep", start, maxDepth)}
				}
			}
		}
		consumed := buf[:i]
		d.line += bytes.Count(consumed, []byte{'\n'})
		n += i
		if room := d.maxLine - len(d.elem); room > 0 {
			d.elem = append(d.elem, consumed[:min(room, len(consumed))]...)
		}
		d.discard(i)
	}
	d.state = arrayAfter
	switch {
	case n > d.maxLine:
		return rowErr(start, d.elem, "the array element is %d bytes long, over the %d-byte limit", n, d.maxLine), nil
	case n == 0:
		return rowErr(start, nil, "an empty array element (two commas in a row?)"), nil
	}
	rec, reason := d.obj.decode(trimSpace(d.elem))
	if reason != "" {
		return rowErr(start, d.elem, "%s", reason), nil
	}
	return Item{Line: start, Raw: capRaw(d.elem), Record: rec}, nil
}
