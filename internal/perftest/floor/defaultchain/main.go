// Command defaultchain is floor/sdk as the functions built it before they
// had awsenv.FromEnv, AsyncInvoker and SecretReader: the SDK's default
// chain (the config package, which links the SSO, SSO OIDC, Sign-In and STS
// clients) and the Secrets Manager and Lambda clients. A measurement only, the baseline of what the lean
// path saves, in the same run.
package main

import (
	"context"

	"github.com/aws/aws-lambda-go/lambda"
	lambdaclient "github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cebulk/cebulk/internal/awsenv"
	"github.com/cebulk/cebulk/internal/awsenv/defaultchain"
)

func main() {
	cfg, err := defaultchain.Load(context.Background())
	if err != nil {
		panic(err)
	}
	_, _, _ = awsenv.S3(cfg), secretsmanager.NewFromConfig(cfg), lambdaclient.NewFromConfig(cfg)
	lambda.Start(func(context.Context, map[string]any) (string, error) { return "hello", nil })
}
