package webhook

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/cebulk/cebulk/internal/apigwhttp"
	"github.com/cebulk/cebulk/internal/exporter"
	"github.com/cebulk/cebulk/internal/s3stream"
)

// exportRequest is the body of POST /exports: the export function's run
// action.
type exportRequest struct {
	Objects []string `json:"objects"`
	From    string   `json:"from,omitempty"`
	To      string   `json:"to,omitempty"`
}

// exportAccepted is the 202 answer.
type exportAccepted struct {
	RunID   string   `json:"runId"`
	Objects []string `json:"objects"`
	From    string   `json:"from,omitempty"`
	To      string   `json:"to,omitempty"`
	// Jobs are the ledger ids the run creates for day windows (users
	// snapshots are named by the time the run starts).
	Jobs []string `json:"jobs,omitempty"`
}

// idempotencyRecord is stored at state/idempotency/exports-<sha256(key)>.json.
type idempotencyRecord struct {
	RequestHash string         `json:"requestHash"`
	Response    exportAccepted `json:"response"`
	Invoked     bool           `json:"invoked"`
	CreatedAt   time.Time      `json:"createdAt"`
}

// knownObjects are the objects the export function handles.
var knownObjects = []string{exporter.ObjectActivities, exporter.ObjectUsers}

func (s *server) validateExport(req *exportRequest) error {
	if len(req.Objects) == 0 {
		return errors.New(`"objects" is required: a list of "activities" and/or "users"`)
	}
	seen := map[string]bool{}
	for _, o := range req.Objects {
		if !slices.Contains(knownObjects, o) {
			return fmt.Errorf("unknown object %q: use \"activities\" or \"users\"", o)
		}
		if seen[o] {
			return fmt.Errorf("object %q listed twice", o)
		}
		seen[o] = true
	}
	if (req.From == "") != (req.To == "") {
		return errors.New(`"from" and "to" go together (days, "to" exclusive)`)
	}
	if req.From == "" {
		return nil
	}
	from, err := time.Parse(time.DateOnly, req.From)
	if err != nil {
		return fmt.Errorf(`"from" must be a day like 2026-11-01, got %q`, req.From)
	}
	to, err := time.Parse(time.DateOnly, req.To)
	if err != nil {
		return fmt.Errorf(`"to" must be a day like 2026-11-03, got %q`, req.To)
	}
	if !to.After(from) {
		return errors.New(`"to" must be after "from" ("to" is exclusive)`)
	}
	if days := int(to.Sub(from).Hours() / 24); days > s.cfg.MaxExportDays {
		return fmt.Errorf("range of %d days is over the limit of %d; split the backfill", days, s.cfg.MaxExportDays)
	}
	if from.After(s.cfg.Now()) {
		return errors.New(`"from" is in the future`)
	}
	return nil
}

func (s *server) startExport(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	// Who asked: the IAM principal API Gateway authorised (AWS_IAM route).
	s.Log.InfoContext(ctx, "export requested", append(apigwhttp.CallerOf(ctx).LogAttrs(), "apiRequestId", requestID(r))...)
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		s.fail(w, r, http.StatusRequestEntityTooLarge, "request body over 64 KiB")
		return
	}
	var req exportRequest
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		s.fail(w, r, http.StatusBadRequest, "body must be a JSON object {\"objects\":[...],\"from\":\"YYYY-MM-DD\",\"to\":\"YYYY-MM-DD\"}")
		return
	}
	if err := s.validateExport(&req); err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	canon, _ := json.Marshal(req)
	reqHash := sha256.Sum256(canon)

	key := r.Header.Get("Idempotency-Key")
	if len(key) > 255 {
		s.fail(w, r, http.StatusBadRequest, "Idempotency-Key over 255 characters")
		return
	}
	resp := exportAccepted{RunID: newRunID(key), Objects: req.Objects, From: req.From, To: req.To, Jobs: dayJobs(req)}
	if key == "" {
		if err := s.invokeRun(r, resp); err != nil {
			s.internal(w, r, "start export", err)
			return
		}
		writeJSON(w, http.StatusAccepted, resp)
		return
	}

	recKey := "state/idempotency/exports-" + hashHex(key) + ".json"
	rec := idempotencyRecord{RequestHash: hex.EncodeToString(reqHash[:]), Response: resp, CreatedAt: s.cfg.Now().UTC()}
	b, _ := json.Marshal(rec)
	etag, err := s.Store.WriteSmall(ctx, s.cfg.Bucket, recKey, b, "application/json", s3stream.Condition{IfNoneMatch: true})
	if errors.Is(err, s3stream.ErrPrecondition) {
		// The key was used before: same request, same answer; a different
		// request is refused.
		data, tag, err := s.Store.ReadSmall(ctx, s.cfg.Bucket, recKey)
		if err != nil {
			s.internal(w, r, "read idempotency record", err)
			return
		}
		var prev idempotencyRecord
		if err := json.Unmarshal(data, &prev); err != nil {
			s.internal(w, r, "decode idempotency record", err)
			return
		}
		if prev.RequestHash != rec.RequestHash {
			s.fail(w, r, http.StatusUnprocessableEntity, "Idempotency-Key was already used with a different request")
			return
		}
		if !prev.Invoked {
			// The first request claimed the key but could not start the
			// run: this retry starts it.
			s.finishIdempotent(w, r, recKey, prev, tag)
			return
		}
		w.Header().Set("Idempotent-Replayed", "true")
		writeJSON(w, http.StatusAccepted, prev.Response)
		return
	}
	if err != nil {
		s.internal(w, r, "store idempotency record", err)
		return
	}
	s.finishIdempotent(w, r, recKey, rec, etag)
}

// finishIdempotent starts the run claimed by rec and marks it started.
func (s *server) finishIdempotent(w http.ResponseWriter, r *http.Request, recKey string, rec idempotencyRecord, etag string) {
	if err := s.invokeRun(r, rec.Response); err != nil {
		s.internal(w, r, "start export", err)
		return
	}
	rec.Invoked = true
	b, _ := json.Marshal(rec)
	if _, err := s.Store.WriteSmall(r.Context(), s.cfg.Bucket, recKey, b, "application/json", s3stream.Condition{IfMatch: etag}); err != nil {
		// The run started; a retry with this key may start it again, which
		// the export's ledger makes harmless. Log and answer.
		s.Log.WarnContext(r.Context(), "mark idempotency record", "err", err)
	}
	writeJSON(w, http.StatusAccepted, rec.Response)
}

func (s *server) invokeRun(r *http.Request, resp exportAccepted) error {
	by := "POST /exports"
	if c := apigwhttp.CallerOf(r.Context()); c.UserARN != "" {
		by += " by " + c.UserARN
	}
	if id := requestID(r); id != "" {
		by += " (apiRequestId " + id + ")"
	}
	payload, _ := json.Marshal(map[string]any{"action": "run", "objects": resp.Objects, "from": resp.From, "to": resp.To, "runId": resp.RunID, "by": by})
	if err := s.Invoker.InvokeAsync(r.Context(), s.cfg.ExportFunction, payload); err != nil {
		return err
	}
	s.Log.InfoContext(r.Context(), "export run started", append(apigwhttp.CallerOf(r.Context()).LogAttrs(),
		"runId", resp.RunID, "objects", resp.Objects, "from", resp.From, "to", resp.To, "apiRequestId", requestID(r))...)
	return nil
}

// dayJobs lists the ledger ids of the activities day windows of a backfill.
func dayJobs(req exportRequest) []string {
	if req.From == "" || !slices.Contains(req.Objects, exporter.ObjectActivities) {
		return nil
	}
	from, _ := time.Parse(time.DateOnly, req.From)
	to, _ := time.Parse(time.DateOnly, req.To)
	var ids []string
	for d := from; d.Before(to); d = d.AddDate(0, 0, 1) {
		ids = append(ids, exporter.DayJobID(exporter.ObjectActivities, d.Format(time.DateOnly)))
	}
	return ids
}

func newRunID(key string) string {
	if key != "" {
		return "run-" + hashHex(key)[:16]
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "run-" + hex.EncodeToString(b)
}

func hashHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
