package mptest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Bounds of /import's time window: not before 1971-01-01, not more than an
// hour ahead of the emulator's clock.
var minEventTime = time.Date(1971, 1, 1, 0, 0, 0, 0, time.UTC)

const maxFuture = time.Hour

// placeholders are the distinct_id (and $insert_id) values Mixpanel refuses.
var placeholders = map[string]bool{
	"00000000-0000-0000-0000-000000000000": true, "anon": true, "anonymous": true, "nil": true,
	"none": true, "null": true, "n/a": true, "na": true, "undefined": true, "unknown": true,
	"<nil>": true, "0": true, "-1": true, "true": true, "false": true, "[]": true, "{}": true,
}

// Limits of one event's properties.
const (
	maxProperties = 254 // "fewer than 255 properties"
	maxNestedKeys = 254 // "nested objects must have fewer than 255 keys"
	maxArrayItems = 254 // "arrays must have fewer than 255 elements"
	maxDepth      = 3   // "max nesting depth is 3"
)

// failedRecord is one element of a strict 400's failed_records. The insert
// id is under "$insert_id" or "insert_id", as Options.InsertIDKey says.
type failedRecord struct {
	Index    int
	InsertID string
	Field    string
	Message  string
}

func (fr failedRecord) fields(key string) map[string]any {
	m := map[string]any{"index": fr.Index, "field": fr.Field, "message": fr.Message}
	if fr.InsertID != "" {
		m[key] = fr.InsertID
	}
	return m
}

// importAnswer is /import's 200 and 400 body.
type importAnswer struct {
	Code          int              `json:"code"`
	Error         string           `json:"error,omitempty"`
	FailedRecords []map[string]any `json:"failed_records,omitempty"`
	Imported      int              `json:"num_records_imported"`
	Status        string           `json:"status"`
}

// handleImport serves POST /import.
func (f *Fake) handleImport(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if ae := f.checkServiceAccount(r, q.Get("project_id"), true); ae != nil {
		f.writeStatus(w, r, RouteImport, ae.code, ae.msg)
		return
	}
	fail := func(code int, msg string) { f.writeStatus(w, r, RouteImport, code, msg) }
	body, code, msg := readBody(r, f.opts.MaxImportBytes)
	if code != 0 {
		fail(code, msg)
		return
	}
	if !f.allowIngest(int64(len(body))) {
		fail(http.StatusTooManyRequests, rateLimitMessage)
		return
	}
	recs, err := splitImport(body, r.Header.Get("Content-Type"))
	if err != nil {
		fail(http.StatusBadRequest, err.Error())
		return
	}
	switch {
	case len(recs) == 0:
		fail(http.StatusBadRequest, "request body contains no events")
		return
	case len(recs) > MaxImportEvents:
		fail(http.StatusRequestEntityTooLarge, fmt.Sprintf("request exceeds max limit of %d events", MaxImportEvents))
		return
	}

	now := f.now()
	var failed []failedRecord
	var good []Event
	for i, raw := range recs {
		ev, fr := checkEvent(raw, now)
		if fr != nil {
			fr.Index = i
			failed = append(failed, *fr)
			continue
		}
		good = append(good, ev)
	}
	f.storeEvents(good)

	if len(failed) == 0 || q.Get("strict") != "1" {
		writeJSON(w, http.StatusOK, importAnswer{Code: 200, Imported: len(good), Status: "OK"})
		return
	}
	ans := importAnswer{Code: 400, Error: "some data points in the request failed validation",
		Imported: len(good), Status: "Bad Request"}
	for _, fr := range failed {
		ans.FailedRecords = append(ans.FailedRecords, fr.fields(f.insertIDKey()))
	}
	writeJSON(w, http.StatusBadRequest, ans)
}

// storeEvents stores accepted events, deduplicated, and counts them.
func (f *Fake) storeEvents(good []Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ev := range good {
		f.imported++
		if f.opts.DiscardImports {
			f.discarded++
			continue
		}
		if f.store.put(ev) {
			f.dupes++
		}
	}
}

func (f *Fake) insertIDKey() string {
	if f.opts.InsertIDKey == "insert_id" {
		return "insert_id"
	}
	return "$insert_id"
}

// readBody reads an ingestion body, gunzipped when Content-Encoding says
// gzip, refusing with 413 one larger than limit uncompressed.
func readBody(r *http.Request, limit int64) ([]byte, int, string) {
	var src io.Reader = r.Body
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, http.StatusBadRequest, "unable to decompress request body: not gzip"
		}
		defer zr.Close()
		src = zr
	default:
		return nil, http.StatusUnsupportedMediaType, fmt.Sprintf("unsupported Content-Encoding %q", enc)
	}
	body, err := io.ReadAll(io.LimitReader(src, limit+1))
	if err != nil {
		return nil, http.StatusBadRequest, "unable to read request body: " + err.Error()
	}
	if int64(len(body)) > limit {
		return nil, http.StatusRequestEntityTooLarge, fmt.Sprintf("request exceeds max limit of %d bytes", limit)
	}
	return body, 0, ""
}

// splitImport splits an /import body: JSON lines when Content-Type is
// application/x-ndjson or the body starts with '{', else a JSON array. A
// broken array refuses the request; a broken line fails its record only
// (it is kept as is and fails checkEvent).
func splitImport(body []byte, contentType string) ([]json.RawMessage, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	body = bytes.TrimSpace(body)
	if mt == "application/x-ndjson" || (len(body) > 0 && body[0] == '{') {
		var out []json.RawMessage
		for line := range bytes.Lines(body) {
			if line = bytes.TrimSpace(line); len(line) > 0 {
				out = append(out, line)
			}
		}
		return out, nil
	}
	if len(body) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('[') {
		return nil, errors.New("unable to parse request body: expected a JSON array or JSON lines")
	}
	var out []json.RawMessage
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("unable to parse request body: %v", err)
		}
		out = append(out, raw)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("unable to parse request body: %v", err)
	}
	return out, nil
}

// checkEvent applies /import's rules to one record and returns its stored
// form, or why it fails.
func checkEvent(raw json.RawMessage, now time.Time) (Event, *failedRecord) {
	bad := func(field, format string, args ...any) *failedRecord {
		return &failedRecord{Field: field, Message: fmt.Sprintf(format, args...)}
	}
	if len(raw) >= MaxEventBytes {
		return Event{}, bad("", "event is too large: must be smaller than 1MB of uncompressed JSON")
	}
	var rec map[string]json.RawMessage
	if err := json.Unmarshal(raw, &rec); err != nil {
		return Event{}, bad("", "event is invalid: must be a JSON object")
	}
	var props map[string]json.RawMessage
	if p, ok := rec["properties"]; !ok || json.Unmarshal(p, &props) != nil || props == nil {
		return Event{}, bad("properties", "'properties' is required and must be a JSON object")
	}
	var fr *failedRecord
	insertID, idOK := stringValue(props["$insert_id"])
	setFail := func(f *failedRecord) {
		if fr == nil {
			fr = f
			if idOK {
				fr.InsertID = insertID
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(rec)) {
		if k != "event" && k != "properties" {
			setFail(bad(k, "'%s' is not allowed: an event has only event and properties", k))
		}
	}
	name, ok := stringValue(rec["event"])
	switch {
	case rec["event"] == nil:
		setFail(bad("event", "'event' is required"))
	case !ok || strings.TrimSpace(name) == "":
		setFail(bad("event", "'event' is invalid: must be a non-empty string"))
	case !utf8.ValidString(name):
		setFail(bad("event", "'event' is invalid: string should be valid utf8"))
	}
	var at time.Time
	if t, ok := props["time"]; !ok {
		setFail(bad("properties.time", "'properties.time' is required"))
	} else {
		var secs float64
		if json.Unmarshal(t, &secs) != nil {
			setFail(bad("properties.time", "'properties.time' is invalid: must be specified as seconds since epoch"))
		} else {
			at = epochTime(secs)
			switch {
			case at.Before(minEventTime):
				setFail(bad("properties.time", "'properties.time' is invalid: must be after 1971-01-01"))
			case at.After(now.Add(maxFuture)):
				setFail(bad("properties.time", "'properties.time' is invalid: must not be more than 1 hour in the future"))
			case at.After(now):
				at = now.UTC().Truncate(time.Millisecond) // "overwritten with the current present time"
			}
		}
	}
	if d, ok := props["distinct_id"]; !ok {
		setFail(bad("properties.distinct_id", "'properties.distinct_id' is required"))
	} else if id, isStr := stringValue(d); !isStr && !isNumber(d) {
		setFail(bad("properties.distinct_id", "'properties.distinct_id' is invalid: must be a string"))
	} else if placeholders[strings.ToLower(strings.TrimSpace(jsonText(d)))] {
		setFail(bad("properties.distinct_id", "'properties.distinct_id' is invalid: %q is not allowed as a distinct_id", id))
	}
	switch {
	case props["$insert_id"] == nil:
		setFail(bad("properties.$insert_id", "'properties.$insert_id' is required"))
	case !idOK:
		setFail(bad("properties.$insert_id", "'properties.$insert_id' is invalid: must be a string"))
	case !validInsertID(insertID):
		setFail(bad("properties.$insert_id", "'properties.$insert_id' is invalid: must be at most 36 bytes of alphanumeric characters or '-'"))
	}
	if len(props) > maxProperties {
		setFail(bad("properties", "'properties' is invalid: an event must have fewer than 255 properties"))
	}
	for _, k := range slices.Sorted(maps.Keys(props)) { // the first failure in key order
		v := props[k]
		if !utf8.Valid(v) || !utf8.ValidString(k) {
			setFail(bad("properties."+k, "'properties.%s' is invalid: string should be valid utf8", k))
			continue
		}
		if msg := checkValue(v, 2); msg != "" {
			setFail(bad("properties."+k, "'properties.%s' is invalid: %s", k, msg))
		}
	}
	if fr != nil {
		return Event{}, fr
	}
	return storedEvent(name, at, props, now), nil
}

// checkValue checks nesting, nested key counts and array lengths. depth
// is the level of raw: the properties object is level 1, so a property's
// value is level 2 and an object may appear down to level 3.
func checkValue(raw json.RawMessage, depth int) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || (raw[0] != '{' && raw[0] != '[') {
		return ""
	}
	if depth > maxDepth {
		return "nesting depth must be at most 3"
	}
	if raw[0] == '{' {
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return "invalid JSON object"
		}
		if len(m) > maxNestedKeys {
			return "nested objects must have fewer than 255 keys"
		}
		for _, v := range m {
			if msg := checkValue(v, depth+1); msg != "" {
				return msg
			}
		}
		return ""
	}
	var a []json.RawMessage
	if json.Unmarshal(raw, &a) != nil {
		return "invalid JSON array"
	}
	if len(a) > maxArrayItems {
		return "arrays must have fewer than 255 elements"
	}
	for _, v := range a {
		if msg := checkValue(v, depth+1); msg != "" {
			return msg
		}
	}
	return ""
}

func validInsertID(s string) bool {
	if s == "" || len(s) > 36 || placeholders[strings.ToLower(s)] {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func stringValue(raw json.RawMessage) (string, bool) {
	if n := len(raw); n >= 2 && raw[0] == '"' && raw[n-1] == '"' && bytes.IndexByte(raw[1:n-1], '\\') < 0 && bytes.IndexByte(raw[1:n-1], '"') < 0 {
		return string(raw[1 : n-1]), true // no escapes: the bytes are the value
	}
	var s string
	if raw == nil || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

func isNumber(raw json.RawMessage) bool {
	var n json.Number
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] != '"' && json.Unmarshal(raw, &n) == nil
}
