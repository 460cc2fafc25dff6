package recordio

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestJSONLines(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    result
	}{
		{
			name:    "records numbers as json.Number",
			content: "{\"event\":\"a\",\"n\":1.50,\"big\":12345678901234567890}\n{\"event\":\"b\",\"ok\":true,\"x\":null,\"nested\":{\"l\":[1,\"2\"]}}\n",
			want: result{Rows: []row{
				{Line: 1, Record: rec("event", "a", "n", json.Number("1.50"), "big", json.Number("12345678901234567890"))},
				{Line: 2, Record: rec("event", "b", "ok", true, "x", nil, "nested", rec("l", []any{json.Number("1"), "2"}))},
			}, End: "EOF"},
		},
		{
			name:    "blank lines, CRLF, no final line break",
			content: "\r\n{\"a\":1}\r\n   \r\n\t\n{\"a\":2}",
			want: result{Rows: []row{
				{Line: 2, Record: rec("a", json.Number("1"))},
				{Line: 5, Record: rec("a", json.Number("2"))},
			}, End: "EOF"},
		},
		{
			name: "per-row errors keep reading",
			content: strings.Join([]string{
				`{"a":1}`,
				`{"a":}`,
				`[1,2]`,
				`"text"`,
				`42`,
				`null`,
				`true`,
				`{"a":1} {"b":2}`,
				`{"a":`,
				`{"a":3}`,
			}, "\n"),
			want: result{Rows: []row{
				{Line: 1, Record: rec("a", json.Number("1"))},
				{Line: 2, Reason: "invalid JSON: invalid character '}' looking for beginning of value at byte 6"},
				{Line: 3, Reason: "expected a JSON object, found an array"},
				{Line: 4, Reason: "expected a JSON object, found a string"},
				{Line: 5, Reason: "expected a JSON object, found a number"},
				{Line: 6, Reason: "expected a JSON object, found null"},
				{Line: 7, Reason: "expected a JSON object, found a boolean"},
				{Line: 8, Reason: "unexpected data after the JSON object at byte 9"},
				{Line: 9, Reason: "invalid JSON: the object is not closed (a JSON lines file needs each record on one line)"},
				{Line: 10, Record: rec("a", json.Number("3"))},
			}, End: "EOF"},
		},
		{
			name:    "byte-order mark",
			content: "\xef\xbb\xbf{\"a\":1}\n",
			want:    result{Rows: []row{{Line: 1, Record: rec("a", json.Number("1"))}}, End: "EOF"},
		},
		{
			name:    "garbage start",
			content: "event,time\nx,1\n",
			want:    result{End: `line 1: a JSON file must start with '[' (an array) or '{' (one object per line), found 'e'`},
		},
		{
			name:    "garbage start after blank lines",
			content: "\n\n  x\n",
			want:    result{End: `line 3: a JSON file must start with '[' (an array) or '{' (one object per line), found 'x'`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := readAll(t, []byte(tc.content), "events.jsonl", Options{})
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("read %q: mismatch (-want +got):\n%s", tc.content, diff)
			}
		})
	}
}

func TestJSONLinesInvalidUTF8(t *testing.T) {
	// Past the first 8 KiB, text that is not UTF-8 rejects only its row.
	pad := strings.Repeat("{\"pad\":\"xxxxxxxxxxxxxxxxxxxx\"}\n", 400)
	content := pad + "{\"a\":\"\xff\"}\n{\"a\":3}\n"
	got := readAll(t, []byte(content), "x.jsonl", Options{})
	want := []row{
		{Line: 401, Reason: "the text is not valid UTF-8 (byte 0xff at byte 7)"},
		{Line: 402, Record: rec("a", json.Number("3"))},
	}
	if len(got.Rows) != 402 || got.End != "EOF" {
		t.Fatalf("read: %d rows, end %q; want 402 rows and EOF", len(got.Rows), got.End)
	}
	if diff := cmp.Diff(want, got.Rows[400:]); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
}

func TestJSONLinesLongLine(t *testing.T) {
	content := `{"a":1}` + "\n" + `{"a":"` + strings.Repeat("x", 200) + `"}` + "\n" + `{"a":2}` + "\n"
	got := readAll(t, []byte(content), "x.ndjson", Options{MaxLineBytes: 100})
	want := result{Rows: []row{
		{Line: 1, Record: rec("a", json.Number("1"))},
		{Line: 2, Reason: "the line is 209 bytes long, over the 100-byte limit"},
		{Line: 3, Record: rec("a", json.Number("2"))},
	}, End: "EOF"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
}

func TestJSONArray(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    result
	}{
		{
			name:    "one line",
			content: `[{"a":1},{"a":"x]}\"{"},{"b":[1,{"c":"]"}]}]`,
			want: result{Rows: []row{
				{Line: 1, Record: rec("a", json.Number("1"))},
				{Line: 1, Record: rec("a", `x]}"{`)},
				{Line: 1, Record: rec("b", []any{json.Number("1"), rec("c", "]")})},
			}, End: "EOF"},
		},
		{
			name:    "pretty-printed: lines of element starts",
			content: "[\n  {\n    \"a\": 1\n  },\n  {\"a\": 2},\n\n  {\n\"a\":\n3}\n]\n\n",
			want: result{Rows: []row{
				{Line: 2, Record: rec("a", json.Number("1"))},
				{Line: 5, Record: rec("a", json.Number("2"))},
				{Line: 7, Record: rec("a", json.Number("3"))},
			}, End: "EOF"},
		},
		{
			name:    "empty array",
			content: " [ ] ",
			want:    result{End: "EOF"},
		},
		{
			name:    "elements that are not objects, and bad JSON inside an element",
			content: "[1, \"s\", [1], null, true, {\"a\":}, {\"a\":1 \"b\":2}, {\"ok\":1}]",
			want: result{Rows: []row{
				{Line: 1, Reason: "expected a JSON object, found a number"},
				{Line: 1, Reason: "expected a JSON object, found a string"},
				{Line: 1, Reason: "expected a JSON object, found an array"},
				{Line: 1, Reason: "expected a JSON object, found null"},
				{Line: 1, Reason: "expected a JSON object, found a boolean"},
				{Line: 1, Reason: "invalid JSON: invalid character '}' looking for beginning of value at byte 6"},
				{Line: 1, Reason: "invalid JSON: invalid character '\"' after object key:value pair at byte 8"},
				{Line: 1, Record: rec("ok", json.Number("1"))},
			}, End: "EOF"},
		},
		{
			name:    "trailing comma is tolerated",
			content: `[{"a":1},]`,
			want:    result{Rows: []row{{Line: 1, Record: rec("a", json.Number("1"))}}, End: "EOF"},
		},
		{
			name:    "empty element",
			content: `[{"a":1},,{"a":2}]`,
			want: result{Rows: []row{
				{Line: 1, Record: rec("a", json.Number("1"))},
				{Line: 1, Reason: "an empty array element (two commas in a row?)"},
				{Line: 1, Record: rec("a", json.Number("2"))},
			}, End: "EOF"},
		},
		{
			name:    "cut short after an element",
			content: "[{\"a\":1},\n{\"a\":2}\n",
			want: result{Rows: []row{
				{Line: 1, Record: rec("a", json.Number("1"))},
				{Line: 2, Record: rec("a", json.Number("2"))},
			}, End: "line 3: the JSON array is cut short: the file ends before its closing ']'"},
		},
		{
			name:    "cut short inside an element",
			content: "[{\"a\":1},\n{\"a\":\"2",
			want: result{Rows: []row{
				{Line: 1, Record: rec("a", json.Number("1"))},
			}, End: "line 2: the JSON array is cut short: the file ends inside the element that starts at line 2"},
		},
		{
			name:    "only the opening bracket",
			content: "[",
			want:    result{End: "line 1: the JSON array is cut short: the file ends before its closing ']'"},
		},
		{
			name:    "unbalanced brackets",
			content: "[{\"a\":1},\n{\"a\":[1}]",
			want: result{Rows: []row{
				{Line: 1, Record: rec("a", json.Number("1"))},
			}, End: "line 2: invalid JSON in the array element that starts at line 2: unexpected '}'"},
		},
		{
			name:    "missing comma",
			content: `[{"a":1} {"a":2}]`,
			want: result{Rows: []row{
				{Line: 1, Record: rec("a", json.Number("1"))},
			}, End: "line 1: expected ',' or ']' after an array element, found '{'"},
		},
		{
			name:    "data after the array",
			content: "[{\"a\":1}]\n[{\"a\":2}]",
			want: result{Rows: []row{
				{Line: 1, Record: rec("a", json.Number("1"))},
			}, End: "line 2: unexpected data after the end of the JSON array, starting with '['"},
		},
		{
			name:    "escaped backslashes before quotes",
			content: `[{"a":"\\"},{"b":"\\\"]"}]`,
			want: result{Rows: []row{
				{Line: 1, Record: rec("a", `\`)},
				{Line: 1, Record: rec("b", `\"]`)},
			}, End: "EOF"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := readAll(t, []byte(tc.content), "events.json", Options{})
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("read %q: mismatch (-want +got):\n%s", tc.content, diff)
			}
		})
	}
}

func TestJSONArrayTooDeep(t *testing.T) {
	content := "[" + strings.Repeat("[", maxDepth+1)
	got := readAll(t, []byte(content), "x.json", Options{})
	want := result{End: "line 1: the array element that starts at line 1 is nested more than 10000 levels deep"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
}

func TestJSONArrayLongElement(t *testing.T) {
	content := `[{"a":1},{"big":"` + strings.Repeat("y", 300) + `"},` + "\n" + `{"a":2}]`
	got := readAll(t, []byte(content), "x.json", Options{MaxLineBytes: 100})
	want := result{Rows: []row{
		{Line: 1, Record: rec("a", json.Number("1"))},
		{Line: 1, Reason: "the array element is 310 bytes long, over the 100-byte limit"},
		{Line: 2, Record: rec("a", json.Number("2"))},
	}, End: "EOF"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
}
