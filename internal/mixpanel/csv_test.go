package mixpanel

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/cebulk/cebulk/internal/recordio"
	"github.com/google/go-cmp/cmp"
)

func TestFromCSVRow(t *testing.T) {
	tests := []struct {
		name string
		obj  Object
		row  map[string]any
		want map[string]any
	}{
		{
			name: "activities",
			obj:  Activities,
			row: map[string]any{"event": "Signed Up", "time": json.Number("1618716477"), "distinct_id": json.Number("12157"),
				"$insert_id": json.Number("99"), "plan": "pro", "amount": json.Number("5"), "ok": true},
			want: map[string]any{"event": "Signed Up", "properties": map[string]any{"time": json.Number("1618716477"),
				"distinct_id": "12157", "$insert_id": "99", "plan": "pro", "amount": json.Number("5"), "ok": true}},
		},
		{
			name: "activities: typed event name back to text",
			obj:  Activities,
			row:  map[string]any{"event": json.Number("404"), "distinct_id": true},
			want: map[string]any{"event": "404", "properties": map[string]any{"distinct_id": "true"}},
		},
		{
			name: "activities: empty row",
			obj:  Activities,
			row:  map[string]any{},
			want: map[string]any{"properties": map[string]any{}},
		},
		{
			name: "users: $distinct_id, the rest to $set",
			obj:  Users,
			row:  map[string]any{"$distinct_id": json.Number("12157"), "$email": "seven@example.com", "credits": json.Number("150")},
			want: map[string]any{"$distinct_id": "12157", "$set": map[string]any{"$email": "seven@example.com", "credits": json.Number("150")}},
		},
		{
			name: "users: distinct_id when there is no $distinct_id",
			obj:  Users,
			row:  map[string]any{"distinct_id": "u1", "plan": "pro"},
			want: map[string]any{"$distinct_id": "u1", "$set": map[string]any{"plan": "pro"}},
		},
		{
			name: "users: distinct_id is a property when $distinct_id is there",
			obj:  Users,
			row:  map[string]any{"$distinct_id": "u1", "distinct_id": "old"},
			want: map[string]any{"$distinct_id": "u1", "$set": map[string]any{"distinct_id": "old"}},
		},
		{
			name: "users: prefixes and options",
			obj:  Users,
			row: map[string]any{"distinct_id": "u1", "$set_once.first_seen": "2024-01-02", "$add.logins": json.Number("1"),
				"$set.plan": "pro", "$token": "tok", "$ignore_time": true, "$ip": "0", "$set_once.": "x"},
			want: map[string]any{"$distinct_id": "u1", "$set_once": map[string]any{"first_seen": "2024-01-02"},
				"$add": map[string]any{"logins": json.Number("1")}, "$set": map[string]any{"plan": "pro", "$set_once.": "x"},
				"$token": "tok", "$ignore_time": true, "$ip": "0"},
		},
		{
			name: "users: the column sorting last wins",
			obj:  Users,
			row:  map[string]any{"distinct_id": "u1", "$set.plan": "a", "plan": "b"},
			want: map[string]any{"$distinct_id": "u1", "$set": map[string]any{"plan": "b"}},
		},
		{
			name: "users: operation columns stay at the top for Normalize to judge",
			obj:  Users,
			row:  map[string]any{"distinct_id": "u1", "$unset": "a,b"},
			want: map[string]any{"$distinct_id": "u1", "$unset": "a,b"},
		},
		{
			name: "users: id only",
			obj:  Users,
			row:  map[string]any{"$distinct_id": "u1"},
			want: map[string]any{"$distinct_id": "u1"},
		},
		{
			name: "unknown object: unchanged",
			obj:  "groups",
			row:  map[string]any{"a": "b"},
			want: map[string]any{"a": "b"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := FromCSVRow(tc.obj, tc.row)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("FromCSVRow(%q, %v) mismatch (-want +got):\n%s", tc.obj, tc.row, diff)
			}
			if diff := cmp.Diff(got, tc.obj.CSVShape(tc.row)); diff != "" {
				t.Errorf("CSVShape differs from FromCSVRow:\n%s", diff)
			}
		})
	}
}

// line is the outcome of one row of a file: its line and either the JSON
// line sent or the reason it was rejected.
type line struct {
	Line   int
	JSON   string
	Reason string
}

// validate runs a file through recordio and Normalize, as the importer does.
func validate(t *testing.T, obj Object, name, content string) []line {
	t.Helper()
	rd, err := recordio.Open(strings.NewReader(content), name, recordio.Options{CSVShape: obj.CSVShape})
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	var got []line
	for {
		it, err := rd.Next()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatalf("Next() = %v", err)
		}
		if it.Err != nil {
			var re *recordio.RowError
			if !errors.As(it.Err, &re) {
				t.Fatalf("Item.Err = %v, want a *recordio.RowError", it.Err)
			}
			got = append(got, line{Line: it.Line, Reason: re.Reason})
			continue
		}
		out, err := Normalize(obj, it.Record, now)
		var re *RejectError
		switch {
		case errors.As(err, &re):
			got = append(got, line{Line: it.Line, Reason: re.Error()})
		case err != nil:
			t.Fatalf("Normalize() = %v", err)
		default:
			got = append(got, line{Line: it.Line, JSON: string(out)})
		}
	}
}

// CSV typing, end to end: how cells reach Mixpanel.
func TestCSVActivitiesEndToEnd(t *testing.T) {
	content := strings.Join([]string{
		`event,time,distinct_id,$insert_id,zip,phone,order_id,amount,ratio,paid,note,qty`,
		`Purchase,1618716477,007,a-1,02134,+4420794600,12345678901234567890,12.50,0.5,TRUE,,3`,
		`Purchase,"1618716477000","42","a-2","90210","0044207946000","123","5","-0.25","false","",""`,
		`Purchase,2021-04-18T03:27:57Z,u3,a-3,,,,,,,"a, ""quoted"" note",`,
		`Purchase,2021-04-18 03:27:57,u4,a-4,,,,,,,,`,
		`Purchase,1618716477,null,a-5,,,,,,,,`,
		`,1618716477,u6,a-6,,,,,,,,`,
		`Purchase,1618716477,u7`,
	}, "\n")
	want := []line{
		{Line: 2, JSON: `{"event":"Purchase","properties":{"$insert_id":"a-1","amount":12.50,"distinct_id":"007","order_id":"12345678901234567890","paid":true,"phone":"+4420794600","qty":3,"ratio":0.5,"time":1618716477,"zip":"02134"}}`},
		{Line: 3, JSON: `{"event":"Purchase","properties":{"$insert_id":"a-2","amount":5,"distinct_id":"42","order_id":123,"paid":false,"phone":"0044207946000","ratio":-0.25,"time":1618716477,"zip":90210}}`},
		{Line: 4, JSON: `{"event":"Purchase","properties":{"$insert_id":"a-3","distinct_id":"u3","note":"a, \"quoted\" note","time":1618716477}}`},
		{Line: 5, Reason: `properties.time: "2021-04-18 03:27:57" has no timezone; add Z for UTC or an offset such as +02:00`},
		{Line: 6, Reason: `properties.distinct_id: "null" is a placeholder value that Mixpanel rejects`},
		{Line: 7, Reason: "event: is missing"},
		{Line: 8, Reason: "the row has 3 columns, the header has 12"},
	}
	got := validate(t, Activities, "events.csv", content)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
}

func TestCSVUsersEndToEnd(t *testing.T) {
	content := strings.Join([]string{
		`$distinct_id,$email,$phone,credits,vip,$set_once.first_seen,$add.logins`,
		`12157,seven@example.com,0612345678,150,true,2024-01-02T00:00:00Z,1`,
		`u2,,,,,,`,
		`anonymous,a@example.com,,,,,`,
	}, "\n")
	want := []line{
		{Line: 2, JSON: `{"$add":{"logins":1},"$distinct_id":"12157","$set":{"$email":"seven@example.com","$phone":"0612345678","credits":150,"vip":true},"$set_once":{"first_seen":"2024-01-02T00:00:00Z"}}`},
		{Line: 3, Reason: "the profile update has no operation: expected one of $set, $set_once, $add, $union, $append, $remove, $unset or $delete"},
		{Line: 4, Reason: `$distinct_id: "anonymous" is a placeholder value that Mixpanel rejects`},
	}
	got := validate(t, Users, "users.csv", content)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
}

// The same events as CSV and as JSON lines give the same lines, derived
// $insert_id included, when the values are written the same way.
func TestCSVAndJSONAgree(t *testing.T) {
	csv := "event,time,distinct_id,plan,n\nSigned Up,1618716477,12157,pro,3\n"
	jsonl := `{"event":"Signed Up","properties":{"time":1618716477000,"distinct_id":12157,"plan":"pro","n":3}}` + "\n"
	fromCSV := validate(t, Activities, "a.csv", csv)
	fromJSON := validate(t, Activities, "a.jsonl", jsonl)
	fromCSV[0].Line = fromJSON[0].Line
	if diff := cmp.Diff(fromCSV, fromJSON); diff != "" {
		t.Errorf("CSV and JSON lines differ (-csv +json):\n%s", diff)
	}
}
