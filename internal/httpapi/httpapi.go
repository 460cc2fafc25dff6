// Package httpapi holds the HTTP plumbing shared by the API clients
// pkg/ce and pkg/mixpanel: base URL checks, Retry-After parsing, the
// classification of transport errors, bounded draining of bodies,
// context-aware sleeping and the text of JSON error fields. It keeps no
// state and knows nothing of either API.
package httpapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MaxDrain is the most bytes DrainAndClose reads from a body before
// closing it, so that the connection can be reused without reading a huge
// body.
const MaxDrain = 64 << 10

// ParseBaseURL checks an API base URL: an absolute http or https URL
// without user info, query or fragment. It returns it with a trailing
// slash. Errors never repeat the URL (it might carry credentials).
func ParseBaseURL(raw string) (*url.URL, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, errors.New("base URL is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid base URL: %v", UnwrapURLError(err))
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("invalid base URL: want an absolute http or https URL, got scheme %q", u.Scheme)
	case u.Host == "":
		return nil, errors.New("invalid base URL: no host")
	case u.User != nil:
		return nil, errors.New("invalid base URL: must not contain user info")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, errors.New("invalid base URL: must not have a query or fragment")
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
		if u.RawPath != "" {
			u.RawPath += "/"
		}
	}
	return u, nil
}

// ParseRetryAfter parses a Retry-After value: delta seconds or an HTTP
// date. A date in the past means no wait. ok is false when v is absent or
// invalid.
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		const maxSecs = int64(1<<63-1) / int64(time.Second)
		return time.Duration(min(secs, maxSecs)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// TransientTransportError reports whether a transport error may go away on
// a second attempt. Certificate problems, redirect loops, bad schemes and
// context errors do not.
func TransientTransportError(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalidCert      x509.CertificateInvalidError
		verification     *tls.CertificateVerificationError
	)
	if errors.As(err, &unknownAuthority) || errors.As(err, &hostname) ||
		errors.As(err, &invalidCert) || errors.As(err, &verification) {
		return false
	}
	msg := err.Error()
	return !strings.Contains(msg, "stopped after") && !strings.Contains(msg, "unsupported protocol scheme")
}

// NeverSent reports whether err proves that no byte of the request reached
// the server: the connection (or the proxy connection) could not be
// established. DNS failures and "connection refused" are dial errors.
func NeverSent(err error) bool {
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return opErr.Op == "dial" || opErr.Op == "proxyconnect"
	}
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr)
}

// UnwrapURLError drops *url.Error, whose message contains the full request
// URL with its query string, keeping only its cause.
func UnwrapURLError(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) && uerr.Err != nil {
		return uerr.Err
	}
	return err
}

// DrainAndClose reads at most MaxDrain bytes of body and closes it.
func DrainAndClose(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, MaxDrain)
	_ = body.Close()
}

// Doubling is lo doubled n times, capped at hi: the exponential part of a
// backoff (lo·2^n, at most hi; 0 when lo is 0), safe from overflow for any n.
func Doubling(lo, hi time.Duration, n int) time.Duration {
	if lo <= 0 {
		return 0
	}
	if n >= 0 && n < 62 {
		if u := lo << n; u > 0 && u < hi && u>>n == lo {
			return u
		}
	}
	return max(lo, hi)
}

// Sleep waits for d or until ctx is done, whichever comes first.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// RawText returns a JSON string's value, or the compact text of any other
// JSON value; "" for null or absent.
func RawText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return ""
	}
	return b.String()
}

// FirstLine returns the first non-empty line of a non-JSON body, at most n
// bytes (cut on a UTF-8 boundary, with "..." when cut).
func FirstLine(body string, n int) string {
	s := strings.TrimSpace(body)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "") + "..."
	}
	return s
}

// StatusLine returns "<prefix>: <method> <path>: <code> <status text>",
// the head of an API error message.
func StatusLine(prefix, method, path string, code int) string {
	var b strings.Builder
	b.WriteString(prefix)
	b.WriteString(": ")
	b.WriteString(method)
	b.WriteString(" ")
	b.WriteString(path)
	b.WriteString(": ")
	b.WriteString(strconv.Itoa(code))
	if text := http.StatusText(code); text != "" {
		b.WriteString(" ")
		b.WriteString(text)
	}
	return b.String()
}

// Rewind returns a copy of req with a fresh body, for another attempt. A
// body without GetBody cannot be replayed and is an error.
func Rewind(req *http.Request) (*http.Request, error) {
	r := req.Clone(req.Context())
	if req.Body == nil || req.Body == http.NoBody {
		return r, nil
	}
	if req.GetBody == nil {
		return nil, errors.New("body cannot be replayed")
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, err
	}
	r.Body = body
	return r, nil
}

// RetryAttrs are the attributes of a "retrying request" log record: the
// method, the sanitised path, the attempt, the wait, the status (when
// there is one) and the error text (already redacted by the caller, when
// there is one). Never URLs, headers or bodies.
func RetryAttrs(method, path string, attempt, status int, errText string, wait time.Duration) []slog.Attr {
	attrs := []slog.Attr{
		slog.String("method", method),
		slog.String("path", path),
		slog.Int("attempt", attempt),
		slog.Duration("wait", wait),
	}
	if status != 0 {
		attrs = append(attrs, slog.Int("status", status))
	}
	if errText != "" {
		attrs = append(attrs, slog.String("error", errText))
	}
	return attrs
}
