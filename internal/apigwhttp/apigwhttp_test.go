package apigwhttp

import (
	"encoding/base64"
	"io"
	"net/http"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/go-cmp/cmp"
)

// echo answers what it received.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("X-Method", r.Method)
	w.Header().Set("X-Path", r.URL.Path)
	w.Header().Set("X-Query", r.URL.Query().Get("job"))
	w.Header().Set("X-Sig", r.Header.Get("Elements-Webhook-Signature"))
	w.Header().Set("X-Request-Id", RequestID(r.Context()))
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(b)
})

func TestHandler(t *testing.T) {
	raw := `{"id":"1", "status":"COMPLETED"}` + "\n"
	for _, tc := range []struct {
		name string
		ev   events.APIGatewayV2HTTPRequest
	}{
		{"plain body", events.APIGatewayV2HTTPRequest{RawPath: "/callbacks/ce", RawQueryString: "job=j1&token=t",
			Headers: map[string]string{"elements-webhook-signature": "sha256=x"}, Body: raw,
			RequestContext: events.APIGatewayV2HTTPRequestContext{RequestID: "rid-1", HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "POST"}}}},
		{"base64 body", events.APIGatewayV2HTTPRequest{RawPath: "/callbacks/ce", RawQueryString: "job=j1&token=t",
			Headers: map[string]string{"elements-webhook-signature": "sha256=x"}, Body: base64.StdEncoding.EncodeToString([]byte(raw)), IsBase64Encoded: true,
			RequestContext: events.APIGatewayV2HTTPRequestContext{RequestID: "rid-1", HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "POST"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Handler(echo)(t.Context(), tc.ev)
			if err != nil {
				t.Fatal(err)
			}
			want := events.APIGatewayV2HTTPResponse{StatusCode: 201, Body: raw, Headers: map[string]string{
				"X-Method": "POST", "X-Path": "/callbacks/ce", "X-Query": "j1", "X-Sig": "sha256=x", "X-Request-Id": "rid-1",
			}}
			if diff := cmp.Diff(want, res); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
		})
	}
	bad := events.APIGatewayV2HTTPRequest{RawPath: "/x", Body: "not base64!", IsBase64Encoded: true}
	if res, err := Handler(echo)(t.Context(), bad); err != nil || res.StatusCode != 400 {
		t.Errorf("bad base64 = %d, %v; want 400, nil", res.StatusCode, err)
	}
	bin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte{0xff, 0x00}) })
	if res, _ := Handler(bin)(t.Context(), events.APIGatewayV2HTTPRequest{RawPath: "/"}); !res.IsBase64Encoded || res.Body != "/wA=" {
		t.Errorf("binary answer = %+v, want base64", res)
	}
}

func TestCallerFromTheIAMAuthorizer(t *testing.T) {
	var got Caller
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = CallerOf(r.Context()) })
	ev := events.APIGatewayV2HTTPRequest{RawPath: "/exports", RequestContext: events.APIGatewayV2HTTPRequestContext{
		HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "POST"},
		Authorizer: &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{IAM: &events.APIGatewayV2HTTPRequestContextAuthorizerIAMDescription{
			AccessKey: "ASIAEXAMPLE", AccountID: "123456789012", CallerID: "AROAEXAMPLE:alice",
			UserARN: "arn:aws:sts::123456789012:assumed-role/operators/alice", UserID: "AROAEXAMPLE:alice",
		}},
	}}
	if _, err := Handler(h)(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	want := Caller{UserARN: "arn:aws:sts::123456789012:assumed-role/operators/alice", CallerID: "AROAEXAMPLE:alice", AccountID: "123456789012"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("caller (-want +got):\n%s", diff)
	}
	if _, err := Handler(h)(t.Context(), events.APIGatewayV2HTTPRequest{RawPath: "/healthz"}); err != nil || got != (Caller{}) {
		t.Errorf("caller of an unauthorised route = %+v, %v; want none", got, err)
	}
}
