package mixpanel

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/cebulk/cebulk/internal/httpapi"
)

const (
	defaultUserAgent   = "cebulk-mixpanel (+https://github.com/cebulk/cebulk)"
	defaultMaxRetries  = 6
	defaultMinWait     = 2 * time.Second
	defaultMaxWait     = 60 * time.Second
	defaultJitterMin   = 1 * time.Second
	defaultJitterMax   = 5 * time.Second
	defaultConcurrency = 10

	// maxJSONResponse bounds a JSON answer decoded in memory (an engage
	// page, an import answer); export data never goes through it.
	maxJSONResponse = 64 << 20
)

// The API paths, relative to each API's base URL. With WithBaseURL all four
// live under one base.
const (
	exportPath      = "api/2.0/export"
	engageQueryPath = "api/query/engage"
	importPath      = "import"
	engagePath      = "engage"
)

// Credentials identify a Mixpanel project and a service account with access
// to it. They never appear in errors or logs: a Credentials value formats as
// "mixpanel.Credentials{REDACTED}" with every fmt verb and logs as
// "REDACTED" with log/slog.
type Credentials struct {
	ServiceAccountUser   string // the service account's username (HTTP Basic user)
	ServiceAccountSecret string // the service account's secret (HTTP Basic password)
	ProjectID            string // the numeric project ID, sent as project_id on every call
	// ProjectToken is the project's token, written as "$token" into every
	// profile update. Only UpdateProfiles and UpdateProfileBatch need it.
	ProjectToken string
}

// Format implements fmt.Formatter so that no verb can print the secrets.
func (Credentials) Format(f fmt.State, _ rune) { io.WriteString(f, "mixpanel.Credentials{REDACTED}") }

// String returns "mixpanel.Credentials{REDACTED}".
func (Credentials) String() string { return "mixpanel.Credentials{REDACTED}" }

// LogValue implements slog.LogValuer so that logging Credentials shows no secret.
func (Credentials) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// Region is a Mixpanel data residency region. It selects the hosts of the
// three APIs (see Hosts).
type Region string

// The regions Mixpanel offers.
const (
	RegionUS Region = "US" // the default: data.mixpanel.com, mixpanel.com, api.mixpanel.com
	RegionEU Region = "EU" // EU Data Residency: data-eu., eu., api-eu.mixpanel.com
	RegionIN Region = "IN" // India Data Residency: data-in., in., api-in.mixpanel.com
)

// ParseRegion parses "US", "EU" or "IN" in any case; an empty string is US.
func ParseRegion(s string) (Region, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "", "US":
		return RegionUS, nil
	case "EU":
		return RegionEU, nil
	case "IN":
		return RegionIN, nil
	}
	return "", fmt.Errorf("mixpanel: unknown region %q: want US, EU or IN", s)
}

// Hosts are the base URLs of Mixpanel's APIs for one region.
type Hosts struct {
	Export    string // raw event export: https://data.mixpanel.com/
	Query     string // query API (engage query): https://mixpanel.com/
	Ingestion string // /import and /engage: https://api.mixpanel.com/
}

// Hosts returns the region's API base URLs. An unknown region returns the
// zero Hosts.
func (r Region) Hosts() Hosts {
	switch r {
	case RegionUS:
		return Hosts{"https://data.mixpanel.com/", "https://mixpanel.com/", "https://api.mixpanel.com/"}
	case RegionEU:
		return Hosts{"https://data-eu.mixpanel.com/", "https://eu.mixpanel.com/", "https://api-eu.mixpanel.com/"}
	case RegionIN:
		return Hosts{"https://data-in.mixpanel.com/", "https://in.mixpanel.com/", "https://api-in.mixpanel.com/"}
	}
	return Hosts{}
}

// Client is a Mixpanel API client for one project. It is safe for concurrent
// use. Build it once with NewClient and reuse it.
type Client struct {
	region    Region
	baseURL   string // WithBaseURL; "" means the region's hosts
	export    *url.URL
	query     *url.URL
	ingestion *url.URL

	secrets     *secrets // a pointer, so printing a Client value shows no secret
	projectID   string
	httpClient  *http.Client
	userAgent   string
	logger      *slog.Logger
	retry       retryPolicy
	concurrency int

	// Hooks replaced by tests; never nil after NewClient.
	sleep  func(ctx context.Context, d time.Duration) error
	now    func() time.Time
	jitter func(n int64) int64 // uniform in [0, n)
}

// secrets holds what must never be printed, with a redactor for anything
// Mixpanel might echo back.
type secrets struct {
	authorization string
	token         string
	redactor      *strings.Replacer
}

// Option configures a Client in NewClient.
type Option func(*Client) error

// WithRegion selects the data residency region (default RegionUS).
// WithBaseURL takes precedence over it.
func WithRegion(r Region) Option {
	return func(c *Client) error {
		if r.Hosts() == (Hosts{}) {
			return fmt.Errorf("mixpanel: WithRegion(%q): want US, EU or IN", string(r))
		}
		c.region = r
		return nil
	}
}

// WithBaseURL puts every API under one base URL, for emulators and
// proxies: the export at <base>/api/2.0/export, the engage query at
// <base>/api/query/engage, imports at <base>/import and profile updates at
// <base>/engage (the paths they have on their own hosts). The URL must be
// an absolute http or https URL without user info, query or fragment; it
// may have a path prefix. An empty string keeps the region's hosts.
func WithBaseURL(raw string) Option {
	return func(c *Client) error {
		c.baseURL = raw
		return nil
	}
}

// WithHTTPClient sets the HTTP client used for every request. Do not set
// http.Client.Timeout on it: that timeout also bounds reading an export.
// Bound calls with their context instead.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc == nil {
			return errors.New("mixpanel: WithHTTPClient: nil client")
		}
		c.httpClient = hc
		return nil
	}
}

// WithUserAgent sets the User-Agent header. An empty string keeps the default.
func WithUserAgent(ua string) Option {
	return func(c *Client) error {
		if ua != "" {
			c.userAgent = ua
		}
		return nil
	}
}

// WithLogger sets the logger for retries. The default discards everything.
// Log records carry the method, the API path, the attempt, the status and
// the wait, never secrets, query strings or payloads.
func WithLogger(l *slog.Logger) Option {
	return func(c *Client) error {
		if l == nil {
			l = slog.New(slog.DiscardHandler)
		}
		c.logger = l
		return nil
	}
}

// WithRetry sets the retry policy: at most retries retries after the first
// attempt (0 disables retries); the n-th retry waits min(maxWait,
// minWait·2^(n-1)) plus the jitter (see WithRetryJitter). The defaults
// follow Mixpanel's advice: 6 retries, 2s doubling to 60s. A Retry-After
// header replaces the doubling wait, capped at maxWait.
func WithRetry(retries int, minWait, maxWait time.Duration) Option {
	return func(c *Client) error {
		if retries < 0 || minWait < 0 || maxWait < minWait {
			return fmt.Errorf("mixpanel: WithRetry(%d, %v, %v): want retries >= 0 and 0 <= minWait <= maxWait", retries, minWait, maxWait)
		}
		c.retry.max, c.retry.minWait, c.retry.maxWait = retries, minWait, maxWait
		return nil
	}
}

// WithRetryJitter sets the random extra wait added to every retry wait,
// uniform between lo and hi (default 1s to 5s, as Mixpanel advises), so
// that concurrent senders do not retry in step.
func WithRetryJitter(lo, hi time.Duration) Option {
	return func(c *Client) error {
		if lo < 0 || hi < lo {
			return fmt.Errorf("mixpanel: WithRetryJitter(%v, %v): want 0 <= lo <= hi", lo, hi)
		}
		c.retry.jitterMin, c.retry.jitterMax = lo, hi
		return nil
	}
}

// WithConcurrency sets how many /import or /engage batches Import and
// UpdateProfiles keep in flight (default 10; Mixpanel advises 10 to 20
// concurrent clients). Memory grows by about 4 MiB per batch in flight.
func WithConcurrency(n int) Option {
	return func(c *Client) error {
		if n < 1 {
			return fmt.Errorf("mixpanel: WithConcurrency(%d): want at least 1", n)
		}
		c.concurrency = n
		return nil
	}
}

// NewClient returns a client for one Mixpanel project. The service account
// user and secret and the project ID are required (surrounding white space
// is trimmed); the project token is needed only for profile updates.
func NewClient(creds Credentials, opts ...Option) (*Client, error) {
	creds.ServiceAccountUser = strings.TrimSpace(creds.ServiceAccountUser)
	creds.ServiceAccountSecret = strings.TrimSpace(creds.ServiceAccountSecret)
	creds.ProjectID = strings.TrimSpace(creds.ProjectID)
	creds.ProjectToken = strings.TrimSpace(creds.ProjectToken)
	if err := checkCredentials(creds); err != nil {
		return nil, err
	}
	basic := base64.StdEncoding.EncodeToString([]byte(creds.ServiceAccountUser + ":" + creds.ServiceAccountSecret))
	c := &Client{
		region: RegionUS,
		secrets: &secrets{
			authorization: "Basic " + basic,
			token:         creds.ProjectToken,
			redactor:      newRedactor(creds.ServiceAccountUser, creds.ServiceAccountSecret, creds.ProjectToken, basic),
		},
		projectID:  creds.ProjectID,
		httpClient: defaultHTTPClient(),
		userAgent:  defaultUserAgent,
		logger:     slog.New(slog.DiscardHandler),
		retry: retryPolicy{
			max: defaultMaxRetries, minWait: defaultMinWait, maxWait: defaultMaxWait,
			jitterMin: defaultJitterMin, jitterMax: defaultJitterMax,
		},
		concurrency: defaultConcurrency,
		sleep:       sleepContext,
		now:         time.Now,
		jitter:      rand.Int64N,
	}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(c); err != nil {
			return nil, err
		}
	}
	hosts := c.region.Hosts()
	if c.baseURL != "" {
		hosts = Hosts{c.baseURL, c.baseURL, c.baseURL}
	}
	var err error
	if c.export, err = parseBaseURL(hosts.Export); err != nil {
		return nil, err
	}
	if c.query, err = parseBaseURL(hosts.Query); err != nil {
		return nil, err
	}
	if c.ingestion, err = parseBaseURL(hosts.Ingestion); err != nil {
		return nil, err
	}
	return c, nil
}

// Hosts returns the base URLs the client sends to, each ending in "/".
func (c *Client) Hosts() Hosts {
	return Hosts{c.export.String(), c.query.String(), c.ingestion.String()}
}

func checkCredentials(creds Credentials) error {
	var missing, invalid []string
	for _, f := range []struct{ name, value string }{
		{"ServiceAccountUser", creds.ServiceAccountUser},
		{"ServiceAccountSecret", creds.ServiceAccountSecret},
		{"ProjectID", creds.ProjectID},
	} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if strings.Contains(creds.ServiceAccountUser, ":") || strings.ContainsFunc(creds.ServiceAccountUser, unicode.IsControl) {
		invalid = append(invalid, "ServiceAccountUser")
	}
	if strings.ContainsFunc(creds.ServiceAccountSecret, unicode.IsControl) {
		invalid = append(invalid, "ServiceAccountSecret")
	}
	if strings.ContainsFunc(creds.ProjectToken, unicode.IsControl) || strings.Contains(creds.ProjectToken, `"`) || strings.Contains(creds.ProjectToken, `\`) {
		invalid = append(invalid, "ProjectToken")
	}
	var errs []error
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("mixpanel: missing credentials: %s", strings.Join(missing, ", ")))
	}
	if creds.ProjectID != "" && strings.TrimLeft(creds.ProjectID, "0123456789") != "" {
		errs = append(errs, errors.New("mixpanel: ProjectID must be the numeric project ID"))
	}
	if len(invalid) > 0 {
		errs = append(errs, fmt.Errorf("mixpanel: credentials contain a forbidden character: %s", strings.Join(invalid, ", ")))
	}
	return errors.Join(errs...)
}

func newRedactor(values ...string) *strings.Replacer {
	var pairs []string
	for _, s := range values {
		if s != "" {
			pairs = append(pairs, s, "REDACTED")
		}
	}
	return strings.NewReplacer(pairs...)
}

// redact removes every credential from s.
func (c *Client) redact(s string) string { return c.secrets.redactor.Replace(s) }

// defaultHTTPClient has no overall Timeout (it would cut long exports); the
// transport bounds connection setup and the wait for headers. Exports of
// large days may take minutes before the first byte, hence the generous
// header timeout. Compression is negotiated by the client itself.
func defaultHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   30 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 5 * time.Minute,
		ExpectContinueTimeout: time.Second,
	}}
}

// newRequest builds a request for path under base, with project_id added
// to query. It sets Authorization, Accept and User-Agent.
func (c *Client) newRequest(ctx context.Context, method string, base *url.URL, path string, query url.Values, body io.Reader) (*http.Request, error) {
	u := *base
	u.Path += path
	if u.RawPath != "" {
		u.RawPath += path
	}
	if query == nil {
		query = url.Values{}
	}
	query.Set("project_id", c.projectID)
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("mixpanel: build %s %s request: %v", method, path, unwrapURLError(err))
	}
	req.Header.Set("Authorization", c.secrets.authorization)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	return req, nil
}

// apiPath returns the API path of a request (its URL path without the base
// path prefix) for errors and logs: never the query string.
func apiPath(req *http.Request) string {
	p := req.URL.Path
	for _, suffix := range []string{exportPath, engageQueryPath, importPath, engagePath} {
		if strings.HasSuffix(p, "/"+suffix) {
			return suffix
		}
	}
	return strings.TrimPrefix(p, "/")
}

// decodeJSON decodes a bounded JSON body into v.
func decodeJSON(r io.Reader, v any) error {
	err := json.NewDecoder(io.LimitReader(r, maxJSONResponse)).Decode(v)
	if errors.Is(err, io.EOF) {
		err = errors.New("empty response body")
	}
	return err
}

// checkResponse turns a non-2xx response into an *APIError, keeping at
// most 64 KiB of its body, then draining and closing it. Mixpanel's error
// bodies are {"error": ..., "status": ...} (ingestion), {"request": ...,
// "error": ...} (query and export) or plain text; everything the client
// knows to be secret is redacted.
func (c *Client) checkResponse(resp *http.Response, req *http.Request) *APIError {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody+redactSlack))
	drainAndClose(resp.Body)
	e := &APIError{
		StatusCode: resp.StatusCode,
		Method:     req.Method,
		Path:       apiPath(req),
		retryAfter: resp.Header.Get("Retry-After"),
	}
	var payload struct {
		Error   json.RawMessage `json:"error"`
		Message json.RawMessage `json:"message"`
		Status  json.RawMessage `json:"status"`
	}
	if err := json.Unmarshal(raw, &payload); err == nil {
		e.Message = c.redact(rawText(payload.Error))
		if e.Message == "" {
			e.Message = c.redact(rawText(payload.Message))
		}
		e.Status = c.redact(rawText(payload.Status))
	} else {
		e.Message = httpapi.FirstLine(c.redact(string(raw)), 200)
	}
	if len(raw) > 0 {
		body := []byte(c.redact(string(raw)))
		e.Body = body[:min(len(body), maxErrorBody)]
	}
	return e
}

// redactSlack is how many bytes past the kept body are read for redaction.
const redactSlack = 4 << 10

// parseBaseURL checks one API base URL.
func parseBaseURL(raw string) (*url.URL, error) {
	u, err := httpapi.ParseBaseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("mixpanel: %v", err)
	}
	return u, nil
}

// Shorthands for the shared HTTP plumbing.
var (
	rawText         = httpapi.RawText
	unwrapURLError  = httpapi.UnwrapURLError
	drainAndClose   = httpapi.DrainAndClose
	sleepContext    = httpapi.Sleep
	parseRetryAfter = httpapi.ParseRetryAfter
)
