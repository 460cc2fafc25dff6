package awsenv

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"
)

// received is one request as a server saw it.
type received struct {
	Method, RawPath, Host string
	Header                http.Header
	Body                  string
}

// recorder answers each request with the next of answers (the last one
// repeats) and records it.
type recorder struct {
	mu      sync.Mutex
	reqs    []received
	answers []func(w http.ResponseWriter)
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, received{r.Method, r.URL.EscapedPath(), r.Host, r.Header.Clone(), string(b)})
	n := len(rc.reqs)
	rc.mu.Unlock()
	rc.answers[min(n, len(rc.answers))-1](w)
}

func accepted(w http.ResponseWriter) { w.WriteHeader(http.StatusAccepted) }

func lambdaAnswer(status int, code, body string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		if code != "" {
			w.Header().Set("X-Amzn-ErrorType", code+":http://internal.amazon.com/coral/com.amazonaws.awsgirlsvc/")
		}
		w.Header().Set("X-Amzn-RequestId", "req-1")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// testConfig is a configuration for srv with the Lambda credentials of
// lambdaEnv and retries without waiting.
func testConfig(srv *httptest.Server, attempts int) aws.Config {
	return aws.Config{
		Region:       "eu-west-1",
		BaseEndpoint: aws.String(srv.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("ASIAEXAMPLE", "secret-key", "session-token"),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = attempts
				o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
			})
		},
	}
}

func TestAsyncInvokerRequest(t *testing.T) {
	for _, function := range []string{"cebulk-export", "arn:aws:lambda:eu-west-1:123456789012:function:cebulk-export", "cebulk-export:live"} {
		t.Run(function, func(t *testing.T) {
			rc := &recorder{answers: []func(http.ResponseWriter){accepted}}
			srv := httptest.NewServer(rc)
			defer srv.Close()
			if err := NewAsyncInvoker(testConfig(srv, 3)).InvokeAsync(t.Context(), function, []byte(`{"action":"collect"}`)); err != nil {
				t.Fatalf("InvokeAsync: %v", err)
			}
			if len(rc.reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(rc.reqs))
			}
			r := rc.reqs[0]
			wantPath := "/2015-03-31/functions/" + strings.ReplaceAll(function, ":", "%3A") + "/invocations"
			if r.Method != http.MethodPost || r.RawPath != wantPath || r.Body != `{"action":"collect"}` {
				t.Errorf("request %s %s %q, want POST %s with the payload", r.Method, r.RawPath, r.Body, wantPath)
			}
			if got := r.Header.Get("X-Amz-Invocation-Type"); got != "Event" {
				t.Errorf("X-Amz-Invocation-Type = %q, want Event", got)
			}
			if got := r.Header.Get("X-Amz-Security-Token"); got != "session-token" {
				t.Errorf("X-Amz-Security-Token = %q, want the session token", got)
			}
			if err := verifySigV4(r, "ASIAEXAMPLE", "secret-key", "eu-west-1", "lambda"); err != nil {
				t.Errorf("signature: %v\nheaders: %v", err, r.Header)
			}
		})
	}
}

// TestAsyncInvokerAsSDK: the request is the one the SDK's Lambda client
// sends for the same Invoke (path, signed headers, invocation type, body).
func TestAsyncInvokerAsSDK(t *testing.T) {
	const function = "arn:aws:lambda:eu-west-1:123456789012:function:cebulk-import"
	rc := &recorder{answers: []func(http.ResponseWriter){accepted}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	cfg := testConfig(srv, 1)
	if _, err := lambda.NewFromConfig(cfg).Invoke(t.Context(), &lambda.InvokeInput{
		FunctionName: aws.String(function), InvocationType: lambdatypes.InvocationTypeEvent, Payload: []byte(`{"a":1}`),
	}); err != nil {
		t.Fatalf("SDK Invoke: %v", err)
	}
	if err := NewAsyncInvoker(cfg).InvokeAsync(t.Context(), function, []byte(`{"a":1}`)); err != nil {
		t.Fatalf("InvokeAsync: %v", err)
	}
	shape := func(r received) []string {
		return []string{r.Method, r.RawPath, r.Body, r.Header.Get("X-Amz-Invocation-Type"), r.Header.Get("Content-Type"), signedHeaders(r), scopeOf(r)}
	}
	if diff := cmp.Diff(shape(rc.reqs[0]), shape(rc.reqs[1])); diff != "" {
		t.Errorf("request (-SDK +AsyncInvoker):\n%s", diff)
	}
}

func TestAsyncInvokerErrors(t *testing.T) {
	notFound := lambdaAnswer(404, "ResourceNotFoundException", `{"Type":"User","message":"Function not found: arn:aws:lambda:eu-west-1:123456789012:function:nope"}`)
	throttled := lambdaAnswer(429, "TooManyRequestsException", `{"Type":"User","message":"Rate Exceeded.","Reason":"ReservedFunctionConcurrentInvocationLimitExceeded"}`)
	for _, tc := range []struct {
		name     string
		answers  []func(http.ResponseWriter)
		requests int
		want     *APIError // nil: success
		maxed    bool
	}{
		{name: "not found, not retried", answers: []func(http.ResponseWriter){notFound}, requests: 1,
			want: &APIError{Operation: "Lambda Invoke", StatusCode: 404, Code: "ResourceNotFoundException", Type: "User", Message: "Function not found: arn:aws:lambda:eu-west-1:123456789012:function:nope", RequestID: "req-1"}},
		{name: "throttled, retried until the last attempt", answers: []func(http.ResponseWriter){throttled}, requests: 3, maxed: true,
			want: &APIError{Operation: "Lambda Invoke", StatusCode: 429, Code: "TooManyRequestsException", Type: "User", Message: "Rate Exceeded.", RequestID: "req-1"}},
		{name: "throttled, then accepted", answers: []func(http.ResponseWriter){throttled, accepted}, requests: 2},
		{name: "service errors, then accepted", answers: []func(http.ResponseWriter){
			lambdaAnswer(500, "ServiceException", `{"Type":"Service","message":"internal"}`),
			lambdaAnswer(503, "", "Service Unavailable"), accepted}, requests: 3},
		{name: "429 without a code is throttling", answers: []func(http.ResponseWriter){lambdaAnswer(429, "", ""), accepted}, requests: 2},
		{name: "code in the body", answers: []func(http.ResponseWriter){lambdaAnswer(400, "", `{"__type":"com.amazon#InvalidRequestContentException","Message":"bad json"}`)}, requests: 1,
			want: &APIError{Operation: "Lambda Invoke", StatusCode: 400, Code: "InvalidRequestContentException", Message: "bad json", RequestID: "req-1"}},
		{name: "run synchronously", answers: []func(http.ResponseWriter){lambdaAnswer(200, "", `{}`)}, requests: 1,
			want: &APIError{Operation: "Lambda Invoke", StatusCode: 200, Code: "HTTP200", Message: "the function ran synchronously: an Event invocation is answered 202", RequestID: "req-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := &recorder{answers: tc.answers}
			srv := httptest.NewServer(rc)
			defer srv.Close()
			err := NewAsyncInvoker(testConfig(srv, 3)).InvokeAsync(t.Context(), "cebulk-export", []byte(`{}`))
			if len(rc.reqs) != tc.requests {
				t.Errorf("%d requests, want %d", len(rc.reqs), tc.requests)
			}
			if tc.want == nil {
				if err != nil {
					t.Errorf("InvokeAsync: %v", err)
				}
				return
			}
			var le *APIError
			if !errors.As(err, &le) {
				t.Fatalf("InvokeAsync error = %v, want an *APIError", err)
			}
			if diff := cmp.Diff(tc.want, le); diff != "" {
				t.Errorf("APIError (-want +got):\n%s", diff)
			}
			var api smithy.APIError
			if !errors.As(err, &api) || api.ErrorCode() != tc.want.Code {
				t.Errorf("error is not a smithy.APIError with code %s: %v", tc.want.Code, err)
			}
			var maxed *retry.MaxAttemptsError
			if errors.As(err, &maxed) != tc.maxed {
				t.Errorf("MaxAttemptsError in %v: %v, want %v", err, !tc.maxed, tc.maxed)
			}
			if !strings.Contains(err.Error(), "cebulk-export") || !strings.Contains(err.Error(), tc.want.Code) {
				t.Errorf("error %q names neither the function nor the code", err)
			}
			for _, secret := range []string{"secret-key", "session-token", "Signature="} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error shows %s: %v", secret, err)
				}
			}
		})
	}
}

// TestAsyncInvokerConnectionErrors: a refused connection is retried, and
// a cancelled context stops the retries.
func TestAsyncInvokerConnectionErrors(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close() // nothing listens there any more
	err := NewAsyncInvoker(testConfig(srv, 2)).InvokeAsync(t.Context(), "f", nil)
	var maxed *retry.MaxAttemptsError
	if !errors.As(err, &maxed) || maxed.Attempt != 2 {
		t.Errorf("InvokeAsync to a closed port = %v, want a MaxAttemptsError after 2 attempts", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := NewAsyncInvoker(testConfig(srv, 2)).InvokeAsync(ctx, "f", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("InvokeAsync with a cancelled context = %v, want context.Canceled", err)
	}
}

// TestEndpointsAsSDK compares the endpoints with the Lambda and Secrets
// Manager clients' own resolvers for each partition, FIPS and dual-stack.
func TestEndpointsAsSDK(t *testing.T) {
	lambdaResolver, smResolver := lambda.NewDefaultEndpointResolverV2(), secretsmanager.NewDefaultEndpointResolverV2()
	for _, region := range []string{"us-east-1", "eu-central-2", "ap-southeast-7", "mx-central-1", "il-central-1", "cn-north-1", "us-gov-west-1",
		"us-iso-east-1", "us-isob-east-1", "us-isof-south-1", "eu-isoe-west-1", "eusc-de-east-1", "aws-global", "xx-unknown-1"} {
		for _, fips := range []bool{false, true} {
			for _, dual := range []bool{false, true} {
				src := &envSource{getenv: func(string) string { return "" }}
				if fips {
					src.fips = aws.FIPSEndpointStateEnabled
				}
				if dual {
					src.dualStack = aws.DualStackEndpointStateEnabled
				}
				cfg := aws.Config{Region: region, ConfigSources: []any{src}}
				want, err := lambdaResolver.ResolveEndpoint(t.Context(), lambda.EndpointParameters{Region: aws.String(region), UseFIPS: aws.Bool(fips), UseDualStack: aws.Bool(dual)})
				if err != nil {
					t.Fatalf("Lambda resolver %s fips %v dual %v: %v", region, fips, dual, err)
				}
				if got, err := serviceEndpoint(t.Context(), cfg, lambdaService); err != nil || got != want.URI.String() {
					t.Errorf("Lambda endpoint(%s, fips %v, dual %v) = %q, %v; want %q", region, fips, dual, got, err, want.URI.String())
				}
				want, err = smResolver.ResolveEndpoint(t.Context(), secretsmanager.EndpointParameters{Region: aws.String(region), UseFIPS: aws.Bool(fips), UseDualStack: aws.Bool(dual)})
				if err != nil {
					t.Fatalf("Secrets Manager resolver %s fips %v dual %v: %v", region, fips, dual, err)
				}
				if got, err := serviceEndpoint(t.Context(), cfg, secretsManagerService); err != nil || got != want.URI.String() {
					t.Errorf("Secrets Manager endpoint(%s, fips %v, dual %v) = %q, %v; want %q", region, fips, dual, got, err, want.URI.String())
				}
			}
		}
	}
	src := &envSource{getenv: func(string) string { return "" }, fips: aws.FIPSEndpointStateEnabled}
	if _, err := serviceEndpoint(t.Context(), aws.Config{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:1"), ConfigSources: []any{src}}, lambdaService); err == nil {
		t.Errorf("FIPS with a custom endpoint: no error (the SDK refuses it)")
	}
	if _, err := serviceEndpoint(t.Context(), aws.Config{Region: "us-east-1/../x"}, lambdaService); err == nil {
		t.Errorf("invalid region: no error")
	}
}

// signedHeaders returns r's signed headers, less the SDK's own amz-sdk-*.
func signedHeaders(r received) string {
	_, signed, _ := strings.Cut(r.Header.Get("Authorization"), "SignedHeaders=")
	signed, _, _ = strings.Cut(signed, ",")
	var own []string
	for h := range strings.SplitSeq(signed, ";") {
		if !strings.HasPrefix(h, "amz-sdk-") {
			own = append(own, h)
		}
	}
	return strings.Join(own, ";")
}

// scopeOf returns the credential scope of r's signature without its date.
func scopeOf(r received) string {
	_, cred, _ := strings.Cut(r.Header.Get("Authorization"), "Credential=")
	cred, _, _ = strings.Cut(cred, ",")
	parts := strings.Split(cred, "/")
	if len(parts) < 2 {
		return cred
	}
	return strings.Join(append(parts[:1:1], parts[2:]...), "/")
}

// verifySigV4 checks r's Authorization header by computing the AWS
// Signature Version 4 of r independently of the SDK's signer.
func verifySigV4(r received, keyID, secret, region, service string) error {
	auth := r.Header.Get("Authorization")
	rest, ok := strings.CutPrefix(auth, "AWS4-HMAC-SHA256 ")
	if !ok {
		return fmt.Errorf("Authorization %q is not AWS4-HMAC-SHA256", auth)
	}
	fields := map[string]string{}
	for f := range strings.SplitSeq(rest, ", ") {
		k, v, _ := strings.Cut(f, "=")
		fields[k] = v
	}
	date := r.Header.Get("X-Amz-Date")
	if len(date) != 16 {
		return fmt.Errorf("X-Amz-Date = %q", date)
	}
	scope := date[:8] + "/" + region + "/" + service + "/aws4_request"
	if fields["Credential"] != keyID+"/"+scope {
		return fmt.Errorf("Credential = %q, want %s/%s", fields["Credential"], keyID, scope)
	}
	signed := strings.Split(fields["SignedHeaders"], ";")
	for _, h := range []string{"host", "x-amz-date", "x-amz-security-token"} {
		if !slices.Contains(signed, h) {
			return fmt.Errorf("SignedHeaders %v lack %s", signed, h)
		}
	}
	var canonHeaders strings.Builder
	for _, h := range signed {
		v := strings.Join(r.Header.Values(h), ",")
		if h == "host" {
			v = r.Host
		}
		fmt.Fprintf(&canonHeaders, "%s:%s\n", h, strings.TrimSpace(v))
	}
	body := sha256.Sum256([]byte(r.Body))
	// Services other than S3 sign the path escaped twice.
	canonPath := strings.ReplaceAll(r.RawPath, "%", "%25")
	canon := strings.Join([]string{r.Method, canonPath, "", canonHeaders.String(), fields["SignedHeaders"], hex.EncodeToString(body[:])}, "\n")
	canonSum := sha256.Sum256([]byte(canon))
	toSign := "AWS4-HMAC-SHA256\n" + date + "\n" + scope + "\n" + hex.EncodeToString(canonSum[:])
	mac := func(key []byte, s string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(s))
		return h.Sum(nil)
	}
	key := mac(mac(mac(mac([]byte("AWS4"+secret), date[:8]), region), service), "aws4_request")
	if want := hex.EncodeToString(mac(key, toSign)); fields["Signature"] != want {
		return fmt.Errorf("Signature = %s, want %s (canonical request:\n%s)", fields["Signature"], want, canon)
	}
	return nil
}
