package mixpanel

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"

	"github.com/cebulk/cebulk/internal/httpapi"
)

// retryPolicy bounds the retries of one call.
type retryPolicy struct {
	max                  int           // retries after the first attempt
	minWait, maxWait     time.Duration // doubling bounds; maxWait also caps Retry-After
	jitterMin, jitterMax time.Duration // added to every wait
}

// retryMode says which failures of a request may be sent again.
type retryMode int

const (
	// resend: a request that may be sent any number of times (export,
	// engage query, /import whose events Mixpanel dedupes on $insert_id).
	// Transient transport errors and 429/502/503/504.
	resend retryMode = iota
	// unsentOnly: a profile batch (/engage). Sent again only when it
	// provably never went out (a dial error) or was refused (429, 503); any
	// other failure is an *UnknownOutcomeError.
	unsentOnly
)

// bareDo sends req, retrying as mode allows, and returns the first 2xx
// response with its body unread; the caller closes it. A non-2xx response
// becomes an *APIError. The request body must be replayable (GetBody).
// Transport errors are returned without the request URL; when the context
// has ended, its error is wrapped.
//
// With answer400, a 400 response is returned like a 2xx one, body unread:
// /import and /engage report per-record failures in it, and it may be
// larger than APIError keeps.
func (c *Client) bareDo(req *http.Request, mode retryMode, answer400 bool) (*http.Response, error) {
	ctx := req.Context()
	method, path := req.Method, apiPath(req)
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil { // nothing of this attempt went out
			return nil, fmt.Errorf("mixpanel: %s %s: %w", method, path, err)
		}
		r, err := c.attempt(req, attempt)
		if err != nil {
			return nil, fmt.Errorf("mixpanel: %s %s: rewind body for retry: %v", method, path, err)
		}
		var wrote atomic.Bool
		if mode == unsentOnly {
			r = r.WithContext(httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{
				WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) },
			}))
		}
		resp, err := c.httpClient.Do(r)
		if err != nil {
			err = unwrapURLError(err)
			if ctxErr := ctx.Err(); ctxErr != nil {
				err = ctxErr
			}
			// A profile batch is sent again only when it provably never went
			// out: a dial error, before the transport reported the request
			// written. Anything else (a reset, a timeout, a transport that
			// reports nothing) may have reached Mixpanel.
			if mode == unsentOnly && (wrote.Load() || !httpapi.NeverSent(err)) {
				return nil, &UnknownOutcomeError{Err: fmt.Errorf("mixpanel: %s %s: %w", method, path, err)}
			}
			if ctx.Err() == nil && attempt < c.retry.max && httpapi.TransientTransportError(err) {
				if serr := c.pause(ctx, method, path, attempt, 0, err, c.backoff(attempt)); serr != nil {
					return nil, serr
				}
				continue
			}
			return nil, fmt.Errorf("mixpanel: %s %s: %w", method, path, err)
		}
		if (resp.StatusCode >= 200 && resp.StatusCode < 300) || (answer400 && resp.StatusCode == http.StatusBadRequest) {
			return resp, nil
		}
		apiErr := c.checkResponse(resp, r)
		retry := apiErr.retryable()
		if mode == unsentOnly {
			retry = apiErr.refusal()
			if !retry && apiErr.StatusCode >= 500 && apiErr.StatusCode != http.StatusNotImplemented {
				return nil, &UnknownOutcomeError{Err: apiErr}
			}
		}
		if retry && attempt < c.retry.max {
			if serr := c.pause(ctx, method, path, attempt, apiErr.StatusCode, nil, c.retryWait(attempt, apiErr.retryAfter)); serr != nil {
				return nil, serr
			}
			continue
		}
		return nil, apiErr
	}
}

// attempt returns req itself for the first attempt and a copy with a fresh
// body for later ones.
func (c *Client) attempt(req *http.Request, attempt int) (*http.Request, error) {
	if attempt == 0 {
		return req, nil
	}
	return httpapi.Rewind(req)
}

// pause logs a retry and waits before it. Its error, when the context ends
// first, is ready to return.
func (c *Client) pause(ctx context.Context, method, path string, attempt, status int, err error, wait time.Duration) error {
	var errText string
	if err != nil {
		errText = c.redact(err.Error())
	}
	attrs := httpapi.RetryAttrs(method, path, attempt+1, status, errText, wait)
	c.logger.LogAttrs(ctx, slog.LevelWarn, "mixpanel: retrying request", attrs...)
	if serr := c.sleep(ctx, wait); serr != nil {
		return fmt.Errorf("mixpanel: %s %s: %w", method, path, serr)
	}
	return nil
}

// backoff returns the wait before retry number attempt+1: minWait doubled
// attempt times, capped at maxWait, plus the jitter.
func (c *Client) backoff(attempt int) time.Duration {
	return httpapi.Doubling(c.retry.minWait, c.retry.maxWait, attempt) + c.jitterWait()
}

// jitterWait returns a uniform wait between jitterMin and jitterMax.
func (c *Client) jitterWait() time.Duration {
	lo, hi := c.retry.jitterMin, c.retry.jitterMax
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(c.jitter(int64(hi-lo)+1))
}

// retryWait honours a Retry-After header (capped at maxWait, plus the
// jitter) and otherwise backs off.
func (c *Client) retryWait(attempt int, retryAfter string) time.Duration {
	if d, ok := parseRetryAfter(retryAfter, c.now()); ok {
		return min(d, c.retry.maxWait) + c.jitterWait()
	}
	return c.backoff(attempt)
}
