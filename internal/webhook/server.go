// Package webhook is the WebhookFunction's HTTP API as a plain http.Handler:
// CE's job-completion callbacks (verified, then handed to the function that
// owns the job) and the operator routes (start an export, read a job).
//
// A callback is only a hint. The server verifies the CE signature over the
// exact body bytes (when the secret has a signature key) and the per-job
// token against the hash in the ledger, then re-reads the job's status from
// CE and, when CE says the job is finished, invokes the owner asynchronously
// ({"action":"collect"} for exports, {"action":"finalize"} for imports). The
// hand-off is recorded in the ledger with a conditional write first, so a
// duplicate callback, or two racing, hand nothing over twice.
package webhook

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/cebulk/cebulk/internal/apigwhttp"
	"github.com/cebulk/cebulk/internal/budget"
	"github.com/cebulk/cebulk/internal/exporter"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/s3stream"
	"github.com/cebulk/cebulk/internal/secrets"
	"github.com/cebulk/cebulk/pkg/ce"
)

// DefaultMaxBody is the largest callback body accepted (1 MiB).
const DefaultMaxBody = 1 << 20

type jobStore interface {
	Get(ctx context.Context, id string) (*ledger.Job, string, error)
	Update(ctx context.Context, j *ledger.Job, etag string) (string, error)
}

type ceStatus interface {
	Status(ctx context.Context, jobID string) (*ce.Job, error)
}

type secretSource interface {
	Secret(ctx context.Context) (secrets.Secret, error)
}

type asyncInvoker interface {
	InvokeAsync(ctx context.Context, function string, payload []byte) error
}

type smallStore interface {
	ReadSmall(ctx context.Context, bucket, key string) ([]byte, string, error)
	WriteSmall(ctx context.Context, bucket, key string, data []byte, contentType string, cond s3stream.Condition) (string, error)
}

// Config is the server's configuration.
type Config struct {
	Bucket         string // the data bucket (idempotency records live under state/idempotency/)
	ExportFunction string // async-invoke target for export jobs and /exports
	ImportFunction string // async-invoke target for import jobs
	MaxBodyBytes   int64  // callback body limit (DefaultMaxBody)
	MaxExportDays  int    // the longest backfill /exports accepts (exporter.MaxRunDays, three years)
	CETimeout      time.Duration
	Now            func() time.Time
	// NoCallbacks is set with a backend that never calls back (Mixpanel's
	// APIs answer synchronously): /callbacks/ce answers 404 without reading
	// the secret, which holds no CE credentials then.
	NoCallbacks bool
}

// Deps are the server's collaborators.
type Deps struct {
	Jobs    jobStore
	CE      ceStatus
	Secrets secretSource
	Invoker asyncInvoker
	Store   smallStore
	Log     *slog.Logger
}

type server struct {
	cfg Config
	Deps
}

// NewServer returns the webhook's routes:
//
//	POST /callbacks/ce?job=<ledger id>&token=<token>  CE job callbacks
//	POST /exports                                     start an export or backfill (IAM-authorised at the gateway)
//	GET  /jobs/{id}                                   a job's ledger record (IAM-authorised at the gateway)
//	GET  /runs/{id}                                   a backfill run's progress and estimate (IAM-authorised at the gateway)
//	GET  /healthz                                     liveness
func NewServer(cfg Config, d Deps) http.Handler {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBody
	}
	if cfg.MaxExportDays <= 0 {
		cfg.MaxExportDays = exporter.MaxRunDays
	}
	if cfg.CETimeout <= 0 {
		cfg.CETimeout = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	s := &server{cfg: cfg, Deps: d}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /callbacks/ce", s.callback)
	mux.HandleFunc("POST /exports", s.startExport)
	mux.HandleFunc("GET /jobs/{id}", s.getJob)
	mux.HandleFunc("GET /runs/{id}", s.getRun)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if allow := allowed(r.URL.Path); allow != "" {
			w.Header().Set("Allow", allow)
			s.fail(w, r, http.StatusMethodNotAllowed, r.Method+" is not allowed here; use "+allow)
			return
		}
		s.fail(w, r, http.StatusNotFound, "no such route")
	})
	return mux
}

// allowed returns the methods a known route accepts, or "" for an unknown
// path: the mux's own 405 answer is plain text, ours is the JSON error.
func allowed(path string) string {
	switch {
	case path == "/callbacks/ce", path == "/exports":
		return http.MethodPost
	case path == "/healthz":
		return http.MethodGet
	case strings.HasPrefix(path, "/jobs/") && len(path) > len("/jobs/") && !strings.Contains(path[len("/jobs/"):], "/"):
		return http.MethodGet
	}
	return ""
}

// errorBody is every error answer.
type errorBody struct {
	Error     string `json:"error"`
	RequestID string `json:"requestId"`
}

func (s *server) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg, RequestID: requestID(r)})
}

// internal logs err once with details and answers 500 without them.
func (s *server) internal(w http.ResponseWriter, r *http.Request, msg string, err error, attrs ...any) {
	s.Log.ErrorContext(r.Context(), msg, append(attrs, "err", err, "apiRequestId", requestID(r))...)
	s.fail(w, r, http.StatusInternalServerError, "internal error")
}

func requestID(r *http.Request) string {
	if id := apigwhttp.RequestID(r.Context()); id != "" {
		return id
	}
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 128 {
		return id
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "local-" + hex.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// getJob answers a job's ledger record, without its token hash.
func (s *server) getJob(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	j, _, err := s.Jobs.Get(r.Context(), id)
	switch {
	case errors.Is(err, ledger.ErrNotFound), errors.Is(err, ledger.ErrInvalidID):
		s.fail(w, r, http.StatusNotFound, "no job "+quote(id))
	case err != nil:
		s.internal(w, r, "read job", err, "jobId", id)
	default:
		writeJSON(w, http.StatusOK, j.Public())
	}
}

// getRun shows a backfill run's progress: days done, started, pending and
// failed, records so far, and an estimate of the time left from the
// query budget's current hour.
func (s *server) getRun(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !exporter.ValidRunID(id) {
		s.fail(w, r, http.StatusNotFound, "no run "+quote(id))
		return
	}
	run, _, err := exporter.ReadRun(r.Context(), s.Store, s.cfg.Bucket, id)
	switch {
	case errors.Is(err, s3stream.ErrNotFound):
		s.fail(w, r, http.StatusNotFound, "no run "+quote(id))
		return
	case err != nil:
		s.internal(w, r, "read run", err, "runId", id)
		return
	}
	var u budget.Usage
	if run.QueriesPerHour > 0 {
		b, err := budget.New(s.Store, s.cfg.Bucket, run.QueriesPerHour, budget.WithClock(s.cfg.Now))
		if err == nil {
			u, err = b.Usage(r.Context())
		}
		if err != nil {
			s.internal(w, r, "read query budget", err, "runId", id)
			return
		}
	}
	writeJSON(w, http.StatusOK, run.View(u))
}

func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	b, _ := json.Marshal(s)
	return string(b)
}
