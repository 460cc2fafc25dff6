package mixpanel

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// The encoder writes what encoding/json writes with HTML escaping off.
func TestEncoderMatchesEncodingJSON(t *testing.T) {
	var ctl strings.Builder
	for c := range 0x20 {
		ctl.WriteByte(byte(c))
	}
	values := []any{
		nil, true, false, "", "plain", ctl.String(), "\x7f<>&'\"\\/", "é😀\u2028\u2029\ufeff", strings.Repeat("ab\n", 50),
		json.Number("0"), json.Number("-12.50e+3"), json.Number("1E-7"),
		0.0, math.Copysign(0, -1), 1.0, -1.5, 1e-7, 1e-6, 123456.789, 1e20, 1e21, 1.7976931348623157e308, 5e-324,
		0, -7, int64(math.MaxInt64), int32(-5), uint64(math.MaxUint64),
		map[string]any{}, []any{}, []string{"a", "b"},
		map[string]any{"b": 1, "a": []any{map[string]any{"z": nil, "y": "\u2028"}}, "": "empty", "$x": 2, "é": 3, "A": 4},
	}
	for _, v := range values {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			t.Fatalf("json.Encode(%#v) = %v", v, err)
		}
		var e encoder
		if err := e.value(v, 0); err != nil {
			t.Fatalf("encode(%#v) = %v", v, err)
		}
		if got, want := string(e.buf), strings.TrimSuffix(want.String(), "\n"); got != want {
			t.Errorf("encode(%#v) = %s, want %s", v, got, want)
		}
	}
}

func TestEncoderRejects(t *testing.T) {
	tests := []struct {
		v    any
		want RejectError
	}{
		{"a\xffb", RejectError{Reason: "is not valid UTF-8"}},
		{"\xed\xa0\x80", RejectError{Reason: "is not valid UTF-8"}}, // a surrogate half
		{math.NaN(), RejectError{Reason: "is not a finite number"}},
		{json.Number(""), RejectError{Reason: `"" is not a valid number`}},
		{json.Number("01"), RejectError{Reason: `"01" is not a valid number`}},
		{json.Number("1."), RejectError{Reason: `"1." is not a valid number`}},
		{json.Number("+1"), RejectError{Reason: `"+1" is not a valid number`}},
		{json.Number("1e"), RejectError{Reason: `"1e" is not a valid number`}},
		{[]any{1, map[string]any{"k": struct{}{}}}, RejectError{Field: "[1].k", Reason: "has a value of unsupported type struct {}"}},
		{map[string]any{"\xff": 1}, RejectError{Field: "\xff", Reason: "has a name that is not valid UTF-8"}},
	}
	for _, tc := range tests {
		var e encoder
		err := e.value(tc.v, 0)
		if err == nil || *err != tc.want {
			t.Errorf("encode(%#v) = %v, want %v", tc.v, err, &tc.want)
		}
	}
}

func TestFieldPath(t *testing.T) {
	tests := []struct {
		path []pathElem
		want string
	}{
		{nil, ""},
		{[]pathElem{{"properties", -1}, {"cart", -1}, {"", 3}, {"sku", -1}}, "properties.cart[3].sku"},
		{[]pathElem{{"", 1}, {"k", -1}}, "[1].k"},
		{[]pathElem{{"$set", -1}, {"a.b", -1}}, "$set.a.b"},
	}
	for _, tc := range tests {
		if got := fieldPath(tc.path); got != tc.want {
			t.Errorf("fieldPath(%v) = %q, want %q", tc.path, got, tc.want)
		}
	}
}
