// Package awstest connects tests to the local AWS stack that `make test`
// starts (moto server for S3, Secrets Manager and SQS).
//
// Outside `make test` (no AWS_ENDPOINT_URL) the tests that need it skip with a
// message saying how to run them; under `make test` and in CI (CEBULK_STACK=1)
// a missing stack is a failure, never a skip.
package awstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cebulk/cebulk/internal/awsenv"
	"github.com/cebulk/cebulk/internal/awsenv/defaultchain"
)

// Required reports whether the stack must be present (set by make test).
func Required() bool { return os.Getenv("CEBULK_STACK") != "" }

// Endpoint returns the local stack's endpoint, or skips (fails under make test).
func Endpoint(t testing.TB) string {
	t.Helper()
	ep := os.Getenv("AWS_ENDPOINT_URL")
	if ep == "" {
		if Required() {
			t.Fatal("CEBULK_STACK is set but AWS_ENDPOINT_URL is empty: the local AWS stack is not running")
		}
		t.Skip("local AWS stack not running: run `make test` (starts moto server) to run this test")
	}
	if !strings.HasPrefix(ep, "http://127.") && !strings.HasPrefix(ep, "http://localhost") {
		t.Fatalf("AWS_ENDPOINT_URL=%q is not a local endpoint; tests never talk to real AWS", ep)
	}
	return ep
}

// Config returns an SDK configuration for the local stack.
func Config(t testing.TB) aws.Config {
	t.Helper()
	Endpoint(t)
	cfg, err := defaultchain.Load(context.Background())
	if err != nil {
		t.Fatalf("defaultchain.Load: %v", err)
	}
	return cfg
}

// S3 returns an S3 client for the local stack.
func S3(t testing.TB) *s3.Client { t.Helper(); return awsenv.S3(Config(t)) }

// SecretsManager returns a Secrets Manager client for the local stack.
func SecretsManager(t testing.TB) *secretsmanager.Client {
	t.Helper()
	return secretsmanager.NewFromConfig(Config(t))
}

// UniqueName returns prefix followed by a random suffix, valid as a bucket name.
func UniqueName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// NewBucket creates an empty bucket for one test and removes it afterwards.
func NewBucket(t testing.TB) string {
	t.Helper()
	return CreateBucket(t, UniqueName("cebulk-test"))
}

// CreateBucket creates the bucket name for one test and removes it afterwards.
func CreateBucket(t testing.TB, name string) string {
	t.Helper()
	c := S3(t)
	if _, err := c.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatalf("CreateBucket(%s): %v", name, err)
	}
	t.Cleanup(func() { EmptyAndDelete(context.Background(), c, name) })
	return name
}

// EmptyAndDelete deletes every object of a bucket, then the bucket; errors are
// ignored (cleanup only).
func EmptyAndDelete(ctx context.Context, c *s3.Client, bucket string) {
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: &bucket})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			break
		}
		for _, o := range page.Contents {
			_, _ = c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: o.Key})
		}
	}
	_, _ = c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &bucket})
}

// NewSecret creates a secret holding value and returns its ARN; it is deleted
// after the test.
func NewSecret(t testing.TB, value string) string {
	t.Helper()
	c := SecretsManager(t)
	name := UniqueName("cebulk-test-secret")
	out, err := c.CreateSecret(t.Context(), &secretsmanager.CreateSecretInput{Name: &name, SecretString: &value})
	if err != nil {
		t.Fatalf("CreateSecret: %v", err)
	}
	t.Cleanup(func() {
		_, _ = c.DeleteSecret(context.Background(), &secretsmanager.DeleteSecretInput{SecretId: out.ARN, ForceDeleteWithoutRecovery: aws.Bool(true)})
	})
	return *out.ARN
}

// Keys lists every key under prefix in bucket.
func Keys(t testing.TB, bucket, prefix string) []string {
	t.Helper()
	c := S3(t)
	var keys []string
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatalf("ListObjectsV2(%s/%s): %v", bucket, prefix, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, *o.Key)
		}
	}
	return keys
}

// IsNotFound reports whether err is S3's NoSuchKey or NotFound.
func IsNotFound(err error) bool {
	var nsk *s3types.NoSuchKey
	var nf *s3types.NotFound
	return errors.As(err, &nsk) || errors.As(err, &nf)
}
