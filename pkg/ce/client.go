package ce

import (
	"context"
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
	defaultHub          = "general"
	defaultUserAgent    = "cebulk-ce (+https://github.com/cebulk/cebulk)"
	defaultMaxRetries   = 4
	defaultMinWait      = 500 * time.Millisecond
	defaultMaxWait      = 30 * time.Second
	defaultPollInterval = 15 * time.Second

	// maxJSONResponse bounds a JSON response body decoded in memory (status,
	// job lists, error pages); bulk data never goes through it.
	maxJSONResponse = 32 << 20
)

// Credentials are the three secrets of a CE element instance. They are sent
// in the Authorization header of every request and never appear in errors or
// logs: a Credentials value formats as "ce.Credentials{REDACTED}" with every
// fmt verb and logs as "REDACTED" with log/slog.
type Credentials struct {
	UserSecret         string // the CE user secret
	OrganizationSecret string // the CE organization secret
	ElementToken       string // the element instance token
}

// Format implements fmt.Formatter so that no verb can print the secrets.
func (Credentials) Format(f fmt.State, _ rune) { io.WriteString(f, "ce.Credentials{REDACTED}") }

// String returns "ce.Credentials{REDACTED}".
func (Credentials) String() string { return "ce.Credentials{REDACTED}" }

// LogValue implements slog.LogValuer so that logging Credentials shows no secret.
func (Credentials) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// Client is a CE bulk API client for one element instance. It is safe for
// concurrent use. Build it once with NewClient and reuse it.
type Client struct {
	baseURL      *url.URL // absolute, path ends in "/"
	secrets      *secrets // a pointer, so printing a Client value shows no secret
	httpClient   *http.Client
	userAgent    string
	hub          string
	logger       *slog.Logger
	retry        retryPolicy
	pollInterval time.Duration

	// Hooks replaced by tests; never nil after NewClient.
	sleep  func(ctx context.Context, d time.Duration) error
	now    func() time.Time
	jitter func(n int64) int64 // uniform in [0, n)
}

// secrets holds what must never be printed, with a redactor for anything CE
// might echo back.
type secrets struct {
	authorization string
	redactor      *strings.Replacer
}

// Option configures a Client in NewClient.
type Option func(*Client) error

// WithHTTPClient sets the HTTP client used for every request. Do not set
// http.Client.Timeout on it: that timeout also bounds reading a download
// body. Bound calls with their context instead.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc == nil {
			return errors.New("ce: WithHTTPClient: nil client")
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

// WithLogger sets the logger for retries and polling. The default discards
// everything. Log records carry the method, the sanitised path, the attempt
// and the status, never secrets or payloads.
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
// attempt (0 disables retries), waiting between minWait and maxWait. The
// defaults are 4, 500ms and 30s. A Retry-After header longer than maxWait is
// capped at maxWait.
func WithRetry(retries int, minWait, maxWait time.Duration) Option {
	return func(c *Client) error {
		if retries < 0 || minWait < 0 || maxWait < minWait {
			return fmt.Errorf("ce: WithRetry(%d, %v, %v): want retries >= 0 and 0 <= minWait <= maxWait", retries, minWait, maxWait)
		}
		c.retry = retryPolicy{max: retries, minWait: minWait, maxWait: maxWait}
		return nil
	}
}

// WithPollInterval sets the first interval between status polls in Wait
// (default 15s). Later intervals grow by a quarter each poll, up to four
// times the first.
func WithPollInterval(d time.Duration) Option {
	return func(c *Client) error {
		if d <= 0 {
			return fmt.Errorf("ce: WithPollInterval(%v): want a positive interval", d)
		}
		c.pollInterval = d
		return nil
	}
}

// WithHub sets the CE hub of the element (default "general"): bulk paths are
// hubs/<hub>/bulk/....
func WithHub(hub string) Option {
	return func(c *Client) error {
		if hub == "" || strings.ContainsAny(hub, "/?#") || hub == "." || hub == ".." {
			return fmt.Errorf("ce: WithHub(%q): want a single path segment", hub)
		}
		c.hub = hub
		return nil
	}
}

// NewClient returns a client for the CE API at baseURL, for example
// "https://api.cloud-elements.com/elements/api-v2". The base URL must be an
// absolute http or https URL without user info, query or fragment; a
// trailing slash is added when missing. All three credentials are required
// (surrounding white space is trimmed).
func NewClient(baseURL string, creds Credentials, opts ...Option) (*Client, error) {
	u, err := parseBaseURL(baseURL)
	if err != nil {
		return nil, err
	}
	auth, err := authorization(creds)
	if err != nil {
		return nil, err
	}
	c := &Client{
		baseURL:      u,
		secrets:      &secrets{authorization: auth, redactor: newRedactor(creds)},
		httpClient:   defaultHTTPClient(),
		userAgent:    defaultUserAgent,
		hub:          defaultHub,
		logger:       slog.New(slog.DiscardHandler),
		retry:        retryPolicy{max: defaultMaxRetries, minWait: defaultMinWait, maxWait: defaultMaxWait},
		pollInterval: defaultPollInterval,
		sleep:        sleepContext,
		now:          time.Now,
		jitter:       rand.Int64N,
	}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// BaseURL returns a copy of the client's base URL, which always ends in "/".
func (c *Client) BaseURL() *url.URL {
	u := *c.baseURL
	return &u
}

func authorization(creds Credentials) (string, error) {
	fields := []struct{ name, value string }{
		{"UserSecret", creds.UserSecret},
		{"OrganizationSecret", creds.OrganizationSecret},
		{"ElementToken", creds.ElementToken},
	}
	var missing, invalid []string
	for i, f := range fields {
		v := strings.TrimSpace(f.value)
		fields[i].value = v
		switch {
		case v == "":
			missing = append(missing, f.name)
		case strings.ContainsFunc(v, unicode.IsControl) || strings.Contains(v, ","):
			invalid = append(invalid, f.name)
		}
	}
	var errs []error
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("ce: missing credentials: %s", strings.Join(missing, ", ")))
	}
	if len(invalid) > 0 {
		errs = append(errs, fmt.Errorf("ce: credentials contain a comma or control character: %s", strings.Join(invalid, ", ")))
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	return "User " + fields[0].value + ", Organization " + fields[1].value + ", Element " + fields[2].value, nil
}

func newRedactor(creds Credentials) *strings.Replacer {
	var pairs []string
	for _, s := range []string{creds.UserSecret, creds.OrganizationSecret, creds.ElementToken} {
		if s = strings.TrimSpace(s); s != "" {
			pairs = append(pairs, s, "REDACTED")
		}
	}
	return strings.NewReplacer(pairs...)
}

// redact removes every credential from s.
func (c *Client) redact(s string) string { return c.secrets.redactor.Replace(s) }

// defaultHTTPClient has no overall Timeout (it would cut long downloads and
// uploads); the transport bounds connection setup and the wait for headers.
func defaultHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   30 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   10,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute,
		ExpectContinueTimeout: time.Second,
	}}
}

// bulkPath returns "hubs/<hub>/bulk/<elem>/<elem>...", each element escaped.
func (c *Client) bulkPath(elems ...string) string {
	var b strings.Builder
	b.WriteString("hubs/")
	b.WriteString(url.PathEscape(c.hub))
	b.WriteString("/bulk")
	for _, e := range elems {
		b.WriteString("/")
		b.WriteString(url.PathEscape(e))
	}
	return b.String()
}

// checkSegment rejects a job ID or object name that cannot be one path segment.
func checkSegment(kind, s string) error {
	if s == "" || s == "." || s == ".." {
		return fmt.Errorf("ce: invalid %s %q", kind, s)
	}
	return nil
}

// newRequest builds a request for path, which is relative to the base URL
// and may carry a query string. It sets Authorization, Accept, User-Agent
// and, when there is a body, Content-Type: application/json (callers may
// override Accept and Content-Type).
func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	// Errors here never echo path: its query may carry a paging token.
	if strings.HasPrefix(path, "/") {
		return nil, errors.New("ce: request path must be relative to the base URL")
	}
	u, err := c.baseURL.Parse(path)
	if err != nil {
		return nil, fmt.Errorf("ce: invalid request path: %v", unwrapURLError(err))
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("ce: build %s request: %v", method, err)
	}
	req.Header.Set("Authorization", c.secrets.authorization)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// sanitizePath returns the request path relative to the base URL, without
// the query string, for errors and logs.
func (c *Client) sanitizePath(u *url.URL) string {
	p := u.EscapedPath()
	if base := c.baseURL.EscapedPath(); strings.HasPrefix(p, base) {
		return p[len(base):]
	}
	return p
}

// do sends req through bareDo and, on success, decodes the JSON body into v
// (or copies it to v when v is an io.Writer; v may be nil). It always drains
// a bounded amount of the body and closes it.
func (c *Client) do(req *http.Request, v any) (*http.Response, error) {
	resp, err := c.bareDo(req)
	if err != nil {
		return nil, err
	}
	defer drainAndClose(resp.Body)
	switch v := v.(type) {
	case nil:
	case io.Writer:
		_, err = io.Copy(v, resp.Body)
	default:
		err = json.NewDecoder(io.LimitReader(resp.Body, maxJSONResponse)).Decode(v)
		if errors.Is(err, io.EOF) {
			err = errors.New("empty response body")
		}
	}
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			err = ctxErr
		}
		return resp, fmt.Errorf("ce: %s %s: read response: %w", req.Method, c.sanitizePath(req.URL), err)
	}
	return resp, nil
}

// bareDo sends req, retrying as the retry policy allows (see retry.go), and
// returns the first 2xx response with its body unread; the caller closes it.
// A non-2xx response becomes an *APIError. Transport errors are returned
// without the request URL; when the context has ended, its error is returned.
func (c *Client) bareDo(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	method, path := req.Method, c.sanitizePath(req.URL)
	mode := retryModeFor(req)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			r, err := rewind(req)
			if err != nil {
				return nil, fmt.Errorf("ce: %s %s: rewind body for retry: %v", method, path, err)
			}
			req = r
		}
		resp, err := c.httpClient.Do(req)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, fmt.Errorf("ce: %s %s: %w", method, path, ctxErr)
			}
			err = unwrapURLError(err)
			if attempt < c.retry.max && mode.retryTransport(err) {
				if serr := c.pause(ctx, method, path, attempt, 0, err, c.backoff(attempt)); serr != nil {
					return nil, serr
				}
				continue
			}
			return nil, fmt.Errorf("ce: %s %s: %w", method, path, err)
		}
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return resp, nil
		}
		apiErr := c.checkResponse(resp, req, method, path)
		if attempt < c.retry.max && mode.retryResponse(apiErr) {
			if serr := c.pause(ctx, method, path, attempt, apiErr.StatusCode, nil, c.retryWait(attempt, apiErr.retryAfter)); serr != nil {
				return nil, serr
			}
			continue
		}
		return nil, apiErr
	}
}

// pause logs a retry and waits before it. Its error, when the context
// ends first, is ready to return.
func (c *Client) pause(ctx context.Context, method, path string, attempt, status int, err error, wait time.Duration) error {
	c.logRetry(ctx, method, path, attempt, status, err, wait)
	if serr := c.sleep(ctx, wait); serr != nil {
		return fmt.Errorf("ce: %s %s: %w", method, path, serr)
	}
	return nil
}

// checkResponse turns a non-2xx response into an *APIError, keeping at most
// 64 KiB of its body (maxErrorBody), then draining and closing it. Everything CE might
// echo back is redacted: the credentials, the callback URL of the request
// and its paging token.
func (c *Client) checkResponse(resp *http.Response, req *http.Request, method, path string) *APIError {
	// Read a little more than kept, so that a secret straddling the cut is
	// still redacted whole before the body is cut.
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody+redactSlack))
	drainAndClose(resp.Body)
	redact := c.requestRedactor(req)
	e := &APIError{
		StatusCode: resp.StatusCode,
		Method:     method,
		Path:       path,
		retryAfter: resp.Header.Get("Retry-After"),
	}
	var payload struct {
		Message         json.RawMessage `json:"message"`
		RequestID       json.RawMessage `json:"requestId"`
		ProviderMessage json.RawMessage `json:"providerMessage"`
		Error           json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(raw, &payload); err == nil {
		e.Message = redact(rawText(payload.Message))
		if e.Message == "" {
			e.Message = redact(rawText(payload.Error))
		}
		e.RequestID = redact(rawText(payload.RequestID))
		e.ProviderMessage = redact(rawText(payload.ProviderMessage))
	} else {
		e.Message = firstLine(redact(string(raw)), 200)
	}
	if e.RequestID == "" {
		e.RequestID = redact(resp.Header.Get("X-Request-Id"))
	}
	if len(raw) > 0 {
		body := []byte(redact(string(raw)))
		e.Body = body[:min(len(body), maxErrorBody)]
	}
	return e
}

// redactSlack is how many bytes past the kept body are read for redaction.
const redactSlack = 4 << 10

// requestRedactor returns a function removing the credentials and the
// request's own secrets (callback URL and its query values, paging token)
// from text.
func (c *Client) requestRedactor(req *http.Request) func(string) string {
	var extra []string
	if cb := req.Header.Get(callbackHeader); cb != "" {
		extra = append(extra, cb)
		if u, err := url.Parse(cb); err == nil {
			for _, vs := range u.Query() {
				extra = append(extra, vs...)
			}
		}
	}
	extra = append(extra, req.URL.Query()["nextPage"]...)
	return func(s string) string {
		s = c.redact(s)
		for _, x := range extra {
			if len(x) >= 4 {
				s = strings.ReplaceAll(s, x, "REDACTED")
			}
		}
		return s
	}
}

// parseBaseURL checks the base URL.
func parseBaseURL(raw string) (*url.URL, error) {
	u, err := httpapi.ParseBaseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("ce: %v", err)
	}
	return u, nil
}

// Shorthands for the HTTP plumbing shared with pkg/mixpanel.
var (
	rawText         = httpapi.RawText
	firstLine       = httpapi.FirstLine
	unwrapURLError  = httpapi.UnwrapURLError
	drainAndClose   = httpapi.DrainAndClose
	sleepContext    = httpapi.Sleep
	parseRetryAfter = httpapi.ParseRetryAfter
	rewind          = httpapi.Rewind
)
