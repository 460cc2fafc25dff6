package mixpanel

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxRecordBytes is the size a normalised record must stay under:
// Mixpanel refuses events and profile updates of 1 MB or more.
const MaxRecordBytes = 1_000_000

// maxIDChars is the longest event name or distinct_id accepted: Mixpanel
// cuts strings at 255 characters.
const maxIDChars = 255

// RejectError says why a record cannot be sent to Mixpanel.
type RejectError struct {
	// Field is the offending field as a path ("properties.time",
	// "properties.cart[3].sku", "$set.plan"), or "" for the whole record.
	Field string
	// Reason says what is wrong with it, for people.
	Reason string
}

func (e *RejectError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

// Normalize validates rec against Mixpanel's rules for obj and returns it
// as one compact JSON line (no line break) with sorted keys, ready for a
// CE bulk upload. now anchors the "not more than 1 hour in the future"
// rule. A record that breaks a rule gives a *RejectError; rec itself is
// never modified. See the package documentation for the rules.
func Normalize(obj Object, rec map[string]any, now time.Time) ([]byte, error) {
	var out []byte
	var err *RejectError
	switch obj {
	case Activities:
		out, err = normalizeActivity(rec, now)
	case Users:
		out, err = normalizeUser(rec)
	default:
		return nil, fmt.Errorf("normalize: unknown Mixpanel object %q", obj)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// activity is an event after the per-field checks.
type activity struct {
	event      string
	props      map[string]any // a copy, with time and distinct_id converted; $insert_id only when given
	time       int64
	distinctID string
	insertID   string // "" when it is to be derived
}

// parseActivity checks and converts an event's fields. The time window is
// checked only when now is set.
func parseActivity(rec map[string]any, now time.Time) (activity, *RejectError) {
	var a activity
	if k, found := firstKey(rec, func(k string) bool { return k != "event" && k != "properties" }); found {
		return a, &RejectError{Field: k, Reason: `is not allowed at the top level of an event, which has only "event" and "properties"`}
	}
	ev, ok := rec["event"]
	if !ok {
		return a, &RejectError{Field: "event", Reason: "is missing"}
	}
	if a.event, ok = idText(ev); !ok {
		return a, &RejectError{Field: "event", Reason: "must be a string, got " + kind(ev)}
	}
	if strings.TrimSpace(a.event) == "" {
		return a, &RejectError{Field: "event", Reason: "must not be empty"}
	}
	if n := utf8.RuneCountInString(a.event); n > maxIDChars {
		return a, &RejectError{Field: "event", Reason: fmt.Sprintf("is %d characters long; the limit is %d", n, maxIDChars)}
	}

	rawProps, ok := rec["properties"]
	if !ok {
		return a, &RejectError{Field: "properties", Reason: "is missing"}
	}
	props, ok := rawProps.(map[string]any)
	if !ok {
		return a, &RejectError{Field: "properties", Reason: "must be an object, got " + kind(rawProps)}
	}

	t, ok := props["time"]
	if !ok {
		return a, &RejectError{Field: "properties.time", Reason: "is missing"}
	}
	var reason string
	if a.time, reason = eventTime(t); reason == "" && !now.IsZero() {
		reason = checkTime(a.time, now)
	}
	if reason != "" {
		return a, &RejectError{Field: "properties.time", Reason: reason}
	}

	did, ok := props["distinct_id"]
	if !ok {
		return a, &RejectError{Field: "properties.distinct_id", Reason: `is missing; use "" for an event that belongs to no user`}
	}
	if a.distinctID, reason = distinctID(did); reason != "" {
		return a, &RejectError{Field: "properties.distinct_id", Reason: reason}
	}

	if v, ok := props["$insert_id"]; ok && v != nil && v != "" {
		if a.insertID, reason = insertID(v); reason != "" {
			return a, &RejectError{Field: "properties.$insert_id", Reason: reason}
		}
	}

	a.props = make(map[string]any, len(props)+1)
	for k, v := range props {
		a.props[k] = v
	}
	a.props["time"] = a.time
	a.props["distinct_id"] = a.distinctID
	if a.insertID == "" {
		delete(a.props, "$insert_id")
	} else {
		a.props["$insert_id"] = a.insertID
	}
	return a, nil
}

func normalizeActivity(rec map[string]any, now time.Time) ([]byte, *RejectError) {
	a, err := parseActivity(rec, now)
	if err != nil {
		return nil, err
	}
	derive := a.insertID == ""
	if n := len(a.props) + btoi(derive); n > maxProperties {
		return nil, &RejectError{Field: "properties", Reason: fmt.Sprintf("has %d properties; Mixpanel accepts fewer than 255", n)}
	}

	e := newEncoder(true)
	defer e.free()
	e.buf = append(e.buf, `{"event":`...)
	var ok bool
	if e.buf, ok = appendString(e.buf, a.event); !ok {
		return nil, &RejectError{Field: "event", Reason: "is not valid UTF-8"}
	}
	e.buf = append(e.buf, `,"properties":`...)
	start := len(e.buf)
	mark := ""
	if derive {
		mark = "$insert_id"
	}
	e.push("properties", -1)
	at, err := e.object(a.props, 0, mark)
	if err != nil {
		return nil, err
	}
	if derive {
		// The id hashes the properties as encoded so far; splice it in
		// where sorting puts it rather than encoding them again.
		id := e.deriveInsertID(start, a.event, a.distinctID, a.time)
		var member []byte
		if at > start+1 {
			member = append(member, ',')
		}
		member = append(member, `"$insert_id":"`...)
		member = append(member, id[:]...)
		member = append(member, '"')
		if at == start+1 && len(a.props) > 0 {
			member = append(member, ',')
		}
		e.buf = slices.Insert(e.buf, at, member...)
	}
	e.buf = append(e.buf, '}')
	if len(e.buf) >= MaxRecordBytes {
		return nil, tooBig(len(e.buf))
	}
	return e.buf, nil
}

func tooBig(n int) *RejectError {
	return &RejectError{Reason: fmt.Sprintf("the record is %d bytes as JSON; Mixpanel accepts less than %d", n, MaxRecordBytes)}
}

// User profile update keys (reference §5.5).
var (
	userOps    = []string{"$set", "$set_once", "$add", "$union", "$append", "$remove", "$unset", "$delete"}
	userExtras = []string{"$token", "$ip", "$time", "$ignore_time", "$ignore_alias", "$latitude", "$longitude"}
)

func isUserKey(k string) bool {
	return k == "$distinct_id" || slices.Contains(userOps, k) || slices.Contains(userExtras, k)
}

func normalizeUser(rec map[string]any) ([]byte, *RejectError) {
	if k, found := firstKey(rec, func(k string) bool { return !isUserKey(k) }); found {
		reason := "is not a profile update field; profile properties go under $set"
		if k == "distinct_id" {
			reason = "is not a profile update field; did you mean $distinct_id?"
		}
		return nil, &RejectError{Field: k, Reason: reason}
	}
	did, ok := rec["$distinct_id"]
	if !ok {
		return nil, &RejectError{Field: "$distinct_id", Reason: "is missing"}
	}
	id, reason := distinctID(did)
	if reason == "" && strings.TrimSpace(id) == "" {
		reason = "must not be empty"
	}
	if reason != "" {
		return nil, &RejectError{Field: "$distinct_id", Reason: reason}
	}

	ops := 0
	for _, op := range userOps {
		if _, ok := rec[op]; ok {
			ops++
		}
	}
	if ops == 0 {
		return nil, &RejectError{Reason: "the profile update has no operation: " +
			"expected one of $set, $set_once, $add, $union, $append, $remove, $unset or $delete"}
	}
	if _, ok := rec["$delete"]; ok && ops > 1 {
		return nil, &RejectError{Field: "$delete", Reason: "cannot be combined with other operations"}
	}
	for _, op := range userOps {
		v, ok := rec[op]
		if !ok {
			continue
		}
		if err := checkOp(op, v); err != nil {
			return nil, err
		}
	}
	for _, k := range userExtras {
		v, ok := rec[k]
		if !ok {
			continue
		}
		if reason := checkExtra(k, v); reason != "" {
			return nil, &RejectError{Field: k, Reason: reason}
		}
	}

	out := make(map[string]any, len(rec))
	for k, v := range rec {
		out[k] = v
	}
	out["$distinct_id"] = id
	if _, ok := out["$delete"]; ok {
		out["$delete"] = ""
	}
	e := newEncoder(false)
	defer e.free()
	if _, err := e.object(out, 0, ""); err != nil {
		return nil, err
	}
	if len(e.buf) >= MaxRecordBytes {
		return nil, tooBig(len(e.buf))
	}
	return e.buf, nil
}

// checkOp checks the value of one profile operation.
func checkOp(op string, v any) *RejectError {
	switch op {
	case "$delete":
		return nil // any value; sent as ""
	case "$unset":
		var names []any
		switch x := v.(type) {
		case []any:
			names = x
		case []string:
			if len(x) == 0 {
				return &RejectError{Field: op, Reason: "is empty"}
			}
			return nil
		default:
			return &RejectError{Field: op, Reason: "must be an array of property names, got " + kind(v)}
		}
		if len(names) == 0 {
			return &RejectError{Field: op, Reason: "is empty"}
		}
		for i, n := range names {
			if _, ok := n.(string); !ok {
				return &RejectError{Field: fmt.Sprintf("%s[%d]", op, i), Reason: "must be a property name (a string), got " + kind(n)}
			}
		}
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return &RejectError{Field: op, Reason: "must be an object, got " + kind(v)}
	}
	if len(m) == 0 {
		return &RejectError{Field: op, Reason: "is empty"}
	}
	if op != "$add" && op != "$union" {
		return nil
	}
	for _, k := range sortedKeys(m) {
		switch op {
		case "$add":
			if _, ok := number(m[k]); !ok {
				return &RejectError{Field: op + "." + k, Reason: "must be a number to add, got " + kind(m[k])}
			}
		case "$union":
			switch m[k].(type) {
			case []any, []string:
			default:
				return &RejectError{Field: op + "." + k, Reason: "must be an array of values to merge, got " + kind(m[k])}
			}
		}
	}
	return nil
}

// checkExtra checks an optional profile update field.
func checkExtra(k string, v any) string {
	switch k {
	case "$token":
		if s, ok := v.(string); !ok || s == "" {
			return "must be a non-empty string"
		}
	case "$ip":
		if _, ok := idText(v); !ok {
			return "must be a string, got " + kind(v)
		}
	case "$time":
		if f, ok := number(v); !ok || f < 0 {
			return "must be a number of milliseconds since the epoch"
		}
	case "$ignore_time", "$ignore_alias":
		if _, ok := v.(bool); !ok {
			return "must be true or false, got " + kind(v)
		}
	case "$latitude", "$longitude":
		limit := 90.0
		if k == "$longitude" {
			limit = 180
		}
		if f, ok := number(v); !ok || f < -limit || f > limit {
			return fmt.Sprintf("must be a number between %g and %g", -limit, limit)
		}
	}
	return ""
}

// distinctID converts a distinct_id (string or number) and checks it.
func distinctID(v any) (string, string) {
	id, ok := idText(v)
	if !ok {
		return "", "must be a string or a number, got " + kind(v)
	}
	if blockedID(id) {
		return "", fmt.Sprintf("%q is a placeholder value that Mixpanel rejects", id)
	}
	if n := utf8.RuneCountInString(id); n > maxIDChars {
		return "", fmt.Sprintf("is %d characters long; Mixpanel cuts strings at %d, which would merge different users", n, maxIDChars)
	}
	return id, ""
}

// idText returns the text of a string or a number.
func idText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return string(x), true
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return "", false
		}
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case int:
		return strconv.Itoa(x), true
	case int32:
		return strconv.FormatInt(int64(x), 10), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case uint64:
		return strconv.FormatUint(x, 10), true
	}
	return "", false
}

// number returns the value of a JSON number.
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		if !isValidNumber(string(x)) {
			return 0, false
		}
		f, err := strconv.ParseFloat(string(x), 64)
		return f, err == nil
	case float64:
		return x, !math.IsNaN(x) && !math.IsInf(x, 0)
	case int:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	}
	return 0, false
}

// firstKey returns the smallest key of m that matches, and whether there
// is one.
func firstKey(m map[string]any, match func(string) bool) (string, bool) {
	first, found := "", false
	for k := range m {
		if match(k) && (!found || k < first) {
			first, found = k, true
		}
	}
	return first, found
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
