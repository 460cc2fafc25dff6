package mixpanel

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// maxInsertIDBytes is the longest $insert_id Mixpanel accepts.
const maxInsertIDBytes = 36

// blockedIDs are the values Mixpanel's /import refuses as distinct_id "to
// prevent accidental implementation mistakes"; the same list applies to
// $insert_id. Source: Mixpanel, "Import Events", sections
// properties.distinct_id and properties.$insert_id
// (https://docs.mixpanel.com/reference/import-events; mixpanel/docs
// reference/import-events.mdx), and "Server-side events with no logged-in
// user" (https://docs.mixpanel.com/troubleshooting/errors/server-side-events-without-a-user),
// which adds that such events fail validation with a 400. The docs do not
// say whether the match ignores case and surrounding blank space; we
// assume it does, so "NULL" and " none " are refused as well.
var blockedIDs = map[string]bool{
	"00000000-0000-0000-0000-000000000000": true,
	"anon":                                 true,
	"anonymous":                            true,
	"nil":                                  true,
	"none":                                 true,
	"null":                                 true,
	"n/a":                                  true,
	"na":                                   true,
	"undefined":                            true,
	"unknown":                              true,
	"<nil>":                                true,
	"0":                                    true,
	"-1":                                   true,
	"true":                                 true,
	"false":                                true,
	"[]":                                   true,
	"{}":                                   true,
}

func blockedID(id string) bool {
	id = strings.TrimSpace(id)
	if len(id) > len("00000000-0000-0000-0000-000000000000") {
		return false
	}
	return blockedIDs[strings.ToLower(id)]
}

// insertID converts a given $insert_id (string or number) and checks it.
func insertID(v any) (string, string) {
	id, ok := idText(v)
	if !ok {
		return "", "must be a string, got " + kind(v)
	}
	if len(id) > maxInsertIDBytes {
		return "", fmt.Sprintf("is %d bytes long; the limit is %d", len(id), maxInsertIDBytes)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return "", fmt.Sprintf("may hold only letters, digits and '-'; %s is not allowed", describeByte(id, i))
		}
	}
	if blockedID(id) {
		return "", fmt.Sprintf("%q is a placeholder value that Mixpanel rejects", id)
	}
	return id, ""
}

func describeByte(s string, i int) string {
	if c := s[i]; c >= 0x20 && c < 0x7f {
		return fmt.Sprintf("%q", rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", s[i])
}

// InsertID returns the $insert_id Normalize sends for the event rec: the
// record's own properties.$insert_id when it has one (a string or number
// that is not empty), otherwise one derived from its content, so that
// importing the same event twice gives the same id and Mixpanel keeps
// one copy. The derived id is the first 32 hex digits of a SHA-256 over
// the canonical JSON (sorted keys) of the normalised properties without
// $insert_id, the event name, the distinct_id and the time in seconds.
// An event in seconds and the same event in milliseconds or as an
// ISO-8601 string get the same id; so do its CSV and JSON forms when the
// values are written the same way. For a record Normalize would reject,
// InsertID still returns a deterministic id, derived from the record as
// it is.
func InsertID(rec map[string]any) string {
	a, err := parseActivity(rec, time.Time{})
	if err == nil {
		if a.insertID != "" {
			return a.insertID
		}
		var e encoder
		if _, err := e.object(a.props, 0, ""); err == nil {
			id := e.deriveInsertID(0, a.event, a.distinctID, a.time)
			return string(id[:])
		}
	}
	if props, ok := rec["properties"].(map[string]any); ok {
		if id, ok := idText(props["$insert_id"]); ok && id != "" {
			return id
		}
	}
	var e encoder
	_ = e.value(rec, 0) // deterministic up to any error, which is enough here
	id := e.deriveInsertID(0, "", "", 0)
	return string(id[:])
}

// insertIDVersion starts the hashed text, so that a change of derivation
// would show.
const insertIDVersion = "cebulk/mixpanel/insert-id/v1"

// deriveInsertID hashes an event's canonical properties, e.buf[start:]
// (the JSON of the properties without $insert_id), and its identity. The
// hashed text is the properties, then the version, event, distinct_id
// and time, each of those prefixed with its length as a uvarint, then the
// length of the properties as 8 bytes big-endian, so that no two inputs
// run into each other. It is built after the properties in e.buf (and
// removed again) so that nothing is copied or allocated.
func (e *encoder) deriveInsertID(start int, event, distinctID string, sec int64) [32]byte {
	end := len(e.buf)
	e.buf = appendPart(e.buf, insertIDVersion)
	e.buf = appendPart(e.buf, event)
	e.buf = appendPart(e.buf, distinctID)
	var num [20]byte
	e.buf = appendPart(e.buf, string(strconv.AppendInt(num[:0], sec, 10)))
	e.buf = binary.BigEndian.AppendUint64(e.buf, uint64(end-start))
	sum := sha256.Sum256(e.buf[start:])
	e.buf = e.buf[:end]
	var id [32]byte
	hex.Encode(id[:], sum[:16])
	return id
}

func appendPart(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}
