// Package defaultchain loads the AWS SDK's default configuration chain
// (environment, shared config and credentials files and profiles, SSO,
// web identity, container and instance credentials) with awsenv's settings,
// for the CLI, which runs on laptops, and the tests.
//
// The Lambda functions use awsenv.FromEnv instead and must not import this
// package: the config package it links costs 13–14 ms of every cold start
// (internal/perftest's TestFunctionsLinkNoSDKConfig checks they do not).
package defaultchain

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
)

// Load returns the SDK configuration of the default chain.
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
