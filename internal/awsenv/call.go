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
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// caller sends signed requests to one AWS service with retries: what the
// SDK's clients do, for the one or two operations the functions need.
type caller struct {
	cfg     aws.Config
	svc     service
	client  aws.HTTPClient
	retryer aws.RetryerV2
	signer  *v4.Signer
}

// service names an AWS service for endpoints and signatures.
type service struct {
	sdkID       string // AWS_ENDPOINT_URL_<SDK ID>
	signingName string
	hostPrefix  string // {prefix}[-fips].{region}.{DNS suffix}
	operation   string // in errors
	// dualStack, when set, decides whether a dual-stack endpoint is used in
	// a partition (some services' rules differ from the common one).
	dualStack func(partition string, fips bool) bool
}

func newCaller(cfg aws.Config, svc service) *caller {
	c := &caller{cfg: cfg, svc: svc, client: cfg.HTTPClient, signer: v4.NewSigner(), retryer: newRetryer(cfg)}
	if c.client == nil {
		c.client = awshttp.NewBuildableClient()
	}
	return c
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

// endpoint returns the service's endpoint URL (see serviceEndpoint), after
// checking there are a region and credentials to sign with.
func (c *caller) endpoint(ctx context.Context) (*url.URL, error) {
	if c.cfg.Region == "" {
		return nil, errors.New("no region (AWS_REGION)")
	}
	if c.cfg.Credentials == nil {
		return nil, errors.New("no credentials")
	}
	base, err := serviceEndpoint(ctx, c.cfg, c.svc)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("invalid %s endpoint %q: %w", c.svc.sdkID, base, err)
	}
	return u, nil
}

// do POSTs body to u with header, signed, retried as the SDK's retry
// middleware does (attempt and retry tokens, backoff, MaxAttemptsError),
// and returns the body (up to 1 MiB) of an answer whose status is ok.
func (c *caller) do(ctx context.Context, u *url.URL, header http.Header, body []byte, ok func(status int) bool) ([]byte, error) {
	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])
	release := func(error) error { return nil }
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, &aws.RequestCanceledError{Err: err}
		}
		releaseAttempt, err := c.retryer.GetAttemptToken(ctx)
		if err != nil {
			return nil, fmt.Errorf("get retry attempt token: %w", err)
		}
		out, err := c.send(ctx, u, header, body, payloadHash, ok)
		_ = release(err)
		_ = releaseAttempt(err)
		if err == nil {
			return out, nil
		}
		if !c.retryer.IsErrorRetryable(err) {
			return nil, err
		}
		if n := c.retryer.MaxAttempts(); n > 0 && attempt >= n {
			return nil, &retry.MaxAttemptsError{Attempt: attempt, Err: err}
		}
		var tokenErr error
		if release, tokenErr = c.retryer.GetRetryToken(ctx, err); tokenErr != nil {
			return nil, errors.Join(err, tokenErr) // the retry quota is spent
		}
		delay, derr := c.retryer.RetryDelay(attempt, err)
		if derr != nil {
			return nil, errors.Join(err, derr)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, &aws.RequestCanceledError{Err: ctx.Err()}
		case <-t.C:
		}
	}
}

// send makes one attempt: a freshly signed request, then the answer's body
// or an error.
func (c *caller) send(ctx context.Context, u *url.URL, header http.Header, body []byte, payloadHash string, ok func(int) bool) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.URL = u // keep RawPath exactly as escaped (what is signed is what is sent)
	for k, v := range header {
		req.Header[k] = v
	}
	ua := "aws-sdk-go-v2/" + aws.SDKVersion + " cebulk-lean"
	if c.cfg.AppID != "" {
		ua += " app/" + c.cfg.AppID
	}
	req.Header.Set("User-Agent", ua)
	creds, err := c.cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("retrieve credentials: %w", err)
	}
	if err := c.signer.SignHTTP(ctx, creds, req, payloadHash, c.svc.signingName, c.cfg.Region, time.Now().UTC()); err != nil {
		return nil, fmt.Errorf("sign request: %w", err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		// As the SDK's transport does: a send error is a connection error
		// (retryable) unless the context ended.
		if ctx.Err() != nil {
			return nil, &smithy.CanceledError{Err: ctx.Err()}
		}
		return nil, &smithyhttp.RequestSendError{Err: err}
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if ok(resp.StatusCode) {
		if err != nil {
			return nil, &smithyhttp.RequestSendError{Err: fmt.Errorf("read answer: %w", err)}
		}
		return out, nil
	}
	return nil, apiError(c.svc.operation, resp, out)
}

// APIError is an error answer of an AWS API (Lambda's Invoke, Secrets
// Manager's GetSecretValue): the error code of its X-Amzn-ErrorType header
// or JSON body (ResourceNotFoundException, TooManyRequestsException, ...)
// and the body's Type and message.
type APIError struct {
	Operation  string // "Lambda Invoke", "Secrets Manager GetSecretValue"
	StatusCode int
	Code       string
	Type       string // "User" or "Service", when given
	Message    string
	RequestID  string
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("%s: %s (HTTP %d", e.Operation, e.Code, e.StatusCode)
	if e.RequestID != "" {
		s += ", request id " + e.RequestID
	}
	s += ")"
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// ErrorCode, ErrorMessage and ErrorFault make an APIError a
// smithy.APIError; ErrorCode and HTTPStatusCode are what the SDK's
// retryers classify errors by.
func (e *APIError) ErrorCode() string    { return e.Code }
func (e *APIError) ErrorMessage() string { return e.Message }
func (e *APIError) HTTPStatusCode() int  { return e.StatusCode }
func (e *APIError) ErrorFault() smithy.ErrorFault {
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

// apiError decodes an error answer as the SDK's REST-JSON and JSON 1.1
// protocols do: the code from X-Amzn-ErrorType (before any ':'), else the
// body's __type or code (after any '#').
func apiError(operation string, resp *http.Response, body []byte) *APIError {
	e := &APIError{Operation: operation, StatusCode: resp.StatusCode, RequestID: resp.Header.Get("X-Amzn-RequestId")}
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
			e.Code = "TooManyRequestsException" // the SDK retries an unnamed 429 as throttling
		} else {
			e.Code = "HTTP" + strconv.Itoa(resp.StatusCode)
		}
	}
	e.Type, e.Message = doc.LType, doc.Message
	if e.Message == "" {
		e.Message = doc.MessageU
	}
	if e.Message == "" && resp.StatusCode >= 300 && len(body) > 0 && !json.Valid(body) {
		e.Message = strings.TrimSpace(string(body[:min(len(body), 200)]))
	}
	if resp.StatusCode < 300 {
		e.Message = "unexpected status " + strconv.Itoa(resp.StatusCode)
		if operation == lambdaService.operation {
			e.Message = "the function ran synchronously: an Event invocation is answered 202"
		}
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

// serviceEndpoint resolves svc's endpoint as its client does: a
// configured endpoint (AWS_ENDPOINT_URL_<SDK ID>, then cfg.BaseEndpoint),
// else by the service's endpoint rules for the region's partition.
func serviceEndpoint(ctx context.Context, cfg aws.Config, svc service) (string, error) {
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
			if v, found, err := p.GetServiceBaseEndpoint(ctx, svc.sdkID); err == nil && found {
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
	partition, suffix, dualSuffix := partitionOf(cfg.Region)
	host := svc.hostPrefix + "."
	if fips {
		host = svc.hostPrefix + "-fips."
	}
	if dual && svc.dualStack != nil {
		dual = svc.dualStack(partition, fips)
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

// partitionOf returns the partition of region and its DNS suffixes
// (plain, dual-stack), from the SDK's partitions table
// (internal/endpoints/awsrulesfn); every partition supports FIPS and
// dual-stack endpoints, and a region of no known pattern is in "aws".
func partitionOf(region string) (id, dns, dual string) {
	for _, p := range []struct{ prefix, id, dns, dual string }{
		{"us-gov-", "aws-us-gov", "amazonaws.com", "api.aws"},
		{"us-isob-", "aws-iso-b", "sc2s.sgov.gov", "api.aws.scloud"},
		{"us-isof-", "aws-iso-f", "csp.hci.ic.gov", "api.aws.hci.ic.gov"},
		{"us-iso-", "aws-iso", "c2s.ic.gov", "api.aws.ic.gov"},
		{"eu-isoe-", "aws-iso-e", "cloud.adc-e.uk", "api.cloud-aws.adc-e.uk"},
		{"eusc-de-", "aws-eusc", "amazonaws.eu", "api.amazonwebservices.eu"},
		{"cn-", "aws-cn", "amazonaws.com.cn", "api.amazonwebservices.com.cn"},
	} {
		if strings.HasPrefix(region, p.prefix) {
			return p.id, p.dns, p.dual
		}
	}
	return "aws", "amazonaws.com", "api.aws"
}
