package mixpanel

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

var derivedID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestInsertIDGiven(t *testing.T) {
	tests := []struct {
		id   any
		want string
	}{
		{"29fc2962-6d9c-455d-95ad-95b84f09b9e4", "29fc2962-6d9c-455d-95ad-95b84f09b9e4"},
		{json.Number("123"), "123"},
		{"order_1", "order_1"}, // Normalize would refuse it, but it is the record's own
	}
	for _, tc := range tests {
		if got := InsertID(event("e", map[string]any{"$insert_id": tc.id})); got != tc.want {
			t.Errorf("InsertID(with $insert_id %v) = %q, want %q", tc.id, got, tc.want)
		}
	}
}

// The derivation is part of the contract: re-importing a file must give
// the ids the first import gave, so this value may never change. It was
// checked independently (Python's hashlib over the text the package
// documentation of deriveInsertID describes).
func TestInsertIDPinned(t *testing.T) {
	rec := event("Signed Up", map[string]any{"$insert_id": del, "plan": "pro", "amount": json.Number("12.50")})
	const want = "9d92e5e16ef3e95e771bc78bee7535be"
	if got := InsertID(rec); got != want {
		t.Errorf("InsertID(%v) = %q, want %q", rec, got, want)
	}
}

func TestInsertIDDerived(t *testing.T) {
	base := func(props map[string]any) map[string]any {
		return event("Signed Up", merge(map[string]any{"$insert_id": del, "plan": "pro"}, props))
	}
	want := InsertID(base(nil))
	if !derivedID.MatchString(want) {
		t.Fatalf("InsertID() = %q, want 32 hex digits", want)
	}
	if _, reason := insertID(want); reason != "" {
		t.Fatalf("derived id %q is not a valid $insert_id: %s", want, reason)
	}

	same := map[string]map[string]any{
		"again":                     base(nil),
		"time in milliseconds":      base(map[string]any{"time": json.Number("1618716477000")}),
		"time as ISO-8601":          base(map[string]any{"time": "2021-04-18T05:27:57+02:00"}),
		"time as a numeric string":  base(map[string]any{"time": "1618716477"}),
		"time as a float":           base(map[string]any{"time": 1618716477.0}),
		"empty $insert_id":          base(map[string]any{"$insert_id": ""}),
		"distinct_id as a number":   event("Signed Up", map[string]any{"$insert_id": del, "plan": "pro", "distinct_id": json.Number("77")}),
		"distinct_id as a string":   event("Signed Up", map[string]any{"$insert_id": del, "plan": "pro", "distinct_id": "77"}),
		"distinct_id as a Go float": event("Signed Up", map[string]any{"$insert_id": del, "plan": "pro", "distinct_id": 77.0}),
	}
	for name, rec := range same {
		wantID := want
		if strings.HasPrefix(name, "distinct_id") {
			wantID = InsertID(same["distinct_id as a string"])
		}
		if got := InsertID(rec); got != wantID {
			t.Errorf("InsertID(%s) = %q, want %q", name, got, wantID)
		}
	}

	different := map[string]map[string]any{
		"other event":       event("Signed Out", map[string]any{"$insert_id": del, "plan": "pro"}),
		"other user":        base(map[string]any{"distinct_id": "u2"}),
		"other second":      base(map[string]any{"time": json.Number("1618716478")}),
		"other property":    base(map[string]any{"plan": "free"}),
		"one more property": base(map[string]any{"x": json.Number("1")}),
		"number as text":    base(map[string]any{"plan": json.Number("1"), "x": "1"}),
	}
	seen := map[string]string{want: "base"}
	for name, rec := range different {
		got := InsertID(rec)
		if prev, dup := seen[got]; dup {
			t.Errorf("InsertID(%s) = %q, the same as for %s", name, got, prev)
		}
		seen[got] = name
	}
}

// The id Normalize sends is InsertID's.
func TestInsertIDMatchesNormalize(t *testing.T) {
	recs := []map[string]any{
		event("e", map[string]any{"$insert_id": del}),
		event("e", map[string]any{"$insert_id": del, "a": map[string]any{"b": []any{"c"}}, "$city": "Paris", "#": true, "": "empty key"}),
		event("e", map[string]any{"$insert_id": del, "time": "2021-04-18T03:27:57Z", "distinct_id": json.Number("5")}),
		event("e", map[string]any{"$insert_id": "given-1"}),
		{"event": "e", "properties": map[string]any{"time": json.Number("1618716477"), "distinct_id": ""}},
	}
	for _, rec := range recs {
		out, err := Normalize(Activities, rec, now)
		if err != nil {
			t.Fatalf("Normalize(%v) = %v", rec, err)
		}
		got := decode(t, out)["properties"].(map[string]any)["$insert_id"]
		if want := InsertID(rec); got != want {
			t.Errorf("Normalize(%v) sent $insert_id %v, InsertID says %q", rec, got, want)
		}
	}
}

// A record Normalize rejects still gets a stable id.
func TestInsertIDInvalidRecord(t *testing.T) {
	recs := []map[string]any{
		{},
		{"event": "e"},
		{"event": "e", "properties": map[string]any{"time": "garbage", "distinct_id": "u"}},
		{"event": "e", "properties": map[string]any{"time": json.Number("1"), "x": "\xff"}},
	}
	seen := map[string]bool{}
	for _, rec := range recs {
		id := InsertID(rec)
		if id != InsertID(rec) || !derivedID.MatchString(id) {
			t.Errorf("InsertID(%v) = %q, not stable or not 32 hex digits", rec, id)
		}
		if seen[id] {
			t.Errorf("InsertID(%v) = %q, seen before", rec, id)
		}
		seen[id] = true
	}
}
