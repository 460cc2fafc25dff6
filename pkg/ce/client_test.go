package ce

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// baseURLPath is the path prefix of the test servers, as in production
// (".../elements/api-v2").
const baseURLPath = "/elements/api-v2"

// testCreds are distinctive so that tests can search output for them.
var testCreds = Credentials{
	UserSecret:         "usr-SECRET-7f3a9c",
	OrganizationSecret: "org-SECRET-51be02",
	ElementToken:       "elm-TOKEN-c0ffee",
}

const wantAuthorization = "User usr-SECRET-7f3a9c, Organization org-SECRET-51be02, Element elm-TOKEN-c0ffee"

// sleepRecorder replaces the client's sleep: it records the waits and
// returns at once, so no test sleeps for real (S44).
type sleepRecorder struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleepRecorder) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleepRecorder) recorded() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

// setup starts a test server whose mux serves paths under baseURLPath (with
// the prefix stripped, so handlers register "/hubs/general/bulk/...") and
// returns a client for it with tiny retry waits and a recording sleep.
func setup(t *testing.T, opts ...Option) (*Client, *http.ServeMux, *sleepRecorder) {
	t.Helper()
	mux := http.NewServeMux()
	api := http.NewServeMux()
	api.Handle(baseURLPath+"/", http.StripPrefix(baseURLPath, mux))
	api.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request outside the base URL: %s %s", r.Method, r.URL.Path)
		http.Error(w, "outside base URL", http.StatusBadRequest)
	})
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)

	all := append([]Option{
		WithRetry(4, time.Millisecond, 10*time.Millisecond),
		WithPollInterval(time.Millisecond),
	}, opts...)
	c, err := NewClient(srv.URL+baseURLPath, testCreds, all...)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	rec := &sleepRecorder{}
	c.sleep = rec.sleep
	return c, mux, rec
}

func testMethod(t *testing.T, r *http.Request, want string) {
	t.Helper()
	if got := r.Method; got != want {
		t.Errorf("Request method: %v, want %v", got, want)
	}
}

func testHeader(t *testing.T, r *http.Request, header, want string) {
	t.Helper()
	if got := r.Header.Get(header); got != want {
		t.Errorf("Header.Get(%q) returned %q, want %q", header, got, want)
	}
}

// testQuery checks the whole query string.
func testQuery(t *testing.T, r *http.Request, want url.Values) {
	t.Helper()
	if diff := cmp.Diff(want, r.URL.Query()); diff != "" {
		t.Errorf("query mismatch (-want +got):\n%s", diff)
	}
}

// testAuth checks the headers every request carries.
func testAuth(t *testing.T, r *http.Request) {
	t.Helper()
	testHeader(t, r, "Authorization", wantAuthorization)
	testHeader(t, r, "User-Agent", defaultUserAgent)
}

// fixture returns the contents of testdata/name.
func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return b
}

// serveFixture answers with a testdata file as JSON.
func serveFixture(t *testing.T, name string) http.HandlerFunc {
	b := fixture(t, name)
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	}
}

// roundTripFunc adapts a function to http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestNewClient(t *testing.T) {
	tests := []struct {
		name    string
		baseURL string
		want    string
	}{
		{"production", "https://api.cloud-elements.com/elements/api-v2", "https://api.cloud-elements.com/elements/api-v2/"},
		{"trailing slash kept", "https://api.cloud-elements.com/elements/api-v2/", "https://api.cloud-elements.com/elements/api-v2/"},
		{"http emulator", "http://127.0.0.1:8080/elements/api-v2", "http://127.0.0.1:8080/elements/api-v2/"},
		{"host only", "https://staging.cloud-elements.com", "https://staging.cloud-elements.com/"},
		{"upper case scheme", "HTTPS://api.cloud-elements.com/elements/api-v2", "https://api.cloud-elements.com/elements/api-v2/"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewClient(tc.baseURL, testCreds)
			if err != nil {
				t.Fatalf("NewClient(%q) error: %v", tc.baseURL, err)
			}
			if got := c.BaseURL().String(); got != tc.want {
				t.Errorf("NewClient(%q).BaseURL() = %q, want %q", tc.baseURL, got, tc.want)
			}
		})
	}
}

func TestNewClientErrors(t *testing.T) {
	tests := []struct {
		name    string
		baseURL string
		creds   Credentials
		opts    []Option
		wantMsg string // a fragment of the error
	}{
		{"empty URL", "", testCreds, nil, "base URL is required"},
		{"relative URL", "elements/api-v2", testCreds, nil, "absolute http or https"},
		{"ftp", "ftp://example.com/elements/api-v2", testCreds, nil, `scheme "ftp"`},
		{"no host", "https:///elements/api-v2", testCreds, nil, "no host"},
		{"user info", "https://usr-SECRET-7f3a9c:x@example.com/", testCreds, nil, "user info"},
		{"query", "https://example.com/api?token=abc", testCreds, nil, "query or fragment"},
		{"fragment", "https://example.com/api#x", testCreds, nil, "query or fragment"},
		{"bad URL", "https://exa mple.com/", testCreds, nil, "invalid base URL"},
		{"missing user secret", "https://example.com", Credentials{OrganizationSecret: "o", ElementToken: "e"}, nil, "missing credentials: UserSecret"},
		{"missing all", "https://example.com", Credentials{UserSecret: " ", OrganizationSecret: "\t"}, nil, "missing credentials: UserSecret, OrganizationSecret, ElementToken"},
		{"control character", "https://example.com", Credentials{UserSecret: "u", OrganizationSecret: "o\r\nX-Evil: 1", ElementToken: "e"}, nil, "control character: OrganizationSecret"},
		{"comma", "https://example.com", Credentials{UserSecret: "u", OrganizationSecret: "o", ElementToken: "e, Element x"}, nil, "ElementToken"},
		{"nil http client", "https://example.com", testCreds, []Option{WithHTTPClient(nil)}, "nil client"},
		{"bad retry", "https://example.com", testCreds, []Option{WithRetry(-1, 0, 0)}, "WithRetry"},
		{"min over max", "https://example.com", testCreds, []Option{WithRetry(1, time.Second, time.Millisecond)}, "WithRetry"},
		{"bad poll interval", "https://example.com", testCreds, []Option{WithPollInterval(0)}, "WithPollInterval"},
		{"bad hub", "https://example.com", testCreds, []Option{WithHub("a/b")}, "WithHub"},
		{"empty hub", "https://example.com", testCreds, []Option{WithHub("")}, "WithHub"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewClient(tc.baseURL, tc.creds, tc.opts...)
			if err == nil {
				t.Fatalf("NewClient(%q) = %v, want error", tc.baseURL, c)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("NewClient(%q) error = %q, want it to contain %q", tc.baseURL, err, tc.wantMsg)
			}
			assertNoSecrets(t, err.Error())
		})
	}
}

func TestDefaultHTTPClient(t *testing.T) {
	c, err := NewClient("https://api.cloud-elements.com/elements/api-v2", testCreds)
	if err != nil {
		t.Fatal(err)
	}
	if c.httpClient.Timeout != 0 {
		t.Errorf("default http.Client.Timeout = %v, want 0 (it would cut long downloads)", c.httpClient.Timeout)
	}
	tr, ok := c.httpClient.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("default transport is %T, want *http.Transport", c.httpClient.Transport)
	}
	if tr.ResponseHeaderTimeout <= 0 || tr.TLSHandshakeTimeout <= 0 {
		t.Errorf("transport ResponseHeaderTimeout = %v, TLSHandshakeTimeout = %v, want both > 0",
			tr.ResponseHeaderTimeout, tr.TLSHandshakeTimeout)
	}
	if c.retry != (retryPolicy{max: 4, minWait: 500 * time.Millisecond, maxWait: 30 * time.Second}) {
		t.Errorf("default retry policy = %+v", c.retry)
	}
	if c.pollInterval != 15*time.Second {
		t.Errorf("default poll interval = %v, want 15s", c.pollInterval)
	}
}

func TestNewRequest(t *testing.T) {
	c, err := NewClient("https://api.cloud-elements.com/elements/api-v2", testCreds, WithUserAgent("cebulk-test/1"))
	if err != nil {
		t.Fatal(err)
	}
	req, err := c.newRequest(t.Context(), http.MethodPost, "hubs/general/bulk/query?q=select+%2A+from+users", strings.NewReader("{}"))
	if err != nil {
		t.Fatalf("newRequest: %v", err)
	}
	if got, want := req.URL.String(), "https://api.cloud-elements.com/elements/api-v2/hubs/general/bulk/query?q=select+%2A+from+users"; got != want {
		t.Errorf("newRequest URL = %q, want %q", got, want)
	}
	got := map[string]string{}
	for _, h := range []string{"Authorization", "Accept", "Content-Type", "User-Agent"} {
		got[h] = req.Header.Get(h)
	}
	want := map[string]string{
		"Authorization": wantAuthorization,
		"Accept":        "application/json",
		"Content-Type":  "application/json",
		"User-Agent":    "cebulk-test/1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("newRequest headers (-want +got):\n%s", diff)
	}

	if _, err := c.newRequest(t.Context(), http.MethodGet, "/hubs/general/bulk/jobs", nil); err == nil {
		t.Error("newRequest with an absolute path: want error")
	}
}

func TestCredentialsNeverFormat(t *testing.T) {
	c, err := NewClient("https://api.cloud-elements.com/elements/api-v2", testCreds)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	for _, s := range []string{
		fmt.Sprintf("%v %+v %#v %s %q %x %d", testCreds, testCreds, testCreds, testCreds, testCreds, testCreds, testCreds),
		fmt.Sprintf("%v %+v %#v", c, *c, c),
		fmt.Sprintf("%+v", struct{ C Credentials }{testCreds}),
	} {
		assertNoSecrets(t, s)
	}
	logger := newTestLogger(&logs)
	logger.Info("creds", "creds", testCreds)
	assertNoSecrets(t, logs.String())
}

func TestWithHub(t *testing.T) {
	c, mux, _ := setup(t, WithHub("crm"))
	mux.HandleFunc("/hubs/crm/bulk/1/status", serveFixture(t, "status-v2-completed.json"))
	if _, err := c.Status(t.Context(), "1"); err != nil {
		t.Errorf("Status with hub crm: %v", err)
	}
}

func TestPathEscaping(t *testing.T) {
	c, mux, _ := setup(t)
	var gotPath string
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.URL.EscapedPath()
		w.Write([]byte(`{"id":"x","status":"RUNNING"}`))
	})
	if _, err := c.Status(t.Context(), "a/b?c"); err != nil {
		t.Fatalf("Status: %v", err)
	}
	if want := "/hubs/general/bulk/a%2Fb%3Fc/status"; gotPath != want {
		t.Errorf("Status path = %q, want %q", gotPath, want)
	}
	for _, id := range []string{"", ".", ".."} {
		if _, err := c.Status(t.Context(), id); err == nil {
			t.Errorf("Status(%q): want error", id)
		}
	}
}

func TestAPIErrorMapping(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		wantCalls int32 // 1 = not retried; 5 = retried until exhaustion (4 retries)
		wantErr   *APIError
		wantIs    []error
		wantIsNot []error
		wantText  string
	}{
		{
			name: "400", status: 400, body: `{"requestId":"r1","message":"Missing required query parameter"}`, wantCalls: 1,
			wantErr:   &APIError{StatusCode: 400, Method: "GET", Path: "hubs/general/bulk/123/status", Message: "Missing required query parameter", RequestID: "r1"},
			wantIsNot: []error{ErrNotFound, ErrUnauthorized, ErrRateLimited},
			wantText:  "ce: GET hubs/general/bulk/123/status: 400 Bad Request: Missing required query parameter",
		},
		{
			name: "401", status: 401, body: `{"requestId":"r2","message":"Invalid Organization or User secret, or invalid Element token provided."}`, wantCalls: 1,
			wantErr: &APIError{StatusCode: 401, Method: "GET", Path: "hubs/general/bulk/123/status", Message: "Invalid Organization or User secret, or invalid Element token provided.", RequestID: "r2"},
			wantIs:  []error{ErrUnauthorized}, wantIsNot: []error{ErrNotFound},
			wantText: "ce: GET hubs/general/bulk/123/status: 401 Unauthorized: Invalid Organization or User secret, or invalid Element token provided.",
		},
		{
			name: "403", status: 403, body: `{"message":"forbidden","providerMessage":"Project secret revoked"}`, wantCalls: 1,
			wantErr:  &APIError{StatusCode: 403, Method: "GET", Path: "hubs/general/bulk/123/status", Message: "forbidden", ProviderMessage: "Project secret revoked"},
			wantText: "ce: GET hubs/general/bulk/123/status: 403 Forbidden: forbidden (provider: Project secret revoked)",
		},
		{
			name: "404 fixture", status: 404, body: string(fixture(t, "error-404.json")), wantCalls: 1,
			wantErr: &APIError{StatusCode: 404, Method: "GET", Path: "hubs/general/bulk/123/status", Message: "No job found with id 123", RequestID: "53dbca9430045c016b46566c"},
			wantIs:  []error{ErrNotFound}, wantIsNot: []error{ErrUnauthorized, ErrRateLimited},
			wantText: "ce: GET hubs/general/bulk/123/status: 404 Not Found: No job found with id 123",
		},
		{
			name: "409", status: 409, body: `{"message":"conflict"}`, wantCalls: 1,
			wantErr: &APIError{StatusCode: 409, Method: "GET", Path: "hubs/general/bulk/123/status", Message: "conflict"},
		},
		{
			name: "429 exhausted", status: 429, body: `{"message":"slow down"}`, wantCalls: 5,
			wantErr: &APIError{StatusCode: 429, Method: "GET", Path: "hubs/general/bulk/123/status", Message: "slow down"},
			wantIs:  []error{ErrRateLimited},
		},
		{
			name: "500 exhausted", status: 500, body: `oops<html>`, wantCalls: 5,
			wantErr:  &APIError{StatusCode: 500, Method: "GET", Path: "hubs/general/bulk/123/status", Message: "oops<html>"},
			wantText: "ce: GET hubs/general/bulk/123/status: 500 Internal Server Error: oops<html>",
		},
		{
			name: "501 not retried", status: 501, body: ``, wantCalls: 1,
			wantErr:  &APIError{StatusCode: 501, Method: "GET", Path: "hubs/general/bulk/123/status"},
			wantText: "ce: GET hubs/general/bulk/123/status: 501 Not Implemented",
		},
		{
			name: "502 provider fixture", status: 502, body: string(fixture(t, "error-502-provider.json")), wantCalls: 5,
			wantErr: &APIError{StatusCode: 502, Method: "GET", Path: "hubs/general/bulk/123/status", Message: "Provider error", RequestID: "5f0c1d2e3f4a5b6c7d8e9f00",
				ProviderMessage: "Project exceeded rate limits. Please retry the request with exponential backoff."},
		},
		{
			name: "mixpanel style error field", status: 400, body: `{"code":400,"error":"some data points in the request failed validation","status":"Bad Request"}`, wantCalls: 1,
			wantErr: &APIError{StatusCode: 400, Method: "GET", Path: "hubs/general/bulk/123/status", Message: "some data points in the request failed validation"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, mux, _ := setup(t)
			var calls atomic.Int32
			mux.HandleFunc("/hubs/general/bulk/123/status", func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			})
			_, err := c.Status(t.Context(), "123")
			var apiErr *APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("Status error = %v (%T), want *APIError", err, err)
			}
			tc.wantErr.Body = []byte(tc.body)
			if tc.body == "" {
				tc.wantErr.Body = nil
			}
			if diff := cmp.Diff(tc.wantErr, apiErr, cmp.AllowUnexported(APIError{}), ignoreRetryAfter); diff != "" {
				t.Errorf("APIError mismatch (-want +got):\n%s", diff)
			}
			if got := calls.Load(); got != tc.wantCalls {
				t.Errorf("server saw %d calls, want %d", got, tc.wantCalls)
			}
			for _, target := range tc.wantIs {
				if !errors.Is(err, target) {
					t.Errorf("errors.Is(err, %v) = false, want true", target)
				}
			}
			for _, target := range tc.wantIsNot {
				if errors.Is(err, target) {
					t.Errorf("errors.Is(err, %v) = true, want false", target)
				}
			}
			if tc.wantText != "" && err.Error() != tc.wantText {
				t.Errorf("Error() = %q, want %q", err.Error(), tc.wantText)
			}
		})
	}
}

var ignoreRetryAfter = cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".retryAfter" }, cmp.Ignore())

func TestAPIErrorBodyCapped(t *testing.T) {
	c, mux, _ := setup(t)
	big := `{"message":"` + strings.Repeat("x", 1<<20) + `"}`
	mux.HandleFunc("/hubs/general/bulk/123/status", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, big)
	})
	_, err := c.Status(t.Context(), "123")
	var apiErr *APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("Status error = %v, want *APIError", err)
	}
	if got := len(apiErr.Body); got != 64<<10 {
		t.Errorf("len(APIError.Body) = %d, want %d", got, 64<<10)
	}
	if len(err.Error()) > 1024 {
		t.Errorf("len(Error()) = %d, want a short message for a truncated JSON body", len(err.Error()))
	}
}

func TestMalformedJSONResponse(t *testing.T) {
	for _, body := range []string{`{"id": "1", "status": `, `not json`, ``, `{"id":"1","recordsCount":"many"}`, `[1,2]`} {
		t.Run(body, func(t *testing.T) {
			c, mux, _ := setup(t)
			mux.HandleFunc("/hubs/general/bulk/1/status", func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, body)
			})
			job, err := c.Status(t.Context(), "1")
			if err == nil {
				t.Fatalf("Status with body %q = %+v, want error", body, job)
			}
			var apiErr *APIError
			if errors.As(err, &apiErr) {
				t.Errorf("Status error is an *APIError, want a decode error: %v", err)
			}
			if !strings.HasPrefix(err.Error(), "ce: GET hubs/general/bulk/1/status: read response: ") {
				t.Errorf("Status error = %q", err)
			}
		})
	}
}

func TestRetryIdempotent(t *testing.T) {
	c, mux, rec := setup(t)
	var calls atomic.Int32
	mux.HandleFunc("/hubs/general/bulk/9/status", func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) {
		case 1:
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case 2:
			w.WriteHeader(http.StatusBadGateway)
		case 3:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			w.Write([]byte(`{"id":"9","status":"RUNNING"}`))
		}
	})
	job, err := c.Status(t.Context(), "9")
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if job.Status != StatusRunning {
		t.Errorf("Status = %q, want RUNNING", job.Status)
	}
	if got := calls.Load(); got != 4 {
		t.Errorf("calls = %d, want 4", got)
	}
	waits := rec.recorded()
	if len(waits) != 3 {
		t.Fatalf("waits = %v, want 3", waits)
	}
	if waits[2] != 0 {
		t.Errorf("wait after Retry-After: 0 = %v, want 0", waits[2])
	}
	for i, w := range waits[:2] {
		if w < time.Millisecond || w > 10*time.Millisecond {
			t.Errorf("backoff wait %d = %v, want within [1ms, 10ms]", i, w)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		retryAfter string
		want       time.Duration
	}{
		{"seconds", "7", 7 * time.Second},
		{"http date", now.Add(12 * time.Second).Format(http.TimeFormat), 12 * time.Second},
		{"date in the past", now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"capped at maxWait", "3600", 30 * time.Second},
		{"date capped at maxWait", now.Add(time.Hour).Format(http.TimeFormat), 30 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, mux, rec := setup(t, WithRetry(2, time.Millisecond, 30*time.Second))
			c.now = func() time.Time { return now }
			var calls atomic.Int32
			mux.HandleFunc("/hubs/general/bulk/1/status", func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) == 1 {
					w.Header().Set("Retry-After", tc.retryAfter)
					w.WriteHeader(http.StatusTooManyRequests)
					return
				}
				w.Write([]byte(`{"id":"1","status":"COMPLETED"}`))
			})
			if _, err := c.Status(t.Context(), "1"); err != nil {
				t.Fatalf("Status: %v", err)
			}
			if diff := cmp.Diff([]time.Duration{tc.want}, rec.recorded()); diff != "" {
				t.Errorf("waits (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"", 0, false},
		{"  5 ", 5 * time.Second, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{"Thu, 26 Nov 2026 02:00:30 GMT", 30 * time.Second, true},
		{"Thursday, 26-Nov-26 02:00:10 GMT", 10 * time.Second, true}, // RFC 850
		{"99999999999999999999", 0, false},
	}
	for _, tc := range tests {
		got, ok := parseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("parseRetryAfter(%q) = %v, %v, want %v, %v", tc.in, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	c, err := NewClient("https://example.com", testCreds, WithRetry(10, 500*time.Millisecond, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for _, jitter := range []func(int64) int64{
		func(int64) int64 { return 0 },
		func(n int64) int64 { return n - 1 },
	} {
		c.jitter = jitter
		for attempt := range 70 {
			upper := 30 * time.Second
			if attempt < 6 {
				upper = min(upper, 500*time.Millisecond<<attempt)
			}
			got := c.backoff(attempt)
			if got < 500*time.Millisecond || got > upper {
				t.Errorf("backoff(%d) = %v, want within [500ms, %v]", attempt, got, upper)
			}
		}
	}
	c.jitter = func(n int64) int64 { return n - 1 }
	if got := c.backoff(3); got != 4*time.Second {
		t.Errorf("backoff(3) with maximal jitter = %v, want 4s", got)
	}
}

func TestRetryStopsOnContextDone(t *testing.T) {
	c, mux, _ := setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	var calls atomic.Int32
	mux.HandleFunc("/hubs/general/bulk/1/status", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		cancel()
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	_, err := c.Status(ctx, "1")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Status error = %v, want context.Canceled", err)
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("calls = %d, want 1", got)
	}
}

func TestRetryTransportErrors(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	tests := []struct {
		name      string
		method    string // GET → Status, POST → StartQuery
		failures  []error
		wantCalls int
		wantErr   error // nil means success
	}{
		{"GET retries connection refused", "GET", []error{refused, refused}, 3, nil},
		{"GET retries reset after send", "GET", []error{reset}, 2, nil},
		{"GET retries timeout", "GET", []error{timeout}, 2, nil},
		{"GET exhausts retries", "GET", []error{reset, reset, reset, reset, reset}, 5, syscall.ECONNRESET},
		{"POST retries connection refused", "POST", []error{refused, refused}, 3, nil},
		{"POST does not retry reset after send", "POST", []error{reset}, 1, syscall.ECONNRESET},
		{"POST does not retry timeout after send", "POST", []error{timeout}, 1, os.ErrDeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls int
			rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				calls++
				if calls <= len(tc.failures) {
					return nil, tc.failures[calls-1]
				}
				rec := httptest.NewRecorder()
				rec.WriteString(`{"id":"5","status":"CREATED"}`)
				return rec.Result(), nil
			})
			c, err := NewClient("https://ce.example.com/elements/api-v2", testCreds,
				WithHTTPClient(&http.Client{Transport: rt}), WithRetry(4, time.Millisecond, time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			c.sleep = (&sleepRecorder{}).sleep
			if tc.method == "GET" {
				_, err = c.Status(t.Context(), "5")
			} else {
				_, err = c.StartQuery(t.Context(), QueryRequest{Object: "activities"})
			}
			switch {
			case tc.wantErr == nil && err != nil:
				t.Errorf("call error = %v, want nil", err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("call error = %v, want one wrapping %v", err, tc.wantErr)
			}
			if calls != tc.wantCalls {
				t.Errorf("round trips = %d, want %d", calls, tc.wantCalls)
			}
			if err != nil && strings.Contains(err.Error(), "https://") {
				t.Errorf("error %q contains the request URL", err)
			}
		})
	}
}

// TestRetryRealConnectionRefused dials a port nobody listens on.
func TestRetryRealConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var dials atomic.Int32
	tr := &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, a)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := NewClient("http://"+addr+"/elements/api-v2", testCreds,
		WithHTTPClient(&http.Client{Transport: tr}), WithRetry(2, time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	c.sleep = (&sleepRecorder{}).sleep
	_, err = c.StartQuery(t.Context(), QueryRequest{Object: "users", CallbackURL: "https://hooks.example.com/cb?token=tok-SECRET-99"})
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("StartQuery error = %v, want ECONNREFUSED", err)
	}
	if got := dials.Load(); got != 3 {
		t.Errorf("dials = %d, want 3 (a refused job creation is retried)", got)
	}
	assertNoSecrets(t, err.Error())
}

func TestDrainsBodyBeforeRetry(t *testing.T) {
	var closed []bool
	var bodies []*trackedBody
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		b := &trackedBody{Reader: strings.NewReader(strings.Repeat("e", 100))}
		bodies = append(bodies, b)
		status := http.StatusServiceUnavailable
		if len(bodies) == 2 {
			b.Reader = strings.NewReader(`{"id":"1","status":"RUNNING"}`)
			status = http.StatusOK
		}
		return &http.Response{StatusCode: status, Header: http.Header{}, Body: b, ContentLength: -1}, nil
	})
	c, err := NewClient("https://ce.example.com/", testCreds, WithHTTPClient(&http.Client{Transport: rt}))
	if err != nil {
		t.Fatal(err)
	}
	c.sleep = (&sleepRecorder{}).sleep
	if _, err := c.Status(t.Context(), "1"); err != nil {
		t.Fatal(err)
	}
	for _, b := range bodies {
		closed = append(closed, b.closed && b.Len() == 0)
	}
	if diff := cmp.Diff([]bool{true, true}, closed); diff != "" {
		t.Errorf("bodies drained and closed (-want +got):\n%s", diff)
	}
}

type trackedBody struct {
	*strings.Reader
	closed bool
}

func (b *trackedBody) Close() error { b.closed = true; return nil }
