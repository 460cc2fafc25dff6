package ce

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

const (
	// callbackHeader names the header that registers a job-completion callback.
	callbackHeader = "Elements-Async-Callback-Url"
	// nextPageHeader names the response header carrying the paging cursor.
	nextPageHeader = "Elements-Next-Page-Token"
	// defaultPageSize is CE's own default page size.
	defaultPageSize = 200
)

// QueryRequest describes a bulk download job for StartQuery.
type QueryRequest struct {
	// Object is the CE object to download: "activities" or "users".
	Object string
	// Query is an optional full CEQL statement; it defaults to
	// "select * from <Object>".
	Query string
	// From and To, when non-zero, are sent as the from and to query
	// parameters in UTC RFC 3339 ("2026-11-25T00:00:00Z").
	From, To time.Time
	// CallbackURL, when set, is sent as Elements-Async-Callback-Url. It may
	// carry a token: it never appears in errors or logs.
	CallbackURL string
	// CallbackPayload, when non-nil, is sent as the multipart field metaData
	// = {"callback-payload": CallbackPayload}; CE echoes it in the callback.
	CallbackPayload any
}

// StartQuery creates a bulk download job: POST hubs/general/bulk/query with
// q, from and to query parameters. It returns the created job (status
// CREATED).
//
// StartQuery creates a job on CE, so it is retried only when the request
// provably never reached CE (the connection could not be established) or
// when CE refused it with 429 or 503. After an ambiguous failure, such as a
// timeout after the request was sent, it returns the error: a job may exist,
// and the caller must decide whether to start another.
func (c *Client) StartQuery(ctx context.Context, q QueryRequest) (*Job, error) {
	if q.Object == "" && q.Query == "" {
		return nil, errors.New("ce: start query: Object or Query is required")
	}
	if !q.From.IsZero() && !q.To.IsZero() && q.To.Before(q.From) {
		return nil, errors.New("ce: start query: To is before From")
	}
	ceql := q.Query
	if ceql == "" {
		ceql = "select * from " + q.Object
	}
	params := url.Values{"q": {ceql}}
	if !q.From.IsZero() {
		params.Set("from", q.From.UTC().Format(time.RFC3339))
	}
	if !q.To.IsZero() {
		params.Set("to", q.To.UTC().Format(time.RFC3339))
	}
	if err := checkCallbackURL(q.CallbackURL); err != nil {
		return nil, fmt.Errorf("ce: start query: %w", err)
	}

	var (
		body        *bytes.Buffer
		contentType string
	)
	if q.CallbackPayload != nil {
		meta, err := json.Marshal(struct {
			CallbackPayload any `json:"callback-payload"`
		}{q.CallbackPayload})
		if err != nil {
			return nil, fmt.Errorf("ce: start query: encode callback payload: %v", err)
		}
		body = new(bytes.Buffer)
		mw := multipart.NewWriter(body)
		if err := mw.WriteField("metaData", string(meta)); err != nil {
			return nil, fmt.Errorf("ce: start query: %v", err)
		}
		if err := mw.Close(); err != nil {
			return nil, fmt.Errorf("ce: start query: %v", err)
		}
		contentType = mw.FormDataContentType()
	}

	path := c.bulkPath("query") + "?" + params.Encode()
	var req *http.Request
	var err error
	if body != nil {
		// A *bytes.Buffer gives the request a GetBody, so a refused request
		// can be sent again.
		req, err = c.newRequest(ctx, http.MethodPost, path, body)
	} else {
		req, err = c.newRequest(ctx, http.MethodPost, path, nil)
	}
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if q.CallbackURL != "" {
		req.Header.Set(callbackHeader, q.CallbackURL)
	}
	job := new(Job)
	if _, err := c.do(req, job); err != nil {
		return nil, err
	}
	if job.ID == "" {
		return nil, fmt.Errorf("ce: POST %s: response has no job id", c.sanitizePath(req.URL))
	}
	return c.redactJob(job), nil
}

// checkCallbackURL checks that a callback URL is absolute http(s), without
// ever echoing it (it may hold a token).
func checkCallbackURL(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("invalid callback URL: want an absolute http or https URL")
	}
	return nil
}

// Status returns the current state of a job: GET hubs/general/bulk/{id}/status.
// The response is decoded leniently (see Job); when it carries no id, the
// returned Job's ID is jobID.
func (c *Client) Status(ctx context.Context, jobID string) (*Job, error) {
	if err := checkSegment("job id", jobID); err != nil {
		return nil, err
	}
	req, err := c.newRequest(ctx, http.MethodGet, c.bulkPath(jobID, "status"), nil)
	if err != nil {
		return nil, err
	}
	job := new(Job)
	if _, err := c.do(req, job); err != nil {
		return nil, err
	}
	if job.ID == "" {
		job.ID = jobID
	}
	return c.redactJob(job), nil
}

// Wait polls Status until the job is terminal. It polls first at once, then
// after the poll interval (WithPollInterval), which grows by a quarter each
// poll up to four times its first value. Unknown statuses keep it polling.
//
// It returns (job, nil) when the job is COMPLETED (check
// job.RecordsFailedCount for per-record failures), and (job, *JobError) when
// it is ERROR, ABORTED or CANCELLED. When ctx ends first it returns the last
// job seen (possibly nil) and an error wrapping ctx.Err(). Errors from
// Status (after its own retries) are returned as they are.
func (c *Client) Wait(ctx context.Context, jobID string) (*Job, error) {
	interval := c.pollInterval
	maxInterval := 4 * c.pollInterval
	var last *Job
	for {
		job, err := c.Status(ctx, jobID)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return last, fmt.Errorf("ce: wait for job %s: %w", jobID, ctxErr)
			}
			return last, err
		}
		last = job
		switch {
		case job.Status == StatusCompleted:
			return job, nil
		case job.Status.Terminal():
			msg := job.Error
			if msg == "" {
				msg = job.Message
			}
			return job, &JobError{JobID: job.ID, Status: job.Status, Message: msg}
		}
		c.logger.LogAttrs(ctx, slog.LevelDebug, "ce: job not finished",
			slog.String("jobId", job.ID),
			slog.String("status", c.redact(string(job.Status))),
			slog.Bool("known", isKnownStatus(job.Status)),
			slog.Duration("wait", interval))
		if err := c.sleep(ctx, interval); err != nil {
			return last, fmt.Errorf("ce: wait for job %s: %w", jobID, err)
		}
		interval = min(interval+interval/4, maxInterval)
	}
}

func isKnownStatus(s Status) bool {
	switch s {
	case StatusCreated, StatusStarted, StatusRunning, StatusCompleted, StatusAborted,
		StatusError, StatusCancelled, StatusCancellationPending:
		return true
	}
	return false
}

// Cancel asks CE to cancel a job: PUT hubs/general/bulk/{id}/cancel. The job
// later reaches CANCELLED.
func (c *Client) Cancel(ctx context.Context, jobID string) error {
	if err := checkSegment("job id", jobID); err != nil {
		return err
	}
	req, err := c.newRequest(ctx, http.MethodPut, c.bulkPath(jobID, "cancel"), nil)
	if err != nil {
		return err
	}
	_, err = c.do(req, nil)
	return err
}

// Errors iterates over the per-record errors of a job: GET
// hubs/general/bulk/{id}/errors?pageSize=N, following the
// elements-next-page-token response header in nextPage until it is absent.
// Each element is yielded raw (CE sends objects or strings). pageSize <= 0
// means CE's default of 200. On failure it yields (nil, err) once and stops.
func (c *Client) Errors(ctx context.Context, jobID string, pageSize int) iter.Seq2[json.RawMessage, error] {
	return func(yield func(json.RawMessage, error) bool) {
		if err := checkSegment("job id", jobID); err != nil {
			yield(nil, err)
			return
		}
		for page, err := range c.pages(ctx, c.bulkPath(jobID, "errors"), url.Values{}, pageSize) {
			if err != nil {
				yield(nil, err)
				return
			}
			for _, raw := range page {
				if !yield(raw, nil) {
					return
				}
			}
		}
	}
}

// Jobs iterates over the instance's bulk jobs: GET hubs/general/bulk/jobs,
// with an optional CEQL where clause (for example "job_direction='UPLOAD'"),
// paging by elements-next-page-token. Jobs are decoded like Status. On
// failure it yields (nil, err) once and stops.
func (c *Client) Jobs(ctx context.Context, where string) iter.Seq2[*Job, error] {
	return func(yield func(*Job, error) bool) {
		params := url.Values{}
		if where != "" {
			params.Set("where", where)
		}
		for page, err := range c.pages(ctx, c.bulkPath("jobs"), params, defaultPageSize) {
			if err != nil {
				yield(nil, err)
				return
			}
			for i, raw := range page {
				job := new(Job)
				if err := json.Unmarshal(raw, job); err != nil {
					yield(nil, fmt.Errorf("ce: GET %s: decode job %d: %w", c.bulkPath("jobs"), i, err))
					return
				}
				if !yield(c.redactJob(job), nil) {
					return
				}
			}
		}
	}
}

// pages GETs path page by page, each page a JSON array, following the
// next-page header. It stops after yielding an error.
func (c *Client) pages(ctx context.Context, path string, params url.Values, pageSize int) iter.Seq2[[]json.RawMessage, error] {
	return func(yield func([]json.RawMessage, error) bool) {
		if pageSize <= 0 {
			pageSize = defaultPageSize
		}
		params.Set("pageSize", strconv.Itoa(pageSize))
		seen := map[string]bool{}
		for {
			req, err := c.newRequest(ctx, http.MethodGet, path+"?"+params.Encode(), nil)
			if err != nil {
				yield(nil, err)
				return
			}
			var page []json.RawMessage
			resp, err := c.do(req, &page)
			if err != nil {
				yield(nil, err)
				return
			}
			if !yield(page, nil) {
				return
			}
			next := resp.Header.Get(nextPageHeader)
			if next == "" {
				return
			}
			if seen[next] {
				yield(nil, fmt.Errorf("ce: GET %s: paging did not advance", path))
				return
			}
			seen[next] = true
			params.Set("nextPage", next)
		}
	}
}

// redactJob removes credentials from the free-text fields of a job, in case
// CE echoes them in an error message.
func (c *Client) redactJob(j *Job) *Job {
	j.Error = c.redact(j.Error)
	j.Message = c.redact(j.Message)
	return j
}
