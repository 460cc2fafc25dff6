package lambdalocal

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
)

// Gateway is a stand-in for an API Gateway HTTP API with one Lambda
// integration: it turns each request into a payload format 2.0 event
// (lower-cased headers, query string, a body base64-encoded when it is not
// valid UTF-8 or when Base64 is set), invokes the function and writes its
// answer back. Like API Gateway it refuses bodies over 10 MiB.
type Gateway struct {
	Fn Invoker
	// Base64 sends every body base64-encoded (isBase64Encoded: true), as API
	// Gateway does for binary media types.
	Base64 bool
	// Stage is the stage name in the request context (default "$default").
	Stage string
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 10<<20+1))
	if err != nil || len(body) > 10<<20 {
		http.Error(w, `{"message":"Request Entity Too Large"}`, http.StatusRequestEntityTooLarge)
		return
	}
	ev := Event(r, body, g.Base64)
	if g.Stage != "" {
		ev.RequestContext.Stage = g.Stage
	}
	payload, _ := json.Marshal(ev)
	res, err := g.Fn.Invoke(r.Context(), payload)
	if err != nil || res.Error != nil {
		// API Gateway answers 500 when the integration fails.
		http.Error(w, `{"message":"Internal Server Error"}`, http.StatusInternalServerError)
		return
	}
	var out events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(res.Payload, &out); err != nil || out.StatusCode == 0 {
		http.Error(w, `{"message":"Internal Server Error"}`, http.StatusInternalServerError)
		return
	}
	for k, v := range out.Headers {
		w.Header().Set(k, v)
	}
	for k, vs := range out.MultiValueHeaders {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	respBody := []byte(out.Body)
	if out.IsBase64Encoded {
		if b, err := base64.StdEncoding.DecodeString(out.Body); err == nil {
			respBody = b
		}
	}
	w.WriteHeader(out.StatusCode)
	_, _ = w.Write(respBody)
}

// Event builds the payload 2.0 event API Gateway would send for r with body.
func Event(r *http.Request, body []byte, forceBase64 bool) events.APIGatewayV2HTTPRequest {
	headers := map[string]string{}
	for k, vs := range r.Header {
		headers[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	if r.Host != "" {
		headers["host"] = r.Host
	}
	query := map[string]string{}
	for k, vs := range r.URL.Query() {
		query[k] = strings.Join(vs, ",")
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	now := time.Now().UTC()
	ev := events.APIGatewayV2HTTPRequest{
		Version:               "2.0",
		RouteKey:              "$default",
		RawPath:               r.URL.Path,
		RawQueryString:        r.URL.RawQuery,
		Headers:               headers,
		QueryStringParameters: query,
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RouteKey:     "$default",
			AccountID:    "000000000000",
			Stage:        "$default",
			RequestID:    hex.EncodeToString(id),
			APIID:        "local",
			DomainName:   r.Host,
			DomainPrefix: "local",
			Time:         now.Format("02/Jan/2006:15:04:05 -0700"),
			TimeEpoch:    now.UnixMilli(),
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{
				Method:    r.Method,
				Path:      r.URL.Path,
				Protocol:  r.Proto,
				SourceIP:  strings.Split(r.RemoteAddr, ":")[0],
				UserAgent: r.UserAgent(),
			},
		},
	}
	if len(query) == 0 {
		ev.QueryStringParameters = nil
	}
	if len(body) > 0 {
		if forceBase64 || !utf8.Valid(body) {
			ev.Body = base64.StdEncoding.EncodeToString(body)
			ev.IsBase64Encoded = true
		} else {
			ev.Body = string(body)
		}
	}
	return ev
}
