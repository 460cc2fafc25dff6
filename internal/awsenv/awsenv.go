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
