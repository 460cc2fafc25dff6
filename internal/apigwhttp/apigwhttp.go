// Package apigwhttp serves a plain http.Handler behind API Gateway HTTP APIs
// (payload format 2.0): it turns each event into an *http.Request and the
// handler's answer into the response event.
//
// Bodies marked isBase64Encoded are decoded to the exact bytes the client
// sent, so a signature over the raw body verifies; header names arrive lower
// case from API Gateway and net/http canonicalises them again.
package apigwhttp

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
)

type requestIDKey struct{}

// RequestID returns API Gateway's request id for the request, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// WithRequestID returns ctx carrying a request id (for tests and local servers).
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

type callerKey struct{}

// Caller is the IAM principal API Gateway authorised a request with (an
// AWS_IAM route's requestContext.authorizer.iam); empty for other routes.
type Caller struct {
	UserARN   string // arn:aws:iam::123456789012:user/alice, or an assumed role's session ARN
	CallerID  string // the principal's unique id (AIDA…, or AROA…:session)
	AccountID string
	OrgID     string // aws:PrincipalOrgID, when the account is in an organization
}

// LogAttrs returns the caller as log attributes (none when empty).
func (c Caller) LogAttrs() []any {
	if c == (Caller{}) {
		return nil
	}
	attrs := []any{"callerArn", c.UserARN, "callerId", c.CallerID, "callerAccount", c.AccountID}
	if c.OrgID != "" {
		attrs = append(attrs, "callerOrgId", c.OrgID)
	}
	return attrs
}

// CallerOf returns the IAM caller of the request, or the zero Caller.
func CallerOf(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey{}).(Caller)
	return c
}

// WithCaller returns ctx carrying an IAM caller (for tests and local servers).
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// Handler adapts h to a Lambda handler for HTTP API payload 2.0 events.
func Handler(h http.Handler) func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	return func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		req, err := Request(ctx, ev)
		if err != nil {
			return events.APIGatewayV2HTTPResponse{StatusCode: http.StatusBadRequest, Body: `{"error":"malformed request"}`,
				Headers: map[string]string{"Content-Type": "application/json"}}, nil
		}
		rec := newRecorder()
		h.ServeHTTP(rec, req)
		return rec.response(), nil
	}
}

// Request builds the *http.Request an event describes.
func Request(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (*http.Request, error) {
	body := []byte(ev.Body)
	if ev.IsBase64Encoded {
		b, err := base64.StdEncoding.DecodeString(ev.Body)
		if err != nil {
			return nil, fmt.Errorf("decode base64 body: %v", err)
		}
		body = b
	}
	path := ev.RawPath
	if path == "" {
		path = ev.RequestContext.HTTP.Path
	}
	u := &url.URL{Path: path, RawQuery: ev.RawQueryString}
	if host := ev.Headers["host"]; host != "" {
		u.Host = host
	}
	method := ev.RequestContext.HTTP.Method
	if method == "" {
		method = http.MethodGet
	}
	ctx = WithRequestID(ctx, ev.RequestContext.RequestID)
	if a := ev.RequestContext.Authorizer; a != nil && a.IAM != nil {
		ctx = WithCaller(ctx, Caller{UserARN: a.IAM.UserARN, CallerID: a.IAM.CallerID, AccountID: a.IAM.AccountID, OrgID: a.IAM.PrincipalOrgID})
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.RequestURI = u.RequestURI()
	for k, v := range ev.Headers {
		req.Header.Set(k, v)
	}
	if len(ev.Cookies) > 0 {
		req.Header.Set("Cookie", strings.Join(ev.Cookies, "; "))
	}
	req.ContentLength = int64(len(body))
	req.RemoteAddr = ev.RequestContext.HTTP.SourceIP
	return req, nil
}

// recorder is the http.ResponseWriter a handler answers an event through
// (net/http/httptest's recorder, without linking a test package into the
// function).
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
	wrote  bool
}

func newRecorder() *recorder { return &recorder{header: http.Header{}, code: http.StatusOK} }

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.wrote {
		return
	}
	r.wrote, r.code = true, code
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wrote {
		// As httptest's recorder (and net/http) do when the first write
		// comes before any WriteHeader: sniff the Content-Type.
		if _, ok := r.header["Content-Type"]; !ok && r.header.Get("Transfer-Encoding") == "" {
			r.header.Set("Content-Type", http.DetectContentType(b))
		}
		r.WriteHeader(http.StatusOK)
	}
	return r.body.Write(b)
}

// response converts the recorded answer to the response event.
func (r *recorder) response() events.APIGatewayV2HTTPResponse {
	res := events.APIGatewayV2HTTPResponse{StatusCode: r.code, Headers: map[string]string{}}
	for k, vs := range r.header {
		if len(vs) == 1 {
			res.Headers[k] = vs[0]
			continue
		}
		if res.MultiValueHeaders == nil {
			res.MultiValueHeaders = map[string][]string{}
		}
		res.MultiValueHeaders[k] = vs
	}
	b := r.body.Bytes()
	if utf8.Valid(b) {
		res.Body = string(b)
	} else {
		res.Body = base64.StdEncoding.EncodeToString(b)
		res.IsBase64Encoded = true
	}
	return res
}
