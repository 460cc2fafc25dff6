package mixpanel

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
)

// Object is a Mixpanel object as the CE element names it.
type Object string

// The objects CE's Mixpanel element moves in bulk.
const (
	Activities Object = "activities" // events
	Users      Object = "users"      // people profiles
)

// CSVShape is FromCSVRow for o; its method value fits
// recordio.Options.CSVShape.
func (o Object) CSVShape(row map[string]any) map[string]any { return FromCSVRow(o, row) }

// csvPrefixes map column name prefixes of a users CSV to the operation
// they feed.
var csvPrefixes = []string{"$set.", "$set_once.", "$add."}

// FromCSVRow maps a flat, typed CSV row (as recordio reads it) to the
// shape Normalize expects for obj. It never fails: whatever does not fit
// is left for Normalize to reject with a reason.
//
// Activities: the column "event" becomes the event name; "time",
// "distinct_id" and "$insert_id" and every other column become
// properties.
//
// Users: the column "$distinct_id" (or, when the row has no value there,
// "distinct_id") becomes $distinct_id. Columns named like a profile update field
// ("$token", "$ip", "$time", "$ignore_time", "$ignore_alias",
// "$latitude", "$longitude", and the operations "$set", "$unset", ...)
// stay at the top level. Columns "$set_once.<name>" and "$add.<name>" go
// to $set_once and $add as <name>, "$set.<name>" to $set as <name>, and
// every other column to $set. Operations that would be empty are left
// out. When two columns name the same property, the one whose column
// name sorts last wins.
//
// Cells CSV typing turned into numbers or booleans are turned back into
// their text where Mixpanel wants text: the event name, distinct_id,
// $distinct_id and $insert_id ("12157" stays "12157"; a boolean cell
// reads "true" or "false").
func FromCSVRow(obj Object, row map[string]any) map[string]any {
	switch obj {
	case Activities:
		props := make(map[string]any, len(row))
		out := map[string]any{"properties": props}
		for k, v := range row {
			switch k {
			case "event":
				out[k] = csvText(v)
			case "distinct_id", "$insert_id":
				props[k] = csvText(v)
			default:
				props[k] = v
			}
		}
		return out
	case Users:
		idColumn := "distinct_id"
		if _, ok := row["$distinct_id"]; ok {
			idColumn = "$distinct_id"
		}
		out := make(map[string]any, 4)
		ops := map[string]map[string]any{}
		keys := make([]string, 0, len(row))
		for k := range row {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			v := row[k]
			switch {
			case k == idColumn:
				out["$distinct_id"] = csvText(v)
				continue
			case isUserKey(k) && k != "$distinct_id":
				out[k] = v
				continue
			}
			op, name := "$set", k
			for _, p := range csvPrefixes {
				if rest, ok := strings.CutPrefix(k, p); ok && rest != "" {
					op, name = strings.TrimSuffix(p, "."), rest
					break
				}
			}
			if ops[op] == nil {
				ops[op] = make(map[string]any, len(row))
			}
			ops[op][name] = v
		}
		for op, m := range ops {
			if _, taken := out[op]; !taken {
				out[op] = m
			}
		}
		return out
	}
	return row
}

// csvText turns a typed CSV cell back into text.
func csvText(v any) any {
	switch x := v.(type) {
	case json.Number:
		return string(x)
	case bool:
		return strconv.FormatBool(x)
	}
	return v
}
