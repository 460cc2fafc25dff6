package ce

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/cebulk/cebulk/internal/httpapi"
)

// retryPolicy bounds the retries of one call.
type retryPolicy struct {
	max              int           // retries after the first attempt
	minWait, maxWait time.Duration // backoff bounds; maxWait also caps Retry-After
}

// retryMode says which failures of a request may be retried.
type retryMode int

const (
	// retryIdempotent: GET, PUT, DELETE, HEAD. Transport errors, 429 and
	// 5xx except 501.
	retryIdempotent retryMode = iota
	// retryRefusals: job-creating POSTs. Only a connection that was never
	// established, or a 429/503 refusal; never an ambiguous failure.
	retryRefusals
	// retryNever: the body is a stream that cannot be sent twice.
	retryNever
)

// retryModeFor derives the mode from the request: a body without GetBody
// cannot be replayed; POST and PATCH are treated as job-creating.
func retryModeFor(req *http.Request) retryMode {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return retryNever
	}
	switch req.Method {
	case http.MethodPost, http.MethodPatch:
		return retryRefusals
	}
	return retryIdempotent
}

func (m retryMode) retryTransport(err error) bool {
	switch m {
	case retryIdempotent:
		return httpapi.TransientTransportError(err)
	case retryRefusals:
		return httpapi.NeverSent(err)
	}
	return false
}

func (m retryMode) retryResponse(e *APIError) bool {
	switch m {
	case retryIdempotent:
		return e.retryable()
	case retryRefusals:
		return e.refusal()
	}
	return false
}

// backoff returns the wait before retry number attempt+1: full jitter
// between minWait and min(maxWait, minWait*2^attempt).
func (c *Client) backoff(attempt int) time.Duration {
	lo := c.retry.minWait
	upper := httpapi.Doubling(lo, c.retry.maxWait, attempt)
	if upper <= lo {
		return lo
	}
	return lo + time.Duration(c.jitter(int64(upper-lo)+1))
}

// retryWait honours a Retry-After header (capped at maxWait) and otherwise
// backs off.
func (c *Client) retryWait(attempt int, retryAfter string) time.Duration {
	if d, ok := parseRetryAfter(retryAfter, c.now()); ok {
		return min(d, c.retry.maxWait)
	}
	return c.backoff(attempt)
}

// logRetry records one retry; it never logs URLs, headers or bodies.
func (c *Client) logRetry(ctx context.Context, method, path string, attempt, status int, err error, wait time.Duration) {
	var errText string
	if err != nil {
		errText = c.redact(err.Error())
	}
	attrs := httpapi.RetryAttrs(method, path, attempt+1, status, errText, wait)
	c.logger.LogAttrs(ctx, slog.LevelWarn, "ce: retrying request", attrs...)
}
