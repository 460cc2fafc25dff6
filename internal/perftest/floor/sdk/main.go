// Command sdk is hello plus what every cebulk function does with the AWS
// SDK before its first request: awsenv.FromEnv's configuration, the S3
// client, the secret reader and the Lambda invoker, built and unused. It
// is the cold-start floor of any function that uses the SDK as cebulk does.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/cebulk/cebulk/internal/awsenv"
)

func main() {
	cfg, err := awsenv.FromEnv(os.Getenv)
	if err != nil {
		panic(err)
	}
	_, _, _ = awsenv.S3(cfg), awsenv.NewSecretReader(cfg), awsenv.NewAsyncInvoker(cfg)
	lambda.Start(func(context.Context, map[string]any) (string, error) { return "hello", nil })
}
