package cetest_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/pkg/ce"
)

// lines splits a JSON lines body into its non-empty lines.
func lines(body []byte) []string {
	var out []string
	for l := range strings.SplitSeq(string(body), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// names returns the "event" of every record of a JSON lines or array body.
func eventNames(t *testing.T, body []byte) []string {
	t.Helper()
	var recs []map[string]any
	if bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")) {
		if err := json.Unmarshal(body, &recs); err != nil {
			t.Fatalf("body %s: %v", body, err)
		}
	} else {
		for _, l := range lines(body) {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("line %s: %v", l, err)
			}
			recs = append(recs, m)
		}
	}
	var out []string
	for _, r := range recs {
		out = append(out, r["event"].(string))
	}
	return out
}

func TestDownloadWindow(t *testing.T) {
	e := newEnv(t, cetest.Options{})
	from := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	to := from.Add(24 * time.Hour)
	ms := map[string]any{"event": "in, milliseconds", "properties": map[string]any{"time": from.Add(2 * time.Hour).UnixMilli(), "distinct_id": "u"}}
	e.fake.Seed("activities", []map[string]any{
		event("before from", from.Add(-time.Second), "u"),
		event("at from", from, "u"),
		event("in", from.Add(time.Hour), "u"),
		ms,
		event("last second", to.Add(-time.Second), "u"),
		event("at to", to, "u"),
		event("after to", to.Add(time.Hour), "u"),
		{"event": "no time", "properties": map[string]any{"distinct_id": "u"}},
	})
	all := []string{"before from", "at from", "in", "in, milliseconds", "last second", "at to", "after to", "no time"}
	inWindow := []string{"at from", "in", "in, milliseconds", "last second"}
	tests := []struct {
		name     string
		from, to string
		want     []string
	}{
		{"no window", "", "", all},
		{"from inclusive, to exclusive", "2026-11-25T00:00:00Z", "2026-11-26T00:00:00Z", inWindow},
		{"JavaScript toISOString", "2026-11-25T00:00:00.000Z", "2026-11-26T00:00:00.000Z", inWindow},
		{"other offset, same instants", "2026-11-24T16:00:00-08:00", "2026-11-25T16:00:00-08:00", inWindow},
		{"from only", "2026-11-25T00:00:00Z", "", []string{"at from", "in", "in, milliseconds", "last second", "at to", "after to"}},
		{"to only", "", "2026-11-25T00:00:00Z", []string{"before from"}},
		{"empty window", "2026-11-25T00:00:00Z", "2026-11-25T00:00:00Z", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := url.Values{"q": {"select * from activities"}}
			if tc.from != "" {
				q.Set("from", tc.from)
			}
			if tc.to != "" {
				q.Set("to", tc.to)
			}
			id := e.startQuery(q.Encode())
			st := e.status(id)
			if got := st["recordsCount"]; got != float64(len(tc.want)) {
				t.Errorf("recordsCount = %v, want %d", got, len(tc.want))
			}
			r := e.do("GET", "/hubs/general/bulk/"+id+"/activities", nil, "Accept: application/jsonl")
			if diff := cmp.Diff(tc.want, eventNames(t, r.body)); diff != "" {
				t.Errorf("downloaded events mismatch (-want +got):\n%s", diff)
			}
			jobs := e.fake.Jobs()
			if j := jobs[len(jobs)-1]; tc.from != "" && !j.From.Equal(from) {
				t.Errorf("Job.From = %v, want %v", j.From, from)
			}
		})
	}
}

func TestDownloadFormats(t *testing.T) {
	recs := "{\"event\":\"Login\",\"properties\":{\"time\":1764000000,\"distinct_id\":\"u1\"}}\n" +
		"{\"event\":\"Buy\",\"properties\":{\"time\":1764000001,\"distinct_id\":\"u2\",\"cart\":{\"total\":9.5},\"tags\":[\"a\",\"b\"],\"note\":\"x, \\\"y\\\"\",\"gone\":null}}\n"
	arrayBody := "[" + strings.Join(lines([]byte(recs)), ",") + "]\n"
	csvBody := "event,properties.time,properties.distinct_id,properties.cart.total,properties.tags,properties.note,properties.gone\n" +
		"Login,1764000000,u1,,,,\n" +
		"Buy,1764000001,u2,9.5,\"[\"\"a\"\",\"\"b\"\"]\",\"x, \"\"y\"\"\",\n"
	tests := []struct {
		name       string
		framing    string
		accept     string
		wantType   string
		wantBody   string
		wantStatus int
	}{
		{"array by default", "", "application/json", "application/json", arrayBody, 200},
		{"no Accept", "", "", "application/json", arrayBody, 200},
		{"any", "", "*/*", "application/json", arrayBody, 200},
		{"JSON lines framing under application/json", "jsonl", "application/json", "application/json", recs, 200},
		{"JSON lines asked for", "array", "application/jsonl", "application/jsonl", recs, 200},
		{"ndjson asked for", "array", "application/x-ndjson", "application/jsonl", recs, 200},
		{"CSV", "array", "text/csv", "text/csv", csvBody, 200},
		{"first acceptable type wins", "array", "text/html, application/json;q=0.9", "application/json", arrayBody, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, cetest.Options{DownloadFormat: tc.framing})
			e.fake.Seed("activities", recs)
			id := e.startQuery("q=select%20*%20from%20activities")
			e.status(id)
			r := e.do("GET", "/bulk/"+id+"/activities", nil, "Accept: "+tc.accept)
			if r.code != tc.wantStatus {
				t.Fatalf("GET download = %d %s, want %d", r.code, r.body, tc.wantStatus)
			}
			if got := r.header.Get("Content-Type"); got != tc.wantType {
				t.Errorf("Content-Type = %q, want %q", got, tc.wantType)
			}
			if diff := cmp.Diff(tc.wantBody, string(r.body)); diff != "" {
				t.Errorf("body mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDownloadEmpty(t *testing.T) {
	e := newEnv(t, cetest.Options{})
	id := e.startQuery("q=select%20*%20from%20activities")
	e.status(id)
	for accept, want := range map[string]string{"application/json": "[]\n", "application/jsonl": "", "text/csv": ""} {
		if r := e.do("GET", "/bulk/"+id+"/activities", nil, "Accept: "+accept); string(r.body) != want {
			t.Errorf("empty download as %s = %q, want %q", accept, r.body, want)
		}
	}
}

func TestDownloadV3(t *testing.T) {
	e := newEnv(t, cetest.Options{})
	from := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	e.fake.SeedGenerated("activities", cetest.SampleActivities(1, 48, from, from.Add(48*time.Hour)))
	tests := []struct {
		name, body string
		wantCode   int
		wantType   string
		wantLines  int
	}{
		{"JSON lines of one day", `{"objectName":"activities","format":"application/jsonl","from":"2026-11-25T00:00:00Z","to":"2026-11-26T00:00:00Z"}`, 200, "application/jsonl", 24},
		{"CSV of everything", `{"objectName":"activities","format":"txt/csv"}`, 200, "text/csv", 49},
		{"JSON with limit", `{"objectName":"activities","format":"application/json","limit":5}`, 200, "application/json", 1},
		{"missing format", `{"objectName":"activities"}`, 400, "", 0},
		{"missing objectName", `{"format":"application/json"}`, 400, "", 0},
		{"unknown object", `{"objectName":"widgets","format":"application/json"}`, 400, "", 0},
		{"bad format", `{"objectName":"activities","format":"application/xml"}`, 400, "", 0},
		{"bad notificationUrl", `{"objectName":"activities","format":"application/json","notificationUrl":"nope"}`, 400, "", 0},
		{"not JSON", `objectName=activities`, 400, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", "/hubs/general/bulk/download", strings.NewReader(tc.body), "Content-Type: application/json")
			if r.code != tc.wantCode {
				t.Fatalf("POST bulk/download %s = %d %s, want %d", tc.body, r.code, r.body, tc.wantCode)
			}
			if r.code != 200 {
				checkErrorShape(t, r)
				return
			}
			id := r.object(t)["id"].(string)
			e.status(id)
			d := e.do("GET", "/bulk/"+id+"/activities", nil, "Accept: */*")
			if got := d.header.Get("Content-Type"); got != tc.wantType {
				t.Errorf("Content-Type = %q, want %q", got, tc.wantType)
			}
			if got := len(lines(d.body)); got != tc.wantLines {
				t.Errorf("download has %d lines, want %d", got, tc.wantLines)
			}
		})
	}
}

func TestQueryLimit(t *testing.T) {
	e := newEnv(t, cetest.Options{})
	e.fake.SeedGenerated("activities", cetest.SampleActivities(1, 100, e.clock.Now().Add(-time.Hour), e.clock.Now()))
	id := e.startQuery(url.Values{"q": {"select * from activities limit 7"}}.Encode())
	if got := e.status(id)["recordsCount"]; got != float64(7) {
		t.Errorf("recordsCount with limit 7 = %v, want 7", got)
	}
	r := e.do("GET", "/bulk/"+id+"/activities", nil, "Accept: application/jsonl")
	if got := len(lines(r.body)); got != 7 {
		t.Errorf("download with limit 7 has %d records", got)
	}
}

func TestUsersWhere(t *testing.T) {
	e := newEnv(t, cetest.Options{})
	e.fake.Seed("users", `[
		{"$distinct_id":"a","$properties":{"$created":"2011-03-14T09:00:00","$city":"Dallas","credits":5}},
		{"$distinct_id":"b","$properties":{"$created":"2012-01-01T00:00:00","$city":"Paris","credits":50}},
		{"$distinct_id":"c","$properties":{"$city":"Dallas"}}
	]`)
	tests := []struct {
		name, q string
		want    []string
	}{
		{"all", `select * from users`, []string{"a", "b", "c"}},
		{"CE's own test query", `select * from users where query = '(properties["$created"]  > "2011-03-14T09:53:54")'`, []string{"b"}},
		{"equality", `select * from users where query = '(properties["$city"] == "Dallas")'`, []string{"a", "c"}},
		{"number and", `select * from users where query = '(properties["credits"] >= 5 and properties["$city"] != "Paris")'`, []string{"a"}},
		{"or is not understood: ignored", `select * from users where query = '(properties["$city"] == "Dallas" or properties["credits"] > 1)'`, []string{"a", "b", "c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// from and to do not apply to users.
			id := e.startQuery(url.Values{"q": {tc.q}, "from": {"2030-01-01T00:00:00Z"}}.Encode())
			if got := e.status(id)["recordsCount"]; got != float64(len(tc.want)) {
				t.Errorf("recordsCount = %v, want %d", got, len(tc.want))
			}
			r := e.do("GET", "/bulk/"+id+"/users", nil)
			var recs []map[string]any
			if err := json.Unmarshal(r.body, &recs); err != nil {
				t.Fatalf("download %s: %v", r.body, err)
			}
			var got []string
			for _, rec := range recs {
				got = append(got, rec["$distinct_id"].(string))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("users mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSeedForms(t *testing.T) {
	want := []string{"a", "b"}
	tests := []struct {
		name    string
		records any
	}{
		{"maps", []map[string]any{{"event": "a"}, {"event": "b"}}},
		{"any", []any{map[string]any{"event": "a"}, map[string]any{"event": "b"}}},
		{"raw messages", []json.RawMessage{json.RawMessage(`{"event": "a"}`), json.RawMessage("{\n\"event\":\"b\"}")}},
		{"array", json.RawMessage(`[{"event":"a"}, {"event":"b"}]`)},
		{"lines", []byte("{\"event\":\"a\"}\n\n{\"event\":\"b\"}\n")},
		{"string", `{"event":"a"}` + "\r\n" + `{"event":"b"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, cetest.Options{DownloadFormat: "jsonl"})
			e.fake.Seed("activities", tc.records)
			id := e.startQuery("q=select%20*%20from%20activities")
			e.status(id)
			r := e.do("GET", "/bulk/"+id+"/activities", nil)
			if diff := cmp.Diff(want, eventNames(t, r.body)); diff != "" {
				t.Errorf("events mismatch (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("invalid", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Error("Seed with invalid JSON did not panic")
			}
		}()
		cetest.NewFake(cetest.Options{}).Seed("activities", "{not json")
	})
}

// get sends an authorized GET with client and returns the response.
func get(t *testing.T, client *http.Client, url string, headers ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", authHeader)
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(k, strings.TrimSpace(v))
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp
}

func TestCutNextDownload(t *testing.T) {
	from := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	full := func(t *testing.T, e *env, client *http.Client, url string) int {
		resp := get(t, client, url)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("uncut download: %v", err)
		}
		return len(b)
	}
	tests := []struct {
		name  string
		after int64
	}{
		{"in the middle", 5000},
		{"before the body", 0},
		{"after the end of the body", 1 << 30},
	}
	for _, tc := range tests {
		for _, transport := range []string{"network", "in memory"} {
			t.Run(tc.name+"/"+transport, func(t *testing.T) {
				e := newEnv(t, cetest.Options{})
				e.fake.SeedGenerated("activities", cetest.SampleActivities(1, 1000, from, from.Add(time.Hour)))
				client := http.DefaultClient
				base := e.base
				if transport == "in memory" {
					client = &http.Client{Transport: e.fake.Transport()}
					base = cetest.InMemoryBaseURL
				}
				id := e.startQuery("q=select%20*%20from%20activities")
				e.status(id)
				url := base + "/bulk/" + id + "/activities"
				size := full(t, e, client, url)

				e.fake.CutNextDownload(tc.after)
				resp := get(t, client, url)
				defer resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("cut download status = %d, want 200", resp.StatusCode)
				}
				b, err := io.ReadAll(resp.Body)
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("reading a cut download: err = %v, want io.ErrUnexpectedEOF", err)
				}
				if want := min(tc.after, int64(size)); int64(len(b)) != want {
					t.Errorf("cut download gave %d bytes, want %d", len(b), want)
				}
				if got := full(t, e, client, url); got != size {
					t.Errorf("download after the cut = %d bytes, want %d", got, size)
				}
			})
		}
	}
}

func TestLargeDownloadStreams(t *testing.T) {
	size := int64(200 << 20)
	if testing.Short() {
		size = 32 << 20
	}
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	e := newEnv(t, cetest.Options{DownloadFormat: "jsonl"})
	gen := cetest.SampleActivitiesBytes(7, size, from, from.AddDate(0, 0, 7))
	e.fake.SeedGenerated("activities", gen)
	id := e.startQuery("q=select%20*%20from%20activities")
	want := e.status(id)["recordsCount"].(float64)

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	peak := base
	resp := get(t, http.DefaultClient, e.base+"/bulk/"+id+"/activities")
	defer resp.Body.Close()
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	var n, records, nextCheck int64
	for {
		line, err := br.ReadSlice('\n')
		n += int64(len(line))
		if err == nil {
			records++
		} else if err != bufio.ErrBufferFull {
			if err != io.EOF {
				t.Fatalf("reading the download: %v", err)
			}
			break
		}
		if n >= nextCheck {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			nextCheck += 8 << 20
		}
	}
	if float64(records) != want {
		t.Errorf("download holds %d records, want recordsCount %v", records, want)
	}
	if lo, hi := size*95/100, size*105/100; n < lo || n > hi {
		t.Errorf("SampleActivitiesBytes(%d) download = %d bytes, want within 5%%", size, n)
	}
	if grew := int64(peak) - int64(base); grew > 32<<20 {
		t.Errorf("heap in use grew by %d MiB while streaming %d MiB, want < 32 MiB", grew>>20, n>>20)
	}
	t.Logf("streamed %d MiB, %d records; heap in use grew by at most %d KiB", n>>20, records, (int64(peak)-int64(base))>>10)
}

func TestDownloadRange(t *testing.T) {
	from := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	for _, ignore := range []bool{false, true} {
		e := newEnv(t, cetest.Options{IgnoreRanges: ignore})
		e.fake.SeedGenerated("activities", cetest.SampleActivities(1, 48, from, from.Add(48*time.Hour)))
		id := e.startQuery("q=select%20*%20from%20activities")
		e.status(id)
		full := e.do("GET", "/bulk/"+id+"/activities", nil)
		if full.code != 200 || len(full.body) < 100 {
			t.Fatalf("download = %d, %d bytes", full.code, len(full.body))
		}
		size := len(full.body)
		r := e.do("GET", "/bulk/"+id+"/activities", nil, "Range: bytes=100-")
		switch {
		case ignore && (r.code != 200 || !bytes.Equal(r.body, full.body)):
			t.Errorf("IgnoreRanges: ranged GET = %d, %d bytes; want 200 and the whole file", r.code, len(r.body))
		case !ignore && (r.code != http.StatusPartialContent || !bytes.Equal(r.body, full.body[100:]) ||
			r.header.Get("Content-Range") != fmt.Sprintf("bytes 100-%d/%d", size-1, size)):
			t.Errorf("ranged GET = %d %q, %d bytes; want 206 and bytes 100- of %d", r.code, r.header.Get("Content-Range"), len(r.body), size)
		}
		if !ignore {
			if r := e.do("GET", "/bulk/"+id+"/activities", nil, fmt.Sprintf("Range: bytes=%d-", size)); r.code != http.StatusRequestedRangeNotSatisfiable || r.header.Get("Content-Range") != fmt.Sprintf("bytes */%d", size) {
				t.Errorf("GET from the end = %d %q, want 416 bytes */%d", r.code, r.header.Get("Content-Range"), size)
			}
		}

		// The real client's WithOffset gets the same bytes either way.
		c, err := ce.NewClient(e.base, ce.Credentials{UserSecret: cetest.DefaultUserSecret, OrganizationSecret: cetest.DefaultOrgSecret, ElementToken: cetest.DefaultElementToken})
		if err != nil {
			t.Fatal(err)
		}
		for _, off := range []int64{1, 100, int64(size) - 1, int64(size)} {
			var rr ce.RangeResult
			body, err := c.Download(t.Context(), id, "activities", ce.WithOffset(off, &rr))
			if err != nil {
				t.Fatalf("Download from %d: %v", off, err)
			}
			got, err := io.ReadAll(body)
			body.Close()
			if err != nil || !bytes.Equal(got, full.body[off:]) {
				t.Errorf("Download from %d (ignore ranges %v) = %d bytes, %v; want %d bytes", off, ignore, len(got), err, size-int(off))
			}
			if wantRanged := !ignore && off < int64(size); rr.Ranged != wantRanged {
				t.Errorf("Download from %d (ignore ranges %v): Ranged = %v, want %v", off, ignore, rr.Ranged, wantRanged)
			}
		}
	}
}
