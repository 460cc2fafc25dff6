package mixpanel

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// basePath is the path prefix of the test servers: WithBaseURL may carry one.
const basePath = "/mp"

// testCreds are distinctive so that tests can search output for them.
var testCreds = Credentials{
	ServiceAccountUser:   "svc-USER.4d2f.mp-service-account",
	ServiceAccountSecret: "sa-SECRET-7f3a9c51be02",
	ProjectID:            "2195193",
	ProjectToken:         "tok-TOKEN-c0ffee1234",
}

var wantAuthorization = "Basic " + base64.StdEncoding.EncodeToString([]byte(testCreds.ServiceAccountUser+":"+testCreds.ServiceAccountSecret))

// secretsOf lists every string that must never appear in errors or logs.
func secretsOf() []string {
	return []string{
		testCreds.ServiceAccountUser, testCreds.ServiceAccountSecret, testCreds.ProjectToken,
		strings.TrimPrefix(wantAuthorization, "Basic "),
	}
}

// sleepRecorder replaces the client's sleep: it records the waits and
// returns at once, so no test sleeps for real.
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

// setup starts a test server whose mux serves the API paths under
// basePath (handlers register "/import" and so on) and returns a client for
// it with 3 retries waiting 2s doubling to 60s, no jitter, a recording
// sleep and a logger writing into logs.
func setup(t *testing.T, opts ...Option) (c *Client, mux *http.ServeMux, sleeps *sleepRecorder, logs *bytes.Buffer) {
	t.Helper()
	mux = http.NewServeMux()
	outer := http.NewServeMux()
	outer.Handle(basePath+"/", http.StripPrefix(basePath, mux))
	srv := httptest.NewServer(outer)
	t.Cleanup(srv.Close)
	logs = &bytes.Buffer{}
	var logMu sync.Mutex
	all := append([]Option{
		WithBaseURL(srv.URL + basePath),
		WithRetry(3, 2*time.Second, 60*time.Second),
		WithRetryJitter(0, 0),
		WithLogger(slog.New(slog.NewTextHandler(&lockedWriter{mu: &logMu, w: logs}, nil))),
	}, opts...)
	c, err := NewClient(testCreds, all...)
	if err != nil {
		t.Fatal(err)
	}
	sleeps = &sleepRecorder{}
	c.sleep = sleeps.sleep
	return c, mux, sleeps, logs
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// fixture returns the content of testdata/name.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkAuth fails the test unless r carries the service account and the
// project ID.
func checkAuth(t *testing.T, r *http.Request) {
	t.Helper()
	if got := r.Header.Get("Authorization"); got != wantAuthorization {
		t.Errorf("Authorization = %q, want %q", got, wantAuthorization)
	}
	if got := r.URL.Query().Get("project_id"); got != testCreds.ProjectID {
		t.Errorf("project_id = %q, want %q", got, testCreds.ProjectID)
	}
}

// assertNoSecrets fails when any secret appears in s.
func assertNoSecrets(t *testing.T, what, s string) {
	t.Helper()
	for _, secret := range secretsOf() {
		if strings.Contains(s, secret) {
			t.Errorf("%s contains the secret %q: %s", what, secret, s)
		}
	}
}

func TestRegionHosts(t *testing.T) {
	tests := []struct {
		region string
		want   Hosts
	}{
		{"", Hosts{"https://data.mixpanel.com/", "https://mixpanel.com/", "https://api.mixpanel.com/"}},
		{"us", Hosts{"https://data.mixpanel.com/", "https://mixpanel.com/", "https://api.mixpanel.com/"}},
		{"EU", Hosts{"https://data-eu.mixpanel.com/", "https://eu.mixpanel.com/", "https://api-eu.mixpanel.com/"}},
		{" in ", Hosts{"https://data-in.mixpanel.com/", "https://in.mixpanel.com/", "https://api-in.mixpanel.com/"}},
	}
	for _, tt := range tests {
		r, err := ParseRegion(tt.region)
		if err != nil {
			t.Fatalf("ParseRegion(%q): %v", tt.region, err)
		}
		c, err := NewClient(testCreds, WithRegion(r))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(c.Hosts(), tt.want); diff != "" {
			t.Errorf("region %q hosts (-got +want):\n%s", tt.region, diff)
		}
	}
	if _, err := ParseRegion("ap"); err == nil {
		t.Error("ParseRegion(ap) succeeded")
	}
	if _, err := NewClient(testCreds, WithRegion("AP")); err == nil {
		t.Error("WithRegion(AP) succeeded")
	}
}

func TestWithBaseURL(t *testing.T) {
	c, err := NewClient(testCreds, WithRegion(RegionEU), WithBaseURL("http://127.0.0.1:8765/mixpanel"))
	if err != nil {
		t.Fatal(err)
	}
	want := "http://127.0.0.1:8765/mixpanel/"
	if diff := cmp.Diff(c.Hosts(), Hosts{want, want, want}); diff != "" {
		t.Errorf("hosts (-got +want):\n%s", diff)
	}
	for _, bad := range []string{"ftp://x", "http://", "http://u:p@host", "http://host/?q=1", "http://host/#f", "::"} {
		if _, err := NewClient(testCreds, WithBaseURL(bad)); err == nil {
			t.Errorf("WithBaseURL(%q) succeeded", bad)
		}
	}
}

func TestNewClientCredentials(t *testing.T) {
	tests := []struct {
		name  string
		creds Credentials
		want  string // substring of the error; "" for success
	}{
		{"complete", testCreds, ""},
		{"no token is fine", Credentials{ServiceAccountUser: "u", ServiceAccountSecret: "s", ProjectID: "1"}, ""},
		{"all missing", Credentials{}, "missing credentials: ServiceAccountUser, ServiceAccountSecret, ProjectID"},
		{"blank secret", Credentials{ServiceAccountUser: "u", ServiceAccountSecret: "  ", ProjectID: "1"}, "missing credentials: ServiceAccountSecret"},
		{"project id not numeric", Credentials{ServiceAccountUser: "u", ServiceAccountSecret: "s", ProjectID: "my-project"}, "numeric project ID"},
		{"colon in user", Credentials{ServiceAccountUser: "a:b", ServiceAccountSecret: "s", ProjectID: "1"}, "forbidden character: ServiceAccountUser"},
		{"quote in token", Credentials{ServiceAccountUser: "u", ServiceAccountSecret: "s", ProjectID: "1", ProjectToken: `a"b`}, "forbidden character: ProjectToken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewClient(tt.creds)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("NewClient: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("NewClient error = %v, want it to contain %q", err, tt.want)
			}
			if err != nil {
				assertNoSecrets(t, "error", err.Error())
			}
		})
	}
}

func TestCredentialsNeverPrint(t *testing.T) {
	c, err := NewClient(testCreds)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("creds", "creds", testCreds)
	for _, s := range []string{
		fmt.Sprint(testCreds), fmt.Sprintf("%+v", testCreds), fmt.Sprintf("%#v", testCreds),
		fmt.Sprintf("%v", c), fmt.Sprintf("%+v", *c), logs.String(),
	} {
		assertNoSecrets(t, "formatted value", s)
	}
}

func TestBackoff(t *testing.T) {
	c, err := NewClient(testCreds)
	if err != nil {
		t.Fatal(err)
	}
	c.jitter = func(n int64) int64 { return n - 1 } // the largest jitter
	c.now = func() time.Time { return time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC) }
	tests := []struct {
		attempt    int
		retryAfter string
		want       time.Duration
	}{
		{0, "", 2*time.Second + 5*time.Second},
		{1, "", 4*time.Second + 5*time.Second},
		{4, "", 32*time.Second + 5*time.Second},
		{5, "", 60*time.Second + 5*time.Second},
		{40, "", 60*time.Second + 5*time.Second},
		{0, "7", 7*time.Second + 5*time.Second},
		{0, "3600", 60*time.Second + 5*time.Second},
		{0, "Wed, 02 Dec 2026 10:00:20 GMT", 20*time.Second + 5*time.Second},
		{0, "Wed, 02 Dec 2026 09:00:00 GMT", 5 * time.Second},
		{2, "soon", 8*time.Second + 5*time.Second},
	}
	for _, tt := range tests {
		if got := c.retryWait(tt.attempt, tt.retryAfter); got != tt.want {
			t.Errorf("retryWait(%d, %q) = %v, want %v", tt.attempt, tt.retryAfter, got, tt.want)
		}
	}
	c.jitter = func(int64) int64 { return 0 }
	if got, want := c.backoff(0), 3*time.Second; got != want {
		t.Errorf("backoff(0) with the smallest jitter = %v, want %v", got, want)
	}
}

func TestOptionsRejectNonsense(t *testing.T) {
	for name, opt := range map[string]Option{
		"negative retries":  WithRetry(-1, 0, 0),
		"min over max":      WithRetry(1, 2*time.Second, time.Second),
		"jitter inverted":   WithRetryJitter(2*time.Second, time.Second),
		"no concurrency":    WithConcurrency(0),
		"nil http client":   WithHTTPClient(nil),
		"region of nowhere": WithRegion("XX"),
		"relative base URL": WithBaseURL("/mp"),
	} {
		if _, err := NewClient(testCreds, opt); err == nil {
			t.Errorf("%s: NewClient succeeded", name)
		}
	}
}
