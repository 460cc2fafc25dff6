package recordio

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTypeCell(t *testing.T) {
	tests := []struct {
		in   string
		want any
	}{
		{"0", json.Number("0")},
		{"42", json.Number("42")},
		{"-7", json.Number("-7")},
		{"123456789012345", json.Number("123456789012345")}, // 15 digits
		{"1234567890123456", "1234567890123456"},            // 16 digits: an id
		{"-1234567890123456", "-1234567890123456"},
		{"12345678901234567890", "12345678901234567890"},
		{"007", "007"},                     // leading zeros: a code
		{"00", "00"},                       //
		{"0044207946000", "0044207946000"}, // phone number
		{"+4420794600", "+4420794600"},     // leading plus
		{"+1", "+1"},
		{"-0", "-0"},
		{"-", "-"},
		{"12.50", json.Number("12.50")},
		{"0.5", json.Number("0.5")},
		{"-0.5", json.Number("-0.5")},
		{"12345678901234.5", json.Number("12345678901234.5")}, // 15 digits
		{"123456789012345.6", "123456789012345.6"},            // 16 digits
		{"01.5", "01.5"},
		{".5", ".5"},
		{"5.", "5."},
		{"1.2.3", "1.2.3"},
		{"1e5", "1e5"},
		{"1E5", "1E5"},
		{"0x1F", "0x1F"},
		{"1,000", "1,000"},
		{" 42", " 42"},
		{"42 ", "42 "},
		{"NaN", "NaN"},
		{"Infinity", "Infinity"},
		{"true", true},
		{"TRUE", true},
		{"True", true},
		{"false", false},
		{"FALSE", false},
		{"yes", "yes"},
		{"1.0", json.Number("1.0")},
		{"t", "t"},
		{"2024-01-02", "2024-01-02"},
		{"null", "null"},
	}
	for _, tc := range tests {
		if got := TypeCell(tc.in); !cmp.Equal(got, tc.want) {
			t.Errorf("TypeCell(%q) = %#v, want %#v", tc.in, got, tc.want)
		}
	}
}

func TestCSV(t *testing.T) {
	tests := []struct {
		name    string
		content string
		opts    Options
		want    result
	}{
		{
			name:    "typing, empty cells left out, quoting does not change types",
			content: "event,time,distinct_id,amount,ok,zip,note\nSigned Up,1618716477,12157,12.50,true,02134,\n\"Paid\",\"1618716478\",\"007\",\"5\",\"FALSE\",\"\",\"a, \"\"quoted\"\" note\"\n",
			want: result{Rows: []row{
				{Line: 2, Record: rec("event", "Signed Up", "time", json.Number("1618716477"), "distinct_id", json.Number("12157"),
					"amount", json.Number("12.50"), "ok", true, "zip", "02134")},
				{Line: 3, Record: rec("event", "Paid", "time", json.Number("1618716478"), "distinct_id", "007",
					"amount", json.Number("5"), "ok", false, "note", `a, "quoted" note`)},
			}, End: "EOF"},
		},
		{
			name:    "BOM, CRLF, header cells trimmed, quoted line breaks",
			content: "\xef\xbb\xbf event , note \r\nA,\"line one\r\nline two\"\r\nB,x\r\n",
			want: result{Rows: []row{
				{Line: 2, Record: rec("event", "A", "note", "line one\nline two")},
				{Line: 4, Record: rec("event", "B", "note", "x")},
			}, End: "EOF"},
		},
		{
			name:    "header only",
			content: "event,time\n",
			want:    result{End: "EOF"},
		},
		{
			name:    "blank rows are skipped",
			content: "a,b\n1,2\n\n,\n,\n3,4\n",
			want: result{Rows: []row{
				{Line: 2, Record: rec("a", json.Number("1"), "b", json.Number("2"))},
				{Line: 6, Record: rec("a", json.Number("3"), "b", json.Number("4"))},
			}, End: "EOF"},
		},
		{
			name:    "per-row errors keep reading",
			content: "a,b\n1,2\n1,2,3\n1\nx\"y,2\n\"x\"y,2\n\"ok\",5\n",
			want: result{Rows: []row{
				{Line: 2, Record: rec("a", json.Number("1"), "b", json.Number("2"))},
				{Line: 3, Reason: "the row has 3 columns, the header has 2"},
				{Line: 4, Reason: "the row has 1 columns, the header has 2"},
				{Line: 5, Reason: `a '"' in an unquoted field (line 5, byte 2); quote the field and double the quote`},
				{Line: 6, Reason: `a quoted field is not closed properly (line 6, byte 3); a '"' inside a quoted field must be doubled`},
				{Line: 7, Record: rec("a", "ok", "b", json.Number("5"))},
			}, End: "EOF"},
		},
		{
			name:    "unnamed column",
			content: "a,,b\n1,,2\n1,x,2\n",
			want: result{Rows: []row{
				{Line: 2, Record: rec("a", json.Number("1"), "b", json.Number("2"))},
				{Line: 3, Reason: "column 2 has a value but no name in the header"},
			}, End: "EOF"},
		},
		{
			name:    "quoted field never closed swallows the rest of the file",
			content: "a,b\n1,2\n3,\"oops\n5,6\n7,8\n",
			want: result{Rows: []row{
				{Line: 2, Record: rec("a", json.Number("1"), "b", json.Number("2"))},
			}, End: "line 3: the quoted field in the record that starts at line 3 is never closed"},
		},
		{
			name:    "quoted field never closed on the last line",
			content: "a,b\n1,2\n3,\"oops",
			want: result{Rows: []row{
				{Line: 2, Record: rec("a", json.Number("1"), "b", json.Number("2"))},
				{Line: 3, Reason: `a quoted field is not closed properly (line 3, byte 8); a '"' inside a quoted field must be doubled`},
			}, End: "EOF"},
		},
		{
			name:    "duplicate header",
			content: "a,b,a\n1,2,3\n",
			want:    result{End: `line 1: the header names column "a" twice (columns 1 and 3)`},
		},
		{
			name:    "header without names",
			content: ",,\n1,2,3\n",
			want:    result{End: "line 1: the header row has no column names"},
		},
		{
			name:    "bad quote in header",
			content: "a,b\"c\n1,2\n",
			want:    result{End: `line 1: invalid CSV header: a '"' in an unquoted field (line 1, byte 4); quote the field and double the quote`},
		},
		{
			name:    "semicolons detected",
			content: "event;amount;note\nA;1,5;\"x;y\"\n",
			want: result{Rows: []row{
				{Line: 2, Record: rec("event", "A", "amount", "1,5", "note", "x;y")},
			}, End: "EOF"},
		},
		{
			name:    "tabs detected",
			content: "event\tn\nA\t1\n",
			want:    result{Rows: []row{{Line: 2, Record: rec("event", "A", "n", json.Number("1"))}}, End: "EOF"},
		},
		{
			name:    "comma forced",
			content: "event;n\nA;1\n",
			opts:    Options{Comma: ','},
			want:    result{Rows: []row{{Line: 2, Record: rec("event;n", "A;1")}}, End: "EOF"},
		},
		{
			name:    "shape hook",
			content: "event,x\nA,1\n",
			opts: Options{CSVShape: func(row map[string]any) map[string]any {
				return map[string]any{"shaped": row}
			}},
			want: result{Rows: []row{{Line: 2, Record: rec("shaped", rec("event", "A", "x", json.Number("1")))}}, End: "EOF"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := readAll(t, []byte(tc.content), "data.csv", tc.opts)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("read %q: mismatch (-want +got):\n%s", tc.content, diff)
			}
		})
	}
}

func TestCSVRaw(t *testing.T) {
	content := "a,b\r\n1,2\r\n\r\n\"x\ny\",3\r\nbad,\"q\"q\r\n"
	rd, err := Open(strings.NewReader(content), "r.csv", Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := drain(t, rd, true)
	want := result{Rows: []row{
		{Line: 2, Record: rec("a", json.Number("1"), "b", json.Number("2")), Raw: "1,2"},
		{Line: 4, Record: rec("a", "x\ny", "b", json.Number("3")), Raw: "\"x\ny\",3"},
		{Line: 6, Reason: `a quoted field is not closed properly (line 6, byte 7); a '"' inside a quoted field must be doubled`, Raw: `bad,"q"q`},
	}, End: "EOF"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
}

func TestCSVLongRecord(t *testing.T) {
	long := strings.Repeat("x", 20000)
	tests := []struct {
		name    string
		content string
		want    result
	}{
		{
			name:    "long line",
			content: "a,b\n1,2\n3," + long + "\n5,6\n",
			want: result{Rows: []row{{Line: 2, Record: rec("a", json.Number("1"), "b", json.Number("2"))}},
				End: "line 3: a CSV record is longer than the 1000-byte limit (or a quoted field is never closed)"},
		},
		{
			name:    "quoted field never closed in a big file",
			content: "a,b\n1,2\n3,\"" + strings.Repeat("x,y\n", 5000),
			want: result{Rows: []row{{Line: 2, Record: rec("a", json.Number("1"), "b", json.Number("2"))}},
				End: "line 3: a CSV record is longer than the 1000-byte limit (or a quoted field is never closed)"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := readAll(t, []byte(tc.content), "data.csv", Options{MaxLineBytes: 1000})
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
