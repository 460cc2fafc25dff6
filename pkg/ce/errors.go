package ce

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/cebulk/cebulk/internal/httpapi"
)

// maxErrorBody is the most bytes of an error response kept in APIError.Body.
const maxErrorBody = 64 << 10

// Sentinel errors matched by *APIError through errors.Is.
var (
	// ErrNotFound matches an *APIError with status 404 Not Found.
	ErrNotFound = errors.New("ce: not found")
	// ErrUnauthorized matches an *APIError with status 401 Unauthorized:
	// a bad user secret, organization secret or element token.
	ErrUnauthorized = errors.New("ce: unauthorized")
	// ErrRateLimited matches an *APIError with status 429 Too Many Requests.
	ErrRateLimited = errors.New("ce: rate limited")
)

// ErrRecordTooLarge is wrapped by the *DecodeError a RecordReader returns
// when a single record exceeds its size limit (see WithMaxRecordSize).
var ErrRecordTooLarge = errors.New("ce: record exceeds the size limit")

// APIError reports a non-2xx response from CE.
//
// Path is relative to the client's base URL and never includes the query
// string. Message, RequestID and ProviderMessage come from CE's JSON error
// body when present. Body holds at most the first 64 KiB of the response
// body. Credentials the client knows are redacted from all fields.
type APIError struct {
	StatusCode      int    // HTTP status code
	Method          string // request method
	Path            string // request path relative to the base URL, without query
	Message         string // CE's "message" (or the body's text when it is not JSON)
	RequestID       string // CE's "requestId"
	ProviderMessage string // CE's "providerMessage": the vendor's own error text
	Body            []byte // the response body, capped at 64 KiB

	retryAfter string // the Retry-After header, used by the retry policy
}

// RetryAfter returns the wait the answer's Retry-After header asks for
// (delta seconds, or an HTTP date read against now; a past date is no
// wait). ok is false when the answer had no valid Retry-After.
func (e *APIError) RetryAfter(now time.Time) (d time.Duration, ok bool) {
	return parseRetryAfter(e.retryAfter, now)
}

// Throttled reports whether the answer is a rate limit: 429 Too Many
// Requests or 503 Service Unavailable, which refuse a request without
// acting on it.
func (e *APIError) Throttled() bool {
	return e.StatusCode == http.StatusTooManyRequests || e.StatusCode == http.StatusServiceUnavailable
}

// Error returns a message such as
// "ce: GET hubs/general/bulk/123/status: 404 Not Found: job not found".
// CE's providerMessage follows in parentheses when it adds to the message;
// the request ID is left to the RequestID field.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString(httpapi.StatusLine("ce", e.Method, e.Path, e.StatusCode))
	switch {
	case e.Message != "" && e.ProviderMessage != "" && e.ProviderMessage != e.Message:
		b.WriteString(": ")
		b.WriteString(e.Message)
		b.WriteString(" (provider: ")
		b.WriteString(e.ProviderMessage)
		b.WriteString(")")
	case e.Message != "":
		b.WriteString(": ")
		b.WriteString(e.Message)
	case e.ProviderMessage != "":
		b.WriteString(": ")
		b.WriteString(e.ProviderMessage)
	}
	return b.String()
}

// Is reports whether target is the sentinel for e's status code:
// ErrNotFound for 404, ErrUnauthorized for 401, ErrRateLimited for 429.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrRateLimited:
		return e.StatusCode == http.StatusTooManyRequests
	}
	return false
}

// retryable reports whether the response may succeed when sent again:
// 429 and every 5xx except 501 Not Implemented.
func (e *APIError) retryable() bool {
	return e.StatusCode == http.StatusTooManyRequests ||
		(e.StatusCode >= 500 && e.StatusCode != http.StatusNotImplemented)
}

// refusal reports whether the response proves that CE refused the request
// without acting on it (429 and 503), so that even a job-creating POST may be
// sent again.
func (e *APIError) refusal() bool {
	return e.StatusCode == http.StatusTooManyRequests || e.StatusCode == http.StatusServiceUnavailable
}

// JobError reports a bulk job that ended in ERROR, ABORTED or CANCELLED.
type JobError struct {
	JobID   string // CE job ID
	Status  Status // the terminal status
	Message string // CE's error, message or statusMessage, if any
}

// Error returns a message such as "ce: job 123 ended ERROR: rate limited by vendor".
func (e *JobError) Error() string {
	msg := fmt.Sprintf("ce: job %s ended %s", e.JobID, e.Status)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// DecodeError reports a record stream that could not be decoded: a syntax
// error, a truncated stream, a value that is not a JSON object, a record over
// the size limit, or a read error from the underlying reader (which it
// wraps, so errors.Is(err, io.ErrUnexpectedEOF) and similar work).
//
// Offset is the byte offset in the stream where decoding of the failed
// record began: the start of the record, or of the separator (comma or
// white space) before it.
type DecodeError struct {
	Index  int64 // zero-based index of the record being decoded
	Offset int64 // byte offset where decoding of that record began
	Err    error // the cause
}

// Error returns a message such as "ce: decode record 3 at byte 120: unexpected EOF".
func (e *DecodeError) Error() string {
	return fmt.Sprintf("ce: decode record %d at byte %d: %s", e.Index, e.Offset, strings.TrimPrefix(fmt.Sprint(e.Err), "ce: "))
}

// Unwrap returns the cause.
func (e *DecodeError) Unwrap() error { return e.Err }

// Signature errors returned by ValidateSignature. ErrSignatureMissing,
// ErrSignatureMalformed and ErrSignatureMismatch all also match
// ErrSignatureInvalid, so a webhook can answer 401 on
// errors.Is(err, ErrSignatureInvalid) and log the precise reason.
var (
	// ErrSignatureInvalid matches every signature rejection.
	ErrSignatureInvalid = errors.New("ce: invalid webhook signature")
	// ErrSignatureMissing reports an empty signature header.
	ErrSignatureMissing error = &signatureError{"ce: webhook signature missing"}
	// ErrSignatureMalformed reports a header that is not "sha256=" followed
	// by the standard base64 encoding of 32 bytes.
	ErrSignatureMalformed error = &signatureError{"ce: webhook signature malformed"}
	// ErrSignatureMismatch reports a well-formed signature that does not
	// match the body and key.
	ErrSignatureMismatch error = &signatureError{"ce: webhook signature mismatch"}
	// ErrNoSignatureKey reports an empty signature key: a configuration
	// error, not a bad request, so it does not match ErrSignatureInvalid.
	ErrNoSignatureKey = errors.New("ce: no webhook signature key configured")
)

type signatureError struct{ msg string }

func (e *signatureError) Error() string { return e.msg }

// Is makes every signature rejection match ErrSignatureInvalid.
func (e *signatureError) Is(target error) bool { return target == ErrSignatureInvalid }
