package awsenv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go/encoding/httpbinding"
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
type AsyncInvoker struct{ c *caller }

// NewAsyncInvoker returns an AsyncInvoker using cfg's region, credentials,
// endpoints, HTTP client and retry settings.
func NewAsyncInvoker(cfg aws.Config) *AsyncInvoker {
	return &AsyncInvoker{c: newCaller(cfg, lambdaService)}
}

// lambdaService is how Lambda is named, signed and found.
var lambdaService = service{sdkID: "Lambda", signingName: "lambda", hostPrefix: "lambda", operation: "Lambda Invoke"}

// InvokeAsync queues payload for function (a name, a name:qualifier or an
// ARN). Errors from Lambda are an *APIError (also a smithy.APIError),
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
	u, err := a.c.endpoint(ctx)
	if err != nil {
		return err
	}
	prefix := strings.TrimSuffix(u.Path, "/")
	u.Path = prefix + "/2015-03-31/functions/" + function + "/invocations"
	u.RawPath = httpbinding.EscapePath(prefix, false) + "/2015-03-31/functions/" + httpbinding.EscapePath(function, true) + "/invocations"
	h := http.Header{"Content-Type": {"application/octet-stream"}, "X-Amz-Invocation-Type": {"Event"}}
	_, err = a.c.do(ctx, u, h, payload, func(status int) bool { return status == http.StatusAccepted })
	return err
}
