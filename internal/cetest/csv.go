package cetest

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"
)

// maxCSVRowBytes bounds the bytes of one CSV row, quoted line breaks
// included, so that a runaway quoted field cannot grow without limit. It is
// Mixpanel's record limit plus room for the CSV reader's read-ahead.
const maxCSVRowBytes = maxRecordBytes + 64<<10

// errCSVRowTooLarge ends the reading of a CSV file with a row over
// maxCSVRowBytes.
var errCSVRowTooLarge = errors.New("CSV row is larger than 1 MB")

// Where a CSV column goes in the record built from a row.
const (
	csvTop    = iota // a top-level key: event, $distinct_id, or any key of another object
	csvNested        // under properties (activities) or $set (users)
)

// csvColumn is one column of an uploaded CSV file.
type csvColumn struct {
	key     string // the JSON key of the value
	place   int    // csvTop or csvNested
	typed   bool   // a plain decimal cell becomes a JSON number
	keyJSON []byte // key, encoded as a JSON string
}

// csvMapping turns the rows of a CSV file of one object into records of the
// shape a JSON upload of that object has.
type csvMapping struct {
	object string
	cols   []csvColumn
	nested bool // some column goes under properties or $set
}

// newCSVMapping maps header to columns:
//
//   - activities: event is the event name; every other column is a
//     property (time, distinct_id, $insert_id and the rest), with the
//     properties. prefix of the emulator's CSV downloads removed;
//   - users: $distinct_id or distinct_id is the profile's $distinct_id;
//     every other column is a property under $set, with the $set. or
//     $properties. prefix of the emulator's CSV downloads removed;
//   - any other object: every column is a top-level key.
//
// Identifiers (event, distinct_id, $insert_id, $distinct_id) stay strings;
// other cells that are plain decimal numbers become JSON numbers. A header
// with an empty name, or two columns with one destination, is an error.
func newCSVMapping(object string, header []string) (*csvMapping, error) {
	m := &csvMapping{object: object, cols: make([]csvColumn, len(header))}
	type dest struct {
		place int
		key   string
	}
	seen := make(map[dest]string, len(header))
	for i, name := range header {
		if name == "" {
			return nil, apiErrorf(http.StatusBadRequest, "Invalid CSV header: column %d has no name", i+1)
		}
		c := csvColumn{key: name, place: csvNested, typed: true}
		switch object {
		case "activities":
			c.key = strings.TrimPrefix(name, "properties.")
			switch {
			case name == "event":
				c.place, c.typed = csvTop, false
			case c.key == "distinct_id" || c.key == "$insert_id":
				c.typed = false
			}
		case "users":
			switch {
			case name == "$distinct_id" || name == "distinct_id":
				c.key, c.place, c.typed = "$distinct_id", csvTop, false
			case strings.HasPrefix(name, "$set."):
				c.key = strings.TrimPrefix(name, "$set.")
			case strings.HasPrefix(name, "$properties."):
				c.key = strings.TrimPrefix(name, "$properties.")
			}
		default:
			c.place = csvTop
		}
		d := dest{c.place, c.key}
		if other, dup := seen[d]; dup {
			return nil, apiErrorf(http.StatusBadRequest, "Invalid CSV header: columns %q and %q both hold %q", other, name, c.key)
		}
		seen[d] = name
		c.keyJSON = appendJSONString(nil, c.key)
		m.cols[i] = c
		m.nested = m.nested || c.place == csvNested
	}
	return m, nil
}

// appendRecord appends the JSON record of row (one cell per column) to b.
// An empty cell is an absent field.
func (m *csvMapping) appendRecord(b []byte, row []string) []byte {
	b = append(b, '{')
	n := 0
	b, n = m.appendFields(b, row, csvTop, n)
	var name string
	switch m.object {
	case "activities":
		name = "properties" // always present: a CSV row is flat
	case "users":
		if m.nested {
			name = "$set"
		}
	}
	if name != "" {
		if n > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":{`...)
		b, _ = m.appendFields(b, row, csvNested, 0)
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendFields appends the non-empty cells of row whose column goes to
// place, as "key":value pairs after n earlier ones.
func (m *csvMapping) appendFields(b []byte, row []string, place, n int) ([]byte, int) {
	for i, c := range m.cols {
		if c.place != place || row[i] == "" {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, c.keyJSON...)
		b = append(b, ':')
		if c.typed && plainNumber(row[i]) {
			b = append(b, row[i]...)
		} else {
			b = appendJSONString(b, row[i])
		}
	}
	return b, n
}

// readCSV consumes a CSV file with a header row from br. Every data row
// (from index 0; blank lines are skipped) becomes a record checked like a
// record of a JSON file; a row whose field count differs from the header's
// is a failed record. A file the CSV reader cannot parse (a stray quote, an
// unterminated quoted field, a row over 1 MB) is an error.
func (u *uploader) readCSV(br *bufio.Reader) error {
	guard := &csvGuard{r: br}
	cr := csv.NewReader(guard)
	cr.FieldsPerRecord = -1 // counted here, so that a bad row fails alone
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return csvError(err)
	}
	m, err := newCSVMapping(u.object, header)
	if err != nil {
		return err
	}
	var buf []byte
	for {
		guard.start = cr.InputOffset()
		row, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return csvError(err)
		}
		if len(row) != len(m.cols) {
			u.reject("", fmt.Sprintf("row has %d fields, the header has %d", len(row), len(m.cols)), csvFields(row))
			continue
		}
		buf = m.appendRecord(buf[:0], row)
		u.check(buf)
	}
}

// csvError maps an error of the CSV reader to CE's answer.
func csvError(err error) error {
	if pe, ok := errors.AsType[*csv.ParseError](err); ok {
		return apiErrorf(http.StatusBadRequest, "Invalid CSV file at line %d: %v", pe.Line, pe.Err)
	}
	if errors.Is(err, errCSVRowTooLarge) {
		return apiErrorf(http.StatusBadRequest, "Invalid CSV file: %v", err)
	}
	return apiErrorf(http.StatusBadRequest, "Cannot read file: %v", err)
}

// csvFields returns the cells of a row as a JSON array of strings, the
// record of a row that could not be mapped.
func csvFields(row []string) []byte {
	b := []byte{'['}
	for i, v := range row {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, v)
	}
	return append(b, ']')
}

// csvGuard fails a read once more than maxCSVRowBytes have been read since
// start, the offset where the current row began, so a CSV reader over it
// holds at most about one row of memory.
type csvGuard struct {
	r           io.Reader
	read, start int64
}

func (g *csvGuard) Read(p []byte) (int, error) {
	if g.read-g.start > maxCSVRowBytes {
		return 0, errCSVRowTooLarge
	}
	n, err := g.r.Read(p)
	g.read += int64(n)
	return n, err
}

// plainNumber reports whether s is a decimal number written one way only:
// an optional minus, no leading zero (so "007" stays a string), an optional
// fraction, no exponent, no spaces.
func plainNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i == len(s):
		return false
	case s[i] == '0':
		i++
	case '1' <= s[i] && s[i] <= '9':
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		j := i
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		if i == j {
			return false
		}
	}
	return i == len(s)
}

// appendJSONString appends s as a JSON string, without HTML escaping.
// Invalid UTF-8 becomes U+FFFD, as with encoding/json.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, `\n`...)
			case c == '\r':
				b = append(b, `\r`...)
			case c == '\t':
				b = append(b, `\t`...)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
