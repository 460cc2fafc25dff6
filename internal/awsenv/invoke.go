package awsenv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/encoding/httpbinding"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// AsyncInvoker invokes functions asynchronously (InvocationType Event):
// Lambda queues the event, retries it on failure and sends it to the
// function's on-failure destination when it keeps failing.
//
// It is Lambda's Invoke API without the Lambda client: a SigV4-signed POST
// to /2015-03-31/functions/{name}/invocations with X-Amz-Invocation-Type:
// Event, to the endpoint the client would resolve (AWS_ENDPOINT_URL_LAMBDA,
// AWS_ENDPOINT_URL, else lambda[-fips].{region}.{partition's suffix}),
// retried by the configuration's retryer (the SDK's standard one by
// default) on throttling, 5xx answers and connection errors. What it does
// not do that the client does: correct the clock skew a signature error
// reveals, and honour Retry-After.
type AsyncInvoker struct {
	cfg     aws.Config
	client  aws.HTTPClient
	retryer aws.RetryerV2
	signer  *v4.Signer
}

// NewAsyncInvoker returns an AsyncInvoker using cfg's region, credentials,
// endpoints, HTTP client and retry settings.
func NewAsyncInvoker(cfg aws.Config) *AsyncInvoker {
	a := &AsyncInvoker{cfg: cfg, client: cfg.HTTPClient, signer: v4.NewSigner()}
	if a.client == nil {
		a.client = awshttp.NewBuildableClient()
	}
	a.retryer = newRetryer(cfg)
	return a
}

// newRetryer builds the retryer the SDK's clients build from cfg.
func newRetryer(cfg aws.Config) aws.RetryerV2 {
	var r aws.Retryer
	switch {
	case cfg.Retryer != nil:
		r = cfg.Retryer()
	case cfg.RetryMode == aws.RetryModeAdaptive:
		r = retry.NewAdaptiveMode(func(o *retry.AdaptiveModeOptions) {
			if cfg.RetryMaxAttempts > 0 {
				o.StandardOptions = append(o.StandardOptions, func(so *retry.StandardOptions) { so.MaxAttempts = cfg.RetryMaxAttempts })
			}
		})
	default:
		r = retry.NewStandard(func(o *retry.StandardOptions) {
			if cfg.RetryMaxAttempts > 0 {
				o.MaxAttempts = cfg.RetryMaxAttempts
			}
		})
	}
	if v2, ok := r.(aws.RetryerV2); ok {
		return v2
	}
	return retryerV2{r}
}

// retryerV2 adapts a Retryer without GetAttemptToken.
type retryerV2 struct{ aws.Retryer }

func (r retryerV2) GetAttemptToken(context.Context) (func(error) error, error) {
	return r.GetInitialToken(), nil
}

// InvokeAsync queues payload for function (a name, a name:qualifier or an
// ARN). Errors from Lambda are a *LambdaError (also a smithy.APIError),
// wrapped in a *retry.MaxAttemptsError once retries are exhausted.
func (a *AsyncInvoker) InvokeAsync(ctx context.Context, function string, payload []byte) error {
	if err := a.invoke(ctx, function, payload); err != nil {
		return fmt.Errorf("invoke %s asynchronously: %w", function, err)
	}
	return nil
}

func (a *AsyncInvoker) invoke(ctx context.Context, function string, payload []byte) error {
	if function == "" {
		return errors.New("no function name")
	}
	if a.cfg.Region == "" {
		return errors.New("no region (AWS_REGION)")
	}
	if a.cfg.Credentials == nil {
		return errors.New("no credentials")
	}
	base, err := lambdaEndpoint(ctx, a.cfg)
	if err != nil {
		return err
	}
	u, err := url.Parse(base)
	if err != nil {
		return fmt.Errorf("invalid Lambda endpoint %q: %w", base, err)
	}
	prefix := strings.TrimSuffix(u.Path, "/")
	u.Path = prefix + "/2015-03-31/functions/" + function + "/invocations"
	u.RawPath = httpbinding.EscapePath(prefix, false) + "/2015-03-31/functions/" + httpbinding.EscapePath(function, true) + "/invocations"
	sum := sha256.Sum256(payload)
	payloadHash := hex.EncodeToString(sum[:])

	release := func(error) error { return nil }
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return &aws.RequestCanceledError{Err: err}
		}
		releaseAttempt, err := a.retryer.GetAttemptToken(ctx)
		if err != nil {
			return fmt.Errorf("get retry attempt token: %w", err)
		}
		err = a.send(ctx, u, payload, payloadHash)
		_ = release(err)
		_ = releaseAttempt(err)
		if err == nil {
			return nil
		}
		if !a.retryer.IsErrorRetryable(err) {
			return err
		}
		if n := a.retryer.MaxAttempts(); n > 0 && attempt >= n {
			return &retry.MaxAttemptsError{Attempt: attempt, Err: err}
		}
		var tokenErr error
		if release, tokenErr = a.retryer.GetRetryToken(ctx, err); tokenErr != nil {
			return errors.Join(err, tokenErr) // the retry quota is spent
		}
		delay, derr := a.retryer.RetryDelay(attempt, err)
		if derr != nil {
			return errors.Join(err, derr)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return &aws.RequestCanceledError{Err: ctx.Err()}
		case <-t.C:
		}
	}
}

// send makes one attempt: a freshly signed request, 202 or an error.
func (a *AsyncInvoker) send(ctx context.Context, u *url.URL, payload []byte, payloadHash string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.URL = u // keep RawPath exactly as escaped (what is signed is what is sent)
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("X-Amz-Invocation-Type", "Event")
	req.Header.Set("User-Agent", "aws-sdk-go-v2/"+aws.SDKVersion+" cebulk-async-invoke")
	if a.cfg.AppID != "" {
		req.Header.Set("User-Agent", req.Header.Get("User-Agent")+" app/"+a.cfg.AppID)
	}
	creds, err := a.cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("retrieve credentials: %w", err)
	}
	if err := a.signer.SignHTTP(ctx, creds, req, payloadHash, "lambda", a.cfg.Region, time.Now().UTC()); err != nil {
		return fmt.Errorf("sign request: %w", err)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		// As the SDK's transport does: a send error is a connection error
		// (retryable) unless the context ended.
		if ctx.Err() != nil {
			return &smithy.CanceledError{Err: ctx.Err()}
		}
		return &smithyhttp.RequestSendError{Err: err}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusAccepted {
		return nil
	}
	return lambdaError(resp, body)
}

// LambdaError is an error answer of Lambda's Invoke API: the error code of
// its X-Amzn-ErrorType header (ResourceNotFoundException,
// TooManyRequestsException, ...) and its JSON body's Type and message.
type LambdaError struct {
	StatusCode int
	Code       string
	Type       string // "User" or "Service", when given
	Message    string
	RequestID  string
}

func (e *LambdaError) Error() string {
	s := fmt.Sprintf("Lambda Invoke: %s (HTTP %d", e.Code, e.StatusCode)
	if e.RequestID != "" {
		s += ", request id " + e.RequestID
	}
	s += ")"
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// ErrorCode, ErrorMessage and ErrorFault make a LambdaError a
// smithy.APIError; ErrorCode and HTTPStatusCode are what the SDK's
// retryers classify errors by.
func (e *LambdaError) ErrorCode() string    { return e.Code }
func (e *LambdaError) ErrorMessage() string { return e.Message }
func (e *LambdaError) HTTPStatusCode() int  { return e.StatusCode }
func (e *LambdaError) ErrorFault() smithy.ErrorFault {
	switch {
	case e.Type == "User":
		return smithy.FaultClient
	case e.Type == "Service" || e.StatusCode >= 500:
		return smithy.FaultServer
	case e.StatusCode >= 400:
		return smithy.FaultClient
	}
	return smithy.FaultUnknown
}

// lambdaError decodes an error answer as the SDK's REST-JSON protocol does:
// the code from X-Amzn-ErrorType (before any ':'), else the body's __type
// or code (after any '#').
func lambdaError(resp *http.Response, body []byte) *LambdaError {
	e := &LambdaError{StatusCode: resp.StatusCode, RequestID: resp.Header.Get("X-Amzn-RequestId")}
	var doc struct {
		Type     string `json:"__type"`
		Code     string `json:"code"`
		LType    string `json:"Type"`
		Message  string `json:"message"`
		MessageU string `json:"Message"`
	}
	_ = json.Unmarshal(body, &doc) // not JSON: status and header only
	e.Code, _, _ = strings.Cut(resp.Header.Get("X-Amzn-ErrorType"), ":")
	if e.Code == "" {
		e.Code = doc.Type
		if e.Code == "" {
			e.Code = doc.Code
		}
		if i := strings.LastIndexByte(e.Code, '#'); i >= 0 {
			e.Code = e.Code[i+1:]
		}
	}
	if e.Code == "" {
		if resp.StatusCode == http.StatusTooManyRequests {
			e.Code = "TooManyRequestsException" // Lambda's name for it
		} else {
			e.Code = "HTTP" + strconv.Itoa(resp.StatusCode)
		}
	}
	e.Type, e.Message = doc.LType, doc.Message
	if e.Message == "" {
		e.Message = doc.MessageU
	}
	if e.Message == "" && resp.StatusCode != http.StatusOK && len(body) > 0 && !json.Valid(body) {
		e.Message = strings.TrimSpace(string(body[:min(len(body), 200)]))
	}
	if resp.StatusCode == http.StatusOK {
		e.Message = "the function ran synchronously: an Event invocation is answered 202"
	}
	return e
}

// Interfaces of aws.Config.ConfigSources (implemented by envSource and by
// the config package's EnvConfig) the endpoint resolution reads.
type (
	serviceEndpointSource interface {
		GetServiceBaseEndpoint(ctx context.Context, sdkID string) (string, bool, error)
	}
	ignoreEndpointsSource interface {
		GetIgnoreConfiguredEndpoints(context.Context) (bool, bool, error)
	}
	fipsSource interface {
		GetUseFIPSEndpoint(context.Context) (aws.FIPSEndpointState, bool, error)
	}
	dualStackSource interface {
		GetUseDualStackEndpoint(context.Context) (aws.DualStackEndpointState, bool, error)
	}
)

// lambdaEndpoint resolves Lambda's endpoint as the Lambda client does: a
// configured endpoint (AWS_ENDPOINT_URL_LAMBDA, then cfg.BaseEndpoint),
// else by the endpoint rules of Lambda for the region's partition.
func lambdaEndpoint(ctx context.Context, cfg aws.Config) (string, error) {
	var fips, dual, ignore bool
	custom := ""
	if cfg.BaseEndpoint != nil {
		custom = *cfg.BaseEndpoint
	}
	for _, s := range cfg.ConfigSources {
		if p, ok := s.(ignoreEndpointsSource); ok {
			if v, found, _ := p.GetIgnoreConfiguredEndpoints(ctx); found && v {
				ignore = true
			}
		}
	}
	for _, s := range cfg.ConfigSources {
		if p, ok := s.(serviceEndpointSource); ok && !ignore {
			if v, found, err := p.GetServiceBaseEndpoint(ctx, "Lambda"); err == nil && found {
				custom = v
				break
			}
		}
	}
	for _, s := range cfg.ConfigSources {
		if p, ok := s.(fipsSource); ok {
			if v, found, err := p.GetUseFIPSEndpoint(ctx); err == nil && found {
				fips = v == aws.FIPSEndpointStateEnabled
				break
			}
		}
	}
	for _, s := range cfg.ConfigSources {
		if p, ok := s.(dualStackSource); ok {
			if v, found, err := p.GetUseDualStackEndpoint(ctx); err == nil && found {
				dual = v == aws.DualStackEndpointStateEnabled
				break
			}
		}
	}
	if custom != "" {
		switch {
		case fips:
			return "", errors.New("invalid configuration: FIPS and custom endpoint are not supported")
		case dual:
			return "", errors.New("invalid configuration: Dualstack and custom endpoint are not supported")
		}
		return custom, nil
	}
	if !validRegion(cfg.Region) {
		return "", fmt.Errorf("invalid region %q", cfg.Region)
	}
	suffix, dualSuffix := partitionSuffixes(cfg.Region)
	host := "lambda."
	if fips {
		host = "lambda-fips."
	}
	if dual {
		suffix = dualSuffix
	}
	return "https://" + host + cfg.Region + "." + suffix, nil
}

// validRegion reports whether region is a valid host label (letters,
// digits, hyphens; not at the ends), as the SDK requires.
func validRegion(region string) bool {
	if region == "" || len(region) > 63 || region[0] == '-' || region[len(region)-1] == '-' {
		return false
	}
	for _, c := range region {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// partitionSuffixes returns the DNS suffixes (plain, dual-stack) of the
// partition of region, from the SDK's partitions table
// (internal/endpoints/awsrulesfn); every partition supports FIPS and
// dual-stack endpoints, and a region of no known pattern is in "aws".
func partitionSuffixes(region string) (string, string) {
	for _, p := range []struct{ prefix, dns, dual string }{
		{"us-gov-", "amazonaws.com", "api.aws"},
		{"us-isob-", "sc2s.sgov.gov", "api.aws.scloud"},
		{"us-isof-", "csp.hci.ic.gov", "api.aws.hci.ic.gov"},
		{"us-iso-", "c2s.ic.gov", "api.aws.ic.gov"},
		{"eu-isoe-", "cloud.adc-e.uk", "api.cloud-aws.adc-e.uk"},
		{"eusc-de-", "amazonaws.eu", "api.amazonwebservices.eu"},
		{"cn-", "amazonaws.com.cn", "api.amazonwebservices.com.cn"},
	} {
		if strings.HasPrefix(region, p.prefix) {
			return p.dns, p.dual
		}
	}
	return "amazonaws.com", "api.aws"
}
