package cetest_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/cebulk/cebulk/internal/cetest"
)

// csvUpload posts file to object as multipart with metaData (none when
// empty) placed before the file, or after it when after is set.
func (e *env) csvUpload(object, metaData, file string, after bool) response {
	e.t.Helper()
	var body strings.Builder
	mw := multipart.NewWriter(&body)
	if metaData != "" && !after {
		mw.WriteField("metaData", metaData)
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="file"; filename="records.csv"`)
	h.Set("Content-Type", "text/csv")
	fw, err := mw.CreatePart(h)
	if err != nil {
		e.t.Fatal(err)
	}
	io.WriteString(fw, file)
	if metaData != "" && after {
		mw.WriteField("metaData", metaData)
	}
	mw.Close()
	return e.do("POST", "/hubs/general/bulk/"+object, strings.NewReader(body.String()), "Content-Type: "+mw.FormDataContentType())
}

// TestUploadCSV uploads CSV files mixing good and bad rows and checks the
// records built from the rows, the counts and the per-row errors.
func TestUploadCSV(t *testing.T) {
	ts := newClock().Now().Add(-24 * time.Hour).Unix()
	activities := strings.Join([]string{
		"event,time,distinct_id,$insert_id,plan,amount,zip,ratio",
		fmt.Sprintf("Signed Up,%d,12157,ins-0001,pro,12.50,007,-0.5", ts),
		"Login,,u-2,,,,,",
		fmt.Sprintf("\"Quoted, \"\"event\"\"\",%d,u-3,,\"two\nlines\",1e5,+1,", ts),
		fmt.Sprintf("Login,%d,u-4,bad id!,,,,", ts),
		fmt.Sprintf("Login,%d,u-5", ts),
		"",
		fmt.Sprintf(",%d,u-6,,,,,", ts),
		fmt.Sprintf("Logout,%d.25,u-1,,,,,", ts),
		"Login,yesterday,u-7,,,,,",
		fmt.Sprintf("Login,%d,u-blocked,,,,,", ts),
	}, "\r\n") + "\r\n"
	users := strings.Join([]string{
		"$distinct_id,$email,credits,plan,zip",
		"u-1,ada@example.com,150,pro,02134",
		",x@example.com,1,,",
		"u-2,,,,",
		"u-3,grace@example.com",
		`12157,"Dallas, TX",0,free,`,
		"u-blocked,b@example.com,1,free,",
	}, "\n")
	const blocked = "Mixpanel refused u-blocked"
	hook := func(object string, rec map[string]any) string {
		id := rec["$distinct_id"]
		if props, ok := rec["properties"].(map[string]any); ok {
			id = props["distinct_id"]
		}
		if id == "u-blocked" {
			return blocked
		}
		return ""
	}
	tests := []struct {
		name, object, file string
		wantStored         []string
		wantErrs           []recordError
		wantTotal          int
	}{
		{
			name: "activities", object: "activities", file: activities,
			wantStored: []string{
				fmt.Sprintf(`{"event":"Signed Up","properties":{"time":%d,"distinct_id":"12157","$insert_id":"ins-0001","plan":"pro","amount":12.50,"zip":"007","ratio":-0.5}}`, ts),
				fmt.Sprintf(`{"event":"Quoted, \"event\"","properties":{"time":%d,"distinct_id":"u-3","plan":"two\nlines","amount":"1e5","zip":"+1"}}`, ts),
				fmt.Sprintf(`{"event":"Logout","properties":{"time":%d.25,"distinct_id":"u-1"}}`, ts),
			},
			wantErrs: []recordError{
				{Index: 1, Field: "properties.time", Status: "'properties.time' is required", Record: json.RawMessage(`{"event":"Login","properties":{"distinct_id":"u-2"}}`)},
				{Index: 3, Field: "properties.$insert_id", Status: "'properties.$insert_id' is invalid: must be 1 to 36 characters of [A-Za-z0-9-]",
					Record: json.RawMessage(fmt.Sprintf(`{"event":"Login","properties":{"time":%d,"distinct_id":"u-4","$insert_id":"bad id!"}}`, ts))},
				{Index: 4, Status: "row has 3 fields, the header has 8", Record: json.RawMessage(fmt.Sprintf(`["Login","%d","u-5"]`, ts))},
				{Index: 5, Field: "event", Status: "'event' must be a non-empty string", Record: json.RawMessage(fmt.Sprintf(`{"properties":{"time":%d,"distinct_id":"u-6"}}`, ts))},
				{Index: 7, Field: "properties.time", Status: "'properties.time' is invalid: must be specified as seconds since epoch",
					Record: json.RawMessage(`{"event":"Login","properties":{"time":"yesterday","distinct_id":"u-7"}}`)},
				{Index: 8, Status: blocked, Record: json.RawMessage(fmt.Sprintf(`{"event":"Login","properties":{"time":%d,"distinct_id":"u-blocked"}}`, ts))},
			},
			wantTotal: 9,
		},
		{
			name: "users", object: "users", file: users,
			wantStored: []string{
				`{"$distinct_id":"u-1","$set":{"$email":"ada@example.com","credits":150,"plan":"pro","zip":"02134"}}`,
				`{"$distinct_id":"u-2","$set":{}}`,
				`{"$distinct_id":"12157","$set":{"$email":"Dallas, TX","credits":0,"plan":"free"}}`,
			},
			wantErrs: []recordError{
				{Index: 1, Field: "$distinct_id", Status: "'$distinct_id' is required", Record: json.RawMessage(`{"$set":{"$email":"x@example.com","credits":1}}`)},
				{Index: 3, Status: "row has 2 fields, the header has 5", Record: json.RawMessage(`["u-3","grace@example.com"]`)},
				{Index: 5, Status: blocked, Record: json.RawMessage(`{"$distinct_id":"u-blocked","$set":{"$email":"b@example.com","credits":1,"plan":"free"}}`)},
			},
			wantTotal: 6,
		},
		{
			name: "users with distinct_id and download prefixes", object: "users",
			file: "distinct_id,$set.plan,$properties.$city\nu-1,pro,Dallas\nu-2,,\n",
			wantStored: []string{
				`{"$distinct_id":"u-1","$set":{"plan":"pro","$city":"Dallas"}}`,
				`{"$distinct_id":"u-2","$set":{}}`,
			},
			wantTotal: 2,
		},
		{
			name: "users with an id column only", object: "users",
			file: "$distinct_id\nu-1\n",
			wantErrs: []recordError{
				{Index: 0, Status: "record must contain one of $set, $set_once, $add, $union, $append, $remove, $unset, $delete", Record: json.RawMessage(`{"$distinct_id":"u-1"}`)},
			},
			wantTotal: 1,
		},
		{
			name: "activities with download prefixes and a byte order mark", object: "activities",
			file: fmt.Sprintf("\ufeffevent,properties.time,properties.distinct_id,properties.$browser\nLogin,%d,u-1,Chrome\n", ts),
			wantStored: []string{
				fmt.Sprintf(`{"event":"Login","properties":{"time":%d,"distinct_id":"u-1","$browser":"Chrome"}}`, ts),
			},
			wantTotal: 1,
		},
		{name: "header only", object: "activities", file: "event,time,distinct_id\n"},
	}
	sends := []struct {
		name, metaData string
		after          bool
	}{
		{"metaData without format", `{}`, false},
		{"format csv", `{"format":"csv"}`, false},
		{"format CSV", `{"format":"CSV"}`, false},
		{"no metaData", "", false},
		{"metaData after the file", `{"callback-payload":"p"}`, true},
	}
	for _, tc := range tests {
		for _, send := range sends {
			t.Run(tc.name+"/"+send.name, func(t *testing.T) {
				e := newEnv(t, cetest.Options{})
				e.fake.FailRecordsMatching(hook)
				r := e.csvUpload(tc.object, send.metaData, tc.file, send.after)
				if r.code != http.StatusOK {
					t.Fatalf("upload = %d %s, want 200", r.code, r.body)
				}
				id, _ := r.object(t)["id"].(string)
				st := e.status(id)
				want := map[string]any{"status": "COMPLETED", "recordsCount": float64(tc.wantTotal), "recordsFailedCount": float64(len(tc.wantErrs)), "fileFormat": "csv"}
				got := map[string]any{"status": st["status"], "recordsCount": st["recordsCount"], "recordsFailedCount": st["recordsFailedCount"], "fileFormat": st["fileFormat"]}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("status mismatch (-want +got):\n%s", diff)
				}
				if jobs := e.fake.Jobs(); len(jobs) != 1 || jobs[0].Format != "csv" {
					t.Errorf("Jobs() = %+v, want one job with Format csv", jobs)
				}
				gotErrs, _ := e.errors(id, "")
				if diff := cmp.Diff(tc.wantErrs, gotErrs, cmp.Comparer(jsonEqual), cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("errors mismatch (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(tc.wantStored, strs(e.fake.Uploaded(tc.object))); diff != "" {
					t.Errorf("Uploaded(%q) mismatch (-want +got):\n%s", tc.object, diff)
				}
			})
		}
	}
}

func strs(raws []json.RawMessage) []string {
	var out []string
	for _, r := range raws {
		out = append(out, string(r))
	}
	return out
}

// TestUploadCSVRefused checks the CSV files refused whole, with 400 and no
// job.
func TestUploadCSVRefused(t *testing.T) {
	good := `{"event":"a","properties":{"time":1764000000,"distinct_id":"u"}}`
	tests := []struct {
		name, object, metaData, file string
		after                        bool
		wantMsg                      string // a part of the message
	}{
		{name: "header column without a name", object: "activities", metaData: `{}`, file: "event,,time\na,b,c\n", wantMsg: "column 2 has no name"},
		{name: "two columns for one property", object: "activities", metaData: `{}`, file: "time,properties.time\n1,2\n", wantMsg: `columns "time" and "properties.time"`},
		{name: "two id columns", object: "users", metaData: `{}`, file: "$distinct_id,distinct_id\na,b\n", wantMsg: `columns "$distinct_id" and "distinct_id"`},
		{name: "stray quote", object: "activities", metaData: `{}`, file: "event,time\nLog\"in,1\n", wantMsg: "line 2"},
		{name: "unterminated quote", object: "activities", metaData: `{}`, file: "event,time\n\"Login,1\n", wantMsg: "Invalid CSV file"},
		{name: "row over 1 MB", object: "users", metaData: `{}`, file: "$distinct_id,bio\nu-1,\"" + strings.Repeat("0123456789\n", 120_000) + "\"\n", wantMsg: "larger than 1 MB"},
		{name: "JSON sent as CSV", object: "activities", metaData: `{"format":"csv"}`, file: good, wantMsg: "looks like JSON"},
		{name: "JSON sent without format", object: "activities", metaData: `{}`, file: good, wantMsg: "no format means CSV"},
		{name: "CSV sent as JSON", object: "activities", metaData: `{"format":"json"}`, file: "event,time\n", wantMsg: "format json expects"},
		{name: "CSV, then metaData with format json", object: "activities", metaData: `{"format":"json"}`, file: "event,time\n", after: true, wantMsg: `The file is CSV, but metaData says format "json"`},
		{name: "JSON, then metaData without format", object: "activities", metaData: `{}`, file: good, after: true, wantMsg: "The file is JSON, but metaData has no format, which means CSV"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, cetest.Options{})
			r := e.csvUpload(tc.object, tc.metaData, tc.file, tc.after)
			if r.code != http.StatusBadRequest {
				t.Fatalf("upload = %d %s, want 400", r.code, r.body)
			}
			checkErrorShape(t, r)
			if msg, _ := r.object(t)["message"].(string); !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("message = %q, want it to contain %q", msg, tc.wantMsg)
			}
			if n := len(e.fake.Jobs()); n != 0 {
				t.Errorf("a refused upload created %d jobs", n)
			}
		})
	}
}

// TestCSVRoundTrip downloads records as CSV and uploads that file back, as
// CE expects CSV (metaData without format): the records come back whole.
func TestCSVRoundTrip(t *testing.T) {
	e := newEnv(t, cetest.Options{})
	now := e.clock.Now()
	acts := cetest.SampleActivities(7, 300, now.Add(-48*time.Hour), now.Add(-time.Hour))
	people := cetest.SampleUsers(7, 30)
	e.fake.SeedGenerated("activities", acts)
	e.fake.SeedGenerated("users", people)

	for _, tc := range []struct {
		object string
		gen    cetest.Generator
		// want maps a seeded record to the record uploaded from its row.
		want func(t *testing.T, raw json.RawMessage) any
	}{
		{"activities", acts, func(t *testing.T, raw json.RawMessage) any { return decode(t, raw) }},
		{"users", people, func(t *testing.T, raw json.RawMessage) any {
			m := decode(t, raw).(map[string]any)
			return map[string]any{"$distinct_id": m["$distinct_id"], "$set": m["$properties"]}
		}},
	} {
		t.Run(tc.object, func(t *testing.T) {
			id := e.startQuery("q=select%20*%20from%20" + tc.object)
			e.status(id)
			csvFile := e.do("GET", "/bulk/"+id+"/"+tc.object, nil, "Accept: text/csv")
			if csvFile.code != http.StatusOK {
				t.Fatalf("CSV download = %d %s", csvFile.code, csvFile.body)
			}
			r := e.csvUpload(tc.object, `{}`, string(csvFile.body), false)
			if r.code != http.StatusOK {
				t.Fatalf("upload = %d %s, want 200", r.code, r.body)
			}
			up, _ := r.object(t)["id"].(string)
			if st := e.status(up); st["recordsFailedCount"] != float64(0) {
				errs, _ := e.errors(up, "?pageSize=3")
				t.Fatalf("status = %v, want no failed records; first errors: %+v", st, errs)
			}
			var want, got []any
			tc.gen.Records(func(rec cetest.Record) bool {
				want = append(want, tc.want(t, rec.JSON))
				return true
			})
			for _, raw := range e.fake.Uploaded(tc.object) {
				got = append(got, decode(t, raw))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("records uploaded from the CSV download (-seeded +uploaded):\n%s", diff)
			}
		})
	}
}

func decode(t *testing.T, raw json.RawMessage) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("record %s: %v", raw, err)
	}
	return v
}

// TestStreamedCSVUpload sends a generated CSV file through an io.Pipe, so
// neither side holds it whole.
func TestStreamedCSVUpload(t *testing.T) {
	e := newEnv(t, cetest.Options{DiscardUploads: true})
	ts := e.clock.Now().Add(-time.Hour).Unix()
	const rows = 50_000

	pr, pw := io.Pipe()
	bw := bufio.NewWriterSize(pw, 64<<10)
	mw := multipart.NewWriter(bw)
	go func() {
		mw.WriteField("metaData", `{}`)
		w, _ := mw.CreateFormFile("file", "activities.csv")
		_, err := io.WriteString(w, "event,time,distinct_id,$insert_id,amount\n")
		for i := 0; i < rows && err == nil; i++ {
			_, err = fmt.Fprintf(w, "Purchase,%d,user-%d,ins-%d,%d.99\n", ts, i%100, i, i%50)
		}
		if err == nil {
			err = mw.Close()
		}
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
	}()
	req, _ := http.NewRequestWithContext(t.Context(), "POST", e.base+"/hubs/general/bulk/activities", pr)
	req.Header.Set("Authorization", authHeader)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var created map[string]any
	json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	id, _ := created["id"].(string)
	if resp.StatusCode != http.StatusOK || id == "" {
		t.Fatalf("upload = %d %v, want 200 and a job id", resp.StatusCode, created)
	}
	st := e.status(id)
	if st["recordsCount"] != float64(rows) || st["recordsFailedCount"] != float64(0) {
		t.Errorf("status = %v, want %d records, none failed", st, rows)
	}
}
