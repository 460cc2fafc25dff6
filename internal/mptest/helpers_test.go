package mptest_test

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cebulk/cebulk/internal/mptest"
)

// clock is a settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// start is the tests' "now": 2026-11-26 12:00 UTC.
var start = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// env is one emulator behind a real HTTP server, driven with hand-built
// requests, as curl would.
type env struct {
	t     *testing.T
	fake  *mptest.Fake
	base  string
	clock *clock
}

func newEnv(t *testing.T, opts mptest.Options) *env {
	t.Helper()
	c := &clock{t: start}
	if opts.Now == nil {
		opts.Now = c.Now
	}
	// Most tests call the export many times within one second of the fake
	// clock; the limit tests set the limits they check.
	if opts.ExportPerHour == 0 {
		opts.ExportPerHour = -1
	}
	if opts.QueryPerHour == 0 {
		opts.QueryPerHour = -1
	}
	srv, f := mptest.NewServer(t, opts)
	return &env{t: t, fake: f, base: srv.URL, clock: c}
}

// response is what a test looks at.
type response struct {
	code   int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

// saAuth is the service account's Basic header.
var saAuth = "Basic " + base64.StdEncoding.EncodeToString([]byte(mptest.DefaultUsername+":"+mptest.DefaultSecret))

// do sends method path (relative to the base URL) with the service
// account's credentials unless headers set Authorization ("" removes it).
// It does not decompress: the transport's own gzip handling is off.
func (e *env) do(method, path string, body io.Reader, headers ...string) response {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.base+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", saAuth)
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ":")
		req.Header.Set(name, strings.TrimSpace(value))
		if value == "" {
			req.Header.Del(name)
		}
	}
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: b}
}

// export calls the export with the project id and the given parameters.
func (e *env) export(params url.Values, headers ...string) response {
	e.t.Helper()
	if !params.Has("project_id") {
		params.Set("project_id", mptest.DefaultProjectID)
	}
	return e.do("GET", "/api/2.0/export?"+params.Encode(), nil, headers...)
}

// engageQuery posts a form to the engage query.
func (e *env) engageQuery(form url.Values, headers ...string) response {
	e.t.Helper()
	headers = append([]string{"Content-Type: application/x-www-form-urlencoded"}, headers...)
	return e.do("POST", "/api/query/engage?project_id="+mptest.DefaultProjectID, strings.NewReader(form.Encode()), headers...)
}

// importBody posts body to /import?strict=1&project_id=….
func (e *env) importBody(body []byte, headers ...string) response {
	e.t.Helper()
	headers = append([]string{"Content-Type: application/json"}, headers...)
	return e.do("POST", "/import?strict=1&project_id="+mptest.DefaultProjectID, bytes.NewReader(body), headers...)
}

func gzipped(t *testing.T, b []byte) []byte {
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

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// lines splits an export body into decoded events.
func lines(t *testing.T, body []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for l := range bytes.Lines(body) {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("export line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// ev builds one /import event.
func ev(name string, t int64, distinctID, insertID string, extra ...any) map[string]any {
	props := map[string]any{"time": t, "distinct_id": distinctID, "$insert_id": insertID}
	for i := 0; i+1 < len(extra); i += 2 {
		props[extra[i].(string)] = extra[i+1]
	}
	return map[string]any{"event": name, "properties": props}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustDecode(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
}
