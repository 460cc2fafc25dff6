package cetest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cebulk/cebulk/internal/cetest"
)

// authHeader is what a correct client sends.
var authHeader = cetest.Credentials{
	UserSecret:         cetest.DefaultUserSecret,
	OrganizationSecret: cetest.DefaultOrgSecret,
	ElementToken:       cetest.DefaultElementToken,
}.Header()

// clock is a settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)} }

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

// env is one emulator behind a real HTTP server, driven with hand-built
// requests, as curl would.
type env struct {
	t     *testing.T
	fake  *cetest.Fake
	base  string
	clock *clock
}

func newEnv(t *testing.T, opts cetest.Options) *env {
	t.Helper()
	c := newClock()
	if opts.Now == nil {
		opts.Now = c.Now
	}
	srv, f := cetest.NewServer(t, opts)
	return &env{t: t, fake: f, base: cetest.BaseURL(srv), clock: c}
}

// response is what a test looks at.
type response struct {
	code   int
	header http.Header
	body   []byte
}

// do sends method path (relative to the base URL) with the correct
// Authorization unless headers set one; headers are "Name: value" pairs.
func (e *env) do(method, path string, body io.Reader, headers ...string) response {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.base+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", authHeader)
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ":")
		if value = strings.TrimSpace(value); value == "" {
			req.Header.Del(name)
		} else {
			req.Header.Set(name, value)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: b}
}

// json decodes the response body into a generic value.
func (r response) json(t *testing.T) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("body %q is not JSON: %v", r.body, err)
	}
	return v
}

// object decodes the response body as a JSON object.
func (r response) object(t *testing.T) map[string]any {
	t.Helper()
	m, ok := r.json(t).(map[string]any)
	if !ok {
		t.Fatalf("body %s is not a JSON object", r.body)
	}
	return m
}

// startQuery creates a download job and returns its id.
func (e *env) startQuery(query string, headers ...string) string {
	e.t.Helper()
	r := e.do("POST", "/hubs/general/bulk/query?"+query, nil, headers...)
	if r.code != http.StatusOK {
		e.t.Fatalf("POST bulk/query?%s = %d %s, want 200", query, r.code, r.body)
	}
	id, _ := r.object(e.t)["id"].(string)
	if id == "" {
		e.t.Fatalf("POST bulk/query: no string id in %s", r.body)
	}
	return id
}

// upload posts a multipart upload of file to object and returns the job id.
func (e *env) upload(object, metaData, file string, headers ...string) string {
	e.t.Helper()
	body, ct := multipartBody(e.t, metaData, file)
	r := e.do("POST", "/hubs/general/bulk/"+object, body, append([]string{"Content-Type: " + ct}, headers...)...)
	if r.code != http.StatusOK {
		e.t.Fatalf("POST bulk/%s = %d %s, want 200", object, r.code, r.body)
	}
	id, _ := r.object(e.t)["id"].(string)
	return id
}

// multipartBody builds a body with a metaData part (when not empty) before
// a file part.
func multipartBody(t *testing.T, metaData, file string) (io.Reader, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if metaData != "" {
		if err := mw.WriteField("metaData", metaData); err != nil {
			t.Fatal(err)
		}
	}
	fw, err := mw.CreateFormFile("file", "records.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(fw, file); err != nil {
		t.Fatal(err)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf, mw.FormDataContentType()
}

// status reads a job's status body.
func (e *env) status(id string) map[string]any {
	e.t.Helper()
	r := e.do("GET", "/hubs/general/bulk/"+id+"/status", nil)
	if r.code != http.StatusOK {
		e.t.Fatalf("GET bulk/%s/status = %d %s, want 200", id, r.code, r.body)
	}
	return r.object(e.t)
}

// unix returns a Mixpanel event at t (seconds) with the given distinct_id.
func event(name string, t time.Time, distinctID string) map[string]any {
	return map[string]any{"event": name, "properties": map[string]any{"time": t.Unix(), "distinct_id": distinctID}}
}
