package mixpanel

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// event builds an event record with a valid time, distinct_id and
// $insert_id, then applies props: a nil value deletes the property.
func event(name any, props map[string]any) map[string]any {
	p := map[string]any{
		"time":        json.Number("1618716477"),
		"distinct_id": "u1",
		"$insert_id":  "id-1",
	}
	for k, v := range props {
		if v == nil {
			delete(p, k)
			continue
		}
		p[k] = v
	}
	return map[string]any{"event": name, "properties": p}
}

// del marks a property to delete in event's props.
var del any = nil

// manyProps returns n properties p000, p001, ...
func manyProps(n int) map[string]any {
	m := make(map[string]any, n)
	for i := range n {
		m[fmt.Sprintf("p%03d", i)] = json.Number("1")
	}
	return m
}

func nest(levels int) any {
	var v any = json.Number("1")
	for range levels {
		v = map[string]any{"x": v}
	}
	return v
}

func list(n int) []any {
	l := make([]any, n)
	for i := range l {
		l[i] = json.Number("1")
	}
	return l
}

func merge(ms ...map[string]any) map[string]any {
	out := map[string]any{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

type normalizeCase struct {
	name    string
	rec     map[string]any
	want    string       // the line, when accepted
	wantErr *RejectError // when rejected
}

func runNormalize(t *testing.T, obj Object, tests []normalizeCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := fmt.Sprint(tc.rec)
			out, err := Normalize(obj, tc.rec, now)
			if after := fmt.Sprint(tc.rec); after != before {
				t.Errorf("Normalize modified its input:\nbefore %.500s\nafter  %.500s", before, after)
			}
			if tc.wantErr != nil {
				var re *RejectError
				if !errors.As(err, &re) {
					t.Fatalf("Normalize() = %.200s, %v; want *RejectError %v", out, err, tc.wantErr)
				}
				if diff := cmp.Diff(tc.wantErr, re); diff != "" {
					t.Errorf("Normalize() rejection mismatch (-want +got):\n%.2000s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("Normalize() = %v, want %.200s", err, tc.want)
			}
			if diff := cmp.Diff(tc.want, string(out)); diff != "" {
				t.Errorf("Normalize() mismatch (-want +got):\n%.2000s", diff)
			}
			if !json.Valid(out) {
				t.Errorf("Normalize() = %.200s: not valid JSON", out)
			}
		})
	}
}

func TestNormalizeActivities(t *testing.T) {
	long := strings.Repeat("é", 300)
	tests := []normalizeCase{
		// Accepted.
		{
			name: "already normal",
			rec:  event("Signed Up", map[string]any{"plan": "pro", "amount": json.Number("12.50"), "ok": true, "none": nil}),
			want: `{"event":"Signed Up","properties":{"$insert_id":"id-1","amount":12.50,"distinct_id":"u1","ok":true,"plan":"pro","time":1618716477}}`,
		},
		{
			name: "milliseconds become seconds",
			rec:  event("e", map[string]any{"time": json.Number("1618716477123")}),
			want: `{"event":"e","properties":{"$insert_id":"id-1","distinct_id":"u1","time":1618716477}}`,
		},
		{
			name: "ISO-8601 becomes seconds",
			rec:  event("e", map[string]any{"time": "2021-04-18T05:27:57.5+02:00"}),
			want: `{"event":"e","properties":{"$insert_id":"id-1","distinct_id":"u1","time":1618716477}}`,
		},
		{
			name: "numeric string time",
			rec:  event("e", map[string]any{"time": "1618716477"}),
			want: `{"event":"e","properties":{"$insert_id":"id-1","distinct_id":"u1","time":1618716477}}`,
		},
		{
			name: "Go numbers",
			rec:  event("e", map[string]any{"time": 1618716477.0, "distinct_id": 42, "n": int64(7), "f": 0.5}),
			want: `{"event":"e","properties":{"$insert_id":"id-1","distinct_id":"42","f":0.5,"n":7,"time":1618716477}}`,
		},
		{
			name: "1971-01-01 exactly",
			rec:  event("e", map[string]any{"time": "1971-01-01T00:00:00Z"}),
			want: `{"event":"e","properties":{"$insert_id":"id-1","distinct_id":"u1","time":31536000}}`,
		},
		{
			name: "one hour ahead exactly",
			rec:  event("e", map[string]any{"time": "2026-11-26T13:00:00Z"}),
			want: `{"event":"e","properties":{"$insert_id":"id-1","distinct_id":"u1","time":1795698000}}`,
		},
		{
			name: "numeric distinct_id and $insert_id become strings",
			rec:  event("e", map[string]any{"distinct_id": json.Number("12157"), "$insert_id": json.Number("123456")}),
			want: `{"event":"e","properties":{"$insert_id":"123456","distinct_id":"12157","time":1618716477}}`,
		},
		{
			name: "empty distinct_id is allowed",
			rec:  event("e", map[string]any{"distinct_id": ""}),
			want: `{"event":"e","properties":{"$insert_id":"id-1","distinct_id":"","time":1618716477}}`,
		},
		{
			name: "number as event name",
			rec:  event(json.Number("404"), nil),
			want: `{"event":"404","properties":{"$insert_id":"id-1","distinct_id":"u1","time":1618716477}}`,
		},
		{
			name: "255-character event name and distinct_id",
			rec:  event(strings.Repeat("e", 255), map[string]any{"distinct_id": strings.Repeat("d", 255)}),
			want: `{"event":"` + strings.Repeat("e", 255) + `","properties":{"$insert_id":"id-1","distinct_id":"` + strings.Repeat("d", 255) + `","time":1618716477}}`,
		},
		{
			name: "36-byte $insert_id",
			rec:  event("e", map[string]any{"$insert_id": "29fc2962-6d9c-455d-95ad-95b84f09b9e4"}),
			want: `{"event":"e","properties":{"$insert_id":"29fc2962-6d9c-455d-95ad-95b84f09b9e4","distinct_id":"u1","time":1618716477}}`,
		},
		{
			name: "missing $insert_id is derived",
			rec:  event("Signed Up", map[string]any{"$insert_id": del, "plan": "pro"}),
			want: `{"event":"Signed Up","properties":{"$insert_id":"` + InsertID(event("Signed Up", map[string]any{"$insert_id": del, "plan": "pro"})) + `","distinct_id":"u1","plan":"pro","time":1618716477}}`,
		},
		{
			name: "null $insert_id is derived",
			rec:  event("e", map[string]any{"$insert_id": nil}),
			want: `{"event":"e","properties":{"$insert_id":"` + InsertID(event("e", map[string]any{"$insert_id": del})) + `","distinct_id":"u1","time":1618716477}}`,
		},
		{
			name: "strings over 255 characters are kept",
			rec:  event("e", map[string]any{"long": long}),
			want: `{"event":"e","properties":{"$insert_id":"id-1","distinct_id":"u1","long":"` + long + `","time":1618716477}}`,
		},
		{
			name: "no HTML escaping; control characters and U+2028 escaped",
			rec:  event("<a&b>", map[string]any{"s": "x<y>&\"\\\n\t\x01\u2028é😀"}),
			want: `{"event":"<a&b>","properties":{"$insert_id":"id-1","distinct_id":"u1","s":"x<y>&\"\\\n\t\u0001\u2028é😀","time":1618716477}}`,
		},
		{
			name: "nested three levels, 254 keys, 254 elements",
			rec:  event("e", map[string]any{"deep": nest(3), "keys": manyProps(254), "list": list(254)}),
			want: func() string {
				keys, _ := json.Marshal(manyProps(254))
				l, _ := json.Marshal(list(254))
				return `{"event":"e","properties":{"$insert_id":"id-1","deep":{"x":{"x":{"x":1}}},"distinct_id":"u1","keys":` + string(keys) + `,"list":` + string(l) + `,"time":1618716477}}`
			}(),
		},
		{
			name: "254 properties",
			rec:  event("e", manyProps(251)),
			want: func() string {
				p, _ := json.Marshal(merge(manyProps(251), map[string]any{"$insert_id": "id-1", "distinct_id": "u1", "time": 1618716477}))
				return `{"event":"e","properties":` + string(p) + `}`
			}(),
		},

		{
			name: "record of 999,999 bytes",
			rec:  event("e", map[string]any{"a": strings.Repeat("x", 500000), "b": strings.Repeat("x", 499900)}),
			want: `{"event":"e","properties":{"$insert_id":"id-1","a":"` + strings.Repeat("x", 500000) + `","b":"` + strings.Repeat("x", 499900) + `","distinct_id":"u1","time":1618716477}}`,
		},

		// Rejected: shape.
		{
			name:    "unknown top-level key",
			rec:     merge(event("e", nil), map[string]any{"distinct_id": "u1", "time": 1}),
			wantErr: &RejectError{Field: "distinct_id", Reason: `is not allowed at the top level of an event, which has only "event" and "properties"`},
		},
		{
			name:    "event missing",
			rec:     map[string]any{"properties": map[string]any{}},
			wantErr: &RejectError{Field: "event", Reason: "is missing"},
		},
		{
			name:    "event not a string",
			rec:     event(true, nil),
			wantErr: &RejectError{Field: "event", Reason: "must be a string, got a boolean"},
		},
		{
			name:    "event null",
			rec:     event(nil, nil),
			wantErr: &RejectError{Field: "event", Reason: "must be a string, got null"},
		},
		{
			name:    "event empty",
			rec:     event("", nil),
			wantErr: &RejectError{Field: "event", Reason: "must not be empty"},
		},
		{
			name:    "event blank",
			rec:     event(" \t", nil),
			wantErr: &RejectError{Field: "event", Reason: "must not be empty"},
		},
		{
			name:    "event too long",
			rec:     event(strings.Repeat("é", 256), nil),
			wantErr: &RejectError{Field: "event", Reason: "is 256 characters long; the limit is 255"},
		},
		{
			name:    "event not UTF-8",
			rec:     event("a\xffb", nil),
			wantErr: &RejectError{Field: "event", Reason: "is not valid UTF-8"},
		},
		{
			name:    "properties missing",
			rec:     map[string]any{"event": "e"},
			wantErr: &RejectError{Field: "properties", Reason: "is missing"},
		},
		{
			name:    "properties not an object",
			rec:     map[string]any{"event": "e", "properties": "x"},
			wantErr: &RejectError{Field: "properties", Reason: "must be an object, got a string"},
		},

		// Rejected: time.
		{
			name:    "time missing",
			rec:     event("e", map[string]any{"time": del}),
			wantErr: &RejectError{Field: "properties.time", Reason: "is missing"},
		},
		{
			name:    "time null",
			rec:     event("e", map[string]any{"time": json.RawMessage(nil)}),
			wantErr: &RejectError{Field: "properties.time", Reason: "must be a number of seconds or milliseconds since the epoch, or an ISO-8601 date-time; got a value of type json.RawMessage"},
		},
		{
			name:    "time not a time",
			rec:     event("e", map[string]any{"time": "last tuesday"}),
			wantErr: &RejectError{Field: "properties.time", Reason: `"last tuesday" is not a number or an ISO-8601 date-time`},
		},
		{
			name:    "time without timezone",
			rec:     event("e", map[string]any{"time": "2021-04-18 03:27:57"}),
			wantErr: &RejectError{Field: "properties.time", Reason: `"2021-04-18 03:27:57" has no timezone; add Z for UTC or an offset such as +02:00`},
		},
		{
			name:    "time before 1971",
			rec:     event("e", map[string]any{"time": json.Number("31535999")}),
			wantErr: &RejectError{Field: "properties.time", Reason: "1970-12-31T23:59:59Z is before 1971-01-01T00:00:00Z"},
		},
		{
			name:    "time zero",
			rec:     event("e", map[string]any{"time": json.Number("0")}),
			wantErr: &RejectError{Field: "properties.time", Reason: "1970-01-01T00:00:00Z is before 1971-01-01T00:00:00Z"},
		},
		{
			name:    "time in the future",
			rec:     event("e", map[string]any{"time": "2026-11-26T13:00:01Z"}),
			wantErr: &RejectError{Field: "properties.time", Reason: "2026-11-26T13:00:01Z is more than 1 hour in the future (now is 2026-11-26T12:00:00Z)"},
		},
		{
			name:    "time too large",
			rec:     event("e", map[string]any{"time": json.Number("1e25")}),
			wantErr: &RejectError{Field: "properties.time", Reason: "1e+25 is too large to be a time"},
		},
		{
			name:    "time not finite",
			rec:     event("e", map[string]any{"time": math.NaN()}),
			wantErr: &RejectError{Field: "properties.time", Reason: "is not a number"},
		},

		// Rejected: distinct_id.
		{
			name:    "distinct_id missing",
			rec:     event("e", map[string]any{"distinct_id": del}),
			wantErr: &RejectError{Field: "properties.distinct_id", Reason: `is missing; use "" for an event that belongs to no user`},
		},
		{
			name:    "distinct_id null",
			rec:     merge(event("e", nil), map[string]any{"properties": map[string]any{"time": json.Number("1618716477"), "distinct_id": nil}}),
			wantErr: &RejectError{Field: "properties.distinct_id", Reason: "must be a string or a number, got null"},
		},
		{
			name:    "distinct_id an object",
			rec:     event("e", map[string]any{"distinct_id": map[string]any{"id": "u"}}),
			wantErr: &RejectError{Field: "properties.distinct_id", Reason: "must be a string or a number, got an object"},
		},
		{
			name:    "distinct_id too long",
			rec:     event("e", map[string]any{"distinct_id": strings.Repeat("d", 256)}),
			wantErr: &RejectError{Field: "properties.distinct_id", Reason: "is 256 characters long; Mixpanel cuts strings at 255, which would merge different users"},
		},

		// Rejected: $insert_id.
		{
			name:    "$insert_id too long",
			rec:     event("e", map[string]any{"$insert_id": strings.Repeat("a", 37)}),
			wantErr: &RejectError{Field: "properties.$insert_id", Reason: "is 37 bytes long; the limit is 36"},
		},
		{
			name:    "$insert_id with an underscore",
			rec:     event("e", map[string]any{"$insert_id": "order_1"}),
			wantErr: &RejectError{Field: "properties.$insert_id", Reason: `may hold only letters, digits and '-'; '_' is not allowed`},
		},
		{
			name:    "$insert_id with non-ASCII",
			rec:     event("e", map[string]any{"$insert_id": "é"}),
			wantErr: &RejectError{Field: "properties.$insert_id", Reason: `may hold only letters, digits and '-'; byte 0xc3 is not allowed`},
		},
		{
			name:    "$insert_id placeholder",
			rec:     event("e", map[string]any{"$insert_id": "Undefined"}),
			wantErr: &RejectError{Field: "properties.$insert_id", Reason: `"Undefined" is a placeholder value that Mixpanel rejects`},
		},
		{
			name:    "$insert_id a boolean",
			rec:     event("e", map[string]any{"$insert_id": false}),
			wantErr: &RejectError{Field: "properties.$insert_id", Reason: "must be a string, got a boolean"},
		},

		// Rejected: limits.
		{
			name:    "255 properties",
			rec:     event("e", manyProps(252)),
			wantErr: &RejectError{Field: "properties", Reason: "has 255 properties; Mixpanel accepts fewer than 255"},
		},
		{
			name:    "255 properties counting the derived $insert_id",
			rec:     event("e", merge(manyProps(252), map[string]any{"$insert_id": del})),
			wantErr: &RejectError{Field: "properties", Reason: "has 255 properties; Mixpanel accepts fewer than 255"},
		},
		{
			name:    "nested four levels",
			rec:     event("e", map[string]any{"deep": nest(4)}),
			wantErr: &RejectError{Field: "properties.deep.x.x.x", Reason: "is nested more than 3 levels deep"},
		},
		{
			name:    "arrays count as levels",
			rec:     event("e", map[string]any{"cart": []any{map[string]any{"items": []any{[]any{1}}}}}),
			wantErr: &RejectError{Field: "properties.cart[0].items[0]", Reason: "is nested more than 3 levels deep"},
		},
		{
			name:    "nested object with 255 keys",
			rec:     event("e", map[string]any{"o": manyProps(255)}),
			wantErr: &RejectError{Field: "properties.o", Reason: "has 255 keys; nested objects must have fewer than 255"},
		},
		{
			name:    "array with 255 elements",
			rec:     event("e", map[string]any{"l": []any{"a", list(255)}}),
			wantErr: &RejectError{Field: "properties.l[1]", Reason: "has 255 elements; arrays must have fewer than 255"},
		},
		{
			name:    "record of 1 MB",
			rec:     event("e", map[string]any{"a": strings.Repeat("x", 500000), "b": strings.Repeat("x", 499901)}),
			wantErr: &RejectError{Reason: "the record is 1000000 bytes as JSON; Mixpanel accepts less than 1000000"},
		},

		// Rejected: values.
		{
			name:    "string not UTF-8",
			rec:     event("e", map[string]any{"o": map[string]any{"s": "\xff"}}),
			wantErr: &RejectError{Field: "properties.o.s", Reason: "is not valid UTF-8"},
		},
		{
			name:    "key not UTF-8",
			rec:     event("e", map[string]any{"k\xff": 1}),
			wantErr: &RejectError{Field: "properties.k\xff", Reason: "has a name that is not valid UTF-8"},
		},
		{
			name:    "number not finite",
			rec:     event("e", map[string]any{"n": math.Inf(1)}),
			wantErr: &RejectError{Field: "properties.n", Reason: "is not a finite number"},
		},
		{
			name:    "json.Number not a number",
			rec:     event("e", map[string]any{"n": json.Number("12abc")}),
			wantErr: &RejectError{Field: "properties.n", Reason: `"12abc" is not a valid number`},
		},
		{
			name:    "unsupported type",
			rec:     event("e", map[string]any{"t": time.Time{}}),
			wantErr: &RejectError{Field: "properties.t", Reason: "has a value of unsupported type time.Time"},
		},
	}
	for _, id := range []string{
		"00000000-0000-0000-0000-000000000000", "anon", "anonymous", "nil", "none", "null", "n/a", "na",
		"undefined", "unknown", "<nil>", "0", "-1", "true", "false", "[]", "{}", "NULL", " None ", "N/A", "Anonymous",
	} {
		tests = append(tests, normalizeCase{
			name:    "distinct_id placeholder " + id,
			rec:     event("e", map[string]any{"distinct_id": id}),
			wantErr: &RejectError{Field: "properties.distinct_id", Reason: fmt.Sprintf("%q is a placeholder value that Mixpanel rejects", id)},
		})
	}
	tests = append(tests, normalizeCase{
		name:    "distinct_id placeholder as a number",
		rec:     event("e", map[string]any{"distinct_id": json.Number("-1")}),
		wantErr: &RejectError{Field: "properties.distinct_id", Reason: `"-1" is a placeholder value that Mixpanel rejects`},
	})
	runNormalize(t, Activities, tests)
}

func TestNormalizeUsers(t *testing.T) {
	tests := []normalizeCase{
		// Accepted.
		{
			name: "set",
			rec:  map[string]any{"$distinct_id": "12157", "$set": map[string]any{"$email": "seven@example.com", "credits": json.Number("150")}},
			want: `{"$distinct_id":"12157","$set":{"$email":"seven@example.com","credits":150}}`,
		},
		{
			name: "numeric id and every operation but $delete",
			rec: map[string]any{
				"$distinct_id": json.Number("12157"),
				"$set":         map[string]any{"a": "x"},
				"$set_once":    map[string]any{"first": "2024-01-02"},
				"$add":         map[string]any{"logins": json.Number("1"), "credit": -2.5},
				"$union":       map[string]any{"tags": []any{"a", "b"}},
				"$append":      map[string]any{"visits": "home"},
				"$remove":      map[string]any{"tags": "c"},
				"$unset":       []any{"old"},
			},
			want: `{"$add":{"credit":-2.5,"logins":1},"$append":{"visits":"home"},"$distinct_id":"12157","$remove":{"tags":"c"},"$set":{"a":"x"},"$set_once":{"first":"2024-01-02"},"$union":{"tags":["a","b"]},"$unset":["old"]}`,
		},
		{
			name: "delete is sent as an empty string",
			rec:  map[string]any{"$distinct_id": "u1", "$delete": nil},
			want: `{"$delete":"","$distinct_id":"u1"}`,
		},
		{
			name: "options",
			rec: map[string]any{"$distinct_id": "u1", "$set": map[string]any{"a": json.Number("1")}, "$token": "tok", "$ip": "203.0.113.9",
				"$time": json.Number("1618716477000"), "$ignore_time": true, "$ignore_alias": false, "$latitude": json.Number("-33.9"), "$longitude": 151.2},
			want: `{"$distinct_id":"u1","$ignore_alias":false,"$ignore_time":true,"$ip":"203.0.113.9","$latitude":-33.9,"$longitude":151.2,"$set":{"a":1},"$time":1618716477000,"$token":"tok"}`,
		},
		{
			name: "deep values are fine in profiles",
			rec:  map[string]any{"$distinct_id": "u1", "$set": map[string]any{"deep": nest(6), "list": list(300)}},
			want: func() string {
				l, _ := json.Marshal(list(300))
				return `{"$distinct_id":"u1","$set":{"deep":{"x":{"x":{"x":{"x":{"x":{"x":1}}}}}},"list":` + string(l) + `}}`
			}(),
		},

		// Rejected.
		{
			name:    "unknown top-level key",
			rec:     map[string]any{"$distinct_id": "u1", "$set": map[string]any{"a": 1}, "plan": "pro"},
			wantErr: &RejectError{Field: "plan", Reason: "is not a profile update field; profile properties go under $set"},
		},
		{
			name:    "distinct_id without $",
			rec:     map[string]any{"distinct_id": "u1", "$set": map[string]any{"a": 1}},
			wantErr: &RejectError{Field: "distinct_id", Reason: "is not a profile update field; did you mean $distinct_id?"},
		},
		{
			name:    "$distinct_id missing",
			rec:     map[string]any{"$set": map[string]any{"a": 1}},
			wantErr: &RejectError{Field: "$distinct_id", Reason: "is missing"},
		},
		{
			name:    "$distinct_id empty",
			rec:     map[string]any{"$distinct_id": " ", "$set": map[string]any{"a": 1}},
			wantErr: &RejectError{Field: "$distinct_id", Reason: "must not be empty"},
		},
		{
			name:    "$distinct_id placeholder",
			rec:     map[string]any{"$distinct_id": "Null", "$set": map[string]any{"a": 1}},
			wantErr: &RejectError{Field: "$distinct_id", Reason: `"Null" is a placeholder value that Mixpanel rejects`},
		},
		{
			name:    "$distinct_id a boolean",
			rec:     map[string]any{"$distinct_id": true, "$set": map[string]any{"a": 1}},
			wantErr: &RejectError{Field: "$distinct_id", Reason: "must be a string or a number, got a boolean"},
		},
		{
			name:    "$distinct_id too long",
			rec:     map[string]any{"$distinct_id": strings.Repeat("u", 256), "$set": map[string]any{"a": 1}},
			wantErr: &RejectError{Field: "$distinct_id", Reason: "is 256 characters long; Mixpanel cuts strings at 255, which would merge different users"},
		},
		{
			name:    "no operation",
			rec:     map[string]any{"$distinct_id": "u1", "$token": "t"},
			wantErr: &RejectError{Reason: "the profile update has no operation: expected one of $set, $set_once, $add, $union, $append, $remove, $unset or $delete"},
		},
		{
			name:    "$delete with another operation",
			rec:     map[string]any{"$distinct_id": "u1", "$delete": "", "$set": map[string]any{"a": 1}},
			wantErr: &RejectError{Field: "$delete", Reason: "cannot be combined with other operations"},
		},
		{
			name:    "$set not an object",
			rec:     map[string]any{"$distinct_id": "u1", "$set": "plan=pro"},
			wantErr: &RejectError{Field: "$set", Reason: "must be an object, got a string"},
		},
		{
			name:    "$set_once empty",
			rec:     map[string]any{"$distinct_id": "u1", "$set_once": map[string]any{}},
			wantErr: &RejectError{Field: "$set_once", Reason: "is empty"},
		},
		{
			name:    "$add of a string",
			rec:     map[string]any{"$distinct_id": "u1", "$add": map[string]any{"a": json.Number("1"), "b": "2"}},
			wantErr: &RejectError{Field: "$add.b", Reason: "must be a number to add, got a string"},
		},
		{
			name:    "$union of a scalar",
			rec:     map[string]any{"$distinct_id": "u1", "$union": map[string]any{"tags": "a"}},
			wantErr: &RejectError{Field: "$union.tags", Reason: "must be an array of values to merge, got a string"},
		},
		{
			name:    "$append not an object",
			rec:     map[string]any{"$distinct_id": "u1", "$append": []any{"a"}},
			wantErr: &RejectError{Field: "$append", Reason: "must be an object, got an array"},
		},
		{
			name:    "$remove not an object",
			rec:     map[string]any{"$distinct_id": "u1", "$remove": nil},
			wantErr: &RejectError{Field: "$remove", Reason: "must be an object, got null"},
		},
		{
			name:    "$unset not an array",
			rec:     map[string]any{"$distinct_id": "u1", "$unset": "old"},
			wantErr: &RejectError{Field: "$unset", Reason: "must be an array of property names, got a string"},
		},
		{
			name:    "$unset empty",
			rec:     map[string]any{"$distinct_id": "u1", "$unset": []any{}},
			wantErr: &RejectError{Field: "$unset", Reason: "is empty"},
		},
		{
			name:    "$unset of a number",
			rec:     map[string]any{"$distinct_id": "u1", "$unset": []any{"a", json.Number("1")}},
			wantErr: &RejectError{Field: "$unset[1]", Reason: "must be a property name (a string), got a number"},
		},
		{
			name:    "$token empty",
			rec:     map[string]any{"$distinct_id": "u1", "$unset": []any{"a"}, "$token": ""},
			wantErr: &RejectError{Field: "$token", Reason: "must be a non-empty string"},
		},
		{
			name:    "$ip an object",
			rec:     map[string]any{"$distinct_id": "u1", "$unset": []any{"a"}, "$ip": map[string]any{}},
			wantErr: &RejectError{Field: "$ip", Reason: "must be a string, got an object"},
		},
		{
			name:    "$time a date string",
			rec:     map[string]any{"$distinct_id": "u1", "$unset": []any{"a"}, "$time": "2024-01-02"},
			wantErr: &RejectError{Field: "$time", Reason: "must be a number of milliseconds since the epoch"},
		},
		{
			name:    "$ignore_time not a boolean",
			rec:     map[string]any{"$distinct_id": "u1", "$unset": []any{"a"}, "$ignore_time": "yes"},
			wantErr: &RejectError{Field: "$ignore_time", Reason: "must be true or false, got a string"},
		},
		{
			name:    "$latitude out of range",
			rec:     map[string]any{"$distinct_id": "u1", "$unset": []any{"a"}, "$latitude": json.Number("91")},
			wantErr: &RejectError{Field: "$latitude", Reason: "must be a number between -90 and 90"},
		},
		{
			name:    "$longitude out of range",
			rec:     map[string]any{"$distinct_id": "u1", "$unset": []any{"a"}, "$longitude": -180.5},
			wantErr: &RejectError{Field: "$longitude", Reason: "must be a number between -180 and 180"},
		},
		{
			name:    "value not UTF-8",
			rec:     map[string]any{"$distinct_id": "u1", "$set": map[string]any{"city": "M\xe1laga"}},
			wantErr: &RejectError{Field: "$set.city", Reason: "is not valid UTF-8"},
		},
		{
			name:    "update of 1 MB",
			rec:     map[string]any{"$distinct_id": "u1", "$set": map[string]any{"a": strings.Repeat("x", 999963)}},
			wantErr: &RejectError{Reason: "the record is 1000000 bytes as JSON; Mixpanel accepts less than 1000000"},
		},
	}
	runNormalize(t, Users, tests)
}

func TestNormalizeUnknownObject(t *testing.T) {
	_, err := Normalize("groups", map[string]any{}, now)
	var re *RejectError
	if err == nil || errors.As(err, &re) {
		t.Errorf("Normalize(groups) = %v, want an error that is not a *RejectError", err)
	}
}

// Normalize is idempotent: its output, decoded, normalises to itself.
func TestNormalizeIdempotent(t *testing.T) {
	recs := []struct {
		obj Object
		rec map[string]any
	}{
		{Activities, event("e", map[string]any{"$insert_id": del, "time": "2021-04-18T05:27:57+02:00", "distinct_id": json.Number("7"), "x": map[string]any{"y": []any{1.5, "z"}}})},
		{Users, map[string]any{"$distinct_id": json.Number("7"), "$delete": nil}},
		{Users, map[string]any{"$distinct_id": "u", "$set": map[string]any{"a": json.Number("1.50")}}},
	}
	for _, r := range recs {
		out, err := Normalize(r.obj, r.rec, now)
		if err != nil {
			t.Fatalf("Normalize(%v) = %v", r.rec, err)
		}
		again, err := Normalize(r.obj, decode(t, out), now)
		if err != nil {
			t.Fatalf("Normalize(%s) = %v", out, err)
		}
		if diff := cmp.Diff(string(out), string(again)); diff != "" {
			t.Errorf("Normalize(Normalize(%v)) mismatch (-first +second):\n%s", r.rec, diff)
		}
	}
}

func decode(t testing.TB, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return m
}
