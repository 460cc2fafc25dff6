package mixpanel

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/cebulk/cebulk/internal/httpapi"
)

// maxErrorBody is the most bytes of an error response kept in APIError.Body.
const maxErrorBody = 64 << 10

// Sentinel errors matched through errors.Is.
var (
	// ErrUnauthorized matches an *APIError with status 401: a wrong service
	// account user or secret, or a project the account cannot reach.
	ErrUnauthorized = errors.New("mixpanel: unauthorized")
	// ErrForbidden matches an *APIError with status 403.
	ErrForbidden = errors.New("mixpanel: forbidden")
	// ErrRateLimited matches an *APIError with status 429 (the project's
	// rate limit), returned once the retries are spent.
	ErrRateLimited = errors.New("mixpanel: rate limited")
	// ErrTooLarge matches an *APIError with status 413: a request body
	// over Mixpanel's limit.
	ErrTooLarge = errors.New("mixpanel: request too large")
	// ErrBadRequest matches an *APIError with status 400 that carries no
	// per-record failures (those are reported in a BatchResult instead).
	ErrBadRequest = errors.New("mixpanel: bad request")
	// ErrSessionExpired matches the *PageError of an engage query whose
	// session_id was refused on a later page: the paging session expired,
	// and the snapshot must start again from page 0.
	ErrSessionExpired = errors.New("mixpanel: engage query session expired")
)

// APIError reports a non-2xx response from Mixpanel.
//
// Path is the API path ("api/2.0/export", "api/query/engage", "import",
// "engage"), never with the query string. Message is Mixpanel's "error"
// (or the body's first line when it is not JSON); Status is its "status".
// Body holds at most the first 64 KiB of the response body. Credentials and
// the project token are redacted from all fields.
type APIError struct {
	StatusCode int    // HTTP status code
	Method     string // request method
	Path       string // API path, without query
	Message    string // Mixpanel's "error", or the text of a non-JSON body
	Status     string // Mixpanel's "status", for example "Bad Request" or "error"
	Body       []byte // the response body, capped at 64 KiB

	retryAfter string // the Retry-After header, used by the retry policy
}

// Error returns a message such as
// "mixpanel: POST import: 401 Unauthorized: Invalid credentials".
func (e *APIError) Error() string {
	msg := httpapi.StatusLine("mixpanel", e.Method, e.Path, e.StatusCode)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// Is reports whether target is the sentinel for e's status code:
// ErrBadRequest (400), ErrUnauthorized (401), ErrForbidden (403),
// ErrTooLarge (413) or ErrRateLimited (429).
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrBadRequest:
		return e.StatusCode == http.StatusBadRequest
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrForbidden:
		return e.StatusCode == http.StatusForbidden
	case ErrTooLarge:
		return e.StatusCode == http.StatusRequestEntityTooLarge
	case ErrRateLimited:
		return e.StatusCode == http.StatusTooManyRequests
	}
	return false
}

// retryable reports whether Mixpanel asks for the request to be sent again
// after a backoff: 429, 502, 503 and 504. A 400 never is.
func (e *APIError) retryable() bool {
	switch e.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// refusal reports whether the response proves that Mixpanel refused the
// request without acting on it (429 and 503), so that even a
// non-idempotent profile batch may be sent again.
func (e *APIError) refusal() bool {
	return e.StatusCode == http.StatusTooManyRequests || e.StatusCode == http.StatusServiceUnavailable
}

// UnknownOutcomeError reports a profile batch (/engage) that reached
// Mixpanel, or may have, without a usable answer: the connection broke or
// timed out after the body was sent, or a gateway answered 500, 502 or 504.
// Mixpanel may have applied some or all of its updates, and since $add,
// $append and friends are not idempotent the client does not send it
// again: the caller must report it (or check the profiles) instead.
// It wraps the cause, so errors.Is(err, context.DeadlineExceeded) works.
type UnknownOutcomeError struct {
	Err error // the transport error or *APIError
}

// Error returns a message such as
// "mixpanel: POST engage: outcome unknown, not resent: unexpected EOF".
func (e *UnknownOutcomeError) Error() string {
	return "mixpanel: POST engage: outcome unknown, not resent: " + strings.TrimPrefix(fmt.Sprint(e.Err), "mixpanel: ")
}

// Unwrap returns the cause.
func (e *UnknownOutcomeError) Unwrap() error { return e.Err }

// PageError reports an engage query that failed on a page. Page is the
// zero-based page that failed and Yielded the number of profiles the
// iterator had yielded before. It matches ErrSessionExpired when a page
// after the first was refused with a 4xx answer other than 401, 403 and
// 429: the only thing that changes between pages is the session_id and the
// page number, so Mixpanel refused the session.
type PageError struct {
	Page    int   // the zero-based page that failed
	Yielded int64 // profiles yielded before the failure
	Err     error // the cause, often an *APIError

	sessionExpired bool
}

// Error returns a message such as
// "mixpanel: engage query page 3 (after 3000 profiles): session expired: ...".
func (e *PageError) Error() string {
	msg := fmt.Sprintf("mixpanel: engage query page %d (after %d profiles)", e.Page, e.Yielded)
	if e.sessionExpired {
		msg += ": session expired"
	}
	return msg + ": " + strings.TrimPrefix(fmt.Sprint(e.Err), "mixpanel: ")
}

// Unwrap returns the cause.
func (e *PageError) Unwrap() error { return e.Err }

// Is makes a refused session match ErrSessionExpired.
func (e *PageError) Is(target error) bool { return target == ErrSessionExpired && e.sessionExpired }

// DecodeError reports an export stream or answer that could not be
// decoded: a line that is not a JSON object, a line over the size limit, or
// a read error from the stream (which it wraps, so errors.Is(err,
// io.ErrUnexpectedEOF) works for a truncated export).
type DecodeError struct {
	Line   int64 // one-based line number in the stream
	Offset int64 // byte offset where the line begins (in the decompressed stream)
	Err    error // the cause
}

// Error returns a message such as "mixpanel: decode line 3 at byte 120: unexpected EOF".
func (e *DecodeError) Error() string {
	return fmt.Sprintf("mixpanel: decode line %d at byte %d: %s", e.Line, e.Offset, strings.TrimPrefix(fmt.Sprint(e.Err), "mixpanel: "))
}

// Unwrap returns the cause.
func (e *DecodeError) Unwrap() error { return e.Err }

// ErrRecordTooLarge is wrapped by the *DecodeError a RecordReader returns
// for a line over its size limit.
var ErrRecordTooLarge = errors.New("mixpanel: record exceeds the size limit")
