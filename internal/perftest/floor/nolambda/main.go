// Command nolambda is floor/sdk without the Lambda client: what linking
// the Lambda service package costs at a cold start (a measurement only;
// every cebulk function needs Lambda's Invoke).
package main

import (
	"context"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

func main() {
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		panic(err)
	}
	_, _ = s3.NewFromConfig(cfg), secretsmanager.NewFromConfig(cfg)
	lambda.Start(func(context.Context, map[string]any) (string, error) { return "hello", nil })
}
