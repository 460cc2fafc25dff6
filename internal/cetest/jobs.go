package cetest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Job is a snapshot of one emulated bulk job, for inspection by tests.
type Job struct {
	ID                 string
	Object             string // "activities", "users", ...
	Direction          string // DirectionDownload or DirectionUpload
	Status             string // StatusCreated ... StatusCancelled
	RecordsCount       int64  // as reported by status (0 until COMPLETED)
	RecordsFailedCount int64
	Error              string
	Query              string    // the CEQL of a download job
	From, To           time.Time // the window of a download job; zero = open
	Format             string    // "json", "jsonl" or "csv"
	CallbackURL        string
	CallbackPayload    json.RawMessage
	Created, Finished  time.Time
	// QueryCost is what a download job costs the Mixpanel project's query
	// budget inside CE: 1 for activities (one raw export), ⌈profiles/1000⌉
	// (at least 1) for users, whose Engage query pages 1000 profiles at a
	// time. 0 for uploads.
	QueryCost int
}

// bulkJob is the emulator's state of one job. It is guarded by Fake.mu.
type bulkJob struct {
	id        string
	seq       int64
	object    string
	direction string
	query     string
	format    string
	callback  string
	payload   json.RawMessage
	created   time.Time
	finished  time.Time
	status    string
	outcome   *outcome
	errMsg    string

	// download
	served        atomic.Int64 // furthest byte of the file any request reached (DownloadRate)
	sizeMu        sync.Mutex
	sizes         map[string]int64 // body size by kind, once a ranged request needed it
	sel           selection
	count         int64
	failedRecords int64 // SetNextJobFailedRecords: failures on top of count

	// upload
	result uploadResult

	// as reported once terminal
	recordsCount, recordsFailed int64
	errorsVisible               bool
	callbackBody                []byte
}

func terminal(status string) bool {
	switch status {
	case StatusCompleted, StatusError, StatusAborted, StatusCancelled:
		return true
	}
	return false
}

// addJobLocked registers a new job, consuming a pending SetNextJobOutcome.
func (f *Fake) addJobLocked(j *bulkJob) {
	f.lastID++
	j.seq = f.lastID
	j.id = strconv.FormatInt(f.lastID, 10)
	j.created = f.now()
	j.status = StatusCreated
	j.outcome, f.nextOutcome = f.nextOutcome, nil
	f.jobs[j.id] = j
	f.order = append(f.order, j)
}

// advanceLocked makes every job whose time has come terminal.
func (f *Fake) advanceLocked() {
	now := f.now()
	for _, j := range f.order {
		if terminal(j.status) || now.Sub(j.created) < f.opts.CompletionDelay {
			continue
		}
		if j.outcome != nil {
			f.finishLocked(j, j.outcome.status, j.outcome.message, now)
		} else {
			f.finishLocked(j, StatusCompleted, "", now)
		}
	}
}

// finishLocked moves j to a terminal status and queues its callback.
func (f *Fake) finishLocked(j *bulkJob, status, message string, now time.Time) {
	j.status, j.errMsg, j.finished = status, message, now
	if status == StatusCompleted {
		j.errorsVisible = true
		switch j.direction {
		case DirectionDownload:
			// CE counts failed records in recordsCount (reference §2.3).
			j.recordsCount, j.recordsFailed = j.count+j.failedRecords, j.failedRecords
		case DirectionUpload:
			j.recordsCount, j.recordsFailed = j.result.total, j.result.failed
			f.uploaded[j.object] = append(f.uploaded[j.object], j.result.accepted...)
		}
	}
	j.result.accepted = nil
	if j.callback == "" {
		return
	}
	ws := f.wireStatusLocked(j)
	ws.CallbackPayload = j.payload
	body, err := json.Marshal(ws)
	if err != nil { // cannot happen: payload was validated as JSON
		body = []byte(`{"id":"` + j.id + `","status":"` + status + `"}`)
	}
	j.callbackBody = body
	f.pending = append(f.pending, &callback{jobID: j.id, url: j.callback, body: body})
}

func (f *Fake) wireStatusLocked(j *bulkJob) wireStatus {
	ws := wireStatus{
		ID:                 j.id,
		Status:             j.status,
		RecordsCount:       j.recordsCount,
		RecordsFailedCount: j.recordsFailed,
		ObjectName:         j.object,
		JobDirection:       j.direction,
		FileFormat:         j.format,
		InstanceID:         f.opts.InstanceID,
		StartTime:          formatTime(j.created),
		Error:              j.errMsg,
	}
	if terminal(j.status) {
		ws.FinishTime = formatTime(j.finished)
	}
	return ws
}

func formatTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// Jobs returns a snapshot of every job, oldest first.
func (f *Fake) Jobs() []Job {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advanceLocked()
	jobs := make([]Job, 0, len(f.order))
	for _, j := range f.order {
		jobs = append(jobs, Job{
			ID:                 j.id,
			Object:             j.object,
			Direction:          j.direction,
			Status:             j.status,
			RecordsCount:       j.recordsCount,
			RecordsFailedCount: j.recordsFailed,
			Error:              j.errMsg,
			Query:              j.query,
			From:               j.sel.from,
			To:                 j.sel.to,
			Format:             j.format,
			CallbackURL:        j.callback,
			CallbackPayload:    slices.Clone(j.payload),
			Created:            j.created,
			Finished:           j.finished,
		})
		if j.direction == DirectionDownload {
			jobs[len(jobs)-1].QueryCost = queryCost(j.object, j.count)
		}
	}
	return jobs
}

// lockJob locks f.mu, advances the clock and looks the job up. When the job
// is unknown it unlocks, writes 404 and returns nil; otherwise the caller
// must unlock.
func (f *Fake) lockJob(w http.ResponseWriter, id string) *bulkJob {
	f.mu.Lock()
	f.advanceLocked()
	j := f.jobs[id]
	if j == nil {
		f.mu.Unlock()
		f.writeError(w, http.StatusNotFound, "No bulk job found with id %s", id)
	}
	return j
}

func (f *Fake) handleStatus(w http.ResponseWriter, id string) {
	j := f.lockJob(w, id)
	if j == nil {
		return
	}
	if !terminal(j.status) {
		j.status = StatusRunning
	}
	ws := f.wireStatusLocked(j)
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, ws)
}

func (f *Fake) handleCancel(w http.ResponseWriter, id string) {
	j := f.lockJob(w, id)
	if j == nil {
		return
	}
	if terminal(j.status) {
		status := j.status
		f.mu.Unlock()
		f.writeError(w, http.StatusBadRequest, "Bulk job %s is already %s and cannot be cancelled", id, status)
		return
	}
	f.finishLocked(j, StatusCancelled, "", f.now())
	ws := f.wireStatusLocked(j)
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, ws)
}

// handleErrors serves the per-record errors of a job, paged with pageSize
// (default 200) and the opaque nextPage token of elements-next-page-token.
func (f *Fake) handleErrors(w http.ResponseWriter, r *http.Request, id string) {
	size, offset, ok := f.paging(w, r, "errors:"+id)
	if !ok {
		return
	}
	j := f.lockJob(w, id)
	if j == nil {
		return
	}
	// The errors of an upload's records, then those injected into a
	// download by SetNextJobFailedRecords, made on demand.
	var all []wireRecordError
	var total int
	if j.errorsVisible {
		all = j.result.errors
		total = len(all) + int(j.failedRecords)
	}
	page := make([]wireRecordError, 0, min(size, max(0, total-offset)))
	for i := offset; i < min(total, offset+size); i++ {
		if i < len(all) {
			page = append(page, all[i])
			continue
		}
		page = append(page, wireRecordError{
			Index:  j.count + int64(i-len(all)),
			Status: "Mixpanel returned a record that could not be exported (injected by cetest)",
			Record: json.RawMessage("null"),
		})
	}
	more := offset+len(page) < total
	f.mu.Unlock()
	writePage(w, page, more, "errors:"+id, offset+len(page))
}

// paging parses pageSize and nextPage; the token must belong to scope.
func (f *Fake) paging(w http.ResponseWriter, r *http.Request, scope string) (size, offset int, ok bool) {
	q := r.URL.Query()
	size = 200
	if s := q.Get("pageSize"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			f.writeError(w, http.StatusBadRequest, "Invalid pageSize %q", s)
			return 0, 0, false
		}
		size = n
	}
	if tok := q.Get("nextPage"); tok != "" {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		s, n, found := strings.Cut(string(raw), "@")
		off, aerr := strconv.Atoi(n)
		if err != nil || !found || s != scope || aerr != nil || off < 0 {
			f.writeError(w, http.StatusBadRequest, "Invalid nextPage token")
			return 0, 0, false
		}
		offset = off
	}
	return size, offset, true
}

func writePage[T any](w http.ResponseWriter, page []T, more bool, scope string, next int) {
	w.Header().Set("Elements-Returned-Count", strconv.Itoa(len(page)))
	if more {
		w.Header().Set("Elements-Next-Page-Token", base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%s@%d", scope, next)))
	}
	writeJSON(w, http.StatusOK, page)
}

var andRE = regexp.MustCompile(`(?i)\s+and\s+`)

var jobsWhereRE = regexp.MustCompile(`(?i)^\s*(object_name|job_direction|job_status|status)\s*=\s*'([^']*)'\s*$`)

// handleJobs lists jobs, oldest first, paged like errors. where may hold
// equality tests on object_name, job_direction and job_status, joined by
// and.
func (f *Fake) handleJobs(w http.ResponseWriter, r *http.Request) {
	size, offset, ok := f.paging(w, r, "jobs")
	if !ok {
		return
	}
	type cond struct{ field, value string }
	var conds []cond
	if where := strings.TrimSpace(r.URL.Query().Get("where")); where != "" {
		for _, c := range andRE.Split(where, -1) {
			m := jobsWhereRE.FindStringSubmatch(c)
			if m == nil {
				f.writeError(w, http.StatusBadRequest, "Unsupported where clause %q: the emulator supports field = 'value' on object_name, job_direction and job_status, joined by and", c)
				return
			}
			conds = append(conds, cond{strings.ToLower(m[1]), m[2]})
		}
	}
	f.mu.Lock()
	f.advanceLocked()
	var all []wireJobItem
	for _, j := range f.order {
		match := true
		for _, c := range conds {
			var v string
			switch c.field {
			case "object_name":
				v = j.object
			case "job_direction":
				v = j.direction
			default:
				v = j.status
			}
			match = match && strings.EqualFold(v, c.value)
		}
		if !match {
			continue
		}
		item := wireJobItem{
			ID:              j.seq,
			InstanceID:      f.opts.InstanceID,
			ObjectName:      j.object,
			JobDirection:    j.direction,
			Status:          j.status,
			RecordCount:     j.recordsCount,
			ErrorCount:      j.recordsFailed,
			FileFormat:      j.format,
			CreatedDate:     j.created.UnixMilli(),
			JobQuery:        j.query,
			NotificationURL: j.callback,
		}
		if terminal(j.status) {
			item.CompletionTime = j.finished.UnixMilli()
		}
		all = append(all, item)
	}
	f.mu.Unlock()
	page := make([]wireJobItem, 0, min(size, max(0, len(all)-offset)))
	if offset < len(all) {
		page = append(page, all[offset:min(len(all), offset+size)]...)
	}
	writePage(w, page, offset+len(page) < len(all), "jobs", offset+len(page))
}

// knownObject reports whether the element has object.
func (f *Fake) knownObject(object string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.data[object]
	return ok
}

// Start starts a background loop that, every Options.TickInterval, moves
// jobs whose time has come to their terminal status and delivers due
// callbacks, as the real CE does on its own. It is a no-op when the loop is
// already running. Close stops it.
func (f *Fake) Start() {
	f.loopMu.Lock()
	defer f.loopMu.Unlock()
	if f.loopCancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	f.loopCancel, f.loopDone = cancel, done
	go func() {
		defer close(done)
		t := time.NewTicker(f.opts.TickInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				f.DeliverCallbacks(ctx)
			}
		}
	}()
}

// Close stops the loop started by Start and waits for it to end, including
// a delivery in flight. It is safe to call more than once, or without Start.
func (f *Fake) Close() {
	f.loopMu.Lock()
	defer f.loopMu.Unlock()
	if f.loopCancel == nil {
		return
	}
	f.loopCancel()
	<-f.loopDone
	f.loopCancel, f.loopDone = nil, nil
}
