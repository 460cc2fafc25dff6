package mixpanel

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func day(s string) time.Time {
	t, err := time.Parse(dateLayout, s)
	if err != nil {
		panic(err)
	}
	return t
}

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readAll reads every record of an export body.
func readAll(t *testing.T, body io.Reader) ([]string, error) {
	t.Helper()
	rr := NewRecordReader(body, 0)
	var got []string
	for {
		rec, err := rr.Next()
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = append(got, string(rec))
	}
}

func fixtureLines(t *testing.T, name string) []string {
	var want []string
	for _, l := range strings.Split(string(fixture(t, name)), "\n") {
		if strings.TrimSpace(l) != "" {
			want = append(want, l)
		}
	}
	return want
}

func TestExportWire(t *testing.T) {
	body := fixture(t, "export-2days.jsonl")
	tests := []struct {
		name      string
		req       ExportRequest
		gzip      bool
		wantQuery url.Values
	}{
		{
			name:      "two days inclusive, plain",
			req:       ExportRequest{From: day("2026-11-25"), To: day("2026-11-26")},
			wantQuery: url.Values{"from_date": {"2026-11-25"}, "to_date": {"2026-11-26"}, "project_id": {"2195193"}},
		},
		{
			name: "one day, gzip, every option",
			req: ExportRequest{
				From: time.Date(2026, 11, 25, 23, 59, 0, 0, time.UTC), To: day("2026-11-25"),
				Events: []string{"Signed up", "Purchase"}, Where: `properties["plan"] == "pro"`, Limit: 100000, TimeInMS: true,
			},
			gzip: true,
			wantQuery: url.Values{
				"from_date": {"2026-11-25"}, "to_date": {"2026-11-25"}, "project_id": {"2195193"},
				"event": {`["Signed up","Purchase"]`}, "where": {`properties["plan"] == "pro"`}, "limit": {"100000"}, "time_in_ms": {"true"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mux, _, _ := setup(t)
			mux.HandleFunc("GET /api/2.0/export", func(w http.ResponseWriter, r *http.Request) {
				checkAuth(t, r)
				if diff := cmp.Diff(r.URL.Query(), tt.wantQuery); diff != "" {
					t.Errorf("query (-got +want):\n%s", diff)
				}
				if got := r.Header.Get("Accept-Encoding"); got != "gzip" {
					t.Errorf("Accept-Encoding = %q, want gzip", got)
				}
				w.Header().Set("Content-Type", "text/plain")
				if tt.gzip {
					w.Header().Set("Content-Encoding", "gzip")
					w.Write(gzipped(t, body))
					return
				}
				w.Write(body)
			})
			rc, err := c.Export(t.Context(), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			got, err := readAll(t, rc)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, fixtureLines(t, "export-2days.jsonl")); diff != "" {
				t.Errorf("records (-got +want):\n%s", diff)
			}
		})
	}
}

func TestExportRequestInvalid(t *testing.T) {
	c, err := NewClient(testCreds)
	if err != nil {
		t.Fatal(err)
	}
	for name, req := range map[string]ExportRequest{
		"no dates":        {},
		"to before from":  {From: day("2026-11-26"), To: day("2026-11-25")},
		"limit too large": {From: day("2026-11-25"), To: day("2026-11-25"), Limit: MaxExportLimit + 1},
	} {
		if _, err := c.Export(t.Context(), req); err == nil {
			t.Errorf("%s: Export succeeded", name)
		}
	}
}

func TestExportRetries(t *testing.T) {
	tests := []struct {
		name       string
		statuses   []int // answers before the export
		retryAfter string
		wantCalls  int
		wantErr    error
		wantWaits  []time.Duration
	}{
		{"429 then ok", []int{429}, "", 2, nil, []time.Duration{2 * time.Second}},
		{"502 503 504 then ok", []int{502, 503, 504}, "", 4, nil, []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second}},
		{"Retry-After honoured", []int{429}, "9", 2, nil, []time.Duration{9 * time.Second}},
		{"retries spent", []int{429, 429, 429, 429}, "", 4, ErrRateLimited, []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second}},
		{"400 never retried", []int{400}, "", 1, ErrBadRequest, nil},
		{"401 never retried", []int{401}, "", 1, ErrUnauthorized, nil},
		{"500 not retried", []int{500}, "", 1, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mux, sleeps, _ := setup(t)
			var calls atomic.Int32
			mux.HandleFunc("GET /api/2.0/export", func(w http.ResponseWriter, r *http.Request) {
				n := int(calls.Add(1))
				if n <= len(tt.statuses) {
					if tt.retryAfter != "" {
						w.Header().Set("Retry-After", tt.retryAfter)
					}
					w.WriteHeader(tt.statuses[n-1])
					w.Write([]byte(`{"request":"/api/2.0/export?project_id=2195193","error":"boom"}`))
					return
				}
				w.Write([]byte("{\"event\":\"e\",\"properties\":{}}\n"))
			})
			rc, err := c.Export(t.Context(), ExportRequest{From: day("2026-11-25"), To: day("2026-11-25")})
			if tt.wantErr != nil || (len(tt.statuses) > 0 && tt.statuses[0] == 500) {
				var apiErr *APIError
				if !errors.As(err, &apiErr) {
					t.Fatalf("Export error = %v, want an *APIError", err)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("Export error = %v, want it to match %v", err, tt.wantErr)
				}
				if apiErr.Message != "boom" || apiErr.Path != exportPath {
					t.Errorf("APIError = %+v, want message boom and path %s", apiErr, exportPath)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				rc.Close()
			}
			if got := int(calls.Load()); got != tt.wantCalls {
				t.Errorf("calls = %d, want %d", got, tt.wantCalls)
			}
			if diff := cmp.Diff(sleeps.recorded(), tt.wantWaits); diff != "" {
				t.Errorf("waits (-got +want):\n%s", diff)
			}
		})
	}
}

func TestExportTruncatedGzip(t *testing.T) {
	c, mux, _, _ := setup(t)
	full := gzipped(t, bytes.Repeat([]byte("{\"event\":\"e\",\"properties\":{\"time\":1}}\n"), 2000))
	mux.HandleFunc("GET /api/2.0/export", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(full[:len(full)/2])
	})
	rc, err := c.Export(t.Context(), ExportRequest{From: day("2026-11-25"), To: day("2026-11-25")})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := readAll(t, rc)
	var derr *DecodeError
	if !errors.As(err, &derr) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("read error = %v, want a *DecodeError wrapping io.ErrUnexpectedEOF", err)
	}
	if len(got) == 0 || len(got) >= 2000 {
		t.Errorf("read %d records before the cut, want some but not all", len(got))
	}
}

func TestExportEmptyGzipBody(t *testing.T) {
	c, mux, _, _ := setup(t)
	mux.HandleFunc("GET /api/2.0/export", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
	})
	rc, err := c.Export(t.Context(), ExportRequest{From: day("2026-11-25"), To: day("2026-11-25")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, rc)
	if err != nil || len(got) != 0 {
		t.Errorf("records = %v, %v; want none", got, err)
	}
}

func TestRecordReader(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		limit    int
		want     []string
		wantLine int64 // line of the DecodeError; 0 for none
		wantErr  error
	}{
		{"empty", "", 0, nil, 0, nil},
		{"blank lines and CRLF", "\n{\"a\":1}\r\n\n  {\"b\":2}  \n\n", 0, []string{`{"a":1}`, `{"b":2}`}, 0, nil},
		{"last line without newline", "{\"a\":1}\n{\"b\":2}", 0, []string{`{"a":1}`, `{"b":2}`}, 0, nil},
		{"truncated last line", "{\"a\":1}\n{\"b\":", 0, []string{`{"a":1}`}, 2, nil},
		{"array line", "[1,2]\n", 0, nil, 1, nil},
		{"two objects on a line", "{\"a\":1}{\"b\":2}\n", 0, nil, 1, nil},
		{"line over the limit", "{\"a\":1}\n{\"b\":\"" + strings.Repeat("x", 100) + "\"}\n", 50, []string{`{"a":1}`}, 2, ErrRecordTooLarge},
		{"line at the limit", "{\"b\":\"" + strings.Repeat("x", 42) + "\"}\r\n", 50, []string{"{\"b\":\"" + strings.Repeat("x", 42) + "\"}"}, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rr := NewRecordReader(strings.NewReader(tt.in), tt.limit)
			var got []string
			var err error
			for {
				var rec json.RawMessage
				rec, err = rr.Next()
				if err != nil {
					break
				}
				got = append(got, string(rec))
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("records (-got +want):\n%s", diff)
			}
			if tt.wantLine == 0 {
				if err != io.EOF {
					t.Errorf("end = %v, want io.EOF", err)
				}
				return
			}
			var derr *DecodeError
			if !errors.As(err, &derr) || derr.Line != tt.wantLine {
				t.Fatalf("end = %v, want a *DecodeError on line %d", err, tt.wantLine)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("end = %v, want it to match %v", err, tt.wantErr)
			}
			if _, again := rr.Next(); again != err {
				t.Errorf("error not sticky: %v then %v", err, again)
			}
			if rr.Count() != int64(len(tt.want)) {
				t.Errorf("Count = %d, want %d", rr.Count(), len(tt.want))
			}
		})
	}
}
