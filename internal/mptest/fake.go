package mptest

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The default credentials of a Fake whose Options leave them empty.
const (
	DefaultUsername  = "mptest-sa.123456.mp-service-account"
	DefaultSecret    = "mptest-service-account-secret"
	DefaultProjectID = "3141592"
	DefaultToken     = "mptest0project0token0000000000ab"
)

// DefaultPageSize is the page size of the engage query, as Mixpanel's.
const DefaultPageSize = 1000

// The documented limits the emulator enforces (see the package doc).
const (
	MaxImportEvents    = 2000    // events in one /import request
	MaxImportBytes     = 2 << 20 // uncompressed /import body (the OpenAPI 413 example)
	MaxEventBytes      = 1 << 20 // one event or profile update
	MaxEngageUpdates   = 2000    // updates in one /engage request
	MaxExportLimit     = 100000  // the export's limit parameter
	DefaultHourlyLimit = 60      // export and query calls per rolling hour
	ExportPerSecond    = 3       // export calls per second
)

// Route names one of the four APIs, for faults and request records.
type Route string

// The routes the emulator serves, each under the one base URL.
const (
	RouteExport      Route = "export"       // GET  /api/2.0/export
	RouteEngageQuery Route = "engage-query" // POST /api/query/engage
	RouteImport      Route = "import"       // POST /import
	RouteEngage      Route = "engage"       // POST /engage
)

// routes maps a request path to its route.
var routes = map[string]Route{
	"/api/2.0/export":   RouteExport,
	"/api/2.0/export/":  RouteExport,
	"/api/query/engage": RouteEngageQuery,
	"/api/2.0/engage":   RouteEngageQuery, // the older path of the same query
	"/import":           RouteImport,
	"/engage":           RouteEngage,
}

// Options configure a Fake. The zero value is a usable UTC project with
// the default credentials.
type Options struct {
	// Username and Secret are the service account's Basic credentials
	// (defaults DefaultUsername, DefaultSecret).
	Username, Secret string
	// ProjectID is the project's id, required as project_id with a service
	// account (default DefaultProjectID).
	ProjectID string
	// Token is the project token, required as $token in /engage updates
	// and accepted as the Basic username of /import (default DefaultToken).
	Token string
	// Timezone is the project's timezone (default UTC). It matters only
	// with LegacyTime.
	Timezone *time.Location
	// LegacyTime makes the project one created before 2023: the export's
	// from_date and to_date are days of Timezone, and exported
	// properties.time values are wall-clock seconds of Timezone (UTC
	// seconds plus the zone's offset at that instant), not UTC.
	LegacyTime bool
	// Now is the emulator's clock (default time.Now): rate windows, session
	// expiry, the /import time window and processing times read it.
	Now func() time.Time
	// PageSize is the engage query's page size (default DefaultPageSize).
	PageSize int
	// SessionTTL is how long an engage query session_id stays usable after
	// its last use (default 10 minutes).
	SessionTTL time.Duration
	// ExportPerHour and QueryPerHour are the rolling-hour limits of the
	// export and of the engage query (default DefaultHourlyLimit each); a
	// negative value removes the limit. ExportPerSecond (3) also applies to
	// the export unless ExportPerHour is negative.
	ExportPerHour, QueryPerHour int
	// ExportConcurrency and QueryConcurrency are how many exports and
	// engage queries may run at once (defaults 100 and 5, as documented);
	// one more is answered 429 and not counted towards the hourly limit.
	ExportConcurrency, QueryConcurrency int
	// IngestBytesPerMinute is the project's ingestion limit: uncompressed
	// bytes of /import and /engage bodies accepted per rolling minute
	// (default DefaultIngestBytesPerMinute, Mixpanel's 2 GB); a body that
	// would pass it is answered 429 and not counted. Negative: no limit.
	IngestBytesPerMinute int64
	// MaxImportBytes is the largest uncompressed /import body (default
	// MaxImportBytes); a bigger one is answered 413.
	MaxImportBytes int64
	// InsertIDKey is the key of the insert id in the failed_records of a
	// strict 400: "$insert_id" (the default, as the /import guide shows) or
	// "insert_id" (as the OpenAPI file shows). Mixpanel's documents show
	// both, so clients must read both.
	InsertIDKey string
	// DiscardImports validates and counts imported events without keeping
	// them, for benchmarks. Imported then returns nil and the export does
	// not serve them.
	DiscardImports bool
	// Logger, when set, logs one line per request (method, route, status).
	// It never logs headers, query strings or bodies.
	Logger *slog.Logger
}

// Fake is an in-memory, stateful emulator of Mixpanel's raw export, engage
// query, /import and /engage APIs. It is an http.Handler and is safe for
// concurrent use. Create one with NewFake or NewServer.
type Fake struct {
	opts Options

	mu        sync.Mutex
	gen       Generator
	store     eventStore
	profiles  profileStore
	sessions  map[string]*session
	lastID    int64
	updates   []json.RawMessage
	requests  []Request
	faults    []*fault
	cuts      []int64
	windows   map[Route][]time.Time // start times of counted calls, oldest first
	ingested  []ingestMark          // bodies accepted by /import and /engage in the last minute, oldest first
	inflight  map[Route]int
	imported  int64 // events accepted by /import, duplicates included
	dupes     int64 // events that replaced an identical stored event
	discarded int64
}

// NewFake returns an emulator with no events, no profiles and the given
// options.
func NewFake(opts Options) *Fake {
	if opts.Username == "" {
		opts.Username = DefaultUsername
	}
	if opts.Secret == "" {
		opts.Secret = DefaultSecret
	}
	if opts.ProjectID == "" {
		opts.ProjectID = DefaultProjectID
	}
	if opts.Token == "" {
		opts.Token = DefaultToken
	}
	if opts.Timezone == nil {
		opts.Timezone = time.UTC
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PageSize <= 0 {
		opts.PageSize = DefaultPageSize
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 10 * time.Minute
	}
	if opts.ExportPerHour == 0 {
		opts.ExportPerHour = DefaultHourlyLimit
	}
	if opts.QueryPerHour == 0 {
		opts.QueryPerHour = DefaultHourlyLimit
	}
	if opts.ExportConcurrency <= 0 {
		opts.ExportConcurrency = 100
	}
	if opts.QueryConcurrency <= 0 {
		opts.QueryConcurrency = 5
	}
	if opts.MaxImportBytes <= 0 {
		opts.MaxImportBytes = MaxImportBytes
	}
	return &Fake{
		opts:     opts,
		store:    newEventStore(),
		profiles: newProfileStore(),
		sessions: map[string]*session{},
		windows:  map[Route][]time.Time{},
		inflight: map[Route]int{},
	}
}

// Options returns the emulator's options with their defaults filled in,
// credentials included.
func (f *Fake) Options() Options { return f.opts }

func (f *Fake) now() time.Time { return f.opts.Now() }

// projectZone is the zone that export dates and exported times are read in.
func (f *Fake) projectZone() *time.Location {
	if f.opts.LegacyTime {
		return f.opts.Timezone
	}
	return time.UTC
}

// Request is one request received, as recorded for assertions. It holds no
// credentials: neither the Authorization header nor any body.
type Request struct {
	Route           Route // "" for a path the emulator does not serve
	Method, Path    string
	Query           url.Values // the URL query (project_id, from_date, strict, ...)
	ContentType     string
	ContentEncoding string
	AcceptEncoding  string
	Status          int // the status answered; 0 when the client went away first
	At              time.Time
}

// Requests returns the requests received so far, in arrival order; with
// routes given, only those of these routes.
func (f *Fake) Requests(routes ...Route) []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Request
	for _, r := range f.requests {
		if len(routes) == 0 || slices.Contains(routes, r.Route) {
			out = append(out, r)
		}
	}
	return out
}

// Count returns how many requests of route were received, failed ones
// included.
func (f *Fake) Count(route Route) int { return len(f.Requests(route)) }

// Fault is a failure injected into the answers of one route.
type Fault struct {
	// Status is the status answered (429, 500, 502, 503, ...), with the
	// body Mixpanel gives it on that route. 0 serves the request normally
	// after Delay.
	Status int
	// RetryAfter, when set, is sent as the Retry-After header.
	RetryAfter string
	// Times is how many requests the fault hits (default 1 when Until is
	// zero; unlimited until Until otherwise).
	Times int
	// Until, when set, ends the fault at that instant of Options.Now.
	Until time.Time
	// Delay holds the answer that long, or until the client gives up: a
	// long Delay is a timeout.
	Delay time.Duration
}

type fault struct {
	route Route
	Fault
	used int
}

// Fail injects ft into the next requests of route. Faults of one route are
// used in the order they were added; an exhausted or expired one is
// dropped. The request is recorded but not served (unless Status is 0),
// and it does not count towards the rate limits.
func (f *Fake) Fail(route Route, ft Fault) {
	if ft.Times <= 0 && ft.Until.IsZero() {
		ft.Times = 1
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, &fault{route: route, Fault: ft})
}

// FailNext makes the next request of route fail with status, with a
// Retry-After header when retryAfter is not empty.
func (f *Fake) FailNext(route Route, status int, retryAfter string) {
	f.Fail(route, Fault{Status: status, RetryAfter: retryAfter, Times: 1})
}

// CutNextExport makes the next export send its headers and afterBytes bytes
// of its (uncompressed) body, then abort the connection.
func (f *Fake) CutNextExport(afterBytes int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cuts = append(f.cuts, max(0, afterBytes))
}

// takeFault returns the fault for a request of route, if any.
func (f *Fake) takeFault(route Route) *Fault {
	now := f.now()
	for i := 0; i < len(f.faults); i++ {
		ft := f.faults[i]
		if !ft.Until.IsZero() && !now.Before(ft.Until) {
			f.faults = slices.Delete(f.faults, i, i+1)
			i--
			continue
		}
		if ft.route != route {
			continue
		}
		ft.used++
		if ft.Times > 0 && ft.used >= ft.Times {
			f.faults = slices.Delete(f.faults, i, i+1)
		}
		out := ft.Fault
		return &out
	}
	return nil
}

// Reset forgets imported events, profiles, updates, sessions, request
// records, rate windows and pending faults. Options and the event
// generator stay.
func (f *Fake) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.store = newEventStore()
	f.profiles = newProfileStore()
	f.sessions = map[string]*session{}
	f.updates = nil
	f.requests = nil
	f.faults = nil
	f.cuts = nil
	f.windows = map[Route][]time.Time{}
	f.ingested = nil
	f.imported, f.dupes, f.discarded = 0, 0, 0
}

// ServeHTTP implements http.Handler.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route := routes[r.URL.Path]
	rec := &recorder{ResponseWriter: w}
	w = rec
	f.mu.Lock()
	f.requests = append(f.requests, Request{
		Route: route, Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(),
		ContentType: r.Header.Get("Content-Type"), ContentEncoding: r.Header.Get("Content-Encoding"),
		AcceptEncoding: r.Header.Get("Accept-Encoding"), At: f.now(),
	})
	idx := len(f.requests) - 1
	var ft *Fault
	if route != "" {
		ft = f.takeFault(route)
	}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		if idx < len(f.requests) {
			f.requests[idx].Status = rec.code
		}
		f.mu.Unlock()
		if f.opts.Logger != nil {
			f.opts.Logger.LogAttrs(r.Context(), slog.LevelInfo, "mptest request",
				slog.String("method", r.Method), slog.String("route", string(route)), slog.Int("status", rec.code))
		}
	}()

	if route == "" {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "Invalid API endpoint", "request": r.URL.Path})
		return
	}
	if ft != nil {
		if ft.Delay > 0 {
			// Read the (small) body first: only then does the server
			// notice a client that gives up, which ends the wait.
			head, _ := io.ReadAll(io.LimitReader(r.Body, 16<<20))
			r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(head), r.Body))
			t := time.NewTimer(ft.Delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if ft.Status != 0 {
			if ft.RetryAfter != "" {
				w.Header().Set("Retry-After", ft.RetryAfter)
			}
			f.writeStatus(w, r, route, ft.Status, faultMessage(ft.Status))
			return
		}
	}
	want := http.MethodPost
	if route == RouteExport {
		want = http.MethodGet
	}
	if r.Method != want && !(route == RouteEngageQuery && r.Method == http.MethodGet) {
		w.Header().Set("Allow", want)
		f.writeStatus(w, r, route, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed")
		return
	}
	switch route {
	case RouteExport:
		f.handleExport(w, r)
	case RouteEngageQuery:
		f.handleEngageQuery(w, r)
	case RouteImport:
		f.handleImport(w, r)
	case RouteEngage:
		f.handleEngage(w, r)
	}
}

func faultMessage(status int) string {
	if status == http.StatusTooManyRequests {
		return rateLimitMessage
	}
	return strings.ToLower(http.StatusText(status)) + " (injected by mptest)"
}

// rateLimitMessage is the documented 429 error text.
const rateLimitMessage = "Project exceeded rate limits. Please retry the request with exponential backoff."

// writeStatus answers an error in the shape of route: the query APIs
// (export, engage query) answer {"request": path?query, "error": msg}, the
// ingestion APIs {"code", "error", "status"}; a 429 is always the
// documented ingestion shape.
func (f *Fake) writeStatus(w http.ResponseWriter, r *http.Request, route Route, code int, msg string) {
	if route == RouteExport || route == RouteEngageQuery {
		if code != http.StatusTooManyRequests {
			writeJSON(w, code, queryError{Request: r.URL.RequestURI(), Error: msg})
			return
		}
	}
	writeJSON(w, code, ingestError{Code: code, Error: msg, Status: http.StatusText(code)})
}

// queryError is the error body of the query and export APIs.
type queryError struct {
	Request string `json:"request"`
	Error   string `json:"error"`
}

// ingestError is the error body of the ingestion APIs (and of every 429).
type ingestError struct {
	Code   int    `json:"code"`
	Error  string `json:"error"`
	Status string `json:"status"`
}

// authError is why a request is refused before it is served.
type authError struct {
	code int
	msg  string
}

// checkServiceAccount checks the Basic credentials and project_id of a
// service-account call (export, engage query, /import). allowToken lets
// /import authenticate with the project token as username and an empty
// password, without project_id.
func (f *Fake) checkServiceAccount(r *http.Request, project string, allowToken bool) *authError {
	user, pass, ok := basicAuth(r.Header.Get("Authorization"))
	if !ok {
		return &authError{http.StatusUnauthorized, "Invalid credentials"}
	}
	if allowToken && pass == "" && project == "" {
		if equal(user, f.opts.Token) {
			return nil
		}
		return &authError{http.StatusUnauthorized, "Invalid credentials"}
	}
	if !equal(user, f.opts.Username) || !equal(pass, f.opts.Secret) {
		return &authError{http.StatusUnauthorized, "Invalid credentials"}
	}
	if project == "" {
		return &authError{http.StatusBadRequest, "project_id is required when authenticating with a service account"}
	}
	if _, err := strconv.ParseUint(project, 10, 63); err != nil {
		return &authError{http.StatusBadRequest, fmt.Sprintf("invalid project_id %q: must be an integer", project)}
	}
	if project != f.opts.ProjectID {
		return &authError{http.StatusForbidden, "service account does not have access to project " + project}
	}
	return nil
}

// basicAuth reads a Basic Authorization header. Mixpanel accepts the
// colon-joined credentials base64-encoded or in plain text.
func basicAuth(h string) (user, pass string, ok bool) {
	scheme, value, found := strings.Cut(strings.TrimSpace(h), " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	value = strings.TrimSpace(value)
	if raw, err := base64.StdEncoding.DecodeString(value); err == nil {
		if u, p, found := strings.Cut(string(raw), ":"); found {
			return u, p, true
		}
	}
	return strings.Cut(value, ":")
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// admit starts a call of route (export or engage query) if its concurrency
// and rate limits allow it; the caller calls done when the call ends.
func (f *Fake) admit(route Route) (done func(), ok bool) {
	limit := f.opts.QueryConcurrency
	if route == RouteExport {
		limit = f.opts.ExportConcurrency
	}
	f.mu.Lock()
	if f.inflight[route] >= limit {
		f.mu.Unlock()
		return nil, false
	}
	f.inflight[route]++
	f.mu.Unlock()
	done = func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.inflight[route]--
	}
	if !f.allow(route) {
		done()
		return nil, false
	}
	return done, true
}

// DefaultIngestBytesPerMinute is Mixpanel's documented ingestion limit:
// 2 GB of uncompressed JSON per rolling minute, per project.
const DefaultIngestBytesPerMinute = 2_000_000_000

// ingestMark is one accepted ingestion body.
type ingestMark struct {
	at    time.Time
	bytes int64
}

// allowIngest counts n uncompressed body bytes against the rolling-minute
// ingestion limit and reports whether the body may be served.
func (f *Fake) allowIngest(n int64) bool {
	limit := f.opts.IngestBytesPerMinute
	if limit < 0 {
		return true
	}
	if limit == 0 {
		limit = DefaultIngestBytesPerMinute
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	i := 0
	for i < len(f.ingested) && !f.ingested[i].at.After(now.Add(-time.Minute)) {
		i++
	}
	f.ingested = f.ingested[i:]
	var sum int64
	for _, m := range f.ingested {
		sum += m.bytes
	}
	if sum+n > limit {
		return false
	}
	f.ingested = append(f.ingested, ingestMark{at: now, bytes: n})
	return true
}

// allow counts a call of route against its rolling-hour limit (and the
// export's per-second limit) and reports whether it may be served.
func (f *Fake) allow(route Route) bool {
	limit := f.opts.QueryPerHour
	if route == RouteExport {
		limit = f.opts.ExportPerHour
	}
	if limit < 0 {
		return true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	w := f.windows[route]
	i := 0
	for i < len(w) && !w[i].After(now.Add(-time.Hour)) {
		i++
	}
	w = w[i:]
	if len(w) >= limit {
		f.windows[route] = w
		return false
	}
	if route == RouteExport {
		n := 0
		for _, t := range w {
			if t.After(now.Add(-time.Second)) {
				n++
			}
		}
		if n >= ExportPerSecond {
			f.windows[route] = w
			return false
		}
	}
	f.windows[route] = append(w, now)
	return true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":"mptest: cannot encode response"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// recorder remembers the status of a response.
type recorder struct {
	http.ResponseWriter
	code int
}

func (s *recorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *recorder) Write(p []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

func (s *recorder) Flush() {
	if fl, ok := s.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
}

func (s *recorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
