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

// asyncClient returns an SDK Lambda client of api's server.
func asyncClient(t *testing.T, api *InvokeAPI) *lambda.Client {
	t.Helper()
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return lambda.New(lambda.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
}

func invokeEvent(t *testing.T, c *lambda.Client, fn, payload string) {
	t.Helper()
	out, err := c.Invoke(t.Context(), &lambda.InvokeInput{FunctionName: aws.String(fn), InvocationType: types.InvocationTypeEvent, Payload: []byte(payload)})
	if err != nil || out.StatusCode != 202 {
		t.Fatalf("async Invoke(%s) = %v, %v; want 202", payload, out, err)
	}
}

func waitIdle(t *testing.T, api *InvokeAPI) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := api.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// failingFn fails its first failures invocations of each payload.
type failingFn struct {
	mu       sync.Mutex
	failures int
	seen     map[string]int
	at       []time.Time
	block    chan struct{} // when set, every invocation waits for it
}

func (f *failingFn) Invoke(ctx context.Context, payload []byte) (Result, error) {
	if f.block != nil {
		<-f.block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen == nil {
		f.seen = map[string]int{}
	}
	f.seen[string(payload)]++
	f.at = append(f.at, time.Now())
	if f.seen[string(payload)] <= f.failures {
		doc := `{"errorMessage":"collect export-activities-2026-11-25: boom","errorType":"wrappedError"}`
		return Result{Payload: []byte(doc), Error: &InvokeError{Message: "boom", Type: "wrappedError"}}, nil
	}
	return Result{Payload: []byte(`{"ok":true}`)}, nil
}

func TestAsyncRetriesThenDestination(t *testing.T) {
	var mu sync.Mutex
	var sent [][]byte
	dest := DestinationFunc(func(ctx context.Context, rec []byte) error {
		mu.Lock()
		defer mu.Unlock()
		sent = append(sent, rec)
		return nil
	})
	cfg := AsyncConfig{MaximumRetryAttempts: 2, RetryDelays: [2]time.Duration{50 * time.Millisecond, 100 * time.Millisecond}, OnFailure: dest}
	for _, tc := range []struct {
		name        string
		failures    int
		retries     int
		invocations int
		destined    bool
	}{
		{"success", 0, 2, 1, false},
		{"one transient failure", 1, 2, 2, false},
		{"two transient failures", 2, 2, 3, false},
		{"always failing", 99, 2, 3, true},
		{"no retries configured", 99, 0, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			sent = nil
			mu.Unlock()
			api := NewInvokeAPI(nil)
			defer api.Close()
			fn := &failingFn{failures: tc.failures}
			c := cfg
			c.MaximumRetryAttempts = tc.retries
			api.RegisterAsync("cebulk-export", fn, c)
			client := asyncClient(t, api)
			payload := `{"action":"collect","jobId":"export-activities-2026-11-25"}`
			invokeEvent(t, client, "cebulk-export", payload)
			waitIdle(t, api)
			if got := fn.seen[payload]; got != tc.invocations {
				t.Errorf("invocations = %d, want %d", got, tc.invocations)
			}
			recs := api.Records()
			for i, r := range recs {
				if r.Attempt != i+1 || r.RequestID != recs[0].RequestID || string(r.Payload) != payload {
					t.Errorf("record %d = attempt %d, request %s, payload %s", i, r.Attempt, r.RequestID, r.Payload)
				}
			}
			if tc.invocations == 3 {
				// Lambda waits 1 and 2 minutes (here 50 and 100ms) before the retries.
				if d := fn.at[1].Sub(fn.at[0]); d < 50*time.Millisecond {
					t.Errorf("first retry after %v, want >= 50ms", d)
				}
				if d := fn.at[2].Sub(fn.at[1]); d < 100*time.Millisecond {
					t.Errorf("second retry after %v, want >= 100ms", d)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if !tc.destined {
				if len(sent) != 0 || len(api.Destined()) != 0 {
					t.Errorf("destination got %s, want nothing", sent)
				}
				return
			}
			if len(sent) != 1 {
				t.Fatalf("destination got %d records, want 1", len(sent))
			}
			var got map[string]any
			if err := json.Unmarshal(sent[0], &got); err != nil {
				t.Fatal(err)
			}
			ts, _ := got["timestamp"].(string)
			if _, err := time.Parse("2006-01-02T15:04:05.000Z", ts); err != nil {
				t.Errorf("timestamp %q: %v", ts, err)
			}
			delete(got, "timestamp")
			rc := got["requestContext"].(map[string]any)
			if rc["requestId"] != recs[0].RequestID {
				t.Errorf("requestId = %v, want %s", rc["requestId"], recs[0].RequestID)
			}
			delete(rc, "requestId")
			want := map[string]any{
				"version": "1.0",
				"requestContext": map[string]any{
					"functionArn":            "arn:aws:lambda:us-east-1:123456789012:function:cebulk-export:$LATEST",
					"condition":              "RetriesExhausted",
					"approximateInvokeCount": float64(tc.invocations),
				},
				"requestPayload":  map[string]any{"action": "collect", "jobId": "export-activities-2026-11-25"},
				"responseContext": map[string]any{"statusCode": float64(200), "executedVersion": "$LATEST", "functionError": "Unhandled"},
				"responsePayload": map[string]any{"errorMessage": "collect export-activities-2026-11-25: boom", "errorType": "wrappedError"},
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("destination record (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAsyncRetryDoesNotHoldTheQueue(t *testing.T) {
	api := NewInvokeAPI(nil)
	defer api.Close()
	fn := &failingFn{failures: 1}
	api.RegisterAsync("cebulk-import", fn, AsyncConfig{MaximumRetryAttempts: 2, RetryDelays: [2]time.Duration{300 * time.Millisecond, 300 * time.Millisecond}})
	other := &failingFn{block: make(chan struct{})}
	api.Register("cebulk-export", other)
	client := asyncClient(t, api)
	invokeEvent(t, client, "cebulk-export", `{"n":0}`) // blocks the export function only
	invokeEvent(t, client, "cebulk-import", `{"n":1}`)
	invokeEvent(t, client, "cebulk-import", `{"n":2}`)
	time.Sleep(200 * time.Millisecond)
	fn.mu.Lock()
	order := len(fn.at)
	fn.mu.Unlock()
	if order != 2 {
		t.Errorf("import invocations before the first retry is due = %d, want 2 (a retry waits outside the queue; another function's run does not block)", order)
	}
	close(other.block)
	waitIdle(t, api)
	if fn.seen[`{"n":1}`] != 2 || fn.seen[`{"n":2}`] != 2 {
		t.Errorf("invocations = %v, want each event failed once and retried once", fn.seen)
	}
}

func TestAsyncEventAgeExceeded(t *testing.T) {
	api := NewInvokeAPI(nil)
	defer api.Close()
	clock := time.Now()
	var mu sync.Mutex
	api.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	fn := &failingFn{failures: 99}
	var got DestinationRecord
	api.RegisterAsync("cebulk-import", fn, AsyncConfig{
		MaximumRetryAttempts: 2, MaximumEventAge: time.Minute,
		RetryDelays: [2]time.Duration{20 * time.Millisecond, 20 * time.Millisecond},
		OnFailure: DestinationFunc(func(ctx context.Context, rec []byte) error {
			return json.Unmarshal(rec, &got)
		}),
	})
	invokeEvent(t, asyncClient(t, api), "cebulk-import", `{"n":1}`)
	for {
		fn.mu.Lock()
		n := len(fn.at)
		fn.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	clock = clock.Add(2 * time.Minute) // the retry comes too late
	mu.Unlock()
	waitIdle(t, api)
	if fn.seen[`{"n":1}`] != 1 {
		t.Errorf("invocations = %d, want 1: an event older than MaximumEventAge is not retried", fn.seen[`{"n":1}`])
	}
	if got.RequestContext.Condition != ConditionEventAgeExceeded || got.RequestContext.ApproximateInvokeCount != 1 {
		t.Errorf("destination record = %+v, want EventAgeExceeded after 1 invocation", got.RequestContext)
	}
}
