// Package awsenv builds the AWS SDK configuration and clients the same way
// for every function, the CLI and the tests.
//
// Against real AWS it is the SDK's default chain. When AWS_ENDPOINT_URL is
// set (the local stack: moto, or the demo's embedded servers) it also switches
// S3 to path-style addressing, the only form local servers answer.
package awsenv

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// Load returns the SDK configuration for this process. getenv is os.Getenv in
// production; AWS_ENDPOINT_URL, AWS_REGION and the credentials are read by the
// SDK itself from the real environment.
func Load(ctx context.Context) (aws.Config, error) {
	cfg, err := config.LoadDefaultConfig(ctx,
		// Checksums only where an API requires them: identical on AWS, and the
		// only setting every local S3 server accepts (no aws-chunked bodies).
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %v", err)
	}
	return cfg, nil
}

// Local reports whether the configuration points at a local endpoint
// (AWS_ENDPOINT_URL) rather than at AWS.
func Local(cfg aws.Config) bool { return cfg.BaseEndpoint != nil && *cfg.BaseEndpoint != "" }

// S3 returns an S3 client; path-style when the endpoint is local.
func S3(cfg aws.Config) *s3.Client {
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = Local(cfg)
	})
}

// SecretsManager returns a Secrets Manager client.
func SecretsManager(cfg aws.Config) *secretsmanager.Client {
	return secretsmanager.NewFromConfig(cfg)
}

// Lambda returns a Lambda client (for asynchronous invocations).
func Lambda(cfg aws.Config) *lambda.Client {
	return lambda.NewFromConfig(cfg)
}

// lambdaInvokeAPI is the part of the Lambda client AsyncInvoker uses.
type lambdaInvokeAPI interface {
	Invoke(ctx context.Context, in *lambda.InvokeInput, opts ...func(*lambda.Options)) (*lambda.InvokeOutput, error)
}

// AsyncInvoker invokes functions asynchronously (InvocationType Event):
// Lambda queues the event, retries it on failure and sends it to the
// function's on-failure destination when it keeps failing.
type AsyncInvoker struct{ API lambdaInvokeAPI }

// InvokeAsync queues payload for function (a name or ARN).
func (a AsyncInvoker) InvokeAsync(ctx context.Context, function string, payload []byte) error {
	_, err := a.API.Invoke(ctx, &lambda.InvokeInput{
		FunctionName:   &function,
		InvocationType: lambdatypes.InvocationTypeEvent,
		Payload:        payload,
	})
	if err != nil {
		return fmt.Errorf("invoke %s asynchronously: %w", function, err)
	}
	return nil
}
