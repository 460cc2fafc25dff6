package cetest_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/cetest"
)

// recordError is the emulator's element of GET bulk/{id}/errors.
type recordError struct {
	Index  int             `json:"index"`
	Status string          `json:"status"`
	Field  string          `json:"field,omitempty"`
	Record json.RawMessage `json:"record"`
}

func (e *env) errors(id, query string) ([]recordError, response) {
	e.t.Helper()
	r := e.do("GET", "/hubs/general/bulk/"+id+"/errors"+query, nil)
	if r.code != http.StatusOK {
		e.t.Fatalf("GET bulk/%s/errors%s = %d %s", id, query, r.code, r.body)
	}
	var errs []recordError
	if err := json.Unmarshal(r.body, &errs); err != nil {
		e.t.Fatalf("errors body %s: %v", r.body, err)
	}
	return errs, r
}

func TestUploadRecordRules(t *testing.T) {
	now := newClock().Now() // 2026-11-26T12:00:00Z
	ts := now.Add(-24 * time.Hour).Unix()
	tests := []struct {
		object, name, record string
		field, status        string // status "" = accepted
	}{
		{"activities", "minimal", fmt.Sprintf(`{"event":"a","properties":{"time":%d,"distinct_id":"u"}}`, ts), "", ""},
		{"activities", "milliseconds", fmt.Sprintf(`{"event":"a","properties":{"time":%d,"distinct_id":"u"}}`, ts*1000), "", ""},
		{"activities", "fractional seconds", fmt.Sprintf(`{"event":"a","properties":{"time":%d.25,"distinct_id":"u"}}`, ts), "", ""},
		{"activities", "numeric distinct_id", fmt.Sprintf(`{"event":"a","properties":{"time":%d,"distinct_id":42}}`, ts), "", ""},
		{"activities", "empty distinct_id", fmt.Sprintf(`{"event":"a","properties":{"time":%d,"distinct_id":""}}`, ts), "", ""},
		{"activities", "36-char insert id", fmt.Sprintf(`{"event":"a","properties":{"time":%d,"distinct_id":"u","$insert_id":"%s"}}`, ts, strings.Repeat("a-9Z", 9)), "", ""},
		{"activities", "59 minutes ahead", fmt.Sprintf(`{"event":"a","properties":{"time":%d,"distinct_id":"u"}}`, now.Add(59*time.Minute).Unix()), "", ""},
		{"activities", "no event", fmt.Sprintf(`{"properties":{"time":%d,"distinct_id":"u"}}`, ts), "event", "'event' must be a non-empty string"},
		{"activities", "empty event", fmt.Sprintf(`{"event":"","properties":{"time":%d,"distinct_id":"u"}}`, ts), "event", "'event' must be a non-empty string"},
		{"activities", "numeric event", fmt.Sprintf(`{"event":7,"properties":{"time":%d,"distinct_id":"u"}}`, ts), "event", "'event' must be a non-empty string"},
		{"activities", "no properties", `{"event":"a"}`, "properties", "'properties' must be an object"},
		{"activities", "properties array", `{"event":"a","properties":[]}`, "properties", "'properties' must be an object"},
		{"activities", "no time", `{"event":"a","properties":{"distinct_id":"u"}}`, "properties.time", "'properties.time' is required"},
		{"activities", "time as string", fmt.Sprintf(`{"event":"a","properties":{"time":"%d","distinct_id":"u"}}`, ts), "properties.time", "'properties.time' is invalid: must be specified as seconds since epoch"},
		{"activities", "1970", `{"event":"a","properties":{"time":15000000,"distinct_id":"u"}}`, "properties.time", "'properties.time' is invalid: must be after 1971-01-01"},
		{"activities", "two hours ahead", fmt.Sprintf(`{"event":"a","properties":{"time":%d,"distinct_id":"u"}}`, now.Add(2*time.Hour).Unix()), "properties.time", "'properties.time' is invalid: must not be more than 1 hour in the future"},
		{"activities", "no distinct_id", fmt.Sprintf(`{"event":"a","properties":{"time":%d}}`, ts), "properties.distinct_id", "'properties.distinct_id' is required"},
		{"activities", "null distinct_id", fmt.Sprintf(`{"event":"a","properties":{"time":%d,"distinct_id":null}}`, ts), "properties.distinct_id", "'properties.distinct_id' must be a string"},
		{"activities", "37-char insert id", fmt.Sprintf(`{"event":"a","properties":{"time":%d,"distinct_id":"u","$insert_id":"%s"}}`, ts, strings.Repeat("a", 37)), "properties.$insert_id", "'properties.$insert_id' is invalid: must be 1 to 36 characters of [A-Za-z0-9-]"},
		{"activities", "insert id with underscore", fmt.Sprintf(`{"event":"a","properties":{"time":%d,"distinct_id":"u","$insert_id":"a_b"}}`, ts), "properties.$insert_id", "'properties.$insert_id' is invalid: must be 1 to 36 characters of [A-Za-z0-9-]"},
		{"activities", "too many properties", manyProperties(ts, 255), "properties", "'properties' must have fewer than 255 properties"},
		{"activities", "254 properties", manyProperties(ts, 254), "", ""},
		{"activities", "not an object", `[1,2]`, "", "record must be a JSON object"},
		{"activities", "not JSON", `{"event":`, "", "record is not valid JSON"},
		{"users", "set", `{"$distinct_id":"u1","$set":{"$email":"a@example.com"}}`, "", ""},
		{"users", "set_once and numeric id", `{"$distinct_id":12,"$set_once":{"first_seen":"2026-01-01"}}`, "", ""},
		{"users", "unset", `{"$distinct_id":"u1","$unset":["plan"]}`, "", ""},
		{"users", "delete", `{"$distinct_id":"u1","$delete":""}`, "", ""},
		{"users", "no distinct id", `{"$set":{"a":1}}`, "$distinct_id", "'$distinct_id' is required"},
		{"users", "empty distinct id", `{"$distinct_id":"","$set":{"a":1}}`, "$distinct_id", "'$distinct_id' must be a non-empty string"},
		{"users", "no operation", `{"$distinct_id":"u1","$properties":{"a":1}}`, "", "record must contain one of $set, $set_once, $add, $union, $append, $remove, $unset, $delete"},
		{"users", "set not an object", `{"$distinct_id":"u1","$set":"x"}`, "$set", "'$set' must be an object"},
		{"users", "unset not an array", `{"$distinct_id":"u1","$unset":"plan"}`, "$unset", "'$unset' must be an array of property names"},
	}
	for _, object := range []string{"activities", "users"} {
		t.Run(object, func(t *testing.T) {
			e := newEnv(t, cetest.Options{})
			var file strings.Builder
			var wantErrs []recordError
			var wantAccepted []string
			i := 0
			for _, tc := range tests {
				if tc.object != object {
					continue
				}
				file.WriteString(tc.record + "\n")
				if tc.status == "" {
					wantAccepted = append(wantAccepted, tc.record)
				} else {
					rec := json.RawMessage(tc.record)
					if !json.Valid(rec) {
						rec, _ = json.Marshal(tc.record)
					}
					wantErrs = append(wantErrs, recordError{Index: i, Status: tc.status, Field: tc.field, Record: rec})
				}
				i++
			}
			id := e.upload(object, `{"format":"json"}`, file.String())
			st := e.status(id)
			if st["status"] != "COMPLETED" || st["recordsCount"] != float64(i) || st["recordsFailedCount"] != float64(len(wantErrs)) || st["job_direction"] != "UPLOAD" {
				t.Errorf("status = %v, want COMPLETED UPLOAD with recordsCount %d and recordsFailedCount %d", st, i, len(wantErrs))
			}
			gotErrs, _ := e.errors(id, "")
			if diff := cmp.Diff(wantErrs, gotErrs, cmp.Comparer(jsonEqual)); diff != "" {
				t.Errorf("errors mismatch (-want +got):\n%s", diff)
			}
			var gotAccepted []string
			for _, raw := range e.fake.Uploaded(object) {
				gotAccepted = append(gotAccepted, string(raw))
			}
			if diff := cmp.Diff(wantAccepted, gotAccepted); diff != "" {
				t.Errorf("Uploaded(%q) mismatch (-want +got):\n%s", object, diff)
			}
		})
	}
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && cmp.Equal(x, y)
}

func manyProperties(ts int64, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"event":"a","properties":{"time":%d,"distinct_id":"u"`, ts)
	for i := 2; i < n; i++ {
		fmt.Fprintf(&b, `,"p%d":%d`, i, i)
	}
	b.WriteString("}}")
	return b.String()
}

func TestUploadErrorsPaging(t *testing.T) {
	e := newEnv(t, cetest.Options{})
	ts := e.clock.Now().Add(-time.Hour).Unix()
	var file strings.Builder
	for i := range 40 {
		if i%13 == 5 { // 3 good records among 40
			fmt.Fprintf(&file, `{"event":"ok","properties":{"time":%d,"distinct_id":"u%d"}}`+"\n", ts, i)
		} else {
			fmt.Fprintf(&file, `{"properties":{"time":%d,"distinct_id":"u%d"}}`+"\n", ts, i)
		}
	}
	id := e.upload("activities", `{"format":"json"}`, file.String())
	if st := e.status(id); st["recordsCount"] != float64(40) || st["recordsFailedCount"] != float64(37) {
		t.Fatalf("status = %v, want 40 records, 37 failed", st)
	}

	page1, r1 := e.errors(id, "?pageSize=30")
	tok := r1.header.Get("Elements-Next-Page-Token")
	if len(page1) != 30 || tok == "" || r1.header.Get("Elements-Returned-Count") != "30" {
		t.Fatalf("page 1: %d errors, token %q, returned-count %q; want 30, a token, 30", len(page1), tok, r1.header.Get("Elements-Returned-Count"))
	}
	page2, r2 := e.errors(id, "?pageSize=30&nextPage="+tok)
	if _, ok := r2.header["Elements-Next-Page-Token"]; len(page2) != 7 || ok || r2.header.Get("Elements-Returned-Count") != "7" {
		t.Errorf("page 2: %d errors, token present %v, returned-count %q; want 7, no token, 7", len(page2), ok, r2.header.Get("Elements-Returned-Count"))
	}
	all, r := e.errors(id, "")
	if len(all) != 37 || r.header.Get("Elements-Next-Page-Token") != "" {
		t.Errorf("default page: %d errors, token %q; want 37 and no token", len(all), r.header.Get("Elements-Next-Page-Token"))
	}
	if diff := cmp.Diff(all, append(page1, page2...), cmp.Comparer(jsonEqual)); diff != "" {
		t.Errorf("pages differ from the whole (-whole +pages):\n%s", diff)
	}
	if all[0].Index != 0 || all[5].Index != 6 {
		t.Errorf("error indexes = %d, %d, want 0 and 6 (record 5 was accepted)", all[0].Index, all[5].Index)
	}
	if _, r := e.errors(e.startQuery("q=select%20*%20from%20users"), ""); string(r.body) != "[]\n" {
		t.Errorf("errors of a clean job = %q, want []", r.body)
	}
}

func TestUploadFiles(t *testing.T) {
	good := func(i int) string {
		return fmt.Sprintf(`{"event":"e%d","properties":{"time":1764000000,"distinct_id":"u"}}`, i)
	}
	tests := []struct {
		name      string
		body      func(mw *multipart.Writer)
		wantCode  int
		wantCount float64
	}{
		{"JSON lines", func(mw *multipart.Writer) {
			mw.WriteField("metaData", `{"format":"json"}`)
			fileField(mw, good(1)+"\n"+good(2)+"\n")
		}, 200, 2},
		{"CRLF and blank lines", func(mw *multipart.Writer) {
			fileField(mw, "\r\n"+good(1)+"\r\n\r\n"+good(2))
		}, 200, 2},
		{"pretty JSON array", func(mw *multipart.Writer) {
			fileField(mw, "[\n  "+good(1)+",\n  "+good(2)+",\n  "+good(3)+"\n]\n")
		}, 200, 3},
		{"byte order mark", func(mw *multipart.Writer) {
			fileField(mw, "\ufeff"+good(1)+"\n")
		}, 200, 1},
		{"metaData after the file", func(mw *multipart.Writer) {
			fileField(mw, good(1))
			mw.WriteField("metaData", `{"format":"json","callback-payload":{"k":"v"}}`)
		}, 200, 1},
		{"other parts ignored", func(mw *multipart.Writer) {
			mw.WriteField("note", "hello")
			fileField(mw, good(1))
		}, 200, 1},
		{"empty file", func(mw *multipart.Writer) { fileField(mw, "") }, 200, 0},
		{"broken array", func(mw *multipart.Writer) { fileField(mw, "["+good(1)+",{") }, 400, 0},
		{"CSV without metaData", func(mw *multipart.Writer) {
			fileField(mw, "event,time,distinct_id\na,1764000000,u\nb,1764000001,u\n")
		}, 200, 2},
		{"CSV with format csv", func(mw *multipart.Writer) {
			mw.WriteField("metaData", `{"format":"csv"}`)
			fileField(mw, "event,time,distinct_id\na,1764000000,u\n")
		}, 200, 1},
		{"CSV with metaData without format", func(mw *multipart.Writer) {
			mw.WriteField("metaData", `{}`)
			fileField(mw, "event,time,distinct_id\na,1764000000,u\n")
		}, 200, 1},
		{"JSON with format csv", func(mw *multipart.Writer) {
			mw.WriteField("metaData", `{"format":"csv"}`)
			fileField(mw, good(1))
		}, 400, 0},
		{"JSON with metaData without format", func(mw *multipart.Writer) {
			mw.WriteField("metaData", `{"callback-payload":"p"}`)
			fileField(mw, good(1))
		}, 400, 0},
		{"CSV with format json", func(mw *multipart.Writer) {
			mw.WriteField("metaData", `{"format":"json"}`)
			fileField(mw, "event,time,distinct_id\na,1764000000,u\n")
		}, 400, 0},
		{"CSV, then metaData with format json", func(mw *multipart.Writer) {
			fileField(mw, "event,time,distinct_id\na,1764000000,u\n")
			mw.WriteField("metaData", `{"format":"json"}`)
		}, 400, 0},
		{"JSON, then metaData without format", func(mw *multipart.Writer) {
			fileField(mw, good(1))
			mw.WriteField("metaData", `{}`)
		}, 400, 0},
		{"format xml", func(mw *multipart.Writer) {
			mw.WriteField("metaData", `{"format":"xml"}`)
			fileField(mw, good(1))
		}, 400, 0},
		{"metaData not JSON", func(mw *multipart.Writer) {
			mw.WriteField("metaData", `format=json`)
			fileField(mw, good(1))
		}, 400, 0},
		{"no file", func(mw *multipart.Writer) { mw.WriteField("metaData", `{"format":"json"}`) }, 400, 0},
		{"two files", func(mw *multipart.Writer) { fileField(mw, good(1)); fileField(mw, good(2)) }, 400, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, cetest.Options{})
			var body strings.Builder
			mw := multipart.NewWriter(&body)
			tc.body(mw)
			mw.Close()
			r := e.do("POST", "/bulk/activities", strings.NewReader(body.String()), "Content-Type: "+mw.FormDataContentType())
			if r.code != tc.wantCode {
				t.Fatalf("upload = %d %s, want %d", r.code, r.body, tc.wantCode)
			}
			if r.code != http.StatusOK {
				checkErrorShape(t, r)
				if n := len(e.fake.Jobs()); n != 0 {
					t.Errorf("a refused upload created %d jobs", n)
				}
				return
			}
			created := r.object(t)
			if created["status"] != "CREATED" || created["id"] == "" {
				t.Errorf("upload answer = %s, want a string id and CREATED", r.body)
			}
			st := e.status(created["id"].(string))
			if st["recordsCount"] != tc.wantCount || st["recordsFailedCount"] != float64(0) {
				t.Errorf("status = %v, want %v records, none failed", st, tc.wantCount)
			}
		})
	}
}

func fileField(mw *multipart.Writer, content string) {
	w, _ := mw.CreateFormFile("file", "data.json")
	io.WriteString(w, content)
}

func TestFailRecordsMatching(t *testing.T) {
	e := newEnv(t, cetest.Options{})
	e.fake.FailRecordsMatching(func(object string, rec map[string]any) string {
		if props, _ := rec["properties"].(map[string]any); props["distinct_id"] == "blocked" {
			return "Mixpanel refused distinct_id blocked"
		}
		return ""
	})
	file := `{"event":"a","properties":{"time":1764000000,"distinct_id":"ok"}}
{"event":"b","properties":{"time":1764000000,"distinct_id":"blocked"}}
{"event":"c","properties":{"time":1764000000,"distinct_id":"ok"}}`
	id := e.upload("activities", `{"format":"json"}`, file)
	st := e.status(id)
	if st["status"] != "COMPLETED" || st["recordsCount"] != float64(3) || st["recordsFailedCount"] != float64(1) {
		t.Errorf("status = %v, want COMPLETED, 3 records, 1 failed", st)
	}
	errs, _ := e.errors(id, "")
	want := []recordError{{Index: 1, Status: "Mixpanel refused distinct_id blocked", Record: json.RawMessage(`{"event":"b","properties":{"time":1764000000,"distinct_id":"blocked"}}`)}}
	if diff := cmp.Diff(want, errs, cmp.Comparer(jsonEqual)); diff != "" {
		t.Errorf("errors mismatch (-want +got):\n%s", diff)
	}
	if got := len(e.fake.Uploaded("activities")); got != 2 {
		t.Errorf("Uploaded = %d records, want 2", got)
	}
}

func TestUploadKeptOnlyWhenCompleted(t *testing.T) {
	file := `{"event":"a","properties":{"time":1764000000,"distinct_id":"u"}}`
	t.Run("error outcome", func(t *testing.T) {
		e := newEnv(t, cetest.Options{})
		e.fake.SetNextJobOutcome(cetest.StatusAborted, "CE is down")
		id := e.upload("activities", `{"format":"json"}`, file)
		if st := e.status(id); st["status"] != "ABORTED" || st["error"] != "CE is down" {
			t.Errorf("status = %v, want ABORTED with error", st)
		}
		if got := e.fake.Uploaded("activities"); len(got) != 0 {
			t.Errorf("Uploaded after an aborted job = %s, want none", got)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		e := newEnv(t, cetest.Options{CompletionDelay: time.Minute})
		id := e.upload("activities", `{"format":"json"}`, file)
		if got := e.fake.Uploaded("activities"); len(got) != 0 {
			t.Errorf("Uploaded while RUNNING = %s, want none", got)
		}
		e.do("PUT", "/bulk/"+id+"/cancel", nil)
		e.clock.Advance(time.Hour)
		if got := e.fake.Uploaded("activities"); len(got) != 0 {
			t.Errorf("Uploaded after cancel = %s, want none", got)
		}
	})
	t.Run("discarded", func(t *testing.T) {
		e := newEnv(t, cetest.Options{DiscardUploads: true})
		id := e.upload("activities", `{"format":"json"}`, file+"\n{}")
		if st := e.status(id); st["recordsCount"] != float64(2) || st["recordsFailedCount"] != float64(1) {
			t.Errorf("status = %v, want 2 records, 1 failed", st)
		}
		if got := e.fake.Uploaded("activities"); got != nil {
			t.Errorf("Uploaded with DiscardUploads = %s, want nil", got)
		}
	})
}

// TestStreamedUpload sends a generated file through an io.Pipe, as the
// client does, so neither side holds it whole.
func TestStreamedUpload(t *testing.T) {
	e := newEnv(t, cetest.Options{DiscardUploads: true})
	from := e.clock.Now().AddDate(0, 0, -2)
	gen := cetest.SampleActivitiesBytes(3, 4<<20, from, from.AddDate(0, 0, 1))
	want := gen.Count(time.Time{}, time.Time{})

	pr, pw := io.Pipe()
	bw := bufio.NewWriterSize(pw, 64<<10) // as a client should: few, large writes
	mw := multipart.NewWriter(bw)
	go func() {
		mw.WriteField("metaData", `{"format":"json"}`)
		w, _ := mw.CreateFormFile("file", "activities.jsonl")
		var err error
		gen.Records(func(r cetest.Record) bool {
			if _, err = w.Write(r.JSON); err == nil {
				_, err = w.Write([]byte("\n"))
			}
			return err == nil
		})
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
	st := e.status(created["id"].(string))
	if st["recordsCount"] != float64(want) || st["recordsFailedCount"] != float64(0) {
		t.Errorf("status = %v, want %d records, none failed", st, want)
	}
}
