// Command sdk is hello plus what every cebulk function does with the AWS
// SDK before its first request: awsenv's configuration (the SDK's default
// chain) and S3, Secrets Manager and Lambda clients, built and unused. It is
// the cold-start floor of any function that uses the SDK as cebulk does.
package main

import (
	"context"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/cebulk/cebulk/internal/awsenv"
)

func main() {
	cfg, err := awsenv.Load(context.Background())
	if err != nil {
		panic(err)
	}
	_, _, _ = awsenv.S3(cfg), awsenv.SecretsManager(cfg), awsenv.Lambda(cfg)
	lambda.Start(func(context.Context, map[string]any) (string, error) { return "hello", nil })
}
