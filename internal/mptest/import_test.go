package mptest_test

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/mptest"
)

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeAny(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	return v
}

// TestImportMixedQuality sends one batch of good and bad events and checks
// the documented partial success: 400, failed_records per bad event, the
// good ones stored.
func TestImportMixedQuality(t *testing.T) {
	for _, key := range []string{"$insert_id", "insert_id"} {
		t.Run(key, func(t *testing.T) {
			e := newEnv(t, mptest.Options{InsertIDKey: key})
			r := e.importBody(readFixture(t, "import_mixed.json"))
			if r.code != http.StatusBadRequest {
				t.Fatalf("status = %d %s, want 400", r.code, r.body)
			}
			want := strings.ReplaceAll(string(readFixture(t, "import_mixed.want.json")), `"$insert_id"`, `"`+key+`"`)
			if diff := cmp.Diff(decodeAny(t, r.body), decodeAny(t, []byte(want))); diff != "" {
				t.Errorf("answer (-got +want):\n%s", diff)
			}
			var got []string
			for _, raw := range e.fake.Imported() {
				var m struct {
					Properties struct {
						Time       int64  `json:"time"`
						DistinctID string `json:"distinct_id"`
						InsertID   string `json:"$insert_id"`
					} `json:"properties"`
				}
				if err := json.Unmarshal(raw, &m); err != nil {
					t.Fatal(err)
				}
				got = append(got, fmt.Sprintf("%s %s %d", m.Properties.InsertID, m.Properties.DistinctID, m.Properties.Time))
			}
			now := start.Unix()
			wantStored := []string{
				fmt.Sprintf("ok-0 user-1 %d", now-86400),
				fmt.Sprintf("ok-12 user-1 %d", now-86400),
				fmt.Sprintf("numeric-distinct 42 %d", now-3600), // milliseconds read as such
				fmt.Sprintf("soon user-3 %d", now),              // within the hour: becomes now
			}
			if diff := cmp.Diff(got, wantStored); diff != "" {
				t.Errorf("stored events (-got +want):\n%s", diff)
			}
		})
	}
}

func TestImportNotStrictDropsInvalid(t *testing.T) {
	e := newEnv(t, mptest.Options{})
	r := e.do("POST", "/import?project_id="+mptest.DefaultProjectID, bytes.NewReader(readFixture(t, "import_mixed.json")))
	want := map[string]any{"code": 200.0, "num_records_imported": 4.0, "status": "OK"}
	if diff := cmp.Diff(r.json(t), want); r.code != 200 || diff != "" {
		t.Errorf("status %d, answer (-got +want):\n%s", r.code, diff)
	}
}

func TestImportFramingAndGzip(t *testing.T) {
	batch := []any{
		ev("A", start.Unix()-10, "u1", "id-1"),
		ev("B", start.Unix()-20, "u2", "id-2", "nested", map[string]any{"k": []any{1, 2}}),
	}
	array := mustJSON(t, batch)
	var ndjson []byte
	for _, b := range batch {
		ndjson = append(append(ndjson, mustJSON(t, b)...), '\n')
	}
	tests := []struct {
		name    string
		body    []byte
		headers []string
	}{
		{"array", array, nil},
		{"ndjson", ndjson, []string{"Content-Type: application/x-ndjson"}},
		{"gzip array", gzipped(t, array), []string{"Content-Encoding: gzip"}},
		{"gzip ndjson", gzipped(t, ndjson), []string{"Content-Type: application/x-ndjson", "Content-Encoding: gzip"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, mptest.Options{})
			r := e.importBody(tt.body, tt.headers...)
			want := map[string]any{"code": 200.0, "num_records_imported": 2.0, "status": "OK"}
			if diff := cmp.Diff(r.json(t), want); r.code != 200 || diff != "" {
				t.Fatalf("status %d, answer (-got +want):\n%s", r.code, diff)
			}
			if n := len(e.fake.Imported()); n != 2 {
				t.Errorf("stored %d events, want 2", n)
			}
		})
	}
}

func TestImportDedupesOnInsertID(t *testing.T) {
	e := newEnv(t, mptest.Options{})
	batch := mustJSON(t, []any{ev("A", start.Unix()-10, "u1", "id-1"), ev("A", start.Unix()-10, "u1", "id-2")})
	for range 2 {
		if r := e.importBody(batch); r.code != 200 {
			t.Fatalf("import = %d %s", r.code, r.body)
		}
	}
	// Same $insert_id but another time: a different event for Mixpanel.
	if r := e.importBody(mustJSON(t, []any{ev("A", start.Unix()-11, "u1", "id-1")})); r.code != 200 {
		t.Fatalf("import = %d %s", r.code, r.body)
	}
	if n := len(e.fake.Imported()); n != 3 {
		t.Errorf("stored %d events, want 3 (id-1 twice at two times, id-2 once)", n)
	}
	accepted, dupes, _ := e.fake.ImportStats()
	if accepted != 5 || dupes != 2 {
		t.Errorf("ImportStats = %d accepted, %d duplicates; want 5, 2", accepted, dupes)
	}
	lines := lines(t, e.export(day("2026-11-26")).body)
	if len(lines) != 3 {
		t.Errorf("export of the day: %d events, want 3", len(lines))
	}
}

func TestImportRequestRefused(t *testing.T) {
	one := ev("A", start.Unix(), "u1", "id-1")
	many := make([]any, mptest.MaxImportEvents+1)
	for i := range many {
		many[i] = ev("A", start.Unix(), "u1", fmt.Sprintf("id-%d", i))
	}
	big := []any{ev("A", start.Unix(), "u1", "id-big", "blob", strings.Repeat("x", 700_000)),
		ev("A", start.Unix(), "u1", "id-big2", "blob", strings.Repeat("x", 700_000)),
		ev("A", start.Unix(), "u1", "id-big3", "blob", strings.Repeat("x", 700_000))}
	tokenAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte(mptest.DefaultToken+":"))
	tests := []struct {
		name    string
		path    string
		body    []byte
		headers []string
		code    int
		want    map[string]any
	}{
		{"too many events", "", mustJSON(t, many), nil, 413,
			map[string]any{"code": 413.0, "error": "request exceeds max limit of 2000 events", "status": "Request Entity Too Large"}},
		{"too large", "", mustJSON(t, big), nil, 413,
			map[string]any{"code": 413.0, "error": "request exceeds max limit of 2097152 bytes", "status": "Request Entity Too Large"}},
		{"too large once inflated", "", gzipped(t, mustJSON(t, big)), []string{"Content-Encoding: gzip"}, 413,
			map[string]any{"code": 413.0, "error": "request exceeds max limit of 2097152 bytes", "status": "Request Entity Too Large"}},
		{"broken array", "", []byte(`[{"event":"A"`), nil, 400,
			map[string]any{"code": 400.0, "error": "unable to parse request body: unexpected EOF", "status": "Bad Request"}},
		{"empty", "", []byte(`[]`), nil, 400,
			map[string]any{"code": 400.0, "error": "request body contains no events", "status": "Bad Request"}},
		{"not gzip", "", mustJSON(t, []any{one}), []string{"Content-Encoding: gzip"}, 400,
			map[string]any{"code": 400.0, "error": "unable to decompress request body: not gzip", "status": "Bad Request"}},
		{"wrong credentials", "", mustJSON(t, []any{one}), []string{"Authorization: Basic bm9wZTpub3Bl"}, 401,
			map[string]any{"code": 401.0, "error": "Invalid credentials", "status": "Unauthorized"}},
		{"another project", "/import?strict=1&project_id=7", mustJSON(t, []any{one}), nil, 403,
			map[string]any{"code": 403.0, "error": "service account does not have access to project 7", "status": "Forbidden"}},
		{"project token", "/import?strict=1", mustJSON(t, []any{one}), []string{"Authorization: " + tokenAuth}, 200,
			map[string]any{"code": 200.0, "num_records_imported": 1.0, "status": "OK"}},
		{"wrong project token", "/import?strict=1", mustJSON(t, []any{one}), []string{"Authorization: Basic bm9wZTo="}, 401,
			map[string]any{"code": 401.0, "error": "Invalid credentials", "status": "Unauthorized"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, mptest.Options{})
			var r response
			if tt.path == "" {
				r = e.importBody(tt.body, tt.headers...)
			} else {
				r = e.do("POST", tt.path, bytes.NewReader(tt.body), tt.headers...)
			}
			if r.code != tt.code {
				t.Fatalf("status = %d %s, want %d", r.code, r.body, tt.code)
			}
			if diff := cmp.Diff(r.json(t), tt.want); diff != "" {
				t.Errorf("answer (-got +want):\n%s", diff)
			}
			if tt.code != 200 && len(e.fake.Imported()) != 0 {
				t.Errorf("a refused request stored events")
			}
		})
	}
}

// BenchmarkImport measures what one /import of 2000 gzip'd events costs
// the emulator (validation, dedupe keys, no storage).
func BenchmarkImport(b *testing.B) {
	f := mptest.NewFake(mptest.Options{DiscardImports: true, Now: func() time.Time { return start }})
	first := start.Add(-48 * time.Hour).Truncate(24 * time.Hour)
	var buf bytes.Buffer
	n := 0
	mptest.SampleEvents(1, 2000, 500, first, first.AddDate(0, 0, 1))(first, first.AddDate(0, 0, 1), func(e mptest.Event) bool {
		props := map[string]any{}
		_ = json.Unmarshal(e.Props, &props)
		props["time"], props["distinct_id"], props["$insert_id"] = e.Time.Unix(), e.DistinctID, e.InsertID
		line, _ := json.Marshal(map[string]any{"event": e.Name, "properties": props})
		buf.Write(append(line, '\n'))
		n++
		return true
	})
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write(buf.Bytes())
	zw.Close()
	body := zb.Bytes()
	b.SetBytes(int64(buf.Len()))
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/import?strict=1&project_id="+mptest.DefaultProjectID, bytes.NewReader(body))
		req.Header.Set("Authorization", saAuth)
		req.Header.Set("Content-Type", "application/x-ndjson")
		req.Header.Set("Content-Encoding", "gzip")
		w := httptest.NewRecorder()
		f.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("import = %d %s", w.Code, w.Body)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
}
