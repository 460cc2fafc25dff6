package cetest

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The default credentials of a Fake whose Options leave them empty.
const (
	DefaultUserSecret   = "cetest-user-secret"
	DefaultOrgSecret    = "cetest-organization-secret"
	DefaultElementToken = "cetest-element-token"
)

// DefaultInstanceID is the element instance id a Fake reports by default.
const DefaultInstanceID int64 = 425904

// Job statuses, as CE spells them.
const (
	StatusCreated   = "CREATED"
	StatusRunning   = "RUNNING"
	StatusCompleted = "COMPLETED"
	StatusError     = "ERROR"
	StatusAborted   = "ABORTED"
	StatusCancelled = "CANCELLED"
)

// Job directions.
const (
	DirectionDownload = "DOWNLOAD"
	DirectionUpload   = "UPLOAD"
)

// Credentials are the three secrets of CE's hub Authorization header.
type Credentials struct {
	UserSecret, OrganizationSecret, ElementToken string
}

// Header returns the Authorization header value CE expects for hub calls:
// "User <u>, Organization <o>, Element <e>".
func (c Credentials) Header() string {
	return "User " + c.UserSecret + ", Organization " + c.OrganizationSecret + ", Element " + c.ElementToken
}

// Options configure a Fake. The zero value is a usable emulator.
type Options struct {
	// Credentials every request must carry. Empty fields take
	// DefaultUserSecret, DefaultOrgSecret and DefaultElementToken.
	Credentials Credentials
	// InstanceID is reported in job bodies (default DefaultInstanceID).
	InstanceID int64
	// Now is the emulator's clock (default time.Now). Tests pass a fake
	// clock, so job lifecycles need no sleeps.
	Now func() time.Time
	// CompletionDelay is how long after creation a job becomes terminal.
	// Until then, status reads return RUNNING (CREATED before the first
	// read). Zero means the job is terminal on the first status read (or
	// any other observation) after its creation.
	CompletionDelay time.Duration
	// DownloadFormat is the framing of application/json downloads: "array"
	// (a JSON array, the default) or "jsonl" (one JSON object per line,
	// still labelled application/json, as CE sometimes does).
	DownloadFormat string
	// SignatureKey, when set, signs callbacks: Elements-Webhook-Signature:
	// sha256=<base64 HMAC-SHA256(SignatureKey, body)>.
	SignatureKey string
	// AutoCallbacks makes NewServer call Start, so jobs complete and
	// callbacks go out on their own, as with the real CE.
	AutoCallbacks bool
	// TickInterval is the period of the loop started by Start (default 100ms).
	TickInterval time.Duration
	// CallbackAttempts is how many times a callback is sent before the
	// emulator gives up on it (default 3). A failed attempt (transport error
	// or non-2xx answer) is retried by the next delivery run.
	CallbackAttempts int
	// CallbackClient sends callbacks (default: an http.Client with a 10s
	// timeout). Tests under synctest pass one with an in-memory transport.
	CallbackClient *http.Client
	// DiscardUploads counts and validates uploaded records but does not
	// keep them, for benchmarks of large uploads. Uploaded then returns nil.
	DiscardUploads bool
	// Latency delays every request by that much.
	Latency time.Duration
	// IgnoreRanges makes downloads ignore a Range header and answer 200
	// with the whole file, as a server without range support does. By
	// default "Range: bytes=N-" is honoured: 206 with Content-Range
	// "bytes N-<last>/<size>" (416 when N is at or past the end).
	IgnoreRanges bool
	// DownloadRate, when positive, slows download bodies to about that
	// many bytes per second, as if CE produced the file while serving it:
	// only the bytes of a job's file that no earlier request reached are
	// slowed; bytes served before (a re-download, or the part of a range
	// already seen) come at full speed.
	DownloadRate int64
	// Logger, when set, logs one line per request (method, path, status).
	// It never logs headers or bodies.
	Logger *slog.Logger
	// WholeDays makes from and to select whole days of activities, as the
	// element's mapping onto Mixpanel's from_date and to_date (both
	// inclusive) does: the days from the UTC date of from to the UTC date of
	// the last instant before to, each day on the project's clock
	// (ProjectTimezone, else UTC). A window that is not aligned to UTC days
	// then returns records outside it. Without it, from and to select
	// [from, to) exactly.
	WholeDays bool
	// ProjectTimezone, when set, makes the emulated project one created
	// before 2023 in that timezone: its days are days of that zone (it
	// implies WholeDays) and the activities it serves carry in
	// properties.time the wall-clock seconds of the event in that zone
	// (see WallClock), not UTC seconds. Seeded records hold the real
	// instant.
	ProjectTimezone *time.Location
}

// Fake is an in-memory, stateful emulator of CE's bulk API for the mixpanel
// element. It is an http.Handler and is safe for concurrent use. Create one
// with NewFake or NewServer.
type Fake struct {
	opts Options

	mu          sync.Mutex
	lastID      int64
	lastRequest atomic.Int64
	data        map[string]Generator // known objects; nil generator = no records
	jobs        map[string]*bulkJob
	order       []*bulkJob
	uploaded    map[string][]json.RawMessage
	requests    []requestRecord
	faults      []fault
	throttles   []*throttle
	slow        []time.Duration
	cuts        []int64
	outages     map[*fault]bool // Outage: until ended
	cutAll      *int64          // CutDownloads: until ended
	nextOutcome *outcome
	nextFailed  int64 // SetNextJobFailedRecords
	failHook    func(object string, record map[string]any) string
	pending     []*callback
	deliveries  []Delivery

	loopMu     sync.Mutex
	loopCancel context.CancelFunc
	loopDone   chan struct{}
}

// NewFake returns an emulator with no jobs, an empty activities and users
// object, and the given options. It panics on an invalid DownloadFormat.
func NewFake(opts Options) *Fake {
	if opts.Credentials.UserSecret == "" {
		opts.Credentials.UserSecret = DefaultUserSecret
	}
	if opts.Credentials.OrganizationSecret == "" {
		opts.Credentials.OrganizationSecret = DefaultOrgSecret
	}
	if opts.Credentials.ElementToken == "" {
		opts.Credentials.ElementToken = DefaultElementToken
	}
	if opts.InstanceID == 0 {
		opts.InstanceID = DefaultInstanceID
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ProjectTimezone != nil {
		opts.WholeDays = true
	}
	switch opts.DownloadFormat {
	case "":
		opts.DownloadFormat = "array"
	case "array", "jsonl":
	default:
		panic(fmt.Sprintf("cetest: DownloadFormat %q is neither \"array\" nor \"jsonl\"", opts.DownloadFormat))
	}
	if opts.TickInterval <= 0 {
		opts.TickInterval = 100 * time.Millisecond
	}
	if opts.CallbackAttempts <= 0 {
		opts.CallbackAttempts = 3
	}
	if opts.CallbackClient == nil {
		opts.CallbackClient = &http.Client{Timeout: 10 * time.Second}
	}
	f := &Fake{
		opts:     opts,
		lastID:   1000,
		data:     map[string]Generator{"activities": {}, "users": {}},
		jobs:     map[string]*bulkJob{},
		uploaded: map[string][]json.RawMessage{},
	}
	return f
}

// Credentials returns the credentials the emulator accepts.
func (f *Fake) Credentials() Credentials { return f.opts.Credentials }

func (f *Fake) now() time.Time { return f.opts.Now() }

// Seed replaces the records of object (registering it if it is neither
// activities nor users). records is one of []map[string]any, []any,
// []json.RawMessage, or a json.RawMessage, []byte or string holding a JSON
// array or JSON lines. Seed panics on anything else or on invalid JSON: it
// is a test-setup helper. Jobs created earlier keep the records they saw.
func (f *Fake) Seed(object string, records any) {
	raws, err := seedRecords(records)
	if err != nil {
		panic(fmt.Sprintf("cetest: Seed(%q): %v", object, err))
	}
	f.SeedGenerated(object, recordsGenerator(toRecords(object, raws)))
}

// SeedGenerated makes g the source of object's records (registering the
// object if needed). The generator is run for every download, so a download
// can be far larger than memory.
func (f *Fake) SeedGenerated(object string, g Generator) {
	if g.Records == nil {
		g = recordsGenerator(nil)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.data[object] = g
}

// SetNextJobOutcome makes the next job created (download or upload) end with
// status, ERROR or ABORTED, and the given error message instead of
// COMPLETED. It panics on any other status.
func (f *Fake) SetNextJobOutcome(status, message string) {
	status = strings.ToUpper(status)
	if status != StatusError && status != StatusAborted {
		panic(fmt.Sprintf("cetest: SetNextJobOutcome(%q): status must be ERROR or ABORTED", status))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextOutcome = &outcome{status: status, message: message}
}

// SetNextJobFailedRecords makes the next download job created (bulk/query
// or bulk/download; uploads do not consume it) a partial success, as CE
// reports it (reference §2.3): the job ends COMPLETED with
// recordsFailedCount n and recordsCount the records written plus n, its
// file holds the records written, and bulk/{id}/errors serves n errors
// (indexes after those of the records written). A SetNextJobOutcome for the
// same job wins. n == 0 withdraws a pending call; a negative n panics.
func (f *Fake) SetNextJobFailedRecords(n int64) {
	if n < 0 {
		panic(fmt.Sprintf("cetest: SetNextJobFailedRecords(%d): n must not be negative", n))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextFailed = n
}

// FailRecordsMatching installs a hook called for every uploaded record that
// passed validation; a non-empty result fails the record with that message,
// as if Mixpanel had refused it. nil removes the hook.
func (f *Fake) FailRecordsMatching(fn func(object string, record map[string]any) string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failHook = fn
}

// FailNext makes the next request whose method is method ("" for any) and
// whose path (after /elements/api-v2 and the optional /hubs/general) ends
// with pathSuffix fail with status and a CE error body, carrying a
// Retry-After header when retryAfter is not empty. Each call queues one
// failure; the request is counted but not otherwise served.
func (f *Fake) FailNext(method, pathSuffix string, status int, retryAfter string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, fault{method: strings.ToUpper(method), suffix: pathSuffix, status: status, retryAfter: retryAfter})
}

// Outage makes every request matching method ("" for any) and pathSuffix
// (as FailNext) fail with status and a CE error body until end is called:
// an outage of CE, for as long as the test wants. Requests are counted.
func (f *Fake) Outage(method, pathSuffix string, status int) (end func()) {
	ft := &fault{method: strings.ToUpper(method), suffix: pathSuffix, status: status}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.outages == nil {
		f.outages = map[*fault]bool{}
	}
	f.outages[ft] = true
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.outages, ft)
	}
}

// CutDownloads cuts every download after afterBytes bytes (as
// CutNextDownload) until end is called: a network that drops long
// transfers, which no client retry hides.
func (f *Fake) CutDownloads(afterBytes int64) (end func()) {
	n := max(0, afterBytes)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cutAll = &n
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.cutAll = nil
	}
}

// SlowNext delays the next request, whatever it is, by d (on top of
// Options.Latency). The delay ends early when the request's context ends.
func (f *Fake) SlowNext(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.slow = append(f.slow, d)
}

// CutNextDownload makes the next download (GET bulk/{id}/{object}) send its
// headers and the first afterBytes bytes of its body, then abort the
// connection, so the client sees io.ErrUnexpectedEOF. A body shorter than
// afterBytes is sent whole and then cut before its end is signalled.
func (f *Fake) CutNextDownload(afterBytes int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cuts = append(f.cuts, max(0, afterBytes))
}

// Uploaded returns the records accepted by completed upload jobs of object,
// in upload order (nil with Options.DiscardUploads). Records of jobs that
// ended ERROR, ABORTED or CANCELLED are not included.
func (f *Fake) Uploaded(object string) []json.RawMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advanceLocked()
	return slices.Clone(f.uploaded[object])
}

// Requests counts the requests received whose path (after /elements/api-v2
// and the optional /hubs/general, e.g. "/bulk/1001/status") ends with
// pathSuffix; "" counts every request. A method and a space may prefix the
// suffix: Requests("POST /bulk/query"). Every request counts, including
// those refused or failed on purpose.
func (f *Fake) Requests(pathSuffix string) int {
	method := ""
	if m, rest, ok := strings.Cut(pathSuffix, " "); ok {
		method, pathSuffix = strings.ToUpper(m), rest
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.requests {
		if (method == "" || r.method == method) && strings.HasSuffix(r.path, pathSuffix) {
			n++
		}
	}
	return n
}

// Reset forgets jobs, uploaded records, request counts, callbacks (pending
// and delivered) and every pending fault, outcome and hook. Seeded data and
// options stay, and job ids keep increasing.
func (f *Fake) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs = map[string]*bulkJob{}
	f.order = nil
	f.uploaded = map[string][]json.RawMessage{}
	f.requests = nil
	f.faults = nil
	f.throttles = nil
	f.slow = nil
	f.cuts = nil
	f.outages = nil
	f.cutAll = nil
	f.nextOutcome = nil
	f.nextFailed = 0
	f.failHook = nil
	f.pending = nil
	f.deliveries = nil
}

type requestRecord struct{ method, path string }

type fault struct {
	method, suffix string
	status         int
	retryAfter     string
}

type outcome struct{ status, message string }

// ServeHTTP implements http.Handler.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.opts.Logger != nil {
		sw := &statusWriter{ResponseWriter: w}
		w = sw
		defer func() {
			f.opts.Logger.LogAttrs(r.Context(), slog.LevelInfo, "cetest request",
				slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.Int("status", sw.statusCode()), slog.Int64("bytes", sw.n))
		}()
	}
	route, routed := splitRoute(r.URL.Path)
	logged := route
	if !routed {
		logged = r.URL.Path
	}

	f.mu.Lock()
	f.requests = append(f.requests, requestRecord{method: r.Method, path: logged})
	delay := f.opts.Latency
	if len(f.slow) > 0 {
		delay += f.slow[0]
		f.slow = f.slow[1:]
	}
	var ft *fault
	if routed {
		for i, x := range f.faults {
			if (x.method == "" || x.method == r.Method) && strings.HasSuffix(route, x.suffix) {
				ft = &x
				f.faults = slices.Delete(f.faults, i, i+1)
				break
			}
		}
		for x := range f.outages {
			if ft == nil && (x.method == "" || x.method == r.Method) && strings.HasSuffix(route, x.suffix) {
				ft = x
			}
		}
		if ft == nil {
			if th := f.throttledLocked(r.Method, route); th != nil {
				ft = &fault{status: th.Status, retryAfter: th.RetryAfter}
			}
		}
	}
	f.mu.Unlock()

	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if !routed {
		f.writeError(w, http.StatusNotFound, "no such resource: %s", r.URL.Path)
		return
	}
	if ft != nil {
		if ft.retryAfter != "" {
			w.Header().Set("Retry-After", ft.retryAfter)
		}
		f.writeError(w, ft.status, "%s (injected by cetest)", http.StatusText(ft.status))
		return
	}
	if !f.authorized(r.Header.Get("Authorization")) {
		f.writeError(w, http.StatusUnauthorized, "Invalid Organization or User secret, or invalid Element token provided.")
		return
	}
	f.route(w, r, route)
}

// splitRoute returns the path after /elements/api-v2 with the optional
// /hubs/general removed, e.g. "/bulk/query".
func splitRoute(p string) (string, bool) {
	const base = "/elements/api-v2"
	i := strings.Index(p, base+"/")
	if i < 0 {
		return "", false
	}
	rest := p[i+len(base):]
	if strings.HasPrefix(rest, "/hubs/") {
		hub, tail, _ := strings.Cut(strings.TrimPrefix(rest, "/hubs/"), "/")
		if hub != "general" {
			return "", false
		}
		rest = "/" + tail
	}
	return rest, true
}

func (f *Fake) route(w http.ResponseWriter, r *http.Request, route string) {
	segs := strings.Split(strings.TrimPrefix(route, "/"), "/")
	if len(segs) < 2 || len(segs) > 3 || segs[0] != "bulk" || slices.Contains(segs, "") {
		f.writeError(w, http.StatusNotFound, "no such resource: %s", route)
		return
	}
	method := func(want string) bool {
		if r.Method == want {
			return true
		}
		w.Header().Set("Allow", want)
		f.writeError(w, http.StatusMethodNotAllowed, "Method %s is not allowed on %s", r.Method, route)
		return false
	}
	if len(segs) == 2 {
		switch segs[1] {
		case "query":
			if method(http.MethodPost) {
				f.handleQuery(w, r)
			}
		case "download":
			if method(http.MethodPost) {
				f.handleDownloadV3(w, r)
			}
		case "jobs":
			if method(http.MethodGet) {
				f.handleJobs(w, r)
			}
		default:
			if method(http.MethodPost) {
				f.handleUpload(w, r, segs[1])
			}
		}
		return
	}
	id, leaf := segs[1], segs[2]
	switch leaf {
	case "status":
		if method(http.MethodGet) {
			f.handleStatus(w, id)
		}
	case "errors":
		if method(http.MethodGet) {
			f.handleErrors(w, r, id)
		}
	case "cancel":
		if method(http.MethodPut) {
			f.handleCancel(w, id)
		}
	default:
		if method(http.MethodGet) {
			f.handleDownload(w, r, id, leaf)
		}
	}
}

// authorized reports whether h carries the User, Organization and Element
// parts of the configured credentials, in any order.
func (f *Fake) authorized(h string) bool {
	var got [3]string
	var seen [3]bool
	for part := range strings.SplitSeq(h, ",") {
		scheme, value, ok := strings.Cut(strings.TrimSpace(part), " ")
		if !ok {
			return false
		}
		var i int
		switch strings.ToLower(scheme) {
		case "user":
			i = 0
		case "organization":
			i = 1
		case "element":
			i = 2
		default:
			return false
		}
		if seen[i] {
			return false
		}
		seen[i], got[i] = true, strings.TrimSpace(value)
	}
	c := f.opts.Credentials
	want := [3]string{c.UserSecret, c.OrganizationSecret, c.ElementToken}
	ok := true
	for i := range want {
		ok = subtle.ConstantTimeCompare([]byte(got[i]), []byte(want[i])) == 1 && seen[i] && ok
	}
	return ok
}

// writeError writes CE's error shape.
func (f *Fake) writeError(w http.ResponseWriter, code int, format string, args ...any) {
	id := fmt.Sprintf("%024x", f.lastRequest.Add(1))
	writeJSON(w, code, wireError{RequestID: id, Message: fmt.Sprintf(format, args...)})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"message":"cetest: cannot encode response"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}

// statusWriter records the status and size of a response for logging.
type statusWriter struct {
	http.ResponseWriter
	code int
	n    int64
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(p)
	s.n += int64(n)
	return n, err
}

func (s *statusWriter) Flush() {
	if fl, ok := s.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusWriter) statusCode() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}

// drain discards what is left of a small request body, bounded.
func drain(r io.Reader) { _, _ = io.Copy(io.Discard, io.LimitReader(r, 1<<20)) }

// apiError is an error answered to the client with CE's error shape. Its
// message reads like CE's (a capitalised sentence), hence not a plain error.
type apiError struct {
	code int
	msg  string
}

func apiErrorf(code int, format string, args ...any) *apiError {
	return &apiError{code: code, msg: fmt.Sprintf(format, args...)}
}

func (e *apiError) Error() string { return e.msg }

// fail answers err with CE's error shape: its code when it is an *apiError,
// else 400.
func (f *Fake) fail(w http.ResponseWriter, err error) {
	code := http.StatusBadRequest
	if ae, ok := err.(*apiError); ok {
		code = ae.code
	}
	f.writeError(w, code, "%s", err.Error())
}
