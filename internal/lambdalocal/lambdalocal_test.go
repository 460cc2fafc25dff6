package lambdalocal

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/google/go-cmp/cmp"
)

// fakeFn is an Invoker that records payloads and answers with answer.
type fakeFn struct {
	mu       sync.Mutex
	payloads []string
	answer   func([]byte) Result
}

func (f *fakeFn) Invoke(ctx context.Context, payload []byte) (Result, error) {
	f.mu.Lock()
	f.payloads = append(f.payloads, string(payload))
	f.mu.Unlock()
	return f.answer(payload), nil
}

func TestGatewayBuildsPayloadV2(t *testing.T) {
	var got events.APIGatewayV2HTTPRequest
	fn := &fakeFn{answer: func(p []byte) Result {
		_ = json.Unmarshal(p, &got)
		resp, _ := json.Marshal(events.APIGatewayV2HTTPResponse{StatusCode: 418, Headers: map[string]string{"X-Test": "yes"}, Body: `{"ok":true}`})
		return Result{Payload: resp}
	}}
	for _, tc := range []struct {
		name       string
		base64     bool
		body       string
		wantBase64 bool
	}{
		{"text body", false, `{"id":"1"}`, false},
		{"forced base64", true, `{"id":"1"}`, true},
		{"binary body", false, "\xff\xfe", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(&Gateway{Fn: fn, Base64: tc.base64})
			defer srv.Close()
			req, _ := http.NewRequest("POST", srv.URL+"/callbacks/ce?job=j1&token=t", strings.NewReader(tc.body))
			req.Header.Set("Elements-Webhook-Signature", "sha256=abc")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 418 || string(b) != `{"ok":true}` || resp.Header.Get("X-Test") != "yes" {
				t.Errorf("response = %d %s %v, want 418 {\"ok\":true} with X-Test", resp.StatusCode, b, resp.Header)
			}
			if got.RawPath != "/callbacks/ce" || got.QueryStringParameters["job"] != "j1" || got.RequestContext.HTTP.Method != "POST" {
				t.Errorf("event path/query/method = %s %v %s", got.RawPath, got.QueryStringParameters, got.RequestContext.HTTP.Method)
			}
			if got.Headers["elements-webhook-signature"] != "sha256=abc" {
				t.Errorf("headers not lower-cased: %v", got.Headers)
			}
			if got.IsBase64Encoded != tc.wantBase64 {
				t.Errorf("IsBase64Encoded = %v, want %v", got.IsBase64Encoded, tc.wantBase64)
			}
			body := got.Body
			if got.IsBase64Encoded {
				d, _ := base64.StdEncoding.DecodeString(body)
				body = string(d)
			}
			if body != tc.body {
				t.Errorf("body = %q, want %q", body, tc.body)
			}
		})
	}
}

func TestInvokeAPIWithTheSDK(t *testing.T) {
	fn := &fakeFn{answer: func(p []byte) Result {
		if strings.Contains(string(p), "fail") {
			return Result{Payload: []byte(`{"errorMessage":"boom","errorType":"errorString"}`), Error: &InvokeError{Message: "boom", Type: "errorString"}}
		}
		return Result{Payload: []byte(`"done"`)}
	}}
	api := NewInvokeAPI(nil)
	defer api.Close()
	api.Register("cebulk-export", fn)
	srv := httptest.NewServer(api)
	defer srv.Close()
	client := lambda.New(lambda.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
	ctx := t.Context()

	out, err := client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("cebulk-export"), Payload: []byte(`{"action":"sweep"}`)})
	if err != nil {
		t.Fatalf("sync Invoke: %v", err)
	}
	if string(out.Payload) != `"done"` || out.FunctionError != nil {
		t.Errorf("sync Invoke = %s, %v", out.Payload, out.FunctionError)
	}
	out, err = client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("arn:aws:lambda:us-east-1:123456789012:function:cebulk-export"), Payload: []byte(`{"action":"fail"}`)})
	if err != nil {
		t.Fatalf("sync Invoke by ARN: %v", err)
	}
	if aws.ToString(out.FunctionError) != "Unhandled" {
		t.Errorf("FunctionError = %v, want Unhandled", out.FunctionError)
	}
	for _, p := range []string{`{"n":1}`, `{"n":2}`} {
		out, err := client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("cebulk-export"), InvocationType: types.InvocationTypeEvent, Payload: []byte(p)})
		if err != nil || out.StatusCode != 202 {
			t.Fatalf("async Invoke = %v, %v; want 202", out, err)
		}
	}
	if _, err := client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("nope"), Payload: []byte(`{}`)}); err == nil {
		t.Errorf("Invoke(unknown function) = nil error")
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := api.Wait(wctx); err != nil {
		t.Fatal(err)
	}
	want := []string{`{"action":"sweep"}`, `{"action":"fail"}`, `{"n":1}`, `{"n":2}`}
	if diff := cmp.Diff(want, fn.payloads); diff != "" {
		t.Errorf("payloads (-want +got):\n%s", diff)
	}
	if n := len(api.Records()); n != 2 {
		t.Errorf("Records() has %d async records, want 2", n)
	}
}
