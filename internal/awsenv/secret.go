package awsenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// SecretReader reads Secrets Manager secrets (GetSecretValue) without the
// Secrets Manager client, whose package initialisation alone (its schemas
// and endpoint tables: 225 KB, 1400 allocations) cost about 1 ms of CPU of
// every cold start: a SigV4-signed JSON 1.1 POST to the endpoint the client
// would resolve (AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_ENDPOINT_URL, else
// secretsmanager[-fips].{region}.{suffix}), retried as AsyncInvoker is.
type SecretReader struct{ c *caller }

// secretsManagerService is how Secrets Manager is named, signed and found.
var secretsManagerService = service{
	sdkID: "Secrets Manager", signingName: "secretsmanager", hostPrefix: "secretsmanager",
	operation: "Secrets Manager GetSecretValue",
	// Its rules keep the plain suffix in aws and aws-us-gov, and in aws-cn
	// unless FIPS is on too (checked against the client's resolver).
	dualStack: func(partition string, fips bool) bool {
		switch partition {
		case "aws", "aws-us-gov":
			return false
		case "aws-cn":
			return fips
		}
		return true
	},
}

// NewSecretReader returns a SecretReader using cfg's region, credentials,
// endpoints, HTTP client and retry settings.
func NewSecretReader(cfg aws.Config) *SecretReader {
	return &SecretReader{c: newCaller(cfg, secretsManagerService)}
}

// GetSecretString returns the current (AWSCURRENT) string value of the
// secret id (a name or an ARN), or nil when the secret has a binary value.
// Errors from Secrets Manager are an *APIError (ResourceNotFoundException,
// AccessDeniedException, ...); the value never appears in one.
func (r *SecretReader) GetSecretString(ctx context.Context, id string) (*string, error) {
	u, err := r.c.endpoint(ctx)
	if err != nil {
		return nil, err
	}
	if u.Path == "" {
		u.Path = "/"
	}
	in, err := json.Marshal(struct{ SecretId string }{id})
	if err != nil {
		return nil, err
	}
	h := http.Header{"Content-Type": {"application/x-amz-json-1.1"}, "X-Amz-Target": {"secretsmanager.GetSecretValue"}}
	body, err := r.c.do(ctx, u, h, in, func(status int) bool { return status == http.StatusOK })
	if err != nil {
		return nil, err
	}
	var out struct{ SecretString *string }
	if err := json.Unmarshal(body, &out); err != nil {
		// json's messages can quote the input: say only what is wrong.
		return nil, fmt.Errorf("%s: the answer is not a JSON object", secretsManagerService.operation)
	}
	return out.SecretString, nil
}
