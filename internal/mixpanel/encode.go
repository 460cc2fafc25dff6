package mixpanel

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Limits Mixpanel's /import enforces on event properties (reference
// §5.4; docs.mixpanel.com/reference/import-events, "High-level
// requirements").
const (
	maxProperties = 254 // "fewer than 255 properties"
	maxKeys       = 254 // nested objects: "fewer than 255 keys"
	maxElements   = 254 // arrays: "fewer than 255 elements"
	maxDepth      = 3   // "max nesting depth is 3"
)

// pathElem is one step of the path to a value: an object key, or an
// array index when index >= 0.
type pathElem struct {
	key   string
	index int
}

// fieldPath renders a path as "properties.cart[3].sku".
func fieldPath(p []pathElem) string {
	var b strings.Builder
	for _, el := range p {
		switch {
		case el.index >= 0:
			fmt.Fprintf(&b, "[%d]", el.index)
		case b.Len() > 0:
			b.WriteByte('.')
			b.WriteString(el.key)
		default:
			b.WriteString(el.key)
		}
	}
	return b.String()
}

// encoder appends compact JSON with sorted object keys and no HTML
// escaping (byte for byte what encoding/json produces for the same value
// with SetEscapeHTML(false)), and checks values as it goes: strings and
// keys must be UTF-8, numbers valid and finite, types JSON's. With limits
// set it also enforces Mixpanel's nesting and size limits for event
// properties.
type encoder struct {
	buf    []byte
	keys   []string   // scratch for sorting keys, shared by nested objects
	path   []pathElem // where the value being encoded sits, for errors
	limits bool
}

// encoders keeps encoders, for their scratch slices.
var encoders = sync.Pool{New: func() any { return new(encoder) }}

// newEncoder returns an encoder with a fresh output buffer (which its
// caller keeps) and pooled scratch space; call free when done.
func newEncoder(limits bool) *encoder {
	e := encoders.Get().(*encoder)
	e.buf = make([]byte, 0, 512)
	e.limits = limits
	return e
}

func (e *encoder) free() {
	e.buf, e.keys, e.path = nil, e.keys[:0], e.path[:0]
	clear(e.keys[:cap(e.keys)]) // drop references to the record's keys
	encoders.Put(e)
}

func (e *encoder) reject(format string, args ...any) *RejectError {
	return &RejectError{Field: fieldPath(e.path), Reason: fmt.Sprintf(format, args...)}
}

func (e *encoder) push(key string, index int) { e.path = append(e.path, pathElem{key, index}) }
func (e *encoder) pop()                       { e.path = e.path[:len(e.path)-1] }

// value appends v, found at e.path, inside depth containers (not counting
// the properties object itself).
func (e *encoder) value(v any, depth int) *RejectError {
	switch x := v.(type) {
	case nil:
		e.buf = append(e.buf, "null"...)
	case bool:
		e.buf = strconv.AppendBool(e.buf, x)
	case string:
		var ok bool
		if e.buf, ok = appendString(e.buf, x); !ok {
			return e.reject("is not valid UTF-8")
		}
	case json.Number:
		if !isValidNumber(string(x)) {
			return e.reject("%q is not a valid number", string(x))
		}
		e.buf = append(e.buf, x...)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return e.reject("is not a finite number")
		}
		e.buf = appendFloat(e.buf, x)
	case int:
		e.buf = strconv.AppendInt(e.buf, int64(x), 10)
	case int64:
		e.buf = strconv.AppendInt(e.buf, x, 10)
	case int32:
		e.buf = strconv.AppendInt(e.buf, int64(x), 10)
	case uint64:
		e.buf = strconv.AppendUint(e.buf, x, 10)
	case map[string]any:
		if err := e.container(depth, len(x), maxKeys, "keys; nested objects must have fewer than 255"); err != nil {
			return err
		}
		_, err := e.object(x, depth+1, "")
		return err
	case []any:
		if err := e.container(depth, len(x), maxElements, "elements; arrays must have fewer than 255"); err != nil {
			return err
		}
		e.buf = append(e.buf, '[')
		for i, el := range x {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			e.push("", i)
			if err := e.value(el, depth+1); err != nil {
				return err
			}
			e.pop()
		}
		e.buf = append(e.buf, ']')
	case []string:
		if err := e.container(depth, len(x), maxElements, "elements; arrays must have fewer than 255"); err != nil {
			return err
		}
		e.buf = append(e.buf, '[')
		for i, s := range x {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			e.push("", i)
			if err := e.value(s, depth+1); err != nil {
				return err
			}
			e.pop()
		}
		e.buf = append(e.buf, ']')
	default:
		return e.reject("has a value of unsupported type %T", v)
	}
	return nil
}

// container checks the limits on an object or array of n members.
func (e *encoder) container(depth, n, most int, what string) *RejectError {
	if !e.limits {
		return nil
	}
	if depth+1 > maxDepth {
		return e.reject("is nested more than %d levels deep", maxDepth)
	}
	if n > most {
		return e.reject("has %d %s", n, what)
	}
	return nil
}

// object appends m with sorted keys. When mark is set, it also returns
// the offset in e.buf where a member with key mark would go, for
// Normalize to splice in a derived $insert_id without encoding twice.
func (e *encoder) object(m map[string]any, depth int, mark string) (int, *RejectError) {
	base := len(e.keys)
	for k := range m {
		e.keys = append(e.keys, k)
	}
	keys := e.keys[base:]
	slices.Sort(keys)

	e.buf = append(e.buf, '{')
	markAt := -1
	for i, k := range keys {
		if mark != "" && markAt < 0 && k > mark {
			markAt = len(e.buf)
		}
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		e.push(k, -1)
		var ok bool
		if e.buf, ok = appendString(e.buf, k); !ok {
			return 0, e.reject("has a name that is not valid UTF-8")
		}
		e.buf = append(e.buf, ':')
		if err := e.value(m[k], depth); err != nil {
			return 0, err
		}
		e.pop()
	}
	e.keys = e.keys[:base]
	if markAt < 0 {
		markAt = len(e.buf)
	}
	e.buf = append(e.buf, '}')
	return markAt, nil
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string the way encoding/json does with
// HTML escaping off. It reports false when s is not valid UTF-8.
func appendString(dst []byte, s string) ([]byte, bool) {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			return dst, false
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xf])
			start = i + size
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"'), true
}

// appendFloat formats f like encoding/json (ES6 number formatting).
func appendFloat(dst []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// isValidNumber reports whether s is a JSON number literal (RFC 8259 §6).
func isValidNumber(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '-' {
		s = s[1:]
		if s == "" {
			return false
		}
	}
	switch {
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		s = s[1:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	default:
		return false
	}
	if len(s) >= 2 && s[0] == '.' && '0' <= s[1] && s[1] <= '9' {
		s = s[2:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s[0] == '+' || s[0] == '-' {
			s = s[1:]
			if s == "" {
				return false
			}
		}
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	return s == ""
}
