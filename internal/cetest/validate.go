package cetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"time"
)

// minEventTime is the earliest properties.time Mixpanel accepts.
var minEventTime = time.Date(1971, 1, 1, 0, 0, 0, 0, time.UTC)

// The fields the rules look at. Decoding into structs of raw fields skips
// everything else, which keeps validation cheap for large uploads; a field
// absent from the record stays nil, a JSON null is "null".
type (
	activityFields struct {
		Event      json.RawMessage `json:"event"`
		Properties json.RawMessage `json:"properties"`
	}
	eventProperties struct {
		Time       json.RawMessage `json:"time"`
		DistinctID json.RawMessage `json:"distinct_id"`
		InsertID   json.RawMessage `json:"$insert_id"`
	}
	userFields struct {
		DistinctID json.RawMessage `json:"$distinct_id"`
		Set        json.RawMessage `json:"$set"`
		SetOnce    json.RawMessage `json:"$set_once"`
		Add        json.RawMessage `json:"$add"`
		Union      json.RawMessage `json:"$union"`
		Append     json.RawMessage `json:"$append"`
		Remove     json.RawMessage `json:"$remove"`
		Unset      json.RawMessage `json:"$unset"`
		Delete     json.RawMessage `json:"$delete"`
	}
)

// validateRecord applies Mixpanel's per-record rules (reference §5.4, §5.5)
// to raw and returns the failing field and a message, or an empty message
// when the record is acceptable. Objects other than activities and users
// only need to be JSON objects.
func validateRecord(object string, raw []byte, now time.Time) (field, msg string) {
	var err error
	var act activityFields
	var user userFields
	switch object {
	case "activities":
		err = json.Unmarshal(raw, &act)
	case "users":
		err = json.Unmarshal(raw, &user)
	default:
		err = json.Unmarshal(raw, new(map[string]json.RawMessage))
	}
	if _, syntax := errors.AsType[*json.SyntaxError](err); syntax {
		return "", "record is not valid JSON"
	}
	if err != nil || !isObject(raw) {
		return "", "record must be a JSON object"
	}
	switch object {
	case "activities":
		return validateActivity(act, now)
	case "users":
		return validateUser(user)
	}
	return "", ""
}

func validateActivity(a activityFields, now time.Time) (field, msg string) {
	var event string
	if a.Event == nil || json.Unmarshal(a.Event, &event) != nil || event == "" {
		return "event", "'event' must be a non-empty string"
	}
	var p eventProperties
	if !isObject(a.Properties) || json.Unmarshal(a.Properties, &p) != nil {
		return "properties", "'properties' must be an object"
	}
	if p.Time == nil {
		return "properties.time", "'properties.time' is required"
	}
	secs, err := strconv.ParseFloat(string(p.Time), 64)
	if err != nil || !isNumber(p.Time) {
		return "properties.time", "'properties.time' is invalid: must be specified as seconds since epoch"
	}
	switch t := epochTime(secs); {
	case t.Before(minEventTime):
		return "properties.time", "'properties.time' is invalid: must be after 1971-01-01"
	case t.After(now.Add(time.Hour)):
		return "properties.time", "'properties.time' is invalid: must not be more than 1 hour in the future"
	}
	if p.DistinctID == nil {
		return "properties.distinct_id", "'properties.distinct_id' is required"
	}
	if !isNumber(p.DistinctID) && !isString(p.DistinctID) {
		return "properties.distinct_id", "'properties.distinct_id' must be a string"
	}
	if p.InsertID != nil {
		var id string
		if json.Unmarshal(p.InsertID, &id) != nil || !validInsertID(id) {
			return "properties.$insert_id", "'properties.$insert_id' is invalid: must be 1 to 36 characters of [A-Za-z0-9-]"
		}
	}
	// 255 distinct keys take at least 255*5 bytes ("k":0,); count only then.
	if len(a.Properties) >= 255*5 {
		var all map[string]json.RawMessage
		if json.Unmarshal(a.Properties, &all) == nil && len(all) >= 255 {
			return "properties", "'properties' must have fewer than 255 properties"
		}
	}
	return "", ""
}

func validateUser(u userFields) (field, msg string) {
	if u.DistinctID == nil {
		return "$distinct_id", "'$distinct_id' is required"
	}
	var id string
	if !isNumber(u.DistinctID) && (json.Unmarshal(u.DistinctID, &id) != nil || id == "") {
		return "$distinct_id", "'$distinct_id' must be a non-empty string"
	}
	ops := []struct {
		name string
		raw  json.RawMessage
	}{
		{"$set", u.Set}, {"$set_once", u.SetOnce}, {"$add", u.Add}, {"$union", u.Union},
		{"$append", u.Append}, {"$remove", u.Remove}, {"$unset", u.Unset}, {"$delete", u.Delete},
	}
	n := 0
	for _, op := range ops {
		if op.raw == nil {
			continue
		}
		n++
		switch op.name {
		case "$delete":
		case "$unset":
			var names []string
			if json.Unmarshal(op.raw, &names) != nil || names == nil {
				return op.name, "'$unset' must be an array of property names"
			}
		default:
			if !isObject(op.raw) {
				return op.name, "'" + op.name + "' must be an object"
			}
		}
	}
	if n == 0 {
		return "", "record must contain one of $set, $set_once, $add, $union, $append, $remove, $unset, $delete"
	}
	return "", ""
}

func isObject(raw []byte) bool {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	return len(raw) > 0 && raw[0] == '{'
}

func isNumber(raw json.RawMessage) bool {
	return len(raw) > 0 && (raw[0] == '-' || '0' <= raw[0] && raw[0] <= '9')
}

func isString(raw json.RawMessage) bool { return len(raw) > 0 && raw[0] == '"' }

func validInsertID(id string) bool {
	if len(id) == 0 || len(id) > 36 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
