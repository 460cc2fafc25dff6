// Command noconfig is floor/nolambda without the SDK's config package:
// static credentials from the environment, so none of the SSO, SSO OIDC,
// Sign-In and STS clients the default chain links is initialised. A
// measurement only, not a usable configuration: it drops what cebulk needs
// from the default chain (AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_LAMBDA,
// AWS_CA_BUNDLE, retry and FIPS settings, profiles for the CLI).
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

func main() {
	cfg := aws.Config{Region: os.Getenv("AWS_REGION"), Credentials: credentials.NewStaticCredentialsProvider(os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), os.Getenv("AWS_SESSION_TOKEN"))}
	_, _ = s3.NewFromConfig(cfg), secretsmanager.NewFromConfig(cfg)
	lambda.Start(func(context.Context, map[string]any) (string, error) { return "hello", nil })
}
