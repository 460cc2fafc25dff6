package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/pkg/ce"
)

// callbackBody is what we read of CE's callback: the job it is about. The
// rest is not trusted; the status is re-read from CE.
type callbackBody struct {
	ID json.RawMessage `json:"id"`
}

// jobID returns the CE job id of the callback, decoded as pkg/ce decodes a
// job: a string, or a number as its decimal text (CE's status and newer
// job shapes send 42114492, even 4.2114492E7). Only the id is decoded, so
// another field CE sent in an unexpected shape does not matter.
func (b callbackBody) jobID() string {
	if len(b.ID) == 0 {
		return ""
	}
	var j ce.Job
	if json.Unmarshal(append(append([]byte(`{"id":`), b.ID...), '}'), &j) != nil {
		return ""
	}
	return j.ID
}

// ownerAction is the action and function a finished job is handed to.
func (s *server) ownerAction(j *ledger.Job) (action, function string) {
	if j.Kind == ledger.KindImport {
		return "finalize", s.cfg.ImportFunction
	}
	return "collect", s.cfg.ExportFunction
}

func (s *server) callback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if s.cfg.NoCallbacks {
		s.fail(w, r, http.StatusNotFound, "no CE callbacks: this stack runs BACKEND=mixpanel, whose APIs answer synchronously")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.fail(w, r, http.StatusRequestEntityTooLarge, "callback body over the limit")
			return
		}
		s.fail(w, r, http.StatusBadRequest, "cannot read the callback body")
		return
	}

	// The signature covers the exact bytes CE sent: verify before parsing.
	sec, err := s.Secrets.Secret(ctx)
	if err != nil {
		s.internal(w, r, "read the signature key", err)
		return
	}
	if sec.SignatureKey != "" {
		if err := ce.ValidateSignature(r.Header.Get("Elements-Webhook-Signature"), body, []byte(sec.SignatureKey)); err != nil {
			s.Log.WarnContext(ctx, "callback refused: bad signature", "apiRequestId", requestID(r))
			s.fail(w, r, http.StatusUnauthorized, "invalid signature")
			return
		}
	}

	q := r.URL.Query()
	id, token := q.Get("job"), q.Get("token")
	if id == "" || token == "" {
		s.fail(w, r, http.StatusUnauthorized, "missing job or token")
		return
	}
	if len(bytes.TrimSpace(body)) == 0 {
		s.fail(w, r, http.StatusBadRequest, "empty callback body")
		return
	}
	var cb callbackBody
	if err := json.Unmarshal(body, &cb); err != nil {
		s.fail(w, r, http.StatusBadRequest, "callback body is not a JSON object")
		return
	}

	for attempt := 0; attempt < 3; attempt++ {
		done := s.handleCallback(w, r, id, token, cb)
		if done {
			return
		}
	}
	s.fail(w, r, http.StatusConflict, "job kept changing; try again")
}

// handleCallback runs one attempt; it returns false when the ledger record
// changed under it and the attempt should be repeated.
func (s *server) handleCallback(w http.ResponseWriter, r *http.Request, id, token string, cb callbackBody) bool {
	ctx := r.Context()
	j, etag, err := s.Jobs.Get(ctx, id)
	if errors.Is(err, ledger.ErrNotFound) || errors.Is(err, ledger.ErrInvalidID) {
		s.fail(w, r, http.StatusNotFound, "unknown job")
		return true
	}
	if err != nil {
		s.internal(w, r, "read job", err, "jobId", id)
		return true
	}
	if !j.CheckToken(token) {
		s.Log.WarnContext(ctx, "callback refused: bad token", "jobId", id, "apiRequestId", requestID(r))
		s.fail(w, r, http.StatusUnauthorized, "invalid token")
		return true
	}
	log := s.Log.With("jobId", j.ID, "object", j.Object, "ceJobId", j.CEJobID, "apiRequestId", requestID(r))
	if got := cb.jobID(); got != "" && j.CEJobID != "" && got != j.CEJobID {
		log.WarnContext(ctx, "callback refused: for another CE job", "callbackCeJobId", got)
		s.fail(w, r, http.StatusConflict, "callback is not for the job's current CE job")
		return true
	}
	if j.Status.Final() {
		log.InfoContext(ctx, "callback for a finished job ignored", "status", j.Status)
		writeJSON(w, http.StatusOK, map[string]string{"status": "ignored", "jobStatus": string(j.Status)})
		return true
	}
	if j.CEJobID == "" {
		// The callback raced the ledger update that records the CE job id;
		// the sweep polls the job, nothing is lost.
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "deferred"})
		return true
	}
	if h := j.Handoff; h != nil && h.CEJobID == j.CEJobID && !h.At.IsZero() {
		log.InfoContext(ctx, "duplicate callback ignored", "status", j.Status)
		writeJSON(w, http.StatusOK, map[string]string{"status": "duplicate"})
		return true
	}

	sctx, cancel := context.WithTimeout(ctx, s.cfg.CETimeout)
	st, err := s.CE.Status(sctx, j.CEJobID)
	cancel()
	if err != nil {
		// Answer quickly whatever CE does; the sweep polls the job.
		log.WarnContext(ctx, "callback: CE status unavailable, left to the sweep", "err", err)
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "deferred"})
		return true
	}
	now := s.cfg.Now().UTC()
	j.CE = &ledger.CEState{Status: string(st.Status), RecordsCount: st.RecordsCount, RecordsFailedCount: st.RecordsFailedCount, Error: st.Error, CheckedAt: now}
	calls := 1
	if j.Handoff != nil && j.Handoff.CEJobID == j.CEJobID {
		calls = j.Handoff.Callbacks + 1
	}
	j.Handoff = &ledger.Handoff{CEJobID: j.CEJobID, CEStatus: string(st.Status), Callbacks: calls}
	if !st.Status.Terminal() {
		if _, err := s.Jobs.Update(ctx, j, etag); errors.Is(err, ledger.ErrConflict) {
			return false
		} else if err != nil {
			s.internal(w, r, "record callback", err, "jobId", j.ID)
			return true
		}
		log.InfoContext(ctx, "callback: CE job not finished yet", "ceStatus", st.Status)
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "pending", "ceStatus": string(st.Status)})
		return true
	}

	// Claim the hand-off, then hand over: a racing duplicate loses the
	// conditional write and sees the claim on its retry.
	j.Handoff.At = now
	newTag, err := s.Jobs.Update(ctx, j, etag)
	if errors.Is(err, ledger.ErrConflict) {
		return false
	}
	if err != nil {
		s.internal(w, r, "record hand-off", err, "jobId", j.ID)
		return true
	}
	action, fn := s.ownerAction(j)
	payload, _ := json.Marshal(map[string]string{"action": action, "jobId": j.ID})
	if err := s.Invoker.InvokeAsync(ctx, fn, payload); err != nil {
		// Release the claim so CE's retry (or the sweep) hands it over.
		j.Handoff.At = time.Time{}
		if _, uerr := s.Jobs.Update(context.WithoutCancel(ctx), j, newTag); uerr != nil {
			log.ErrorContext(ctx, "release hand-off after failed invoke", "err", uerr)
		}
		s.internal(w, r, "hand job to its owner", err, "jobId", j.ID, "function", fn)
		return true
	}
	log.InfoContext(ctx, "callback: job handed over", "ceStatus", st.Status, "action", action, "function", fn)
	writeJSON(w, http.StatusOK, map[string]string{"status": "handed-over", "action": action, "ceStatus": string(st.Status)})
	return true
}
